/*
 * The Raft state machine of the cluster metadata: a struct raft_fsm over
 * drift_meta (cluster/meta.h).
 *
 * apply decodes one command entry and applies it to a copy of the current
 * state; the copy replaces the state only when the command succeeds, so a
 * command that is invalid in the state (every member finds the same)
 * changes nothing. Its result (0 or the DRIFT_E* code, and the message)
 * goes to the apply callback of the member that proposed it through the
 * callback's result argument (drift_fsm_result). snapshot serialises the
 * state; restore replaces it wholesale: the library replays the log into
 * the state machine at start, so the state is always rebuilt from
 * snapshot + log, never appended to.
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

/* The result of the command an apply callback (raft_apply_cb) is for,
 * from the callback's result argument (on the Raft thread): 0 or the
 * command's code, and its message in err (a generic one if more than
 * DRIFT_FSM_RESULTS commands were applied after it before the callback
 * ran; the code is always the command's own). */
#define DRIFT_FSM_RESULTS 64
int drift_fsm_result(drift_fsm *f, const void *result, drift_err *err);

/* The result of the last command applied (on the Raft thread). Not the
 * proposer's in an apply callback: the library applies every entry that
 * commits at once before it fires their callbacks, so there it is the
 * batch's last command's result for all of them; use drift_fsm_result. */
int drift_fsm_last(drift_fsm *f, drift_err *err);

#endif /* DRIFT_CLUSTER_FSM_H */
