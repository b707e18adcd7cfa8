/*
 * drift_vstore: the full-precision vectors of an L1 index, addressed by row.
 *
 * L1 buckets keep in memory only what the scan reads (ids, versions, SQ8
 * codes) and, for each member, the row of its full vector here. Re-ranking,
 * exact search, maintenance and persistence read the rows they need.
 *
 * Two modes:
 * - memory (no directory): rows live in memory, in chunks; a read is a copy;
 * - file (a directory): rows live in a scratch file of fixed-size rows
 *   (dim float32, native byte order: the file never outlives the process)
 *   created in the directory and unlinked at once, so a crash leaves
 *   nothing behind. The file is created when the rows outgrow the row
 *   cache (until then the cache holds every row, and a store takes no
 *   file descriptor: a node with 10,000 small collections would otherwise
 *   hold two per collection, past a 20,000 limit). It is derived data: the
 * truth is the segment blocks (l1_persist.c), from which an opening index
 * rebuilds it. Rows missing from the row cache are read with pread by the
 * calling thread (runs of adjacent rows in one call), appends written with
 * pwrite. The row cache is direct-mapped (entry = row mod entries) with
 *   cache_bytes / (4 * dim) entries: when the budget holds every row, no
 *   two rows share an entry and everything stays cached (written through
 *   on append); with less, reads still answer, from disk (in practice the
 *   kernel's page cache, which is not this process's memory).
 *
 * Rows are recycled: a row released by the writer (its vector deleted or
 * replaced, and no reader able to hold it any more) is reused by a later
 * append, the lowest free rows first. Memory follows the rows in use: a
 * released row leaves the row cache, and a page of the cache that holds no
 * row any more goes back to the kernel (madvise); the free rows at the top
 * are given up at once (memory mode frees their chunks, file mode truncates
 * the file). So a store whose rows in use are dense (drift_l1 moves rows
 * down when most are free: node/l1/l1_maint.c) holds about what they need.
 *
 * Threads: one writer (append, release) at a time; reads from any thread,
 * concurrently with the writer, of rows appended before the reader learned
 * of them (L1's publication orders that) and not yet released.
 */
#ifndef DRIFT_NODE_VSTORE_H
#define DRIFT_NODE_VSTORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct drift_vstore drift_vstore;

typedef struct drift_vstore_opts {
	uint32_t dim;
	const char *dir;    /* NULL: memory mode */
	size_t cache_bytes; /* file mode: row cache budget (0: none) */
} drift_vstore_opts;

/* 0, DRIFT_EINVAL (dim 0), DRIFT_ENOMEM, or the error of a directory that
 * is not writable (without a cache: of creating the scratch file). */
int drift_vstore_open(const drift_vstore_opts *o, drift_vstore **out,
		      drift_err *err);

/* Frees everything; the scratch file goes with its descriptor. */
void drift_vstore_close(drift_vstore *vs);

/* Stores n vectors (n * dim floats) in new or recycled rows, their numbers
 * into rows. Writer. 0, DRIFT_ENOMEM, DRIFT_EIO, DRIFT_ENOSPC (2^32 rows,
 * or a full disk: also when the scratch file is created, by the append
 * that outgrows the cache); on failure no row was taken. */
int drift_vstore_append(drift_vstore *vs, const float *v, size_t n,
			uint32_t *rows, drift_err *err);

/* Gives n rows back for reuse. Writer; no reader may still read them. */
void drift_vstore_release(drift_vstore *vs, const uint32_t *rows, size_t n);

/* Copies the vectors of n rows into out (n * dim floats). Any thread.
 * 0, DRIFT_EIO (a disk read failed or came back short). */
int drift_vstore_read(drift_vstore *vs, const uint32_t *rows, size_t n,
		      float *out);

typedef struct drift_vstore_stats {
	uint64_t rows;		 /* rows in use */
	uint64_t free_rows;	 /* released below the highest in use */
	uint64_t hits, misses;	 /* file mode: row cache */
	uint64_t disk_reads;	 /* file mode: pread calls for rows */
	uint64_t resident_bytes; /* memory mode: the chunks; file mode: the
				  * cache pages holding a row */
} drift_vstore_stats;

void drift_vstore_stats_get(drift_vstore *vs, drift_vstore_stats *st);

#endif /* DRIFT_NODE_VSTORE_H */
