#!/usr/bin/python3
"""drift-router's cost and fan-out (issue 18), side by side in one run on
real data (Fashion-MNIST, the first 10,000 train and 1,000 test images,
tests/bench/datasets.py), with the same C gRPC client for every target
(node-search-bench grpc: requests serialized up front, M calls in flight):

- the router's added latency: a one-shard collection, searched straight at
  the node that holds it and through the router (1 and 32 calls in
  flight): p50 / p99 and QPS;
- fan-out: a six-shard collection over three nodes through the router
  against the same collection of six shards on one node alone;
- Upsert throughput (batches of 500 from grpcio) through the router into
  the one-shard collection, and the same batches again straight to its
  node.

    tests/bench/router_bench.py [--build build] [--seconds 5]

A benchmark, not a test: it prints what it measured (make bench-router).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..", "..")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--seconds", type=float, default=5)
    a = ap.parse_args()
    build = os.path.abspath(a.build)
    os.environ["DRIFT_NODE"] = os.path.join(build, "node", "drift-node")
    os.environ.setdefault("DRIFT_PROTO_DIR", os.path.join(ROOT, "proto"))
    sys.path.insert(0, HERE)
    sys.path.insert(0, os.path.join(ROOT, "tests", "cluster"))
    sys.path.insert(0, os.path.join(ROOT, "tests", "router"))
    import datasets
    import vecio
    from clusterlib import Node, cluster, pb, tmpdir, wait_for
    os.environ["DRIFT_ROUTER"] = os.path.join(build, "router",
                                              "drift-router")
    from test_router import Router

    folder = datasets.fmnist_10k()
    base = vecio.read_fvecs(os.path.join(folder, "base.fvecs"))
    qf = os.path.join(folder, "query.fvecs")
    gt = os.path.join(folder, "gt_l2.ivecs")
    bench = os.path.join(build, "tests", "bench", "node-search-bench")
    tmp = tmpdir()
    nodes = cluster(tmp, 3)
    for n in nodes:
        n.node_id = n.status().node_id
    wait_for(lambda: all(x.state == pb.NODE_STATE_UP
                         for x in nodes[0].status().nodes), timeout=20)
    alone = Node(tmp, "alone").start()
    router = Router(",".join(n.addr for n in nodes),
                    os.path.join(tmp, "router.log"))

    def load(stub, name, shards, create=True):
        if create:
            stub.CreateCollection(pb.CreateCollectionRequest(
                name=name, dimension=base.shape[1], shards=shards),
                timeout=60)
        t = time.perf_counter()
        for i in range(0, len(base), 500):
            stub.Upsert(pb.UpsertRequest(collection=name, points=[
                pb.Point(id=j, vector=base[j].tolist())
                for j in range(i, min(i + 500, len(base)))]), timeout=60)
        return len(base) / (time.perf_counter() - t)

    def run(addr, name, inflight):
        out = subprocess.run(
            [bench, "grpc", addr, name, qf, gt, "--inflight", str(inflight),
             "--seconds", str(a.seconds)], capture_output=True, text=True,
            check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])

    try:
        print("# %s, Fashion-MNIST 10k x 784, 3 nodes + drift-router on "
              "127.0.0.1, 2 cores shared with other work" %
              time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
        up_router = load(router.s, "one", 1)
        m = router.c.ShardMap(pb.ShardMapRequest(collection="one"),
                              timeout=10)
        holder = next(n for n in nodes if n.node_id == m.shards[0].nodes[0])
        # The same batches again straight to the holder (the same ids:
        # each one is written again, as through the router).
        up_direct = load(holder.s, "one", 1, create=False)
        load(router.s, "six", 6)
        load(alone.s, "six", 6)
        print("\nUpsert, batches of 500 from grpcio: straight to the node "
              "%.0f vectors/s, through the router %.0f vectors/s" %
              (up_direct, up_router))
        rows = []
        for label, addr, name in (
                ("1 shard, straight to its node", holder.addr, "one"),
                ("1 shard, through the router", router.addr, "one"),
                ("6 shards on 3 nodes, through the router", router.addr,
                 "six"),
                ("6 shards on one node, straight", alone.addr, "six")):
            for inflight in (1, 32):
                r = run(addr, name, inflight)
                rows.append((label, inflight, r))
        print("\n| target | in flight | QPS | p50 | p99 | recall@10 | "
              "errors |")
        print("|---|---|---|---|---|---|---|")
        for label, inflight, r in rows:
            print("| %s | %d | %.0f | %.0f us | %.0f us | %.3f | %d |" % (
                label, inflight, r["qps"], r["p50_us"], r["p99_us"],
                r["recall"], r["errors"]))
        d1 = next(r for lb, i, r in rows if lb.startswith("1 shard, st")
                  and i == 1)
        r1 = next(r for lb, i, r in rows if lb.startswith("1 shard, th")
                  and i == 1)
        d32 = next(r for lb, i, r in rows if lb.startswith("1 shard, st")
                   and i == 32)
        r32 = next(r for lb, i, r in rows if lb.startswith("1 shard, th")
                   and i == 32)
        print("\nthe router adds %.0f us p50, %.0f us p99 at 1 in flight; "
              "at 32 in flight it keeps %.0f%% of the direct QPS" % (
                  r1["p50_us"] - d1["p50_us"], r1["p99_us"] - d1["p99_us"],
                  100.0 * r32["qps"] / d32["qps"]))
    finally:
        router.stop()
        alone.stop()
        for n in nodes:
            n.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
