/*
 * The gRPC server: standard gRPC over HTTP/2 (h2c with prior knowledge), so
 * stock clients (grpcio, grpc-js, grpcurl, h2load) speak to it unchanged.
 *
 * Threads. One libuv loop thread owns the listening socket, every
 * connection and every nghttp2 session. Handlers run on an elastic worker
 * pool (common/pool.h), or those registered with drift_grpc_server_add_cpu
 * on a fixed one, and never touch a session: they receive and send
 * messages through their call, which hands them to the loop (see
 * stream.h). A handler may block (on the engine, on its peer's next
 * message); the loop never does.
 *
 * A call's life. The loop validates the request headers (POST, else HTTP
 * 405; content-type application/grpc[+proto], else 415; te absent or
 * "trailers", else 400; a known :path, else UNIMPLEMENTED; no grpc-encoding
 * but identity, else UNIMPLEMENTED; a well-formed grpc-timeout, else
 * INTERNAL) and answers early failures with a trailers-only response.
 * Unary and server-streaming handlers start once the request message is
 * complete (exactly one message, else INTERNAL); client-streaming and bidi
 * handlers at once. A message longer than max_recv_msg is refused with
 * RESOURCE_EXHAUSTED, a compressed one with INTERNAL, before the handler
 * sees it. The handler calls drift_grpc_call_finish once; a handler that
 * returns without it finishes with INTERNAL.
 *
 * Deadlines. grpc-timeout sets the call's deadline; when it passes the loop
 * answers DEADLINE_EXCEEDED at once and the handler's blocking calls
 * return DRIFT_ETIMEDOUT (it may also poll drift_grpc_call_done). A
 * RST_STREAM from the client or a lost connection cancels the call: its
 * blocking calls return DRIFT_ECANCELED.
 *
 * Keepalive: while a connection has calls open, the server pings it every
 * keepalive_ns and drops it when an ack does not come within
 * keepalive_timeout_ns; idle connections are left to TCP keepalive (60 s).
 *
 * Every server serves grpc.health.v1.Health (Check, Watch); service ""
 * is SERVING from drift_grpc_server_start until shutdown begins.
 *
 * Shutdown: GOAWAY to every connection (no new calls), in-flight calls
 * finish within the grace period, then the rest are cancelled and the
 * connections closed.
 */
#ifndef DRIFT_COMMON_GRPC_SERVER_H
#define DRIFT_COMMON_GRPC_SERVER_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/grpc/status.h"
#include "common/grpc/wire.h"

typedef struct drift_grpc_server drift_grpc_server;
typedef struct drift_grpc_call drift_grpc_call;

enum drift_grpc_kind {
	DRIFT_GRPC_UNARY,
	DRIFT_GRPC_CLIENT_STREAM,
	DRIFT_GRPC_SERVER_STREAM,
	DRIFT_GRPC_BIDI,
};

/* Runs on a worker thread; must call drift_grpc_call_finish. */
typedef void (*drift_grpc_handler)(drift_grpc_call *call, void *ctx);

typedef struct drift_grpc_server_opts {
	size_t max_recv_msg;  /* 0: 64 MiB */
	size_t max_send_msg;  /* 0: 64 MiB */
	unsigned workers;     /* pool threads kept; 0: 4 */
	unsigned max_workers; /* handlers running at once; 0: 512 */
	unsigned cpu_workers; /* threads of the CPU pool; 0: online CPUs */
	uint32_t max_concurrent_streams; /* per connection; 0: 1000 */
	unsigned max_connections;	 /* 0: 4096 */
	uint64_t keepalive_ns;		 /* ping period; 0: 2 hours */
	uint64_t keepalive_timeout_ns;	 /* ping ack wait; 0: 20 s */
	uint32_t stream_window;		 /* 0: 4 MiB */
	uint32_t conn_window;		 /* 0: 16 MiB */
} drift_grpc_server_opts;

/* opts may be NULL (all defaults). 0 or DRIFT_ENOMEM / DRIFT_EINVAL. */
int drift_grpc_server_new(const drift_grpc_server_opts *opts,
			  drift_grpc_server **out, drift_err *err);

/* Registers path ("/package.Service/Method") before start. The path string
 * is copied. 0, DRIFT_EEXIST, DRIFT_EINVAL (after start), DRIFT_ENOMEM. */
int drift_grpc_server_add(drift_grpc_server *s, const char *path,
			  enum drift_grpc_kind kind, drift_grpc_handler fn,
			  void *ctx);

/* Registers a unary method whose handler only computes: it does not wait
 * for a client, a disk sync, a lock held long or another call. Such
 * handlers run on a fixed pool of cpu_workers threads, in arrival order,
 * so that many calls in flight share the cores instead of each taking a
 * thread of its own (oversubscribed, they would cost a context switch and
 * a cold cache each). Keep it to handlers that are also short: the calls
 * queued behind a long one wait for it. Same returns as
 * drift_grpc_server_add. */
int drift_grpc_server_add_cpu(drift_grpc_server *s, const char *path,
			      drift_grpc_handler fn, void *ctx);

/* A unary handler tried first on the server's loop thread, as soon as the
 * request is complete (req: its message, borrowed for the call's length):
 * it must not block. It returns false to leave the call to fn, which then
 * runs on a worker as usual (the request still to receive), or true when
 * it took the call: then it (or what it started) answers it later with
 * drift_grpc_call_send / drift_grpc_call_finish from any thread, and lets
 * go of it with drift_grpc_call_release, once, even when it was cancelled
 * meanwhile (see drift_grpc_call_on_cancel). Used where a handler would only
 * wait for other calls (the router's fan-out): no worker thread, no two
 * wake-ups per call. */
typedef bool (*drift_grpc_fast_handler)(drift_grpc_call *call,
					const drift_grpc_msg *req, void *ctx);
/* The end of a fast handler's use of a call it took (any thread): one not
 * finished yet is finished CANCELLED; the call must not be used after. */
void drift_grpc_call_release(drift_grpc_call *c);
int drift_grpc_server_add_fast(drift_grpc_server *s, const char *path,
			       drift_grpc_fast_handler fast,
			       drift_grpc_handler fn, void *ctx);

/* Binds and listens on "host:port" (port 0: an ephemeral one, see
 * drift_grpc_server_port). 0 or an error with a message. */
int drift_grpc_server_listen(drift_grpc_server *s, const char *addr,
			     drift_err *err);
int drift_grpc_server_port(const drift_grpc_server *s);

/* Starts the loop thread; health "" becomes SERVING. */
int drift_grpc_server_start(drift_grpc_server *s, drift_err *err);

/* Health of a service name (copied): a
 * grpc.health.v1.HealthCheckResponse.ServingStatus value (1 SERVING,
 * 2 NOT_SERVING). Watchers are told. Thread-safe. */
int drift_grpc_server_set_health(drift_grpc_server *s, const char *service,
				 int status);

/* Stops accepting calls, lets in-flight ones run up to grace_ns, cancels
 * the rest, closes everything and stops the loop. Idempotent; thread-safe
 * except with drift_grpc_server_free. */
void drift_grpc_server_shutdown(drift_grpc_server *s, uint64_t grace_ns);

/* Shuts down (grace 0) if needed and frees. NULL is ignored. */
void drift_grpc_server_free(drift_grpc_server *s);

/* Counters, for tests and stats. */
typedef struct drift_grpc_server_stats {
	uint64_t connections;	/* open now */
	uint64_t calls_active;	/* dispatched handlers not yet returned */
	uint64_t calls_total;	/* handlers started */
	uint64_t calls_refused; /* answered by the loop without a handler */
} drift_grpc_server_stats;
void drift_grpc_server_stats_get(drift_grpc_server *s,
				 drift_grpc_server_stats *st);

/* ---- In a handler (worker thread) ---- */

const char *drift_grpc_call_path(const drift_grpc_call *c);

/* The call's deadline on the monotonic clock (drift_now_ns), UINT64_MAX
 * when the client set none. */
uint64_t drift_grpc_call_deadline(const drift_grpc_call *c);

/* A request header's value (lower-case name), or NULL. Pseudo-headers and
 * the headers the layer consumes (content-type, te, grpc-timeout) are not
 * listed. */
const char *drift_grpc_call_header(const drift_grpc_call *c, const char *name);

/* The next request message: 1 (*m is the handler's, drift_grpc_msg_free),
 * 0 (the client sent its last), DRIFT_ECANCELED, DRIFT_ETIMEDOUT. */
int drift_grpc_call_recv(drift_grpc_call *c, drift_grpc_msg **m);

/* Receives and unpacks one message of type desc. 1 and *out (free with
 * protobuf_c_message_free_unpacked), 0 at the end, or negative: the call is
 * over, or the bytes are not a valid message (then the call has been
 * finished with INVALID_ARGUMENT and the handler just returns). */
int drift_grpc_call_recv_pb(drift_grpc_call *c,
			    const ProtobufCMessageDescriptor *desc,
			    ProtobufCMessage **out);

/* Sends one response message, waiting while the client is slow to read.
 * 0, DRIFT_ECANCELED, DRIFT_ETIMEDOUT, DRIFT_ELIMIT (over max_send_msg:
 * nothing sent), DRIFT_ENOMEM, DRIFT_EINVAL (after finish, or a second
 * message of a unary or client-streaming call). */
int drift_grpc_call_send(drift_grpc_call *c, const void *data, size_t len);
int drift_grpc_call_send_pb(drift_grpc_call *c, const ProtobufCMessage *m);

/* A unary handler's request: the one message unpacked with desc (free
 * with protobuf_c_message_free_unpacked), or NULL when the call has been
 * answered (no message: INTERNAL; a bad one: INVALID_ARGUMENT) or is over. */
void *drift_grpc_call_recv_req(drift_grpc_call *c,
			       const ProtobufCMessageDescriptor *desc);
/* A unary handler's answer: sends m and finishes OK (a response over the
 * maximum message size: RESOURCE_EXHAUSTED; a call already over: nothing
 * more). */
void drift_grpc_call_reply(drift_grpc_call *c, const ProtobufCMessage *m);

/* Ends the call with a status and a printf-style message (NULL: none). For
 * OK on a unary call, exactly one message must have been sent (else the
 * status becomes INTERNAL). Later calls are ignored. */
void drift_grpc_call_finish(drift_grpc_call *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Whether the call is over for the handler (cancelled, deadline passed,
 * connection lost, server shutting down past its grace). */
bool drift_grpc_call_done(drift_grpc_call *c);
/* Asks for fn(arg), once, when the call ends under its handler (the client
 * cancelled it or its connection went, its deadline passed, the server
 * cancelled it at shutdown), so that a handler waiting on something else
 * (the calls it made) can stop. fn runs on the server's loop thread with
 * the call's lock held: it must be quick and must not use the call. false
 * when the call is already over (fn will not run). fn NULL takes a request
 * back: once this returns, fn is not running and will not run. */
bool drift_grpc_call_on_cancel(drift_grpc_call *c, void (*fn)(void *),
			       void *arg);

#endif /* DRIFT_COMMON_GRPC_SERVER_H */
