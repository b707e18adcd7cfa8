/*
 * echo-client: the gRPC layer's client against any drift.test.Echo server
 * (tests/grpc/peer.py, stock grpcio; or echo-server).
 *
 *   echo-client --addr HOST:PORT --suite
 *       runs every client check and prints TAP ("ok N - what"); exit 0
 *       when all pass (tests/grpc/test_client_interop.py runs it);
 *   echo-client --addr HOST:PORT --probe SECONDS
 *       a unary call every 50 ms; prints changes between success and
 *       failure and a JSON summary (the reconnection test);
 *   echo-client --addr HOST:PORT --idle SECONDS --keepalive MS
 *       one unary call, SECONDS idle, another call (keepalive every MS,
 *       ack timeout MS too); prints a JSON line with both outcomes (the
 *       keepalive test: tests/grpc/test_client_resolve.py);
 *   echo-client --addr HOST:PORT --bench SECONDS [--inflight N]
 *       unary echo calls with N in flight for SECONDS; prints one JSON
 *       line with requests/s (the benchmark).
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/grpc/client.h"
#include "drift/test/echo.pb-c.h"

#define MS 1000000ull
#define SEC 1000000000ull

static int n_test, n_fail;

/* ---- Helpers ---- */

static void check(bool ok, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void check(bool ok, const char *fmt, ...)
{
	char what[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	printf("%s %d - %s\n", ok ? "ok" : "not ok", ++n_test, what);
	fflush(stdout);
	if (!ok)
		n_fail++;
}

static uint8_t *pack_req(const Drift__Test__EchoRequest *r, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(&r->base);
	uint8_t *b = drift_malloc(*len ? *len : 1);
	protobuf_c_message_pack(&r->base, b);
	return b;
}

static int unary(drift_grpc_client *cl, const char *path,
		 const Drift__Test__EchoRequest *req, uint64_t timeout,
		 Drift__Test__EchoResponse **resp, drift_grpc_status *st)
{
	ProtobufCMessage *m = NULL;
	int rv = drift_grpc_client_unary_pb(
		cl, path, &req->base, &drift__test__echo_response__descriptor,
		timeout, &m, st);
	*resp = (Drift__Test__EchoResponse *)m;
	return rv;
}

/* ---- The suite ---- */

static void t_unary(drift_grpc_client *cl)
{
	Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
	req.payload.data = (uint8_t *)"hello";
	req.payload.len = 5;
	Drift__Test__EchoResponse *resp = NULL;
	drift_grpc_status st;
	int rv = unary(cl, "/drift.test.Echo/Unary", &req, 5 * SEC, &resp, &st);
	check(rv == 0 && resp != NULL && resp->payload.len == 5 &&
		      memcmp(resp->payload.data, "hello", 5) == 0,
	      "unary echo (rv %d, %s %s)", rv, drift_grpc_code_name(st.code),
	      st.msg);
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
}

static void t_status(drift_grpc_client *cl)
{
	Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
	req.status = DRIFT_GRPC_NOT_FOUND;
	req.message = "no such \"thing\" 100% \xc3\xa9";
	Drift__Test__EchoResponse *resp = NULL;
	drift_grpc_status st;
	int rv = unary(cl, "/drift.test.Echo/Unary", &req, 5 * SEC, &resp, &st);
	check(rv == DRIFT_ENOENT && st.code == DRIFT_GRPC_NOT_FOUND &&
		      strcmp(st.msg, req.message) == 0,
	      "error status and message arrive intact (%s \"%s\")",
	      drift_grpc_code_name(st.code), st.msg);
}

static void t_unknown(drift_grpc_client *cl)
{
	drift_grpc_msg *m = NULL;
	drift_grpc_status st;
	int rv = drift_grpc_client_unary(cl, "/drift.test.Echo/Nope", "", 0,
					 5 * SEC, &m, &st);
	check(rv != 0 && st.code == DRIFT_GRPC_UNIMPLEMENTED,
	      "unknown method is UNIMPLEMENTED (%s)",
	      drift_grpc_code_name(st.code));
}

static void t_client_stream(drift_grpc_client *cl)
{
	drift_grpc_ccall *c;
	int rv = drift_grpc_ccall_start(cl, "/drift.test.Echo/ClientStream",
					30 * SEC, NULL, &c);
	uint64_t total = 0;
	uint8_t payload[1000];
	memset(payload, 7, sizeof(payload));
	for (int i = 0; i < 2000 && rv == 0; i++) {
		Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
		req.payload.data = payload;
		req.payload.len = (size_t)(i % 1000);
		total += req.payload.len;
		size_t len;
		uint8_t *b = pack_req(&req, &len);
		rv = drift_grpc_ccall_send(c, b, len);
		drift_free(b);
	}
	drift_grpc_ccall_close_send(c);
	drift_grpc_msg *m = NULL;
	int got = drift_grpc_ccall_recv(c, &m);
	Drift__Test__EchoResponse *resp =
		got == 1 ? drift__test__echo_response__unpack(NULL, m->len,
							      m->data)
			 : NULL;
	drift_grpc_msg_free(m);
	drift_grpc_status st;
	int fin = drift_grpc_ccall_finish(c, &st);
	check(fin == 0 && resp != NULL && resp->count == 2000 &&
		      resp->total == total,
	      "client streaming: 2000 messages counted (%s)",
	      drift_grpc_code_name(st.code));
	if (resp)
		drift__test__echo_response__free_unpacked(resp, NULL);
}

static void t_server_stream(drift_grpc_client *cl)
{
	Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
	req.repeat = 500;
	req.response_size = 3000;
	size_t len;
	uint8_t *b = pack_req(&req, &len);
	drift_grpc_ccall *c;
	drift_grpc_ccall_start(cl, "/drift.test.Echo/ServerStream", 30 * SEC,
			       NULL, &c);
	drift_grpc_ccall_send(c, b, len);
	drift_grpc_ccall_close_send(c);
	drift_free(b);
	unsigned n = 0;
	bool order = true;
	drift_grpc_msg *m;
	while (drift_grpc_ccall_recv(c, &m) == 1) {
		Drift__Test__EchoResponse *r =
			drift__test__echo_response__unpack(NULL, m->len,
							   m->data);
		order &= r != NULL && r->index == n && r->payload.len == 3000;
		if (r)
			drift__test__echo_response__free_unpacked(r, NULL);
		drift_grpc_msg_free(m);
		n++;
	}
	drift_grpc_status st;
	int fin = drift_grpc_ccall_finish(c, &st);
	check(fin == 0 && n == 500 && order,
	      "server streaming: 500 responses in order (%u, %s)", n,
	      drift_grpc_code_name(st.code));
}

static void t_bidi(drift_grpc_client *cl)
{
	drift_grpc_ccall *c;
	drift_grpc_ccall_start(cl, "/drift.test.Echo/Bidi", 30 * SEC, NULL, &c);
	bool ok = true;
	for (unsigned i = 0; i < 100 && ok; i++) {
		char p[16];
		int pl = snprintf(p, sizeof(p), "m%u", i);
		Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
		req.payload.data = (uint8_t *)p;
		req.payload.len = (size_t)pl;
		size_t len;
		uint8_t *b = pack_req(&req, &len);
		ok = drift_grpc_ccall_send(c, b, len) == 0;
		drift_free(b);
		drift_grpc_msg *m = NULL;
		ok = ok && drift_grpc_ccall_recv(c, &m) == 1;
		Drift__Test__EchoResponse *r =
			ok ? drift__test__echo_response__unpack(NULL, m->len,
								m->data)
			   : NULL;
		ok = ok && r != NULL && r->payload.len == (size_t)pl &&
		     memcmp(r->payload.data, p, (size_t)pl) == 0;
		if (r)
			drift__test__echo_response__free_unpacked(r, NULL);
		drift_grpc_msg_free(m);
	}
	drift_grpc_ccall_close_send(c);
	drift_grpc_msg *m;
	int end = drift_grpc_ccall_recv(c, &m);
	drift_grpc_status st;
	int fin = drift_grpc_ccall_finish(c, &st);
	check(ok && end == 0 && fin == 0,
	      "bidi: 100 ping-pongs, then a clean end (%s)",
	      drift_grpc_code_name(st.code));
}

static void t_deadline(drift_grpc_client *cl)
{
	Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
	req.sleep_ms = 3000;
	Drift__Test__EchoResponse *resp = NULL;
	drift_grpc_status st;
	uint64_t t0 = drift_now_ns();
	int rv =
		unary(cl, "/drift.test.Echo/Unary", &req, 200 * MS, &resp, &st);
	uint64_t took = drift_now_ns() - t0;
	check(rv == DRIFT_ETIMEDOUT &&
		      st.code == DRIFT_GRPC_DEADLINE_EXCEEDED && took < 2 * SEC,
	      "deadline: DEADLINE_EXCEEDED after %llu ms (rv %d, %s %s)",
	      (unsigned long long)(took / MS), rv,
	      drift_grpc_code_name(st.code), st.msg);
}

static void t_cancel(drift_grpc_client *cl)
{
	Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
	req.repeat = 1000;
	req.sleep_ms = 20;
	size_t len;
	uint8_t *b = pack_req(&req, &len);
	drift_grpc_ccall *c;
	drift_grpc_ccall_start(cl, "/drift.test.Echo/ServerStream", 30 * SEC,
			       NULL, &c);
	drift_grpc_ccall_send(c, b, len);
	drift_grpc_ccall_close_send(c);
	drift_free(b);
	drift_grpc_msg *m = NULL;
	int got = drift_grpc_ccall_recv(c, &m);
	drift_grpc_msg_free(m);
	uint64_t t0 = drift_now_ns();
	drift_grpc_ccall_cancel(c);
	drift_grpc_status st;
	drift_grpc_ccall_finish(c, &st);
	uint64_t took = drift_now_ns() - t0;
	check(got == 1 && st.code == DRIFT_GRPC_CANCELLED && took < SEC,
	      "cancel: CANCELLED within %llu ms",
	      (unsigned long long)(took / MS));
}

static void t_big(drift_grpc_client *cl)
{
	size_t n = 20u << 20;
	uint8_t *p = drift_malloc(n);
	for (size_t i = 0; i < n; i++)
		p[i] = (uint8_t)(i * 7);
	Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
	req.payload.data = p;
	req.payload.len = n;
	Drift__Test__EchoResponse *resp = NULL;
	drift_grpc_status st;
	int rv =
		unary(cl, "/drift.test.Echo/Unary", &req, 60 * SEC, &resp, &st);
	check(rv == 0 && resp != NULL && resp->payload.len == n &&
		      memcmp(resp->payload.data, p, n) == 0,
	      "20 MiB request and response intact (%s %s)",
	      drift_grpc_code_name(st.code), st.msg);
	if (resp)
		protobuf_c_message_free_unpacked(&resp->base, NULL);
	drift_free(p);
}

struct async_state {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int done, ok;
};

static void on_async(void *arg, const drift_grpc_status *st,
		     drift_grpc_msg *resp)
{
	struct async_state *a = arg;
	pthread_mutex_lock(&a->mu);
	a->done++;
	a->ok += st->code == DRIFT_GRPC_OK && resp != NULL;
	pthread_cond_signal(&a->cv);
	pthread_mutex_unlock(&a->mu);
	drift_grpc_msg_free(resp);
}

static void t_async_many(drift_grpc_client *cl)
{
	struct async_state a = {PTHREAD_MUTEX_INITIALIZER,
				PTHREAD_COND_INITIALIZER, 0, 0};
	Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
	size_t len;
	uint8_t *b = pack_req(&req, &len);
	enum { N = 2000 };
	for (int i = 0; i < N; i++)
		drift_grpc_client_unary_async(cl, "/drift.test.Echo/Unary", b,
					      len, 30 * SEC, on_async, &a);
	drift_free(b);
	pthread_mutex_lock(&a.mu);
	while (a.done < N)
		pthread_cond_wait(&a.cv, &a.mu);
	pthread_mutex_unlock(&a.mu);
	check(a.ok == N, "%d concurrent asynchronous unary calls: %d OK", N,
	      a.ok);
}

static void t_unreachable(void)
{
	drift_grpc_client *cl;
	drift_grpc_client_opts o = {.backoff_min_ns = 50 * MS};
	/* Port 1 on loopback: connection refused. */
	drift_grpc_client_new("127.0.0.1:1", &o, &cl, NULL);
	drift_grpc_msg *m = NULL;
	drift_grpc_status st;
	int rv = drift_grpc_client_unary(cl, "/drift.test.Echo/Unary", "", 0,
					 2 * SEC, &m, &st);
	check(rv == DRIFT_EUNAVAIL && st.code == DRIFT_GRPC_UNAVAILABLE,
	      "unreachable peer: UNAVAILABLE (%s)", st.msg);
	rv = drift_grpc_client_unary(cl, "/drift.test.Echo/Unary", "", 0,
				     2 * SEC, &m, &st);
	check(rv == DRIFT_EUNAVAIL, "during backoff: fails fast (%s)", st.msg);
	drift_grpc_client_free(cl);
}

static int suite(const char *addr)
{
	drift_grpc_client *cl;
	drift_err err;
	drift_grpc_client_opts o = {.connections = 2};
	if (drift_grpc_client_new(addr, &o, &cl, &err) != 0) {
		printf("Bail out! %s\n", err.msg);
		return 1;
	}
	t_unary(cl);
	t_status(cl);
	t_unknown(cl);
	t_client_stream(cl);
	t_server_stream(cl);
	t_bidi(cl);
	t_deadline(cl);
	t_cancel(cl);
	t_big(cl);
	t_async_many(cl);
	drift_grpc_client_free(cl);
	t_unreachable();
	printf("1..%d\n", n_test);
	return n_fail == 0 ? 0 : 1;
}

/* ---- Reconnection probe ---- */

/* Unary calls every 50 ms for `seconds`; prints each change between
 * success and failure, then a JSON summary: how many calls succeeded after
 * the first failure (a restarted server must be found again). */
static int probe(const char *addr, double seconds)
{
	drift_grpc_client *cl;
	drift_grpc_client_opts o = {.backoff_min_ns = 50 * MS,
				    .backoff_max_ns = 400 * MS};
	if (drift_grpc_client_new(addr, &o, &cl, NULL) != 0)
		return 1;
	uint64_t until = drift_now_ns() + (uint64_t)(seconds * 1e9);
	int last = -1;
	unsigned ok_before = 0, failed = 0, ok_after = 0;
	while (drift_now_ns() < until) {
		drift_grpc_msg *m = NULL;
		drift_grpc_status st;
		int rv = drift_grpc_client_unary(cl, "/drift.test.Echo/Unary",
						 "", 0, SEC, &m, &st);
		drift_grpc_msg_free(m);
		int ok = rv == 0;
		if (ok != last)
			printf("# %s %s\n", ok ? "ok" : "fail",
			       ok ? "" : st.msg);
		last = ok;
		if (!ok)
			failed++;
		else if (failed == 0)
			ok_before++;
		else
			ok_after++;
		struct timespec ts = {0, 50 * 1000000};
		nanosleep(&ts, NULL);
	}
	printf("{\"ok_before\": %u, \"failed\": %u, \"ok_after\": %u}\n",
	       ok_before, failed, ok_after);
	drift_grpc_client_free(cl);
	return 0;
}

/* ---- Keepalive ---- */

/* One call, `seconds` idle, one more: the second succeeds when a dead
 * connection was noticed (keepalive) and a new one made. */
static int idle(const char *addr, double seconds, unsigned ka_ms)
{
	drift_grpc_client *cl;
	drift_grpc_client_opts o = {.keepalive_ns = ka_ms * MS,
				    .keepalive_timeout_ns = ka_ms * MS,
				    .backoff_min_ns = 50 * MS};
	if (drift_grpc_client_new(addr, &o, &cl, NULL) != 0)
		return 1;
	drift_grpc_status st1, st2;
	drift_grpc_msg *m = NULL;
	drift_grpc_client_unary(cl, "/drift.test.Echo/Unary", "", 0, 2 * SEC,
				&m, &st1);
	drift_grpc_msg_free(m);
	m = NULL;
	printf("# first call: %s\n", drift_grpc_code_name(st1.code));
	fflush(stdout);
	struct timespec ts = {
		(time_t)seconds,
		(long)((seconds - (double)(time_t)seconds) * 1e9)};
	nanosleep(&ts, NULL);
	uint64_t t0 = drift_now_ns();
	drift_grpc_client_unary(cl, "/drift.test.Echo/Unary", "", 0, 3 * SEC,
				&m, &st2);
	drift_grpc_msg_free(m);
	printf("{\"first\": \"%s\", \"second\": \"%s\", "
	       "\"second_ms\": %.1f, \"second_msg\": \"%s\"}\n",
	       drift_grpc_code_name(st1.code), drift_grpc_code_name(st2.code),
	       (double)(drift_now_ns() - t0) / 1e6, st2.msg);
	drift_grpc_client_free(cl);
	return 0;
}

/* ---- Benchmark ---- */

struct bench {
	drift_grpc_client *cl;
	uint64_t until;
	atomic_ullong done, failed;
	uint8_t *req;
	size_t len;
};

static void *bench_thread(void *arg)
{
	struct bench *b = arg;
	while (drift_now_ns() < b->until) {
		drift_grpc_msg *m = NULL;
		int rv = drift_grpc_client_unary(
			b->cl, "/drift.test.Echo/Unary", b->req, b->len,
			10 * SEC, &m, NULL);
		drift_grpc_msg_free(m);
		atomic_fetch_add(rv == 0 ? &b->done : &b->failed, 1);
	}
	return NULL;
}

static int bench(const char *addr, double seconds, unsigned inflight)
{
	struct bench b = {0};
	drift_grpc_client_opts o = {.connections = 1};
	if (drift_grpc_client_new(addr, &o, &b.cl, NULL) != 0)
		return 1;
	Drift__Test__EchoRequest req = DRIFT__TEST__ECHO_REQUEST__INIT;
	req.payload.data = (uint8_t *)"0123456789abcdef";
	req.payload.len = 16;
	b.req = pack_req(&req, &b.len);
	uint64_t t0 = drift_now_ns();
	b.until = t0 + (uint64_t)(seconds * 1e9);
	pthread_t *t = drift_calloc(inflight, sizeof(*t));
	for (unsigned i = 0; i < inflight; i++)
		pthread_create(&t[i], NULL, bench_thread, &b);
	for (unsigned i = 0; i < inflight; i++)
		pthread_join(t[i], NULL);
	double el = (double)(drift_now_ns() - t0) / 1e9;
	printf("{\"client\": \"drift\", \"inflight\": %u, \"requests\": %llu, "
	       "\"failed\": %llu, \"seconds\": %.3f, \"rps\": %.1f}\n",
	       inflight, (unsigned long long)atomic_load(&b.done),
	       (unsigned long long)atomic_load(&b.failed), el,
	       (double)atomic_load(&b.done) / el);
	drift_free(t);
	drift_free(b.req);
	drift_grpc_client_free(b.cl);
	return 0;
}

int main(int argc, char **argv)
{
	const char *addr = NULL;
	double secs = 0, probe_s = 0, idle_s = 0;
	unsigned inflight = 32, ka_ms = 0;
	bool run_suite = false;
	for (int i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--addr") == 0 && i + 1 < argc)
			addr = argv[++i];
		else if (strcmp(argv[i], "--suite") == 0)
			run_suite = true;
		else if (strcmp(argv[i], "--probe") == 0 && i + 1 < argc)
			probe_s = atof(argv[++i]);
		else if (strcmp(argv[i], "--bench") == 0 && i + 1 < argc)
			secs = atof(argv[++i]);
		else if (strcmp(argv[i], "--idle") == 0 && i + 1 < argc)
			idle_s = atof(argv[++i]);
		else if (strcmp(argv[i], "--keepalive") == 0 && i + 1 < argc)
			ka_ms = (unsigned)atoi(argv[++i]);
		else if (strcmp(argv[i], "--inflight") == 0 && i + 1 < argc)
			inflight = (unsigned)atoi(argv[++i]);
		else
			addr = NULL, i = argc;
	}
	if (addr != NULL && probe_s > 0)
		return probe(addr, probe_s);
	if (addr != NULL && idle_s > 0 && ka_ms > 0)
		return idle(addr, idle_s, ka_ms);
	if (addr == NULL || (!run_suite && secs <= 0)) {
		fprintf(stderr, "usage: echo-client --addr HOST:PORT "
				"(--suite | --probe SECONDS | --idle SECONDS "
				"--keepalive MS | --bench SECONDS "
				"[--inflight N])\n");
		return 2;
	}
	return run_suite ? suite(addr) : bench(addr, secs, inflight);
}
