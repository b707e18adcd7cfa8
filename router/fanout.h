/*
 * Parallel unary calls to the nodes: one part per shard, all started at
 * once on the shared clients of the map follower, waited for together
 * (each with the caller's remaining deadline).
 */
#ifndef DRIFT_ROUTER_FANOUT_H
#define DRIFT_ROUTER_FANOUT_H

#include <stddef.h>
#include <stdint.h>

#include "common/grpc/client.h"
#include "common/grpc/server.h"
#include "common/grpc/status.h"
#include "router/map.h"

typedef struct drift_fanout_part {
	const char *address; /* the node */
	const char *path;    /* "/drift.peer.v1.Shard/Search" ... */
	uint8_t *req;	     /* packed request (the caller's) */
	size_t len;
	/* Results: */
	drift_grpc_status st;
	drift_grpc_msg *resp; /* OK only; drift_fanout_free */
} drift_fanout_part;

/* Runs every part; returns when all have answered (or failed). */
void drift_fanout_run(drift_rmap_follower *f, drift_fanout_part *parts,
		      size_t n, uint64_t timeout_ns);

/* The same for a call being served (caller, may be NULL): when the caller
 * is over before every part has answered (its client cancelled it, or its
 * deadline passed), the parts still running are cancelled (RST_STREAM
 * CANCEL to their nodes; their status becomes CANCELLED) and this returns
 * without waiting for the nodes. The caller is looked at every 5 ms. */
void drift_fanout_run_for(drift_rmap_follower *f, drift_grpc_call *caller,
			  drift_fanout_part *parts, size_t n,
			  uint64_t timeout_ns);

/* The same without waiting: starts every part and returns 0 (or
 * DRIFT_ENOMEM, then nothing started and done never runs); done(arg) runs
 * once every part has answered or failed, on a client's loop thread (or on
 * this one when none could start), and must not block. parts must live
 * until then. Never blocks itself: for a server's fast handler. */
typedef void (*drift_fanout_done)(void *arg);
int drift_fanout_start(drift_rmap_follower *f, drift_grpc_call *caller,
		       drift_fanout_part *parts, size_t n, uint64_t timeout_ns,
		       drift_fanout_done done, void *arg);

/* Frees the responses (not the requests). */
void drift_fanout_free(drift_fanout_part *parts, size_t n);

/* The first failed part (in order), or NULL when every part succeeded. */
const drift_fanout_part *drift_fanout_failed(const drift_fanout_part *parts,
					     size_t n);

#endif /* DRIFT_ROUTER_FANOUT_H */
