#!/usr/bin/python3
"""drift.test.Echo served by stock grpcio (Debian python3-grpcio): the peer
that the gRPC layer's client is tested against (test_client_interop.py) and
the Python baseline of the echo benchmark.

    peer.py [--listen HOST:PORT] [--workers N]

Prints "listening on PORT" and "ready"; SIGTERM stops it."""
import argparse
import os
import signal
import sys
import threading
import time
from concurrent import futures

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import grpc  # noqa: E402

from grpctest import stubs  # noqa: E402

echo_pb2, echo_pb2_grpc, _, _ = stubs()
MiB = 1 << 20


def nap(ctx, ms):
    end = time.time() + ms / 1000.0
    while time.time() < end:
        if not ctx.is_active():
            return False
        time.sleep(0.005)
    return True


def payload(req, index):
    if req.response_size:
        return bytes((i * 131 + index) & 255 for i in range(
            min(req.response_size, 4096))) * (
                req.response_size // 4096) + bytes(req.response_size % 4096)
    return req.payload


class Echo(echo_pb2_grpc.EchoServicer):
    def Unary(self, req, ctx):
        if not nap(ctx, req.sleep_ms):
            return echo_pb2.EchoResponse()
        if req.status:
            ctx.abort(grpc.StatusCode(_code(req.status)), req.message)
        md = dict(ctx.invocation_metadata()).get("x-drift-test", "")
        return echo_pb2.EchoResponse(payload=payload(req, 0), metadata=md)

    def ClientStream(self, it, ctx):
        count = total = 0
        for req in it:
            count += 1
            total += len(req.payload)
            if req.status:
                ctx.abort(grpc.StatusCode(_code(req.status)),
                          "after %d messages" % count)
        return echo_pb2.EchoResponse(count=count, total=total)

    def ServerStream(self, req, ctx):
        for i in range(req.repeat):
            if not nap(ctx, req.sleep_ms):
                return
            yield echo_pb2.EchoResponse(payload=payload(req, i), index=i)
        if req.status:
            ctx.abort(grpc.StatusCode(_code(req.status)), req.message)

    def Bidi(self, it, ctx):
        for i, req in enumerate(it):
            if req.status:
                ctx.abort(grpc.StatusCode(_code(req.status)), req.message)
            yield echo_pb2.EchoResponse(payload=req.payload, index=i)

    def Stats(self, req, ctx):
        return echo_pb2.StatsResponse()


def _code(n):
    for c in grpc.StatusCode:
        if c.value[0] == n:
            return c.value
    return grpc.StatusCode.UNKNOWN.value


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", default="127.0.0.1:0")
    ap.add_argument("--workers", type=int, default=16)
    a = ap.parse_args()
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=a.workers),
                      options=[("grpc.max_receive_message_length", 64 * MiB),
                               ("grpc.max_send_message_length", 64 * MiB)])
    echo_pb2_grpc.add_EchoServicer_to_server(Echo(), srv)
    port = srv.add_insecure_port(a.listen)
    srv.start()
    print("listening on %d\nready" % port, flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    srv.stop(2).wait()


main()
