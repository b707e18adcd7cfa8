/*
 * drift.v1 served by drift-router: a client pointed at a router uses the
 * cluster as if it were one node.
 *
 * - Search and SearchBatch go to every shard's primary (one peer call per
 *   shard, in parallel, with the caller's remaining deadline) and the
 *   answers are merged into the top k (common/merge.h).
 * - Get, Upsert, UpsertStream and Delete are split by shard
 *   (drift_shard_of_id) and the parts sent in parallel; a whole Upsert
 *   batch is validated (batch size, dimension, NaN/Inf, zero COSINE
 *   vectors, with a node's messages) before any part is sent, and the call
 *   succeeds only when every part does (an I/O failure of one part fails
 *   the call with the others possibly written: retrying is safe, upserts
 *   and deletes are idempotent). Get keeps the request's order.
 * - A part answered "the shard is on another node under a newer map"
 *   makes the router refresh its map and retry the call once.
 * - ListCollections and DescribeCollection answer from the map and the
 *   shards' Describe; CreateCollection, DropCollection and the
 *   other drift.v1.Cluster calls are forwarded to a node (the leader
 *   when the map names one; it forwards metadata changes to the Raft
 *   leader).
 *
 * - Flush sends drift.peer.v1 Flush to every shard's primary in parallel
 *   and succeeds only when every shard's flush does (else the first
 *   failed shard's status: the others may have flushed, and flushing
 *   again is harmless).
 *
 * - WatchShardMap is answered from the map the router follows: the map
 *   now when newer than known_version, then every newer version the
 *   router receives (only `collection`'s shards when it is set, as a node
 *   filters).
 */
#ifndef DRIFT_ROUTER_SERVICE_H
#define DRIFT_ROUTER_SERVICE_H

#include "common/grpc/server.h"
#include "drift/v1/drift.pb-c.h"
#include "router/map.h"

int drift_router_service_register(drift_grpc_server *srv,
				  drift_rmap_follower *f);

/* Before the server's shutdown: open WatchShardMap streams end with
 * UNAVAILABLE (within 0.2 s) instead of holding the grace period. */
void drift_router_service_closing(void);

/* The same work on a request already unpacked (the caller frees it), for
 * a node that forwards a public request it cannot serve alone
 * (node/server/service.c): each answers the call. drift_router_use sets the map
 * they route with (instead of drift_router_service_register). */
void drift_router_use(drift_rmap_follower *f);
void drift_router_search(drift_grpc_call *c, Drift__V1__SearchRequest *req);
void drift_router_search_batch(drift_grpc_call *c,
			       Drift__V1__SearchBatchRequest *req);
void drift_router_get(drift_grpc_call *c, Drift__V1__GetRequest *req);
void drift_router_delete(drift_grpc_call *c, Drift__V1__DeleteRequest *req);
void drift_router_describe(drift_grpc_call *c,
			   Drift__V1__DescribeCollectionRequest *req);
void drift_router_flush(drift_grpc_call *c, Drift__V1__FlushRequest *req);
void drift_router_list(drift_grpc_call *c,
		       Drift__V1__ListCollectionsRequest *req);
/* One UpsertRequest: 0 and *written increased, or the call is finished
 * (with prefix before the message: a stream's position). */
int drift_router_upsert_one(drift_grpc_call *c, Drift__V1__UpsertRequest *req,
			    uint64_t *written, const char *prefix);

#endif /* DRIFT_ROUTER_SERVICE_H */
