#!/usr/bin/python3
"""Fault rounds under load (issue 19's tests): three drift-nodes and one
drift-router on 127.0.0.1, one collection (6 shards, replication factor
DRIFT_CHAOS_RF, default 3), tests/chaos/loadgen.py running Upsert, Delete,
Get and Search through the router while DRIFT_CHAOS_ROUNDS rounds (3 in
make test, 20 in make test-chaos) each do:

- kill -9 of a node (the Raft leader in the first round, then a random
  one), down DOWN_S, restarted;
- SIGSTOP of a random node for STOP_S (the load goes on), SIGCONT;
- kill -9 of the router, restarted on the same port

(DRIFT_CHAOS_KINDS: which of kill, stop, router; all by default). Then
(DRIFT_CHAOS_REBALANCE=0 leaves it out) a fourth node is added and
Rebalance (wait) runs through the router under the load: the replicas
moved are at most 1.1x the fewest (the larger of the replicas above
ceil(mean) and those missing below floor(mean), from the map before),
every node holds floor..ceil after, every shard is on RF nodes in sync,
and no client call fails from the node's start to the Rebalance's end;
the write p99 of the 10 s before, of the Rebalance and of the 10 s after
is printed with its time. Then DRIFT_CHAOS_MOVE_KILLS rounds each add a
node, start Rebalance without waiting, watch the leader's map until a
shard has a replica more than RF (the move's target added) and kill -9
the target, or (every other round) the shard's primary, which copies the
shard to it; while it is down the leader's map keeps every shard on >= RF
nodes, a majority of them in sync on live nodes (RF >= 3); once it is
back a second Rebalance (wait) leaves every node within floor..ceil and
every shard on RF nodes in sync. DRIFT_CHAOS_BULK vectors in a second
collection make the moves copy real data (50,000 of dimension 64 by
default, 20,000 in make test).

After each fault the test waits until the cluster is healthy (a leader,
every node UP, a Get through the router answers for every shard). After
the faults: the final read of every key, then tests/chaos/checker.py:

- 0 acknowledged writes lost, 0 deleted ids back, 0 stale Gets (and no
  phantom, corrupt, non-linearizable or undecided key);
- while a node is down or stopped, every call whose ids are all on the
  other nodes' shards succeeds (RF 1: the down node's shards answer
  UNAVAILABLE or time out, which is allowed: indeterminate);
- with DRIFT_CHAOS_RF >= 3 also: every write, and every Get and Search,
  that starts 5 s (the failover window) or more after a node went down,
  while it is down, succeeds;
- and the checks can fail: a node whose collections are put back to a
  copy taken a few seconds of load earlier (a disk that lost its last
  writes) makes the checker report acknowledged writes lost or deleted
  ids back.

A summary is printed (TAP comments): calls by kind and outcome, latencies
of acknowledged writes and searches, the failover window of each fault,
the checker's verdict. DRIFT_CHAOS_KEEP=1 keeps the logs, the history
and the faults (kept anyway on failure); DRIFT_CHAOS_SEED picks the
victims and the load's randomness.
"""
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "cluster"))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
import grpc  # noqa: E402
import numpy  # noqa: E402

import checker  # noqa: E402
from clusterlib import (C, Node, cluster, code_of, free_ports,  # noqa
                        leader_of, pb, pbg, shard_of_id, wait_for)
from grpctest import Tap  # noqa: E402

ROUTER = os.environ["DRIFT_ROUTER"]
RF = int(os.environ.get("DRIFT_CHAOS_RF", "3"))
ROUNDS = int(os.environ.get("DRIFT_CHAOS_ROUNDS", "3"))
SEED = int(os.environ.get("DRIFT_CHAOS_SEED", "1"))
# The faults of each round, in order (any of kill, stop, router).
KINDS = [k for k in os.environ.get("DRIFT_CHAOS_KINDS",
                                   "kill,stop,router").split(",") if k]
# After the rounds: a node added and Rebalance (wait) under the load
# (DRIFT_CHAOS_REBALANCE=0 leaves it out), then DRIFT_CHAOS_MOVE_KILLS
# rounds that each add a node, start a Rebalance without waiting and kill
# -9 a move's target or the primary copying to it (alternately).
REBALANCE = int(os.environ.get("DRIFT_CHAOS_REBALANCE", "1"))
# Vectors (dimension BULK_DIM) of a second collection loaded before the
# load starts, so that moves copy more than the load's few keys (its
# shards move too: Rebalance evens out the replicas of all collections).
BULK = int(os.environ.get("DRIFT_CHAOS_BULK", "50000"))
BULK_DIM = 64
# 1 (the default): the Rebalance's failed calls include the writes refused
# at a moving primary's fence (fence_failure(): bug 1 of
# tests/chaos/README.md, fixed); 0 reports them apart.
FENCE_STRICT = os.environ.get("DRIFT_CHAOS_FENCE_STRICT", "1") == "1"
MOVE_KILLS = int(os.environ.get("DRIFT_CHAOS_MOVE_KILLS", "2"))
SHARDS = 6
KEYS = 200
THREADS = 4
CALL_TIMEOUT = 2.0
FAILOVER_S = 5.0
# A node stays down longer than the failover window when replicas should
# take over, so the writes after it are seen.
DOWN_S = FAILOVER_S + 2.0 if RF >= 3 else 2.0
STOP_S = FAILOVER_S + 2.0 if RF >= 3 else 3.0
HEALTHY_S = 90.0
# Quiet load before and after the Rebalance, for its p99 figures.
QUIET_S = 10.0
COLL = "chaos"
BULK_COLL = "bulk"
# node/server/cluster.c's line when a node drops its copy of a collection.
DROP_RE = re.compile(r"cluster: collection (\S+) dropped here \(map "
                     r"version (\d+)\)")
# node/replica/copy.c's line for each full copy of a shard.
COPY_RE = re.compile(r"full copy to \S+: (\d+) bytes up to record \d+ in "
                     r"([0-9.]+) s")


class Router:
    def __init__(self, join, log):
        self.addr = "127.0.0.1:%d" % free_ports(1)[0]
        self.join = join
        self.log = log
        self.proc = None
        self.start()

    def start(self):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen(
            [ROUTER, "--listen", self.addr, "--join", self.join,
             "--log-level", "info"], stdout=subprocess.PIPE,
            stderr=self.logf, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on"):
            raise RuntimeError("drift-router did not start: %r" % line)
        self.ch = grpc.insecure_channel(self.addr)
        self.s = pbg.DriftStub(self.ch)
        self.c = pbg.ClusterStub(self.ch)

    def kill(self):
        self.proc.kill()
        self.proc.wait()
        self.ch.close()
        self.logf.close()

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = None
        self.ch.close()
        self.logf.close()
        return rc


def shard_map(router):
    """{shard: [node ids, primary first]} of the collection."""
    m = router.c.ShardMap(pb.ShardMapRequest(collection=COLL), timeout=10)
    return {a.shard: list(a.nodes) for a in m.shards}


def full_map(node):
    """{(collection, shard): (node ids, primary first; the in-sync set)}
    of every collection from a node's map (the leader's is the
    newest)."""
    m = node.c.ShardMap(pb.ShardMapRequest(), timeout=10)
    return {(a.collection, a.shard): (list(a.nodes), set(a.in_sync))
            for a in m.shards}


def replica_counts(m, ids):
    """Replicas per node id (every id in ids, 0 included)."""
    c = {i: 0 for i in ids}
    for nd, _ in m.values():
        for x in nd:
            c[x] = c.get(x, 0) + 1
    return c


def bounds(counts):
    """(floor, ceil) of the mean, and the fewest moves that bring every
    node within them: the larger of the replicas above ceil and those
    missing below floor."""
    total = sum(counts.values())
    lo, hi = total // len(counts), -(-total // len(counts))
    fewest = max(sum(max(0, c - hi) for c in counts.values()),
                 sum(max(0, lo - c) for c in counts.values()))
    return lo, hi, fewest


def moved(before, after):
    """Replicas placed on a node that did not hold them before."""
    return sum(len(set(after[s][0]) - set(before[s][0])) for s in after)


def placement_faults(m, live):
    """What is wrong with a map while nodes may be down: a shard with
    fewer than RF replicas, or (RF >= 3) fewer in-sync replicas on live
    nodes than a majority of RF."""
    bad = []
    for s, (nd, ins) in sorted(m.items()):
        if len(nd) < RF:
            bad.append("%s/%d on %d nodes %s" % (s + (len(nd), nd)))
        if RF >= 3 and len(ins & live) < RF // 2 + 1:
            bad.append("%s/%d: in sync on live nodes %s of %s" % (
                s + (sorted(ins & live), nd)))
    return bad


def settled(m, counts):
    """What keeps a map from the end of a rebalance: a shard not on RF
    nodes all in sync, a node outside floor..ceil."""
    lo, hi, _ = bounds(counts)
    bad = ["%s/%d: %s, in sync %s" % (s + (nd, sorted(ins)))
           for s, (nd, ins) in sorted(m.items())
           if len(nd) != RF or ins != set(nd)]
    bad += ["%s holds %d (bounds %d..%d)" % (n, c, lo, hi)
            for n, c in sorted(counts.items()) if not lo <= c <= hi]
    return bad


def write_p99(recs, t0, t1):
    """(p99 in s or None, count) of the acknowledged writes that started
    in [t0, t1)."""
    xs = [r["end"] - r["start"] for r in recs
          if r["op"] in ("upsert", "delete") and r["outcome"] == "OK" and
          t0 <= r["start"] < t1]
    return checker.percentile(xs, 99), len(xs)


def ms(x):
    return "-" if x is None else "%.1f ms" % (x * 1000)


def fence_failure(r):
    """A write that met a moving (or failed-over) primary's fence and came
    back FAILED_PRECONDITION through the router (node/replica/replica.c
    answers DRIFT_ESTALE "shard N's primary changes" for the caller to
    forward, which a node does only for calls without the router's
    scope, and drift-router retries only a message naming a map
    version): the known bug FENCE_STRICT is about."""
    return (r["outcome"] == "FAILED_PRECONDITION" and
            "primary changes" in r.get("message", ""))


def failed_in(recs, t0, t1):
    """The calls (any kind) that overlap [t0, t1] and failed."""
    return [r for r in recs if r["op"] in ("upsert", "delete", "get",
                                           "search") and
            r["end"] >= t0 and r["start"] <= t1 and r["outcome"] != "OK"]


def healthy(nodes, router, probes):
    """Waits (at most HEALTHY_S) until there is a leader, every node is UP
    at the leader and a Get through the router answers for every shard;
    the seconds it took, or None."""
    t = time.monotonic()

    def ok():
        if not all(n.alive() for n in nodes):
            return False
        ld = leader_of(nodes, timeout=2)
        if ld is None:
            return False
        st = ld.status(timeout=2)
        if len(st.nodes) != len(nodes) or any(
                x.state != pb.NODE_STATE_UP for x in st.nodes):
            return False
        router.s.Get(pb.GetRequest(collection=COLL, ids=probes), timeout=2)
        return True
    if wait_for(ok, timeout=HEALTHY_S, step=0.1):
        return time.monotonic() - t
    return None


def calls_during(recs, t0, t1, ids=None, kinds=("upsert", "delete", "get")):
    """The calls of those kinds that started at or after t0 and ended by
    t1, whose ids are all in ids (any when ids is None; a Search has no
    ids and is taken only then)."""
    out = []
    for r in recs:
        if r["op"] not in kinds or r["start"] < t0 or r["end"] > t1:
            continue
        if ids is not None and not set(r.get("ids", [-1])) <= ids:
            continue
        out.append(r)
    return out


def rollback(nodes, router, probes, rnd, base, recs):
    """Copies a node's collections while it is stopped, runs the load for
    a few seconds more, kills the node and puts the copy back, restarts
    it: the checker, over both histories, must report acknowledged writes
    lost or deleted ids back. True when it does."""
    # The primary of most of the load's shards (after a rebalance some
    # nodes hold none of them).
    prim = [nd[0] for nd in shard_map(router).values()]
    victim = max(nodes, key=lambda n: (prim.count(n.node_id),
                                       rnd.random()))
    coll = os.path.join(victim.data, "collections")
    copy = os.path.join(base, "rollback-copy")
    victim.proc.send_signal(signal.SIGSTOP)
    try:
        shutil.copytree(coll, copy)
    finally:
        victim.proc.send_signal(signal.SIGCONT)
    path = os.path.join(base, "history-rollback.jsonl")
    wn_base = max([w for r in recs if r["op"] == "upsert"
                   for w in r["wn"]] + [0])
    subprocess.run(
        [sys.executable, os.path.join(HERE, "loadgen.py"),
         "--addr", router.addr, "--collection", COLL, "--keys", str(KEYS),
         "--threads", str(THREADS), "--duration", "3",
         "--mix", "upsert=3,delete=1,get=1", "--seed", str(SEED + 1),
         "--wn-base", str(wn_base), "--out", path], check=True,
        capture_output=True, timeout=120)
    victim.kill()
    shutil.rmtree(coll)
    shutil.copytree(copy, coll)
    victim.start()
    healthy(nodes, router, probes)
    subprocess.run(
        [sys.executable, os.path.join(HERE, "loadgen.py"),
         "--addr", router.addr, "--collection", COLL, "--keys", str(KEYS),
         "--out", path, "--final-read"], check=True, capture_output=True,
        timeout=120)
    res = checker.check(recs + checker.load(path))
    print("# rolled back %s: %s" % (victim.name, checker.verdict(res)),
          flush=True)
    for kind, key, text in res["violations"][:2]:
        print("#   %s id %s: %s" % (kind, key, text), flush=True)
    return res["counts"]["lost"] + res["counts"]["back"] > 0


def main(tap):
    rnd = random.Random(SEED)
    base = tempfile.mkdtemp(prefix="drift-chaos-")
    hist_path = os.path.join(base, "history.jsonl")
    faults_path = os.path.join(base, "faults.jsonl")
    print("# RF %d, %d rounds, seed %d, in %s" % (RF, ROUNDS, SEED, base),
          flush=True)
    # Rebalance is a fault of its own here: none when a node joins.
    no_join = ["--rebalance-on-join=false"]
    nodes = cluster(base, 3, extra=no_join)
    for n in nodes:
        n.node_id = n.status().node_id
    wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                         for x in nodes[0].status().nodes), timeout=30)
    router = Router(",".join(n.addr for n in nodes),
                    os.path.join(base, "router.log"))
    load = None
    keep = bool(os.environ.get("DRIFT_CHAOS_KEEP"))
    try:
        code, msg = C.UNAVAILABLE, ""
        for _ in range(10):
            code, msg = code_of(lambda: router.s.CreateCollection(
                pb.CreateCollectionRequest(name=COLL, dimension=16,
                                           shards=SHARDS,
                                           replication_factor=RF),
                timeout=30))
            if code != C.UNAVAILABLE:
                break
            time.sleep(0.5)
        if not tap.check(code == C.OK, "a collection of %d shards, "
                         "replication factor %d, through the router: %s %s"
                         % (SHARDS, RF, code.name, msg)):
            keep = True
            return
        smap = shard_map(router)
        shard_of = {i: shard_of_id(i, SHARDS) for i in range(KEYS)}
        probes = sorted({s: i for i, s in sorted(shard_of.items(),
                                                 reverse=True)}.values())
        tap.check(len(smap) == SHARDS and len(probes) == SHARDS and
                  all(len(v) == RF for v in smap.values()),
                  "the map has %d shards of %d replicas; one probe id per "
                  "shard %s" % (len(smap), RF, probes))

        if BULK:
            t = time.monotonic()
            router.s.CreateCollection(pb.CreateCollectionRequest(
                name=BULK_COLL, dimension=BULK_DIM, shards=SHARDS,
                replication_factor=RF), timeout=30)
            gen = numpy.random.default_rng(SEED)
            for k in range(0, BULK, 500):
                vs = gen.random((min(500, BULK - k), BULK_DIM),
                                dtype=numpy.float32)
                req = pb.UpsertRequest(collection=BULK_COLL, points=[
                    pb.Point(id=k + j, vector=v.tolist())
                    for j, v in enumerate(vs)])
                wait_for(lambda: router.s.Upsert(req, timeout=30) or True,
                         timeout=60)
            tap.check(router.s.Get(pb.GetRequest(
                collection=BULK_COLL, ids=[0, BULK - 1]),
                timeout=30).points[1].id == BULK - 1,
                "a second collection of %d vectors (%.1f MB of floats, "
                "dimension %d) loaded in %.1f s" % (
                    BULK, BULK * BULK_DIM * 4 / 1e6, BULK_DIM,
                    time.monotonic() - t))

        def ids_on(node_id):
            """The keys with a replica on node_id."""
            m = shard_map(router)
            return {i for i, s in shard_of.items() if node_id in m[s]}

        load = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "loadgen.py"),
             "--addr", router.addr, "--collection", COLL,
             "--keys", str(KEYS), "--threads", str(THREADS),
             "--duration", str(120 + ROUNDS * 60 +
                                  (REBALANCE + MOVE_KILLS) * 240),
             "--ops", "5000000",
             "--timeout", str(CALL_TIMEOUT), "--seed", str(SEED),
             "--out", hist_path], stdout=subprocess.PIPE, text=True)
        line = load.stdout.readline()
        if not line.startswith("load started"):
            raise RuntimeError("loadgen did not start: %r" % line)
        time.sleep(2.0)
        faults = []
        unhealthy = []

        def fault(kind, target, t0, t_back, ids, extra=None):
            took = healthy(nodes, router, probes)
            f = {"kind": kind, "target": target, "t0": t0,
                 "t_back": t_back, "t1": time.monotonic(),
                 "ids": None if ids is None else sorted(ids),
                 "healthy_s": took}
            f.update(extra or {})
            faults.append(f)
            if took is None:
                unhealthy.append("%s %s" % (kind, target))
            time.sleep(0.5)

        for r in range(ROUNDS):
            if "kill" in KINDS:
                ld = leader_of(nodes)
                victim = (ld if r == 0 and ld is not None else
                          rnd.choice(nodes))
                was_leader = victim is ld
                ids = ids_on(victim.node_id)
                t0 = time.monotonic()
                victim.kill()
                time.sleep(DOWN_S)
                t_back = time.monotonic()
                victim.start()
                fault("kill", victim.name, t0, t_back, ids,
                      {"leader": was_leader})
            if "stop" in KINDS:
                victim = rnd.choice(nodes)
                ids = ids_on(victim.node_id)
                t0 = time.monotonic()
                victim.proc.send_signal(signal.SIGSTOP)
                time.sleep(STOP_S)
                t_back = time.monotonic()
                victim.proc.send_signal(signal.SIGCONT)
                fault("stop", victim.name, t0, t_back, ids)
            if "router" in KINDS:
                t0 = time.monotonic()
                router.kill()
                time.sleep(0.5)
                t_back = time.monotonic()
                router.start()
                fault("router", "router", t0, t_back, None)
            print("# round %d done" % (r + 1), flush=True)

        def all_up():
            ld = leader_of(nodes, timeout=2)
            if ld is None:
                return False
            st = ld.status(timeout=2)
            return len(st.nodes) == len(nodes) and all(
                x.state == pb.NODE_STATE_UP for x in st.nodes)

        def add_node():
            """A new node (--join a live one), UP at the leader."""
            name = "node-%d" % (len(nodes) + 1)
            join = next(n for n in nodes if n.alive())
            nd = Node(base, name, node_id=name, join=join.addr,
                      extra=no_join).start()
            nodes.append(nd)
            if not wait_for(all_up, timeout=HEALTHY_S, step=0.1):
                raise RuntimeError("%s is not UP at the leader in %.0f s"
                                   % (name, HEALTHY_S))
            nd.joined = leader_of(nodes).c.ShardMap(
                pb.ShardMapRequest(), timeout=10).version
            return nd

        def rebalance_wait(limit):
            """Rebalance (wait) through the router, again while the one
            before still runs (UNAVAILABLE) until limit s have passed:
            the moves it planned, or raises."""
            t = time.monotonic()
            while True:
                try:
                    return router.c.Rebalance(
                        pb.RebalanceRequest(wait=True), timeout=600).moves
                except grpc.RpcError as e:
                    if (e.code() != C.UNAVAILABLE or
                            time.monotonic() - t > limit):
                        raise
                    time.sleep(1.0)

        def settle(timeout=60):
            """The leader's map once settled() finds nothing (waiting at
            most timeout s), and what it found last."""
            last = [None, ["no map"]]

            def ok():
                ld = leader_of(nodes, timeout=2)
                if ld is None:
                    return False
                m = full_map(ld)
                c = replica_counts(m, [n.node_id for n in nodes])
                last[:] = [m, settled(m, c)]
                return not last[1]
            wait_for(ok, timeout=timeout, step=0.2)
            return last

        # A node added, then Rebalance (wait) under the load.
        rebal = None
        if REBALANCE:
            time.sleep(QUIET_S)  # the window "before"
            t_add = time.monotonic()
            nd = add_node()
            ld = leader_of(nodes)
            m0 = full_map(ld)
            c0 = replica_counts(m0, [n.node_id for n in nodes])
            lo, hi, fewest = bounds(c0)
            t0 = time.monotonic()
            planned = rebalance_wait(0)
            t1 = time.monotonic()
            m1, bad = settle()
            c1 = replica_counts(m1, [n.node_id for n in nodes])
            n_moved = moved(m0, m1)
            rebal = {"t_add": t_add, "t0": t0, "t1": t1, "node": nd.name,
                     "moves": n_moved}
            tap.check(not bad and 0 < n_moved <= 1.1 * fewest and
                      planned == n_moved,
                      "a node added (%s, %.1f s to be UP) and Rebalance "
                      "(wait) through the router under the load: %.1f s, "
                      "%d moves planned, %d replicas moved (the fewest: "
                      "%d, bound 1.1x); replicas per node %s, were %s "
                      "(bounds %d..%d); every shard on %d nodes in sync%s"
                      % (nd.name, t0 - t_add, t1 - t0, planned, n_moved,
                         fewest, c1, c0, lo, hi, RF,
                         ": " + "; ".join(bad) if bad else ""))
            fault("rebalance", nd.name, t_add, t1, range(KEYS),
                  {"moves": n_moved, "rebalance_s": t1 - t0})
            time.sleep(QUIET_S)  # the window "after"
            print("# rebalance done", flush=True)

        # Kill -9 of a move's target or of the primary that copies the
        # shard to it, in the middle of the move.
        movekills = []
        for r in range(MOVE_KILLS):
            which = ("target", "source")[r % 2]
            nd = add_node()
            ld = leader_of(nodes)
            m0 = full_map(ld)
            c0 = replica_counts(m0, [n.node_id for n in nodes])
            lo, hi, fewest = bounds(c0)
            t0 = time.monotonic()
            planned = router.c.Rebalance(pb.RebalanceRequest(wait=False),
                                         timeout=60).moves
            hit = None
            while hit is None and time.monotonic() - t0 < 120:
                try:
                    m = full_map(ld)
                except grpc.RpcError:
                    time.sleep(0.05)
                    continue
                hit = next(((sh, m[sh]) for sh in sorted(m)
                            if len(m[sh][0]) > RF), None)
                if hit is None and not settled(
                        m, replica_counts(m, [n.node_id for n in nodes])):
                    break  # every move done before one was seen
                time.sleep(0.02)
            if not tap.check(hit is not None and planned > 0,
                             "move-kill %d: a node added (%s), Rebalance "
                             "(no wait) planned %d moves; a shard with a "
                             "target added seen %.2f s later: %s" % (
                                 r + 1, nd.name, planned,
                                 time.monotonic() - t0, hit)):
                continue
            sh, (sh_nodes, sh_ins) = hit
            target = [x for x in sh_nodes if x not in m0[sh][0]][0]
            vid = target if which == "target" else sh_nodes[0]
            victim = next(n for n in nodes if n.node_id == vid)
            was_leader = victim is ld
            ids = {i for i, s in shard_of.items()
                   if vid in m[(COLL, s)][0]}
            t_kill = time.monotonic()
            victim.kill()
            live = {n.node_id for n in nodes if n.alive()}
            wrong, samples = [], 0
            while time.monotonic() - t_kill < DOWN_S:
                try:
                    ld2 = leader_of(nodes, timeout=1)
                    if ld2 is not None:
                        wrong += placement_faults(full_map(ld2), live)
                        samples += 1
                except grpc.RpcError:
                    pass
                time.sleep(0.2)
            t_back = time.monotonic()
            victim.start()
            fault("move-" + which, victim.name, t_kill, t_back, ids,
                  {"leader": was_leader, "shard": sh})
            t2 = time.monotonic()
            planned2 = rebalance_wait(400)
            t3 = time.monotonic()
            m2, bad = settle()
            c2 = replica_counts(m2, [n.node_id for n in nodes])
            left = sorted(set(m0[sh][0]) - set(m2[sh][0]))
            movekills.append({"which": which, "victim": victim.name,
                              "leader": was_leader, "shard": sh,
                              "target_in_sync": target in sh_ins,
                              "left": left, "moved": moved(m0, m2),
                              "fewest": fewest, "t0": t0, "t3": t3})
            tap.check(samples > 0 and not wrong,
                      "move-kill %d: kill -9 of the %s %s (%s) of %s/%d "
                      "(%s -> %s, the target %s) with %s down %.1f s: "
                      "the leader's map (%d samples) kept every shard on "
                      ">= %d nodes%s%s" % (
                          r + 1, which, vid,
                          "the leader" if was_leader else "not the leader",
                          sh[0], sh[1], m0[sh][0], sh_nodes,
                          "in sync" if target in sh_ins else "not in sync",
                          vid, t_back - t_kill, samples, RF,
                          ", a majority of them in sync on live nodes"
                          if RF >= 3 else "",
                          ": " + "; ".join(sorted(set(wrong))[:5])
                          if wrong else ""))
            tap.check(not bad,
                      "move-kill %d: a second Rebalance (wait, %d moves, "
                      "%.1f s) finished the job, %.1f s after the first: "
                      "replicas per node %s, were %s (bounds %d..%d); %d "
                      "replicas moved (the fewest %d); %s/%d left %s; "
                      "every shard on %d nodes in sync%s" % (
                          r + 1, planned2, t3 - t2, t3 - t0, c2, c0, lo,
                          hi, moved(m0, m2), fewest, sh[0], sh[1], left, RF,
                          ": " + "; ".join(bad) if bad else ""))
            print("# move-kill %d done" % (r + 1), flush=True)
        time.sleep(1.0)
        load.send_signal(signal.SIGTERM)
        out, _ = load.communicate(timeout=60)
        tap.check(load.returncode == 0 and not unhealthy,
                  "%d rounds of kill -9, SIGSTOP and router kill under "
                  "load; healthy again after each (%s); %s" % (
                      ROUNDS, "at most %.1f s after the node or router "
                      "was back" % max([f["healthy_s"] for f in faults] +
                                       [0.0])
                      if not unhealthy else "not after " +
                      ", ".join(unhealthy), out.strip()))
        load = None
        with open(faults_path, "w") as f:
            for x in faults:
                f.write(json.dumps(x) + "\n")
        took = healthy(nodes, router, probes)
        fr = subprocess.run(
            [sys.executable, os.path.join(HERE, "loadgen.py"),
             "--addr", router.addr, "--collection", COLL,
             "--keys", str(KEYS), "--out", hist_path, "--final-read",
             "--final-timeout", "60"], capture_output=True, text=True)
        tap.check(took is not None and fr.returncode == 0,
                  "healthy after the rounds (%s s), final read of %d keys "
                  "(%s)" % (took and "%.1f" % took, KEYS,
                            fr.stderr.strip() or "ok"))

        recs = checker.load(hist_path)
        result = checker.check(recs)
        for line in checker.summary(recs, faults, result).splitlines():
            print("# " + line, flush=True)
        c = result["counts"]
        by = {}
        for r in recs:
            if r["op"] != "meta":
                by[(r["op"], r["outcome"] == "OK")] = by.get(
                    (r["op"], r["outcome"] == "OK"), 0) + 1
        finals = [v for r in recs if r["op"] == "final" and
                  r["outcome"] == "OK" for v in r["values"]]
        tap.check(by.get(("upsert", True), 0) >= 200 and
                  by.get(("delete", True), 0) >= 20 and
                  by.get(("get", True), 0) >= 200 and
                  by.get(("search", True), 0) >= 20 and
                  any(v is not None for v in finals) and
                  any(v is None for v in finals),
                  "the load did work: %d upserts, %d deletes, %d gets, %d "
                  "searches acknowledged; the final read found %d of %d "
                  "keys" % (by.get(("upsert", True), 0),
                            by.get(("delete", True), 0),
                            by.get(("get", True), 0),
                            by.get(("search", True), 0),
                            sum(v is not None for v in finals), KEYS))
        if not tap.check(not result["violations"],
                         "checker: 0 acknowledged writes lost (%d), 0 "
                         "deleted ids back (%d), 0 stale reads (%d), "
                         "nothing else wrong: %s" % (
                             c["lost"], c["back"], c["stale"],
                             checker.verdict(result))):
            keep = True
            for line in checker.report(result).splitlines()[1:]:
                print("# " + line, flush=True)

        if rebal is not None:
            r0, r1 = rebal["t_add"], rebal["t1"]
            during = [r for r in recs if r["op"] in (
                "upsert", "delete", "get", "search") and r["end"] >= r0 and
                r["start"] <= r1]
            fails = failed_in(recs, r0, r1)
            fenced = [r for r in fails if fence_failure(r)]
            if not FENCE_STRICT:
                fails = [r for r in fails if not fence_failure(r)]
            figs = [write_p99(recs, r0 - QUIET_S, r0),
                    write_p99(recs, rebal["t0"], r1),
                    write_p99(recs, r1, r1 + QUIET_S)]
            print("# rebalance (%s added, %d replicas moved): %.1f s; "
                  "write p99 %s before (%d writes in %.0f s), %s during "
                  "(%d), %s after (%d in %.0f s)" % (
                      rebal["node"], rebal["moves"],
                      r1 - rebal["t0"], ms(figs[0][0]), figs[0][1],
                      QUIET_S, ms(figs[1][0]), figs[1][1],
                      ms(figs[2][0]), figs[2][1], QUIET_S), flush=True)
            if fenced and not FENCE_STRICT:
                print("# bug 1: %d writes through the router failed "
                      "FAILED_PRECONDITION at a moving primary's fence "
                      "(not counted below; DRIFT_CHAOS_FENCE_STRICT=1 "
                      "counts them): %s" % (len(fenced),
                                            fenced[0]["message"]),
                      flush=True)
            tap.check(len(during) >= 20 and not fails,
                      "from the node's start to the Rebalance's end "
                      "(%.1f s), %d calls: %d failed %s" % (
                          r1 - r0, len(during), len(fails),
                          ["%s %s %s" % (r["op"], r["outcome"],
                                         r.get("message", "")[:120])
                           for r in fails[:3]]))
        fenced_all = [r for r in recs if r["op"] in ("upsert", "delete")
                      and fence_failure(r)]
        print("# writes refused FAILED_PRECONDITION at a primary's fence "
              "(bug 1 of README.md, any fault): %d" % len(fenced_all),
              flush=True)
        copies, early = [], []
        for n in nodes:
            with open(n.log) as f:
                text = f.read()
            copies += [(int(x.group(1)), float(x.group(2))) for x in
                       COPY_RE.finditer(text)]
            early += ["%s dropped %s at map version %s (it joined at %d)" %
                      (n.name, x.group(1), x.group(2), n.joined)
                      for x in DROP_RE.finditer(text)
                      if int(x.group(2)) < getattr(n, "joined", 0)]
        # A node drops its copy of a collection when the map it applies
        # gives it no shard of it; a map older than the node's join does
        # not know the node (a restart replaying its Raft log from the
        # start): its copy must stay.
        tap.check(not early, "no node dropped a collection applying a map "
                  "older than its join%s" % (
                      ": " + "; ".join(early[:3]) if early else ""))
        if copies:
            print("# full copies (catch-ups and moves): %d, %.1f MB in "
                  "%.2f s (%.1f MB/s over the time spent copying)" % (
                      len(copies), sum(b for b, _ in copies) / 1e6,
                      sum(t for _, t in copies),
                      sum(b for b, _ in copies) / 1e6 /
                      max(1e-3, sum(t for _, t in copies))), flush=True)
        for k in movekills:
            print("# move-kill of the %s %s%s (%s/%d, target %s): the "
                  "shard's leaver %s; %d replicas moved in all (the fewest "
                  "%d) in %.1f s" % (
                      k["which"], k["victim"],
                      " (the leader)" if k["leader"] else "",
                      k["shard"][0], k["shard"][1],
                      "in sync" if k["target_in_sync"] else "catching up",
                      k["left"], k["moved"], k["fewest"], k["t3"] - k["t0"]),
                  flush=True)

        # While a node is down or stopped, calls on the others' shards.
        others, failed = 0, []
        for f in faults:
            if f["kind"] == "router":
                continue
            rest = set(range(KEYS)) - set(f["ids"])
            got = calls_during(recs, f["t0"], f["t_back"], rest)
            others += len(got)
            failed += ["%s %s: %s %s" % (f["kind"], f["target"], r["op"],
                                         r["outcome"])
                       for r in got if r["outcome"] != "OK"]
        tap.check(not failed and (others >= 20 or RF >= 3),
                  "while a node was down or stopped, %d calls on the "
                  "other nodes' shards: %d failed %s" %
                  (others, len(failed), failed[:3]))
        if RF >= 3:
            for what, kinds in (("writes", ("upsert", "delete")),
                                ("reads", ("get", "search"))):
                late, failed = 0, []
                for f in faults:
                    if f["kind"] == "router":
                        continue
                    got = calls_during(recs, f["t0"] + FAILOVER_S,
                                       f["t_back"], kinds=kinds)
                    late += len(got)
                    failed += ["%s %s: %s %s" % (f["kind"], f["target"],
                                                 r["op"], r["outcome"])
                               for r in got if r["outcome"] != "OK"]
                tap.check(late >= 10 and not failed,
                          "RF %d: %d %s %.0f s or more after a node went "
                          "down, while it was down: %d failed %s" %
                          (RF, late, what, FAILOVER_S, len(failed),
                           failed[:3]))
        # The same checks can fail: a node rolled back to an older copy of
        # its collections (a disk that lost its last writes) must show.
        if not tap.check(rollback(nodes, router, probes, rnd, base, recs),
                         "a node rolled back to an older copy of its data "
                         "is caught (see above)"):
            keep = True
    except Exception:
        keep = True
        raise
    finally:
        if load is not None:
            load.kill()
            load.wait()
        rcs = [router.stop()] + [n.stop() for n in nodes]
        tap.check(rcs == [0] * len(rcs), "router and nodes stop cleanly (%s)" %
                  rcs)
        if keep or tap.failed:
            print("# logs, history and faults kept in %s" % base,
                  flush=True)
        else:
            shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    tap = Tap()
    tap.run("test_chaos", main, tap)
    tap.done()
