/*
 * A node's part in the cluster: its identity, its member of the Raft
 * metadata group (cluster/member.h), joining or bootstrapping, and the
 * watcher that applies the metadata to the local CollectionManager.
 *
 * Identity. The node id is --node-id, or one made at first start
 * ("node-" and 12 random hex digits), kept in <data_dir>/node.id; a data
 * directory whose node.id names another node than --node-id refuses to
 * start. The Raft log and snapshots live in <data_dir>/raft.
 *
 * Start. An empty Raft directory without a join list bootstraps a cluster
 * of one: this node becomes the leader, gives the cluster a random id and
 * adopts the collections already in its data directory (a node of before
 * the cluster keeps its data). An empty one with a join list asks those
 * members, in turn, to add it (they forward to the leader) and waits until
 * the state names it. A Raft directory that holds a member restarts it,
 * and the join list is ignored.
 *
 * The watcher. On every new map version, every collection with a shard
 * placed on this node is created locally (its collection.conf records the
 * map version that created it), and a local collection is dropped once the
 * map has passed that version without it (a node that lags behind never
 * deletes data the map still gives it). One the map still has but no
 * longer places here (its replicas moved away) is dropped only after 10 s
 * of being so on a node caught up with the leader: routers on an older map
 * still find it, and a restart, which replays the Raft log through states
 * older than the moves that placed shards here, deletes nothing. A
 * collection made before the cluster (version 0) is only ever adopted.
 * A new map is worked through against the one applied before it: only
 * the collections whose entries changed (cluster/meta.h shares an
 * unchanged one's placements), those waiting out the 10 s and those whose
 * open failed, so a change costs the same with 10 or 10,000 collections.
 * The first map, one after a list ran out of room or while a local
 * collection is newer than the map (a restart replaying the Raft log),
 * and the map every 30 s are checked against every collection.
 *
 * Threads: every function is thread-safe.
 */
#ifndef DRIFT_NODE_CLUSTER_H
#define DRIFT_NODE_CLUSTER_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/member.h"
#include "common/err.h"
#include "common/grpc/client.h"
#include "node/engine/collection.h"

typedef struct drift_node_cluster drift_node_cluster;

typedef struct drift_node_cluster_opts {
	const char *data_dir;
	const char *node_id;	     /* NULL or "": the kept or a new one */
	const char *address;	     /* gRPC address others dial */
	const char *raft_bind;	     /* --raft-listen */
	const char *raft_address;    /* Raft address others dial */
	const char *join;	     /* "host:port,..." or NULL */
	unsigned max_voters;	     /* 3 or 5 */
	unsigned election_ms;	     /* 0: cluster/member.h's default */
	unsigned snapshot_threshold; /* 0: the default */
	drift_cm *cm;
} drift_node_cluster_opts;

/* Reads or makes the identity and starts the Raft member. */
int drift_node_cluster_open(const drift_node_cluster_opts *opts,
			    drift_node_cluster **out, drift_err *err);

/* Once the gRPC server listens: bootstraps (and adopts the local
 * collections) or joins, then starts the watcher. Blocks until this node
 * is a member (at most timeout_ns for a join). */
int drift_node_cluster_start(drift_node_cluster *nc, uint64_t timeout_ns,
			     drift_err *err);

/* Stops the watcher and the member (a leader hands over first). The
 * state stays readable and metadata changes answer UNAVAILABLE, so the
 * gRPC handlers still in flight finish cleanly. Idempotent. */
void drift_node_cluster_stop(drift_node_cluster *nc);

/* Whether drift_node_cluster_stop has begun: the node is shutting down
 * (open WatchShardMap streams end, so the server's grace is not spent
 * waiting for them). */
bool drift_node_cluster_closing(drift_node_cluster *nc);

/* Stops if needed and frees (after the server has shut down). */
void drift_node_cluster_close(drift_node_cluster *nc);

const char *drift_node_cluster_node_id(const drift_node_cluster *nc);
const char *drift_node_cluster_address(const drift_node_cluster *nc);
const char *drift_node_cluster_raft_address(const drift_node_cluster *nc);
drift_member *drift_node_cluster_member(drift_node_cluster *nc);
drift_cm *drift_node_cluster_cm(drift_node_cluster *nc);

/* A shared client for a peer's gRPC address (kept until close). */
int drift_node_cluster_client(drift_node_cluster *nc, const char *address,
			      drift_grpc_client **out, drift_err *err);

/* Whether the node at address answers its gRPC health check within
 * timeout_ns. (The leader probes every node every 500 ms and marks one
 * that has not answered for 1.5 s DOWN in the state, UP again when it
 * answers: no new shard is placed on a DOWN node.) */
bool drift_node_cluster_alive(drift_node_cluster *nc, const char *address,
			      uint64_t timeout_ns);

/* fn(arg) runs after every probe pass of the leader's (every 500 ms, on
 * the prober's thread): the replication's failover (node/replica/
 * replica.h). NULL: none. Set it before the cluster starts or clear it
 * before what arg points to goes. */
void drift_node_cluster_on_probe(drift_node_cluster *nc, void (*fn)(void *),
				 void *arg);

/* Moving every replica off node id before RemoveNode takes it out of the
 * map (node/replica/replica.h's drift_replica_evacuate, set by the
 * service): 0 or why it cannot. Without a function set: 0. */
typedef int (*drift_node_cluster_evacuate_fn)(void *arg, const char *id,
					      drift_err *err);
void drift_node_cluster_on_evacuate(drift_node_cluster *nc,
				    drift_node_cluster_evacuate_fn fn,
				    void *arg);
int drift_node_cluster_evacuate(drift_node_cluster *nc, const char *id,
				drift_err *err);

/* How far the move of a shard's replica to node `to` has come, for Status
 * and ShardMap (node/replica/replica.h's drift_replica_move_progress, set
 * by the service): bytes sent and the whole; both 0 without a function
 * or when unknown. */
typedef void (*drift_node_cluster_progress_fn)(void *arg, const char *name,
					       uint64_t created, uint32_t shard,
					       const char *to, uint64_t *done,
					       uint64_t *total);
void drift_node_cluster_on_progress(drift_node_cluster *nc,
				    drift_node_cluster_progress_fn fn,
				    void *arg);
void drift_node_cluster_progress(drift_node_cluster *nc, const char *name,
				 uint64_t created, uint32_t shard,
				 const char *to, uint64_t *done,
				 uint64_t *total);

/* Waits until the watcher has applied map version `version` locally.
 * 0 or DRIFT_ETIMEDOUT. */
int drift_node_cluster_wait_applied(drift_node_cluster *nc, uint64_t version,
				    uint64_t timeout_ns);

/* Why this node could not open collection `name` of map version
 * `version` (its created_version) that the map gives it: the error (and
 * *err) of its last attempt, or 0 (opened, not tried yet, or not given). */
int drift_node_cluster_open_error(drift_node_cluster *nc, const char *name,
				  uint64_t version, drift_err *err);

/* A collection's configuration from the map (for the node's own checks):
 * 0 and *cfg, or DRIFT_ENOENT. */
int drift_node_cluster_config(drift_node_cluster *nc, const char *name,
			      drift_collection_config *cfg);

#endif /* DRIFT_NODE_CLUSTER_H */
