/*
 * This node's member of the Raft metadata group.
 *
 * A member runs canonical/raft (the cowsql fork, Debian libraft 0.22) on a
 * libuv loop thread of its own, with the library's disk I/O (raft log and
 * snapshots under opts.dir) and TCP transport (opts.raft_bind). The state
 * machine is cluster/fsm.h over cluster/meta.h.
 *
 * Other threads (gRPC handlers) talk to it through requests that the loop
 * picks up (drift_member_propose and friends block until the library
 * answers or the timeout passes; a timed-out request is left to the loop,
 * which frees it).
 *
 * Membership: the leader keeps the Raft configuration in line with the
 * nodes of the state (a reconcile step every 200 ms on the loop): a node
 * added to the state is added to the configuration as a voter while there
 * are fewer than max_voters voters, else as a standby (it receives the log
 * but does not vote); a node removed from the state leaves the
 * configuration; when a voter goes, a standby is promoted. A node whose
 * configuration entry is in place turns from JOINING to UP. A leader that
 * is itself removed hands leadership to another voter first.
 *
 * Stopping (drift_member_stop): a leader with other voters hands
 * leadership over (raft_transfer, waiting at most an election timeout)
 * before the member closes, so a planned stop costs no election timeout.
 */
#ifndef DRIFT_CLUSTER_MEMBER_H
#define DRIFT_CLUSTER_MEMBER_H

#include <stdbool.h>
#include <stdint.h>

#include "cluster/fsm.h"
#include "cluster/meta.h"
#include "common/err.h"

typedef struct drift_member drift_member;

typedef struct drift_member_opts {
	const char *dir;	     /* Raft log and snapshots (created) */
	const char *node_id;	     /* this node's id */
	const char *raft_address;    /* what peers dial for Raft */
	const char *raft_bind;	     /* where to listen (NULL: raft_address) */
	bool bootstrap;		     /* a new cluster of one (empty dir only) */
	unsigned election_ms;	     /* 0: 300 */
	unsigned heartbeat_ms;	     /* 0: election_ms / 5 */
	unsigned snapshot_threshold; /* entries between snapshots; 0: 1024 */
	unsigned snapshot_trailing;  /* entries kept after one; 0: 128 */
	drift_fsm_change_cb on_change; /* after each state change, on the
					* loop thread; may be NULL */
	void *arg;
} drift_member_opts;

/* Opens the Raft data in opts->dir (bootstrapping when asked and the
 * directory is empty), replays it into the state machine and starts the
 * loop thread. 0 or an error with a message. */
int drift_member_start(const drift_member_opts *opts, drift_member **out,
		       drift_err *err);

/* Hands leadership over if this member leads, closes the member and stops
 * the loop thread. Idempotent. */
void drift_member_stop(drift_member *m);

/* Stops if needed and frees. NULL is ignored. */
void drift_member_free(drift_member *m);

/* The current state (a reference: drift_meta_unref). */
drift_meta *drift_member_state(drift_member *m);

/* drift_fsm_wait on the member's state machine. */
int drift_member_wait(drift_member *m, uint64_t known, uint64_t deadline_ns,
		      drift_meta **out);

typedef struct drift_member_info {
	bool leader;	/* this member leads now */
	int raft_state; /* RAFT_FOLLOWER, RAFT_CANDIDATE, RAFT_LEADER... */
	uint64_t term;
	uint64_t commit_index;
	uint64_t applied_index;
	uint64_t last_index;
	uint64_t leader_raft_id; /* 0: no leader known */
	unsigned voters;	 /* in the Raft configuration */
} drift_member_info;

void drift_member_info_get(drift_member *m, drift_member_info *info);

/* The leader's node id and gRPC address from the state (both "" when no
 * leader is known). Buffers of DRIFT_NODE_ID_MAX + 1 and DRIFT_ADDR_MAX + 1
 * bytes. Returns whether a leader is known. */
bool drift_member_leader(drift_member *m, char *id, char *address);

/* Proposes a command (this member must lead) and waits until it is
 * applied here. 0, the command's own error (EEXIST, ENOENT, EINVAL,
 * EBUSY... with the state machine's message), DRIFT_ESTALE (this member
 * is not the leader: forward to drift_member_leader's), DRIFT_EUNAVAIL
 * (leadership lost on the way: the command may or may not have been
 * applied), DRIFT_ETIMEDOUT. */
int drift_member_propose(drift_member *m,
			 const Drift__Cluster__V1__Command *cmd,
			 uint64_t timeout_ns, drift_err *err);

#endif /* DRIFT_CLUSTER_MEMBER_H */
