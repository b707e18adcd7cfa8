#!/usr/bin/python3
"""Black-box tests of drift-node with stock grpcio (Debian python3-grpcio):
every method of drift.v1, every error of SPEC section 5 with its status
code and proof that nothing changed, restart keeps everything, collections
never see each other's data, drop removes the files, kill -9 during a
stream of writes loses no acknowledged point, 8 concurrent clients leave
a consistent state, and a node with a memory budget and a dimension limit
refuses what is over them (status, message, nothing changed).
tests/node/test_node_diskfull.py covers a full disk.

DRIFT_NODE_TARGET=router (meson test node-via-router) runs the same
assertions against drift-router in front of three drift-nodes (issue 18:
a client pointed at a router gets the same answers, statuses and
messages as from one node). What differs there for a real reason is in
ROUTER_DIFFERENCES below, each with its reason, and reported as a TAP
comment; everything else runs unchanged."""
import os
import random
import re
import shutil
import signal
import struct
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "grpc"))
import grpc  # noqa: E402

from grpctest import Server, Tap, drift_stubs  # noqa: E402

pb, pbg, hpb, hpbg = drift_stubs()
NODE = os.environ["DRIFT_NODE"]
TARGET = os.environ.get("DRIFT_NODE_TARGET", "node")
MiB = 1 << 20
C = grpc.StatusCode
CHANNEL_OPTS = [("grpc.max_send_message_length", 200 * MiB),
                ("grpc.max_receive_message_length", 200 * MiB)]

# Through a router in front of three nodes, what is not the same as on
# one node, and why (printed as TAP comments; the rest is unchanged).
ROUTER_DIFFERENCES = [
    ("Cluster.Status", "the target is a cluster of three: three nodes, "
     "one of them the leader, all UP (a lone node is a cluster of one)"),
    ("Cluster.ShardMap", "alpha's two shards are each on one of the three "
     "nodes (on one node both are on it)"),
    ("restart", "a restart is of the whole cluster (SIGTERM to the router "
     "and the three nodes, then all started again): the data lives on the "
     "nodes, the router holds none"),
    ("files", "a collection's directory is looked for on every node (it "
     "exists on those holding a shard), not in one data directory"),
    ("kill -9", "kill -9 hits the router and all three nodes at once, "
     "then all are started again"),
    ("memory shares", "each of the three nodes has the 8 MiB budget and "
     "gives shares of it to the collections with a shard on it, so a "
     "collection's expected share is computed from the shard map (which "
     "node holds it, what else is there) instead of assuming one node; "
     "DescribeCollection through a router sums the holders' shares"),
    ("a create the holder refuses", "the message names the holder twice "
     "(\"node node-2: collection greedy cannot be opened on node node-2: "
     "<the node's reason>\") where a lone node says \"node N: <the "
     "reason>\": the leader relays the holder's answer; the status and "
     "the reason are the same, and are what is checked"),
    ("memory_limit over what the budget has left", "not asked: a cluster "
     "places a new collection on the least-loaded node, which has the "
     "room, so the create would succeed (the refusal needs every node "
     "short of room; the holder's refusal of a create is tested in "
     "tests/cluster)"),
]


def vec(i, dim, salt=0):
    r = random.Random(i * 1000003 + salt)
    return [r.uniform(-1, 1) for _ in range(dim)]


class Node:
    def __init__(self, data, extra=()):
        self.data = data
        self.extra = list(extra)
        self.start()

    def start(self, port=0):
        self.srv = Server([NODE, "--data-dir", self.data, "--listen",
                           "127.0.0.1:%d" % port, "--memtable-rows", "500",
                           "--log-level", "warn"] + self.extra)
        self.ch = grpc.insecure_channel(
            self.srv.addr,
            options=[("grpc.max_send_message_length", 200 * MiB),
                     ("grpc.max_receive_message_length", 200 * MiB)])
        self.s = pbg.DriftStub(self.ch)

    def stop(self):
        self.ch.close()
        return self.srv.stop()

    def kill(self):
        self.ch.close()
        self.srv.proc.kill()
        self.srv.proc.wait()

    def restart(self):
        port = self.srv.port
        self.stop()
        self.start(port)


class RouterTarget:
    """drift-router in front of three drift-nodes, used as test_node uses
    one Node: .s, .ch, .srv.addr, start/stop/kill. The nodes keep their
    ports and data directories across restarts."""

    def __init__(self, base, extra=()):
        here = os.path.dirname(os.path.abspath(__file__))
        sys.path.insert(0, os.path.join(here, "..", "cluster"))
        sys.path.insert(0, os.path.join(here, "..", "router"))
        import clusterlib
        import test_router
        self.cl = clusterlib
        self.Router = test_router.Router
        self.base = base
        self.nodes = clusterlib.cluster(
            base, 3, extra=["--memtable-rows", "500"] + list(extra))
        self.router = None
        self.ready()

    def ready(self):
        """Every node UP in the map, then a router that holds the map."""
        cl = self.cl
        cl.wait_for(lambda: all(
            x.state == pb.NODE_STATE_UP
            for x in self.nodes[0].status().nodes) and
            cl.leader_of(self.nodes, timeout=2) is not None, timeout=60)
        join = ",".join(n.addr for n in self.nodes)
        if self.router is None:
            self.router = self.Router(join, os.path.join(self.base,
                                                         "router.log"))
        else:
            self.router.start()
        self.srv = self.router  # .addr
        self.ch = grpc.insecure_channel(self.router.addr,
                                        options=CHANNEL_OPTS)
        self.s = pbg.DriftStub(self.ch)
        # Until every collection answers (nodes reopen their shards).
        for c in self.s.ListCollections(pb.ListCollectionsRequest(),
                                        timeout=30).collections:
            cl.wait_for(lambda: self.s.DescribeCollection(
                pb.DescribeCollectionRequest(name=c.name), timeout=5),
                timeout=60)

    def data_dirs(self):
        return [n.data for n in self.nodes]

    def start(self, port=0):
        for n in self.nodes:
            n.start()
        self.ready()

    def stop(self):
        self.ch.close()
        rcs = [self.router.stop()] + [n.stop() for n in self.nodes]
        return 0 if rcs == [0] * 4 else rcs

    def kill(self):
        self.ch.close()
        self.router.kill()
        for n in self.nodes:
            n.kill()


def code_of(fn):
    try:
        fn()
        return C.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


def wait_for_true(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def count(n, name):
    return n.s.DescribeCollection(
        pb.DescribeCollectionRequest(name=name), timeout=30
    ).collection.vector_count


def main():
    tap = Tap()
    data = tempfile.mkdtemp(prefix="drift-node-test-")
    via_router = TARGET == "router"
    if via_router:
        for what, why in ROUTER_DIFFERENCES:
            print("# through the router, %s: %s" % (what, why), flush=True)
        n = RouterTarget(data)
    else:
        n = Node(data)
    D = 16

    def data_dirs():
        return n.data_dirs() if via_router else [data]

    def every_method():
        s = n.s
        r = s.CreateCollection(pb.CreateCollectionRequest(
            name="alpha", dimension=D, metric=pb.METRIC_L2, shards=2),
            timeout=30)
        tap.check(r.collection.name == "alpha" and r.collection.shards == 2,
                  "CreateCollection")
        pts = [pb.Point(id=i, vector=vec(i, D)) for i in range(300)]
        r = s.Upsert(pb.UpsertRequest(collection="alpha", points=pts),
                     timeout=30)
        tap.check(r.written == 300, "Upsert: written 300")
        stream = (pb.UpsertRequest(collection="alpha",
                                   points=[pb.Point(id=i, vector=vec(i, D))
                                           for i in range(b, b + 100)])
                  for b in range(300, 1000, 100))
        r = s.UpsertStream(stream, timeout=60)
        tap.check(r.written == 700, "UpsertStream: written 700 in total")
        g = s.Get(pb.GetRequest(collection="alpha", ids=[5, 123456, 7],
                                with_vectors=True), timeout=30)
        tap.check([p.id for p in g.points] == [5, 7] and
                  all(abs(a - b) < 1e-6 for a, b in
                      zip(g.points[0].vector, vec(5, D))),
                  "Get: existing ids in request order, with vectors")
        g = s.Get(pb.GetRequest(collection="alpha", ids=[5]), timeout=30)
        tap.check(len(g.points) == 1 and len(g.points[0].vector) == 0,
                  "Get without vectors")
        h = s.Search(pb.SearchRequest(collection="alpha", vector=vec(42, D),
                                      k=5, recall_target=1.0,
                                      with_vectors=True), timeout=30)
        tap.check(h.hits[0].id == 42 and h.hits[0].distance < 1e-6 and
                  len(h.hits) == 5 and len(h.hits[0].vector) == D and
                  all(h.hits[i].distance <= h.hits[i + 1].distance
                      for i in range(4)),
                  "Search: exact, best first, with vectors")
        h = s.Search(pb.SearchRequest(collection="alpha", vector=vec(42, D),
                                      k=5, nprobe=2), timeout=30)
        tap.check(len(h.hits) == 5, "Search with a probe budget")
        b = s.SearchBatch(pb.SearchBatchRequest(
            collection="alpha",
            queries=[pb.SearchRequest(vector=vec(i, D), k=3)
                     for i in (1, 2, 3)] +
            [pb.SearchRequest(collection="alpha", vector=vec(4, D), k=3)]),
            timeout=30)
        tap.check([r.hits[0].id for r in b.results] == [1, 2, 3, 4],
                  "SearchBatch: one result per query, in order")
        d = s.Delete(pb.DeleteRequest(collection="alpha",
                                      ids=[1, 2, 999999]), timeout=30)
        tap.check(d.deleted == 2, "Delete: counts ids that existed")
        h = s.Search(pb.SearchRequest(collection="alpha", vector=vec(1, D),
                                      k=3, recall_target=1.0), timeout=30)
        tap.check(all(x.id not in (1, 2) for x in h.hits),
                  "a deleted id is never found")
        s.Flush(pb.FlushRequest(collection="alpha"), timeout=60)
        info = s.DescribeCollection(pb.DescribeCollectionRequest(
            name="alpha"), timeout=30).collection
        tap.check(info.vector_count == 998 and
                  sum(x.l1_vectors for x in info.shard_stats) == 998 and
                  sum(x.l0_rows for x in info.shard_stats) == 0,
                  "Flush: everything in L1; vector_count 998")
        lst = s.ListCollections(pb.ListCollectionsRequest(), timeout=30)
        tap.check([c.name for c in lst.collections] == ["alpha"],
                  "ListCollections")
        for nm in ("p1", "p2", "p3"):
            s.CreateCollection(pb.CreateCollectionRequest(
                name=nm, dimension=4), timeout=30)
        pages, tok = [], ""
        for _ in range(5):
            r = s.ListCollections(pb.ListCollectionsRequest(
                page_size=2, page_token=tok), timeout=30)
            pages.append([c.name for c in r.collections])
            tok = r.next_page_token
            if not tok:
                break
        tap.check(pages == [["alpha", "p1"], ["p2", "p3"]],
                  "ListCollections pages: page_size, next_page_token")
        c, msg = code_of(lambda: s.ListCollections(pb.ListCollectionsRequest(
            page_token="no such/token"), timeout=30))
        tap.check(c == C.INVALID_ARGUMENT and "page_token" in msg,
                  "ListCollections: a bad page_token is INVALID_ARGUMENT")
        for nm in ("p1", "p2", "p3"):
            s.DropCollection(pb.DropCollectionRequest(name=nm), timeout=30)
        hs = hpbg.HealthStub(n.ch)
        ok = all(hs.Check(hpb.HealthCheckRequest(service=x),
                          timeout=10).status == 1
                 for x in ("", "drift.v1.Drift"))
        tap.check(ok, "health: \"\" and drift.v1.Drift SERVING")
        st = pbg.ClusterStub(n.ch).Status(pb.StatusRequest(), timeout=10)
        if via_router:
            ids = sorted(x.id for x in st.nodes)
            tap.check(len(st.nodes) == 3 and st.leader in ids and
                      all(x.state == pb.NODE_STATE_UP for x in st.nodes)
                      and [x.id for x in st.nodes
                           if x.role == pb.NODE_ROLE_LEADER] == [st.leader],
                      "Cluster.Status through the router: a cluster of "
                      "three, all UP, leader %s" % st.leader)
        else:
            tap.check(list(st.collections) == ["alpha"] and
                      len(st.nodes) == 1 and
                      st.leader == st.node_id == st.nodes[0].id and
                      st.nodes[0].role == pb.NODE_ROLE_LEADER and
                      st.nodes[0].state == pb.NODE_STATE_UP,
                      "Cluster.Status: a lone node is a cluster of one, "
                      "its leader (%s)" % st.node_id)
        sm = pbg.ClusterStub(n.ch).ShardMap(pb.ShardMapRequest(), timeout=10)
        if via_router:
            ids = [x.id for x in st.nodes]
            tap.check(sm.version == st.map_version and
                      [(a.collection, a.shard) for a in sm.shards] ==
                      [("alpha", 0), ("alpha", 1)] and
                      all(len(a.nodes) == 1 and a.nodes[0] in ids
                          for a in sm.shards),
                      "Cluster.ShardMap through the router: alpha's two "
                      "shards, each on a node of the three (%s)" %
                      [list(a.nodes) for a in sm.shards])
        else:
            tap.check(sm.version == st.map_version
                      and [(a.collection, a.shard, list(a.nodes))
                           for a in sm.shards]
                      == [("alpha", i, [st.node_id]) for i in range(2)],
                      "Cluster.ShardMap: both shards of alpha on the node")

    def errors():
        s = n.s
        before = count(n, "alpha")
        good = vec(0, D)
        nan = list(good)
        nan[3] = float("nan")
        inf = list(good)
        inf[5] = float("inf")
        cases = [
            ("wrong dimension", C.INVALID_ARGUMENT, "dimension",
             lambda: s.Upsert(pb.UpsertRequest(collection="alpha", points=[
                 pb.Point(id=5000, vector=good),
                 pb.Point(id=5001, vector=good[:-1])]), timeout=10)),
            ("NaN component", C.INVALID_ARGUMENT, "NaN",
             lambda: s.Upsert(pb.UpsertRequest(collection="alpha", points=[
                 pb.Point(id=5000, vector=good),
                 pb.Point(id=5002, vector=nan)]), timeout=10)),
            ("Inf component", C.INVALID_ARGUMENT, "infinite",
             lambda: s.Upsert(pb.UpsertRequest(collection="alpha", points=[
                 pb.Point(id=5003, vector=inf)]), timeout=10)),
            ("empty vector", C.INVALID_ARGUMENT, "0 components",
             lambda: s.Upsert(pb.UpsertRequest(collection="alpha", points=[
                 pb.Point(id=5004)]), timeout=10)),
            ("unknown collection", C.NOT_FOUND, "nope",
             lambda: s.Upsert(pb.UpsertRequest(collection="nope", points=[
                 pb.Point(id=1, vector=good)]), timeout=10)),
            ("duplicate collection", C.ALREADY_EXISTS, "alpha",
             lambda: s.CreateCollection(pb.CreateCollectionRequest(
                 name="alpha", dimension=D), timeout=10)),
            ("batch over the limit", C.RESOURCE_EXHAUSTED, "limit",
             lambda: s.Upsert(pb.UpsertRequest(collection="alpha", points=[
                 pb.Point(id=10000 + i, vector=good) for i in range(501)]),
                 timeout=30)),
            ("k = 0", C.INVALID_ARGUMENT, "k = 0",
             lambda: s.Search(pb.SearchRequest(collection="alpha",
                                               vector=good, k=0), timeout=10)),
            ("k = 10001", C.INVALID_ARGUMENT, "10001",
             lambda: s.Search(pb.SearchRequest(collection="alpha",
                                               vector=good, k=10001),
                              timeout=10)),
            ("nprobe and recall_target", C.INVALID_ARGUMENT, "not both",
             lambda: s.Search(pb.SearchRequest(
                 collection="alpha", vector=good, k=3, nprobe=2,
                 recall_target=0.9), timeout=10)),
            ("recall_target 1.5", C.INVALID_ARGUMENT, "recall_target",
             lambda: s.Search(pb.SearchRequest(
                 collection="alpha", vector=good, k=3, recall_target=1.5),
                 timeout=10)),
            ("search NaN", C.INVALID_ARGUMENT, "NaN",
             lambda: s.Search(pb.SearchRequest(collection="alpha",
                                               vector=nan, k=3), timeout=10)),
            ("batch names another collection", C.INVALID_ARGUMENT, "beta",
             lambda: s.SearchBatch(pb.SearchBatchRequest(
                 collection="alpha", queries=[pb.SearchRequest(
                     collection="beta", vector=good, k=1)]), timeout=10)),
            ("dimension 0", C.INVALID_ARGUMENT, "dimension",
             lambda: s.CreateCollection(pb.CreateCollectionRequest(
                 name="zero", dimension=0), timeout=10)),
            ("unknown metric", C.INVALID_ARGUMENT, "metric",
             lambda: s.CreateCollection(pb.CreateCollectionRequest(
                 name="m", dimension=4, metric=7), timeout=10)),
            ("drop unknown", C.NOT_FOUND, "nope",
             lambda: s.DropCollection(pb.DropCollectionRequest(name="nope"),
                                      timeout=10)),
        ]
        for bad in ("../etc", "a/b", "", "x" * 65, "sp ace", ".hidden"):
            cases.append(("bad name %r" % bad, C.INVALID_ARGUMENT, "",
                          lambda b=bad: s.CreateCollection(
                              pb.CreateCollectionRequest(name=b, dimension=4),
                              timeout=10)))
        for what, want, text, fn in cases:
            got, msg = code_of(fn)
            tap.check(got == want and text in msg,
                      "%s: %s (%s)" % (what, got, msg))
        raw = n.ch.unary_unary("/drift.v1.Drift/Upsert",
                               request_serializer=None,
                               response_deserializer=None)
        got, msg = code_of(lambda: raw(b"\x0a\xff\xff\xff\x0f", timeout=10))
        tap.check(got == C.INVALID_ARGUMENT, "malformed protobuf: %s (%s)" %
                  (got, msg))
        big = pb.UpsertRequest(collection="alpha", points=[
            pb.Point(id=20000 + i, vector=[0.5] * 40000) for i in range(450)])
        got, msg = code_of(lambda: s.Upsert(big, timeout=60))
        tap.check(got == C.RESOURCE_EXHAUSTED and "larger than max" in msg,
                  "message over 64 MiB: %s (%s)" % (got, msg[:60]))
        # A deadline that passes before the answer: with a 1 us timeout
        # grpcio reports OK when the answer arrives before its own timer
        # fires (255 of 300 searches did on a loaded 2-core machine), so
        # the call is one that takes far longer than its deadline: 10,000
        # exact searches (the handler stops between queries).
        many = pb.SearchBatchRequest(collection="alpha", queries=[
            pb.SearchRequest(vector=vec(i, D, 3), k=10, recall_target=1.0)
            for i in range(10000)])
        t0 = time.time()
        got, msg = code_of(lambda: s.SearchBatch(many, timeout=0.05))
        tap.check(got == C.DEADLINE_EXCEEDED and time.time() - t0 < 10,
                  "expired deadline: %s (%s) after %.2f s" %
                  (got, msg, time.time() - t0))
        tap.check(count(n, "alpha") == before and
                  not n.s.Get(pb.GetRequest(collection="alpha", ids=list(
                      range(5000, 5005))), timeout=10).points and
                  [c.name for c in n.s.ListCollections(
                      pb.ListCollectionsRequest(), timeout=10).collections]
                  == ["alpha"],
                  "nothing changed by any refused request")

    def restart_and_isolation():
        s = n.s
        s.CreateCollection(pb.CreateCollectionRequest(
            name="beta", dimension=D, metric=pb.METRIC_COSINE), timeout=30)
        s.Upsert(pb.UpsertRequest(collection="beta", points=[
            pb.Point(id=i, vector=vec(i, D, salt=9)) for i in range(200)]),
            timeout=30)
        q = vec(7, D)
        before_a = [(h.id, round(h.distance, 5)) for h in s.Search(
            pb.SearchRequest(collection="alpha", vector=q, k=10,
                             recall_target=1.0), timeout=30).hits]
        before_b = [(h.id, round(h.distance, 5)) for h in s.Search(
            pb.SearchRequest(collection="beta", vector=q, k=10,
                             recall_target=1.0), timeout=30).hits]
        ga = s.Get(pb.GetRequest(collection="alpha", ids=[7],
                                 with_vectors=True), timeout=10).points[0]
        gb = s.Get(pb.GetRequest(collection="beta", ids=[7],
                                 with_vectors=True), timeout=10).points[0]
        tap.check(list(ga.vector) != list(gb.vector),
                  "two collections hold different vectors under one id")
        norm = sum(x * x for x in gb.vector)
        tap.check(abs(norm - 1) < 1e-5, "COSINE stores the normalised "
                  "vector")
        rc = n.stop()
        tap.check(rc == 0, "graceful stop: exit status %r" % rc)
        n.start(0)
        s = n.s
        after_a = [(h.id, round(h.distance, 5)) for h in s.Search(
            pb.SearchRequest(collection="alpha", vector=q, k=10,
                             recall_target=1.0), timeout=30).hits]
        after_b = [(h.id, round(h.distance, 5)) for h in s.Search(
            pb.SearchRequest(collection="beta", vector=q, k=10,
                             recall_target=1.0), timeout=30).hits]
        tap.check(after_a == before_a and after_b == before_b and
                  count(n, "alpha") == 998 and count(n, "beta") == 200,
                  "restart keeps everything: same answers, same counts")
        paths = [os.path.join(d, "collections", "beta")
                 for d in data_dirs()]
        tap.check(any(os.path.isdir(p) for p in paths),
                  "beta has its directory")
        s.DropCollection(pb.DropCollectionRequest(name="beta"), timeout=30)

        def gone():
            return not any(os.path.exists(p) for p in paths) and not any(
                x.startswith(".") for d in data_dirs()
                for x in os.listdir(os.path.join(d, "collections")))
        # A cluster's holders drop their shards once they apply the new
        # map (a moment after the leader answers).
        tap.check(gone() if not via_router else
                  wait_for_true(gone, 10), "drop removes the files")
        got, _ = code_of(lambda: s.Search(pb.SearchRequest(
            collection="beta", vector=q, k=1), timeout=10))
        tap.check(got == C.NOT_FOUND, "a dropped collection is gone")

    def kill9():
        n.s.CreateCollection(pb.CreateCollectionRequest(
            name="crash", dimension=D, wal_sync=pb.WAL_SYNC_ALWAYS),
            timeout=30)
        acked = {}
        for rnd in range(3):
            stop = threading.Event()
            s = n.s

            def writer():
                i = rnd * 100000
                while not stop.is_set():
                    pts = [pb.Point(id=i + j, vector=vec(i + j, D))
                           for j in range(50)]
                    try:
                        s.Upsert(pb.UpsertRequest(collection="crash",
                                                  points=pts), timeout=10)
                    except grpc.RpcError:
                        return
                    for p in pts:
                        acked[p.id] = True
                    i += 50
            t = threading.Thread(target=writer)
            t.start()
            time.sleep(0.3 + random.random())
            n.kill()
            stop.set()
            t.join()
            n.start(0)
            ids = sorted(acked)
            found = 0
            for b in range(0, len(ids), 1000):
                g = n.s.Get(pb.GetRequest(collection="crash",
                                          ids=ids[b:b + 1000],
                                          with_vectors=True), timeout=60)
                for p in g.points:
                    if all(abs(a - c) < 1e-6
                           for a, c in zip(p.vector, vec(p.id, D))):
                        found += 1
            tap.check(found == len(ids) and len(ids) > 0,
                      "kill -9 round %d: %d of %d acknowledged points "
                      "there" % (rnd, found, len(ids)))

    def concurrency():
        n.s.CreateCollection(pb.CreateCollectionRequest(
            name="busy", dimension=D, shards=2), timeout=30)
        models = [dict() for _ in range(8)]
        errors = []
        stop = time.time() + 5

        def client(k):
            ch = grpc.insecure_channel(n.srv.addr)
            s = pbg.DriftStub(ch)
            r = random.Random(k)
            base = k * 1000000
            try:
                while time.time() < stop:
                    op = r.random()
                    if op < 0.5:
                        ids = [base + r.randrange(2000) for _ in range(20)]
                        salt = r.randrange(1000)
                        s.Upsert(pb.UpsertRequest(collection="busy", points=[
                            pb.Point(id=i, vector=vec(i, D, salt))
                            for i in ids]), timeout=30)
                        for i in ids:
                            models[k][i] = (True, salt)
                    elif op < 0.7:
                        ids = [base + r.randrange(2000) for _ in range(10)]
                        s.Delete(pb.DeleteRequest(collection="busy", ids=ids),
                                 timeout=30)
                        for i in ids:
                            # The vector it had, to search for it later.
                            models[k][i] = (False, models[k].get(
                                i, (False, 0))[1])
                    else:
                        h = s.Search(pb.SearchRequest(
                            collection="busy", vector=vec(r.randrange(99), D),
                            k=10), timeout=30)
                        if any(h.hits[i].distance > h.hits[i + 1].distance
                               for i in range(len(h.hits) - 1)):
                            errors.append("unsorted hits")
            except grpc.RpcError as e:
                errors.append("%s %s" % (e.code(), e.details()))
            ch.close()
        ts = [threading.Thread(target=client, args=(k,)) for k in range(8)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        tap.check(not errors, "8 concurrent clients: no error (%s)" %
                  errors[:3])
        live = {i: v[1] for m in models for i, v in m.items() if v[0]}
        dead = {i: v[1] for m in models for i, v in m.items() if not v[0]}
        ids = sorted(live)
        bad = 0
        for b in range(0, len(ids), 1000):
            g = n.s.Get(pb.GetRequest(collection="busy", ids=ids[b:b + 1000],
                                      with_vectors=True), timeout=60)
            got = {p.id: p for p in g.points}
            for i in ids[b:b + 1000]:
                p = got.get(i)
                if p is None or any(abs(a - c) > 1e-6 for a, c in zip(
                        p.vector, vec(i, D, live[i]))):
                    bad += 1
        tap.check(bad == 0 and ids, "every live id found by Get with its "
                  "newest vector (%d ids, %d bad)" % (len(ids), bad))
        g = n.s.Get(pb.GetRequest(collection="busy", ids=sorted(dead)),
                    timeout=60)
        tap.check(not g.points, "every deleted id absent from Get (%d)" %
                  len(dead))
        hits = 0
        for i in sorted(dead)[:200]:
            h = n.s.Search(pb.SearchRequest(collection="busy",
                                            vector=vec(i, D, dead[i]), k=10,
                                            recall_target=1.0), timeout=30)
            hits += sum(1 for x in h.hits if x.id == i)
        tap.check(hits == 0, "no deleted id returned by a search for its "
                  "own last vector")
        tap.check(count(n, "busy") == len(ids),
                  "vector_count matches the live ids (%d)" % len(ids))

    def memory_limits():
        """A node with an 8 MiB memory budget and a dimension limit of
        256: reservations, equal shares, refusals that change nothing."""
        mdata = tempfile.mkdtemp(prefix="drift-node-mem-")
        flags = ["--memory-budget", "8MiB", "--max-dimension", "256"]
        m = RouterTarget(mdata, flags) if via_router else Node(mdata, flags)
        s = m.s
        budget = 8 * MiB

        def share(name, alone):
            """The share of a collection of default memory_limit: on one
            node `alone` (budget less the reservations, split over the
            collections of default limit); through the router the same
            sum on the node that holds its (one) shard, from the map."""
            if not via_router:
                return alone
            sm = pbg.ClusterStub(m.ch).ShardMap(pb.ShardMapRequest(),
                                                timeout=10)
            holder = {a.collection: a.nodes[0] for a in sm.shards}
            here = [c for c in sm.collections
                    if holder.get(c.name) == holder[name]]
            fixed = sum(c.memory_limit for c in here)
            return (budget - fixed) // sum(1 for c in here
                                           if c.memory_limit == 0)

        def info(name):
            return s.DescribeCollection(pb.DescribeCollectionRequest(
                name=name), timeout=30).collection

        def names():
            return sorted(c.name for c in s.ListCollections(
                pb.ListCollectionsRequest(), timeout=30).collections)

        def dirs():
            roots = [os.path.join(d, "collections")
                     for d in (m.data_dirs() if via_router else [mdata])]
            return sorted(x for r in roots if os.path.isdir(r)
                          for x in os.listdir(r))
        try:
            got, msg = code_of(lambda: s.CreateCollection(
                pb.CreateCollectionRequest(name="wide", dimension=257),
                timeout=30))
            tap.check(got == C.INVALID_ARGUMENT and "257" in msg and
                      "256" in msg and "max_dimension" in msg and
                      names() == [] and dirs() == [],
                      "dimension over the node's limit: %s (%s), nothing "
                      "created" % (got, msg))
            r = s.CreateCollection(pb.CreateCollectionRequest(
                name="edge", dimension=256), timeout=30)
            tap.check(r.collection.dimension == 256,
                      "dimension at the node's limit is accepted")
            s.DropCollection(pb.DropCollectionRequest(name="edge"),
                             timeout=30)
            got, msg = code_of(lambda: s.CreateCollection(
                pb.CreateCollectionRequest(name="greedy", dimension=D,
                                           memory_limit=budget + 1),
                timeout=30))
            tap.check(got == C.RESOURCE_EXHAUSTED and "greedy" in msg and
                      str(budget) in msg and names() == [] and
                      dirs() == [],
                      "memory_limit over the budget: %s (%s), nothing "
                      "created" % (got, msg))
            got, msg = code_of(lambda: s.CreateCollection(
                pb.CreateCollectionRequest(name="tiny", dimension=D,
                                           memory_limit=16384),
                timeout=30))
            tap.check(got == C.RESOURCE_EXHAUSTED and "memtables" in msg
                      and "16384" in msg and names() == [] and
                      dirs() == [],
                      "memory_limit below the memtables' arenas: %s (%s), "
                      "nothing created" % (got, msg))
            s.CreateCollection(pb.CreateCollectionRequest(
                name="capped", dimension=D, memory_limit=MiB), timeout=30)
            s.CreateCollection(pb.CreateCollectionRequest(
                name="shared", dimension=D), timeout=30)
            a, b = info("capped"), info("shared")
            tap.check(a.memory_limit == MiB and 0 < a.memory_bytes < MiB and
                      b.memory_limit == share("shared", budget - MiB),
                      "shares: capped has its memory_limit (%d, uses %d), "
                      "shared the rest of the budget (%d)" %
                      (a.memory_limit, a.memory_bytes, b.memory_limit))
            s.CreateCollection(pb.CreateCollectionRequest(
                name="shared2", dimension=D), timeout=30)
            two = (info("shared").memory_limit, info("shared2").memory_limit)
            want = (share("shared", (budget - MiB) // 2),
                    share("shared2", (budget - MiB) // 2))
            s.DropCollection(pb.DropCollectionRequest(name="shared2"),
                             timeout=30)
            # (A cluster's holder applies the drop a moment after the
            # leader answers: its shares follow then.)
            tap.check(two == want and wait_for_true(
                lambda: info("shared").memory_limit == share(
                    "shared", budget - MiB), 10 if via_router else 0),
                      "equal shares: split over 2 collections %s, whole "
                      "again after the drop" % (two,))
            if not via_router:  # ROUTER_DIFFERENCES says why
                got, msg = code_of(lambda: s.CreateCollection(
                    pb.CreateCollectionRequest(
                        name="greedy", dimension=D,
                        memory_limit=budget - MiB + 1), timeout=30))
                tap.check(got == C.RESOURCE_EXHAUSTED and "left" in msg
                          and names() == ["capped", "shared"],
                          "memory_limit over what the budget has left: %s "
                          "(%s)" % (got, msg))
            # Fill capped until its share refuses a batch.
            written, refused, nxt = 0, None, 0
            for _ in range(200):
                ids = list(range(nxt, nxt + 400))
                pts = [pb.Point(id=i, vector=vec(i, D)) for i in ids]
                before = (count(m, "capped"), info("capped").memory_bytes)
                got, msg = code_of(lambda: s.Upsert(pb.UpsertRequest(
                    collection="capped", points=pts), timeout=60))
                if got != C.OK:
                    refused = (got, msg, ids, before)
                    break
                written += 400
                nxt += 400
            # "collection capped: memory limit: it uses U bytes, these
            # 400 points need A more, its memory_limit is L bytes (...)"
            nums = re.search(r"uses (\d+) bytes, these (\d+) points need "
                             r"(\d+) more, its memory_limit is (\d+) bytes",
                             refused[1] if refused else "")
            tap.check(refused is not None and
                      refused[0] == C.RESOURCE_EXHAUSTED and
                      "collection capped" in refused[1] and nums and
                      int(nums.group(2)) == 400 and
                      int(nums.group(4)) == MiB and
                      int(nums.group(1)) + int(nums.group(3)) > MiB >=
                      int(nums.group(1)),
                      "upsert over the memory share after %d points: %s "
                      "(%s)" % (written, refused and refused[0],
                                refused and refused[1]))
            if refused is not None:
                g = s.Get(pb.GetRequest(collection="capped",
                                        ids=refused[2]), timeout=30)
                a = info("capped")
                tap.check(not g.points and a.vector_count == written ==
                          refused[3][0] and a.memory_bytes <= MiB,
                          "the refused batch changed nothing (%d vectors, "
                          "%d of %d bytes)" % (a.vector_count,
                                               a.memory_bytes, MiB))
            r = s.Upsert(pb.UpsertRequest(collection="shared", points=[
                pb.Point(id=i, vector=vec(i, D)) for i in range(400)]),
                timeout=30)
            tap.check(r.written == 400, "another collection still writes "
                      "while capped is at its share")
            deleted = sum(s.Delete(pb.DeleteRequest(
                collection="capped", ids=list(range(b, b + 500))),
                timeout=30).deleted for b in range(0, 2000, 500))
            s.Flush(pb.FlushRequest(collection="capped"), timeout=60)
            got, msg = code_of(lambda: s.Upsert(pb.UpsertRequest(
                collection="capped", points=[
                    pb.Point(id=i, vector=vec(i, D, 5))
                    for i in range(100000, 100400)]), timeout=30))
            tap.check(deleted == 2000 and got == C.OK,
                      "deletes are accepted at the share and give memory "
                      "back after a flush: upsert %s %s" % (got, msg[:80]))
            m.stop()
            m.start(0)
            s = m.s
            a = info("capped")
            tap.check(a.memory_limit == MiB and
                      info("shared").memory_limit ==
                      share("shared", budget - MiB) and
                      a.vector_count == written - 2000 + 400,
                      "restart keeps the memory limits (%d, %d vectors)" %
                      (a.memory_limit, a.vector_count))
        finally:
            rc = m.stop()
            shutil.rmtree(mdata, ignore_errors=True)
        tap.check(rc == 0, "memory-limited node: clean stop (%r)" % rc)

    sections = [("every_method", every_method), ("errors", errors),
                ("restart_and_isolation", restart_and_isolation),
                ("kill9", kill9), ("concurrency", concurrency),
                ("memory_limits", memory_limits)]
    for name, fn in sections:
        tap.run(name, fn)
    rc = n.stop()
    tap.check(rc == 0, "clean shutdown, exit status %r" % rc)
    shutil.rmtree(data, ignore_errors=True)
    tap.done()


main()
