/*
 * The cluster metadata: the state that the Raft group replicates.
 *
 * A drift_meta holds the cluster id, the nodes (id, Raft id, gRPC and Raft
 * addresses, state, role), the collections (their configuration) and the
 * placement of every shard (replica node ids, primary first, and which of
 * them are in sync), and a map version bumped by every change. It is a
 * plain value: the Raft state machine (cluster/fsm.h) keeps the current one
 * and replaces it, copy on write, by applying commands; readers hold a
 * reference to an immutable one (drift_meta_ref / drift_meta_unref), so a
 * reader never blocks an apply.
 *
 * Commands are drift.cluster.v1.Command messages (proto/drift/cluster/v1/
 * meta.proto). Applying one is deterministic: the same state and command
 * give the same result on every member, so a command that is not valid in
 * the state (a duplicate node, an unknown collection) changes nothing and
 * returns its error on every member alike. Snapshots are the State message.
 *
 * Replicas. A shard's nodes[0] is its primary; in_sync names the replicas
 * that hold every acknowledged write (the primary always among them), and
 * epoch is the map version that made the primary (its term). SetReplicas
 * changes them only while the shard is at the epoch the caller saw:
 * DRIFT_ECONFLICT otherwise, so a deposed primary changes nothing.
 *
 * Encoded entries (drift_meta_cmd_encode): an 8-byte little-endian length,
 * the Command, then zero bytes up to a multiple of 8 (the Raft library
 * cannot restart from an entry whose length is not one).
 */
#ifndef DRIFT_CLUSTER_META_H
#define DRIFT_CLUSTER_META_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "drift/cluster/v1/meta.pb-c.h"

#define DRIFT_NODE_ID_MAX 64
#define DRIFT_ADDR_MAX 255
/* A shard's replicas in the map: its replication factor (at most
 * DRIFT_PLACEMENT_MAX_RF, 5) and, while it moves, the move's target. */
#define DRIFT_META_MAX_RF 6
#define DRIFT_META_NAME_MAX 64

/* Node states and roles: the drift.v1.NodeState / NodeRole values. */
enum drift_node_state {
	DRIFT_NODE_UP = 0,
	DRIFT_NODE_DOWN = 1,
	DRIFT_NODE_JOINING = 2,
	DRIFT_NODE_LEAVING = 3,
};
enum drift_node_role {
	DRIFT_ROLE_VOTER = 0,
	DRIFT_ROLE_LEADER = 1, /* only in answers; stored roles are the
				* other two */
	DRIFT_ROLE_STANDBY = 2,
};

typedef struct drift_meta_node {
	char id[DRIFT_NODE_ID_MAX + 1];
	uint64_t raft_id;
	char address[DRIFT_ADDR_MAX + 1];
	char raft_address[DRIFT_ADDR_MAX + 1];
	int state;
	int role;
	uint64_t added_version;
} drift_meta_node;

typedef struct drift_meta_shard {
	uint32_t n; /* replicas */
	char nodes[DRIFT_META_MAX_RF][DRIFT_NODE_ID_MAX + 1];
	uint32_t in_sync; /* bit i: nodes[i] holds every write */
	uint64_t epoch;	  /* the version that made nodes[0] primary */
	/* A move in progress: move_to was added to take move_from's place
	 * (move_from "": a missing replica); both "" when none (SetReplicas'
	 * move_from / move_to in meta.proto). */
	char move_from[DRIFT_NODE_ID_MAX + 1];
	char move_to[DRIFT_NODE_ID_MAX + 1];
} drift_meta_shard;

typedef struct drift_meta_collection {
	char name[DRIFT_META_NAME_MAX + 1];
	uint32_t dimension;
	int metric;   /* drift.v1.Metric */
	int wal_sync; /* drift.v1.WalSync */
	uint32_t shards;
	uint32_t replication_factor;
	uint32_t memtable_rows;
	float default_recall;
	uint64_t memory_limit;
	uint64_t created_version;
	/* shards of them. Shared, read-only, by the states that have not
	 * changed this collection since (a change copies them first): two
	 * states' entries with the same shard pointer are the same
	 * collection, unchanged (while both states are referenced). */
	drift_meta_shard *shard;
} drift_meta_collection;

typedef struct drift_meta {
	char cluster_id[DRIFT_NODE_ID_MAX + 1]; /* "" until bootstrapped */
	uint64_t version;
	uint32_t max_voters;
	drift_meta_node *nodes; /* in the order they were added */
	size_t n_nodes;
	drift_meta_collection *cols; /* sorted by name */
	size_t n_cols;
} drift_meta;

/* A new empty state (version 0, no cluster id) with one reference. */
int drift_meta_new(drift_meta **out);

/* A deep copy with one reference. */
int drift_meta_clone(const drift_meta *m, drift_meta **out);

/* Reference counting: the last unref frees. NULL is ignored. */
drift_meta *drift_meta_ref(drift_meta *m);
void drift_meta_unref(drift_meta *m);

/* Applies a command in place. 0 (the version went up by one) or the
 * command's error with a message (the state is unchanged only if the
 * caller applies to a clone and keeps the original on failure, which is
 * what cluster/fsm.c does): DRIFT_EEXIST, DRIFT_ENOENT, DRIFT_EINVAL,
 * DRIFT_EBUSY (a node that still holds shards), DRIFT_ENOMEM. */
int drift_meta_apply(drift_meta *m, const Drift__Cluster__V1__Command *cmd,
		     drift_err *err);

/* Serialises a command as a Raft entry (see the top). *buf is allocated
 * with raft_malloc when raft_alloc is set (the Raft library takes it),
 * drift_malloc otherwise. */
int drift_meta_cmd_encode(const Drift__Cluster__V1__Command *cmd,
			  bool raft_alloc, void **buf, size_t *len);

/* Parses an entry: *cmd is the caller's
 * (drift__cluster__v1__command__free_unpacked(cmd, NULL)). DRIFT_ECORRUPT
 * for bytes that are not one. */
int drift_meta_cmd_decode(const void *buf, size_t len,
			  Drift__Cluster__V1__Command **cmd);

/* The state as a snapshot (the State message); *buf from drift_malloc. */
int drift_meta_encode(const drift_meta *m, void **buf, size_t *len);

/* A state from a snapshot, with one reference. DRIFT_ECORRUPT, with a
 * message, for bytes that are not a valid one. */
int drift_meta_decode(const void *buf, size_t len, drift_meta **out,
		      drift_err *err);

/* Lookups: NULL when absent. */
const drift_meta_node *drift_meta_node_find(const drift_meta *m,
					    const char *id);
const drift_meta_node *drift_meta_node_by_raft(const drift_meta *m,
					       uint64_t raft_id);
const drift_meta_collection *drift_meta_col_find(const drift_meta *m,
						 const char *name);

/* Replicas placed on node id (and, in *primaries, how many as primary). */
uint32_t drift_meta_node_load(const drift_meta *m, const char *id,
			      uint32_t *primaries);

/* Places a new collection's shards with drift_placement_plan
 * (cluster/placement.h) over every shard of the state and the nodes that
 * are UP (and not skip[i], when skip is not NULL: one flag per node of
 * m->nodes): for each of `shards` shards, rf distinct nodes (indexes
 * into m->nodes, primary first) on the least loaded. *idx (shards * rf
 * entries) is the caller's (drift_free). DRIFT_EINVAL when fewer than rf
 * nodes can take one. */
int drift_meta_place(const drift_meta *m, const bool *skip, uint32_t shards,
		     uint32_t rf, uint32_t **idx);

/* Voters in the state (role VOTER). */
uint32_t drift_meta_voters(const drift_meta *m);

/* The Raft id of a node id: XXH64 of the id, never 0. */
uint64_t drift_meta_raft_id(const char *node_id);

/* Whether id is a valid node id: [A-Za-z0-9_.-]{1,64}. */
bool drift_meta_node_id_ok(const char *id);

#endif /* DRIFT_CLUSTER_META_H */
