/*
 * The Raft state machine of the cluster metadata: a struct raft_fsm over
 * drift_meta (cluster/meta.h).
 *
 * apply decodes one command entry and applies it to a copy of the current
 * state; the copy replaces the state only when the command succeeds, so a
 * command that is invalid in the state (every member finds the same)
 * changes nothing. Its result (0 or the DRIFT_E* code, and the message)
 * is kept for the apply callback of the member that proposed it
 * (drift_fsm_last). snapshot serialises the state; restore replaces it
 * wholesale: the library replays the log into the state machine at start,
 * so the state is always rebuilt from snapshot + log, never appended to.
 *
 * Threads: apply, snapshot and restore run on the Raft loop thread;
 * drift_fsm_state and drift_fsm_wait may be called from any thread.
 */
#ifndef DRIFT_CLUSTER_FSM_H
#define DRIFT_CLUSTER_FSM_H

#include <raft.h>
#include <stdint.h>

#include "cluster/meta.h"
#include "common/err.h"

typedef struct drift_fsm drift_fsm;

/* Called on the Raft thread after each change of the state (an applied
 * command or a restored snapshot), with the new state (borrowed: take a
 * reference to keep it). Must not block. */
typedef void (*drift_fsm_change_cb)(void *arg, drift_meta *state);

/* A state machine with an empty state. cb may be NULL. */
int drift_fsm_new(drift_fsm_change_cb cb, void *arg, drift_fsm **out);

void drift_fsm_free(drift_fsm *f);

/* The struct raft_fsm to give raft_init (lives as long as f). */
struct raft_fsm *drift_fsm_raft(drift_fsm *f);

/* A reference to the current state (drift_meta_unref when done). */
drift_meta *drift_fsm_state(drift_fsm *f);

/* Waits until the state's version passes known or deadline_ns (monotonic,
 * drift_now_ns; UINT64_MAX: none) comes, or drift_fsm_wake. 0 and a
 * reference in *out when it passed, else DRIFT_ETIMEDOUT (*out is the
 * current state anyway). */
int drift_fsm_wait(drift_fsm *f, uint64_t known, uint64_t deadline_ns,
		   drift_meta **out);

/* Wakes every waiter (shutdown). */
void drift_fsm_wake(drift_fsm *f);

/* The result of the last command applied (on the Raft thread, in the
 * proposer's apply callback): 0 or its code, and its message in err. */
int drift_fsm_last(drift_fsm *f, drift_err *err);

#endif /* DRIFT_CLUSTER_FSM_H */
