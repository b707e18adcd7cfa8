#!/usr/bin/python3
"""Black-box tests of replication (issue 19): three real drift-node
processes on 127.0.0.1, driven by stock grpcio.

- replication_factor 1..5, at most the nodes: more is INVALID_ARGUMENT;
- a collection of RF 3: every shard on three nodes, all in sync; writes
  acknowledged by the primary are on the replicas: after kill -9 of the
  primary of every shard in turn, the leader promotes an in-sync replica
  within 5 s, writes resume, and every acknowledged write is there, every
  deleted id stays deleted;
- while a node is down, writes go on (a majority of each shard's replicas
  is up); started again, it catches up from the primaries' logs and is in
  sync again;
- a node stopped (SIGSTOP) is dropped from the in-sync sets by the
  primaries' next writes, which go on; continued, it catches up;
- a fourth node, then Rebalance (wait) while writes go on: the fewest
  moves (each node then holds floor..ceil of the mean replicas), every
  shard's replicas in sync, every acknowledged write readable through the
  new node, no write failed.
- reads at an in-sync replica (Shard.Search with replica set): each sees
  the write acknowledged just before it, asked at once; one at a node
  out of the in-sync set, or without replica set at a non-primary, is
  FAILED_PRECONDITION;
- searches through a router spread over the in-sync replicas (every node
  serves a part of each shard's), each finding the point written just
  before through the router;
- a damaged segment on one replica (killed, a block of a segment
  overwritten, started again): the node finds its copy damaged, the
  leader takes it out of the in-sync sets (a primary hands over), the copy
  is made again and the primaries copy it back: in sync again, its log as
  long as the primary's, and no client read sees DATA_LOSS meanwhile;
- a node's data directory wiped (killed, its directory removed): started
  under its old id it is refused (its Raft log is gone), with the way out;
  under a new id it joins, and the leader copies the old node's replicas
  to it after --replace-down-after; no read meanwhile misses an
  acknowledged write or sees DATA_LOSS;
- a node added: once it is up the leader rebalances by itself (the
  fewest moves), every point still there;
- a move's progress: Status and ShardMap show the moving shard, its
  source and target, and the bytes its copy has sent out of the whole,
  growing, while it moves (a cluster of its own, copies throttled), and
  nothing once it is done.
"""
import os
import pty
import random
import signal
import subprocess
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "grpc"))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "deploy"))
from clusterlib import (C, Node, cluster, code_of, free_ports,  # noqa: E402
                        leader_of, pb, pbg, peer_stubs, replica_stubs,
                        shard_of_id, tmpdir, wait_for)
import grpc  # noqa: E402
from grpctest import Tap  # noqa: E402

D = 8
COLL = "r3"
NO_JOIN = ["--rebalance-on-join=false"]
SHARDS = 3
ROUNDS = int(os.environ.get("DRIFT_REPL_ROUNDS", "3"))
FAILOVER_S = float(os.environ.get("DRIFT_REPL_FAILOVER_S", "5"))


def vec(i, salt=0):
    r = random.Random(i * 7919 + salt)
    return [r.uniform(-1, 1) for _ in range(D)]


def shard_map(n):
    m = n.c.ShardMap(pb.ShardMapRequest(collection=COLL), timeout=5)
    return {a.shard: (list(a.nodes), set(a.in_sync)) for a in m.shards}


def retry(fn, timeout):
    """fn() until it does not raise UNAVAILABLE / FAILED_PRECONDITION /
    DEADLINE_EXCEEDED (a failover under way) or timeout; the time it
    took."""
    t0 = time.time()
    while True:
        try:
            fn()
            return time.time() - t0
        except Exception as e:  # noqa: BLE001
            code = getattr(e, "code", lambda: None)()
            if code not in (C.UNAVAILABLE, C.FAILED_PRECONDITION,
                            C.DEADLINE_EXCEEDED) or \
                    time.time() - t0 > timeout:
                raise
            time.sleep(0.05)


def vec_of(i, salt):
    """The stored form of write `salt` of id i (None: deleted)."""
    return None if salt is None else list(pb.Point(vector=vec(i, salt)).vector)


class Model:
    """What the acknowledged writes say each id holds (None: deleted)."""

    def __init__(self):
        self.want = {}
        self.maybe = {}  # id -> states a failed write may have left

    def upsert(self, n, ids, salt):
        pts = [pb.Point(id=i, vector=vec(i, salt)) for i in ids]
        try:
            n.s.Upsert(pb.UpsertRequest(collection=COLL, points=pts),
                       timeout=10)
        except Exception:
            for i in ids:
                self.maybe.setdefault(i, set()).add(salt)
            raise
        for i in ids:
            self.want[i] = salt
            self.maybe.pop(i, None)

    def delete(self, n, ids):
        try:
            n.s.Delete(pb.DeleteRequest(collection=COLL, ids=ids),
                       timeout=10)
        except Exception:
            for i in ids:
                self.maybe.setdefault(i, set()).add(None)
            raise
        for i in ids:
            self.want[i] = None
            self.maybe.pop(i, None)

    def check(self, n):
        """The ids whose answer differs from the acknowledged writes."""
        ids = sorted(self.want)
        bad = []
        for k in range(0, len(ids), 200):
            part = ids[k:k + 200]
            g = n.s.Get(pb.GetRequest(collection=COLL, ids=part,
                                      with_vectors=True), timeout=10)
            got = {p.id: list(p.vector) for p in g.points}
            for i in part:
                w = self.want[i]
                # A write that failed after the last acknowledged one may
                # have been applied (it is indeterminate).
                ok = [vec_of(i, x) for x in self.maybe.get(i, ())]
                if got.get(i) in ok:
                    continue
                if w is None:
                    if i in got:
                        bad.append((i, "deleted, but back"))
                elif got.get(i) != list(pb.Point(vector=vec(i, w)).vector):
                    bad.append((i, "missing" if i not in got else "stale"))
        return bad


def main():
    tap = Tap()
    base = tmpdir()
    # DRIFT_REPL_ONLY=progress, wiped or join: that part alone.
    only = os.environ.get("DRIFT_REPL_ONLY", "")
    # Rebalance is asked for by hand here: no rebalance of its own when a
    # node joins (join_rebalance tests that).
    nodes = cluster(base, 3, metrics=True, extra=NO_JOIN) if only == "" \
        else []
    try:
        if only == "":
            run(tap, nodes)
            replica_reads(tap, nodes)
            router_reads(tap, base, nodes)
            repair(tap, nodes)
            rebalance(tap, base, nodes)
            for n in nodes:
                n.kill()
        if only in ("", "wiped"):
            wiped(tap, base)
        if only in ("", "join"):
            join_rebalance(tap, base)
        if only in ("", "progress"):
            move_progress(tap, base)
    finally:
        for n in nodes:
            if n.alive():
                try:
                    os.kill(n.proc.pid, signal.SIGCONT)
                except OSError:
                    pass
            n.kill()
    tap.done()


def run(tap, nodes):
    n1 = nodes[0]
    leader_of(nodes)
    wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                         for x in n1.status().nodes), 30)
    for rf, want in ((4, C.INVALID_ARGUMENT), (6, C.INVALID_ARGUMENT)):
        code, msg = code_of(lambda: n1.s.CreateCollection(
            pb.CreateCollectionRequest(name="bad", dimension=D,
                                       replication_factor=rf), timeout=30))
        tap.check(code == want and "replication_factor" in msg,
                  "replication_factor %d on 3 nodes: %s (%s)" % (rf, code,
                                                                  msg))
    n1.s.CreateCollection(pb.CreateCollectionRequest(
        name=COLL, dimension=D, shards=SHARDS, replication_factor=3),
        timeout=30)
    m = shard_map(n1)
    tap.check(len(m) == SHARDS and all(
        len(nd) == 3 and ins == set(nd) for nd, ins in m.values()),
        "RF 3: every shard on three nodes, all in sync")
    model = Model()
    ids = list(range(1, 601))
    for k in range(0, len(ids), 100):
        model.upsert(nodes[k // 100 % 3], ids[k:k + 100], 1)
    model.delete(n1, ids[::7])
    tap.check(model.check(nodes[1]) == [], "writes through any node read "
              "back")
    by_id = {n.node_id: n for n in nodes}

    # kill -9 of a primary, rounds: the leader promotes a replica.
    rng = random.Random(19)
    for rnd in range(ROUNDS):
        m = shard_map(n1 if n1.alive() else nodes[1])
        shard = rnd % SHARDS
        victim = by_id[m[shard][0][0]]
        others = [n for n in nodes if n is not victim]
        victim.kill()
        t_fail = retry(lambda: model.upsert(
            others[0], ids[shard::SHARDS][:40], 10 + rnd), 30)
        tap.check(t_fail <= FAILOVER_S, "round %d: primary %s of shard %u "
                  "killed; writes resume in %.2f s (bound %.0f s)" % (
                      rnd, victim.node_id, shard, t_fail, FAILOVER_S))
        m2 = shard_map(others[0])
        moved = [s for s, (nd, _) in m2.items()
                 if m[s][0][0] == victim.node_id]
        tap.check(all(m2[s][0][0] != victim.node_id for s in moved),
                  "round %d: every shard of %s has a new primary" % (
                      rnd, victim.node_id))
        # Writes and deletes while it is down.
        for k in range(5):
            batch = rng.sample(ids, 50)
            retry(lambda: model.upsert(others[k % 2], batch, 100 + rnd * 10
                                       + k), 30)
            retry(lambda: model.delete(others[(k + 1) % 2],
                                       rng.sample(ids, 10)), 30)
        bad = model.check(others[1])
        tap.check(bad == [], "round %d: every acknowledged write there, "
                  "every deleted id gone, with %s down (%d wrong: %s)" % (
                      rnd, victim.node_id, len(bad), bad[:5]))
        victim.start()
        ok = wait_for(lambda: all(ins == set(nd) for nd, ins in
                                  shard_map(victim).values()), 30)
        tap.check(ok, "round %d: %s back, caught up, in sync again: %s" % (
            rnd, victim.node_id, shard_map(victim)))
        bad = model.check(victim)
        tap.check(bad == [], "round %d: reads through %s see every write "
                  "(%d wrong: %s)" % (rnd, victim.node_id, len(bad),
                                      bad[:5]))

    # A node stopped: dropped from the in-sync sets, writes go on.
    m = shard_map(n1)
    victim = by_id[m[0][0][1]]  # a replica of shard 0, not its primary
    others = [n for n in nodes if n is not victim]
    os.kill(victim.proc.pid, signal.SIGSTOP)
    try:
        t = retry(lambda: model.upsert(others[0], ids[:300], 500), 30)
        tap.check(t <= FAILOVER_S + 3, "a stopped replica: writes go on "
                  "(%.2f s)" % t)
        # The primary waits for its own map to have the drop; the node
        # asked may apply it a moment later.
        wait_for(lambda: victim.node_id not in shard_map(others[0])[0][1],
                 5)
        m2 = shard_map(others[0])
        tap.check(victim.node_id not in m2[0][1], "it left shard 0's "
                  "in-sync set: %s" % (m2[0],))
        for k in range(3):
            retry(lambda: model.delete(others[1], rng.sample(ids, 20)), 30)
        p0 = by_id[m2[0][0][0]]
        lag = lag_of(p0, 0, victim.node_id)
        tap.check(lag is not None and lag > 0,
                  "the primary's drift_replication_lag_ops for it: %s" %
                  lag)
    finally:
        os.kill(victim.proc.pid, signal.SIGCONT)
    ok = wait_for(lambda: all(ins == set(nd) for nd, ins in
                              shard_map(n1).values()), 30)
    tap.check(ok, "continued, it catches up: %s" % (shard_map(n1),))
    m3 = shard_map(n1)
    zero = wait_for(lambda: all(
        lag_of(by_id[nd[0]], s_, x) == 0 for s_, (nd, _) in m3.items()
        for x in nd[1:]), 10)
    tap.check(zero, "and every replica's lag is 0 again: %s" % {
        s_: [lag_of(by_id[nd[0]], s_, x) for x in nd[1:]]
        for s_, (nd, _) in m3.items()})
    # Every node's /metrics, cluster families included, in the strict
    # parser of the format (tests/deploy/promparse.py).
    import promparse
    errs, lag_type, series = [], set(), 0
    for n in nodes:
        try:
            fams = promparse.parse(n.metrics())
            f = fams.get("drift_replication_lag_ops")
            if f is not None:
                lag_type.add(f.type)
                series += len(f.samples)
        except promparse.ParseError as e:
            errs.append("%s: %s" % (n.node_id, e))
    tap.check(errs == [] and lag_type == {"gauge"} and series >= 2 * SHARDS,
              "every node's /metrics parses strictly (%s); "
              "drift_replication_lag_ops a gauge, %d series on the "
              "primaries" % (errs[:1], series))
    bad = model.check(victim)
    tap.check(bad == [], "and reads through it see every write (%d wrong)"
              % len(bad))


def lag_of(n, shard, replica):
    """drift_replication_lag_ops of COLL's shard for replica at node n
    (None: no such series)."""
    want = ('drift_replication_lag_ops{collection="%s",shard="%d",'
            'replica="%s"} ' % (COLL, shard, replica))
    for x in n.metrics().splitlines():
        if x.startswith(want):
            return int(float(x[len(want):]))
    return None


def counts(m, ids):
    c = {i: 0 for i in ids}
    for nd, _ in m.values():
        for x in nd:
            c[x] = c.get(x, 0) + 1
    return c


def rebalance(tap, base, nodes):
    n1 = nodes[0]
    n4 = Node(base, "node-4", node_id="node-4", join=n1.addr,
              extra=NO_JOIN).start()
    nodes.append(n4)
    wait_for(lambda: len(n1.status().nodes) == 4 and all(
        x.state == pb.NODE_STATE_UP for x in n1.status().nodes), 30)
    ids = [n.node_id for n in nodes]
    before = counts(shard_map(n1), ids)
    total = sum(before.values())
    lo, hi = total // len(ids), -(-total // len(ids))
    fewest = max(sum(max(0, c - hi) for c in before.values()),
                 sum(max(0, lo - c) for c in before.values()))
    model = Model()
    model.upsert(n1, list(range(5000, 5300)), 1)
    failed, retried, stop = [], [], threading.Event()

    def writer():
        # As the SDK does, an UNAVAILABLE is retried once (after 0.2 s):
        # a call that then succeeds did not fail.
        k = 0
        while not stop.is_set():
            batch = [5000 + (k * 7 + j) % 300 for j in range(10)]
            for attempt in range(2):
                try:
                    model.upsert(nodes[k % 3], batch, 2 + k)
                    break
                except Exception as e:  # noqa: BLE001
                    code = getattr(e, "code", lambda: None)()
                    if attempt == 1 or code != C.UNAVAILABLE:
                        failed.append(str(getattr(e, "details",
                                                  lambda: e)()))
                        break
                    retried.append(str(e.details()))
                    time.sleep(0.2)
            k += 1
    w = threading.Thread(target=writer)
    w.start()
    t0 = time.time()
    try:
        resp = n1.c.Rebalance(pb.RebalanceRequest(wait=True), timeout=300)
    finally:
        stop.set()
        w.join()
    el = time.time() - t0
    m = shard_map(n1)
    after = counts(m, ids)
    tap.check(resp.moves == fewest, "Rebalance with a fourth node: %d "
              "moves (the fewest: %d) in %.1f s" % (resp.moves, fewest, el))
    tap.check(all(lo <= c <= hi for c in after.values()),
              "replicas per node %s, were %s (bounds %d..%d)" % (
                  after, before, lo, hi))
    tap.check(all(len(nd) == 3 and ins == set(nd) for nd, ins in
                  m.values()), "every shard on 3 nodes, all in sync: %s" % m)
    tap.check(failed == [], "no write failed during the moves (%d: %s; "
              "%d retried once)" % (len(failed), failed[:3], len(retried)))
    bad = model.check(n4)
    tap.check(bad == [], "every acknowledged write readable through the new "
              "node (%d wrong: %s)" % (len(bad), bad[:5]))

    # RemoveNode of a node holding replicas: they move away first.
    held = counts(m, ids)["node-4"]
    failed.clear()
    retried.clear()
    stop.clear()
    w = threading.Thread(target=writer)
    w.start()
    t0 = time.time()
    try:
        n1.c.RemoveNode(pb.RemoveNodeRequest(id="node-4"), timeout=120)
    finally:
        stop.set()
        w.join()
    el = time.time() - t0
    # A replica that a write in flight on the old primary dropped comes
    # back by catch-up.
    wait_for(lambda: all(ins == set(nd) for nd, ins in
                         shard_map(n1).values()), 30)
    m = shard_map(n1)
    left = [x.id for x in n1.status().nodes]
    tap.check("node-4" not in left and all(
        "node-4" not in nd and len(nd) == 3 and ins == set(nd)
        for nd, ins in m.values()),
        "RemoveNode of node-4: its %d replicas moved away first (%.1f s), "
        "it left the map: %s" % (held, el, m))
    tap.check(failed == [], "no write failed meanwhile (%d: %s; %d retried "
              "once)" % (len(failed), failed[:3], len(retried)))
    bad = model.check(n1)
    tap.check(bad == [], "every acknowledged write there (%d wrong: %s)" % (
        len(bad), bad[:5]))
    n4.stop()
    nodes.remove(n4)
    code, msg = code_of(lambda: n1.c.RemoveNode(pb.RemoveNodeRequest(
        id=nodes[2].node_id), timeout=60))
    tap.check(code == C.FAILED_PRECONDITION and "replication factor" in msg,
              "RemoveNode that would leave 2 nodes for RF 3: %s (%s)" % (
                  code, msg))
    tap.check(len(n1.status().nodes) == 3 and all(
        x.state == pb.NODE_STATE_UP for x in n1.status().nodes),
        "and nothing changed")


def replica_reads(tap, nodes):
    """Searches at in-sync replicas see the writes acknowledged before."""
    ppb, ppbg = peer_stubs()
    n1 = nodes[0]
    by_id = {n.node_id: n for n in nodes}
    m = shard_map(n1)
    ver = n1.c.ShardMap(pb.ShardMapRequest(collection=COLL),
                        timeout=5).version
    missed, asked, k = [], 0, 0
    for i in range(30000, 30060):
        s_ = shard_of_id(i, SHARDS)
        nd, ins = m[s_]
        for r in nd[1:]:
            if r not in ins:
                continue
            v = [float(k % 7 - 3)] * D
            k += 1
            # Acknowledged by the primary (through another node), then
            # asked at the replica at once.
            retry(lambda: nodes[k % 3].s.Upsert(pb.UpsertRequest(
                collection=COLL, points=[pb.Point(id=i, vector=v)]),
                timeout=10), 30)
            got = ppbg.ShardStub(by_id[r].ch).Search(ppb.ShardSearchRequest(
                shard=s_, map_version=ver, replica=True,
                request=pb.SearchRequest(collection=COLL, vector=v, k=50,
                                         recall_target=1.0)), timeout=10)
            asked += 1
            if i not in {h.id for h in got.hits}:
                missed.append((i, r))
    tap.check(asked >= 60 and missed == [],
              "%d searches at in-sync replicas, each right after the write "
              "it looks for was acknowledged: %d missed it %s" % (
                  asked, len(missed), missed[:3]))
    r = m[0][0][1]
    code, msg = code_of(lambda: ppbg.ShardStub(by_id[r].ch).Search(
        ppb.ShardSearchRequest(shard=0, map_version=ver,
                               request=pb.SearchRequest(
                                   collection=COLL, vector=[0.0] * D,
                                   k=1)), timeout=10))
    tap.check(code == C.FAILED_PRECONDITION,
              "without replica set, at a replica: %s (%s)" % (code, msg))
    # A replica stopped while a write drops it from the in-sync set, then
    # continued and asked at once (its own map still has it in sync): it
    # refuses, or answers with the write.
    p0 = by_id[m[0][0][0]]
    r = by_id[m[0][0][1]]
    w = next(i for i in range(31000, 32000) if shard_of_id(i, SHARDS) == 0)
    v = [9.0] * D
    os.kill(r.proc.pid, signal.SIGSTOP)
    try:
        retry(lambda: p0.s.Upsert(pb.UpsertRequest(
            collection=COLL, points=[pb.Point(id=w, vector=v)]),
            timeout=10), 30)
    finally:
        os.kill(r.proc.pid, signal.SIGCONT)
    got = []
    code, msg = code_of(lambda: got.append(ppbg.ShardStub(r.ch).Search(
        ppb.ShardSearchRequest(shard=0, map_version=ver, replica=True,
                               request=pb.SearchRequest(
                                   collection=COLL, vector=v, k=50,
                                   recall_target=1.0)), timeout=10)))
    got = got[0] if got else None
    tap.check(code == C.FAILED_PRECONDITION or (
        got is not None and w in {h.id for h in got.hits}),
        "a replica dropped from the in-sync set while stopped, asked when "
        "continued: %s (%s)" % (code, msg[:150]))
    wait_for(lambda: all(ins == set(nd) for nd, ins in
                         shard_map(n1).values()), 30)


def shard_searches(n):
    """Shard.Search calls node n answered OK (its /metrics)."""
    want = ('drift_grpc_requests_total{method="drift.peer.v1.Shard/Search",'
            'code="OK"} ')
    return sum(int(float(x[len(want):])) for x in n.metrics().splitlines()
               if x.startswith(want))


def router_reads(tap, base, nodes):
    """Searches through a router, spread over the in-sync replicas."""
    port, mport = free_ports(2)
    logf = open(os.path.join(base, "router.log"), "a")
    proc = subprocess.Popen(
        [os.environ["DRIFT_ROUTER"], "--listen", "127.0.0.1:%d" % port,
         "--join", ",".join(n.addr for n in nodes), "--metrics-listen",
         "127.0.0.1:%d" % mport],
        stdout=subprocess.PIPE, stderr=logf, text=True)
    try:
        if not proc.stdout.readline().startswith("listening on"):
            raise RuntimeError("drift-router did not start")
        ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        s = pbg.DriftStub(ch)
        before = [shard_searches(n) for n in nodes]
        missed = []
        for i in range(40000, 40150):
            v = [float((i * 7) % 11 - 5), float(i % 5)] + [0.5] * (D - 2)
            retry(lambda: s.Upsert(pb.UpsertRequest(
                collection=COLL, points=[pb.Point(id=i, vector=v)]),
                timeout=10), 30)
            got = s.Search(pb.SearchRequest(collection=COLL, vector=v, k=50,
                                            recall_target=1.0), timeout=10)
            if i not in {h.id for h in got.hits}:
                missed.append(i)
        served = [shard_searches(n) - b for n, b in zip(nodes, before)]
        ch.close()
        total = sum(served)
        tap.check(missed == [] and total >= 150 * SHARDS and all(
            x >= total * 0.2 for x in served),
            "150 searches through a router, each right after its point's "
            "write: %d missed it; the shards' searches served per node %s" % (
                len(missed), served))
        # The router's fan-out latency per node, in the strict parser.
        import promparse
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % mport,
                                    timeout=10) as r:
            fams = promparse.parse(r.read().decode())
        f = fams.get("drift_router_fanout_seconds")
        counts = {lab.get("node"): v for name, lab, v in
                  (f.samples if f else [])
                  if name == "drift_router_fanout_seconds_count"}
        tap.check(f is not None and f.type == "histogram" and
                  set(counts) == {n.addr for n in nodes} and
                  all(v >= 100 for v in counts.values()),
                  "the router's /metrics parses strictly; "
                  "drift_router_fanout_seconds per node: %s" % counts)
    finally:
        proc.kill()
        proc.wait()
        logf.close()


def segments(node):
    """The .drift segment files of COLL in node's data directory."""
    root = os.path.join(node.data, "collections", COLL)
    out = []
    for d, _, files in os.walk(root):
        out += [os.path.join(d, f) for f in files if f.endswith(".drift")]
    return sorted(out)


def repair(tap, nodes):
    """A damaged segment on one replica, rebuilt from the others."""
    n1 = nodes[0]
    rpb, rpbg = replica_stubs()
    model = Model()
    ids = list(range(7000, 13000))
    for k in range(0, len(ids), 500):
        retry(lambda: model.upsert(nodes[k // 500 % 3], ids[k:k + 500], 1),
              30)
    n1.s.Flush(pb.FlushRequest(collection=COLL), timeout=120)
    # Replicas flush by their memtables' size (1,000 rows): wait for
    # segments on every node.
    wait_for(lambda: all(segments(n) for n in nodes), 30)
    leader = leader_of(nodes)
    victim = next(n for n in nodes if n is not leader and segments(n))
    victim.kill()
    seg = segments(victim)[0]
    size = os.path.getsize(seg)
    with open(seg, "r+b") as f:
        f.seek(size // 2 - 2048)
        f.write(os.urandom(4096))
    loss, other, stop = [], [], threading.Event()

    def reader():
        k = 0
        while not stop.is_set():
            n = nodes[k % 3]
            k += 1
            if not n.alive():
                continue
            try:
                n.s.Get(pb.GetRequest(collection=COLL, ids=ids[k % 20::20]),
                        timeout=10)
            except Exception as e:  # noqa: BLE001
                code = getattr(e, "code", lambda: None)()
                (loss if code == C.DATA_LOSS else other).append(
                    "%s %s: %s" % (n.node_id, code, getattr(
                        e, "details", lambda: e)()))
                time.sleep(0.05)
    t = threading.Thread(target=reader)
    t.start()
    t0 = time.time()
    def log():
        with open(victim.log) as f:
            return f.read()
    try:
        victim.start()
        found = wait_for(lambda: "copy is dropped and made again" in log(),
                         30)
        ok = found and wait_for(lambda: all(
            ins == set(nd) for nd, ins in shard_map(n1).values()), 60)
    finally:
        stop.set()
        t.join()
    el = time.time() - t0
    tap.check(ok and "repair: collection %s is damaged here" % COLL in log(),
              "a damaged segment on %s (%s): found at the start, the copy "
              "made again and in sync again in %.1f s" % (
                  victim.node_id, os.path.basename(seg), el))
    m = shard_map(n1)
    by_id = {n.node_id: n for n in nodes}
    pos = {}
    created = created_of(rpbg.ReplicaStub(n1.ch), rpb)
    for s_, (nd, _) in m.items():
        for x in (nd[0], victim.node_id):
            st = rpbg.ReplicaStub(by_id[x].ch).State(rpb.ReplicaStateRequest(
                collection=COLL, created_version=created, shard=s_),
                timeout=10)
            pos.setdefault(s_, []).append(st.last_seq)
    tap.check(all(a == b for a, b in pos.values()),
              "its log on every shard as long as the primary's: %s" % pos)
    bad = model.check(victim)
    tap.check(loss == [] and bad == [],
              "no read saw DATA_LOSS meanwhile (%d: %s; %d other errors, "
              "retried: %s), every write read back through it (%d wrong)" % (
                  len(loss), loss[:2], len(other), other[:2], len(bad)))


def wiped(tap, base):
    """A node's data directory wiped: refused under its old id, joined
    under a new one, the old one's replicas copied to it by the leader
    after --replace-down-after (a cluster of its own, 3 s)."""
    import shutil
    extra = ["--replace-down-after", "3s"] + NO_JOIN
    root = os.path.join(base, "wp")
    nodes = cluster(root, 3, extra=extra)
    new = None
    try:
        a = nodes[0]
        rpb, rpbg = replica_stubs()
        leader_of(nodes)
        wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                             for x in a.status().nodes), 30)
        a.s.CreateCollection(pb.CreateCollectionRequest(
            name=COLL, dimension=D, shards=SHARDS, replication_factor=3),
            timeout=30)
        model = Model()
        ids = list(range(20000, 23000))
        for k in range(0, len(ids), 500):
            retry(lambda: model.upsert(nodes[k // 500 % 3], ids[k:k + 500],
                                       1), 30)
        victim = nodes[2]
        victim.kill()
        shutil.rmtree(victim.data)
        os.makedirs(victim.data)
        bad, other, stop = [], [], threading.Event()
        live = nodes[:2]

        def reader():
            k = 0
            while not stop.is_set():
                n = live[k % 2]
                k += 1
                want = ids[k % 20::20]
                try:
                    r = n.s.Get(pb.GetRequest(collection=COLL, ids=want),
                                timeout=10)
                    got = {p.id for p in r.points}
                    if got != set(want):
                        bad.append("%s: %d of %d ids missing" % (
                            n.node_id, len(set(want) - got), len(want)))
                except Exception as e:  # noqa: BLE001
                    code = getattr(e, "code", lambda: None)()
                    (bad if code == C.DATA_LOSS else other).append(
                        "%s %s: %s" % (n.node_id, code, getattr(
                            e, "details", lambda: e)()))
                    time.sleep(0.05)
        t = threading.Thread(target=reader)
        t.start()
        t0 = time.time()
        try:
            # Under its old id: refused at once, with the way out.
            try:
                victim.start(timeout=30)
                refused = False
            except RuntimeError:
                refused = True
            with open(victim.log) as f:
                why = [x for x in f.read().splitlines()
                       if "empty data directory" in x]
            tap.check(refused and why and "another --node-id" in why[-1],
                      "a wiped node started under its old id: refused, "
                      "exit %s: %s" % (victim.proc.returncode,
                                       why[-1][-160:] if why else None))
            new = Node(root, "node-3b", node_id="node-3b", join=a.addr,
                       extra=extra).start()
            ok = wait_for(lambda: all(
                "node-3" not in nd and len(nd) == 3 and ins == set(nd)
                for nd, ins in shard_map(a).values()), 90)
        finally:
            stop.set()
            t.join()
        el = time.time() - t0
        m = shard_map(a)
        tap.check(ok and all("node-3b" in nd for nd, _ in m.values()),
                  "started under a new id: node-3's replicas copied to it "
                  "after 3 s down, all in sync, in %.1f s: %s" % (el, m))
        by_id = {n.node_id: n for n in nodes[:2] + [new]}
        created = created_of(rpbg.ReplicaStub(a.ch), rpb)
        pos = {}
        for s_, (nd, _) in m.items():
            for x in nd:
                st = rpbg.ReplicaStub(by_id[x].ch).State(
                    rpb.ReplicaStateRequest(collection=COLL,
                                            created_version=created,
                                            shard=s_), timeout=10)
                pos.setdefault(s_, []).append(st.last_seq)
        tap.check(all(len(set(v)) == 1 for v in pos.values()),
                  "every replica's log as long as its primary's: %s" % pos)
        wrong = model.check(new)
        tap.check(bad == [] and wrong == [],
                  "no read missed an acknowledged write or saw DATA_LOSS "
                  "meanwhile (%d: %s; %d other errors, retried: %s), every "
                  "write read back through the new node (%d wrong)" % (
                      len(bad), bad[:2], len(other), other[:2], len(wrong)))
    finally:
        for n in nodes + ([new] if new else []):
            n.kill()


def created_of(stub, rpb):
    """COLL's created_version (not in drift.v1): from a node's answer to a
    State call naming another one."""
    code, msg = code_of(lambda: stub.State(rpb.ReplicaStateRequest(
        collection=COLL, created_version=0, shard=0), timeout=10))
    return int(msg.split("map version ")[1].split()[0])


def join_rebalance(tap, base):
    """A node added: the leader rebalances once it is up, unasked."""
    root = os.path.join(base, "jr")
    nodes = cluster(root, 2, extra=["--rebalance-on-join"])
    try:
        a = nodes[0]
        leader_of(nodes)
        wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                             for x in a.status().nodes), 30)
        a.s.CreateCollection(pb.CreateCollectionRequest(
            name="jr", dimension=D, shards=6, replication_factor=1),
            timeout=30)
        ids = list(range(3000))
        for k in range(0, len(ids), 1000):
            a.s.Upsert(pb.UpsertRequest(collection="jr", points=[
                pb.Point(id=i, vector=vec(i)) for i in ids[k:k + 1000]]),
                timeout=60)
        c = Node(root, "node-3", node_id="node-3", join=a.addr,
                 extra=["--rebalance-on-join"]).start()
        nodes.append(c)

        def loads():
            m = a.c.ShardMap(pb.ShardMapRequest(collection="jr"), timeout=5)
            per = {n.node_id: 0 for n in nodes}
            for sa in m.shards:
                per[sa.nodes[0]] = per.get(sa.nodes[0], 0) + 1
            return per
        t0 = time.time()
        even = wait_for(lambda: sorted(loads().values()) == [2, 2, 2], 60)
        el = time.time() - t0
        got = a.s.Get(pb.GetRequest(collection="jr", ids=ids[::7]),
                      timeout=30)
        tap.check(even and len(got.points) == len(ids[::7]),
                  "a third node joins: the leader rebalanced by itself, "
                  "shards per node %s in %.1f s, every point sampled there "
                  "(%d)" % (loads(), el, len(got.points)))
    finally:
        for n in nodes:
            n.kill()


def read_all(fd, into):
    """What a terminal receives until its last writer closes it."""
    while True:
        try:
            b = os.read(fd, 4096)
        except OSError:
            break
        if not b:
            break
        into.append(b)
    os.close(fd)


def move_progress(tap, base):
    """One move, throttled: its progress in Status and ShardMap."""
    rate = ["--copy-rate", "1MiB"] + NO_JOIN
    nodes = cluster(os.path.join(base, "mp"), 2, extra=rate)
    try:
        a = nodes[0]
        leader_of(nodes)
        dim, n_pts = 32, 40000
        a.s.CreateCollection(pb.CreateCollectionRequest(
            name="mv", dimension=dim, shards=4, replication_factor=1),
            timeout=30)
        rng = random.Random(7)
        for k in range(0, n_pts, 1000):
            a.s.Upsert(pb.UpsertRequest(collection="mv", points=[
                pb.Point(id=i, vector=[rng.uniform(-1, 1)
                                       for _ in range(dim)])
                for i in range(k, k + 1000)]), timeout=60)
        a.s.Flush(pb.FlushRequest(collection="mv"), timeout=120)
        c = Node(os.path.join(base, "mp"), "mp-3", node_id="mp-3",
                 join=a.addr, extra=rate).start()
        nodes.append(c)
        wait_for(lambda: len(a.status().nodes) == 3 and all(
            x.state == pb.NODE_STATE_UP for x in a.status().nodes), 30)
        ids = [n.node_id for n in nodes]
        first = {sa.shard: list(sa.nodes) for sa in a.c.ShardMap(
            pb.ShardMapRequest(collection="mv"), timeout=10).shards}
        before = {i: sum(nd == [i] for nd in first.values()) for i in ids}
        fewest = sum(max(0, c - 2) for c in before.values())
        # drift-cli rebalance --wait, its progress on a terminal.
        tty, tty_peer = pty.openpty()
        cli = subprocess.Popen(
            [os.environ["DRIFT_CLI"], "--addr", a.addr, "rebalance",
             "--wait"], stdout=subprocess.PIPE, stderr=tty_peer)
        os.close(tty_peer)
        shown = []
        reader = threading.Thread(target=read_all, args=(tty, shown))
        reader.start()
        seen, in_map, bad_map = {}, [], []
        t0 = time.time()
        while time.time() - t0 < 120:
            st = nodes[1].c.Status(pb.StatusRequest(), timeout=10)
            m = nodes[1].c.ShardMap(pb.ShardMapRequest(collection="mv"),
                                    timeout=10)
            for mv in st.moves:
                seen.setdefault((mv.collection, mv.shard, getattr(
                    mv, "from"), mv.to), []).append(
                        (mv.bytes_done, mv.bytes_total))
            for sa in m.shards:
                if sa.HasField("move"):
                    in_map.append(sa.shard)
                    if sa.move.to not in sa.nodes or \
                            getattr(sa.move, "from") not in sa.nodes:
                        bad_map.append(str(sa))
            if not st.moves and cli.poll() is not None:
                break
            time.sleep(0.05)
        el = time.time() - t0
        out = cli.communicate(timeout=60)[0].decode()
        reader.join(10)
        shown = b"".join(shown).decode(errors="replace")
        moves = int(out.split()[0]) if out[:1].isdigit() else -1
        tap.check(cli.returncode == 0 and out.strip().endswith(
            "shard moves done") and shown.count("moving mv/") == moves and
            "bytes/s" in shown,
            "drift-cli rebalance --wait: %r, on its terminal a line per "
            "move and a bar of its bytes: %r" % (
                out.strip(), shown.replace("\r", "|")[-300:]))
        final = {sa.shard: list(sa.nodes) for sa in a.c.ShardMap(
            pb.ShardMapRequest(collection="mv"), timeout=10).shards}
        tap.check(moves == fewest and len(seen) == fewest and all(
            c == "mv" and first[s] == [f] and final[s] == [t]
            for c, s, f, t in seen),
            "Rebalance: %d moves (the fewest: %d), each seen in Status with "
            "its source and target: %s" % (moves, fewest,
                                            sorted(seen)))
        grew = {k: sorted({d for d, t in v if t > 0}) for k, v in
                seen.items()}
        tap.check(seen and all(d <= t for v in seen.values() for d, t in v)
                  and all(len(g) >= 2 for g in grew.values()),
                  "their progress in Status, bytes done growing to the "
                  "whole: %s (%.1f s, 1 MiB/s)" % (
                      {k[1]: (g[0], g[-1], max(t for _, t in seen[k]))
                       for k, g in grew.items() if g}, el))
        tap.check(in_map and not bad_map and set(in_map) ==
                  {k[1] for k in seen},
                  "ShardMap shows the same moves on their shards (%d "
                  "samples, %s)" % (len(in_map), bad_map[:1]))
        m = nodes[1].c.ShardMap(pb.ShardMapRequest(collection="mv"),
                                timeout=10)
        st = a.c.Status(pb.StatusRequest(), timeout=10)
        loads = sorted(x.shards for x in st.nodes)
        tap.check(not st.moves and loads == [1, 1, 2] and
                  not any(sa.HasField("move") for sa in m.shards),
                  "done: no move shown, replicas per node %s" % loads)
        got = a.s.Get(pb.GetRequest(collection="mv", ids=list(
            range(0, n_pts, 97))), timeout=30)
        tap.check(len(got.points) == len(range(0, n_pts, 97)),
                  "every point sampled is there after the move (%d)" %
                  len(got.points))
    finally:
        for n in nodes:
            n.kill()


if __name__ == "__main__":
    main()
