"""Helpers of the cluster tests (run with /usr/bin/python3): drift-node
processes on 127.0.0.1 with ports chosen up front (a node keeps its
addresses across restarts), and a Raft proxy the test controls to cut
links between nodes.

The proxy. Each node advertises its Raft address as the port of its own
proxy, which forwards to the node's real --raft-listen. The Raft library
opens every connection with a handshake that names the dialing node's
advertised Raft address (protocol version, server id and the address
length, 8 bytes each, little endian, then the address): the proxy reads
it, so it knows which node dials which, and refuses (or cuts) the links
the test has blocked, in both directions. gRPC between the nodes is not
proxied: a partition cuts the Raft group, which is what decides.
"""
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "grpc"))
import grpc  # noqa: E402

from grpctest import drift_stubs  # noqa: E402

pb, pbg, hpb, hpbg = drift_stubs()
NODE = os.environ["DRIFT_NODE"]
C = grpc.StatusCode


def peer_stubs(name="peer", extra=()):
    """(NAME_pb2, NAME_pb2_grpc) of drift.peer.v1's NAME.proto (and the
    files it imports, extra), generated like grpctest's stubs (after them,
    so drift/v1 is importable)."""
    import importlib
    import tempfile as tf
    from grpc_tools import protoc
    from grpctest import PROTO
    out = tf.mkdtemp(prefix="drift-peer-stubs-")
    if protoc.main(["protoc", "-I" + PROTO, "--python_out=" + out,
                    "--grpc_python_out=" + out,
                    "drift/peer/v1/%s.proto" % name] + list(extra)) != 0:
        raise RuntimeError("grpc_tools.protoc failed on %s.proto" % name)
    sys.path.insert(0, out)
    # The drift package is already imported from grpctest's folder: add
    # this one's drift/peer to it.
    import drift
    drift.__path__.append(os.path.join(out, "drift"))
    return (importlib.import_module("drift.peer.v1.%s_pb2" % name),
            importlib.import_module("drift.peer.v1.%s_pb2_grpc" % name))


def replica_stubs():
    """(replica_pb2, replica_pb2_grpc) of drift.peer.v1.Replica."""
    return peer_stubs("replica", ["drift/cluster/v1/meta.proto"])


_xxh = None


def shard_of_id(i, shards):
    """drift_shard_of_id (cluster/placement.h) computed outside Drift:
    XXH3-64 of the id's 8 little-endian bytes, seed 0x5eedc011ec7105,
    modulo the shard count, with libxxhash through ctypes."""
    global _xxh
    import ctypes
    if _xxh is None:
        _xxh = ctypes.CDLL("libxxhash.so.0")
        _xxh.XXH3_64bits_withSeed.restype = ctypes.c_uint64
        _xxh.XXH3_64bits_withSeed.argtypes = [
            ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    h = _xxh.XXH3_64bits_withSeed(struct.pack("<Q", i), 8, 0x5eedc011ec7105)
    return h % shards


def free_ports(n):
    """n distinct free TCP ports on 127.0.0.1 (bound, then released)."""
    socks, ports = [], []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
        ports.append(s.getsockname()[1])
    for s in socks:
        s.close()
    return ports


def code_of(fn):
    try:
        fn()
        return C.OK, ""
    except grpc.RpcError as e:
        return e.code(), e.details()


class Node:
    """One drift-node: its data directory, gRPC port and Raft ports."""

    def __init__(self, base, name, join=None, node_id=None, proxy=None,
                 extra=()):
        self.name = name
        self.metrics_port = None  # cluster(metrics=True) sets it
        self.data = os.path.join(base, name)
        os.makedirs(self.data, exist_ok=True)
        self.port, self.raft_port = free_ports(2)
        self.addr = "127.0.0.1:%d" % self.port
        self.raft_addr = "127.0.0.1:%d" % self.raft_port
        self.join = join
        self.node_id = node_id
        self.proxy = proxy
        self.extra = list(extra)
        self.proc = None
        self.ch = None
        self.log = os.path.join(base, name + ".log")

    def argv(self):
        a = [NODE, "--data-dir", self.data, "--listen", self.addr,
             "--raft-listen", self.raft_addr, "--log-level", "info",
             "--memtable-rows", "1000"]
        if self.proxy is not None:
            a += ["--raft-advertise", self.proxy.addr]
        if self.join:
            a += ["--join", self.join]
        if self.node_id:
            a += ["--node-id", self.node_id]
        return a + self.extra

    def metrics(self):
        """The node's /metrics text."""
        import urllib.request
        with urllib.request.urlopen("http://127.0.0.1:%d/metrics" %
                                    self.metrics_port, timeout=10) as r:
            return r.read().decode()

    def start(self, wait=True, timeout=60):
        self.logf = open(self.log, "a")
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.PIPE,
                                     stderr=self.logf, text=True)
        self.ch = grpc.insecure_channel(self.addr)
        self.s = pbg.DriftStub(self.ch)
        self.c = pbg.ClusterStub(self.ch)
        if wait:
            self.wait_listening(timeout)
        return self

    def wait_listening(self, timeout=60):
        """Until the node prints "listening on" (it is a member and
        serves); raises if it exits first."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError("%s exited (status %r); log %s" % (
                    self.name, self.proc.wait(), self.log))
            if line.startswith("listening on "):
                return
        raise RuntimeError("%s did not start in %d s" % (self.name, timeout))

    def status(self, timeout=10):
        return self.c.Status(pb.StatusRequest(), timeout=timeout)

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self):
        if self.alive():
            self.proc.kill()
        if self.proc is not None:
            self.proc.wait()
        self._close()

    def stop(self, timeout=30):
        """SIGTERM; the exit status (None if it had to be killed)."""
        rc = None
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                rc = self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        elif self.proc is not None:
            rc = self.proc.returncode
        self._close()
        return rc

    def _close(self):
        if self.ch is not None:
            self.ch.close()
            self.ch = None
        if getattr(self, "logf", None) is not None:
            self.logf.close()
            self.logf = None

    def wipe(self):
        shutil.rmtree(self.data)
        os.makedirs(self.data)


def leader_of(nodes, timeout=10):
    """The node that all live nodes name leader (and that says so
    itself), waiting for one; None when there is none in time."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        seen = set()
        ok = True
        for n in nodes:
            if not n.alive():
                continue
            try:
                seen.add(n.status(timeout=2).leader)
            except grpc.RpcError:
                ok = False
        seen.discard("")
        if ok and len(seen) == 1:
            lid = seen.pop()
            for n in nodes:
                if n.alive() and n.status().node_id == lid:
                    return n
        time.sleep(0.05)
    return None


def wait_for(pred, timeout=10, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            v = pred()
            if v:
                return v
        except grpc.RpcError:
            pass
        time.sleep(step)
    return None


def map_of(n, timeout=10):
    """(version, sorted [(collection, shard, nodes)]) of a node's map."""
    m = n.c.ShardMap(pb.ShardMapRequest(), timeout=timeout)
    return m.version, tuple(sorted((a.collection, a.shard, tuple(a.nodes))
                                   for a in m.shards))


def scrape(port, timeout=5):
    """{(name, ((label, value), ...)): value} of GET /metrics at port."""
    import urllib.request
    out = {}
    with urllib.request.urlopen("http://127.0.0.1:%d/metrics" % port,
                                timeout=timeout) as r:
        for line in r.read().decode("utf-8").splitlines():
            if not line or line.startswith("#"):
                continue
            key, _, val = line.rpartition(" ")
            name, _, rest = key.partition("{")
            labels = tuple(sorted(
                tuple(kv.split("=", 1)) for kv in
                rest.rstrip("}").replace('"', "").split(",") if kv))
            out[(name, labels)] = float(val)
    return out


def settle(nodes, hold=2.0, timeout=30):
    """Waits until every live node has the same map, every member is UP,
    and that stays so for hold seconds (after a restart the leader may
    mark the node DOWN, then UP: its prober needs 1.5 s of failures for
    the one, a success for the other). The map's version, or None."""
    deadline = time.time() + timeout
    since, seen = None, None
    while time.time() < deadline:
        try:
            live = [n for n in nodes if n.alive()]
            maps = {map_of(n) for n in live}
            up = all(x.state == pb.NODE_STATE_UP
                     for x in live[0].status().nodes)
        except grpc.RpcError:
            maps, up = set(), False
        if len(maps) == 1 and up:
            v = next(iter(maps))[0]
            if seen != v:
                since, seen = time.time(), v
            elif time.time() - since >= hold:
                return v
        else:
            since, seen = None, None
        time.sleep(0.1)
    return None


class RaftProxy:
    """Forwards connections from its own port to a node's Raft port,
    refusing those from blocked dialers (identified by the handshake)."""

    def __init__(self):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(64)
        self.addr = "127.0.0.1:%d" % self.lsock.getsockname()[1]
        self.target = None
        self.blocked = set()  # advertised Raft addresses of dialers
        self.links = []  # (dialer, client socket, upstream socket)
        self.mu = threading.Lock()
        self.closing = False
        threading.Thread(target=self._accept, daemon=True).start()

    def block(self, dialers):
        with self.mu:
            self.blocked = set(dialers)
            for d, a, b in self.links:
                if d in self.blocked:
                    for s in (a, b):
                        try:
                            s.shutdown(socket.SHUT_RDWR)
                        except OSError:
                            pass

    def close(self):
        self.closing = True
        self.block({d for d, _, _ in self.links} | {"*"})
        self.lsock.close()

    def _accept(self):
        while not self.closing:
            try:
                a, _ = self.lsock.accept()
            except OSError:
                return
            threading.Thread(target=self._link, args=(a,),
                             daemon=True).start()

    @staticmethod
    def _read(s, n):
        buf = b""
        while len(buf) < n:
            chunk = s.recv(n - len(buf))
            if not chunk:
                raise OSError("closed")
            buf += chunk
        return buf

    def _link(self, a):
        try:
            head = self._read(a, 24)
            _, _, alen = struct.unpack("<QQQ", head)
            if alen > 4096:
                raise OSError("bad handshake")
            addr = self._read(a, alen)
            dialer = addr.split(b"\0", 1)[0].decode()
            with self.mu:
                if dialer in self.blocked or self.closing:
                    raise OSError("blocked")
            host, port = self.target.rsplit(":", 1)
            b = socket.create_connection((host, int(port)), timeout=2)
            b.settimeout(None)
            b.sendall(head + addr)
            with self.mu:
                self.links.append((dialer, a, b))
        except OSError:
            a.close()
            return
        t = threading.Thread(target=self._pump, args=(b, a), daemon=True)
        t.start()
        self._pump(a, b)
        t.join()
        with self.mu:
            self.links = [x for x in self.links if x[1] is not a]
        a.close()
        b.close()

    @staticmethod
    def _pump(src, dst):
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def cluster(base, n=3, proxies=False, extra=(), metrics=False):
    """n nodes: the first bootstraps, the others --join it (node-1..n).
    metrics: each serves GET /metrics on its own port (n.metrics_port)."""
    nodes = []
    for i in range(n):
        px = RaftProxy() if proxies else None
        mport = free_ports(1)[0] if metrics else None
        more = list(extra) + (["--metrics-listen", "127.0.0.1:%d" % mport]
                              if metrics else [])
        nd = Node(base, "node-%d" % (i + 1), node_id="node-%d" % (i + 1),
                  join=nodes[0].addr if i else None, proxy=px, extra=more)
        nd.metrics_port = mport
        if px is not None:
            px.target = nd.raft_addr
        nd.start()
        nodes.append(nd)
    return nodes


def tmpdir():
    return tempfile.mkdtemp(prefix="drift-cluster-")
