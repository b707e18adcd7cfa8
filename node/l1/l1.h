/*
 * The L1 index of a shard: clustered buckets that stay good while the data
 * moves.
 *
 * Vectors live in buckets around a centroid (an IVF index). A bucket is
 * immutable once published: every change (rows added or removed, a split, a
 * merge, a re-centre) builds a new version and swaps it in, so a reader
 * never sees a half-changed bucket. Each bucket keeps the running sum and
 * count of its members, so its mean, and its drift from the centroid, are
 * O(1) to read. drift_kv maps every id to its bucket and row.
 *
 * Memory: a bucket holds ids, versions, SQ8 codes and, per member, the row
 * of its full-precision vector in the index's vector store
 * (node/storage/vstore.h). Without vec_dir the store keeps those vectors in
 * memory; with it they sit in a scratch file read through a row cache with a
 * byte budget, so the resident cost per vector is its code (dim bytes) plus its
 * id, version, row and drift_kv entry. Re-ranking reads its candidates' rows in
 * one batch per search; exact search, maintenance and persistence read the
 * rows of the buckets they touch.
 *
 * Centroid search: a flat scan of every centroid, or, from
 * graph_min_buckets live buckets, a small HNSW over them (l1_graph.c).
 *
 * Search probes buckets in order of centroid distance, either a fixed number
 * (a probe budget) or as many as a recall target needs: the index is
 * calibrated on its own data (see l1_calib.c) and stops probing where the
 * measured chance that a further bucket holds a true neighbour falls below
 * what the target allows. A target of 1.0 is exact: it prunes only buckets
 * that provably cannot hold a better vector (triangle inequality with each
 * bucket's radius).
 *
 * Maintenance (drift_l1_maintain, bounded steps) keeps buckets between their
 * size bounds and near their members' mean: split by 2-means with neighbour
 * stealing, scatter merge of undersized buckets by urgency, re-centring when
 * drift passes a threshold. The rules and constants are documented at the
 * top of l1_maint.c.
 *
 * Threads: one writer (build, apply, delete, maintain) at a time; any number
 * of concurrent searches and gets.
 */
#ifndef DRIFT_NODE_L1_H
#define DRIFT_NODE_L1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/hit.h"
#include "common/vec.h"

enum drift_metric {
	DRIFT_METRIC_L2 = 0, /* squared Euclidean distance */
	DRIFT_METRIC_IP,     /* negated inner product */
	DRIFT_METRIC_COSINE, /* 1 - cosine similarity; vectors normalised */
};

/* The distance the engine ranks by under metric m (the L1 index, its
 * calibration and the HNSW memtable alike), with the kernels k. */
static inline float drift_metric_dist(const drift_vec_kernels *k,
				      enum drift_metric m, const float *a,
				      const float *b, uint32_t dim)
{
	switch (m) {
	case DRIFT_METRIC_IP:
		return -k->dot(a, b, dim);
	case DRIFT_METRIC_COSINE:
		return 1.0f - k->dot(a, b, dim);
	default:
		return k->l2sq(a, b, dim);
	}
}

typedef struct drift_l1_opts {
	uint32_t dim;
	enum drift_metric metric;
	uint32_t bucket_target;	  /* members per bucket aimed at; 0: 512 */
	uint32_t bucket_max;	  /* split above; 0: 3 * target */
	uint32_t bucket_min;	  /* merge below; 0: target / 4 */
	float drift_ratio;	  /* re-centre when drift > ratio * rms radius;
				   * 0: 0.2 */
	uint32_t steal_neighbors; /* buckets examined by stealing; 0: 8 */
	float default_recall;	  /* when a search gives neither; 0: 0.95 */
	uint64_t seed;
	/* Full-precision vectors (node/storage/vstore.h): NULL keeps them in
	 * memory; a directory keeps them in a scratch file there, read through
	 * a row cache of vec_cache_bytes, so that only ids, versions and SQ8
	 * codes stay resident. */
	const char *vec_dir;
	size_t vec_cache_bytes;
	/* Centroid search by a small HNSW graph (l1_graph.c) from this many
	 * live buckets; below it a flat scan. 0: 8192; UINT32_MAX: never. */
	uint32_t graph_min_buckets;
} drift_l1_opts;

typedef struct drift_l1 drift_l1;

int drift_l1_new(const drift_l1_opts *opts, drift_l1 **out, drift_err *err);
void drift_l1_free(drift_l1 *l1);

/* Builds the index from scratch by k-means over n vectors (the index must be
 * empty): the bulk load and the first flush. ids must be distinct. */
int drift_l1_build(drift_l1 *l1, const uint64_t *ids, const float *vecs,
		   size_t n, uint64_t version, drift_err *err);

/* Upserts n vectors: each goes to the bucket of its nearest centroid; an id
 * already present is replaced (removed from its old bucket). Deletes the ids
 * in del (absent ones are ignored; *deleted gets how many existed, when not
 * NULL). All in one step: readers see all of it or none. An empty index
 * gets its first bucket from the vectors. */
int drift_l1_apply(drift_l1 *l1, const uint64_t *ids, const float *vecs,
		   size_t n, const uint64_t *del, size_t ndel, uint64_t version,
		   size_t *deleted, drift_err *err);

typedef struct drift_l1_search_opts {
	uint32_t k;
	uint32_t nprobe;     /* > 0: probe exactly this many buckets */
	float recall_target; /* > 0 (and nprobe 0): probe for this recall */
	bool exhaustive;     /* scan everything (ground truth, tests) */
	bool exact;    /* full precision: with nprobe, the true top-k of the
			* nprobe nearest buckets (recall calibration) */
	bool sq8_scan; /* score every member by SQ8, without the RaBitQ
			* first pass (comparisons, tests) */
} drift_l1_search_opts;

typedef struct drift_l1_search_stats {
	uint32_t probed;  /* buckets scanned */
	uint64_t scanned; /* vectors compared */
	uint64_t refined; /* of those, scored by SQ8 after the RaBitQ pass */
} drift_l1_search_stats;

/* The k nearest live vectors to q (dim floats), best first, into out (room
 * for k); *n_out gets how many (fewer when the index holds fewer). stats
 * may be NULL. 0, DRIFT_EINVAL (k of 0, or both nprobe and recall_target),
 * DRIFT_ENOMEM, DRIFT_EIO (reading full vectors from the store). */
int drift_l1_search(drift_l1 *l1, const float *q,
		    const drift_l1_search_opts *so, drift_hit *out,
		    size_t *n_out, drift_l1_search_stats *stats);

/* Copies the stored vector of id (normalised for COSINE) into out: 0 or
 * DRIFT_ENOENT (or DRIFT_EIO from the store). *version gets its version
 * when not NULL. */
int drift_l1_get(drift_l1 *l1, uint64_t id, float *out, uint64_t *version);

typedef struct drift_l1_maint_stats {
	uint32_t splits, merges, recenters;
	uint32_t packs;	 /* buckets whose rows moved down the store */
	uint64_t moved;	 /* vectors that changed bucket */
	uint64_t packed; /* vectors whose store row moved */
} drift_l1_maint_stats;

/* Runs at most max_actions maintenance actions (split, merge, re-centre,
 * and last packing the vector store when most of its rows are free: see
 * l1_maint.c), most urgent first; *done (may be NULL) counts what ran.
 * Packs are not reported to the action hook below. Returns 0 with nothing
 * done when every bucket is within its bounds and the store is packed. */
int drift_l1_maintain(drift_l1 *l1, unsigned max_actions,
		      drift_l1_maint_stats *done, drift_err *err);

/* The kinds of maintenance action, for the hook below. */
enum drift_l1_action {
	DRIFT_L1_SPLIT,
	DRIFT_L1_MERGE,
	DRIFT_L1_RECENTER,
};

/* Called by drift_l1_maintain after each action that succeeded, with its
 * kind and its duration in nanoseconds (the Janitor's histograms): the
 * recall re-calibration a turn may end with is not part of any action. */
typedef void (*drift_l1_action_fn)(void *ctx, enum drift_l1_action a,
				   uint64_t ns);

/* Sets (or, with fn NULL, clears) the hook; not while drift_l1_maintain
 * runs. */
void drift_l1_set_action_hook(drift_l1 *l1, drift_l1_action_fn fn, void *ctx);

/* Re-measures the recall calibration on a sample of the index's own vectors
 * (done by build and by maintenance; callable directly). */
int drift_l1_calibrate(drift_l1 *l1, drift_err *err);

typedef struct drift_l1_stats {
	uint64_t vectors;
	uint32_t buckets;
	uint32_t min_size, max_size;
	double mean_drift;	     /* mean |mean - centroid| / rms radius */
	uint64_t vec_resident_bytes; /* full vectors held in memory */
	/* The vector store's rows: in use, and free below the highest in
	 * use (equal to vectors once maintenance has packed it). */
	uint64_t vec_store_rows;
	uint64_t vec_cache_hits, vec_cache_misses, vec_disk_reads;
	bool centroid_graph; /* searches use the centroid graph now */
} drift_l1_stats;

void drift_l1_stats_get(drift_l1 *l1, drift_l1_stats *st);

/* Vectors and buckets only, without the walk over the buckets that
 * drift_l1_stats_get does (for per-write checks). */
void drift_l1_size(drift_l1 *l1, uint64_t *vectors, uint32_t *buckets);

/* The bucket slot holding id, or DRIFT_ENOENT (tests, diagnostics). */
int drift_l1_locate(drift_l1 *l1, uint64_t id, uint32_t *bucket);

/* ---- Persistence (l1_persist.c) ----------------------------------------
 *
 * The index is written bucket by bucket: every publish marks its slots
 * dirty; a flush encodes the dirty slots' buckets as segment blocks (one
 * block per bucket, layout at the top of l1_persist.c: ids FastLanes-delta
 * coded in ascending order, versions, the full vectors ALP-coded) and the
 * shard's manifest records where each slot's newest block is. Opening
 * loads every listed block back into its slot. */

/* Segment block kind of an encoded bucket. */
#define DRIFT_BLOCK_BUCKET 1

/* Called for each dirty slot: block/len is the encoded bucket (ids, n: its
 * ids, ascending, for the segment's bloom filter), or NULL/0 when the slot
 * is now empty. A non-zero return stops and is returned. */
typedef int (*drift_l1_block_fn)(void *ctx, uint32_t slot, const void *block,
				 size_t len, const uint64_t *ids, size_t n);

/* Encodes every dirty slot (ascending) for fn; the dirty set is kept until
 * drift_l1_clear_dirty, so a failed flush can be retried. Writer thread. */
int drift_l1_encode_dirty(drift_l1 *l1, drift_l1_block_fn fn, void *ctx,
			  drift_err *err);

/* Dirty slots now (stats). */
uint32_t drift_l1_dirty_count(drift_l1 *l1);

/* Adds a live slot to the dirty set, so the next flush writes it again
 * (the shard moves buckets out of a mostly dead segment). Writer thread. */
void drift_l1_mark_dirty(drift_l1 *l1, uint32_t slot);

/* Forgets the dirty set: what it named is durable now. */
void drift_l1_clear_dirty(drift_l1 *l1);

/* Installs an encoded bucket into slot of an index being opened (before
 * any apply). 0, DRIFT_ECORRUPT (the bytes do not decode into a bucket of
 * this index's dimension: the message says what), DRIFT_EINVAL (slot
 * already filled), DRIFT_ENOMEM. */
int drift_l1_load_block(drift_l1 *l1, uint32_t slot, const void *block,
			size_t len, drift_err *err);

/* Ends loading: empty slots below the highest loaded one become free, the
 * dirty set is cleared, the recall calibration is measured. */
int drift_l1_load_finish(drift_l1 *l1, drift_err *err);

#endif /* DRIFT_NODE_L1_H */
