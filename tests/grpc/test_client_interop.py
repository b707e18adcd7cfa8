#!/usr/bin/python3
"""The gRPC layer's client (echo-client --suite) against a stock grpcio
server (peer.py): unary, errors with messages, unknown method, each
streaming kind, deadline, cancellation, 20 MiB messages, 2,000 concurrent
asynchronous calls, an unreachable peer and its backoff. echo-client
prints the TAP lines; this script starts the peer and passes them on."""
import json
import os
import subprocess
import sys
import time

from grpctest import Server

here = os.path.dirname(os.path.abspath(__file__))
client = os.environ["DRIFT_ECHO_CLIENT"]
peer = Server(["/usr/bin/python3", os.path.join(here, "peer.py")])
try:
    p = subprocess.run([client, "--addr", peer.addr, "--suite"], timeout=240,
                       stdout=subprocess.PIPE, text=True)
    rc = p.returncode
finally:
    peer.stop()
# echo-client's own plan line is replaced by one that counts the check
# below too.
lines = [ln for ln in p.stdout.splitlines() if not ln.startswith("1..")]
print("\n".join(lines), flush=True)
count = sum(1 for ln in lines if ln.startswith(("ok", "not ok")))

# Reconnection: the peer goes away and comes back on the same port; the
# client's calls fail meanwhile (UNAVAILABLE, fast) and succeed again.
peer = Server(["/usr/bin/python3", os.path.join(here, "peer.py")])
port = peer.port
probe = subprocess.Popen([client, "--addr", peer.addr, "--probe", "6"],
                         stdout=subprocess.PIPE, text=True)
time.sleep(1.5)
peer.stop()
time.sleep(1.0)
peer = Server(["/usr/bin/python3", os.path.join(here, "peer.py"), "--listen",
               "127.0.0.1:%d" % port])
out, _ = probe.communicate(timeout=60)
peer.stop()
summary = json.loads(out.strip().splitlines()[-1])
ok = (probe.returncode == 0 and summary["ok_before"] > 0 and
      summary["failed"] > 0 and summary["ok_after"] > 10)
print("%s %d - reconnect after the server restarts on its port: %s" %
      ("ok" if ok else "not ok", count + 1, json.dumps(summary)))
print("1..%d" % (count + 1))
sys.exit(rc if ok else 1)
