/*
 * The replication module's parts (replica.h is the contract):
 *
 *   replica.c      the per-shard entries, the primary's write path, the
 *                  calls to peers and to the metadata leader
 *   replica_svc.c  drift.peer.v1.Replica's handlers (a replica's side)
 *   catchup.c      the catch-up thread (a primary's side)
 *   copy.c         full copies of a shard (both sides)
 *   failover.c     the leader's promotions
 *   moves.c        the leader's moves of replicas (Rebalance)
 *   repair.c       the rebuilding of this node's damaged copies
 *   reads.c        reads from in-sync replicas (read index)
 *   lag.c          the replication lag metric
 */
#ifndef DRIFT_NODE_REPLICA_INTERNAL_H
#define DRIFT_NODE_REPLICA_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "cluster/meta.h"
#include "drift/peer/v1/replica.pb-c.h"
#include "node/replica/epochs.h"
#include "node/replica/replica.h"

/* A call to a peer, or a wait for one, lasts at most this. */
#define REPL_TIMEOUT_NS 3000000000ull
/* A write's Replicate to a replica: one that does not answer within this
 * is dropped from the in-sync set (a stopped node holds writes back that
 * long). */
#define REPL_WRITE_TIMEOUT_NS 2500000000ull

/* One shard of one collection (name and created_version: a re-created
 * collection is another) that this node holds. */
struct repl_shard {
	struct repl_shard *next;  /* every entry (drift_replica's shards) */
	struct repl_shard *hnext; /* its bucket's (drift_replica's buckets) */
	unsigned refs;		  /* under drift_replica's mu: users now */
	char name[DRIFT_META_NAME_MAX + 1];
	uint64_t created;
	uint32_t shard;
	char *dir; /* the shard's directory (allocated) */
	/* The primary's writes hold it shared; the end of a catch-up holds
	 * it alone (the last records, then the in-sync set grows). */
	pthread_rwlock_t writes;
	/* A replica's applies of records hold it shared from the fence check
	 * to the last record; raising the fence holds it alone, so no record
	 * of the fenced epoch lands after the position it reports. */
	pthread_rwlock_t applying;
	pthread_mutex_t mu; /* ep, pos */
	drift_epochs ep;
	/* On the primary: the last record each other replica is known to
	 * hold (its acknowledgements; lag.c). */
	struct {
		char id[DRIFT_NODE_ID_MAX + 1];
		uint64_t seq;
	} pos[DRIFT_META_MAX_RF];
	size_t n_pos;
};

/* How far a catch-up has come, for the progress of moves in Status and
 * ShardMap: bytes sent, and the whole (the full copy's files, then the
 * log's tail sent and an estimate of what is left of it). */
struct repl_progress {
	_Atomic uint64_t done, total;
};

/* Hash buckets of the shard entries. */
#define REPL_BUCKETS 4096

/* Nodes DOWN at once that the leader keeps the time of (moves.c). */
#define REPL_MAX_DOWN 64

/* The catch-ups running at once, one per shard at most. */
#define REPL_MAX_JOBS 8
struct repl_job {
	bool busy;
	char name[DRIFT_META_NAME_MAX + 1];
	uint64_t created;
	uint32_t shard;
	char node[DRIFT_NODE_ID_MAX + 1]; /* the replica caught up */
	struct repl_progress prog;
};

struct drift_replica {
	drift_cm *cm;
	drift_node_cluster *nc;
	drift_rmap_follower *peers;
	pthread_mutex_t mu; /* shards; stop */
	pthread_cond_t cond;
	struct repl_shard *shards;
	/* The entries by (created, shard): a collection's created_version is
	 * its own. */
	struct repl_shard *buckets[REPL_BUCKETS];
	bool stop;
	pthread_t catchup;
	bool catchup_running;
	bool lag_running;		      /* its metrics collector added */
	struct repl_job slots[REPL_MAX_JOBS]; /* under mu */
	unsigned jobs;			      /* running; under mu */
	bool rebalancing;		      /* under mu (moves.c) */
	/* moves.c, on the leader's prober thread only: when nodes went
	 * DOWN. */
	struct {
		char id[DRIFT_NODE_ID_MAX + 1];
		uint64_t since;
	} down[REPL_MAX_DOWN];
	size_t n_down;
	/* moves.c, likewise: the nodes seen UP (a new one rebalances). */
	char seen[REPL_MAX_DOWN][DRIFT_NODE_ID_MAX + 1];
	size_t n_seen;
	bool seen_init;
	/* repair.c, on the catch-up thread only. */
	uint64_t repair_next, repair_warned;
};

/* The entry of shard `shard` of col (made, with its epochs read, on first
 * use), or NULL with err set. Give it back with repl_shard_put. */
struct repl_shard *repl_shard_of(drift_replica *r, drift_collection *col,
				 uint32_t shard, drift_err *err);

/* Gives back an entry repl_shard_of gave (NULL is ignored). */
void repl_shard_put(drift_replica *r, struct repl_shard *e);
/* Frees the entries no one uses of collections the map no longer has
 * (the catch-up thread's passes). */
void repl_reap(drift_replica *r);

/* The last record of shard's log; its log held after `after`. */
uint64_t repl_last_seq(drift_collection *col, uint32_t shard);
void repl_hold_log(drift_collection *col, uint32_t shard, uint64_t after);

/* Saves e->ep (e->mu held). */
int repl_save_epochs(struct repl_shard *e, drift_err *err);

/* The gRPC address of node id in st ("" when unknown). */
const char *repl_address(const drift_meta *st, const char *id);

/* A unary call to the node at address over the shared clients. */
int repl_call(drift_replica *r, const char *address, const char *path,
	      const ProtobufCMessage *req,
	      const ProtobufCMessageDescriptor *resp_desc, uint64_t timeout_ns,
	      ProtobufCMessage **resp, drift_err *err);

/* A SetReplicas change made by the metadata leader (this node, or sent to
 * it), then waited for in this node's map. 0 or an error (DRIFT_ECONFLICT
 * when the shard's epoch moved on). */
int repl_set_replicas(drift_replica *r,
		      const Drift__Cluster__V1__SetReplicas *req,
		      drift_err *err);

/* Proposes it as the leader (DRIFT_ESTALE when this node does not lead);
 * *version gets the map version that holds it. */
int repl_propose(drift_replica *r, const Drift__Cluster__V1__SetReplicas *req,
		 uint64_t *version, drift_err *err);

/* A full copy of shard to the replica at addr (copy.c); *last gets its
 * position after it. */
int repl_full_copy(drift_replica *r, const char *addr, drift_collection *col,
		   uint32_t shard, uint64_t epoch, struct repl_shard *e,
		   struct repl_progress *prog, uint64_t *last, drift_err *err);
/* The replica's side of Install, after the first message h (checked by
 * the caller): receives the files and installs them. */
int repl_install(drift_grpc_call *c, drift_collection *col,
		 struct repl_shard *e, const Drift__Peer__V1__InstallRequest *h,
		 uint64_t *last, drift_err *err);

/* Fences the replica at addr at epoch `fence` (it refuses older ones from
 * then on) and gives its position (failover.c). */
int repl_fence(drift_replica *r, const char *addr,
	       const drift_meta_collection *mc, uint32_t shard, uint64_t fence,
	       uint64_t *last, drift_err *err);

/* The progress of this node's catch-up of replica `node` of a shard:
 * false when none runs. */
bool repl_job_progress(drift_replica *r, const char *name, uint64_t created,
		       uint32_t shard, const char *node, uint64_t *done,
		       uint64_t *total);

/* The leader's pass over moves marked in the map that no move of its own
 * runs (begun under another leader): finishes them, or undoes the ones
 * whose target does not catch up (moves.c). */
void repl_resume_moves(drift_replica *r);

/* The leader's change of shard's primary away from `gone` (down, leaving
 * or damaged; failover.c), in st: gone is fenced (unless DOWN) and so are
 * the other in-sync replicas on UP nodes, at the next epoch; the longest
 * of those that answer (prefer when it is one of them) becomes the
 * primary in a new epoch, with the ones as long in sync. gone stays a
 * replica, out of sync, with keep; else it leaves. 0 (*version: the map
 * version that has it), DRIFT_EUNAVAIL when no in-sync replica answers,
 * or repl_propose's error (DRIFT_ECONFLICT: the epoch moved on). */
int repl_hand_over(drift_replica *r, const drift_meta *st,
		   const drift_meta_collection *mc, uint32_t shard,
		   const char *gone, const char *prefer, bool keep,
		   uint64_t *version, drift_err *err);

/* The leader's step 1 of a repair (repair.c): node's replicas of the
 * collection out of the in-sync sets, a primary handing over first. 0
 * (*version: the map that has it), DRIFT_ESTALE when a shard has no other
 * in-sync replica up, or the Raft change's error. */
int repl_take_out(drift_replica *r, const char *name, uint64_t created,
		  const char *node, uint64_t *version, drift_err *err);

/* A pass of the repair of this node's damaged copies (at most once a
 * second; on the catch-up thread). */
void repl_repair_pass(drift_replica *r);

/* The leader's Rebalance when a node it has not seen UP before is UP (an
 * AddNode that finished joining; --rebalance-on-join; moves.c). */
void repl_join_rebalance(drift_replica *r);

/* The leader's replacement of nodes DOWN for --replace-down-after: their
 * replicas are copied to nodes that are up (moves.c; failover pass). */
void repl_replace_down(drift_replica *r);

/* The primary's answer to a replica's ReadIndex (reads.c): 0 and its
 * log's position, or DRIFT_ESTALE. */
int repl_read_index(drift_replica *r, drift_collection *col,
		    struct repl_shard *e,
		    const Drift__Peer__V1__ReadIndexRequest *req,
		    uint64_t *last, drift_err *err);

/* Notes that replica `id` of e's shard holds the records up to seq
 * (lag.c). */
void repl_note_position(struct repl_shard *e, const char *id, uint64_t seq);

/* drift_replication_lag_records at scrape time (lag.c). */
int repl_lag_start(drift_replica *r);
void repl_lag_stop(drift_replica *r);

/* The catch-up thread (catchup.c). */
void *repl_catchup_main(void *arg);

#endif /* DRIFT_NODE_REPLICA_INTERNAL_H */
