/*
 * Replication of a node's shards (issue 19): the primary's write path,
 * what a replica does with the primary's records, the catch-up of a
 * replica that missed writes, and the leader's promotion of a replica when
 * a primary is gone.
 *
 * The map (cluster/meta.h) names each shard's replicas, primary first, the
 * in-sync set and the epoch (the map version that made the primary). The
 * contract, after PacificA (Lin et al., "PacificA: Replication in
 * Log-Based Distributed Storage Systems", MSR-TR-2008-25): every replica
 * in the in-sync set holds every acknowledged write.
 *
 * Write (the primary; drift_replica_upsert / _delete). Refused with
 * UNAVAILABLE while fewer than a majority of the shard's replicas are in
 * sync. The primary writes its WAL record (ordered by its sequence
 * number; durable per wal_sync), sends it to the other in-sync replicas
 * (drift.peer.v1.Replica/Replicate, in parallel) and acknowledges once
 * they all have it durable. A replica that fails is first dropped from the
 * in-sync set through Raft; the write is acknowledged only if the ones
 * left are still a majority, else it fails (UNAVAILABLE; it may or may not
 * have been applied, like any failed write).
 *
 * Replica (drift_replica_apply). Applies the records under the primary's
 * sequence numbers, in its order (node/engine/shard.h), and refuses an
 * epoch older than the newest it has seen (its fence, node/replica/
 * epochs.h) with ABORTED: a deposed primary cannot acknowledge anything.
 *
 * Failover (drift_replica_failover, run by the metadata leader after it
 * marks a node DOWN). For each shard whose primary is on a DOWN node, the
 * in-sync replicas on nodes that are UP are asked for their position and
 * fenced at the next epoch (drift.peer.v1.Replica/State); the one with the
 * longest log becomes the primary in a new epoch (SetReplicas), with the
 * ones as long in the in-sync set. Since every in-sync replica holds every
 * acknowledged write, nothing acknowledged is lost.
 *
 * Catch-up (a thread on every node, for the shards it is primary of).
 * A replica out of the in-sync set whose node is UP is asked for its
 * position; when its log is a prefix of the primary's (epochs.h) and the
 * primary still holds the records after it, they are sent (in batches,
 * the log held from retirement meanwhile); for the last of them the
 * shard's writes are held back for a moment, the replica is added to the
 * in-sync set through Raft, and writes resume. A replica that cannot
 * catch up from the log (its log went its own way, or the tail was
 * retired) needs a full copy of the shard: logged, and left out of the
 * in-sync set.
 *
 * Repair (repair.c). A collection this node holds that opened damaged is
 * taken out of the in-sync sets through the leader (a primary hands over
 * first), dropped here and made again empty; the primaries' catch-up then
 * copies it back. Refused while a shard has no other in-sync replica.
 *
 * Threads: every function is thread-safe.
 */
#ifndef DRIFT_NODE_REPLICA_H
#define DRIFT_NODE_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/grpc/server.h"
#include "node/engine/collection.h"
#include "node/server/cluster.h"
#include "router/map.h"

typedef struct drift_replica drift_replica;

/* Starts the catch-up thread. peers: the clients of the other nodes. */
int drift_replica_open(drift_cm *cm, drift_node_cluster *nc,
		       drift_rmap_follower *peers, drift_replica **out,
		       drift_err *err);
/* Stops the thread and frees. NULL is ignored. */
void drift_replica_close(drift_replica *r);

/* A primary's writes of col (acquired), ids split by shard: every shard's
 * part replicated as above. 0 or an error with a message (DRIFT_EUNAVAIL
 * for too few replicas in sync, DRIFT_ESTALE when this node is not the
 * primary of a shard, and the engine's errors). */
int drift_replica_upsert(drift_replica *r, drift_collection *col,
			 const uint64_t *ids, const float *vecs, size_t n,
			 drift_err *err);
int drift_replica_delete(drift_replica *r, drift_collection *col,
			 const uint64_t *ids, size_t n, size_t *deleted,
			 drift_err *err);

/* The most bytes per second a full copy sends (0: no limit; --copy-rate),
 * for every copy this process makes from then on. */
void drift_replica_copy_rate(uint64_t bytes_per_s);

/* How long a node is DOWN before the leader copies its replicas to the
 * nodes that are up (--replace-down-after; 0: never), for every leader
 * this process is from then on. */
void drift_replica_replace_after(uint64_t ns);

/* Whether a leader rebalances when a node it had not seen UP is UP (a
 * node added; --rebalance-on-join, off by default). */
void drift_replica_rebalance_on_join(bool on);

/* The leader's failover pass over the current map (see above), then its
 * rebalance for nodes that joined and its replacement of nodes down that
 * long. */
void drift_replica_failover(drift_replica *r);

/* The leader's Rebalance (moves.c): plans the moves that even the
 * replicas out over the nodes that are UP and runs them one after
 * another, in the background, or before returning with wait. *planned
 * gets their count. DRIFT_EBUSY while one runs. */
int drift_replica_rebalance(drift_replica *r, bool wait, uint32_t *planned,
			    drift_err *err);

/* RemoveNode's first step (the leader): marks node id LEAVING and moves
 * every replica it holds to the other nodes (one at a time, as Rebalance
 * does). 0 when it holds none any more; DRIFT_ESTALE when the others
 * cannot hold the replication factors, or a shard's only replica is on it
 * and it is down; the node's state is put back on failure. */
int drift_replica_evacuate(drift_replica *r, const char *id, drift_err *err);

/* How far the move of shard `shard` of collection (name, created) to
 * node `to` has come: bytes sent of its copy and the whole (both 0 when
 * the shard's primary runs no catch-up of it, or cannot be asked within
 * a second). From this node's catch-ups when it is the primary, else
 * asked from the primary (Replica/Progress). */
void drift_replica_move_progress(drift_replica *r, const char *name,
				 uint64_t created, uint32_t shard,
				 const char *to, uint64_t *done,
				 uint64_t *total);

/* Whether this node's copy of collection name, found damaged, is being
 * rebuilt from the other replicas (repair.c: every shard it is in sync
 * for has another in-sync replica on a node that is up): its requests
 * then answer UNAVAILABLE, to be retried, rather than DATA_LOSS. */
bool drift_replica_repairable(drift_replica *r, const char *name);

/* Reads from in-sync replicas (reads.c; which shards spread them:
 * drift_placement_reads_spread). Before this node serves a read of col's shard
 * as a replica (a caller that routed with map `version`): 0 when it is the
 * shard's primary, or an in-sync replica that now holds every write
 * acknowledged before the call (asked from the primary); DRIFT_ESTALE with a
 * message otherwise (the caller reads from the primary). */
int drift_replica_read_at(drift_replica *r, drift_collection *col,
			  uint32_t shard, uint64_t version, drift_err *err);

/* Registers drift.peer.v1.Replica (Replicate, State, SetReplicas, Install,
 * Progress, Repair, ReadIndex)
 * and drift.v1.Cluster/Rebalance. */
int drift_replica_register(drift_replica *r, drift_grpc_server *srv);

#endif /* DRIFT_NODE_REPLICA_H */
