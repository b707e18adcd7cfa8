"""A TCP proxy for HTTP/2 tests (tests/grpc/test_client_resolve.py,
tests/router/test_router.py): counts a client's PINGs and can go silent
without closing anything, as a vanished peer does."""
import socket
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


class Proxy:
    """127.0.0.1:port -> target. Counts the PING frames (without ACK) the
    client sends; with silence_after set, each connection forwards for
    that many seconds and then swallows everything in both directions,
    the sockets left open, and records when the client closed it;
    silence() does that to every connection from then on (a peer that
    vanished without a reset)."""

    def __init__(self, target, silence_after=None):
        self.target = target
        self.silence_after = silence_after
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(16)
        self.port = self.lsock.getsockname()[1]
        self.pings = 0
        self.conns = []  # per connection: {"t0", "silent_at", "closed_at"}
        self.mu = threading.Lock()
        self.stop = False
        self.silent_all = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.lsock.accept()
            except OSError:
                return
            s = socket.create_connection(self.target)
            info = {"t0": time.time(), "silent_at": None, "closed_at": None}
            with self.mu:
                self.conns.append(info)
            threading.Thread(target=self._up, args=(c, s, info),
                             daemon=True).start()
            threading.Thread(target=self._down, args=(s, c, info),
                             daemon=True).start()

    def silence(self):
        self.silent_all = True

    def _silent(self, info):
        if self.silent_all:
            if info["silent_at"] is None:
                info["silent_at"] = time.time()
            return True
        if self.silence_after is None:
            return False
        if time.time() - info["t0"] >= self.silence_after:
            if info["silent_at"] is None:
                info["silent_at"] = time.time()
            return True
        return False

    def _up(self, src, dst, info):
        """Client to server: frames parsed to count PINGs."""
        buf = b""
        seen_preface = False
        src.settimeout(0.05)
        while not self.stop:
            try:
                d = src.recv(65536)
            except socket.timeout:
                self._silent(info)
                continue
            except OSError:
                d = b""
            if not d:
                info["closed_at"] = time.time()
                break
            if self._silent(info):
                continue
            buf += d
            if not seen_preface and len(buf) >= len(PREFACE):
                buf = buf[len(PREFACE):]
                seen_preface = True
            while seen_preface and len(buf) >= 9:
                n = int.from_bytes(buf[0:3], "big")
                if len(buf) < 9 + n:
                    break
                if buf[3] == 6 and not buf[4] & 1:
                    with self.mu:
                        self.pings += 1
                buf = buf[9 + n:]
            try:
                dst.sendall(d)
            except OSError:
                break
        for x in (src, dst):
            try:
                x.close()
            except OSError:
                pass

    def _down(self, src, dst, info):
        while not self.stop:
            try:
                d = src.recv(65536)
            except OSError:
                return
            if not d:
                return
            if self._silent(info):
                continue
            try:
                dst.sendall(d)
            except OSError:
                return

    def close(self):
        self.stop = True
        self.lsock.close()
