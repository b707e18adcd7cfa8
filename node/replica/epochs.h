/*
 * A replica's epochs: which primaries' records its log holds, and the
 * newest epoch it accepts writes from (the fence). Kept per shard in
 * <shard dir>/EPOCHS, replaced atomically (synced) on every change, which
 * is rare: a new primary, a promotion's fence.
 *
 * The history lists, oldest first, each epoch whose records the log holds
 * with the sequence number of its first record here. A primary compares a
 * returning replica's last epoch and position with its own history to
 * know whether the replica's log is a prefix of its own (the replica may
 * receive the tail it missed) or went its own way (records of a deposed
 * primary that nobody acknowledged: it needs a full copy).
 *
 * Text, one line each: "fence <epoch>" then "epoch <epoch> <first seq>".
 */
#ifndef DRIFT_NODE_REPLICA_EPOCHS_H
#define DRIFT_NODE_REPLICA_EPOCHS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define DRIFT_EPOCHS_MAX 64 /* the newest are kept */

typedef struct drift_epoch_start {
	uint64_t epoch, first_seq;
} drift_epoch_start;

typedef struct drift_epochs {
	uint64_t fence;
	size_t n;
	drift_epoch_start h[DRIFT_EPOCHS_MAX];
} drift_epochs;

/* Reads shard_dir/EPOCHS (a missing file: no history, fence 0). 0 or
 * DRIFT_ECORRUPT naming the file. */
int drift_epochs_load(const char *shard_dir, drift_epochs *e, drift_err *err);
/* Writes it (atomically, synced). */
int drift_epochs_save(const char *shard_dir, const drift_epochs *e,
		      drift_err *err);

/* The last epoch of the history (0: none). */
uint64_t drift_epochs_last(const drift_epochs *e);
/* Records that the log's records from first_seq on are epoch's (a no-op
 * when it is already the last one). Returns whether e changed. */
int drift_epochs_begin(drift_epochs *e, uint64_t epoch, uint64_t first_seq);

/* Whether a log whose last record is last_seq, of epoch `epoch`, is a
 * prefix of the log this history describes (whose own last record is
 * own_last): the epoch is in the history and the position does not pass
 * the epoch's end here. */
int drift_epochs_prefix(const drift_epochs *e, uint64_t own_last,
			uint64_t epoch, uint64_t last_seq);

#endif /* DRIFT_NODE_REPLICA_EPOCHS_H */
