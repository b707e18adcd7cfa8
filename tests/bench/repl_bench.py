#!/usr/bin/python3
"""Replication's figures (issue 19), on three real drift-node processes on
127.0.0.1 (release build), compared in one run:

- write throughput and latency at RF 1 and RF 3: --threads clients, each
  upserting batches of --batch points of --dim floats to one node for
  --seconds (wal_sync always), points/s and p50 / p99 per call;
- failover: --rounds kill -9 of a shard's primary while a writer loops on
  that shard: the time from the last write that failed (or the kill) to
  the first acknowledged one, p50 / p99, then the node restarted and the
  time until it is in sync again;
- catch-up: a replica stopped (SIGSTOP) while --catchup-mb of points are
  written, then continued: MB/s of the payload until it is in sync (WAL
  tail), and the same after a kill -9 and restart once the primary has
  flushed (a full copy, then the tail).

    tests/bench/repl_bench.py [--node build/node/drift-node]

A benchmark, not a test: it prints what it measured (make bench-repl).
"""
import argparse
import os
import random
import signal
import sys
import threading
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
    ap.add_argument("--threads", type=int, default=8)
    ap.add_argument("--batch", type=int, default=100)
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--seconds", type=float, default=10)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--catchup-mb", type=float, default=50)
    a = ap.parse_args()
    os.environ["DRIFT_NODE"] = os.path.abspath(a.node)
    os.environ.setdefault("DRIFT_PROTO_DIR", os.path.join(ROOT, "proto"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
    from clusterlib import C, cluster, pb, tmpdir, wait_for

    base = tmpdir()
    nodes = cluster(base, 3, extra=["--memtable-rows", "20000"])
    by_id = {}
    try:
        for n in nodes:
            n.node_id = n.status().node_id
            by_id[n.node_id] = n
        wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                             for x in nodes[0].status().nodes), 30)
        print("# drift-node %s, 3 nodes on 127.0.0.1 (2 cores shared by "
              "nodes and clients), %d-d float vectors, wal_sync always; %s"
              % (a.node, a.dim, time.strftime("%Y-%m-%d %H:%M UTC",
                                              time.gmtime())))
        rng = random.Random(1)
        pool = [[rng.uniform(-1, 1) for _ in range(a.dim)]
                for _ in range(256)]

        def points(first, n):
            return [pb.Point(id=first + i, vector=pool[(first + i) % 256])
                    for i in range(n)]

        def shard_map(n, coll):
            m = n.c.ShardMap(pb.ShardMapRequest(collection=coll), timeout=5)
            return {s.shard: (list(s.nodes), set(s.in_sync))
                    for s in m.shards}

        # Throughput, RF 1 against RF 3.
        print("\n| replication | points/s | call p50 | call p99 | calls |")
        print("|---|---|---|---|---|")
        for rf in (1, 3):
            coll = "w%d" % rf
            nodes[0].s.CreateCollection(pb.CreateCollectionRequest(
                name=coll, dimension=a.dim, shards=3,
                replication_factor=rf), timeout=30)
            lat, lock = [], threading.Lock()
            stop = time.time() + a.seconds

            def writer(t):
                n = nodes[t % 3]
                k = t * 10_000_000
                mine = []
                while time.time() < stop:
                    t0 = time.perf_counter()
                    n.s.Upsert(pb.UpsertRequest(
                        collection=coll, points=points(k, a.batch)),
                        timeout=30)
                    mine.append(time.perf_counter() - t0)
                    k += a.batch
                with lock:
                    lat.extend(mine)
            ths = [threading.Thread(target=writer, args=(t,))
                   for t in range(a.threads)]
            t0 = time.time()
            for t in ths:
                t.start()
            for t in ths:
                t.join()
            el = time.time() - t0
            print("| RF %d | %.0f | %s | %s | %d |" % (
                rf, len(lat) * a.batch / el, ms(pct(lat, 50)),
                ms(pct(lat, 99)), len(lat)))

        # Failover.
        coll = "w3"
        fo, back = [], []
        for r in range(a.rounds):
            m = shard_map(nodes[0] if nodes[0].alive() else nodes[1], coll)
            shard = r % 3
            victim = by_id[m[shard][0][0]]
            other = next(n for n in nodes if n is not victim)
            ids = [i for i in range(100_000_000, 100_100_000)
                   if True][:0]
            # ids of this shard: ask the node for the shard of a few ids
            # by writing through it; a writer loops on ids it owns.
            res = {"last_fail": None, "ok_after": None}
            t_kill = [None]
            stop_w = [False]

            def loop():
                k = 200_000_000 + r * 1_000_000
                while not stop_w[0]:
                    try:
                        other.s.Upsert(pb.UpsertRequest(
                            collection=coll, points=points(k, 10)),
                            timeout=5)
                        if t_kill[0] is not None and \
                                res["ok_after"] is None:
                            res["ok_after"] = time.perf_counter()
                    except Exception:  # noqa: BLE001
                        res["last_fail"] = time.perf_counter()
                    k += 10
                    time.sleep(0.002)
            w = threading.Thread(target=loop)
            w.start()
            time.sleep(0.3)
            t_kill[0] = time.perf_counter()
            res["ok_after"] = None
            victim.kill()
            deadline = time.time() + 30
            while time.time() < deadline:
                if res["ok_after"] is not None and (
                        res["last_fail"] is None or
                        res["ok_after"] > res["last_fail"]) and \
                        res["last_fail"] is not None:
                    break
                time.sleep(0.01)
            stop_w[0] = True
            w.join()
            if res["last_fail"] is not None and res["ok_after"] is not None:
                fo.append(res["ok_after"] - t_kill[0])
            t0 = time.perf_counter()
            victim.start()
            wait_for(lambda: all(ins == set(nd) for nd, ins in
                                 shard_map(victim, coll).values()), 60)
            back.append(time.perf_counter() - t0)
            del ids
        if fo:
            print("\nfailover (kill -9 of a primary under a write loop on "
                  "the three shards, kill to the first write acknowledged "
                  "after the last failed one), %d rounds: p50 %s, p99 %s, "
                  "max %s" % (len(fo), ms(pct(fo, 50)), ms(pct(fo, 99)),
                              ms(max(fo))))
        print("restart of the killed node to all shards in sync again: "
              "p50 %s, p99 %s" % (ms(pct(back, 50)), ms(pct(back, 99))))

        # Catch-up rates.
        nodes[0].s.CreateCollection(pb.CreateCollectionRequest(
            name="cu", dimension=a.dim, shards=1, replication_factor=3),
            timeout=30)
        m = shard_map(nodes[0], "cu")
        prim = by_id[m[0][0][0]]
        rep = by_id[m[0][0][1]]
        per = a.batch * (a.dim * 4 + 8)
        calls = max(1, int(a.catchup_mb * 1e6 / per))
        for how in ("tail", "copy"):
            if how == "tail":
                os.kill(rep.proc.pid, signal.SIGSTOP)
            else:
                rep.kill()
            k = 300_000_000 if how == "tail" else 400_000_000
            for c in range(calls):
                while True:
                    try:
                        prim.s.Upsert(pb.UpsertRequest(
                            collection="cu", points=points(k, a.batch)),
                            timeout=30)
                        break
                    except Exception:  # noqa: BLE001
                        time.sleep(0.05)
                k += a.batch
            if how == "copy":
                prim.s.Flush(pb.FlushRequest(collection="cu"), timeout=120)
            t0 = time.perf_counter()
            if how == "tail":
                os.kill(rep.proc.pid, signal.SIGCONT)
            else:
                rep.start()
            wait_for(lambda: shard_map(prim, "cu")[0][1] ==
                     set(shard_map(prim, "cu")[0][0]), 300, step=0.02)
            el = time.perf_counter() - t0
            mb = calls * per / 1e6
            print("catch-up by %s: %.1f MB of points in %.2f s (%.1f MB/s%s)"
                  % ("WAL tail" if how == "tail" else "full copy + tail",
                     mb, el, mb / el,
                     ", restart included" if how == "copy" else ""))
    finally:
        for n in nodes:
            if n.alive():
                try:
                    os.kill(n.proc.pid, signal.SIGCONT)
                except OSError:
                    pass
            n.kill()


if __name__ == "__main__":
    main()
