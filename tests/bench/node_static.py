#!/usr/bin/python3
"""drift-node as a system of the static scenario (tests/bench/README.md,
"system protocol"): Drift measured through gRPC, next to the in-process
engine and the peers.

    node_static.py BASE QUERY GT [--threads N] [--in-flight F]
                   [--queries Q] [--load-only]

Starts build/node/drift-node on an ephemeral port with a temporary data
directory, creates a collection (L2, `batch` WAL sync), loads the base with
UpsertStream (batches of 500, the requests serialized before the clock
starts; node_bench.upsert_bytes) and Flush: build_s runs from the first
upsert until the flush returns. Then the same sweep as drift-bench static
(probe budget 1..64, recall target 0.8..0.995): the first Q queries, sent
by this one client process with one call in flight (reported as threads 1)
and with F calls in flight (reported as threads N: the server's worker
pool runs them), requests serialized and responses parsed outside the
clock; recall@10 against GT. The server's resident memory (VmRSS after it
started, VmHWM before it stops) is reported in the build line, since the
harness's wait4 sees only this client.
"""
import argparse
import collections
import json
import os
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import node_bench  # noqa: E402  (also puts tests/grpc on sys.path)
import vecio  # noqa: E402
import datasets  # noqa: E402
from grpctest import Server  # noqa: E402

PROBES = (1, 2, 4, 8, 16, 32, 64)
TARGETS = (0.8, 0.9, 0.95, 0.98, 0.99, 0.995)


def emit(**kw):
    print(json.dumps(kw), flush=True)


def proc_kib(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return 0


def recall10(responses, gt, pb):
    hit = 0
    for raw, g in zip(responses, gt):
        got = {h.id for h in pb.SearchResponse.FromString(raw).hits}
        hit += len(got & set(g[:10].tolist()))
    return hit / (10.0 * len(responses))


def run_queries(call, reqs, in_flight):
    """Sends every request with at most in_flight outstanding; returns
    (raw responses in order, seconds)."""
    out = [None] * len(reqs)
    window = collections.deque()
    t0 = time.perf_counter()
    for i, r in enumerate(reqs):
        if len(window) >= in_flight:
            j, f = window.popleft()
            out[j] = f.result()
        window.append((i, call.future(r, timeout=120)))
    while window:
        j, f = window.popleft()
        out[j] = f.result()
    return out, time.perf_counter() - t0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base")
    ap.add_argument("query")
    ap.add_argument("gt")
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--in-flight", type=int, default=32)
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--load-only", action="store_true")
    a = ap.parse_args()
    base = vecio.read_fvecs(a.base)
    q = vecio.read_fvecs(a.query)[:a.queries]
    gt = vecio.read_ivecs(a.gt)[:a.queries]
    if a.load_only:
        return
    import grpc
    pb, _, _, _ = node_bench.drift_stubs()
    data = tempfile.mkdtemp(prefix="node-static-", dir=datasets.cache_dir())
    srv = Server([node_bench.NODE, "--data-dir", data, "--listen",
                  "127.0.0.1:0", "--log-level", "warn"])
    ch = grpc.insecure_channel(srv.addr, options=[
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.max_receive_message_length", 64 << 20)])
    try:
        rss0 = proc_kib(srv.proc.pid, "VmRSS") * 1024
        name = "static"
        ch.unary_unary("/drift.v1.Drift/CreateCollection",
                       request_serializer=None, response_deserializer=None)(
            pb.CreateCollectionRequest(name=name, dimension=base.shape[1],
                                       wal_sync=1).SerializeToString(),
            timeout=60)
        msgs = [node_bench.upsert_bytes(name, b, base[b:b + 500])
                for b in range(0, len(base), 500)]
        stream = ch.stream_unary("/drift.v1.Drift/UpsertStream",
                                 request_serializer=None,
                                 response_deserializer=None)
        t0 = time.perf_counter()
        written = pb.UpsertResponse.FromString(
            stream(iter(msgs), timeout=7200)).written
        acked = time.perf_counter() - t0
        ch.unary_unary("/drift.v1.Drift/Flush", request_serializer=None,
                       response_deserializer=None)(
            pb.FlushRequest(collection=name).SerializeToString(),
            timeout=7200)
        build = time.perf_counter() - t0
        del msgs
        if written != len(base):
            raise RuntimeError(f"{written} of {len(base)} written")
        search = ch.unary_unary("/drift.v1.Drift/Search",
                                request_serializer=None,
                                response_deserializer=None)
        points = [("nprobe", p, {"nprobe": p}) for p in PROBES] + \
                 [("recall_target", t, {"recall_target": t}) for t in TARGETS]
        sweep = []
        for param, value, knob in points:
            reqs = [pb.SearchRequest(collection=name, vector=v.tolist(), k=10,
                                     **knob).SerializeToString() for v in q]
            for threads, flight in sorted({(1, 1), (a.threads, a.in_flight)}):
                out, secs = run_queries(search, reqs, flight)
                sweep.append(dict(event="search", system="drift-node",
                                  param=param, value=value, threads=threads,
                                  in_flight=flight,
                                  qps=round(len(reqs) / secs, 1),
                                  recall10=round(recall10(out, gt, pb), 4)))
        hwm = proc_kib(srv.proc.pid, "VmHWM") * 1024
        emit(event="build", system="drift-node", n=len(base),
             build_s=round(build, 3), acked_s=round(acked, 3),
             threads=a.threads, in_flight=a.in_flight,
             peak_rss_bytes=hwm, base_rss_bytes=rss0, queries=len(q))
        for s in sweep:
            emit(**s)
    finally:
        ch.close()
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
