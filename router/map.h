/*
 * The router's shard map: the one piece of state drift-router holds,
 * followed from the cluster (SPEC 4b: WatchShardMap).
 *
 * A follower thread opens WatchShardMap(known_version) at the listed nodes
 * in turn (any member serves it from its own state) and keeps the newest
 * map it receives; when a stream ends or a node does not answer it moves
 * to the next address after a short back-off. A caller that met a stale
 * answer (a node no longer holds a shard) asks for a refresh, which fetches
 * ShardMap from a node at once.
 *
 * A map is immutable and reference counted: drift_rmap_get hands out the
 * current one, and a newer one replaces it for later callers.
 *
 * Threads: every function is thread-safe.
 */
#ifndef DRIFT_ROUTER_MAP_H
#define DRIFT_ROUTER_MAP_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"
#include "common/grpc/client.h"
#include "drift/v1/drift.pb-c.h"

typedef struct drift_rmap drift_rmap; /* one map version */
typedef struct drift_rmap_follower drift_rmap_follower;

/* A collection of the map: its configuration and, per shard, the gRPC
 * address of its primary ("" when the map names no node with an
 * address). */
typedef struct drift_rmap_collection {
	const Drift__V1__CollectionInfo *info;
	const char **primary; /* info->shards entries */
	const char **primary_id;
	/* Per shard its assignment in the map (NULL: none). */
	const Drift__V1__ShardAssignment **assignment;
} drift_rmap_collection;

/* The address a read of c's shard s goes to: its in-sync replicas in
 * turn (pick: a counter the caller moves on) when the shard spreads its
 * reads (drift_placement_reads_spread), else its primary; *replica:
 * whether that is not the primary (the read is then sent with replica
 * set). */
const char *drift_rmap_reader(const drift_rmap *m,
			      const drift_rmap_collection *c, uint32_t s,
			      unsigned pick, bool *replica);

/* Starts following the map through the nodes of join ("host:port,...").
 * 0 or an error with a message. */
int drift_rmap_follow(const char *join, drift_rmap_follower **out,
		      drift_err *err);
void drift_rmap_stop(drift_rmap_follower *f);

/* Waits until a map is held (or timeout_ns passes): 0 or DRIFT_ETIMEDOUT. */
int drift_rmap_wait(drift_rmap_follower *f, uint64_t timeout_ns);

/* A reference to the current map once its version is above `known`
 * (waiting at most timeout_ns for a newer one), else NULL (for
 * WatchShardMap served by a router). */
drift_rmap *drift_rmap_wait_newer(drift_rmap_follower *f, uint64_t known,
				  uint64_t timeout_ns);

/* The current map (a reference: drift_rmap_unref), NULL before the first. */
drift_rmap *drift_rmap_get(drift_rmap_follower *f);
void drift_rmap_unref(drift_rmap *m);

/* Fetches the map from a node now when the current one is older than
 * newer_than + 1 (0: whatever it is); bounded by timeout_ns. */
void drift_rmap_refresh(drift_rmap_follower *f, uint64_t newer_than,
			uint64_t timeout_ns);

uint64_t drift_rmap_version(const drift_rmap *m);
const Drift__V1__ShardMapResponse *drift_rmap_pb(const drift_rmap *m);

/* The collection, or NULL. */
const drift_rmap_collection *drift_rmap_find(const drift_rmap *m,
					     const char *name);

/* A shared client for a gRPC address (kept until the follower stops). */
int drift_rmap_client(drift_rmap_follower *f, const char *address,
		      drift_grpc_client **out, drift_err *err);

/* A node to forward a call to: the leader's address when known, else
 * the first node of the map, else the first --join address. */
void drift_rmap_any_node(drift_rmap_follower *f, char *out, size_t cap);

#endif /* DRIFT_ROUTER_MAP_H */
