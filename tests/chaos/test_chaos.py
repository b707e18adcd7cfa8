#!/usr/bin/python3
"""Fault rounds under load (issue 19's tests): three drift-nodes and one
drift-router on 127.0.0.1, one collection (6 shards, replication factor
DRIFT_CHAOS_RF, default 3), tests/chaos/loadgen.py running Upsert, Delete,
Get and Search through the router while DRIFT_CHAOS_ROUNDS rounds (3 in
make test, 20 in make test-chaos) each do:

- kill -9 of a node (the Raft leader in the first round, then a random
  one), down DOWN_S, restarted;
- SIGSTOP of a random node for STOP_S (the load goes on), SIGCONT;
- kill -9 of the router, restarted on the same port.

After each fault the test waits until the cluster is healthy (a leader,
every node UP, a Get through the router answers for every shard). After
the rounds: the final read of every key, then tests/chaos/checker.py:

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

import checker  # noqa: E402
from clusterlib import (C, cluster, code_of, free_ports, leader_of,  # noqa
                        pb, pbg, shard_of_id, wait_for)
from grpctest import Tap  # noqa: E402

ROUTER = os.environ["DRIFT_ROUTER"]
RF = int(os.environ.get("DRIFT_CHAOS_RF", "3"))
ROUNDS = int(os.environ.get("DRIFT_CHAOS_ROUNDS", "3"))
SEED = int(os.environ.get("DRIFT_CHAOS_SEED", "1"))
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
COLL = "chaos"


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
    victim = rnd.choice(nodes)
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
    nodes = cluster(base, 3)
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

        def ids_on(node_id):
            """The keys with a replica on node_id."""
            m = shard_map(router)
            return {i for i, s in shard_of.items() if node_id in m[s]}

        load = subprocess.Popen(
            [sys.executable, os.path.join(HERE, "loadgen.py"),
             "--addr", router.addr, "--collection", COLL,
             "--keys", str(KEYS), "--threads", str(THREADS),
             "--duration", str(120 + ROUNDS * 60), "--ops", "2000000",
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
            ld = leader_of(nodes)
            victim = ld if r == 0 and ld is not None else rnd.choice(nodes)
            was_leader = victim is ld
            ids = ids_on(victim.node_id)
            t0 = time.monotonic()
            victim.kill()
            time.sleep(DOWN_S)
            t_back = time.monotonic()
            victim.start()
            fault("kill", victim.name, t0, t_back, ids,
                  {"leader": was_leader})
            victim = rnd.choice(nodes)
            ids = ids_on(victim.node_id)
            t0 = time.monotonic()
            victim.proc.send_signal(signal.SIGSTOP)
            time.sleep(STOP_S)
            t_back = time.monotonic()
            victim.proc.send_signal(signal.SIGCONT)
            fault("stop", victim.name, t0, t_back, ids)
            t0 = time.monotonic()
            router.kill()
            time.sleep(0.5)
            t_back = time.monotonic()
            router.start()
            fault("router", "router", t0, t_back, None)
            print("# round %d done" % (r + 1), flush=True)
        time.sleep(1.0)
        load.send_signal(signal.SIGTERM)
        out, _ = load.communicate(timeout=60)
        tap.check(load.returncode == 0 and not unhealthy,
                  "%d rounds of kill -9, SIGSTOP and router kill under "
                  "load; healthy again after each (%s); %s" % (
                      ROUNDS, "at most %.1f s after the node or router "
                      "was back" % max(f["healthy_s"] for f in faults)
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
        tap.check(rcs == [0] * 4, "router and nodes stop cleanly (%s)" %
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
