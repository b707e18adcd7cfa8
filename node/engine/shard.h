/*
 * A shard: the whole L0/L1 engine for one slice of a collection.
 *
 *   write   validate -> one WAL record (OP_UPSERT or OP_DELETE batch;
 *           group commit, the collection's sync policy) -> the active
 *           memtable (HNSW, node/l0/hnsw.h) -> acknowledged
 *   read    under an epoch guard (common/epoch.h): the active memtable,
 *           the immutable one being flushed (if any) and L1 (node/l1/l1.h);
 *           an id's newest state wins: L0 over L1, the active memtable over
 *           the immutable one; tombstones hide older copies
 *   flush   (the Janitor, or drift_shard_flush) rotates the memtable and
 *           the WAL file atomically, applies the old memtable's newest
 *           entries to L1, writes the buckets that changed into a new
 *           segment, switches the manifest (node/storage/manifest.h) to name it
 *           and the WAL position it covers, then deletes the WAL files and
 *           segments no longer needed and retires the old memtable once
 *           readers have left
 *   open    manifest -> segments -> L1 buckets -> replay the WAL after the
 *           covered position -> ready
 *
 * Files under the shard's directory: MANIFEST, wal/ (node/storage/wal.h),
 * seg/<id>.drift (node/storage/segment.h). Segment files the manifest does not
 * name, and stray temporary files, are deleted on open.
 *
 * Threads. Writes (upsert, delete) from any number of threads; they share
 * a lock that the rotation takes alone for a moment (pointer swaps), and
 * wait only when L0 is over budget (a full active memtable while the
 * previous one is still being flushed): back-pressure. Reads (search, get,
 * stats) from any number of threads, without locks on L0 (L1 takes its
 * read lock for the duration of a bucket scan). The Janitor, when
 * enabled, is a task of a pool shared by the node's shards (node/
 * janitor.h) and the only background writer of L1: a rotation posts its
 * flush (priority FLUSH), and after a flush it runs bounded maintenance
 * steps (priority MAINT), one per turn, and persists what they changed;
 * a shard whose index needs nothing takes no turns until its next flush.
 */
#ifndef DRIFT_NODE_SHARD_H
#define DRIFT_NODE_SHARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/fs.h"
#include "common/hit.h"
#include "node/engine/janitor.h"
#include "node/l1/l1.h"
#include "node/storage/wal.h"

typedef struct drift_shard drift_shard;

/* The memtable's ef_construction (node/l0/hnsw.h). Lower than the memtable's
 * own default (100): a memtable lives for one rotation and is searched
 * with a wide list (ef >= 64), where 40 loses no recall that matters
 * (hnsw-bench, Fashion-MNIST 20,000 rows: recall@10 0.996 at ef 40 with
 * ef_construction 40, 0.998 with 100) and inserts about twice as fast
 * (shard-bench ingest, SIFT 150,000 rows, batch: 26 against 36 s of CPU;
 * the whole shard's recall@10 0.992 against 0.991). */
#define DRIFT_SHARD_MEMTABLE_EFC 40

typedef struct drift_shard_opts {
	drift_fs *fs;	 /* NULL: drift_fs_posix() */
	const char *dir; /* created when missing */
	uint32_t dim;
	enum drift_metric metric;
	enum drift_wal_sync sync;
	uint32_t memtable_rows; /* rotate at this many rows; 0: 65536 */
	uint32_t memtable_ef_construction; /* 0: DRIFT_SHARD_MEMTABLE_EFC */
	uint32_t bucket_target;		   /* L1 members per bucket; 0: 512 */
	float default_recall;	    /* searches that give no knob; 0: 0.95 */
	uint32_t maint_per_tick;    /* Janitor maintenance actions; 0: 4 */
	uint64_t janitor_period_ns; /* 0: 50 ms */
	bool janitor;		    /* run the background Janitor */
	/* The Janitor's threads, shared by the node's shards (node/
	 * janitor.h; outlives the shard). NULL with janitor: a pool of one
	 * thread of the shard's own. */
	drift_janitor *pool;
	/* The WAL's BATCH syncs (node/storage/wal.h; outlives the shard); NULL:
	 * a thread of the WAL's own. */
	drift_janitor *wal_pool;
	uint64_t seed;
} drift_shard_opts;

/* Lays out a new shard in opts->dir without opening it: its wal/ and seg/
 * directories and a manifest naming its dimension and metric, durable
 * (the manifest synced, and the directory that holds the three). A later
 * drift_shard_open there opens it as created. Only opts->fs, dir, dim and
 * metric are read. 0, DRIFT_EINVAL (a path too long), DRIFT_EEXIST (a
 * manifest is there already), DRIFT_ENOMEM or an I/O error. */
int drift_shard_prepare(const drift_shard_opts *opts, drift_err *err);

/* Opens (hydrates) or creates the shard in opts->dir. A shard created with
 * another dimension or metric is DRIFT_EINVAL; a damaged manifest, segment
 * or WAL is DRIFT_ECORRUPT with the file named in err. */
int drift_shard_open(const drift_shard_opts *opts, drift_shard **out,
		     drift_err *err);

/* Stops the Janitor, syncs the WAL and frees everything (nothing is lost:
 * what L0 holds is in the WAL). NULL is ignored. */
void drift_shard_close(drift_shard *s);

/* Largest batch of one upsert or delete: what fits one memtable. */
uint32_t drift_shard_max_batch(const drift_shard *s);

/* Upserts n vectors (n * dim floats) under ids, all or nothing: a NaN or
 * infinite component, a zero vector under COSINE, or n above the maximum
 * batch is DRIFT_EINVAL / DRIFT_ELIMIT naming the row and nothing is
 * written. Returns once the batch is as durable as the sync policy says.
 * Later entries of an id in the batch win. */
int drift_shard_upsert(drift_shard *s, const uint64_t *ids, const float *vecs,
		       size_t n, drift_err *err);

/* Deletes ids; *deleted (may be NULL) gets how many of them existed. */
int drift_shard_delete(drift_shard *s, const uint64_t *ids, size_t n,
		       size_t *deleted, drift_err *err);

/* ---- Replication (node/replica/) ----
 *
 * A primary writes with the _rec forms, which also give the write's WAL
 * record (its sequence number, type and payload) to ship to the replicas;
 * a replica applies those records with drift_shard_apply, under the
 * primary's sequence numbers and in its order, so its log is a prefix of
 * the primary's. A replica that missed records reads them from the
 * primary's log (drift_shard_read_log), which keeps them while it is held.
 */
typedef struct drift_shard_record {
	uint64_t seq; /* 0: nothing was written (an empty batch) */
	uint32_t type;
	uint8_t *payload; /* drift_malloc'd */
	size_t len;
} drift_shard_record;
/* drift_shard_upsert / _delete; on success *rec (may be NULL) holds the
 * record (free it with drift_shard_record_free). */
int drift_shard_upsert_rec(drift_shard *s, const uint64_t *ids,
			   const float *vecs, size_t n, drift_shard_record *rec,
			   drift_err *err);
int drift_shard_delete_rec(drift_shard *s, const uint64_t *ids, size_t n,
			   size_t *deleted, drift_shard_record *rec,
			   drift_err *err);
void drift_shard_record_free(drift_shard_record *rec);
/* Applies the primary's record `seq` once the ones before it are here
 * (waiting for them until deadline_ns, a drift_now_ns time), as durable as
 * the sync policy says. 0; DRIFT_EEXIST when the shard already has it;
 * DRIFT_ESTALE when the records before it did not come by the deadline;
 * DRIFT_EINVAL for a payload that is not a batch of this shard; an I/O
 * error of the WAL. */
int drift_shard_apply(drift_shard *s, uint64_t seq, uint32_t type,
		      const void *payload, size_t len, uint64_t deadline_ns,
		      drift_err *err);
/* The sequence number of the last record in the shard's log. */
uint64_t drift_shard_last_seq(drift_shard *s);
/* Waits until the shard's log reaches record seq and every record applied
 * so far is in the memtables (a read then sees them): 0, or
 * DRIFT_ETIMEDOUT at deadline_ns (a drift_now_ns time). */
int drift_shard_wait_applied(drift_shard *s, uint64_t seq,
			     uint64_t deadline_ns);
/* drift_wal_read and drift_wal_hold on the shard's log. */
int drift_shard_read_log(drift_shard *s, uint64_t after, size_t max_bytes,
			 drift_wal_replay_fn fn, void *ctx, drift_err *err);
void drift_shard_hold_log(drift_shard *s, uint64_t after);
/* A full copy's source: hard links to the manifest and the segments it
 * names, made in directory out (created; same filesystem), and in *seq
 * the last WAL record they cover. The log after it is held (release it
 * with drift_shard_hold_log(s, DRIFT_WAL_NO_HOLD)), so the copy plus the
 * log's records after *seq make the shard. */
int drift_shard_checkpoint(drift_shard *s, const char *out, uint64_t *seq,
			   drift_err *err);

/* The stored vector of id (normalised for COSINE) into out (dim floats):
 * 0 or DRIFT_ENOENT. */
int drift_shard_get(drift_shard *s, uint64_t id, float *out);

typedef struct drift_shard_search_opts {
	uint32_t k;
	uint32_t nprobe;     /* L1 probe budget; 0: by recall target */
	float recall_target; /* 0: the default; 1: exact */
	uint32_t ef;	     /* L0 search list; 0: max(64, 2k) */
} drift_shard_search_opts;

/* The k best live vectors to q, best first (exact distances), into out
 * (room for k); *n_out how many. 0, DRIFT_EINVAL, DRIFT_ENOMEM. */
int drift_shard_search(drift_shard *s, const float *q,
		       const drift_shard_search_opts *so, drift_hit *out,
		       size_t *n_out);

/* Makes everything acknowledged so far durable in L1 (rotate, flush,
 * manifest). With the Janitor running, this waits for its flush. */
int drift_shard_flush(drift_shard *s, drift_err *err);

typedef struct drift_shard_stats {
	uint64_t live;	  /* live vectors (deletes subtracted) */
	uint32_t l0_rows; /* rows in memtables (active + immutable) */
	/* Memory the memtables hold now (drift_hnsw_stats.bytes of the
	 * active and immutable ones): it grows with their rows, so its peak
	 * is bounded by memtable_rows (two memtables at most). */
	uint64_t l0_bytes;
	uint32_t l0_tombstones;
	uint64_t l1_vectors;
	uint32_t l1_buckets;
	uint32_t segments;
	uint64_t wal_bytes;
	uint64_t wal_seq;     /* last sequence number written */
	uint64_t flushed_seq; /* covered by L1 (the manifest) */
	uint64_t flushes, splits, merges, recenters;
	uint64_t compactions;  /* segments rewritten for their garbage */
	uint64_t memory_bytes; /* drift_shard_memory */
} drift_shard_stats;

void drift_shard_stats_get(drift_shard *s, drift_shard_stats *st);

/* Memory accounting, for the limits of node/engine/collection.h. An estimate,
 * cheap enough for every write (no walk over rows or buckets), that moves
 * only with the rows written and flushed:
 *
 *   the memtables           twice the active memtable's (drift_hnsw_stats
 *                           .bytes: the pages its rows filled, so it grows
 *                           with them): a rotation holds two (the active
 *                           one and the one being flushed) for a while
 *   L1 and pending rows     (L1 vectors + rows of the memtables not yet
 *                           applied to L1) * drift_shard_vec_bytes: every
 *                           row in a memtable takes its place in L1 at the
 *                           flush (an update or a superseded row counts
 *                           until then: the estimate errs high)
 */
uint64_t drift_shard_memory(drift_shard *s);

/* Bytes one vector takes in L1: id and version (16), the full-precision
 * vector for re-ranking (4 * dim), its SQ8 code (dim), its drift_kv slot
 * (25 bytes, the table at most half full: 50), and its part of a bucket's
 * centroid, running sum and SQ8 ranges (20 * dim + 128 bytes) in a bucket
 * at the merge bound of 128 members (l1.h: target / 4). */
static inline uint64_t drift_shard_vec_bytes(uint32_t dim)
{
	return 16 + 5 * (uint64_t)dim + 50 +
	       (20 * (uint64_t)dim + 128 + 127) / 128;
}

#endif /* DRIFT_NODE_SHARD_H */
