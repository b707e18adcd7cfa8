#!/usr/bin/python3
"""The gRPC layer's benchmark: unary echo requests/s, Drift's server
(tests/grpc/echo-server: one loop thread plus the worker pool) next to a
stock Python grpcio server (tests/grpc/peer.py) on the same machine, in the
same run, driven by the same loads:

- h2load (Debian nghttp2-client): HTTP/2 load with a framed EchoRequest as
  the body; one connection with 100 streams in flight, and 8 connections
  with 16 each. h2load counts HTTP 2xx responses and cannot see
  grpc-status (the interop tests check statuses);
- echo-client (the gRPC layer's own client) with 64 calls in flight,
  which counts only calls that ended with status OK.

    tests/bench/grpc_bench.py [--seconds S]      prints a markdown table

run.py imports scenario_grpc() for `make bench`.
"""
import argparse
import os
import re
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, os.path.join(ROOT, "tests", "grpc"))
from grpctest import Server  # noqa: E402

BUILD = os.path.join(ROOT, "build", "tests", "grpc")
NOTE = ("Both servers and the load generator share the machine's cores, as "
        "they would on one host.")


def echo_request_body():
    """A framed EchoRequest{payload: 16 bytes}, written by hand: field 1,
    length-delimited (tag 0x0a), so no generated code is needed here."""
    msg = b"\x0a\x10" + b"0123456789abcdef"
    return b"\x00" + struct.pack(">I", len(msg)) + msg


def h2load(addr, seconds, conns, streams):
    body = tempfile.NamedTemporaryFile(delete=False)
    body.write(echo_request_body())
    body.close()
    cmd = ["h2load", "-D", str(seconds), "-c", str(conns), "-m", str(streams),
           "-t", "1", "-d", body.name,
           "-H", "content-type: application/grpc", "-H", "te: trailers",
           f"http://{addr}/drift.test.Echo/Unary"]
    out = subprocess.run(cmd, capture_output=True, text=True,
                         timeout=seconds + 120).stdout
    os.unlink(body.name)
    rps = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    ok = re.search(r"requests: \d+ total, \d+ started, \d+ done, (\d+) "
                   r"succeeded, (\d+) failed", out)
    if not rps or not ok:
        raise RuntimeError("h2load output not understood:\n" + out)
    return float(rps.group(1)), int(ok.group(1)), int(ok.group(2))


def drift_client(addr, seconds, inflight=64):
    import json
    out = subprocess.run([os.path.join(BUILD, "echo-client"), "--addr", addr,
                          "--bench", str(seconds), "--inflight",
                          str(inflight)],
                         capture_output=True, text=True, check=True,
                         timeout=seconds + 60).stdout
    rec = json.loads(out.strip().splitlines()[-1])
    return rec["rps"], rec["requests"], rec["failed"]


def scenario_grpc(seconds=10, log=print):
    servers = {
        "drift (C, 1 loop + pool)": [os.path.join(BUILD, "echo-server"),
                                     "--listen", "127.0.0.1:0"],
        "grpcio (Python, 16 threads)": ["/usr/bin/python3",
                                         os.path.join(ROOT, "tests", "grpc",
                                                      "peer.py"),
                                         "--workers", "16"],
    }
    loads = [("h2load 1 conn x 100 streams",
              lambda a: h2load(a, seconds, 1, 100)),
             ("h2load 8 conns x 16 streams",
              lambda a: h2load(a, seconds, 8, 16)),
             ("drift client, 64 in flight",
              lambda a: drift_client(a, seconds))]
    rows = []
    for sname, argv in servers.items():
        srv = Server(argv)
        try:
            for lname, fn in loads:
                log(f"grpc: {sname} <- {lname}")
                rps, ok, failed = fn(srv.addr)
                rows.append({"server": sname, "load": lname,
                             "requests_per_s": rps, "succeeded": ok,
                             "failed": failed})
        finally:
            srv.stop()
    return rows


def markdown(rows):
    out = ["| server | load | requests/s | succeeded | failed |",
           "|---|---|---|---|---|"]
    for r in rows:
        out.append(f"| {r['server']} | {r['load']} | "
                   f"{r['requests_per_s']:,.0f} | {r['succeeded']:,} | "
                   f"{r['failed']:,} |")
    return "\n".join(out)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=int, default=10)
    a = ap.parse_args()
    print(markdown(scenario_grpc(a.seconds,
                                 lambda m: print(m, file=sys.stderr))))
