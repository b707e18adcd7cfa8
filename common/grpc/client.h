/*
 * The gRPC client: calls to one peer ("host:port") over a small pool of
 * HTTP/2 connections, from any thread.
 *
 * A client owns a libuv loop on a thread of its own; every connection and
 * nghttp2 session lives there. Callers block (drift_grpc_client_unary, the
 * drift_grpc_ccall_* functions) or get a callback on the client's loop
 * thread (drift_grpc_client_unary_async), so the client serves plain
 * threads and code that runs on a libuv loop of its own alike.
 *
 * Connections are made on first use and again after a failure, with
 * exponential backoff (backoff_min doubling up to backoff_max, with
 * jitter): while a connection is backing off, new calls on it fail at once
 * with UNAVAILABLE ("fail fast", gRPC's default) unless wait_for_ready is
 * set, then they wait for the next attempt within their deadline. Calls
 * spread over the pool's connections round-robin.
 *
 * Every attempt resolves the host again (getaddrinfo on libuv's thread
 * pool, within connect_timeout), so a peer whose name now points elsewhere
 * (a Kubernetes pod restarted with a new IP) is found at its new address;
 * a name that does not resolve fails the attempt like a refused
 * connection (UNAVAILABLE, then backoff).
 *
 * Keepalive: a connection that has received nothing for keepalive_ns
 * (open calls or not) is sent an HTTP/2 PING; one not acknowledged within
 * keepalive_timeout_ns closes the connection (its calls fail UNAVAILABLE,
 * the next call connects again), so a peer that vanished without a reset
 * (a deleted pod, a cut network) is noticed in seconds, not at the TCP
 * timeout. Drift's servers accept pings at any rate; a stock gRPC server
 * counts pings without calls against a limit (5 minutes apart by
 * default), so a client of one sets keepalive_ns to UINT64_MAX (off).
 *
 * Statuses: what the server sent in grpc-status / grpc-message; when it
 * sent none, the HTTP status is mapped as gRPC specifies (404
 * UNIMPLEMENTED, 429/502/503/504 UNAVAILABLE, ...); a lost connection is
 * UNAVAILABLE, a passed deadline DEADLINE_EXCEEDED, drift_grpc_ccall_cancel
 * CANCELLED.
 */
#ifndef DRIFT_COMMON_GRPC_CLIENT_H
#define DRIFT_COMMON_GRPC_CLIENT_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/grpc/status.h"
#include "common/grpc/wire.h"

typedef struct drift_grpc_client drift_grpc_client;
typedef struct drift_grpc_ccall drift_grpc_ccall;

typedef struct drift_grpc_client_opts {
	unsigned connections;	     /* 0: 1 */
	size_t max_recv_msg;	     /* 0: 64 MiB */
	uint64_t connect_timeout_ns; /* 0: 5 s */
	uint64_t backoff_min_ns;     /* 0: 100 ms */
	uint64_t backoff_max_ns;     /* 0: 5 s */
	bool wait_for_ready;
	uint32_t stream_window;	       /* 0: 4 MiB */
	uint32_t conn_window;	       /* 0: 16 MiB */
	uint64_t keepalive_ns;	       /* 0: 10 s; UINT64_MAX: no pings */
	uint64_t keepalive_timeout_ns; /* 0: 5 s */
} drift_grpc_client_opts;

/* addr is "host:port" or "[v6]:port" (DRIFT_EINVAL otherwise; the host is
 * resolved at each connection attempt). opts may be NULL. */
int drift_grpc_client_new(const char *addr, const drift_grpc_client_opts *opts,
			  drift_grpc_client **out, drift_err *err);
/* Cancels every call still running (their callers get CANCELLED), closes
 * the connections, stops the loop. Calls must not be used afterwards. */
void drift_grpc_client_free(drift_grpc_client *c);

/* One request, one response, blocking. timeout_ns 0: none. Returns 0 when
 * the status is OK (*resp is the caller's), else the DRIFT_E* code of the
 * status (drift_grpc_err_from_code); st (may be NULL) gets the status. */
int drift_grpc_client_unary(drift_grpc_client *c, const char *path,
			    const void *req, size_t len, uint64_t timeout_ns,
			    drift_grpc_msg **resp, drift_grpc_status *st);

/* The same with protobuf-c messages: *resp is unpacked with desc (free with
 * protobuf_c_message_free_unpacked). A response that does not unpack is
 * INTERNAL. */
int drift_grpc_client_unary_pb(drift_grpc_client *c, const char *path,
			       const ProtobufCMessage *req,
			       const ProtobufCMessageDescriptor *desc,
			       uint64_t timeout_ns, ProtobufCMessage **resp,
			       drift_grpc_status *st);

/* Completion of an asynchronous unary call, on the client's loop thread:
 * resp (NULL unless the status is OK) belongs to the callback. */
typedef void (*drift_grpc_unary_cb)(void *arg, const drift_grpc_status *st,
				    drift_grpc_msg *resp);
/* Starts a unary call and returns at once. 0 (cb runs exactly once) or an
 * error (cb never runs). */
int drift_grpc_client_unary_async(drift_grpc_client *c, const char *path,
				  const void *req, size_t len,
				  uint64_t timeout_ns, drift_grpc_unary_cb cb,
				  void *arg);

/* The same, and *call is a handle on it for the caller: cancel it with
 * drift_grpc_ccall_cancel (RST_STREAM CANCEL if it is on the wire; cb gets
 * CANCELLED unless its status came first), let go of it with
 * drift_grpc_ccall_release, once, whether cb has run or not (it may run
 * before this returns). cb runs exactly once after a 0 return (then *call
 * is set), never after an error. */
int drift_grpc_client_unary_start(drift_grpc_client *c, const char *path,
				  const void *req, size_t len,
				  uint64_t timeout_ns, drift_grpc_unary_cb cb,
				  void *arg, drift_grpc_ccall **call);
/* Drops the caller's handle of an asynchronous call without waiting; the
 * call goes on (and its callback runs) unless it was cancelled. */
void drift_grpc_ccall_release(drift_grpc_ccall *call);

/* ---- Streaming calls (any kind), blocking ---- */

/* Starts a call. timeout_ns 0: none. headers: NULL or pairs of extra
 * request metadata (name, value, ..., NULL). 0 or DRIFT_ENOMEM. */
int drift_grpc_ccall_start(drift_grpc_client *c, const char *path,
			   uint64_t timeout_ns, const char *const *headers,
			   drift_grpc_ccall **out);
/* Sends one request message, waiting while the server is slow to read. 0,
 * or negative once the call is over (finish tells why). */
int drift_grpc_ccall_send(drift_grpc_ccall *call, const void *data, size_t len);
/* The client sends no more (END_STREAM). */
int drift_grpc_ccall_close_send(drift_grpc_ccall *call);
/* The next response: 1 (*m is the caller's), 0 (no more: call finish), or
 * negative (the call failed: call finish for the status). */
int drift_grpc_ccall_recv(drift_grpc_ccall *call, drift_grpc_msg **m);
/* Asks the server to stop (RST_STREAM CANCEL); the status becomes
 * CANCELLED unless one already arrived. Thread-safe. */
void drift_grpc_ccall_cancel(drift_grpc_ccall *call);
/* Waits for the status, frees the call (responses not received are
 * dropped; a call still running is cancelled first). Returns the DRIFT_E*
 * code of the status; st may be NULL. */
int drift_grpc_ccall_finish(drift_grpc_ccall *call, drift_grpc_status *st);

#endif /* DRIFT_COMMON_GRPC_CLIENT_H */
