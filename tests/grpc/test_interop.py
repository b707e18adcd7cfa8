#!/usr/bin/python3
"""Stock grpcio (Debian python3-grpcio) against echo-server, the gRPC layer
of common/grpc: every call kind, metadata, deadlines, cancellation, big
and oversized messages, error statuses with messages, malformed protobuf,
unknown methods, compression, health, 10,000 calls on one channel, and a
clean shutdown (exit status 0: under ASan nothing leaked)."""
import os
import signal
import threading
import time

import grpc

from grpctest import Server, Tap, stubs

echo_pb2, echo_pb2_grpc, health_pb2, health_pb2_grpc = stubs()
MiB = 1 << 20
OPTS = [("grpc.max_receive_message_length", 200 * MiB),
        ("grpc.max_send_message_length", 200 * MiB)]


def stats(stub):
    return stub.Stats(echo_pb2.EchoRequest(), timeout=10)


def main():
    tap = Tap()
    srv = Server([os.environ["DRIFT_ECHO_SERVER"], "--listen",
                  "127.0.0.1:0", "--cpu-workers", "2"])
    ch = grpc.insecure_channel(srv.addr, options=OPTS)
    stub = echo_pb2_grpc.EchoStub(ch)
    E = echo_pb2.EchoRequest

    def unary():
        r = stub.Unary(E(payload=b"hi"), timeout=10,
                       metadata=[("x-drift-test", "meta value")])
        tap.check(r.payload == b"hi", "unary echo")
        tap.check(r.metadata == "meta value",
                  "request metadata reaches the handler")
        r = stub.Unary(E(), timeout=10)
        tap.check(r.payload == b"", "empty message")

    def statuses():
        for code in (grpc.StatusCode.INVALID_ARGUMENT,
                     grpc.StatusCode.NOT_FOUND,
                     grpc.StatusCode.RESOURCE_EXHAUSTED,
                     grpc.StatusCode.FAILED_PRECONDITION,
                     grpc.StatusCode.DATA_LOSS):
            msg = "wrong dimension: 3 != 128 (100%% sure) \u00e9\n%s" % code
            try:
                stub.Unary(E(status=code.value[0], message=msg), timeout=10)
                tap.check(False, "status %s" % code)
            except grpc.RpcError as e:
                tap.check(e.code() == code and e.details() == msg,
                          "status %s with its message: %r" %
                          (code.name, e.details()))

    def client_stream():
        reqs = (E(payload=b"x" * (i % 512)) for i in range(5000))
        r = stub.ClientStream(reqs, timeout=60)
        tap.check(r.count == 5000 and
                  r.total == sum(i % 512 for i in range(5000)),
                  "client streaming: 5000 messages")
        try:
            stub.ClientStream(iter([E(), E(status=9, message="stop")]),
                              timeout=10)
            tap.check(False, "client stream error")
        except grpc.RpcError as e:
            tap.check(e.code() == grpc.StatusCode.FAILED_PRECONDITION,
                      "client streaming: handler error status")
        r = stub.ClientStream(iter([]), timeout=10)
        tap.check(r.count == 0, "client streaming: no messages")

    def server_stream():
        got = list(stub.ServerStream(E(repeat=1000, payload=b"abc"),
                                     timeout=60))
        tap.check(len(got) == 1000 and
                  all(g.index == i and g.payload == b"abc"
                      for i, g in enumerate(got)),
                  "server streaming: 1000 responses in order")
        it = stub.ServerStream(E(repeat=3, status=5, message="gone"),
                               timeout=10)
        n = 0
        try:
            for _ in it:
                n += 1
            tap.check(False, "stream error")
        except grpc.RpcError as e:
            tap.check(n == 3 and e.code() == grpc.StatusCode.NOT_FOUND and
                      e.details() == "gone",
                      "server streaming: messages then an error status")

    def bidi():
        q = []
        cv = threading.Condition()
        done = []

        def gen():
            for i in range(200):
                with cv:
                    while len(q) < i:
                        cv.wait(10)
                yield E(payload=b"%d" % i)
        out = stub.Bidi(gen(), timeout=60)
        for r in out:
            with cv:
                q.append(r)
                cv.notify_all()
        done.append(1)
        tap.check(len(q) == 200 and
                  all(r.payload == b"%d" % i for i, r in enumerate(q)),
                  "bidi: 200 ping-pongs in lock step")

    def deadline():
        # The handler stops either because the server's deadline passed or
        # because the client, whose clock runs a little ahead, reset the
        # stream when its own deadline passed: both count.
        def stopped():
            st = stats(stub)
            return st.deadline + st.cancelled
        before = stopped()
        t0 = time.time()
        try:
            # 1 s: long enough for the handler to start on a loaded
            # machine (ASan, parallel tests), so that it sees the deadline.
            stub.Unary(E(sleep_ms=8000), timeout=1.0)
            tap.check(False, "deadline")
        except grpc.RpcError as e:
            took = time.time() - t0
            tap.check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED and
                      took < 4, "DEADLINE_EXCEEDED after %.2f s" % took)
        t0 = time.time()
        while stopped() == before and time.time() - t0 < 5:
            time.sleep(0.02)
        tap.check(stopped() > before,
                  "the handler saw its deadline pass and stopped")

    def cancel():
        before = stats(stub).cancelled
        it = stub.ServerStream(E(repeat=100000, sleep_ms=10), timeout=60)
        next(it)
        it.cancel()
        t0 = time.time()
        while stats(stub).cancelled == before and time.time() - t0 < 5:
            time.sleep(0.02)
        tap.check(stats(stub).cancelled > before,
                  "client cancellation stops the handler (%.2f s)" %
                  (time.time() - t0))
        fut = stub.Unary.future(E(sleep_ms=10000), timeout=60)
        time.sleep(0.1)
        fut.cancel()
        t0 = time.time()
        while stats(stub).cancelled < before + 2 and time.time() - t0 < 5:
            time.sleep(0.02)
        tap.check(stats(stub).cancelled >= before + 2,
                  "a cancelled unary call stops its handler")

    def big():
        p = os.urandom(32 * MiB)
        r = stub.Unary(E(payload=p), timeout=60)
        tap.check(r.payload == p, "32 MiB request echoed intact")
        r = stub.Unary(E(response_size=48 * MiB), timeout=60)
        tap.check(len(r.payload) == 48 * MiB, "48 MiB response")
        try:
            stub.Unary(E(payload=b"\0" * (100 * MiB)), timeout=60)
            tap.check(False, "100 MiB refused")
        except grpc.RpcError as e:
            tap.check(e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED and
                      "larger than max" in e.details(),
                      "100 MiB message: RESOURCE_EXHAUSTED (%s)" %
                      e.details())
        r = stub.Unary(E(payload=b"after"), timeout=10)
        tap.check(r.payload == b"after", "the connection still serves")

    def malformed():
        raw = ch.unary_unary("/drift.test.Echo/Unary",
                             request_serializer=None,
                             response_deserializer=None)
        try:
            raw(b"\xff\xff\xff\xff", timeout=10)
            tap.check(False, "malformed")
        except grpc.RpcError as e:
            tap.check(e.code() == grpc.StatusCode.INVALID_ARGUMENT and
                      "drift.test.EchoRequest" in e.details(),
                      "malformed protobuf: INVALID_ARGUMENT (%s)" %
                      e.details())
        nope = ch.unary_unary("/drift.test.Echo/Nope",
                              request_serializer=None,
                              response_deserializer=None)
        try:
            nope(b"", timeout=10)
            tap.check(False, "unknown method")
        except grpc.RpcError as e:
            tap.check(e.code() == grpc.StatusCode.UNIMPLEMENTED and
                      "/drift.test.Echo/Nope" in e.details(),
                      "unknown method: UNIMPLEMENTED (%s)" % e.details())

    def compression():
        try:
            stub.Unary(E(payload=b"z" * 10000), timeout=10,
                       compression=grpc.Compression.Gzip)
            tap.check(False, "compressed")
        except grpc.RpcError as e:
            tap.check(e.code() == grpc.StatusCode.UNIMPLEMENTED,
                      "gzip request: UNIMPLEMENTED (%s)" % e.details())

    def health():
        h = health_pb2_grpc.HealthStub(ch)
        S = health_pb2.HealthCheckResponse
        r = h.Check(health_pb2.HealthCheckRequest(service=""), timeout=10)
        tap.check(r.status == S.SERVING, "health \"\" SERVING")
        r = h.Check(health_pb2.HealthCheckRequest(
            service="drift.test.Echo"), timeout=10)
        tap.check(r.status == S.SERVING, "health drift.test.Echo SERVING")
        try:
            h.Check(health_pb2.HealthCheckRequest(service="nope"),
                    timeout=10)
            tap.check(False, "unknown service")
        except grpc.RpcError as e:
            tap.check(e.code() == grpc.StatusCode.NOT_FOUND,
                      "health of an unknown service: NOT_FOUND")
        w = h.Watch(health_pb2.HealthCheckRequest(service="nope"),
                    timeout=10)
        tap.check(next(w).status == S.SERVICE_UNKNOWN,
                  "watch of an unknown service: SERVICE_UNKNOWN")
        w.cancel()

    def cpu_pool():
        # Six calls of 300 ms on a CPU pool of 2 threads: never more than
        # two run at once, so they take three rounds; a call of the
        # elastic pool is not held up behind them.
        t0 = time.time()
        futs = [stub.CpuUnary.future(E(payload=b"%d" % i, sleep_ms=300),
                                     timeout=30) for i in range(6)]
        time.sleep(0.05)
        t1 = time.time()
        r = stub.Unary(E(payload=b"beside"), timeout=10)
        beside = time.time() - t1
        tap.check(r.payload == b"beside" and beside < 0.25,
                  "a Unary call is not queued behind the CPU pool "
                  "(%.3f s)" % beside)
        res = [f.result() for f in futs]
        took = time.time() - t0
        tap.check(all(x.payload == b"%d" % i for i, x in enumerate(res)),
                  "CPU pool: six calls answered")
        most = max(x.count for x in res)
        tap.check(most == 2, "CPU pool: at most 2 handlers at once "
                  "(saw %d)" % most)
        tap.check(took >= 0.85, "CPU pool: three rounds of 300 ms "
                  "(%.2f s)" % took)
        # A call whose deadline passes while it waits for a CPU thread
        # is answered DEADLINE_EXCEEDED and its handler never starts.
        before = stats(stub).cpu_started
        busy = [stub.CpuUnary.future(E(sleep_ms=1500), timeout=30)
                for _ in range(2)]
        time.sleep(0.2)
        try:
            stub.CpuUnary(E(), timeout=0.3)
            tap.check(False, "queued past its deadline")
        except grpc.RpcError as e:
            tap.check(e.code() == grpc.StatusCode.DEADLINE_EXCEEDED,
                      "CPU pool: queued past its deadline: %s" % e.code())
        for f in busy:
            f.result()
        tap.check(stats(stub).cpu_started == before + 2,
                  "CPU pool: the expired call's handler did not start")

    def many():
        futs = [stub.Unary.future(E(payload=b"%d" % i), timeout=120)
                for i in range(10000)]
        ok = sum(1 for i, f in enumerate(futs)
                 if f.result().payload == b"%d" % i)
        tap.check(ok == 10000, "10,000 concurrent calls on one channel")

    for name, fn in [("unary", unary), ("statuses", statuses),
                     ("client_stream", client_stream),
                     ("server_stream", server_stream), ("bidi", bidi),
                     ("deadline", deadline), ("cancel", cancel),
                     ("big", big), ("malformed", malformed),
                     ("compression", compression), ("health", health),
                     ("cpu_pool", cpu_pool), ("many", many)]:
        tap.run(name, fn)

    # A Watch sees the shutdown begin.
    h = health_pb2_grpc.HealthStub(ch)
    w = h.Watch(health_pb2.HealthCheckRequest(service=""), timeout=30)
    first = next(w).status
    seen = []

    def watch_rest():
        try:
            for r in w:
                seen.append(r.status)
        except grpc.RpcError:
            pass
    t = threading.Thread(target=watch_rest)
    t.start()
    # A call in flight when shutdown begins still completes (grace period);
    # a connection opened afterwards is refused.
    slow = stub.Unary.future(E(payload=b"late", sleep_ms=3000), timeout=30)
    time.sleep(0.2)
    srv.proc.send_signal(signal.SIGTERM)
    refused = False
    t0 = time.time()
    while not refused and time.time() - t0 < 2.5:
        ch2 = grpc.insecure_channel(srv.addr)
        try:
            echo_pb2_grpc.EchoStub(ch2).Unary(E(), timeout=5)
        except grpc.RpcError as e:
            refused = e.code() == grpc.StatusCode.UNAVAILABLE
        ch2.close()
        time.sleep(0.05)
    try:
        late = slow.result().payload == b"late"
    except grpc.RpcError as e:
        late = False
        print("# in-flight call failed: %s %s" % (e.code(), e.details()))
    tap.check(late, "a call in flight at shutdown completes")
    tap.check(refused, "new connections are refused during shutdown")
    rc = srv.stop()
    t.join(10)
    S = health_pb2.HealthCheckResponse
    tap.check(first == S.SERVING and S.NOT_SERVING in seen,
              "health watch: SERVING, then NOT_SERVING at shutdown")
    tap.check(rc == 0, "graceful shutdown, exit status %r" % rc)
    ch.close()
    tap.done()


main()
