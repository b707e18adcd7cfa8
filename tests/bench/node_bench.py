#!/usr/bin/python3
"""drift-node through gRPC (the node issue's figures), with stock clients:

- ingest: UpsertStream of a data set's base vectors (batches of 500) into a
  collection of each sync policy (always, batch, none), then Flush;
  vectors/s acknowledged (stream) and including the flush into L1;
- search: h2load (one connection, 32 streams in flight) sending one
  SearchRequest (k=10, the collection's default recall target) of the
  first query, for a few seconds: requests/s through the whole server;
  and a Python grpcio client with 32 calls in flight over the first 1,000
  queries, with recall@10 against the exact ground truth.

    tests/bench/node_bench.py [--dataset fmnist] [--seconds 10]

run.py imports scenario_node() for `make bench`.
"""
import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(ROOT, "tests", "grpc"))
import datasets  # noqa: E402
import vecio  # noqa: E402
from grpctest import Server, drift_stubs  # noqa: E402

NODE = os.path.join(ROOT, "build", "node", "drift-node")
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
        srv = Server([NODE, "--data-dir", data, "--listen", "127.0.0.1:0",
                      "--log-level", "warn"])
        ch = grpc.insecure_channel(srv.addr, options=[
            ("grpc.max_send_message_length", 64 << 20),
            ("grpc.max_receive_message_length", 64 << 20)])
        s = pbg.DriftStub(ch)
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
            nq = min(1000, len(query))
            log(f"node: {name}: grpcio Search x {nq}")
            t0 = time.time()
            futs = []
            hits = 0
            for i in range(nq):
                futs.append(s.Search.future(pb.SearchRequest(
                    collection=name, vector=query[i].tolist(), k=10),
                    timeout=60))
                if len(futs) >= 32 or i == nq - 1:
                    for j, f in enumerate(futs):
                        qi = i - len(futs) + 1 + j
                        got = {h.id for h in f.result().hits}
                        hits += len(got & set(gt[qi][:10].tolist()))
                    futs = []
            el = time.time() - t0
            rows.append({"dataset": ds, "measure": "search, grpcio",
                         "value": nq / el, "unit": "queries/s",
                         "extra": f"recall@10 {hits / (10 * nq):.4f} "
                                  f"over {nq} queries, 32 in flight"})
        finally:
            ch.close()
            srv.stop()
            shutil.rmtree(data, ignore_errors=True)
    return rows


def markdown(rows):
    out = ["| dataset | measure | value | unit | notes |",
           "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['dataset']} | {r['measure']} | {r['value']:,.0f} "
                   f"| {r['unit']} | {r['extra']} |")
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="fmnist")
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    print(markdown(scenario_node(a.dataset.split(","), a.seconds,
                                 lambda m: print(m, file=sys.stderr))))
