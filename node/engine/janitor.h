/*
 * The Janitor pool: background work of many shards on a few threads.
 *
 * A node holds thousands of collections (a tenant each), so it cannot
 * give each shard a thread of its own (an idle thread costs a stack, a
 * malloc arena and a slot in the scheduler). Every shard's background
 * work (flushing a rotated memtable, bounded maintenance steps, the WAL's
 * batch syncs) is a task posted to one pool whose threads are sized by
 * the cores; the thread count of a node does not grow with its
 * collections.
 *
 * A task runs one bounded step of work per call of its function and
 * posts itself again when more is waiting, so a busy shard takes its
 * turn with the others (first in, first out within a priority) instead
 * of holding a thread. A task whose work is done posts nothing and costs
 * nothing until something wakes it (a shard's rotation posts its flush).
 *
 * Priorities: DRIFT_JANITOR_FLUSH (work that writers may wait for) runs
 * before DRIFT_JANITOR_MAINT, except that every MAINT_EVERY-th pick takes
 * the oldest MAINT task when one waits, so a stream of flushes never
 * starves maintenance.
 *
 * A task never runs on two threads at once: a post while it runs is
 * remembered (the most urgent of such posts wins) and queued when the
 * run returns. Threads: every function is thread-safe, and a task's
 * function may post its own task (or any other).
 */
#ifndef DRIFT_NODE_JANITOR_H
#define DRIFT_NODE_JANITOR_H

#include <stdbool.h>
#include <stdint.h>

#include "common/err.h"

typedef struct drift_janitor drift_janitor;

enum drift_janitor_prio {
	DRIFT_JANITOR_FLUSH = 0,
	DRIFT_JANITOR_MAINT = 1,
};

typedef struct drift_janitor_task drift_janitor_task;

/* One bounded step of a task's work, on a pool thread. */
typedef void drift_janitor_fn(drift_janitor_task *t);

/* Embedded in its owner (container_of from the function); the fields
 * after fn are the pool's, under its lock. */
struct drift_janitor_task {
	drift_janitor_fn *fn;
	drift_janitor_task *prev, *next;
	uint64_t due_ns;       /* when queued on the timer list */
	int where;	       /* list it is on, or none */
	int prio;	       /* of its queued or pending run */
	bool running, pending; /* a post arrived during the run */
	int pend_prio;	       /* the most urgent such post */
	uint64_t pend_due_ns;  /* and the earliest */
	bool detached;	       /* posts are ignored */
};

/* A pool of `threads` threads (0: one per online CPU). 0, DRIFT_ENOMEM or
 * an error from starting a thread (nothing is left running). */
int drift_janitor_new(unsigned threads, drift_janitor **out, drift_err *err);

/* Stops the threads (a run in progress finishes first) and frees the
 * pool. Every task must be detached before. NULL is ignored. */
void drift_janitor_free(drift_janitor *j);

/* The number of threads. */
unsigned drift_janitor_threads(const drift_janitor *j);

/* Prepares t (not yet known to any pool) to run fn. */
void drift_janitor_task_init(drift_janitor_task *t, drift_janitor_fn *fn);

/* Asks for one run of t at priority prio, delay_ns from now (0: as soon
 * as a thread is free). A task already queued keeps one place: the more
 * urgent priority and the earlier time of the two posts. Ignored once t
 * is detached. */
void drift_janitor_post(drift_janitor *j, drift_janitor_task *t,
			enum drift_janitor_prio prio, uint64_t delay_ns);

/* Takes t off the pool: removes it from its queue, waits for a run in
 * progress to return, and ignores later posts. Must not be called from
 * t's own function. After it, t's memory may be freed. */
void drift_janitor_detach(drift_janitor *j, drift_janitor_task *t);

#endif /* DRIFT_NODE_JANITOR_H */
