/*
 * Recall calibration: how far down the centroid order a search must probe
 * for a recall target.
 *
 * The stopping rule. For a query q, every bucket b gets a gap
 *
 *     gap(q, b) = (key(q, b) - min_b' key(q, b')) / scale(q)
 *
 * where key is the distance from q to b's centroid (Euclidean for L2, the
 * negated inner product otherwise) and scale is the mean rms radius of the
 * buckets (times |q| for inner products), which makes gaps comparable across
 * queries and data sets. A search with threshold tau probes exactly the
 * buckets with gap <= tau, nearest first: near a boundary between clusters
 * many buckets are close and all get probed; deep inside one, few do. That
 * is the "saturating density" idea of the seed plan in measurable form: the
 * probability that a true neighbour lies in a bucket falls with its gap,
 * and we stop where what is left falls below what the target allows.
 *
 * Calibration measures that probability on the index's own data instead of
 * trusting constants: it takes up to 200 of its vectors as queries, finds
 * each one's exact 100 nearest other vectors (all queries together, in one
 * pass over the buckets: calib_batch), and records the gap of the bucket
 * holding each neighbour. Mean recall@k with
 * threshold tau is then the fraction of recorded (query, neighbour of rank < k)
 * pairs with gap <= tau, so the tau of a target t is that fraction's
 * t-quantile. To leave room for queries that differ from the data (held-out
 * queries), the quantile is taken at t + 0.3 (1 - t): the allowed miss rate
 * shrinks by 30%. Two tables are kept: ranks < 10 (k <= 10) and ranks < 100
 * (larger k). Maintenance recalibrates after a tenth of the vectors changed.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/topk.h"
#include "common/vec.h"
#include "node/l1_internal.h"

#define CALIB_QUERIES 200
#define CALIB_K 100
#define CALIB_SMALL_K 10
#define MISS_SHRINK 0.3f

static int float_cmp(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

float l1_calib_tau(const drift_l1 *l1, float target, uint32_t k)
{
	const float *g =
		k <= CALIB_SMALL_K ? l1->calib.gaps10 : l1->calib.gaps100;
	size_t n = k <= CALIB_SMALL_K ? l1->calib.n10 : l1->calib.n100;
	if (g == NULL || n == 0)
		return FLT_MAX; /* uncalibrated: probe everything */
	float t = target + (1.0f - target) * MISS_SHRINK;
	size_t idx = (size_t)ceilf(t * (float)n);
	if (idx == 0)
		idx = 1;
	if (idx > n)
		return FLT_MAX;
	return g[idx - 1] * 1.0001f + 1e-6f;
}

/* The metric key of q against every live slot's centroid; returns the
 * smallest. keys is indexed by slot. */
static float slot_keys(const drift_l1 *l1, const float *q, float *keys)
{
	const drift_vec_kernels *k = drift_vec();
	float kmin = FLT_MAX;
	for (uint32_t s = 0; s < l1->nslots; s++) {
		if (l1->b[s] == NULL)
			continue;
		const float *c = l1->cent + (size_t)s * l1->dim;
		keys[s] = l1->o.metric == DRIFT_METRIC_L2
				  ? sqrtf(k->l2sq(q, c, l1->dim))
				  : -k->dot(q, c, l1->dim);
		if (keys[s] < kmin)
			kmin = keys[s];
	}
	return kmin;
}

/* Row r of the sample: the r-th vector in slot order, into out. */
static int nth_vector(const drift_l1 *l1, uint64_t r, uint64_t *id, float *out)
{
	for (uint32_t s = 0; s < l1->nslots; s++) {
		const l1_bucket *b = l1->b[s];
		if (b == NULL)
			continue;
		if (r < b->n) {
			*id = b->ids[r];
			return l1_bucket_vectors(l1, b, (uint32_t)r, 1, out);
		}
		r -= b->n;
	}
	return DRIFT_EINTERNAL;
}

/* The calibration queries and their exact neighbours, found together in
 * one pass over the buckets: a bucket is scanned for every query whose
 * bound cannot rule it out, and within it l1_exact_scan reads only the
 * full vectors whose SQ8 bound could still enter that query's top (an
 * exhaustive exact search of 200 queries was most of the Janitor's work
 * on a large index, and read all of L1 from the vector store). */
typedef struct calib_batch {
	size_t nq;
	float *q;	/* nq * dim */
	uint64_t *self; /* the sampled vector's own id (left out) */
	float *keys;	/* nq * nslots: key of each query to each slot */
	float *kmin, *qs, *qnorm;
	uint32_t *first; /* each query's nearest slot, scanned first */
	drift_hit *heap; /* nq * CALIB_K */
	drift_topk *top;
	uint32_t *want; /* queries that must scan the current bucket */
	l1_exact_scratch sc;
} calib_batch;

static void batch_free(calib_batch *cb)
{
	drift_free(cb->q);
	drift_free(cb->self);
	drift_free(cb->keys);
	drift_free(cb->kmin);
	drift_free(cb->qs);
	drift_free(cb->qnorm);
	drift_free(cb->first);
	drift_free(cb->heap);
	drift_free(cb->top);
	drift_free(cb->want);
	l1_exact_scratch_free(&cb->sc);
}

/* Scans slot s for the nw queries in want (l1_exact_scan: the codes rule
 * out most rows, so few full vectors are read). */
static int scan_slot(const drift_l1 *l1, calib_batch *cb, uint32_t s,
		     const uint32_t *want, size_t nw)
{
	const l1_bucket *b = l1->b[s];
	for (size_t w = 0; w < nw; w++) {
		size_t i = want[w];
		int rv = l1_exact_scan(l1, b, cb->q + i * l1->dim, cb->qnorm[i],
				       cb->self[i], &cb->top[i], &cb->sc, NULL);
		if (rv != 0)
			return rv;
	}
	return 0;
}

/* Exact top CALIB_K of every query: its nearest bucket first (a tight
 * bound early), then every other bucket the bound cannot rule out. */
static int batch_search(const drift_l1 *l1, calib_batch *cb)
{
	for (size_t i = 0; i < cb->nq; i++) {
		uint32_t one = (uint32_t)i;
		int rv = scan_slot(l1, cb, cb->first[i], &one, 1);
		if (rv != 0)
			return rv;
	}
	for (uint32_t s = 0; s < l1->nslots; s++) {
		if (l1->b[s] == NULL)
			continue;
		size_t nw = 0;
		for (size_t i = 0; i < cb->nq; i++) {
			if (cb->first[i] == s)
				continue;
			float lb =
				l1_lower_bound(l1, cb->keys[i * l1->nslots + s],
					       s, cb->qnorm[i]);
			if (lb <= drift_topk_bound(&cb->top[i]))
				cb->want[nw++] = (uint32_t)i;
		}
		if (nw == 0)
			continue;
		int rv = scan_slot(l1, cb, s, cb->want, nw);
		if (rv != 0)
			return rv;
	}
	return 0;
}

int drift_l1_calibrate(drift_l1 *l1, drift_err *err)
{
	uint32_t dim = l1->dim;
	size_t nq =
		l1->count < CALIB_QUERIES ? (size_t)l1->count : CALIB_QUERIES;
	size_t ns = l1->nslots ? l1->nslots : 1;
	int rv = DRIFT_ENOMEM;
	calib_batch cb = {.nq = nq};
	float *gaps10 =
		drift_mallocarray(nq * CALIB_SMALL_K + 1, sizeof(float));
	float *gaps100 = drift_mallocarray(nq * CALIB_K + 1, sizeof(float));
	cb.q = drift_mallocarray(nq * dim + 1, sizeof(float));
	cb.self = drift_mallocarray(nq + 1, sizeof(uint64_t));
	cb.keys = drift_mallocarray(nq * ns + 1, sizeof(float));
	cb.kmin = drift_mallocarray(nq + 1, sizeof(float));
	cb.qs = drift_mallocarray(nq + 1, sizeof(float));
	cb.qnorm = drift_mallocarray(nq + 1, sizeof(float));
	cb.first = drift_mallocarray(nq + 1, sizeof(uint32_t));
	cb.heap = drift_mallocarray(nq * CALIB_K + 1, sizeof(drift_hit));
	cb.top = drift_mallocarray(nq + 1, sizeof(drift_topk));
	cb.want = drift_mallocarray(nq + 1, sizeof(uint32_t));
	if (!gaps10 || !gaps100 || !cb.q || !cb.self || !cb.keys || !cb.kmin ||
	    !cb.qs || !cb.qnorm || !cb.first || !cb.heap || !cb.top || !cb.want)
		goto fail;

	double scale = 0;
	for (uint32_t s = 0; s < l1->nslots; s++)
		if (l1->b[s] != NULL)
			scale += l1->b[s]->rms;
	scale = l1->live > 0 ? scale / l1->live : 1.0;
	if (!(scale > 0))
		scale = 1.0;

	for (size_t i = 0; i < nq; i++) {
		float *q = cb.q + i * dim, *keys = cb.keys + i * ns;
		uint64_t r = drift_rand_below(&l1->rng, l1->count);
		rv = nth_vector(l1, r, &cb.self[i], q);
		if (rv != 0)
			goto fail;
		cb.kmin[i] = slot_keys(l1, q, keys);
		cb.first[i] = 0;
		for (uint32_t s = 0; s < l1->nslots; s++)
			if (l1->b[s] != NULL && keys[s] == cb.kmin[i]) {
				cb.first[i] = s;
				break;
			}
		cb.qnorm[i] = sqrtf(drift_vec()->dot(q, q, dim));
		float qs = (float)scale;
		if (l1->o.metric != DRIFT_METRIC_L2)
			qs *= cb.qnorm[i];
		cb.qs[i] = qs > 0 ? qs : 1.0f;
		drift_topk_init(&cb.top[i], cb.heap + i * CALIB_K, CALIB_K);
	}
	rv = batch_search(l1, &cb);
	if (rv != 0)
		goto fail;

	size_t n10 = 0, n100 = 0;
	for (size_t i = 0; i < nq; i++) {
		size_t nh = drift_topk_sort(&cb.top[i]);
		const drift_hit *hits = cb.heap + i * CALIB_K;
		const float *keys = cb.keys + i * ns;
		for (size_t h = 0, rank = 0; h < nh; h++) {
			drift_kv_loc loc;
			if (drift_kv_get(&l1->kv, hits[h].id, &loc) != 0)
				continue;
			float gap = (keys[loc.bucket] - cb.kmin[i]) / cb.qs[i];
			if (rank < CALIB_SMALL_K)
				gaps10[n10++] = gap;
			gaps100[n100++] = gap;
			rank++;
		}
	}
	qsort(gaps10, n10, sizeof(float), float_cmp);
	qsort(gaps100, n100, sizeof(float), float_cmp);

	pthread_rwlock_wrlock(&l1->lock);
	float *old10 = l1->calib.gaps10, *old100 = l1->calib.gaps100;
	l1->calib = (l1_calib){gaps10, gaps100, n10, n100, (float)scale};
	l1->changed_since_calib = 0;
	pthread_rwlock_unlock(&l1->lock);
	drift_free(old10);
	drift_free(old100);
	batch_free(&cb);
	return 0;
fail:
	drift_free(gaps10);
	drift_free(gaps100);
	batch_free(&cb);
	return drift_err_set(err, rv, "L1 recall calibration");
}
