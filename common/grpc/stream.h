/*
 * The core of one call, shared by the server (a handler on a worker thread
 * talks to the loop thread) and the client (a caller thread talks to the
 * client's loop thread). Internal to common/grpc.
 *
 * Two queues cross the threads under one mutex:
 *   in   whole messages from the peer, pushed by the loop, popped by the
 *        user (handler or caller);
 *   out  framed bytes for the peer (prefix included), pushed by the user,
 *        read by the loop's nghttp2 data provider.
 * The user blocks on the condition variable: for a message, for room in out
 * (back-pressure: a peer that does not read stops a sender at out_limit
 * bytes), until the call is over. The loop never blocks: it learns of user
 * actions through `wake`, which the owner implements by queueing the stream
 * and waking its loop (uv_async_send).
 *
 * Flow control: bytes of DATA are given back to the peer's window
 * (nghttp2_session_consume) as soon as they arrive while the in queue holds
 * fewer than in_limit bytes; beyond that they are held back (`held`) until
 * the user pops, so a slow handler slows its sender instead of buffering
 * without bound.
 *
 * Lifetime: a reference count; the loop holds one while the HTTP/2 stream
 * exists, the user one until it lets go, the owner's wake list one while the
 * stream is queued there. The last release frees it through `destroy`.
 */
#ifndef DRIFT_COMMON_GRPC_STREAM_H
#define DRIFT_COMMON_GRPC_STREAM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/grpc/wire.h"

typedef struct drift_grpc_stream drift_grpc_stream;

struct drift_grpc_stream {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	atomic_int refs;
	void (*wake)(drift_grpc_stream *s); /* called with mu not held */
	void (*destroy)(drift_grpc_stream *s);

	/* Peer -> user. */
	drift_grpc_msg *in_head, *in_tail;
	size_t in_bytes;   /* queued, prefixes included */
	size_t in_limit;   /* hold window updates beyond this */
	size_t held;	   /* received bytes not yet given back */
	size_t to_consume; /* popped bytes the loop must give back */
	bool in_end;	   /* the peer sent END_STREAM */
	int err;	   /* 0, or why the call is over for the user */

	/* User -> peer. */
	drift_grpc_msg *out_head, *out_tail; /* framed */
	size_t out_off;			     /* bytes of out_head sent */
	size_t out_bytes;		     /* queued and not yet sent */
	size_t out_limit;
	bool out_end;  /* no more messages will be pushed */
	bool out_hold; /* set before use: a push does not wake the owner
			* (one response, which goes out with the status) */

	/* Owner's wake list (owner's lock). */
	bool queued;
	drift_grpc_stream *wake_next;
};

void drift_grpc_stream_init(drift_grpc_stream *s, size_t in_limit,
			    size_t out_limit);
/* Frees the queued messages and the mutex; called by destroy. */
void drift_grpc_stream_fini(drift_grpc_stream *s);

void drift_grpc_stream_ref(drift_grpc_stream *s);
void drift_grpc_stream_unref(drift_grpc_stream *s);

/* Loop side. Takes ownership of m. Returns the bytes (len + prefix) that
 * may be given back to the peer now. */
void drift_grpc_stream_push_in(drift_grpc_stream *s, drift_grpc_msg *m);
/* Loop side: n DATA bytes arrived; returns how many to give back now (the
 * rest is held until the user pops). */
size_t drift_grpc_stream_arrived(drift_grpc_stream *s, size_t n);
/* Loop side: bytes the user's pops released, to give back now. */
size_t drift_grpc_stream_take_consumed(drift_grpc_stream *s);
void drift_grpc_stream_end_in(drift_grpc_stream *s);
/* Loop side: the call is over for the user with err (first one wins);
 * wakes the user. */
void drift_grpc_stream_fail(drift_grpc_stream *s, int err);
/* Loop side: copies up to cap bytes of out into buf. Returns the count;
 * *drained is set when out is empty afterwards and the user ended it. */
size_t drift_grpc_stream_read_out(drift_grpc_stream *s, uint8_t *buf,
				  size_t cap, bool *drained);
/* Loop side, lock held by caller not needed: whether out has bytes or an
 * end not yet read. */
bool drift_grpc_stream_out_ready(drift_grpc_stream *s);

/* User side: waits for a message until deadline (monotonic ns; UINT64_MAX
 * none). 1 (*m is the caller's), 0 (the peer ended its messages), or a
 * negative code: s->err, DRIFT_ETIMEDOUT. */
int drift_grpc_stream_pop_in(drift_grpc_stream *s, uint64_t deadline,
			     drift_grpc_msg **m);
/* User side: queues a framed copy of data, waiting for room. 0 or a
 * negative code (s->err, DRIFT_ETIMEDOUT, DRIFT_ENOMEM, DRIFT_EINVAL after
 * out_end). */
int drift_grpc_stream_push_out(drift_grpc_stream *s, const void *data,
			       size_t len, uint64_t deadline);
/* User side: no more messages; 0 or DRIFT_EINVAL when already ended. */
int drift_grpc_stream_end_out(drift_grpc_stream *s);

/* pthread_cond_timedwait on CLOCK_MONOTONIC until deadline (UINT64_MAX:
 * no deadline). Returns ETIMEDOUT when it passed. */
int drift_grpc_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu,
			 uint64_t deadline);
/* A condition variable that waits on CLOCK_MONOTONIC. */
void drift_grpc_cond_init(pthread_cond_t *cv);

#endif /* DRIFT_COMMON_GRPC_STREAM_H */
