/*
 * The write-ahead log of a shard.
 *
 * Every upsert and delete is appended here, with a checksum, before it is
 * acknowledged. Records are opaque typed payloads (the shard encodes
 * OP_UPSERT and OP_DELETE batches); each gets the next sequence number.
 *
 * Sync policy (per collection):
 * - DRIFT_WAL_ALWAYS (default): append returns once the record is on disk
 *   (fdatasync). Group commit: writers that arrive while a sync runs are
 *   written and synced together by the next one, so one fsync covers every
 *   writer waiting in that window.
 * - DRIFT_WAL_BATCH: append returns once the record is written to the
 *   kernel; a background sync (a task of opts.pool, or a thread of the
 *   log's own) follows at most batch_interval later. A
 *   process crash loses nothing; a machine crash may lose that window.
 * - DRIFT_WAL_NONE: written to the kernel; synced only on rotate and
 *   close.
 * Under every policy an acknowledged write survives kill -9 of the
 * process.
 *
 * Failures: a failed fsync poisons the log (every later append fails with
 * DRIFT_EIO) because the kernel may have dropped the dirty pages, so
 * retrying could report success for data that is gone (PostgreSQL's
 * "fsyncgate"); reopening recovers from what is really on disk. A failed
 * write (a full disk) cuts the file back to the last complete record and
 * fails only the writers of that group: later appends work again once space
 * is freed.
 *
 * Files, layout and the recovery rule are described at the top of wal.c.
 * Threads: append may be called from any number of threads; open, rotate,
 * retire and close by one owner.
 */
#ifndef DRIFT_NODE_WAL_H
#define DRIFT_NODE_WAL_H

#include <stddef.h>
#include <stdint.h>

#include "common/clock.h"
#include "common/err.h"
#include "common/fs.h"
#include "node/engine/janitor.h"

enum drift_wal_sync {
	DRIFT_WAL_ALWAYS = 0,
	DRIFT_WAL_BATCH,
	DRIFT_WAL_NONE,
};

/* Largest payload of one record. */
#define DRIFT_WAL_MAX_RECORD (UINT32_C(256) << 20)

typedef struct drift_wal_opts {
	drift_fs *fs;	 /* NULL: drift_fs_posix() */
	const char *dir; /* the shard's WAL directory (exists) */
	enum drift_wal_sync sync;
	uint64_t batch_interval_ns; /* BATCH: 0 means 10 ms */
	/* BATCH: the syncs are tasks of this pool (node/engine/janitor.h; it
	 * outlives the log), posted when a write leaves data unsynced; NULL:
	 * a thread of the log's own. */
	drift_janitor *pool;
} drift_wal_opts;

/* Called for each record during recovery, in sequence order. A non-zero
 * return stops recovery and is returned by drift_wal_open. */
typedef int (*drift_wal_replay_fn)(void *ctx, uint64_t seq, uint32_t type,
				   const void *payload, size_t len);

typedef struct drift_wal drift_wal;

/* Opens (or creates) the log in opts->dir and replays every record with a
 * sequence number above after_seq (those at or below are already durable
 * elsewhere). A torn tail of the last file is cut off; a bad record
 * anywhere else is DRIFT_ECORRUPT naming the file and offset. Appends then
 * go to a new file. *out only on success. */
int drift_wal_open(const drift_wal_opts *opts, uint64_t after_seq,
		   drift_wal_replay_fn replay, void *ctx, drift_wal **out,
		   drift_err *err);

/* Appends one record and waits as the sync policy says. *seq (may be NULL)
 * gets its sequence number. 0, DRIFT_EINVAL (type 0 or payload too
 * large), DRIFT_ENOSPC, DRIFT_EIO (the log is poisoned), DRIFT_ENOMEM. A
 * record whose append failed is not acknowledged and will not be replayed. */
int drift_wal_append(drift_wal *w, uint32_t type, const void *payload,
		     size_t len, uint64_t *seq, drift_err *err);

/* Replication (node/replica/): a replica's log takes the primary's
 * sequence numbers. drift_wal_append_at appends record `seq`, which must be
 * the next one: DRIFT_EEXIST when the log already has it, DRIFT_ESTALE
 * when records before it are missing. drift_wal_wait_next waits until the
 * next record to append is `seq` (0), passed it (DRIFT_EEXIST), or the
 * deadline (DRIFT_ETIMEDOUT): writers of consecutive records call it
 * first, so they append in order and still share one sync. */
int drift_wal_append_at(drift_wal *w, uint64_t seq, uint32_t type,
			const void *payload, size_t len, drift_err *err);
int drift_wal_wait_next(drift_wal *w, uint64_t seq, uint64_t deadline_ns);

/* The written records after sequence number `after`, in order, to fn, until
 * about max_bytes of payload went (the tail a replica missed). 0 (fn's
 * non-zero return is returned as it is), or DRIFT_ENOENT when the log no
 * longer holds the record after `after` (retired: a full copy is needed). */
int drift_wal_read(drift_wal *w, uint64_t after, size_t max_bytes,
		   drift_wal_replay_fn fn, void *ctx, drift_err *err);

/* While a replica catches up: retire keeps the records above `after`
 * (DRIFT_WAL_NO_HOLD: none). */
#define DRIFT_WAL_NO_HOLD UINT64_MAX
void drift_wal_hold(drift_wal *w, uint64_t after);

/* Syncs everything appended so far. */
int drift_wal_sync(drift_wal *w, drift_err *err);

/* Closes the current file (synced) and starts a new one: records from here
 * on go to it. *first (may be NULL) gets the sequence number its first
 * record will have. */
int drift_wal_rotate(drift_wal *w, uint64_t *first, drift_err *err);

/* Deletes the files whose records all have sequence numbers <= upto (their
 * data is durable elsewhere). The current file is never deleted. */
int drift_wal_retire(drift_wal *w, uint64_t upto, drift_err *err);

/* The sequence number of the last record appended (or replayed). */
uint64_t drift_wal_last_seq(drift_wal *w);

/* Bytes in the log's files, and fsyncs done (for group-commit tests and
 * statistics). */
uint64_t drift_wal_bytes(drift_wal *w);
uint64_t drift_wal_syncs(drift_wal *w);

/* Syncs (unless poisoned), stops the batch thread, closes. NULL is fine. */
void drift_wal_close(drift_wal *w);

#endif /* DRIFT_NODE_WAL_H */
