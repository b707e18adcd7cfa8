#!/usr/bin/python3
"""The SDK against raw grpcio on one drift-node, side by side, alternating:
upsert of ROWS vectors (SDK: drift.Client.upsert; raw: UpsertStream of
UpsertRequest messages built from pb.Point per row, batches of 2,000) and
QUERIES single-threaded searches (SDK: Client.search of one vector; raw:
the generated stub's Search), alternating in chunks of 100. Each upsert run goes into a fresh
collection; the searches run on the last one.

  sdk_bench.py BUILD_DIR FILE [ROWS] [QUERIES] [ROUNDS]
"""
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "sdk", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests", "grpc"))

import grpc  # noqa: E402
import numpy as np  # noqa: E402

import drift  # noqa: E402
from drift.client import pb, pbg  # noqa: E402
from grpctest import Server  # noqa: E402

BATCH = 2000


def read_fvecs(path, rows):
    with open(path, "rb") as f:
        d = int.from_bytes(f.read(4), "little")
        f.seek(0)
        raw = np.frombuffer(f.read(rows * (4 + 4 * d)), dtype="<f4")
    return raw.reshape(-1, d + 1)[:, 1:].copy()


def raw_upsert(stub, name, x):
    def msgs():
        for i in range(0, len(x), BATCH):
            yield pb.UpsertRequest(collection=name, points=[
                pb.Point(id=i + j, vector=v.tolist())
                for j, v in enumerate(x[i:i + BATCH])])
    return stub.UpsertStream(msgs(), timeout=600).written


def main():
    build, path = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 100000
    queries = int(sys.argv[4]) if len(sys.argv) > 4 else 2000
    rounds = int(sys.argv[5]) if len(sys.argv) > 5 else 2
    x = read_fvecs(path, rows)
    q = x[np.random.default_rng(1).choice(rows, queries)] + 0.5
    tmp = tempfile.mkdtemp(prefix="drift-sdk-bench-", dir="/var/tmp")
    srv = Server([os.path.join(build, "node", "drift-node"), "--data-dir",
                  os.path.join(tmp, "node"), "--listen", "127.0.0.1:0",
                  "--log-level", "error"])
    ch = grpc.insecure_channel(srv.addr, options=[
        ("grpc.max_send_message_length", 64 << 20),
        ("grpc.max_receive_message_length", 64 << 20)])
    stub = pbg.DriftStub(ch)
    c = drift.Client(srv.addr, timeout=600)
    up = {"sdk": [], "raw grpcio": []}
    se = {"sdk": [], "raw grpcio": []}
    n = 0
    try:
        for r in range(rounds):
            order = ["sdk", "raw grpcio"] if r % 2 == 0 else \
                ["raw grpcio", "sdk"]
            for system in order:
                n += 1
                name = "s%d" % n
                c.create_collection(name, dimension=x.shape[1])
                t = time.perf_counter()
                if system == "sdk":
                    w = c.upsert(name, np.arange(rows), x)
                else:
                    w = raw_upsert(stub, name, x)
                rate = w / (time.perf_counter() - t)
                up[system].append(rate)
                print("round %d  upsert  %-10s %9.0f vectors/s" %
                      (r + 1, system, rate), flush=True)
                if n > 2:
                    c.drop_collection("s%d" % (n - 2))
            last = "s%d" % n
            c.flush(last)
            # Searches alternate in chunks of 100 queries, so background
            # work after the flush (and other users of the machine) weigh
            # on both alike.
            spent = {"sdk": 0.0, "raw grpcio": 0.0}
            for i in range(0, len(q), 100):
                for system in order:
                    t = time.perf_counter()
                    for v in q[i:i + 100]:
                        if system == "sdk":
                            c.search(last, v, k=10)
                        else:
                            stub.Search(pb.SearchRequest(
                                collection=last, vector=v.tolist(), k=10),
                                timeout=60)
                    spent[system] += time.perf_counter() - t
            for system in order:
                qps = len(q) / spent[system]
                se[system].append(qps)
                print("round %d  search  %-10s %9.0f queries/s" %
                      (r + 1, system, qps), flush=True)
    finally:
        c.close()
        ch.close()
        srv.stop()
        os.system("rm -rf '%s'" % tmp)
    for what, d, unit in (("upsert", up, "vectors/s"),
                          ("search", se, "queries/s")):
        a, b = statistics.median(d["sdk"]), statistics.median(d["raw grpcio"])
        print("median %s: sdk %.0f, raw grpcio %.0f %s (sdk/raw %.2f)" %
              (what, a, b, unit, a / b))


if __name__ == "__main__":
    main()
