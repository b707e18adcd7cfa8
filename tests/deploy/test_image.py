#!/usr/bin/python3
"""The container image (deploy/Containerfile, deploy/build-image.sh).

Builds the image from a release build (about a minute: the root comes from
Debian packages), then checks its configuration (non-root user 10001, the
/data volume, the ports, drift-node as entry point) and its root: every
binary is there and ldd, run inside the root, finds every library. Then it
starts drift-node from the image and checks grpc.health.v1.Health (both
"" and drift.v1.Drift SERVING) and a scrape of /metrics, and the same for
drift-router once it is built.

The processes start with `podman run` where containers can run. Where
podman cannot (this development machine: crun refuses a cgroup v1/v2
hybrid whose v2 side holds a controller, and cannot set podman's default
RLIMIT_NOFILE, above this machine's hard limit), the report says so, and the image's own root (buildah mount of
the built image, every layer) runs under unshare + chroot as uid 10001:
the same files, user and command line, without the container runtime.

Run with `make test-image` (not part of make test: it downloads Debian
packages and takes a minute or more). Needs root."""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
sys.path.insert(0, HERE)
import grpc  # noqa: E402

import promparse  # noqa: E402
from grpctest import Tap, drift_stubs  # noqa: E402

pb, pbg, hpb, hpbg = drift_stubs()
BUILD = os.environ.get("DRIFT_BUILD", os.path.join(ROOT, "build"))
TAG = "localhost/drift:test-%d" % os.getpid()
T = Tap()


def run(argv, **kw):
    return subprocess.run(argv, capture_output=True, text=True, **kw)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def health(port, service, deadline=30):
    end = time.time() + deadline
    last = None
    while time.time() < end:
        ch = grpc.insecure_channel("127.0.0.1:%d" % port)
        try:
            r = hpbg.HealthStub(ch).Check(
                hpb.HealthCheckRequest(service=service), timeout=2)
            return hpb.HealthCheckResponse.ServingStatus.Name(r.status)
        except grpc.RpcError as e:
            last = e.code().name
            time.sleep(0.3)
        finally:
            ch.close()
    return last


def scrape(port):
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=10) as r:
        return promparse.parse(r.read().decode())


def config_cases():
    p = run(["buildah", "inspect", "--type", "image", TAG])
    cfg = json.loads(p.stdout)["OCIv1"]["config"]
    T.check(cfg.get("User") == "10001:10001",
            "the image runs as the non-root user 10001 (%s)" % cfg.get("User"))
    T.check("/data" in cfg.get("Volumes", {}), "/data is a volume")
    ports = sorted(cfg.get("ExposedPorts", {}))
    T.check(ports == ["7400/tcp", "7401/tcp", "7411/tcp", "9400/tcp",
                      "9401/tcp"], "the ports are exposed: %s" % ports)
    T.check(cfg.get("Entrypoint") == ["/usr/local/bin/drift-node"],
            "drift-node is the entry point")


def root_cases(mnt, bins):
    with open(os.path.join(mnt, "etc", "os-release")) as f:
        osr = f.read()
    T.check('VERSION_CODENAME=bookworm' in osr, "the root is Debian 12")
    with open(os.path.join(mnt, "etc", "passwd")) as f:
        T.check(any(line.startswith("drift:x:10001:10001:")
                    for line in f), "the user drift (10001) exists")
    st = os.stat(os.path.join(mnt, "data"))
    T.check(st.st_uid == 10001 and st.st_gid == 10001,
            "/data belongs to drift")
    for b in bins:
        path = "/usr/local/bin/" + b
        p = run(["chroot", mnt, "/usr/bin/ldd", path])
        T.check(p.returncode == 0 and "not found" not in p.stdout,
                "ldd inside the image finds every library of %s %s" %
                (b, [ln.strip() for ln in p.stdout.splitlines()
                     if "not found" in ln]))


class Proc:
    """A process started from the image, by podman or by chroot."""

    def __init__(self, argv, mode, mnt=None, extra=()):
        self.mode = mode
        self.name = "drift-test-%d-%d" % (os.getpid(), free_port())
        if mode == "podman":
            cmd = ["podman", "run", "--rm", "--name", self.name,
                   "--network", "host"] + list(extra) + \
                ["--entrypoint", argv[0], TAG] + argv[1:]
        else:
            # The image's root, the image's user: what the runtime would
            # run, minus its isolation.
            script = ('mount -t proc proc "$1/proc" && mount -t tmpfs tmpfs '
                      '"$1/data" && chown 10001:10001 "$1/data" && '
                      'shift && exec chroot --userspec=10001:10001 '
                      '"$0" "$@"')
            cmd = ["unshare", "--mount", "--pid", "--fork", "--kill-child",
                   "sh", "-c", script, mnt, mnt] + argv
        self.log = tempfile.TemporaryFile(mode="w+")
        self.p = subprocess.Popen(cmd, stdout=self.log, stderr=self.log,
                                  text=True)

    def stop(self):
        if self.mode == "podman":
            run(["podman", "stop", "-t", "20", self.name], timeout=60)
        else:
            # unshare does not pass signals on: SIGTERM goes to its child,
            # drift-node (pid 1 of its namespace, which sigwait()s).
            try:
                with open("/proc/%d/task/%d/children" %
                          (self.p.pid, self.p.pid)) as f:
                    kids = [int(k) for k in f.read().split()]
            except OSError:
                kids = []
            for k in kids:
                os.kill(k, signal.SIGTERM)
        try:
            rc = self.p.wait(30)
        except subprocess.TimeoutExpired:
            self.p.kill()
            rc = self.p.wait()
        self.log.seek(0)
        return rc, self.log.read()


PODMAN_LIMITS = ["--ulimit", "nofile=1024:1024", "--ulimit",
                 "nproc=1024:1024"]


def podman_works():
    """(extra podman run arguments, None) when containers run, else
    (None, why): podman's defaults, then with limits under this
    machine's."""
    why = []
    for extra in ([], PODMAN_LIMITS):
        p = run(["podman", "run", "--rm", "--network", "host"] + extra +
                ["--entrypoint", "/bin/true", TAG], timeout=120)
        if p.returncode == 0:
            return extra, None
        why.append("%s: %s" % (" ".join(extra) or "defaults",
                               (p.stderr.strip().splitlines() or
                                [""])[-1]))
    return None, "; ".join(why)


def serve_cases(mode, mnt, bins, extra=()):
    port, mport = free_port(), free_port()
    node = Proc(["/usr/local/bin/drift-node", "--data-dir", "/data/node",
                 "--listen", "127.0.0.1:%d" % port, "--metrics-listen",
                 "127.0.0.1:%d" % mport, "--log-format", "json"], mode, mnt,
                extra)
    try:
        T.check(health(port, "") == "SERVING",
                "drift-node from the image (%s): Health \"\" SERVING" % mode)
        T.check(health(port, "drift.v1.Drift") == "SERVING",
                "drift-node from the image: drift.v1.Drift SERVING")
        fams = scrape(mport)
        T.check("drift_grpc_requests_total" in fams,
                "drift-node from the image serves /metrics")
    finally:
        rc, log = node.stop()
    T.check(rc == 0, "drift-node from the image stops cleanly on SIGTERM "
            "(%s) %s" % (rc, log.strip().splitlines()[-1:]))
    if "drift-router" not in bins:
        print("ok %d - drift-router from the image # SKIP drift-router is "
              "not built yet" % (T.n + 1), flush=True)
        T.n += 1
        return
    rport, rmport = free_port(), free_port()
    node = Proc(["/usr/local/bin/drift-node", "--data-dir", "/data/node",
                 "--listen", "127.0.0.1:%d" % port], mode, mnt, extra)
    router = Proc(["/usr/local/bin/drift-router", "--listen",
                   "127.0.0.1:%d" % rport, "--join", "127.0.0.1:%d" % port,
                   "--metrics-listen", "127.0.0.1:%d" % rmport], mode, mnt,
                  extra)
    try:
        T.check(health(rport, "drift.v1.Drift", 60) == "SERVING",
                "drift-router from the image: drift.v1.Drift SERVING")
        T.check("drift_grpc_requests_total" in scrape(rmport),
                "drift-router from the image serves /metrics")
    finally:
        router.stop()
        node.stop()


def main():
    if os.geteuid() != 0:
        print("1..0 # SKIP needs root (mmdebstrap, buildah)")
        return
    tmp = tempfile.mkdtemp(prefix="drift-image-")
    ctr = mnt = None
    try:
        t0 = time.time()
        p = run([os.path.join(ROOT, "deploy", "build-image.sh"), "--build",
                 BUILD, "--out", os.path.join(tmp, "out"), "--tag", TAG],
                timeout=1200)
        T.check(p.returncode == 0, "deploy/build-image.sh builds %s in %.0f s"
                " %s" % (TAG, time.time() - t0, p.stderr.strip()[-300:]))
        if p.returncode != 0:
            return
        config_cases()
        bins = sorted(os.listdir(os.path.join(tmp, "out", "bin")))
        ctr = run(["buildah", "from", TAG]).stdout.strip()
        mnt = run(["buildah", "mount", ctr]).stdout.strip()
        root_cases(mnt, bins)
        extra, why = podman_works()
        if extra is not None:
            serve_cases("podman", None, bins, extra)
        else:
            print("# podman run cannot start containers here: %s" % why,
                  flush=True)
            print("# so the image's root runs under unshare + chroot",
                  flush=True)
            serve_cases("chroot", mnt, bins)
    except Exception as e:  # noqa: BLE001 - a failed check, reported
        T.check(False, "raised %s: %s" % (type(e).__name__, e))
    finally:
        if ctr:
            run(["buildah", "umount", ctr])
            run(["buildah", "rm", ctr])
        run(["buildah", "rmi", "-f", TAG])
        shutil.rmtree(tmp, ignore_errors=True)
        T.done()


if __name__ == "__main__":
    main()
