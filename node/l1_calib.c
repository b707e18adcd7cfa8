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
 * each one's exact 100 nearest other vectors (searched among the 64
 * buckets nearest to it, and among all of them when a neighbour found sits
 * past half the gap of the 64th: on SIFT, 400,000 rows, that fallback never
 * ran, and calibration fell from a quarter of an ingest's CPU to under 2%),
 * and records the gap of the bucket holding each neighbour. Mean recall@k with
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
#include "common/vec.h"
#include "node/l1_internal.h"

#define CALIB_QUERIES 200
#define CALIB_K 100
#define CALIB_SMALL_K 10
#define MISS_SHRINK 0.3f
/* The exact neighbours of a calibration query are searched for among the
 * CALIB_PROBES buckets nearest to it first; see drift_l1_calibrate. */
#define CALIB_PROBES 64

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

/* The largest gap of the buckets holding hits. */
static float max_gap(const drift_l1 *l1, const drift_hit *hits, size_t nh,
		     const float *keys, float kmin, float qs)
{
	float g = 0;
	for (size_t h = 0; h < nh; h++) {
		drift_kv_loc loc;
		if (drift_kv_get(&l1->kv, hits[h].id, &loc) != 0)
			continue;
		float x = (keys[loc.bucket] - kmin) / qs;
		if (x > g)
			g = x;
	}
	return g;
}

/* The gap of the CALIB_PROBES-th nearest bucket; pick is scratch for
 * nslots floats. */
static float nth_gap(const drift_l1 *l1, const float *keys, float kmin,
		     float qs, float *pick)
{
	size_t n = 0;
	for (uint32_t s = 0; s < l1->nslots; s++)
		if (l1->b[s] != NULL)
			pick[n++] = keys[s];
	if (n < CALIB_PROBES)
		return FLT_MAX;
	qsort(pick, n, sizeof(float), float_cmp);
	return (pick[CALIB_PROBES - 1] - kmin) / qs;
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

int drift_l1_calibrate(drift_l1 *l1, drift_err *err)
{
	uint32_t dim = l1->dim;
	size_t nq =
		l1->count < CALIB_QUERIES ? (size_t)l1->count : CALIB_QUERIES;
	int rv = DRIFT_ENOMEM;
	float *gaps10 =
		drift_mallocarray(nq * CALIB_SMALL_K + 1, sizeof(float));
	float *gaps100 = drift_mallocarray(nq * CALIB_K + 1, sizeof(float));
	float *keys = drift_mallocarray(l1->nslots + 1, sizeof(float));
	float *pick = drift_mallocarray(l1->nslots + 1, sizeof(float));
	drift_hit *hits = drift_mallocarray(CALIB_K + 1, sizeof(drift_hit));
	float *q = drift_mallocarray(dim, sizeof(float));
	if (!gaps10 || !gaps100 || !keys || !pick || !hits || !q)
		goto fail;

	double scale = 0;
	for (uint32_t s = 0; s < l1->nslots; s++)
		if (l1->b[s] != NULL)
			scale += l1->b[s]->rms;
	scale = l1->live > 0 ? scale / l1->live : 1.0;
	if (!(scale > 0))
		scale = 1.0;

	size_t n10 = 0, n100 = 0;
	drift_l1_search_opts so = {.k = CALIB_K + 1, .exact = true};
	for (size_t i = 0; i < nq; i++) {
		uint64_t self = 0;
		uint64_t r = drift_rand_below(&l1->rng, l1->count);
		rv = nth_vector(l1, r, &self, q);
		if (rv != 0)
			goto fail;
		float kmin = slot_keys(l1, q, keys);
		float qs = (float)scale;
		if (l1->o.metric != DRIFT_METRIC_L2)
			qs *= sqrtf(drift_vec()->dot(q, q, dim));
		if (!(qs > 0))
			qs = 1.0f;
		/* First the exact search within the CALIB_PROBES nearest
		 * buckets (a scan of everything for each of the queries made
		 * calibration most of the Janitor's work on a large index).
		 * If a neighbour found lies further than half the gap of the
		 * last bucket probed, the neighbourhood reaches far and the
		 * search is repeated over every bucket. */
		size_t nh;
		so.nprobe = l1->live > 2 * CALIB_PROBES ? CALIB_PROBES : 0;
		rv = drift_l1_search(l1, q, &so, hits, &nh, NULL);
		if (rv != 0)
			goto fail;
		if (so.nprobe > 0 &&
		    max_gap(l1, hits, nh, keys, kmin, qs) >
			    0.5f * nth_gap(l1, keys, kmin, qs, pick)) {
			so.nprobe = 0;
			rv = drift_l1_search(l1, q, &so, hits, &nh, NULL);
			if (rv != 0)
				goto fail;
		}
		size_t rank = 0;
		for (size_t h = 0; h < nh && rank < CALIB_K; h++) {
			if (hits[h].id == self)
				continue; /* leave-one-out */
			drift_kv_loc loc;
			if (drift_kv_get(&l1->kv, hits[h].id, &loc) != 0)
				continue;
			float gap = (keys[loc.bucket] - kmin) / qs;
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
	drift_free(keys);
	drift_free(pick);
	drift_free(hits);
	drift_free(q);
	return 0;
fail:
	drift_free(gaps10);
	drift_free(gaps100);
	drift_free(keys);
	drift_free(pick);
	drift_free(hits);
	drift_free(q);
	return drift_err_set(err, rv, "L1 recall calibration");
}
