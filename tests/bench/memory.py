#!/usr/bin/python3
"""The memory scenario (issue 22), run by run.py; one JSON line per
measurement on stdout.

    memory.py vectors BASE [--rows N]
        Resident bytes per vector once everything is flushed, of the same
        engine two ways, one after the other: in-process (shard-bench
        ingest: the shard with its Janitor; RSS after the flush and 2 s of
        Janitor, minus RSS before the shard opened, the base already in
        memory) and drift-node (a default node on an ephemeral port, one
        collection, UpsertStream in batches of 500 and Flush; VmRSS 2 s
        after the flush minus VmRSS after start; also VmHWM, the peak).
    memory.py collections --count N [--rows R] [--flush]
        One default drift-node: N collections created one after the other
        (64-d COSINE), the time of each; the node's VmRSS and threads;
        then a first Upsert of R vectors into each, timed (with --flush,
        each collection is then flushed to L1, timed, and the VmRSS with
        all of them flushed is reported too); ListCollections
        paged by 1,000; then every collection dropped, timed, and the
        VmRSS once they are gone. Reported: p50 / p99 of each call over
        the first and the last tenth of the collections (does a call slow
        down as the node fills?), the fixed cost of an empty collection,
        the cost with R vectors, and the memory after the drops.
"""
import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import node_bench  # noqa: E402  (also puts tests/grpc on sys.path)
import vecio  # noqa: E402
import datasets  # noqa: E402
from grpctest import Server  # noqa: E402

ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
SHARD_BENCH = os.path.join(ROOT, "build", "tests", "bench", "shard-bench")


def emit(**kw):
    print(json.dumps(kw), flush=True)


def status(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM"):
                out[k] = int(v.split()[0]) * 1024
            elif k == "Threads":
                out[k] = int(v.split()[0])
    return out


def start_node(data):
    # No MALLOC_PERTURB_ (meson's): it writes into every block malloc
    # hands out, so reserved memory would all be resident.
    env = dict(os.environ)
    env.pop("MALLOC_PERTURB_", None)
    return Server([node_bench.NODE, "--data-dir", data, "--listen",
                   "127.0.0.1:0", "--log-level", "warn"], env=env)


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else 0.0


def cmd_vectors(a):
    base = vecio.read_fvecs(a.base)
    if a.rows:
        base = base[:a.rows]
    n, dim = base.shape
    # In-process: shard-bench ingest on the same rows.
    d = tempfile.mkdtemp(prefix="memory-shard-", dir=datasets.cache_dir())
    shutil.rmtree(d)
    q = os.path.join(os.path.dirname(a.base), "query.fvecs")
    gt = os.path.join(os.path.dirname(a.base), "gt_l2.ivecs")
    cmd = [SHARD_BENCH, "ingest", a.base, q, gt, "--dir", d, "--sync",
           "batch", "--queries", "10"]
    if a.rows:
        cmd += ["--rows", str(a.rows)]
    env = dict(os.environ)
    env.pop("MALLOC_PERTURB_", None)
    out = subprocess.run(cmd, check=True, capture_output=True, text=True,
                         env=env).stdout
    shutil.rmtree(d, ignore_errors=True)
    ing = [json.loads(x) for x in out.splitlines() if '"ingest"' in x][-1]
    inproc = ing["rss_flushed_bytes"] - ing["rss_start_bytes"]
    emit(event="vectors", system="drift-shard", n=n, dim=dim,
         flushed_bytes=inproc, bytes_per_vector=round(inproc / n, 1))
    # drift-node.
    import grpc
    pb, _, _, _ = node_bench.drift_stubs()
    data = tempfile.mkdtemp(prefix="memory-node-", dir=datasets.cache_dir())
    srv = start_node(data)
    ch = grpc.insecure_channel(srv.addr, options=[
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.max_receive_message_length", 64 << 20)])
    try:
        pid = srv.proc.pid
        rss0 = status(pid)["VmRSS"]
        ch.unary_unary("/drift.v1.Drift/CreateCollection")(
            pb.CreateCollectionRequest(name="m", dimension=dim,
                                       wal_sync=1).SerializeToString(),
            timeout=60)
        stream = ch.stream_unary("/drift.v1.Drift/UpsertStream")
        msgs = (node_bench.upsert_bytes("m", b, base[b:b + 500])
                for b in range(0, n, 500))
        stream(msgs, timeout=7200)
        ch.unary_unary("/drift.v1.Drift/Flush")(
            pb.FlushRequest(collection="m").SerializeToString(),
            timeout=7200)
        time.sleep(2)
        st = status(pid)
        flushed = st["VmRSS"] - rss0
        emit(event="vectors", system="drift-node", n=n, dim=dim,
             flushed_bytes=flushed, bytes_per_vector=round(flushed / n, 1),
             peak_bytes_per_vector=round((st["VmHWM"] - rss0) / n, 1),
             ratio=round(flushed / inproc, 3) if inproc > 0 else None)
    finally:
        ch.close()
        srv.stop(timeout=120)
        shutil.rmtree(data, ignore_errors=True)


def cmd_collections(a):
    import grpc
    pb, pbg, _, _ = node_bench.drift_stubs()
    data = tempfile.mkdtemp(prefix="memory-tenants-",
                            dir=datasets.cache_dir())
    srv = start_node(data)
    ch = grpc.insecure_channel(srv.addr)
    s = pbg.DriftStub(ch)
    rng = random.Random(22)
    try:
        pid = srv.proc.pid
        st0 = status(pid)
        create, upsert, drop = [], [], []
        for c in range(a.count):
            t = time.perf_counter()
            s.CreateCollection(pb.CreateCollectionRequest(
                name=f"t{c}", dimension=64, metric=pb.METRIC_COSINE),
                timeout=120)
            create.append(time.perf_counter() - t)
        time.sleep(2)
        st1 = status(pid)
        pts = [pb.Point(id=i, vector=[rng.uniform(-1, 1) for _ in range(64)])
               for i in range(a.rows)]
        for c in range(a.count):
            req = pb.UpsertRequest(collection=f"t{c}", points=pts)
            t = time.perf_counter()
            s.Upsert(req, timeout=120)
            upsert.append(time.perf_counter() - t)
        time.sleep(2)
        st2 = status(pid)
        flushed, flush = {}, []
        if a.flush:
            for c in range(a.count):
                t = time.perf_counter()
                s.Flush(pb.FlushRequest(collection=f"t{c}"), timeout=120)
                flush.append(time.perf_counter() - t)
            time.sleep(2)
            st = status(pid)
            flushed = dict(flushed_rss=st["VmRSS"],
                           flushed_threads=st["Threads"],
                           flushed_bytes_each=round(
                               (st["VmRSS"] - st0["VmRSS"]) / a.count))
        t = time.perf_counter()
        names, token = 0, ""
        while True:
            r = s.ListCollections(pb.ListCollectionsRequest(
                page_size=1000, page_token=token), timeout=120)
            names += len(r.collections)
            token = r.next_page_token
            if not token:
                break
        list_s = time.perf_counter() - t
        for c in range(a.count):
            t = time.perf_counter()
            s.DropCollection(pb.DropCollectionRequest(name=f"t{c}"),
                             timeout=120)
            drop.append(time.perf_counter() - t)
        time.sleep(2)
        st3 = status(pid)
        tenth = max(1, a.count // 10)

        def ms(xs):
            return dict(p50_ms=round(1e3 * pct(xs, 0.5), 2),
                        p99_ms=round(1e3 * pct(xs, 0.99), 2))
        for call, xs in (("create", create), ("upsert", upsert),
                         ("flush", flush), ("drop", drop)):
            if not xs:
                continue
            emit(event="call", call=call, count=a.count,
                 first=ms(xs[:tenth]), last=ms(xs[-tenth:]),
                 total_s=round(sum(xs), 1))
        emit(event="tenants", count=a.count, rows=a.rows,
             start_rss=st0["VmRSS"], start_threads=st0["Threads"],
             empty_rss=st1["VmRSS"], empty_threads=st1["Threads"],
             empty_bytes_each=round((st1["VmRSS"] - st0["VmRSS"]) / a.count),
             loaded_rss=st2["VmRSS"], loaded_threads=st2["Threads"],
             loaded_bytes_each=round((st2["VmRSS"] - st0["VmRSS"]) /
                                     a.count),
             dropped_rss=st3["VmRSS"], dropped_threads=st3["Threads"],
             listed=names, list_s=round(list_s, 3), **flushed)
    finally:
        ch.close()
        srv.stop(timeout=300)
        shutil.rmtree(data, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    v = sub.add_parser("vectors")
    v.add_argument("base")
    v.add_argument("--rows", type=int, default=0)
    c = sub.add_parser("collections")
    c.add_argument("--count", type=int, required=True)
    c.add_argument("--rows", type=int, default=200)
    c.add_argument("--flush", action="store_true")
    a = ap.parse_args()
    cmd_vectors(a) if a.cmd == "vectors" else cmd_collections(a)


if __name__ == "__main__":
    main()
