/*
 * Placement: which shard holds an id, and which nodes hold a shard.
 *
 * id -> shard is a hash: drift_shard_of_id(id, shards). It is the hash the
 * node has always used (node/engine/collection.c, XXH3-64 of the id's 8
 * little-endian bytes with seed 0x5eedc011ec7105, modulo the shard count),
 * so data directories written before the cluster existed still open. The
 * shard count is fixed when a collection is created; the values are pinned
 * by tests/unit/test_placement.c and must never change.
 *
 * shard -> nodes is a placement table the Raft leader computes with
 * drift_placement_plan and stores in the state machine: every replica's
 * place is explicit, so every change is an explicit move the replication
 * code carries out and the map records. A hash ring or rendezvous hashing
 * would let every process compute placement alone, but with the few
 * shards a cluster holds (64..4096) their most-loaded node is 1.2..2x the
 * mean; docs/placement.md gives the measurement (tests/bench/
 * placement_bench.c) behind the choice.
 *
 * The plan is deterministic: the same input gives the same moves in every
 * process and version, whatever the order of nodes[] (a tie of load is
 * broken by a hash of the node id and the shard index, so that a shard's
 * partners differ from shard to shard, then by id in strcmp order), so a
 * leader and a test agree.
 */
#ifndef DRIFT_CLUSTER_PLACEMENT_H
#define DRIFT_CLUSTER_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The shard (0..shards-1) that holds id; shards > 0. */
uint32_t drift_shard_of_id(uint64_t id, uint32_t shards);

/* Whether the reads of a shard with `replicas` replicas, in a collection
 * of replication factor rf, may go to its in-sync replicas (node/replica/
 * reads.c has why): at least 2, and at most the writes' majority of rf
 * plus one (so any majority holds the primary or the replica read). */
bool drift_placement_reads_spread(uint32_t replicas, uint32_t rf);

/* The most replicas a shard may have. */
#define DRIFT_PLACEMENT_MAX_RF 5

/* A node of the cluster. accepts is false for a node that is leaving or
 * down: the plan moves every replica off it and places none on it. */
struct drift_placement_node {
	const char *id; /* unique, non-NULL */
	bool accepts;
};

/* One shard's replicas, primary first. n = 0 for a new shard. The plan
 * rewrites nodes[0..n-1] and n (= rf afterwards); every entry it writes
 * points to the id string of the drift_placement_node it names, so those
 * strings must outlive the caller's use of shards[]. */
struct drift_placement_shard {
	uint32_t rf; /* replication factor, 1..DRIFT_PLACEMENT_MAX_RF */
	uint32_t n;  /* replicas held now, 0..DRIFT_PLACEMENT_MAX_RF */
	const char *nodes[DRIFT_PLACEMENT_MAX_RF];
};

/* One replica to copy and drop: shard is an index into shards[]. from NULL:
 * a new replica on `to`; to NULL: a surplus replica on `from` is dropped
 * (the shard held more than rf). The id strings are those of nodes[]. */
struct drift_placement_move {
	uint32_t shard;
	const char *from;
	const char *to;
};

/*
 * Plans the moves that bring shards[] to a valid placement over nodes[] and
 * applies them to shards[]. Pass every shard of the cluster (all
 * collections) so that loads are counted over all of them. In order:
 *
 *  1. a shard with more than rf replicas drops the surplus (replicas on
 *     non-accepting nodes first, then those on the most loaded nodes);
 *  2. every replica on a non-accepting node moves to the least-loaded
 *     accepting node the shard is not on; a non-accepting primary first
 *     hands the role to the shard's accepting replica with fewest
 *     primaries (which has the data), and only with none left does the
 *     newcomer become primary;
 *  3. missing replicas go to the least-loaded accepting nodes the shard is
 *     not on; a new primary goes to the node with fewest primaries among
 *     the least loaded;
 *  4. when rebalance is true, replicas move from the most loaded to the
 *     least loaded accepting node until every accepting node holds
 *     floor(mean) or ceil(mean) replicas: each move brings one node closer,
 *     so the number of moves is the least that reaches that bound (the
 *     larger of the replicas above ceil(mean) and the replicas missing
 *     below floor(mean)). It prefers a replica this plan placed itself
 *     (re-aimed, it is still one move: a leaving node's replicas go
 *     straight to where they end up), then one that is not primary;
 *  5. when rebalance is true, primaries are balanced to floor..ceil of the
 *     mean primary count per accepting node where the replica sets allow it,
 *     by reordering nodes[] within shards (a leadership change, no data
 *     moves: these are not reported as moves), along shortest chains.
 *
 * Steps 1-3 are repairs and always run; with rebalance false a valid map
 * stays as it is.
 *
 * Returns 0 and writes *moves (an array of *n_moves, in the order given,
 * NULL when there are none; release it with drift_free(), which is free()
 * unless a test installed another allocator), or:
 *   DRIFT_EINVAL  a node id NULL or repeated; a shard with rf 0 or above
 *                 DRIFT_PLACEMENT_MAX_RF, rf above the accepting nodes,
 *                 n above DRIFT_PLACEMENT_MAX_RF, a replica on a node not in
 *                 nodes[] or twice on one node; more than UINT32_MAX shards
 *                 or INT32_MAX nodes;
 *   DRIFT_ENOMEM.
 * On error nothing is written: shards[], *moves and *n_moves are unchanged.
 */
int drift_placement_plan(const struct drift_placement_node *nodes,
			 size_t n_nodes, struct drift_placement_shard *shards,
			 size_t n_shards, bool rebalance,
			 struct drift_placement_move **moves, size_t *n_moves);

#endif /* DRIFT_CLUSTER_PLACEMENT_H */
