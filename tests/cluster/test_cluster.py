#!/usr/bin/python3
"""Black-box tests of the cluster (issue 17): real drift-node processes on
127.0.0.1 with ephemeral ports, driven by stock grpcio.

- three nodes form a cluster through --join: one leader, voters, every
  node UP, the same map everywhere; a fourth is a standby, promoted when
  a voter is removed;
- collections through Raft: CreateCollection at a follower (forwarded to
  the leader), every node opens the shards the map gives it, writes,
  reads, counts and searches at any node (a node forwards what it does
  not hold), DropCollection closes them everywhere; WatchShardMap streams each new
  version, across a leader change;
- every bad input of AddNode and RemoveNode: a precise status and the map
  version unchanged;
- kill -9 of the leader, DRIFT_CLUSTER_ROUNDS rounds (3 in make test, 10
  and more in make test-cluster-long): a new leader, and a CreateCollection
  through a surviving node succeeds, within 2 s;
- a partition (a Raft proxy the test controls): the minority side refuses
  metadata changes with UNAVAILABLE, the majority goes on, and no term
  ever has two leaders; healed, the old leader catches up;
- SIGTERM of all three, restart: the same map and collections;
- a node whose data directory was wiped rejoins as a new node after
  RemoveNode;
- a data directory of before the cluster (no node.id, no raft/) opens as
  a cluster of one that adopts its collections, data intact.
"""
import os
import random
import shutil
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "grpc"))
from clusterlib import (C, Node, cluster, code_of, leader_of,  # noqa: E402
                        map_of, pb, peer_stubs, settle, shard_of_id,
                        tmpdir, wait_for)
from grpctest import Tap  # noqa: E402
import grpc  # noqa: E402

ROUNDS = int(os.environ.get("DRIFT_CLUSTER_ROUNDS", "3"))
# The fail-over bound: 2 s (the issue's), looser in make test, which runs
# beside the rest of the suite on two cores.
# DRIFT_CLUSTER_ONLY=partition,...: only those parts (to chase a failure).
ONLY = [x for x in os.environ.get("DRIFT_CLUSTER_ONLY", "").split(",") if x]
FAILOVER_S = float(os.environ.get("DRIFT_CLUSTER_FAILOVER_S", "2"))
D = 8


def vec(i, salt=0):
    r = random.Random(i * 7919 + salt)
    return [r.uniform(-1, 1) for _ in range(D)]


def create(n, name, shards=3, timeout=30):
    return n.s.CreateCollection(pb.CreateCollectionRequest(
        name=name, dimension=D, shards=shards), timeout=timeout)


def owner_of(nodes, n, coll, shard):
    """The node holding shard `shard` of coll in n's map."""
    m = n.c.ShardMap(pb.ShardMapRequest(collection=coll), timeout=5)
    for a in m.shards:
        if a.shard == shard:
            return next(x for x in nodes if x.node_id == a.nodes[0])
    return None


def found_on(n, i):
    """Whether node n answers Get of id i with its vector."""
    g = n.s.Get(pb.GetRequest(collection="c1", ids=[i], with_vectors=True),
                timeout=5)
    want = list(pb.Point(vector=vec(i)).vector)
    return len(g.points) == 1 and list(g.points[0].vector) == want


def main():
    tap = Tap()
    base = tmpdir()
    nodes = []

    def formation():
        nodes.extend(cluster(base, 3))
        for n in nodes:
            n.node_id = n.status().node_id
        ld = leader_of(nodes)
        wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                             for x in nodes[0].status().nodes))
        sts = [n.status() for n in nodes]
        roles = sorted(x.role for x in sts[0].nodes)
        tap.check(ld is not None and
                  all(s.leader == ld.node_id for s in sts) and
                  len(sts[0].nodes) == 3 and
                  roles == sorted([pb.NODE_ROLE_LEADER, pb.NODE_ROLE_VOTER,
                                   pb.NODE_ROLE_VOTER]) and
                  all(x.state == pb.NODE_STATE_UP for x in sts[0].nodes),
                  "three nodes form a cluster through --join: leader %s, "
                  "two voters, all UP" % (ld and ld.node_id))
        tap.check(len({s.cluster_id for s in sts}) == 1 and
                  sts[0].cluster_id != "" and
                  wait_for(lambda: len({map_of(n) for n in nodes}) == 1),
                  "one cluster id and one map on every node")

    def collections():
        ld = leader_of(nodes)
        fol = next(n for n in nodes if n is not ld)
        r = create(fol, "c1", shards=3)
        tap.check(r.collection.name == "c1" and r.collection.shards == 3,
                  "CreateCollection at a follower (forwarded to the leader)")
        v, shards = map_of(fol)
        holders = {s[2][0] for s in shards if s[0] == "c1"}
        tap.check(len(holders) == 3 and
                  all(map_of(n) == (v, shards) for n in nodes),
                  "its three shards on three nodes, the same map "
                  "everywhere (version %d)" % v)
        opened = all("c1" in list(n.status().collections) for n in nodes)
        tap.check(opened, "every holder has opened its shard")
        # Writes and reads at any node: a node forwards what it does not
        # hold to the shards' nodes.
        ok = 0
        for i in range(60):
            n = nodes[i % 3]
            code, _ = code_of(lambda: n.s.Upsert(pb.UpsertRequest(
                collection="c1", points=[pb.Point(id=i, vector=vec(i))]),
                timeout=10))
            ok += code == C.OK
        tap.check(ok == 60, "60 upserts, each at any of the three nodes: "
                  "all succeed (forwarded to the holder; %d)" % ok)
        found = sum(1 for i in range(60) for n in nodes if found_on(n, i))
        tap.check(found == 180, "Get of each id at each node: all 60 read "
                  "back everywhere (%d of 180)" % found)
        d = [n.s.DescribeCollection(pb.DescribeCollectionRequest(
            name="c1"), timeout=10).collection.vector_count for n in nodes]
        tap.check(d == [60, 60, 60], "DescribeCollection at each node "
                  "counts the whole collection (%s)" % d)
        big = nodes[0].s.Upsert(pb.UpsertRequest(collection="c1", points=[
            pb.Point(id=i, vector=vec(i)) for i in range(60, 300)]),
            timeout=10)
        hits = [nodes[k].s.Search(pb.SearchRequest(
            collection="c1", vector=vec(5), k=3, recall_target=1.0),
            timeout=10).hits[0].id for k in range(3)]
        tap.check(big.written == 240 and hits == [5, 5, 5],
                  "a batch over three shards at one node, and an exact "
                  "search at each node, find the point itself (%s)" % hits)
        code, msg = code_of(lambda: create(nodes[2], "c1"))
        tap.check(code == C.ALREADY_EXISTS,
                  "CreateCollection of an existing name: ALREADY_EXISTS "
                  "(%s)" % msg[:80])
        v0 = map_of(nodes[0])[0]
        nodes[2].s.DropCollection(pb.DropCollectionRequest(name="c1"),
                                  timeout=10)
        tap.check(all("c1" not in list(n.status().collections)
                      for n in nodes) and
                  all(map_of(n)[0] > v0 for n in nodes),
                  "DropCollection through another node: closed "
                  "everywhere, the map version moved on")

    def watch():
        n = nodes[1]
        v = map_of(n)[0]
        got = []

        def reader():
            try:
                for m in n.c.WatchShardMap(pb.WatchShardMapRequest(
                        known_version=v), timeout=30):
                    got.append(m.version)
                    if len(got) >= 2:
                        return
            except Exception:  # noqa: BLE001 - counted below
                pass
        t = threading.Thread(target=reader)
        t.start()
        time.sleep(0.3)
        create(nodes[0], "w1", shards=1)
        wait_for(lambda: len(got) >= 1, timeout=5)
        # A leader change while the stream is open.
        ld = leader_of(nodes)
        ld.stop()
        ld.start()
        leader_of(nodes, timeout=20)
        # A node may learn the new leader a moment after the others: "no
        # Raft leader is known" comes before anything is proposed, so the
        # create is retried on it (seen beside other suites on 2 cores).
        t_end = time.time() + 10
        while True:
            try:
                create(n, "w2", shards=1)
                break
            except grpc.RpcError as e:
                if "no Raft leader is known" not in (e.details() or "") \
                        or time.time() > t_end:
                    raise
                time.sleep(0.1)
        t.join(20)
        tap.check(len(got) >= 2 and got[0] > v and got[-1] > got[0],
                  "WatchShardMap: a message per new version (%s after "
                  "%d), across a leader change" % (got, v))
        # The parts after this one count on a quiet map (bad_inputs: the
        # version unchanged): the restarted node's DOWN and UP marks, if
        # any, come first.
        tap.check(settle(nodes) is not None,
                  "after the restart: one map everywhere, every node UP, "
                  "for 2 s")

    def bad_inputs():
        ld = leader_of(nodes)
        v = map_of(ld)[0]
        other = Node(base, "other").start()  # a cluster of its own
        cases = [
            ("malformed address", C.INVALID_ARGUMENT, "HOST:PORT",
             lambda: nodes[1].c.AddNode(pb.AddNodeRequest(
                 address="no-port"), timeout=10)),
            ("unreachable address", C.UNAVAILABLE, "does not answer",
             lambda: nodes[1].c.AddNode(pb.AddNodeRequest(
                 address="127.0.0.1:1"), timeout=10)),
            ("a node of another cluster", C.FAILED_PRECONDITION,
             "another cluster",
             lambda: nodes[2].c.AddNode(pb.AddNodeRequest(
                 address=other.addr), timeout=10)),
            ("a duplicate id", C.ALREADY_EXISTS, "already a member",
             lambda: nodes[1].c.AddNode(pb.AddNodeRequest(
                 address=nodes[2].addr), timeout=10)),
            ("an id that is not the node's", C.INVALID_ARGUMENT, "not",
             lambda: nodes[1].c.AddNode(pb.AddNodeRequest(
                 address=nodes[2].addr, id="node-x"), timeout=10)),
            ("RemoveNode of an unknown id", C.NOT_FOUND, "node-nope",
             lambda: nodes[1].c.RemoveNode(pb.RemoveNodeRequest(
                 id="node-nope"), timeout=10)),
            ("ShardMap of an unknown collection", C.NOT_FOUND, "nope",
             lambda: nodes[1].c.ShardMap(pb.ShardMapRequest(
                 collection="nope"), timeout=10)),
        ]
        for what, want, text, fn in cases:
            code, msg = code_of(fn)
            v2 = map_of(ld)[0]
            tap.check(code == want and text in msg and v2 == v,
                      "%s: %s (%s), map unchanged (version %d%s)" %
                      (what, code, msg[:120], v,
                       "" if v2 == v else ", now %d" % v2))
        # The last voter of a cluster of one.
        oid = other.status().node_id
        code, msg = code_of(lambda: other.c.RemoveNode(
            pb.RemoveNodeRequest(id=oid), timeout=10))
        tap.check(code == C.FAILED_PRECONDITION and "last" in msg,
                  "RemoveNode of the last voter: %s (%s)" % (code, msg[:100]))
        rc = other.stop()
        tap.check(rc == 0, "a cluster of one stops cleanly (exit %r)" % rc)

    def kill_rounds():
        times = []
        for r in range(ROUNDS):
            ld = leader_of(nodes)
            if ld is None:
                tap.check(False, "round %d: no leader before the kill" % r)
                return
            rest = [n for n in nodes if n is not ld]
            ld.kill()
            t0 = time.time()
            done = None
            while time.time() - t0 < 10:
                code, _ = code_of(lambda: create(rest[r % 2], "k%d" % r,
                                                 shards=1, timeout=3))
                if code in (C.OK, C.ALREADY_EXISTS):
                    done = time.time() - t0
                    break
                time.sleep(0.02)
            times.append(done if done is not None else 99)
            nl = leader_of(rest, timeout=1)
            print("# round %d: killed %s, %s leads, create after %.3f s" %
                  (r, ld.node_id, nl and nl.node_id, times[-1]), flush=True)
            ld.start()
            wait_for(lambda: map_of(ld) == map_of(rest[0]), timeout=10)
        times.sort()
        tap.check(all(t < FAILOVER_S for t in times),
                  "kill -9 of the leader, %d rounds: a CreateCollection "
                  "through a survivor succeeds within %g s (p50 %.2f s, "
                  "max %.2f s)" % (ROUNDS, FAILOVER_S, times[len(times) // 2],
                                   times[-1]))

    def restart_all():
        # The placement, not the version: the leader marks the nodes it
        # sees stop DOWN, and UP again, which are map versions too.
        before = {n.node_id: map_of(n)[1] for n in nodes}
        cols = sorted(nodes[0].status().collections)
        rcs = [n.stop() for n in nodes]
        for n in nodes:
            n.start()
        ld = leader_of(nodes, timeout=20)
        after = {n.node_id: wait_for(lambda: map_of(n)[1], timeout=10)
                 for n in nodes}
        up = wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                                  for x in nodes[0].status().nodes))
        tap.check(rcs == [0, 0, 0] and ld is not None and before == after
                  and up,
                  "SIGTERM of all three (exit %s), restart: a leader, the "
                  "same placement, every node UP" % rcs)
        tap.check(sorted(nodes[0].status().collections) == cols,
                  "the same collections open (%s)" % cols)

    def standby_and_rejoin():
        n4 = Node(base, "node-4", join=nodes[1].addr).start()
        st = wait_for(lambda: [x for x in n4.status().nodes
                               if x.id == n4.status().node_id and
                               x.state == pb.NODE_STATE_UP])
        tap.check(st and st[0].role == pb.NODE_ROLE_STANDBY,
                  "a fourth node joins as a standby")
        old = n4.status().node_id
        # Remove a voter that holds no shard: the standby is promoted.
        for c in {a[0] for a in map_of(nodes[0])[1]}:
            nodes[0].s.DropCollection(pb.DropCollectionRequest(name=c),
                                      timeout=10)
        victim = nodes[2]
        nodes[0].c.RemoveNode(pb.RemoveNodeRequest(id=victim.node_id),
                              timeout=10)
        prom = wait_for(lambda: [x for x in nodes[0].status().nodes
                                 if x.id == old and
                                 x.role == pb.NODE_ROLE_VOTER], timeout=10)
        tap.check(prom and not any(x.id == victim.node_id
                                   for x in nodes[0].status().nodes),
                  "RemoveNode of a voter: it leaves the map, the standby "
                  "becomes a voter")
        victim.stop()
        # node-4 removed, its directory wiped: it rejoins as a new node.
        nodes[0].c.RemoveNode(pb.RemoveNodeRequest(id=old), timeout=10)
        n4.stop()
        n4.wipe()
        n4.start()
        new = n4.status().node_id
        ids = [x.id for x in nodes[0].status().nodes]
        tap.check(new != old and new in ids and old not in ids,
                  "a wiped node rejoins as a new node (%s, was %s)" %
                  (new, old))
        n4.stop()
        nodes.remove(victim)

    def partition():
        pbase = tmpdir()
        pn = cluster(pbase, 3, proxies=True)
        try:
            for n in pn:
                n.node_id = n.status().node_id
            # Every Raft configuration change committed (a node turns UP
            # only then) and known to all: a partition before that would
            # leave the majority without a quorum of its configuration.
            wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                                 for n in pn for x in n.status().nodes),
                     timeout=20)
            leaders = {}
            stop = threading.Event()

            def sample():
                while not stop.is_set():
                    for n in pn:
                        try:
                            s = n.status(timeout=1)
                        except Exception:  # noqa: BLE001 - a sample lost
                            continue
                        if s.leader == s.node_id:
                            leaders.setdefault(s.term, set()).add(s.node_id)
                    time.sleep(0.02)
            t = threading.Thread(target=sample)
            t.start()
            ld = leader_of(pn)
            rest = [n for n in pn if n is not ld]
            # Cut the leader off: its proxy refuses the others, theirs
            # refuse it.
            ld.proxy.block({n.proxy.addr for n in rest})
            for n in rest:
                n.proxy.block({ld.proxy.addr})
            time.sleep(2.5)  # past an election timeout and more
            code, msg = code_of(lambda: create(ld, "minority", shards=1,
                                               timeout=5))
            tap.check(code == C.UNAVAILABLE,
                      "partition: the minority side refuses a metadata "
                      "change: %s (%s)" % (code, msg[:100]))
            nl = leader_of(rest)
            code, msg = code_of(lambda: create(rest[0], "majority",
                                               shards=1))
            tap.check(nl is not None and nl is not ld and code == C.OK,
                      "the majority elects %s and goes on (%s %s)" %
                      (nl and nl.node_id, code, msg[:80]))
            for n in pn:
                n.proxy.block(set())
            ok = wait_for(lambda: map_of(ld) == map_of(rest[0]), timeout=15)
            tap.check(ok and "minority" not in
                      [a[0] for a in map_of(ld)[1]],
                      "healed: the old leader catches up with the map")
            stop.set()
            t.join()
            two = {t: s for t, s in leaders.items() if len(s) > 1}
            tap.check(not two and len(leaders) >= 2,
                      "no term had two leaders (%d terms seen)" %
                      len(leaders))
            # A node that lags behind the map: the leader's Raft traffic
            # to it cut while a create goes through it (the leader passes
            # over a holder that has not opened its shard in 2 s), healed
            # as the create returns. The node has not applied the create
            # yet: its ShardMap catches up with the leader's version
            # instead of saying the collection does not exist.
            settle(pn)
            ld = leader_of(pn)
            f = next(n for n in pn if n is not ld)
            f.proxy.block({ld.proxy.addr})
            code, msg = code_of(lambda: create(f, "lag", shards=3))
            f.proxy.block(set())
            code2, msg2 = code_of(lambda: f.c.ShardMap(pb.ShardMapRequest(
                collection="lag"), timeout=10))
            tap.check(code == C.OK and code2 == C.OK,
                      "a create through a node cut off from the leader's "
                      "Raft traffic (%s %s), then ShardMap at it as it "
                      "catches up: %s %s" % (code, msg[:80], code2,
                                             msg2[:100]))
        finally:
            rcs = [n.stop() for n in pn]
            for n in pn:
                n.proxy.close()
            tap.check(rcs == [0, 0, 0], "the partitioned cluster stops "
                      "cleanly (exit %s)" % rcs)
            if not os.environ.get("DRIFT_CLUSTER_KEEP"):
                shutil.rmtree(pbase, ignore_errors=True)
            else:
                print("# partition logs in %s" % pbase, flush=True)

    def peer_api():
        ppb, ppbg = peer_stubs()
        n0 = nodes[0]
        create(n0, "pa", shards=3)
        sm = n0.c.ShardMap(pb.ShardMapRequest(collection="pa"), timeout=5)
        ver = sm.version
        byid = {n.node_id: n for n in nodes}
        holder = {a.shard: byid[a.nodes[0]] for a in sm.shards}
        stub = {s: ppbg.ShardStub(h.ch) for s, h in holder.items()}
        ids = list(range(300))
        of = {i: shard_of_id(i, 3) for i in ids}
        written = 0
        for s in range(3):
            mine = [i for i in ids if of[i] == s]
            r = stub[s].Upsert(ppb.ShardUpsertRequest(
                shard=s, map_version=ver, request=pb.UpsertRequest(
                    collection="pa", points=[pb.Point(id=i, vector=vec(i))
                                             for i in mine])), timeout=10)
            written += r.written
        tap.check(written == 300, "Shard.Upsert: each shard's ids to its "
                  "holder (%d written)" % written)
        other = next(i for i in ids if of[i] != 0)
        code, msg = code_of(lambda: stub[0].Upsert(ppb.ShardUpsertRequest(
            shard=0, map_version=ver, request=pb.UpsertRequest(
                collection="pa", points=[pb.Point(id=other,
                                                  vector=vec(other))])),
            timeout=10))
        tap.check(code == C.INVALID_ARGUMENT and "belongs to shard" in msg,
                  "Shard.Upsert of an id of another shard: %s (%s)" %
                  (code, msg[:100]))
        wrong = next(n for n in nodes if n is not holder[0])
        code, msg = code_of(lambda: ppbg.ShardStub(wrong.ch).Search(
            ppb.ShardSearchRequest(shard=0, map_version=ver,
                                   request=pb.SearchRequest(
                                       collection="pa", vector=vec(1), k=5)),
            timeout=10))
        tap.check(code == C.FAILED_PRECONDITION and
                  holder[0].node_id in msg and "map version" in msg,
                  "Shard.Search at a node without the shard: %s (%s)" %
                  (code, msg[:120]))
        # Exact per-shard answers, merged, equal brute force.
        import numpy as np
        data = np.array([pb.Point(vector=vec(i)).vector for i in ids],
                        dtype=np.float32)
        good = 0
        for qi in range(20):
            q = np.array(pb.Point(vector=vec(1000 + qi)).vector,
                         dtype=np.float32)
            hits = []
            for s in range(3):
                r = stub[s].Search(ppb.ShardSearchRequest(
                    shard=s, map_version=ver, request=pb.SearchRequest(
                        collection="pa", vector=list(q), k=10,
                        recall_target=1.0)), timeout=10)
                hits += [(h.distance, h.id) for h in r.hits]
            got = [i for _, i in sorted(hits)[:10]]
            want = list(np.argsort(((data - q) ** 2).sum(1),
                                   kind="stable")[:10])
            good += got == want
        tap.check(good == 20, "Shard.Search, exact, merged over the three "
                  "shards: brute force's top 10 for %d of 20 queries" % good)
        g = stub[1].Get(ppb.ShardGetRequest(
            shard=1, map_version=ver, request=pb.GetRequest(
                collection="pa", ids=[i for i in ids if of[i] == 1][:5],
                with_vectors=True)), timeout=10)
        tap.check(len(g.points) == 5 and all(
            list(p.vector) == list(pb.Point(vector=vec(p.id)).vector)
            for p in g.points), "Shard.Get at the holder")
        counts = [stub[s].Describe(ppb.ShardDescribeRequest(
            shard=s, map_version=ver, collection="pa"),
            timeout=10).vector_count for s in range(3)]
        tap.check(counts == [sum(1 for i in ids if of[i] == s)
                             for s in range(3)],
                  "Shard.Describe: each shard's count (%s)" % counts)
        code, msg = code_of(lambda: stub[0].Describe(ppb.ShardDescribeRequest(
            shard=7, map_version=ver, collection="pa"), timeout=10))
        tap.check(code == C.INVALID_ARGUMENT,
                  "Shard.Describe of shard 7 of 3: %s (%s)" % (code, msg[:80]))
        n0.s.DropCollection(pb.DropCollectionRequest(name="pa"), timeout=10)

    def adopt_old_directory():
        n = Node(base, "old").start()
        n.s.CreateCollection(pb.CreateCollectionRequest(
            name="legacy", dimension=D, shards=2), timeout=10)
        n.s.Upsert(pb.UpsertRequest(collection="legacy", points=[
            pb.Point(id=i, vector=vec(i)) for i in range(200)]), timeout=10)
        n.stop()
        # What a data directory written before the cluster holds.
        shutil.rmtree(os.path.join(n.data, "raft"))
        os.unlink(os.path.join(n.data, "node.id"))
        n.start()
        m = n.c.ShardMap(pb.ShardMapRequest(collection="legacy"), timeout=5)
        me = n.status().node_id
        d = n.s.DescribeCollection(pb.DescribeCollectionRequest(
            name="legacy"), timeout=5).collection
        g = n.s.Get(pb.GetRequest(collection="legacy", ids=[0, 199],
                                  with_vectors=True),
                    timeout=5)
        tap.check(len(m.shards) == 2 and
                  all(list(a.nodes) == [me] for a in m.shards) and
                  d.vector_count == 200 and len(g.points) == 2 and
                  list(g.points[1].vector) == [
                      pb.Point(vector=vec(199)).vector[i]
                      for i in range(D)],
                  "a data directory of before the cluster: adopted by a "
                  "cluster of one, 200 vectors intact")
        rc = n.stop()
        tap.check(rc == 0, "and stops cleanly (exit %r)" % rc)

    for name, fn in [("formation", formation), ("collections", collections),
                     ("watch", watch), ("peer_api", peer_api),
                     ("bad_inputs", bad_inputs),
                     ("kill_rounds", kill_rounds),
                     ("restart_all", restart_all),
                     ("standby_and_rejoin", standby_and_rejoin),
                     ("partition", partition),
                     ("adopt_old_directory", adopt_old_directory)]:
        if ONLY and name not in ONLY:
            continue
        tap.run(name, fn)
    for n in nodes:
        rc = n.stop()
        tap.check(rc == 0, "%s stops cleanly (exit %r)" % (n.name, rc))
    if os.environ.get("DRIFT_CLUSTER_KEEP"):
        print("# logs in %s" % base, flush=True)
    else:
        shutil.rmtree(base, ignore_errors=True)
    tap.done()


if __name__ == "__main__":
    main()
