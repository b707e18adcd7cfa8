#!/usr/bin/python3
"""The Raft metadata group's figures (issue 17), on three real drift-node
processes on 127.0.0.1 (release build):

- metadata write latency: CreateCollection and DropCollection (one shard)
  through the leader and through a follower (forwarded), p50 / p99;
- leader loss: kill -9 of the leader, the time until a CreateCollection
  through a survivor first succeeds, p50 / p99 over --rounds rounds;
- a planned stop: the same after SIGTERM of the leader, which hands
  leadership over first;
- snapshot with --collections collections: the size of the snapshot a
  member takes and the time its restart spends restoring it (the node's
  own log line), and the whole restart until it serves.

    tests/bench/cluster_bench.py [--node build/node/drift-node]
        [--rounds 20] [--writes 200] [--collections 1000]

A benchmark, not a test: it prints what it measured (make
bench-cluster).
"""
import argparse
import glob
import os
import re
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100.0 * (len(xs) - 1))))]


def ms(x):
    return "%.1f ms" % (x * 1e3)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--node", default=os.path.join(ROOT, "build", "node",
                                                    "drift-node"))
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--writes", type=int, default=200)
    ap.add_argument("--collections", type=int, default=1000)
    a = ap.parse_args()
    os.environ["DRIFT_NODE"] = os.path.abspath(a.node)
    os.environ.setdefault("DRIFT_PROTO_DIR", os.path.join(ROOT, "proto"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
    from clusterlib import (C, cluster, code_of, leader_of, map_of, pb,
                            tmpdir, wait_for)

    base = tmpdir()
    nodes = cluster(base, 3)
    try:
        for n in nodes:
            n.node_id = n.status().node_id
        print("# drift-node %s, 3 nodes on 127.0.0.1, election timeout "
              "300 ms, heartbeat 60 ms; %s" % (a.node, time.strftime(
                  "%Y-%m-%d %H:%M UTC", time.gmtime())))

        def create(n, name, timeout=10):
            n.s.CreateCollection(pb.CreateCollectionRequest(
                name=name, dimension=8, shards=1), timeout=timeout)

        def drop(n, name):
            n.s.DropCollection(pb.DropCollectionRequest(name=name),
                               timeout=10)

        # Metadata write latency.
        ld = leader_of(nodes)
        fol = next(n for n in nodes if n is not ld)
        print("\n| metadata write (1 shard) | through | p50 | p99 |")
        print("|---|---|---|---|")
        for who, n in (("leader", ld), ("follower", fol)):
            cr, dr = [], []
            for i in range(a.writes):
                t = time.perf_counter()
                create(n, "lat-%s-%d" % (who, i))
                cr.append(time.perf_counter() - t)
            for i in range(a.writes):
                t = time.perf_counter()
                drop(n, "lat-%s-%d" % (who, i))
                dr.append(time.perf_counter() - t)
            print("| CreateCollection | %s | %s | %s |" % (
                who, ms(pct(cr, 50)), ms(pct(cr, 99))))
            print("| DropCollection | %s | %s | %s |" % (
                who, ms(pct(dr, 50)), ms(pct(dr, 99))))

        # Leader loss.
        times = []
        for r in range(a.rounds):
            ld = leader_of(nodes)
            rest = [n for n in nodes if n is not ld]
            ld.kill()
            t0 = time.perf_counter()
            while True:
                code, _ = code_of(lambda: create(rest[r % 2], "ll-%d" % r,
                                                 timeout=3))
                if code in (C.OK, C.ALREADY_EXISTS):
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("no metadata write in 30 s")
                time.sleep(0.01)
            times.append(time.perf_counter() - t0)
            ld.start()
            wait_for(lambda: map_of(ld) == map_of(rest[0]), timeout=20)
        print("\nleader loss (kill -9) to the first successful "
              "CreateCollection through a survivor, %d rounds: p50 %s, "
              "p99 %s, max %s" % (a.rounds, ms(pct(times, 50)),
                                  ms(pct(times, 99)), ms(max(times))))
        for i in range(a.rounds):
            drop(nodes[0], "ll-%d" % i)

        # A planned stop: SIGTERM of the leader hands leadership over.
        planned = []
        for r in range(min(a.rounds, 10)):
            ld = leader_of(nodes)
            rest = [n for n in nodes if n is not ld]
            ld.proc.send_signal(15)
            t0 = time.perf_counter()
            while True:
                code, _ = code_of(lambda: create(rest[r % 2], "pl-%d" % r,
                                                 timeout=3))
                if code in (C.OK, C.ALREADY_EXISTS):
                    break
                if time.perf_counter() - t0 > 30:
                    raise RuntimeError("no metadata write in 30 s")
                time.sleep(0.01)
            planned.append(time.perf_counter() - t0)
            ld.stop()
            ld.start()
            wait_for(lambda: map_of(ld) == map_of(rest[0]), timeout=20)
        print("planned stop (SIGTERM) of the leader to the first successful "
              "CreateCollection through another node, %d rounds: p50 %s, "
              "max %s" % (len(planned), ms(pct(planned, 50)),
                          ms(max(planned))))
        for i in range(len(planned)):
            drop(nodes[0], "pl-%d" % i)

        # Snapshot and restore with many collections.
        t = time.perf_counter()
        for i in range(a.collections):
            create(nodes[i % 3], "snap-%04d" % i)
        spent = time.perf_counter() - t
        print("\n%d collections created in %.1f s (%s each)" % (
            a.collections, spent, ms(spent / a.collections)))
        n = nodes[1]
        made = time.time()

        def fresh_snapshot():
            return [s for s in glob.glob(os.path.join(
                n.data, "raft", "snapshot-*")) if not s.endswith(".meta")
                and os.path.getmtime(s) > made]
        # A member snapshots every 1024 entries: write until it takes one
        # that holds every collection.
        for i in range(1100):
            if fresh_snapshot():
                break
            create(nodes[0], "pad-%04d" % i)
            drop(nodes[0], "pad-%04d" % i)
        n.stop()
        snaps = sorted((s for s in glob.glob(os.path.join(
            n.data, "raft", "snapshot-*")) if not s.endswith(".meta")),
            key=os.path.getmtime)
        size = os.path.getsize(snaps[-1]) if snaps else 0
        logpos = os.path.getsize(n.log)
        t = time.perf_counter()
        n.start()
        up = time.perf_counter() - t
        with open(n.log) as f:
            f.seek(logpos)
            m = re.findall(r"snapshot of (\d+) bytes restored in ([0-9.]+) "
                           r"ms \(map version (\d+), \d+ nodes, (\d+) "
                           r"collections\)", f.read())
        print("snapshot with %d collections: %d bytes on disk (%s); "
              "restart: %s restoring it (%s), %.2f s until the node "
              "serves (opening its %d shards included)" % (
                  a.collections, size, os.path.basename(snaps[-1])
                  if snaps else "none",
                  m[-1][1] + " ms" if m else "no restore logged",
                  "%s bytes, %s collections" % (m[-1][0], m[-1][3])
                  if m else "-", up, a.collections // 3))
    finally:
        for n in nodes:
            n.stop()
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
