"""Shared helpers of the gRPC integration tests (run with /usr/bin/python3).

- stubs(): Python messages and stubs generated from proto/ with
  grpc_tools.protoc into a temporary folder (nothing generated is kept);
- Server: a process started on 127.0.0.1 with an ephemeral port, read from
  its "listening on PORT" line, stopped with SIGTERM; its exit status is
  checked (under ASan a leak makes it non-zero);
- Tap: TAP output for meson ("ok N - what"), one line per check.
"""
import os
import signal
import subprocess
import sys
import tempfile
import time

PROTO = os.environ.get(
    "DRIFT_PROTO_DIR",
    os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                 "proto"))

_gen = None


def stubs():
    """Imports (echo_pb2, echo_pb2_grpc, health_pb2, health_pb2_grpc)."""
    global _gen
    if _gen is None:
        from grpc_tools import protoc
        out = tempfile.mkdtemp(prefix="drift-stubs-")
        files = ["drift/test/echo.proto", "grpc/health/v1/health.proto",
                 "drift/v1/drift.proto"]
        rc = protoc.main(["protoc", "-I" + PROTO, "--python_out=" + out,
                          "--grpc_python_out=" + out] + files)
        if rc != 0:
            raise RuntimeError("grpc_tools.protoc failed")
        # "grpc.health.v1" would clash with grpcio's own "grpc" package:
        # the health stubs are imported as top-level modules instead.
        hdir = os.path.join(out, "grpc", "health", "v1")
        g = os.path.join(hdir, "health_pb2_grpc.py")
        with open(g) as f:
            text = f.read()
        with open(g, "w") as f:
            f.write(text.replace("from grpc.health.v1 import health_pb2",
                                 "import health_pb2"))
        sys.path.insert(0, out)
        sys.path.insert(0, hdir)
        _gen = out
    from drift.test import echo_pb2, echo_pb2_grpc
    import health_pb2
    import health_pb2_grpc
    return echo_pb2, echo_pb2_grpc, health_pb2, health_pb2_grpc


def drift_stubs():
    """Imports (drift_pb2, drift_pb2_grpc, health_pb2, health_pb2_grpc)."""
    _, _, health_pb2, health_pb2_grpc = stubs()
    from drift.v1 import drift_pb2, drift_pb2_grpc
    return drift_pb2, drift_pb2_grpc, health_pb2, health_pb2_grpc


class Server:
    def __init__(self, argv, env=None):
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE,
                                     stderr=sys.stderr, text=True, env=env)
        self.port = None
        deadline = time.time() + 30
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("listening on "):
                # "listening on PORT" or "listening on HOST:PORT": printed
                # once the server accepts calls.
                self.port = int(line.split()[2].rsplit(":", 1)[-1])
                break
        if self.port is None:
            self.proc.kill()
            raise RuntimeError("server did not start: %r" % argv)
        self.addr = "127.0.0.1:%d" % self.port

    def alive(self):
        return self.proc.poll() is None

    def stop(self, timeout=30):
        """SIGTERM, then the exit status (None if it had to be killed)."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


class Tap:
    def __init__(self):
        self.n = 0
        self.failed = 0

    def check(self, ok, what):
        self.n += 1
        if not ok:
            self.failed += 1
        print("%s %d - %s" % ("ok" if ok else "not ok", self.n, what),
              flush=True)
        return ok

    def run(self, name, fn, *args):
        """Runs fn; an exception is a failed check with its message."""
        try:
            fn(*args)
        except Exception as e:  # noqa: BLE001 - reported as a failure
            import traceback
            for ln in traceback.format_exc().splitlines():
                print("# " + ln, flush=True)
            self.check(False, "%s raised %s: %s" % (name, type(e).__name__,
                                                     e))

    def done(self):
        print("1..%d" % self.n, flush=True)
        sys.exit(1 if self.failed else 0)
