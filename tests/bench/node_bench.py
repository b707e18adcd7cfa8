#!/usr/bin/python3
"""drift-node through gRPC (the node issue's figures), with stock clients:

- ingest: UpsertStream of a data set's base vectors (batches of 500) into a
  collection of each sync policy (always, batch, none), then Flush;
  vectors/s acknowledged (stream) and including the flush into L1;
- search: h2load (one connection, 32 streams in flight) sending one
  SearchRequest (k=10, the collection's default recall target) of the
  first query, for a few seconds: requests/s through the whole server;
- search, in-process next to gRPC: the first 1,000 queries (k=10, the
  collection's default recall target, nothing else set) on the batch
  collection, round after round for a few seconds, each way with QPS,
  p50/p99 latency per call and recall@10 against the exact ground truth:
  through gRPC from one client process with many calls in flight
  (node-search-bench grpc: the C client of common/grpc, requests
  serialized beforehand; and stock Python grpcio), then, once the node
  has stopped, in-process on the same data directory
  (node-search-bench local: node/engine/collection.h, drift_collection_search,
  the call the node's Search handler makes) from 1 thread and from one
  thread per core.

    tests/bench/node_bench.py [--dataset fmnist] [--seconds 10]

run.py imports scenario_node() for `make bench`.
"""
import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "grpc"))
import datasets  # noqa: E402
import vecio  # noqa: E402
from grpctest import Server, drift_stubs  # noqa: E402

NODE = os.path.join(ROOT, "build", "node", "drift-node")
SEARCH_BENCH = os.path.join(ROOT, "build", "tests", "bench",
                            "node-search-bench")
NQ = 1000
POLICIES = [("always", 0), ("batch", 1), ("none", 2)]


def _varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num, wire, payload):
    """A length-delimited field (wire type 2) of a protobuf message."""
    return _varint(num << 3 | wire) + _varint(len(payload)) + payload


def upsert_bytes(collection, first_id, block):
    """UpsertRequest{collection, points: [Point{id, vector}]} serialized
    directly from a float32 numpy block, so that the client's own cost
    (Python objects per float) does not hide the server's rate."""
    parts = [_field(1, 2, collection.encode())]
    for i, row in enumerate(block):
        point = (_varint(1 << 3) + _varint(first_id + i) +
                 _field(2, 2, row.astype("<f4").tobytes()))
        parts.append(_field(2, 2, point))
    return b"".join(parts)


def h2load_search(addr, body, seconds):
    f = tempfile.NamedTemporaryFile(delete=False)
    f.write(b"\x00" + len(body).to_bytes(4, "big") + body)
    f.close()
    out = subprocess.run(
        ["h2load", "-D", str(seconds), "-c", "1", "-m", "32", "-t", "1",
         "-d", f.name, "-H", "content-type: application/grpc",
         "-H", "te: trailers", f"http://{addr}/drift.v1.Drift/Search"],
        capture_output=True, text=True, timeout=seconds + 120).stdout
    os.unlink(f.name)
    m = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    if not m:
        raise RuntimeError("h2load output not understood:\n" + out)
    return float(m.group(1))


def search_bench(args, log):
    """One node-search-bench run: its JSON line as a dict."""
    log("node: node-search-bench " + " ".join(args))
    out = subprocess.run([SEARCH_BENCH] + args, capture_output=True,
                         text=True, timeout=600)
    if out.returncode != 0:
        raise RuntimeError("node-search-bench failed:\n" + out.stderr)
    return json.loads(out.stdout.strip().splitlines()[-1])


def search_row(ds, path, load, r):
    return {"kind": "search", "dataset": ds, "path": path, "load": load,
            "qps": r["qps"], "p50_us": r["p50_us"], "p99_us": r["p99_us"],
            "recall10": r["recall"], "cpu_us": r["cpu_us_per_call"],
            "node_cpu_us": r.get("server_cpu_us_per_call") or None,
            "calls": r["calls"], "loadavg": os.getloadavg()[0]}


def proc_cpu(pid):
    """User + system CPU seconds of process pid (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def settle(s, pb, names, log, quiet=3.0, limit=120.0):
    """Waits until the Janitor's maintenance (splits, merges, re-centres)
    of every collection has stopped for `quiet` seconds, so that every
    search below, in-process or not, sees one index state."""
    def counters():
        out = []
        for n in names:
            c = s.DescribeCollection(pb.DescribeCollectionRequest(name=n),
                                     timeout=60).collection
            out += [(x.splits, x.merges, x.recenters) for x in c.shard_stats]
        return out
    t0 = time.time()
    last, since = counters(), time.time()
    while time.time() - since < quiet and time.time() - t0 < limit:
        time.sleep(0.5)
        now = counters()
        if now != last:
            last, since = now, time.time()
    log(f"node: maintenance settled after {time.time() - t0:.1f} s: {last}")


def grpcio_search(s, pb, name, query, gt, nq, inflight, seconds, pid):
    """Stock grpcio, one process, `inflight` calls kept in flight with
    futures: the same measures as node-search-bench (CPU: this process's
    and the node's, pid)."""
    import resource
    lock = threading.Lock()
    slots = threading.Semaphore(inflight)
    lat, found = [], [0] * nq
    errors = []
    reqs = [pb.SearchRequest(collection=name, vector=query[i].tolist(), k=10)
            for i in range(nq)]
    truth = [set(gt[i][:10].tolist()) for i in range(nq)]

    def done(f, qi, first, t):
        el = time.perf_counter() - t
        try:
            ids = {h.id for h in f.result().hits}
            with lock:
                lat.append(el)
                if first:
                    found[qi] = len(ids & truth[qi])
        except Exception as e:  # noqa: BLE001 - counted and reported
            errors.append(str(e))
        slots.release()
    for i in range(200):  # warm-up, as node-search-bench
        s.Search(reqs[i % nq], timeout=60)
    ru = resource.getrusage(resource.RUSAGE_SELF)
    srv0 = proc_cpu(pid)
    cpu0 = ru.ru_utime + ru.ru_stime + srv0
    t0 = time.perf_counter()
    end = t0 + seconds
    i = 0
    while i < nq or time.perf_counter() < end:
        slots.acquire()
        t = time.perf_counter()
        f = s.Search.future(reqs[i % nq], timeout=60)
        f.add_done_callback(lambda f, qi=i % nq, first=i < nq, t=t:
                            done(f, qi, first, t))
        i += 1
    for _ in range(inflight):
        slots.acquire()
    el = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_SELF)
    srv1 = proc_cpu(pid)
    cpu = ru.ru_utime + ru.ru_stime + srv1 - cpu0
    if errors:
        raise RuntimeError("grpcio searches failed: %s" % errors[:3])
    lat.sort()
    return {"qps": len(lat) / el, "p50_us": lat[len(lat) // 2] * 1e6,
            "p99_us": lat[len(lat) * 99 // 100] * 1e6,
            "recall": sum(found) / (10.0 * nq), "calls": len(lat),
            "cpu_us_per_call": cpu * 1e6 / len(lat),
            "server_cpu_us_per_call": (srv1 - srv0) * 1e6 / len(lat)}


def scenario_node(names=("fmnist",), seconds=10, log=print):
    import grpc
    pb, pbg, _, _ = drift_stubs()
    rows = []
    for ds in names:
        folder = getattr(datasets, ds)()
        base = vecio.read_fvecs(os.path.join(folder, "base.fvecs"))
        query = vecio.read_fvecs(os.path.join(folder, "query.fvecs"))
        gt = vecio.read_ivecs(os.path.join(folder, "gt_l2.ivecs"))
        data = tempfile.mkdtemp(prefix="node-bench-",
                                dir=datasets.cache_dir())
        def start():
            srv = Server([NODE, "--data-dir", data, "--listen",
                          "127.0.0.1:0", "--log-level", "warn"])
            ch = grpc.insecure_channel(srv.addr, options=[
                ("grpc.max_send_message_length", 64 << 20),
                ("grpc.max_receive_message_length", 64 << 20)])
            return srv, ch, pbg.DriftStub(ch)
        srv, ch, s = start()
        try:
            for pol, code in POLICIES:
                name = f"{ds}_{pol}"
                s.CreateCollection(pb.CreateCollectionRequest(
                    name=name, dimension=base.shape[1], wal_sync=code),
                    timeout=60)
                # Serialized before the clock starts.
                msgs = [upsert_bytes(name, b, base[b:b + 500])
                        for b in range(0, len(base), 500)]
                raw = ch.stream_unary("/drift.v1.Drift/UpsertStream",
                                      request_serializer=None,
                                      response_deserializer=None)
                log(f"node: {name}: UpsertStream of {len(base)} vectors")
                t0 = time.time()
                w = pb.UpsertResponse.FromString(
                    raw(iter(msgs), timeout=3600)).written
                t1 = time.time()
                s.Flush(pb.FlushRequest(collection=name), timeout=3600)
                t2 = time.time()
                rows.append({"dataset": ds, "measure": f"ingest ({pol})",
                             "value": w / (t1 - t0),
                             "unit": "vectors/s acknowledged",
                             "extra": f"{w / (t2 - t0):,.0f} vectors/s "
                                      "with the flush into L1"})
            name = f"{ds}_batch"
            req = pb.SearchRequest(collection=name, vector=query[0].tolist(),
                                   k=10)
            log(f"node: {name}: h2load Search")
            rps = h2load_search(srv.addr, req.SerializeToString(), seconds)
            rows.append({"dataset": ds, "measure": "search, h2load",
                         "value": rps, "unit": "requests/s",
                         "extra": "1 connection x 32 streams, one query, "
                                  "k=10, default recall target 0.95"})
            # The same queries, parameters, collection and index state
            # every way: the in-process open below hydrates the data
            # directory (and measures the recall calibration anew), so the
            # node searched through gRPC is one restarted on it too, once
            # its maintenance has settled.
            settle(s, pb, [f"{ds}_{p}" for p, _ in POLICIES], log)
            ch.close()
            if srv.stop() != 0:
                raise RuntimeError("drift-node did not stop cleanly")
            srv, ch, s = start()
            settle(s, pb, [f"{ds}_{p}" for p, _ in POLICIES], log)
            nq = min(NQ, len(query))
            qf = os.path.join(folder, "query.fvecs")
            gf = os.path.join(folder, "gt_l2.ivecs")
            common = [name, qf, gf, "--queries", str(nq), "--seconds",
                      str(seconds), "--k", "10"]
            for m in (1, 32):
                r = search_bench(["grpc", srv.addr] + common +
                                 ["--inflight", str(m), "--server-pid",
                                  str(srv.proc.pid)], log)
                rows.append(search_row(
                    ds, "gRPC, C client (common/grpc)",
                    f"1 process, 1 connection, {m} in flight", r))
            log(f"node: {name}: grpcio Search, 32 in flight")
            r = grpcio_search(s, pb, name, query, gt, nq, 32, seconds,
                              srv.proc.pid)
            rows.append(search_row(ds, "gRPC, Python grpcio",
                                   "1 process, 1 channel, 32 in flight", r))
            ch.close()
            rc = srv.stop()
            if rc != 0:
                raise RuntimeError(f"drift-node exit status {rc}")
            cores = os.cpu_count() or 1
            for th in sorted({1, cores}):
                r = search_bench(["local", data] + common +
                                 ["--threads", str(th)], log)
                rows.append(search_row(
                    ds, "in-process (drift_collection_search)",
                    f"{th} thread{'s' if th > 1 else ''}", r))
        finally:
            ch.close()
            srv.stop()
            shutil.rmtree(data, ignore_errors=True)
    return rows


SEARCH_COLS = ["dataset", "path", "load", "qps", "p50_us", "p99_us",
               "recall10", "cpu_us", "node_cpu_us", "calls", "loadavg"]


def markdown(rows):
    out = ["| dataset | measure | value | unit | notes |",
           "|---|---|---|---|---|"]
    for r in rows:
        if r.get("kind") == "search":
            continue
        out.append(f"| {r['dataset']} | {r['measure']} | {r['value']:,.0f} "
                   f"| {r['unit']} | {r['extra']} |")
    out += ["", "| " + " | ".join(SEARCH_COLS) + " |",
            "|" + "---|" * len(SEARCH_COLS)]
    for r in rows:
        if r.get("kind") != "search":
            continue
        out.append(f"| {r['dataset']} | {r['path']} | {r['load']} | "
                   f"{r['qps']:,.0f} | {r['p50_us']:,.0f} | "
                   f"{r['p99_us']:,.0f} | {r['recall10']:.4f} | "
                   f"{r['cpu_us']:,.0f} | "
                   + (f"{r['node_cpu_us']:,.0f}" if r.get('node_cpu_us')
                      else "–")
                   + f" | {r['calls']:,} | "
                   f"{r['loadavg']:.1f} |")
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fmnist")
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    print(markdown(scenario_node(a.dataset.split(","), a.seconds,
                                 lambda m: print(m, file=sys.stderr))))
