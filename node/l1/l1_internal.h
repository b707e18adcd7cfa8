/*
 * Internals shared by l1.c (structure, apply, search), l1_maint.c
 * (maintenance) and l1_calib.c (recall calibration). Not for other modules.
 */
#ifndef DRIFT_NODE_L1_INTERNAL_H
#define DRIFT_NODE_L1_INTERNAL_H

#include <pthread.h>

#include "common/rand.h"
#include "common/hit.h"
#include "common/topk.h"
#include "node/l0/hnsw.h"
#include "node/engine/kv.h"
#include "node/l1/l1.h"
#include "node/codec/rabitq.h"
#include "node/storage/vstore.h"

/* Dimensions up to which buckets carry RaBitQ codes: above it the 16-bit
 * table sums of the scan could overflow (4,096 / 4 groups of at most 56). */
#define RABITQ_MAX_DIM 4096u

/* One immutable version of a bucket. Columns are row-aligned: row r is
 * ids[r], versions[r], codes[r * dim ...] and the full vector in row
 * rows[r] of the index's vector store (node/storage/vstore.h). */
typedef struct l1_bucket {
	uint32_t n;
	float *centroid;    /* dim */
	double *sum;	    /* dim: running sum of the members */
	float radius;	    /* max distance of a member to the centroid */
	float rms;	    /* root mean square of those distances */
	uint64_t *ids;	    /* n */
	uint64_t *versions; /* n */
	uint32_t *rows;	    /* n: vector store rows */
	uint8_t *codes;	    /* n * dim SQ8 codes (node/codec/sq8.h) */
	/* Construction: the last nnew rows are new vectors, in newvecs
	 * (nnew * dim) until l1_bucket_finish stores them. */
	uint32_t nnew;
	float *newvecs;
	float *qmin;   /* dim: SQ8 range of each dimension */
	float *qscale; /* dim */
	/* A bound on |x - decode(code(x))| over the members (every member
	 * lies in the trained range), or +inf when none is known. */
	float qerr;
	/* RaBitQ codes (node/codec/rabitq.h), when the index has a rotation:
	 * the first pass of a search. bits in blocks of 32 rows, bfac 2 per
	 * row, pcent the rotated centroid (pdim). */
	uint8_t *bits;
	float *bfac;
	float *pcent;
} l1_bucket;

/* The recall calibration: sorted "gaps" of the buckets holding true
 * neighbours of sample queries (l1_calib.c explains). */
typedef struct l1_calib {
	float *gaps10, *gaps100; /* sorted; for k <= 10 and for larger k */
	size_t n10, n100;
	float scale; /* mean rms radius of the buckets at calibration */
} l1_calib;

/* The calibration's sample (l1_calib.c): queries drawn from the index's
 * own vectors, each with its exact nearest neighbours, which apply keeps
 * exact as vectors come and go (l1_calib_note), so that a refresh searches
 * only the queries that lost a neighbour and a tenth drawn anew. */
typedef struct l1_sample {
	size_t nq;	/* 0: none (draw all at the next calibration) */
	size_t next;	/* the next query drawn anew in turn */
	float *q;	/* nq * dim */
	uint64_t *self; /* each query's own id (left out of its list) */
	float *qnorm;
	drift_hit *heap; /* nq * CALIB_K */
	drift_topk *top;
	bool *stale; /* lost a neighbour or its own vector: draw again */
} l1_sample;

struct drift_l1 {
	drift_l1_opts o;
	uint32_t dim;
	l1_bucket **b;	 /* per slot; NULL for a free slot */
	float *cent;	 /* per slot centroid, cap * dim; free: FLT_MAX */
	float *radius;	 /* per slot */
	uint32_t nslots; /* slots in use or freed: 0..nslots-1 */
	uint32_t cap;
	uint32_t live;	      /* non-NULL slots */
	uint32_t *free_slots; /* stack of freed slots, room for cap */
	uint32_t nfree;
	uint8_t *dirty; /* per slot: changed since drift_l1_clear_dirty */
	uint32_t ndirty;
	uint64_t count;
	drift_vstore *vs;  /* the full vectors */
	bool packing;	   /* moving rows down the store (l1_maint.c) */
	drift_rabitq *rq;  /* RaBitQ rotation; NULL above RABITQ_MAX_DIM */
	uint32_t pdim;	   /* its padded dimension */
	float *rq_scratch; /* pdim: the writer's rotated vector */
	drift_kv kv;
	l1_calib calib;
	l1_sample sample;
	uint64_t changed_since_calib;
	drift_rand rng;
	drift_hnsw *cg; /* centroid graph (l1_graph.c), or NULL */
	bool cg_ok;	/* usable: every change is in it */
	uint64_t cg_seq;
	drift_l1_action_fn on_action; /* drift_l1_set_action_hook, or NULL */
	void *on_action_ctx;
	pthread_rwlock_t lock; /* readers: whole search; writer: publish */
};

/* A bucket to probe: its slot and the query's key (distance order) to its
 * centroid. */
typedef struct probe {
	float key;
	uint32_t slot;
} probe;

/* A change of one slot, prepared without the lock and published with it. */
typedef struct l1_change {
	uint32_t slot;
	l1_bucket *nb; /* new version, or NULL to free the slot */
	l1_bucket *old;
} l1_change;

/* A new bucket of n rows around centroid (copied), the last nnew of them
 * new vectors. The caller fills ids, versions, the rows of the first
 * n - nnew and the vectors of the others (newvecs); then l1_bucket_finish
 * stores the new vectors, reads the others, and computes sum, radius, rms,
 * the SQ8 codes and the RaBitQ codes. */
int l1_bucket_alloc(const drift_l1 *l1, uint32_t n, uint32_t nnew,
		    const float *centroid, l1_bucket **out);
/* 0, DRIFT_ENOMEM or DRIFT_EIO (the store); on failure nothing was
 * stored. */
int l1_bucket_finish(drift_l1 *l1, l1_bucket *b);
/* Finishes b, a new version of old around the same centroid: its first
 * n - nnew rows are old's members (ids, versions, rows and codes copied by
 * the caller, codes with l1_bucket_copy_codes), the last nnew new vectors; dead
 * (ndead) are the store rows of old's members that left. Reads only the new and
 * the dead vectors: old's SQ8 ranges stay when the new vectors fit them closely
 * (their reconstruction error within twice the ranges' own bound), the running
 * sum and rms are updated, the radius stays an upper bound. Otherwise, as
 * l1_bucket_finish. */
int l1_bucket_finish_update(drift_l1 *l1, l1_bucket *b, const l1_bucket *old,
			    const uint32_t *dead, size_t ndead);
void l1_bucket_free(l1_bucket *b);
/* Copies the codes (SQ8 and RaBitQ) of row sr of src into row dr of dst. */
void l1_bucket_copy_codes(const drift_l1 *l1, l1_bucket *dst, uint32_t dr,
			  const l1_bucket *src, uint32_t sr);
/* Frees a finished bucket that was never published, giving its new rows
 * back to the store. */
void l1_bucket_discard(drift_l1 *l1, l1_bucket *b);

/* The full vectors of rows [from, from + n) of b into out (n * dim). */
int l1_bucket_vectors(const drift_l1 *l1, const l1_bucket *b, uint32_t from,
		      uint32_t n, float *out);

/* Scratch of l1_exact_scan, grown on demand (zero it to start; free with
 * l1_exact_scratch_free). */
typedef struct l1_exact_scratch {
	float *lb; /* per row: lower bound of its exact distance */
	struct l1_lb_row {
		float lb;
		uint32_t row;
	} * order;	/* the rows the bound cannot rule out, by bound */
	uint32_t *rows; /* their vector store rows, a block at a time */
	float *tq;	/* dim: the query prepared for the SQ8 kernels */
	float *vbuf;	/* a block of full vectors */
	uint32_t cap, dim;
} l1_exact_scratch;

void l1_exact_scratch_free(l1_exact_scratch *sc);

/* Pushes into top every member of b (but the id skip; UINT64_MAX for
 * none) whose exact distance to qn (normalised for COSINE; qnorm its norm)
 * could enter it: the result is what a scan of every full vector gives.
 * The SQ8 distance to each decoded member, less the bucket's quantization
 * error bound, is a lower bound of the exact one; rows are taken in that
 * order and full vectors are read only until the bound passes the k-th
 * best (after the first k, a few per bucket, most buckets none). 0, or
 * DRIFT_ENOMEM / DRIFT_EIO (the store). */
int l1_exact_scan(const drift_l1 *l1, const l1_bucket *b, const float *qn,
		  float qnorm, uint64_t skip, drift_topk *top,
		  l1_exact_scratch *sc);

/* Makes room for slots up to want (exclusive) in the slot arrays. */
int l1_reserve_slots(drift_l1 *l1, uint32_t want);
/* The least distance a member of slot s can have from a query whose metric
 * key to its centroid is key (qnorm: the query's norm, for IP): buckets
 * whose bound is above the k-th best so far cannot improve an exact top-k. */
float l1_lower_bound(const drift_l1 *l1, float key, uint32_t s, float qnorm);

/* Makes room for want entries in the id index (under the write lock). */
int l1_kv_reserve(drift_l1 *l1, size_t want);

/* A free slot (reusing freed ones first) for a bucket about to be
 * published; the slot arrays have room for it. */
int l1_take_slot(drift_l1 *l1, uint32_t *slot);

/* Publishes changes atomically for readers: swaps the versions, updates
 * drift_kv for every row of the new versions (its room must be reserved)
 * and removes the ids in del from it; then frees the old versions. Cannot
 * fail. */
void l1_publish(drift_l1 *l1, l1_change *ch, size_t n, const uint64_t *del,
		size_t ndel);

/* A calibration that draws only the stale sample queries and a tenth of
 * the others anew (maintenance; drift_l1_calibrate draws all). */
int l1_calib_refresh(drift_l1 *l1, drift_err *err);

/* Apply's report to the calibration sample, after publishing: the rows
 * (indices into ids and x; x prepared) are the new vectors, ids (nids) and
 * del (ndel) every id whose vector changed or left. pairs: room for
 * l1_calib_note_room entries, allocated before publishing (this cannot
 * fail). */
size_t l1_calib_note_room(const drift_l1 *l1);
void l1_calib_note(drift_l1 *l1, const uint64_t *ids, const float *x,
		   const uint32_t *rows, size_t nrows, size_t nids,
		   const uint64_t *del, size_t ndel, drift_hit *pairs);

void l1_sample_free(l1_sample *sm);

/* Gap threshold of a recall target for k results, from the calibration. */
float l1_calib_tau(const drift_l1 *l1, float target, uint32_t k);

/* The rank whose distance so far is the radius of the adaptive rule (L2)
 * for k results: 10 up to k = 10, else 100 (the two tables). */
size_t l1_calib_rank(uint32_t k);

/* The nearest live slot to v by squared L2 (skipping exclude, or UINT32_MAX
 * for none). */
uint32_t l1_nearest_slot(const drift_l1 *l1, const float *v, uint32_t exclude,
			 float *dist);

/* ---- Centroid graph (l1_graph.c) ---- */

/* Live buckets from which the graph is used. */
uint32_t l1_graph_min(const drift_l1 *l1);

/* Records, under the write lock, that slot's centroid changed (changed) or
 * that the slot was freed. */
void l1_graph_note(drift_l1 *l1, uint32_t slot, bool changed, bool freed);

/* Writer, after a publish: builds or rebuilds the graph when it is needed
 * and missing or unusable, and drops it below the threshold. */
void l1_graph_refresh(drift_l1 *l1);

void l1_graph_free(drift_l1 *l1);

/* Reader (read lock held): the about `want` nearest live buckets by the
 * graph, with exact keys, into out (room for want; scratch too), in no
 * particular order. 0 when the graph is not usable: scan instead. */
size_t l1_graph_probe(const drift_l1 *l1, const float *qn, size_t want,
		      drift_hit *scratch, probe *out);

#endif /* DRIFT_NODE_L1_INTERNAL_H */
