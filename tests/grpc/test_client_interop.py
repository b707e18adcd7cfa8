#!/usr/bin/python3
"""The gRPC layer's client (echo-client --suite) against a stock grpcio
server (peer.py): unary, errors with messages, unknown method, each
streaming kind, deadline, cancellation, 20 MiB messages, 2,000 concurrent
asynchronous calls, an unreachable peer and its backoff. echo-client
prints the TAP lines; this script starts the peer and passes them on."""
import os
import subprocess
import sys

from grpctest import Server

here = os.path.dirname(os.path.abspath(__file__))
peer = Server(["/usr/bin/python3", os.path.join(here, "peer.py")])
try:
    p = subprocess.run([os.environ["DRIFT_ECHO_CLIENT"], "--addr", peer.addr,
                        "--suite"], timeout=240)
    rc = p.returncode
finally:
    peer.stop()
sys.exit(rc)
