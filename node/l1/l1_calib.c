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
 *
 * On L2 the rule is adaptive instead (l1.c's probe_next): the threshold
 * scales with each query's own radius r, the calib_rank-th best distance
 * found so far, and the gap of a bucket is its boundary hyperplane's
 * distance from the query, h(b), in units of r (Quake's APS, OSDI'25,
 * reasons on the same geometry; DARTH, SIGMOD'26, ends each query on its
 * own progress). A fixed key gap could not carry over from the sample (the
 * index's own vectors, whose neighbours are near) to held-out queries,
 * whose neighbours are farther: on 1M SIFT target 0.95 measured 0.974
 * while a 200,000-row subset held the band (docs/search-profile.md). A
 * radius measured per query follows that difference. The gap recorded for
 * a neighbour is then the least tau at which the replayed search reaches
 * its bucket (adaptive_gaps), and the quantile is taken at t itself.
 *
 * Memory follows content (issue 22). A table keeps at most CALIB_TABLE
 * quantiles of its sorted gaps, each rounded up to the next kept one, so a
 * threshold read from it is never below the exact one (at most 1/CALIB_TABLE
 * of the pairs more are probed). The sample (queries with their exact
 * neighbour lists, ~1.9 KB a query at 64-d) is what makes a refresh cheap
 * on a large index; on a small one it would outweigh the vectors it
 * samples (380 KB against 51 KB for 200 64-d vectors), so it is kept only
 * while it is at most an eighth of the vectors' bytes and otherwise freed
 * after calibration: the next one draws every query anew, which on a small
 * index costs little.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/topk.h"
#include "common/vec.h"
#include "node/l1/l1_internal.h"

#define CALIB_QUERIES 200
#define CALIB_K 100
#define CALIB_SMALL_K 10
#define MISS_SHRINK 0.3f
/* The same for the adaptive rule (L2), whose radius follows each query:
 * there the measured recall runs above the replayed one (a search's radius
 * comes from SQ8 distances and from every row it scanned, never below the
 * replay's, and whole buckets come with each probe), so the quantile is
 * taken a little below t. Measured (docs/search-profile.md): at 0 targets
 * 0.90 / 0.95 / 0.99 gave 0.921 / 0.960 / 0.989 on 1M SIFT and 0.918 /
 * 0.962 / 0.995 on Fashion-MNIST; at -0.1, 0.911 / 0.958 / 0.989 and
 * 0.908 / 0.958 / 0.994. */
#define ADAPT_MISS_SHRINK -0.1f
/* Sample queries drawn anew at each refresh besides the stale ones. */
#define CALIB_ROTATE (CALIB_QUERIES / 10)
/* Quantiles kept of a gap table. */
#define CALIB_TABLE 2048
/* The sample is kept while it is at most 1/CALIB_KEEP_RATIO of the vectors'
 * bytes. */
#define CALIB_KEEP_RATIO 8

static int float_cmp(const void *a, const void *b)
{
	float x = *(const float *)a, y = *(const float *)b;
	return x < y ? -1 : x > y;
}

size_t l1_calib_rank(uint32_t k)
{
	return k <= CALIB_SMALL_K ? CALIB_SMALL_K : CALIB_K;
}

float l1_calib_tau(const drift_l1 *l1, float target, uint32_t k)
{
	const float *g =
		k <= CALIB_SMALL_K ? l1->calib.gaps10 : l1->calib.gaps100;
	size_t n = k <= CALIB_SMALL_K ? l1->calib.n10 : l1->calib.n100;
	if (g == NULL || n == 0)
		return FLT_MAX; /* uncalibrated: probe everything */
	float shrink = l1->o.metric == DRIFT_METRIC_L2 ? ADAPT_MISS_SHRINK
						       : MISS_SHRINK;
	float t = target + (1.0f - target) * shrink;
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

/* The working state of one calibration: each query's key to every slot,
 * its nearest slot, and which queries must scan the current bucket. */
typedef struct calib_batch {
	size_t nq;
	float *keys; /* nq * nslots: key of each query to each slot */
	float *kmin, *qs;
	uint32_t *first; /* each query's nearest slot, scanned first */
	uint32_t *want;	 /* queries that must scan the current bucket */
	l1_exact_scratch sc;
} calib_batch;

static void batch_free(calib_batch *cb)
{
	drift_free(cb->keys);
	drift_free(cb->kmin);
	drift_free(cb->qs);
	drift_free(cb->first);
	drift_free(cb->want);
	l1_exact_scratch_free(&cb->sc);
}

void l1_sample_free(l1_sample *sm)
{
	drift_free(sm->q);
	drift_free(sm->self);
	drift_free(sm->qnorm);
	drift_free(sm->heap);
	drift_free(sm->top);
	drift_free(sm->stale);
	memset(sm, 0, sizeof(*sm));
}

static int sample_alloc(l1_sample *sm, size_t nq, uint32_t dim)
{
	l1_sample_free(sm);
	sm->q = drift_mallocarray(nq * dim + 1, sizeof(float));
	sm->self = drift_mallocarray(nq + 1, sizeof(uint64_t));
	sm->qnorm = drift_mallocarray(nq + 1, sizeof(float));
	sm->heap = drift_mallocarray(nq * CALIB_K + 1, sizeof(drift_hit));
	sm->top = drift_mallocarray(nq + 1, sizeof(drift_topk));
	sm->stale = drift_calloc(nq + 1, sizeof(bool));
	if (!sm->q || !sm->self || !sm->qnorm || !sm->heap || !sm->top ||
	    !sm->stale) {
		l1_sample_free(sm);
		return DRIFT_ENOMEM;
	}
	sm->nq = nq;
	return 0;
}

/* Scans slot s for the nw sample queries in want (l1_exact_scan: the
 * codes rule out most rows, so few full vectors are read). */
static int scan_slot(const drift_l1 *l1, calib_batch *cb, uint32_t s,
		     const uint32_t *want, size_t nw)
{
	const l1_sample *sm = &l1->sample;
	const l1_bucket *b = l1->b[s];
	for (size_t w = 0; w < nw; w++) {
		size_t i = want[w];
		int rv = l1_exact_scan(l1, b, sm->q + i * l1->dim, sm->qnorm[i],
				       sm->self[i], &sm->top[i], &cb->sc);
		if (rv != 0)
			return rv;
	}
	return 0;
}

/* Exact top CALIB_K of the sample queries marked in redo, all together in
 * one pass over the buckets: a query's nearest bucket first (a tight
 * bound early), then every other bucket its bound cannot rule out. */
static int batch_search(const drift_l1 *l1, calib_batch *cb, const bool *redo)
{
	for (size_t i = 0; i < cb->nq; i++) {
		if (!redo[i])
			continue;
		uint32_t one = (uint32_t)i;
		int rv = scan_slot(l1, cb, cb->first[i], &one, 1);
		if (rv != 0)
			return rv;
	}
	const l1_sample *sm = &l1->sample;
	for (uint32_t s = 0; s < l1->nslots; s++) {
		if (l1->b[s] == NULL)
			continue;
		size_t nw = 0;
		for (size_t i = 0; i < cb->nq; i++) {
			if (!redo[i] || cb->first[i] == s)
				continue;
			float lb =
				l1_lower_bound(l1, cb->keys[i * l1->nslots + s],
					       s, sm->qnorm[i]);
			if (lb <= drift_topk_bound(&sm->top[i]))
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

/* Sorts the n gaps of g and keeps m = min(n, CALIB_TABLE) of them in place:
 * entry j becomes the ceil((j + 1) n / m)-th smallest. l1_calib_tau's index
 * ceil(t m) then reads a gap at or above the exact ceil(t n)-th one.
 * Returns m. */
static size_t gaps_table(float *g, size_t n)
{
	qsort(g, n, sizeof(float), float_cmp);
	if (n <= CALIB_TABLE)
		return n;
	size_t m = CALIB_TABLE;
	for (size_t j = 0; j < m; j++)
		g[j] = g[((j + 1) * n + m - 1) / m - 1];
	return m;
}

/* The sample's resident bytes and whether they stay after calibration. */
static bool sample_kept(const drift_l1 *l1, size_t nq)
{
	size_t per = (size_t)l1->dim * sizeof(float) + sizeof(uint64_t) +
		     sizeof(float) + CALIB_K * sizeof(drift_hit) +
		     sizeof(drift_topk) + sizeof(bool);
	return nq * per * CALIB_KEEP_RATIO <=
	       (size_t)l1->count * l1->dim * sizeof(float);
}

/* A located neighbour of a sample query, for adaptive_gaps. */
typedef struct calib_nbr {
	float h;	 /* its bucket's hyperplane distance (0: the nearest) */
	float d;	 /* its distance to the query */
	uint32_t bucket; /* its slot */
	uint32_t rank;	 /* among the located neighbours, by distance */
} calib_nbr;

static int nbr_cmp(const void *a, const void *b)
{
	const calib_nbr *x = a, *y = b;
	if (x->h != y->h)
		return x->h < y->h ? -1 : 1;
	if (x->bucket != y->bucket)
		return x->bucket < y->bucket ? -1 : 1;
	return x->rank < y->rank ? -1 : x->rank > y->rank;
}

/* The radius the search would have with the neighbours marked in found
 * (by rank, nb distances ascending in d): the R-th found one's distance;
 * with fewer found, a search has seen none of the others, so its R-th
 * best lies beyond the farthest listed (full list) or is none yet. */
static float found_radius(const float *d, const bool *found, size_t m,
			  size_t rank_r, bool full)
{
	size_t c = 0;
	for (size_t j = 0; j < m; j++)
		if (found[j] && ++c == rank_r)
			return d[j];
	return full && m > 0 ? d[m - 1] : INFINITY;
}

/* The gaps of the adaptive rule (L2; l1.c's probe_next) for one sample
 * query: the least tau at which a search probes each neighbour's bucket.
 * The search probes the nearest bucket, then the others in order of h
 * while h <= tau * r, r the rank_r-th best distance so far; replayed on
 * the listed neighbours (sorted, nh, by distance), a bucket is probed iff
 * tau is at least the greatest h / r met on the way to it, where only
 * buckets holding neighbours change r or raise that maximum (an empty
 * bucket in between has a smaller h and the same r). Writes the gap of
 * each located neighbour of rank < rank_r into out; returns how many.
 * nb, dist and found: room for nh. */
static size_t adaptive_gaps(const drift_l1 *l1, const float *keys,
			    uint32_t first, const drift_hit *sorted, size_t nh,
			    size_t rank_r, calib_nbr *nb, float *dist,
			    bool *found, float *out)
{
	const drift_vec_kernels *k = drift_vec();
	const float *c0 = l1->cent + (size_t)first * l1->dim;
	float k0 = keys[first];
	size_t m = 0;
	for (size_t h = 0; h < nh; h++) {
		drift_kv_loc loc;
		if (drift_kv_get(&l1->kv, sorted[h].id, &loc) != 0)
			continue;
		uint32_t s = loc.bucket;
		float hb = 0;
		if (s != first) {
			float dc = sqrtf(k->l2sq(l1->cent + (size_t)s * l1->dim,
						 c0, l1->dim));
			float num = (keys[s] - k0) * (keys[s] + k0);
			hb = num > 0 ? num / (2.0f * dc) : 0.0f;
			if (isnan(hb))
				hb = INFINITY;
		}
		float d = sorted[h].distance;
		dist[m] = sqrtf(d > 0 ? d : 0);
		found[m] = s == first;
		nb[m] = (calib_nbr){s == first ? -1.0f : hb, dist[m], s,
				    (uint32_t)m};
		m++;
	}
	qsort(nb, m, sizeof(calib_nbr), nbr_cmp);
	bool full = nh == CALIB_K;
	size_t nout = 0;
	float crit = 0;
	for (size_t j = 0; j < m;) {
		size_t e = j;
		while (e < m && nb[e].bucket == nb[j].bucket)
			e++;
		if (nb[j].h >= 0) {
			float r = found_radius(dist, found, m, rank_r, full);
			float x = nb[j].h == 0 ? 0
				  : r > 0      ? nb[j].h / r
					       : INFINITY;
			if (x > crit)
				crit = x;
		}
		for (size_t g = j; g < e; g++) {
			found[nb[g].rank] = true;
			if (nb[g].rank < rank_r)
				out[nout++] = nb[j].h >= 0 ? crit : 0.0f;
		}
		j = e;
	}
	return nout;
}

static int hit_cmp(const void *a, const void *b)
{
	const drift_hit *x = a, *y = b;
	if (x->distance != y->distance)
		return x->distance < y->distance ? -1 : 1;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* The calibration: (re)draws the sample queries that need it (all when
 * full, else the stale ones and the next CALIB_ROTATE in turn), finds
 * their exact neighbours, then measures every query's gaps. */
/* An index of one bucket (or none) has nothing to calibrate: a search
 * probes the nearest bucket whatever its threshold, and that is the only
 * one. Its tables go (uncalibrated, a search probes every bucket: the same
 * one) and so does the sample; the first refresh after a split measures
 * them (a split moves about half the vectors, which calls for one). Most
 * collections of a node with many small tenants are one bucket: measuring
 * them took most of a restart's time (2,000 of 200 vectors: 200 exact
 * top-100 searches each). */
static void uncalibrate(drift_l1 *l1)
{
	l1_sample_free(&l1->sample);
	pthread_rwlock_wrlock(&l1->lock);
	float *old10 = l1->calib.gaps10, *old100 = l1->calib.gaps100;
	l1->calib = (l1_calib){0};
	l1->changed_since_calib = 0;
	pthread_rwlock_unlock(&l1->lock);
	drift_free(old10);
	drift_free(old100);
}

static int calibrate(drift_l1 *l1, bool full, drift_err *err)
{
	uint32_t dim = l1->dim;
	if (l1->live <= 1) {
		uncalibrate(l1);
		return 0;
	}
	size_t nq =
		l1->count < CALIB_QUERIES ? (size_t)l1->count : CALIB_QUERIES;
	size_t ns = l1->nslots ? l1->nslots : 1;
	l1_sample *sm = &l1->sample;
	int rv = DRIFT_ENOMEM;
	calib_batch cb = {.nq = nq};
	bool *redo = drift_calloc(nq + 1, sizeof(bool));
	drift_hit *sorted = drift_mallocarray(CALIB_K, sizeof(drift_hit));
	calib_nbr *nb = drift_mallocarray(CALIB_K, sizeof(calib_nbr));
	float *dist = drift_mallocarray(CALIB_K, sizeof(float));
	bool *found = drift_mallocarray(CALIB_K, sizeof(bool));
	float *gaps10 =
		drift_mallocarray(nq * CALIB_SMALL_K + 1, sizeof(float));
	float *gaps100 = drift_mallocarray(nq * CALIB_K + 1, sizeof(float));
	cb.keys = drift_mallocarray(nq * ns + 1, sizeof(float));
	cb.kmin = drift_mallocarray(nq + 1, sizeof(float));
	cb.qs = drift_mallocarray(nq + 1, sizeof(float));
	cb.first = drift_mallocarray(nq + 1, sizeof(uint32_t));
	cb.want = drift_mallocarray(nq + 1, sizeof(uint32_t));
	if (!redo || !sorted || !nb || !dist || !found || !gaps10 || !gaps100 ||
	    !cb.keys || !cb.kmin || !cb.qs || !cb.first || !cb.want)
		goto fail;
	if (full || sm->nq != nq) {
		if ((rv = sample_alloc(sm, nq, dim)) != 0)
			goto fail;
		for (size_t i = 0; i < nq; i++)
			redo[i] = true;
	} else {
		for (size_t i = 0; i < nq; i++)
			redo[i] = sm->stale[i];
		for (size_t r = 0; r < CALIB_ROTATE && nq > 0; r++) {
			redo[sm->next] = true;
			sm->next = (sm->next + 1) % nq;
		}
	}
	for (size_t i = 0; i < nq; i++) {
		if (!redo[i])
			continue;
		float *q = sm->q + i * dim;
		uint64_t r = drift_rand_below(&l1->rng, l1->count);
		rv = nth_vector(l1, r, &sm->self[i], q);
		if (rv != 0) {
			sm->nq = 0; /* half drawn: draw all next time */
			goto fail;
		}
		sm->qnorm[i] = sqrtf(drift_vec()->dot(q, q, dim));
		sm->stale[i] = false;
		drift_topk_init(&sm->top[i], sm->heap + i * CALIB_K, CALIB_K);
	}

	double scale = 0;
	for (uint32_t s = 0; s < l1->nslots; s++)
		if (l1->b[s] != NULL)
			scale += l1->b[s]->rms;
	scale = l1->live > 0 ? scale / l1->live : 1.0;
	if (!(scale > 0))
		scale = 1.0;
	for (size_t i = 0; i < nq; i++) {
		float *keys = cb.keys + i * ns;
		cb.kmin[i] = slot_keys(l1, sm->q + i * dim, keys);
		cb.first[i] = 0;
		for (uint32_t s = 0; s < l1->nslots; s++)
			if (l1->b[s] != NULL && keys[s] == cb.kmin[i]) {
				cb.first[i] = s;
				break;
			}
		float qs = (float)scale;
		if (l1->o.metric != DRIFT_METRIC_L2)
			qs *= sm->qnorm[i];
		cb.qs[i] = qs > 0 ? qs : 1.0f;
	}
	rv = batch_search(l1, &cb, redo);
	if (rv != 0) {
		sm->nq = 0;
		goto fail;
	}

	size_t n10 = 0, n100 = 0;
	for (size_t i = 0; i < nq; i++) {
		/* A sorted copy: the heap itself goes on taking new vectors
		 * (l1_calib_note). */
		size_t nh = sm->top[i].n;
		memcpy(sorted, sm->top[i].h, nh * sizeof(drift_hit));
		qsort(sorted, nh, sizeof(drift_hit), hit_cmp);
		const float *keys = cb.keys + i * ns;
		if (l1->o.metric == DRIFT_METRIC_L2) {
			n10 += adaptive_gaps(l1, keys, cb.first[i], sorted, nh,
					     CALIB_SMALL_K, nb, dist, found,
					     gaps10 + n10);
			n100 += adaptive_gaps(l1, keys, cb.first[i], sorted, nh,
					      CALIB_K, nb, dist, found,
					      gaps100 + n100);
			continue;
		}
		for (size_t h = 0, rank = 0; h < nh; h++) {
			drift_kv_loc loc;
			if (drift_kv_get(&l1->kv, sorted[h].id, &loc) != 0)
				continue;
			float gap = (keys[loc.bucket] - cb.kmin[i]) / cb.qs[i];
			if (rank < CALIB_SMALL_K)
				gaps10[n10++] = gap;
			gaps100[n100++] = gap;
			rank++;
		}
	}
	n10 = gaps_table(gaps10, n10);
	n100 = gaps_table(gaps100, n100);
	/* Shrunk to what is kept (a shrinking realloc that fails leaves the
	 * block as it was). */
	float *g = drift_realloc(gaps100, (n100 + 1) * sizeof(float));
	if (g != NULL)
		gaps100 = g;
	g = drift_realloc(gaps10, (n10 + 1) * sizeof(float));
	if (g != NULL)
		gaps10 = g;
	if (!sample_kept(l1, nq))
		l1_sample_free(sm);

	pthread_rwlock_wrlock(&l1->lock);
	float *old10 = l1->calib.gaps10, *old100 = l1->calib.gaps100;
	l1->calib = (l1_calib){gaps10, gaps100, n10, n100, (float)scale};
	l1->changed_since_calib = 0;
	pthread_rwlock_unlock(&l1->lock);
	drift_free(old10);
	drift_free(old100);
	drift_free(redo);
	drift_free(sorted);
	drift_free(nb);
	drift_free(dist);
	drift_free(found);
	batch_free(&cb);
	return 0;
fail:
	drift_free(redo);
	drift_free(sorted);
	drift_free(nb);
	drift_free(dist);
	drift_free(found);
	drift_free(gaps10);
	drift_free(gaps100);
	batch_free(&cb);
	return drift_err_set(err, rv, "L1 recall calibration");
}

int drift_l1_calibrate(drift_l1 *l1, drift_err *err)
{
	return calibrate(l1, true, err);
}

int l1_calib_refresh(drift_l1 *l1, drift_err *err)
{
	return calibrate(l1, false, err);
}

static int id_query_cmp(const void *a, const void *b)
{
	const drift_hit *x = a, *y = b;
	return x->id < y->id ? -1 : x->id > y->id;
}

/* Whether id is among the (id, query) pairs of sorted; the first index. */
static size_t find_id(const drift_hit *pairs, size_t n, uint64_t id)
{
	size_t lo = 0, hi = n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (pairs[mid].id < id)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* A listed neighbour left: the others are then exactly the nearest that
 * many, so the list shrinks by one (its bound stays the last one's) rather
 * than going stale; below half of CALIB_K it is drawn again. */
static void drop_neighbour(l1_sample *sm, size_t i, uint64_t id)
{
	drift_topk *t = &sm->top[i];
	drift_hit keep[CALIB_K];
	size_t m = 0;
	for (size_t h = 0; h < t->n; h++)
		if (t->h[h].id != id)
			keep[m++] = t->h[h];
	if (m == t->n)
		return;
	drift_topk_init(t, sm->heap + i * CALIB_K, m);
	for (size_t h = 0; h < m; h++)
		drift_topk_push(t, keep[h]);
	if (m < CALIB_K / 2)
		sm->stale[i] = true;
}

size_t l1_calib_note_room(const drift_l1 *l1)
{
	const l1_sample *sm = &l1->sample;
	size_t np = 0;
	for (size_t i = 0; i < sm->nq; i++)
		np += sm->top[i].n + 1;
	return np;
}

void l1_calib_note(drift_l1 *l1, const uint64_t *ids, const float *x,
		   const uint32_t *rows, size_t nrows, size_t nids,
		   const uint64_t *del, size_t ndel, drift_hit *pairs)
{
	l1_sample *sm = &l1->sample;
	if (sm->nq == 0)
		return;
	/* Every id whose vector changed or left: a query that is one of
	 * them must be drawn again, a list that holds one drops it. The
	 * (id, query) pairs of all lists, sorted, answer that by binary
	 * search. */
	size_t np = 0;
	np = 0;
	for (size_t i = 0; i < sm->nq; i++) {
		/* The query rides in the distance field: -(i + 1) for its
		 * own id, i for a listed one. */
		pairs[np++] = (drift_hit){sm->self[i], -(float)(i + 1)};
		for (size_t h = 0; h < sm->top[i].n; h++)
			pairs[np++] = (drift_hit){sm->top[i].h[h].id, (float)i};
	}
	qsort(pairs, np, sizeof(drift_hit), id_query_cmp);
	for (size_t g = 0; g < nids + ndel; g++) {
		uint64_t id = g < nids ? ids[g] : del[g - nids];
		for (size_t p = find_id(pairs, np, id);
		     p < np && pairs[p].id == id; p++) {
			float f = pairs[p].distance;
			if (f < 0)
				sm->stale[(size_t)(-f) - 1] = true;
			else
				drop_neighbour(sm, (size_t)f, id);
		}
	}
	/* The new vectors enter the lists of the others: a block of rows
	 * at a time for every query, so that the rows are read from memory
	 * once rather than once per query. */
	uint32_t dim = l1->dim;
	size_t blk = 65536 / (dim * sizeof(float)) + 1;
	for (size_t r0 = 0; r0 < nrows; r0 += blk) {
		size_t r1 = nrows - r0 < blk ? nrows : r0 + blk;
		for (size_t i = 0; i < sm->nq; i++) {
			if (sm->stale[i])
				continue;
			const float *q = sm->q + i * dim;
			drift_topk *t = &sm->top[i];
			for (size_t r = r0; r < r1; r++) {
				size_t row = rows[r];
				float d = drift_metric_dist(drift_vec(),
							    l1->o.metric, q,
							    x + row * dim, dim);
				if (d < drift_topk_bound(t))
					drift_topk_push(
						t, (drift_hit){ids[row], d});
			}
		}
	}
}
