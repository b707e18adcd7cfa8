#!/usr/bin/python3
"""The gRPC layer's client (echo-client) finding a peer that moved and
noticing a peer that vanished, against echo-server, real processes:

- keepalive: an idle connection is sent HTTP/2 PINGs (counted by a TCP
  proxy that reads the client's frames) and stays up; a peer that goes
  silent without closing anything (the proxy swallows every byte, as a
  deleted pod or a cut network does) is dropped by the client once a
  PING goes unanswered, and the next call connects again and succeeds
  (without keepalive it would wait on the dead connection until its
  deadline);
- re-resolution: the client dials a name (drift-peer.test, from an
  /etc/hosts bind-mounted in a private mount namespace: needs root and
  unshare, else the check is reported as SKIP); the server stops, comes
  back on another address (127.0.0.2, same port) and the name is pointed
  there: the client's calls succeed again, so each attempt resolved the
  name anew.
"""
import json
import os
import shutil
import subprocess
import tempfile
import time

from grpctest import Server, Tap
from h2proxy import Proxy

CLIENT = os.environ["DRIFT_ECHO_CLIENT"]
SERVER = os.environ["DRIFT_ECHO_SERVER"]


def idle_client(port, seconds, ka_ms):
    p = subprocess.run([CLIENT, "--addr", "127.0.0.1:%d" % port, "--idle",
                        str(seconds), "--keepalive", str(ka_ms)],
                       stdout=subprocess.PIPE, text=True, timeout=60)
    return json.loads(p.stdout.strip().splitlines()[-1])


def main():
    tap = Tap()
    srv = Server([SERVER])

    def live():
        px = Proxy(("127.0.0.1", srv.port))
        r = idle_client(px.port, 2, 200)
        px.close()
        tap.check(r["first"] == "OK" and r["second"] == "OK" and
                  px.pings >= 4 and len(px.conns) == 1,
                  "keepalive: 2 s idle with a 200 ms period: %d PINGs sent, "
                  "the connection kept (%d connections), both calls OK" %
                  (px.pings, len(px.conns)))

    def vanished():
        px = Proxy(("127.0.0.1", srv.port), silence_after=0.6)
        r = idle_client(px.port, 3, 200)
        px.close()
        c0 = px.conns[0] if px.conns else {}
        noticed = (c0.get("closed_at") and c0.get("silent_at") and
                   c0["closed_at"] - c0["silent_at"])
        tap.check(r["first"] == "OK" and r["second"] == "OK" and
                  noticed and noticed < 1.5 and len(px.conns) == 2 and
                  r["second_ms"] < 1000,
                  "keepalive: a peer gone silent without a reset is "
                  "dropped %.2f s after it went silent (200 ms period and "
                  "ack timeout); the next call connects again: %s in %.0f "
                  "ms (%d connections)" % (noticed or -1, r["second"],
                                           r["second_ms"], len(px.conns)))

    def moved():
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            tap.check(True, "# SKIP re-resolution needs root and unshare "
                      "(a private /etc/hosts)")
            return
        hosts = tempfile.NamedTemporaryFile("w", suffix=".hosts",
                                            delete=False)
        hosts.write("127.0.0.1 localhost\n127.0.0.1 drift-peer.test\n")
        hosts.close()
        probe = subprocess.run(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount --bind "$0" /etc/hosts', hosts.name],
            capture_output=True, text=True)
        if probe.returncode != 0:
            os.unlink(hosts.name)
            tap.check(True, "# SKIP re-resolution: no private /etc/hosts "
                      "here (%s)" % probe.stderr.strip()[:120])
            return
        first = Server([SERVER, "--listen", "127.0.0.1:0"])
        port = first.port
        probe = subprocess.Popen(
            ["unshare", "-m", "--propagation", "private", "sh", "-c",
             'mount --bind "$0" /etc/hosts && exec "$1" --addr "$2" '
             '--probe 8', hosts.name, CLIENT, "drift-peer.test:%d" % port],
            stdout=subprocess.PIPE, text=True)
        time.sleep(2.0)
        first.stop()
        # A second with no server: the calls fail (refused at 127.0.0.1).
        time.sleep(1.0)
        # The name now points at another address, where the server is.
        with open(hosts.name, "w") as f:
            f.write("127.0.0.1 localhost\n127.0.0.2 drift-peer.test\n")
        second = Server([SERVER, "--listen", "127.0.0.2:%d" % port])
        out, _ = probe.communicate(timeout=60)
        second.stop()
        os.unlink(hosts.name)
        lines = out.strip().splitlines()
        try:
            s = json.loads(lines[-1])
        except (ValueError, IndexError):
            s = {"ok_before": 0, "failed": 0, "ok_after": 0, "out": out}
        tap.check(probe.returncode == 0 and s["ok_before"] > 0 and
                  s["failed"] > 0 and s["ok_after"] > 10,
                  "re-resolution: drift-peer.test moved from 127.0.0.1 to "
                  "127.0.0.2 (same port): calls succeed again at the new "
                  "address %s %s" % (json.dumps(s), [x for x in lines
                                                      if "fail" in x][:1]))

    for name, fn in [("live", live), ("vanished", vanished),
                     ("moved", moved)]:
        tap.run(name, fn)
    srv.stop()
    tap.done()


main()
