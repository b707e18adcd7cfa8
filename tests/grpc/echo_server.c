/*
 * echo-server: drift.test.Echo (proto/drift/test/echo.proto) on the gRPC
 * layer of common/grpc, for the interop tests (tests/grpc/test_interop.py
 * drives it with stock grpcio), the bad-peer tests, the session fuzzer's
 * seeds and the echo benchmark.
 *
 *   echo-server [--listen HOST:PORT] [--max-recv BYTES] [--workers N]
 *               [--cpu-workers N] [--keepalive-ms MS]
 *               [--keepalive-timeout-ms MS]
 *
 * Prints "listening on PORT" and then "ready" on stdout; SIGTERM or SIGINT
 * shuts it down gracefully (5 s grace) and it exits 0.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/alloc.h"
#include "common/grpc/server.h"
#include "common/log.h"
#include "drift/test/echo.pb-c.h"

static drift_grpc_server *server;
static atomic_ullong n_cancelled, n_deadline;
static atomic_ullong cpu_running, cpu_started;

/* ---- Helpers ---- */

/* Sleeps ms in small steps; false when the call ended meanwhile (the
 * reason is counted). */
static bool nap(drift_grpc_call *c, uint32_t ms)
{
	for (uint32_t slept = 0; slept < ms; slept += 5) {
		if (drift_grpc_call_done(c))
			break;
		struct timespec ts = {0, 5 * 1000000};
		nanosleep(&ts, NULL);
	}
	if (!drift_grpc_call_done(c))
		return true;
	uint64_t d = drift_grpc_call_deadline(c);
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	uint64_t t = (uint64_t)now.tv_sec * 1000000000u + (uint64_t)now.tv_nsec;
	if (d != UINT64_MAX && t >= d)
		atomic_fetch_add(&n_deadline, 1);
	else
		atomic_fetch_add(&n_cancelled, 1);
	return false;
}

static int reply(drift_grpc_call *c, const Drift__Test__EchoRequest *req,
		 uint32_t index, uint64_t count)
{
	Drift__Test__EchoResponse resp = DRIFT__TEST__ECHO_RESPONSE__INIT;
	resp.count = count;
	uint8_t *big = NULL;
	resp.index = index;
	if (req->response_size > 0) {
		big = drift_malloc(req->response_size);
		if (big == NULL)
			return DRIFT_ENOMEM;
		for (uint64_t i = 0; i < req->response_size; i++)
			big[i] = (uint8_t)(i * 131 + index);
		resp.payload.data = big;
		resp.payload.len = req->response_size;
	} else {
		resp.payload = req->payload;
	}
	const char *md = drift_grpc_call_header(c, "x-drift-test");
	resp.metadata = (char *)(md != NULL ? md : "");
	int rv = drift_grpc_call_send_pb(c, &resp.base);
	drift_free(big);
	if (rv == DRIFT_ECANCELED)
		atomic_fetch_add(&n_cancelled, 1);
	if (rv == DRIFT_ETIMEDOUT)
		atomic_fetch_add(&n_deadline, 1);
	return rv;
}

static Drift__Test__EchoRequest *recv_req(drift_grpc_call *c, int *rv)
{
	ProtobufCMessage *m = NULL;
	*rv = drift_grpc_call_recv_pb(c, &drift__test__echo_request__descriptor,
				      &m);
	return *rv == 1 ? (Drift__Test__EchoRequest *)m : NULL;
}

/* ---- Handlers ---- */

static void unary(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	int rv;
	Drift__Test__EchoRequest *req = recv_req(c, &rv);
	if (req == NULL)
		return;
	if (!nap(c, req->sleep_ms))
		goto out;
	if (req->status != 0) {
		drift_grpc_call_finish(c, req->status, "%s", req->message);
		goto out;
	}
	if (reply(c, req, 0, 0) == 0)
		drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
	else
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "response not sent");
out:
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* Unary on the CPU pool: says how many of its kind run at once. */
static void cpu_unary(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	uint64_t running = atomic_fetch_add(&cpu_running, 1) + 1;
	atomic_fetch_add(&cpu_started, 1);
	int rv;
	Drift__Test__EchoRequest *req = recv_req(c, &rv);
	if (req != NULL && nap(c, req->sleep_ms)) {
		if (reply(c, req, 0, running) == 0)
			drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
	}
	if (req != NULL)
		protobuf_c_message_free_unpacked(&req->base, NULL);
	atomic_fetch_sub(&cpu_running, 1);
}

static void client_stream(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	uint64_t count = 0, total = 0;
	int rv;
	for (;;) {
		Drift__Test__EchoRequest *req = recv_req(c, &rv);
		if (req == NULL)
			break;
		count++;
		total += req->payload.len;
		uint32_t ms = req->sleep_ms;
		int32_t status = req->status;
		protobuf_c_message_free_unpacked(&req->base, NULL);
		if (status != 0) {
			drift_grpc_call_finish(c, status, "after %llu messages",
					       (unsigned long long)count);
			return;
		}
		if (!nap(c, ms))
			return;
	}
	if (rv == DRIFT_ECANCELED)
		atomic_fetch_add(&n_cancelled, 1);
	if (rv != 0)
		return; /* cancelled, deadline, or already answered */
	Drift__Test__EchoResponse resp = DRIFT__TEST__ECHO_RESPONSE__INIT;
	resp.count = count;
	resp.total = total;
	if (drift_grpc_call_send_pb(c, &resp.base) == 0)
		drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
}

static void server_stream(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	int rv;
	Drift__Test__EchoRequest *req = recv_req(c, &rv);
	if (req == NULL)
		return;
	for (uint32_t i = 0; i < req->repeat; i++) {
		if (!nap(c, req->sleep_ms) || reply(c, req, i, 0) != 0)
			goto out;
	}
	if (req->status != 0)
		drift_grpc_call_finish(c, req->status, "%s", req->message);
	else
		drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
out:
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void bidi(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	int rv;
	uint32_t i = 0;
	for (;;) {
		Drift__Test__EchoRequest *req = recv_req(c, &rv);
		if (req == NULL)
			break;
		bool ok = req->status == 0 && nap(c, req->sleep_ms) &&
			  reply(c, req, i++, 0) == 0;
		if (req->status != 0)
			drift_grpc_call_finish(c, req->status, "%s",
					       req->message);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		if (!ok)
			return;
	}
	if (rv == DRIFT_ECANCELED)
		atomic_fetch_add(&n_cancelled, 1);
	if (rv == 0)
		drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
}

static void stats(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	int rv;
	Drift__Test__EchoRequest *req = recv_req(c, &rv);
	if (req == NULL)
		return;
	protobuf_c_message_free_unpacked(&req->base, NULL);
	drift_grpc_server_stats st;
	drift_grpc_server_stats_get(server, &st);
	Drift__Test__StatsResponse resp = DRIFT__TEST__STATS_RESPONSE__INIT;
	resp.cancelled = atomic_load(&n_cancelled);
	resp.deadline = atomic_load(&n_deadline);
	resp.active = st.calls_active;
	resp.connections = st.connections;
	resp.cpu_started = atomic_load(&cpu_started);
	if (drift_grpc_call_send_pb(c, &resp.base) == 0)
		drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
}

/* ---- Main ---- */

static int usage(void)
{
	fprintf(stderr,
		"usage: echo-server [--listen HOST:PORT] [--max-recv BYTES] "
		"[--workers N] [--cpu-workers N] [--keepalive-ms MS] "
		"[--keepalive-timeout-ms MS]\n");
	return 2;
}

int main(int argc, char **argv)
{
	const char *listen = "127.0.0.1:0";
	drift_grpc_server_opts o = {0};
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (i + 1 >= argc)
			return usage();
		const char *v = argv[++i];
		if (strcmp(a, "--listen") == 0)
			listen = v;
		else if (strcmp(a, "--max-recv") == 0)
			o.max_recv_msg = strtoull(v, NULL, 10);
		else if (strcmp(a, "--workers") == 0)
			o.workers = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--cpu-workers") == 0)
			o.cpu_workers = (unsigned)strtoul(v, NULL, 10);
		else if (strcmp(a, "--keepalive-ms") == 0)
			o.keepalive_ns = strtoull(v, NULL, 10) * 1000000ull;
		else if (strcmp(a, "--keepalive-timeout-ms") == 0)
			o.keepalive_timeout_ns =
				strtoull(v, NULL, 10) * 1000000ull;
		else
			return usage();
	}
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	drift_err err;
	drift_err_clear(&err);
	if (drift_grpc_server_new(&o, &server, &err) != 0 ||
	    drift_grpc_server_add(server, "/drift.test.Echo/Unary",
				  DRIFT_GRPC_UNARY, unary, NULL) != 0 ||
	    drift_grpc_server_add(server, "/drift.test.Echo/ClientStream",
				  DRIFT_GRPC_CLIENT_STREAM, client_stream,
				  NULL) != 0 ||
	    drift_grpc_server_add(server, "/drift.test.Echo/ServerStream",
				  DRIFT_GRPC_SERVER_STREAM, server_stream,
				  NULL) != 0 ||
	    drift_grpc_server_add(server, "/drift.test.Echo/Bidi",
				  DRIFT_GRPC_BIDI, bidi, NULL) != 0 ||
	    drift_grpc_server_add(server, "/drift.test.Echo/Stats",
				  DRIFT_GRPC_UNARY, stats, NULL) != 0 ||
	    drift_grpc_server_add_cpu(server, "/drift.test.Echo/CpuUnary",
				      cpu_unary, NULL) != 0 ||
	    drift_grpc_server_listen(server, listen, &err) != 0 ||
	    drift_grpc_server_start(server, &err) != 0) {
		fprintf(stderr, "echo-server: %s\n", drift_err_msg(&err, -1));
		drift_grpc_server_free(server);
		return 1;
	}
	drift_grpc_server_set_health(server, "drift.test.Echo", 1);
	printf("listening on %d\nready\n", drift_grpc_server_port(server));
	fflush(stdout);
	int sig;
	sigwait(&set, &sig);
	DRIFT_INFO("echo-server: signal %d, shutting down", sig);
	drift_grpc_server_shutdown(server, 5000000000ull);
	drift_grpc_server_free(server);
	return 0;
}
