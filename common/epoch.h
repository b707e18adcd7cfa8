/*
 * Epoch-based reclamation: readers never lock, and memory that readers may
 * still see is freed only after every reader that could have seen it has
 * left.
 *
 * The rule (Fraser, "Practical lock-freedom", 2004, section 5.2.3, in a
 * simplified form with one global counter):
 *
 *   reader   drift_epoch_enter() publishes the current global epoch E in a
 *            slot of its own (a seq_cst store), then reads shared pointers;
 *            drift_epoch_exit() clears the slot.
 *   writer   unpublishes an object (swaps the pointer that led to it), then
 *            drift_epoch_retire(obj) tags it with the epoch R it read while
 *            advancing the global epoch to R + 1.
 *   reclaim  frees every retired object whose R is below the smallest epoch
 *            published in a slot (all of them when no slot is in use).
 *
 * Why it is safe: a reader that can reach the object loaded the pointer
 * before the swap, so it published its slot before the swap too, with an
 * epoch <= R; while it stays inside, R is not below the minimum. A reader
 * whose slot the scan missed published it after the scan, hence after the
 * swap, and can only find the new pointer (all operations are seq_cst).
 *
 * Slots are a fixed array (DRIFT_EPOCH_SLOTS); a reader takes any free
 * slot, so any thread may read without registering first. Sections must be
 * short (a search), not nested, and never block on a writer.
 */
#ifndef DRIFT_COMMON_EPOCH_H
#define DRIFT_COMMON_EPOCH_H

#include <stddef.h>
#include <stdint.h>

#define DRIFT_EPOCH_SLOTS 256

typedef struct drift_epoch drift_epoch;

/* A reader's slot, from drift_epoch_enter to drift_epoch_exit. */
typedef struct drift_epoch_guard {
	unsigned slot;
} drift_epoch_guard;

int drift_epoch_new(drift_epoch **out);
/* Frees every retired object (no reader may be inside) and the domain. */
void drift_epoch_free(drift_epoch *e);

void drift_epoch_enter(drift_epoch *e, drift_epoch_guard *g);
void drift_epoch_exit(drift_epoch *e, drift_epoch_guard *g);

/* Hands obj to the domain: fn(obj) runs once no reader can see it. The
 * caller must have unpublished obj first. 0 or DRIFT_ENOMEM (then fn(obj)
 * has run after waiting for the readers: the object is never lost).
 * Thread-safe. */
int drift_epoch_retire(drift_epoch *e, void *obj, void (*fn)(void *));

/* Frees what is safe to free now; returns how many objects were freed.
 * Thread-safe; never waits for readers. */
size_t drift_epoch_reclaim(drift_epoch *e);

/* Waits until every reader inside now has left, then reclaims. */
void drift_epoch_barrier(drift_epoch *e);

/* Retired objects not yet freed (stats, tests). */
size_t drift_epoch_pending(drift_epoch *e);

#endif /* DRIFT_COMMON_EPOCH_H */
