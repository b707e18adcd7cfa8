#!/usr/bin/python3
"""Bad peers against echo-server: garbage bytes, a half-sent frame, a
client that never reads, 10,000 streams blasted on one connection without
waiting for SETTINGS, hundreds of connections at once. After each, the
server answers a well-behaved grpcio client, its handlers and connections
return to zero, and at the end it shuts down cleanly (exit status 0: under
ASan nothing leaked)."""
import os
import socket
import struct
import threading
import time

import grpc

from grpctest import Server, Tap, stubs

echo_pb2, echo_pb2_grpc, _, _ = stubs()
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST, SETTINGS, PING, GOAWAY, WINDOW = 0, 1, 3, 4, 6, 7, 8
END_STREAM, END_HEADERS, ACK = 0x1, 0x4, 0x1


def frame(ftype, flags, sid, payload=b""):
    n = len(payload)
    return struct.pack(">BHBBI", n >> 16, n & 0xFFFF, ftype, flags,
                       sid) + payload


def hint(n, bits=7):
    """An HPACK integer with a bits-bit prefix (RFC 7541 section 5.1)."""
    lim = (1 << bits) - 1
    if n < lim:
        return bytes([n])
    out = [lim]
    n -= lim
    while n >= 128:
        out.append(n % 128 + 128)
        n //= 128
    out.append(n)
    return bytes(out)


def hpack(headers):
    """Literal header fields without indexing, new names, no Huffman."""
    out = b""
    for k, v in headers:
        k, v = k.encode(), v.encode()
        out += b"\x00" + hint(len(k)) + k + hint(len(v)) + v
    return out


def request(sid, path, msg, end=True):
    h = hpack([(":method", "POST"), (":scheme", "http"), (":path", path),
               (":authority", "x"), ("content-type", "application/grpc"),
               ("te", "trailers")])
    body = b"\x00" + struct.pack(">I", len(msg)) + msg
    return (frame(HEADERS, END_HEADERS, sid, h) +
            frame(DATA, END_STREAM if end else 0, sid, body))


def read_frames(sock, until, stop=None):
    """Frames (type, flags, sid, payload) until EOF or time; stop(frames)
    may end it early. read_frames.eof tells whether the peer closed."""
    buf = b""
    frames = []
    read_frames.eof = False
    sock.settimeout(0.2)
    while time.time() < until:
        try:
            d = sock.recv(1 << 16)
        except socket.timeout:
            continue
        except OSError:
            read_frames.eof = True
            break
        if not d:
            read_frames.eof = True
            break
        buf += d
        while len(buf) >= 9:
            n = (buf[0] << 16) | (buf[1] << 8) | buf[2]
            if len(buf) < 9 + n:
                break
            frames.append((buf[3], buf[4],
                           struct.unpack(">I", buf[5:9])[0] & 0x7FFFFFFF,
                           buf[9:9 + n]))
            buf = buf[9 + n:]
        if stop is not None and stop(frames):
            break
    return frames


def main():
    tap = Tap()
    srv = Server([os.environ["DRIFT_ECHO_SERVER"], "--listen",
                  "127.0.0.1:0"])
    ch = grpc.insecure_channel(srv.addr)
    stub = echo_pb2_grpc.EchoStub(ch)
    E = echo_pb2.EchoRequest

    def healthy(what):
        r = stub.Unary(E(payload=b"ok"), timeout=10)
        tap.check(srv.alive() and r.payload == b"ok",
                  "%s: the server still answers" % what)

    def settles(what, conns=1):
        """Handlers and connections go back to the idle level (the test's
        own channel and its Stats call)."""
        t0 = time.time()
        s = None
        while time.time() - t0 < 10:
            s = stub.Stats(E(), timeout=10)
            if s.active == 1 and s.connections == conns:
                break
            time.sleep(0.05)
        tap.check(s.active == 1 and s.connections == conns,
                  "%s: handlers and connections released (active %d, "
                  "connections %d)" % (what, s.active, s.connections))

    def connect():
        return socket.create_connection(("127.0.0.1", srv.port), timeout=5)

    def garbage():
        s = connect()
        s.sendall(os.urandom(4096))
        read_frames(s, time.time() + 5)
        s.close()
        tap.check(read_frames.eof, "garbage bytes: the connection is closed")
        healthy("garbage")
        s = connect()
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) + os.urandom(50000))
        fr = read_frames(s, time.time() + 5)
        s.close()
        tap.check(read_frames.eof and any(f[0] == GOAWAY for f in fr),
                  "garbage after the preface: GOAWAY, then closed")
        healthy("garbage after a valid preface")

    def half_frame():
        s = connect()
        h = hpack([(":method", "POST"), (":path", "/drift.test.Echo/Unary")])
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                  frame(HEADERS, END_HEADERS, 1, h)[:12])
        healthy("a half-sent frame on another connection")
        s.close()
        settles("half-sent frame")

    def never_reads():
        s = connect()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        req = E(repeat=100000, response_size=60000).SerializeToString()
        out = PREFACE + frame(SETTINGS, 0, 0)
        for i in range(20):
            out += request(1 + 2 * i, "/drift.test.Echo/ServerStream", req)
        s.sendall(out)
        time.sleep(1.0)
        t0 = time.time()
        healthy("a client that never reads")
        tap.check(time.time() - t0 < 2,
                  "others are served at once (%.2f s)" % (time.time() - t0))
        s.close()
        settles("never-reading client")

    def many_streams():
        s = connect()
        req = E(payload=b"p").SerializeToString()
        out = [PREFACE, frame(SETTINGS, 0, 0)]
        for i in range(10000):
            out.append(request(1 + 2 * i, "/drift.test.Echo/Unary", req))
        data = b"".join(out)
        sender = threading.Thread(target=lambda: _send_quiet(s, data))
        sender.start()
        ended = set()

        def stop(frames):
            for t, f, sid, _ in frames[stop.seen:]:
                if sid and (t == RST or (t in (HEADERS, DATA) and
                                         f & END_STREAM)):
                    ended.add(sid)
                if t == GOAWAY:
                    stop.goaway = True
            stop.seen = len(frames)
            return len(ended) == 10000 or stop.goaway
        stop.seen, stop.goaway = 0, False
        read_frames(s, time.time() + 60, stop)
        sender.join(30)
        s.close()
        tap.check(len(ended) == 10000 or stop.goaway,
                  "10,000 streams at once: each answered or refused (%d "
                  "ended, goaway %s)" % (len(ended), stop.goaway))
        healthy("10,000 streams")
        settles("10,000 streams")

    def many_connections():
        chans = [grpc.insecure_channel(srv.addr) for _ in range(300)]
        futs = [echo_pb2_grpc.EchoStub(c).Unary.future(E(payload=b"c"),
                                                       timeout=60)
                for c in chans]
        ok = sum(1 for f in futs if f.result().payload == b"c")
        tap.check(ok == 300, "300 connections at once: %d answered" % ok)
        for c in chans:
            c.close()
        settles("300 connections")

    def keepalive():
        ka = Server([os.environ["DRIFT_ECHO_SERVER"], "--listen",
                     "127.0.0.1:0", "--keepalive-ms", "300",
                     "--keepalive-timeout-ms", "300"])
        s = socket.create_connection(("127.0.0.1", ka.port), timeout=5)
        # A call stays open (a slow stream) while the peer ignores pings.
        slow = E(repeat=1, sleep_ms=20000).SerializeToString()
        s.sendall(PREFACE + frame(SETTINGS, 0, 0) +
                  request(1, "/drift.test.Echo/ServerStream", slow))
        t0 = time.time()
        fr = read_frames(s, time.time() + 5)
        took = time.time() - t0
        s.close()
        tap.check(any(f[0] == PING and not f[1] & ACK for f in fr) and
                  read_frames.eof and took < 3,
                  "keepalive: a peer that never answers pings is "
                  "dropped after %.2f s" % took)
        kch = grpc.insecure_channel(ka.addr)
        kstub = echo_pb2_grpc.EchoStub(kch)
        got = list(kstub.ServerStream(E(repeat=3, sleep_ms=600), timeout=20))
        tap.check(len(got) == 3,
                  "keepalive: a 1.8 s call of a client that answers pings "
                  "completes")
        kch.close()
        tap.check(ka.stop() == 0, "keepalive server: clean shutdown")

    for name, fn in [("garbage", garbage), ("keepalive", keepalive), ("half_frame", half_frame),
                     ("never_reads", never_reads),
                     ("many_streams", many_streams),
                     ("many_connections", many_connections)]:
        tap.run(name, fn)
    ch.close()
    rc = srv.stop()
    tap.check(rc == 0, "clean shutdown, exit status %r" % rc)
    tap.done()


def _send_quiet(s, data):
    try:
        s.sendall(data)
    except OSError:
        pass


main()
