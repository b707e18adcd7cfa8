/*
 * The L1 index: structure, apply (upserts and deletes), build and search.
 * Maintenance is in l1_maint.c, recall calibration in l1_calib.c.
 *
 * Publication: a writer prepares new bucket versions without any lock, then
 * swaps them in under the write side of l1->lock; searches hold the read
 * side for their whole run. Old versions are freed after the swap, when no
 * search can hold them. (Epoch-based reclamation, which removes the read
 * lock, comes with the L0 engine.) The same holds for full vectors in the
 * vector store (node/storage/vstore.h): rows whose vector left the index
 * (deleted or replaced) are released only after the swap, so a reader never
 * reads a row that is being reused. Moves between buckets keep their row.
 */
#include "node/l1/l1.h"

#include <assert.h>
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/abuf.h"
#include "common/alloc.h"
#include "common/topk.h"
#include "common/vec.h"
#include "node/codec/sq8.h"
#include "node/l1/kmeans.h"
#include "node/l1/l1_internal.h"

/* ---- Buckets ------------------------------------------------------------ */

int l1_bucket_alloc(const drift_l1 *l1, uint32_t n, uint32_t nnew,
		    const float *centroid, l1_bucket **out)
{
	uint32_t dim = l1->dim;
	l1_bucket *b = drift_calloc(1, sizeof(*b));
	if (b == NULL)
		return DRIFT_ENOMEM;
	b->n = n;
	b->nnew = nnew;
	b->centroid =
		drift_aligned_alloc(DRIFT_ALIGN_CACHE, dim * sizeof(float));
	b->sum = drift_calloc(dim, sizeof(double));
	b->ids = drift_mallocarray(n, sizeof(uint64_t));
	b->versions = drift_mallocarray(n, sizeof(uint64_t));
	b->rows = drift_mallocarray(n, sizeof(uint32_t));
	b->codes = drift_aligned_alloc(DRIFT_ALIGN_CACHE, (size_t)n * dim);
	b->qmin = drift_mallocarray(dim, sizeof(float));
	b->qscale = drift_mallocarray(dim, sizeof(float));
	if (nnew > 0)
		b->newvecs = drift_aligned_alloc(
			DRIFT_ALIGN_CACHE, (size_t)nnew * dim * sizeof(float));
	bool bits_ok = true;
	if (l1->rq != NULL) {
		b->bits = drift_calloc(1, drift_rabitq_code_bytes(l1->pdim, n));
		b->bfac = drift_mallocarray(drift_rabitq_fac_count(n) + 1,
					    sizeof(float));
		b->pcent = drift_mallocarray(l1->pdim, sizeof(float));
		bits_ok = b->bits && b->bfac && b->pcent;
	}
	if (!b->centroid || !b->sum || !b->ids || !b->versions || !b->rows ||
	    !b->codes || !b->qmin || !b->qscale || (nnew > 0 && !b->newvecs) ||
	    !bits_ok) {
		l1_bucket_free(b);
		return DRIFT_ENOMEM;
	}
	memcpy(b->centroid, centroid, dim * sizeof(float));
	*out = b;
	return 0;
}

int l1_bucket_vectors(const drift_l1 *l1, const l1_bucket *b, uint32_t from,
		      uint32_t n, float *out)
{
	return drift_vstore_read(l1->vs, b->rows + from, n, out);
}

/* A bound on |x - decode(code(x))| for every x in the trained range: half
 * a step per dimension, plus a millionth of the magnitude for float
 * rounding (that part alone into *rounding, when not NULL). +inf for a
 * range capped by drift_sq8_train (values near FLT_MAX): there the top of
 * the range is clamped. */
static float sq8_error_bound(const float *min, const float *scale, uint32_t dim,
			     float *rounding)
{
	double e = 0, r = 0;
	for (uint32_t j = 0; j < dim; j++) {
		double s = scale[j], top = fabs((double)min[j]) + 255.0 * s;
		if (255.0 * s >= (double)FLT_MAX * 0.99)
			return INFINITY;
		double ej = 0.5 * s + 1e-6 * top;
		e += ej * ej;
		r += 1e-12 * top * top;
	}
	if (rounding != NULL)
		*rounding = (float)sqrt(r);
	return (float)(sqrt(e) * 1.0001);
}

/* RaBitQ codes of rows [from, from + n) of b from their vectors v (n *
 * dim); from 0 also rotates the centroid. Writer thread (its scratch). */
static void rabitq_encode_rows(drift_l1 *l1, l1_bucket *b, const float *v,
			       uint32_t from, uint32_t n)
{
	if (l1->rq == NULL)
		return;
	float *t = l1->rq_scratch;
	if (from == 0)
		drift_rabitq_rotate(l1->rq, b->centroid, b->pcent);
	for (uint32_t r = 0; r < n; r++) {
		drift_rabitq_rotate(l1->rq, v + (size_t)r * l1->dim, t);
		for (uint32_t j = 0; j < l1->pdim; j++)
			t[j] -= b->pcent[j];
		drift_rabitq_encode(l1->pdim, t, b->bits, from + r, b->bfac);
	}
}

void l1_bucket_copy_codes(const drift_l1 *l1, l1_bucket *dst, uint32_t dr,
			  const l1_bucket *src, uint32_t sr)
{
	memcpy(dst->codes + (size_t)dr * l1->dim,
	       src->codes + (size_t)sr * l1->dim, l1->dim);
	if (l1->rq == NULL)
		return;
	drift_rabitq_copy(l1->pdim, dst->bits, dst->bfac, dr, src->bits,
			  src->bfac, sr);
}

int l1_bucket_finish(drift_l1 *l1, l1_bucket *b)
{
	uint32_t dim = l1->dim;
	const drift_vec_kernels *k = drift_vec();
	assert(b->nnew <= b->n);
	uint32_t nold = b->n - b->nnew;
	/* All the members' vectors, for the statistics and the codes. */
	float *v = b->newvecs;
	if (nold > 0) {
		v = drift_aligned_alloc(DRIFT_ALIGN_CACHE,
					(size_t)b->n * dim * sizeof(float));
		if (v == NULL)
			return DRIFT_ENOMEM;
		int rv = l1_bucket_vectors(l1, b, 0, nold, v);
		if (rv != 0) {
			drift_free(v);
			return rv;
		}
		if (b->nnew > 0)
			memcpy(v + (size_t)nold * dim, b->newvecs,
			       (size_t)b->nnew * dim * sizeof(float));
	}
	if (b->nnew > 0) {
		int rv = drift_vstore_append(l1->vs, b->newvecs, b->nnew,
					     b->rows + nold, NULL);
		if (rv != 0) {
			if (v != b->newvecs)
				drift_free(v);
			return rv;
		}
	}
	memset(b->sum, 0, dim * sizeof(double));
	float maxd = 0;
	double sq = 0;
	for (uint32_t r = 0; r < b->n; r++) {
		const float *x = v + (size_t)r * dim;
		for (uint32_t j = 0; j < dim; j++)
			b->sum[j] += x[j];
		float d = k->l2sq(x, b->centroid, dim);
		sq += d;
		if (d > maxd)
			maxd = d;
	}
	b->radius = sqrtf(maxd);
	b->rms = b->n > 0 ? (float)sqrt(sq / b->n) : 0.0f;
	/* Vectors are finite (checked at the door), so training succeeds. */
	int rv = drift_sq8_train(v, b->n, dim, b->qmin, b->qscale);
	(void)rv;
	drift_sq8_encode(b->qmin, b->qscale, dim, v, b->n, b->codes);
	b->qerr = sq8_error_bound(b->qmin, b->qscale, dim, NULL);
	rabitq_encode_rows(l1, b, v, 0, b->n);
	if (v != b->newvecs)
		drift_free(v);
	drift_free(b->newvecs);
	b->newvecs = NULL;
	return 0;
}

int l1_bucket_finish_update(drift_l1 *l1, l1_bucket *b, const l1_bucket *old,
			    const uint32_t *dead, size_t ndead)
{
	uint32_t dim = l1->dim;
	uint32_t nold = b->n - b->nnew;
	if (old == NULL || nold == 0 || (size_t)nold + ndead != old->n ||
	    !(old->qerr < INFINITY))
		return l1_bucket_finish(l1, b);
	const drift_vec_kernels *k = drift_vec();
	float rnd = 0;
	float base = sq8_error_bound(old->qmin, old->qscale, dim, &rnd);
	/* The new vectors in the old ranges (clamped where outside), and the
	 * largest reconstruction error that gives. */
	float *x = drift_mallocarray((size_t)dim * (ndead > 1 ? ndead : 1),
				     sizeof(float));
	if (x == NULL)
		return DRIFT_ENOMEM;
	uint8_t *nc = b->codes + (size_t)nold * dim;
	drift_sq8_encode(old->qmin, old->qscale, dim, b->newvecs, b->nnew, nc);
	float qerr = old->qerr, maxd = old->radius;
	double sq = (double)old->rms * old->rms * old->n;
	for (uint32_t r = 0; r < b->nnew; r++) {
		const float *v = b->newvecs + (size_t)r * dim;
		drift_sq8_decode(old->qmin, old->qscale, dim,
				 nc + (size_t)r * dim, 1, x);
		float e = sqrtf(k->l2sq(v, x, dim)) * 1.0001f + rnd;
		if (e > qerr)
			qerr = e;
	}
	if (qerr > 2 * base) {
		/* Too far outside: new ranges for all. */
		drift_free(x);
		return l1_bucket_finish(l1, b);
	}
	int rv = 0;
	if (ndead > 0)
		rv = drift_vstore_read(l1->vs, dead, ndead, x);
	if (rv == 0 && b->nnew > 0)
		rv = drift_vstore_append(l1->vs, b->newvecs, b->nnew,
					 b->rows + nold, NULL);
	if (rv != 0) {
		drift_free(x);
		return rv;
	}
	memcpy(b->sum, old->sum, dim * sizeof(double));
	memcpy(b->qmin, old->qmin, dim * sizeof(float));
	memcpy(b->qscale, old->qscale, dim * sizeof(float));
	if (l1->rq != NULL) {
		/* The same centroid: old's rotated one, and codes for the new
		 * rows only. */
		memcpy(b->pcent, old->pcent, l1->pdim * sizeof(float));
		rabitq_encode_rows(l1, b, b->newvecs, nold, b->nnew);
	}
	for (size_t r = 0; r < ndead; r++) {
		const float *v = x + r * dim;
		for (uint32_t j = 0; j < dim; j++)
			b->sum[j] -= v[j];
		sq -= k->l2sq(v, b->centroid, dim);
	}
	for (uint32_t r = 0; r < b->nnew; r++) {
		const float *v = b->newvecs + (size_t)r * dim;
		for (uint32_t j = 0; j < dim; j++)
			b->sum[j] += v[j];
		float d = k->l2sq(v, b->centroid, dim);
		sq += d;
		if (d > maxd * maxd)
			maxd = sqrtf(d);
	}
	/* The radius stays an upper bound after members left (what the
	 * search's bounds need); the rms is exact up to rounding. */
	b->radius = maxd;
	b->rms = b->n > 0 && sq > 0 ? (float)sqrt(sq / b->n) : 0.0f;
	b->qerr = qerr;
	drift_free(x);
	drift_free(b->newvecs);
	b->newvecs = NULL;
	return 0;
}

void l1_bucket_free(l1_bucket *b)
{
	if (b == NULL)
		return;
	drift_free(b->centroid);
	drift_free(b->sum);
	drift_free(b->ids);
	drift_free(b->versions);
	drift_free(b->rows);
	drift_free(b->newvecs);
	drift_free(b->codes);
	drift_free(b->qmin);
	drift_free(b->qscale);
	drift_free(b->bits);
	drift_free(b->bfac);
	drift_free(b->pcent);
	drift_free(b);
}

void l1_bucket_discard(drift_l1 *l1, l1_bucket *b)
{
	if (b == NULL)
		return;
	/* Finished (newvecs gone): its new rows are in the store. */
	if (b->newvecs == NULL && b->nnew > 0)
		drift_vstore_release(l1->vs, b->rows + (b->n - b->nnew),
				     b->nnew);
	l1_bucket_free(b);
}

/* ---- Slots -------------------------------------------------------------- */

int l1_reserve_slots(drift_l1 *l1, uint32_t want)
{
	if (want <= l1->cap)
		return 0;
	uint32_t cap = l1->cap ? l1->cap : 16;
	while (cap < want)
		cap *= 2;
	/* Readers index these arrays under the read lock; growing them needs
	 * the write lock. */
	l1_bucket **b = drift_calloc(cap, sizeof(*b));
	float *cent = drift_aligned_alloc(
		DRIFT_ALIGN_CACHE, (size_t)cap * l1->dim * sizeof(float));
	float *radius = drift_calloc(cap, sizeof(float));
	uint32_t *fs = drift_calloc(cap, sizeof(uint32_t));
	uint8_t *dirty = drift_calloc(cap, 1);
	if (!b || !cent || !radius || !fs || !dirty) {
		drift_free(b);
		drift_free(cent);
		drift_free(radius);
		drift_free(fs);
		drift_free(dirty);
		return DRIFT_ENOMEM;
	}
	for (size_t i = 0; i < (size_t)cap * l1->dim; i++)
		cent[i] = FLT_MAX;
	pthread_rwlock_wrlock(&l1->lock);
	if (l1->cap > 0) {
		memcpy(b, l1->b, l1->cap * sizeof(*b));
		memcpy(cent, l1->cent,
		       (size_t)l1->cap * l1->dim * sizeof(float));
		memcpy(radius, l1->radius, l1->cap * sizeof(float));
		memcpy(fs, l1->free_slots, l1->nfree * sizeof(uint32_t));
		memcpy(dirty, l1->dirty, l1->cap);
	}
	drift_free(l1->dirty);
	l1->dirty = dirty;
	drift_free(l1->b);
	drift_free(l1->cent);
	drift_free(l1->radius);
	drift_free(l1->free_slots);
	l1->b = b;
	l1->cent = cent;
	l1->radius = radius;
	l1->free_slots = fs;
	l1->cap = cap;
	pthread_rwlock_unlock(&l1->lock);
	return 0;
}

int l1_kv_reserve(drift_l1 *l1, size_t want)
{
	/* Readers probe the id index under the read lock, and a rehash frees
	 * the table they probe: growing it needs the write lock. */
	pthread_rwlock_wrlock(&l1->lock);
	int rv = drift_kv_reserve(&l1->kv, want);
	pthread_rwlock_unlock(&l1->lock);
	return rv;
}

int l1_take_slot(drift_l1 *l1, uint32_t *slot)
{
	int rv = l1->nfree > 0 ? 0 : l1_reserve_slots(l1, l1->nslots + 1);
	if (rv != 0)
		return rv;
	/* Readers loop over nslots under the read lock. */
	pthread_rwlock_wrlock(&l1->lock);
	if (l1->nfree > 0)
		*slot = l1->free_slots[--l1->nfree];
	else
		*slot = l1->nslots++;
	pthread_rwlock_unlock(&l1->lock);
	return 0;
}

uint32_t l1_nearest_slot(const drift_l1 *l1, const float *v, uint32_t exclude,
			 float *dist)
{
	const drift_vec_kernels *k = drift_vec();
	uint32_t best = UINT32_MAX;
	float bd = FLT_MAX;
	for (uint32_t s = 0; s < l1->nslots; s++) {
		if (l1->b[s] == NULL || s == exclude)
			continue;
		float d = k->l2sq(v, l1->cent + (size_t)s * l1->dim, l1->dim);
		if (d < bd || best == UINT32_MAX) {
			bd = d;
			best = s;
		}
	}
	if (dist != NULL)
		*dist = bd;
	return best;
}

void l1_publish(drift_l1 *l1, l1_change *ch, size_t n, const uint64_t *del,
		size_t ndel)
{
	uint32_t dim = l1->dim;
	pthread_rwlock_wrlock(&l1->lock);
	for (size_t i = 0; i < n; i++) {
		uint32_t s = ch[i].slot;
		ch[i].old = l1->b[s];
		l1->b[s] = ch[i].nb;
		if (!l1->dirty[s]) {
			l1->dirty[s] = 1;
			l1->ndirty++;
		}
		if (ch[i].old != NULL) {
			l1->count -= ch[i].old->n;
			l1->live--;
		}
		if (ch[i].nb != NULL) {
			l1->count += ch[i].nb->n;
			l1->live++;
			float *c = l1->cent + (size_t)s * dim;
			bool changed = ch[i].old == NULL ||
				       memcmp(c, ch[i].nb->centroid,
					      dim * sizeof(float)) != 0;
			memcpy(c, ch[i].nb->centroid, dim * sizeof(float));
			l1->radius[s] = ch[i].nb->radius;
			l1_graph_note(l1, s, changed, false);
		} else {
			for (uint32_t j = 0; j < dim; j++)
				l1->cent[(size_t)s * dim + j] = FLT_MAX;
			l1->free_slots[l1->nfree++] = s;
			if (ch[i].old != NULL)
				l1_graph_note(l1, s, false, true);
		}
		/* Every row of the new version may have a new place. Room
		 * was reserved by the caller, so puts cannot fail. */
		const l1_bucket *b = ch[i].nb;
		for (uint32_t r = 0; b != NULL && r < b->n; r++) {
			drift_kv_loc loc = {s, r, b->versions[r]};
			int rv = drift_kv_put(&l1->kv, b->ids[r], loc);
			(void)rv;
		}
	}
	for (size_t j = 0; j < ndel; j++)
		drift_kv_del(&l1->kv, del[j], NULL);
	pthread_rwlock_unlock(&l1->lock);
	/* No search can hold an old version now. */
	for (size_t i = 0; i < n; i++) {
		l1_bucket_free(ch[i].old);
		ch[i].old = NULL;
	}
	l1_graph_refresh(l1);
}

/* ---- Lifecycle ---------------------------------------------------------- */

int drift_l1_new(const drift_l1_opts *opts, drift_l1 **out, drift_err *err)
{
	drift_l1_opts o = *opts;
	if (o.dim == 0 || o.dim > 65536)
		return drift_err_set(err, DRIFT_EINVAL,
				     "dimension %u out of range 1..65536",
				     o.dim);
	if (o.metric > DRIFT_METRIC_COSINE)
		return drift_err_set(err, DRIFT_EINVAL, "unknown metric %d",
				     (int)o.metric);
	if (o.bucket_target == 0)
		o.bucket_target = 512;
	if (o.bucket_max == 0)
		o.bucket_max = 3 * o.bucket_target;
	if (o.bucket_min == 0)
		o.bucket_min = o.bucket_target / 4;
	if (o.drift_ratio <= 0)
		o.drift_ratio = 0.2f;
	if (o.steal_neighbors == 0)
		o.steal_neighbors = 8;
	if (o.default_recall <= 0 || o.default_recall > 1)
		o.default_recall = 0.95f;
	if (o.bucket_min < 1 || o.bucket_max <= 2 * o.bucket_min)
		return drift_err_set(err, DRIFT_EINVAL,
				     "bucket bounds must satisfy 1 <= min and "
				     "2 * min < max (min %u, max %u)",
				     o.bucket_min, o.bucket_max);
	drift_l1 *l1 = drift_calloc(1, sizeof(*l1));
	if (l1 == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "L1 index");
	l1->o = o;
	l1->o.vec_dir = NULL; /* not kept: the caller's string */
	l1->dim = o.dim;
	drift_vstore_opts vo = {.dim = o.dim,
				.dir = o.vec_dir,
				.cache_bytes = o.vec_cache_bytes};
	int rv = drift_vstore_open(&vo, &l1->vs, err);
	if (rv != 0) {
		drift_free(l1);
		return drift_err_wrap(err, rv, "L1 index");
	}
	if (o.dim <= RABITQ_MAX_DIM) {
		rv = drift_rabitq_new(o.dim, o.seed, &l1->rq);
		if (rv == 0) {
			l1->pdim = drift_rabitq_pdim(l1->rq);
			l1->rq_scratch =
				drift_mallocarray(l1->pdim, sizeof(float));
			if (l1->rq_scratch == NULL)
				rv = DRIFT_ENOMEM;
		}
		if (rv != 0) {
			drift_rabitq_free(l1->rq);
			drift_vstore_close(l1->vs);
			drift_free(l1);
			return drift_err_set(err, rv, "L1 index: rotation");
		}
	}
	drift_kv_init(&l1->kv);
	drift_rand_seed(&l1->rng, o.seed);
	pthread_rwlock_init(&l1->lock, NULL);
	*out = l1;
	return 0;
}

void drift_l1_free(drift_l1 *l1)
{
	if (l1 == NULL)
		return;
	for (uint32_t s = 0; s < l1->nslots; s++)
		l1_bucket_free(l1->b[s]);
	drift_free(l1->b);
	drift_free(l1->cent);
	drift_free(l1->radius);
	drift_free(l1->free_slots);
	drift_free(l1->dirty);
	drift_free(l1->calib.gaps10);
	drift_free(l1->calib.gaps100);
	l1_sample_free(&l1->sample);
	l1_graph_free(l1);
	drift_kv_free(&l1->kv);
	drift_vstore_close(l1->vs);
	drift_rabitq_free(l1->rq);
	drift_free(l1->rq_scratch);
	pthread_rwlock_destroy(&l1->lock);
	drift_free(l1);
}

/* ---- Input -------------------------------------------------------------- */

/* The input vectors, checked, and normalised in a copy for COSINE (then
 * *owned is that copy, for drift_free). NULL on ENOMEM or,
 * with *zero set to the row, for a NaN or infinite component (*nonfinite)
 * or a zero vector under COSINE. */
static const float *prepare_vectors(const drift_l1 *l1, const float *vecs,
				    size_t n, size_t *zero, bool *nonfinite,
				    float **owned)
{
	uint32_t dim = l1->dim;
	*owned = NULL;
	for (size_t i = 0; i < n * dim; i++) {
		if (!isfinite(vecs[i])) {
			*zero = i / dim;
			*nonfinite = true;
			return NULL;
		}
	}
	/* Only COSINE changes the vectors; the others are used in place
	 * (a copy of a bulk load would double its peak memory). */
	if (l1->o.metric != DRIFT_METRIC_COSINE)
		return vecs;
	float *out =
		drift_aligned_alloc(DRIFT_ALIGN_CACHE, n * dim * sizeof(float));
	if (out == NULL)
		return NULL;
	memcpy(out, vecs, n * dim * sizeof(float));
	const drift_vec_kernels *k = drift_vec();
	for (size_t i = 0; i < n; i++) {
		float *v = out + i * dim;
		float norm = sqrtf(k->dot(v, v, dim));
		if (!(norm > 0) || !isfinite(norm)) {
			*zero = i;
			drift_free(out);
			return NULL;
		}
		for (uint32_t j = 0; j < dim; j++)
			v[j] /= norm;
	}
	*owned = out;
	return out;
}

/* The error of a prepare_vectors failure. */
static int bad_input(drift_err *err, size_t row, bool nonfinite,
		     const char *what)
{
	if (row == SIZE_MAX)
		return drift_err_set(err, DRIFT_ENOMEM, "%s", what);
	if (nonfinite)
		return drift_err_set(err, DRIFT_EINVAL,
				     "vector %zu has a NaN or infinite "
				     "component",
				     row);
	return drift_err_set(err, DRIFT_EINVAL,
			     "vector %zu has no direction (zero norm) under "
			     "COSINE",
			     row);
}

/* ---- Build -------------------------------------------------------------- */

/* Buckets from k-means over the rows of x: each cluster becomes a bucket.
 * Clusters are finished one at a time, so that only one bucket's full
 * vectors are held besides the input. */
static int build_buckets(drift_l1 *l1, const uint64_t *ids, const float *x,
			 size_t n, uint64_t version, drift_err *err)
{
	uint32_t dim = l1->dim;
	uint32_t k =
		(uint32_t)((n + l1->o.bucket_target - 1) / l1->o.bucket_target);
	if (k == 0)
		k = 1;
	int rv = DRIFT_ENOMEM;
	float *cent = drift_mallocarray((size_t)k * dim, sizeof(float));
	uint32_t *assign = drift_mallocarray(n, sizeof(uint32_t));
	size_t *start = drift_calloc((size_t)k + 1, sizeof(size_t));
	uint32_t *order = drift_mallocarray(n, sizeof(uint32_t));
	l1_change *ch = drift_calloc(k, sizeof(*ch));
	size_t nch = 0;
	if (!cent || !assign || !start || !order || !ch)
		goto out;
	drift_kmeans_opts ko = {.seed = drift_rand_next(&l1->rng)};
	rv = drift_kmeans(x, n, dim, k, &ko, cent, assign, err);
	if (rv != 0)
		goto out;
	/* Rows grouped by cluster (counting sort, stable). */
	for (size_t i = 0; i < n; i++)
		start[assign[i] + 1]++;
	for (uint32_t c = 0; c < k; c++)
		start[c + 1] += start[c];
	for (size_t i = 0; i < n; i++)
		order[start[assign[i]]++] = (uint32_t)i;
	for (uint32_t c = k; c > 0; c--)
		start[c] = start[c - 1];
	start[0] = 0;
	rv = l1_kv_reserve(l1, drift_kv_len(&l1->kv) + n);
	if (rv == 0)
		rv = l1_reserve_slots(l1, l1->nslots + k);
	if (rv != 0)
		goto out;
	for (uint32_t c = 0; c < k; c++) {
		uint32_t size = (uint32_t)(start[c + 1] - start[c]);
		if (size == 0)
			continue;
		l1_bucket *b;
		rv = l1_bucket_alloc(l1, size, size, cent + (size_t)c * dim,
				     &b);
		if (rv != 0)
			goto out;
		for (uint32_t r = 0; r < size; r++) {
			size_t i = order[start[c] + r];
			b->ids[r] = ids[i];
			b->versions[r] = version;
			memcpy(b->newvecs + (size_t)r * dim, x + i * dim,
			       dim * sizeof(float));
		}
		rv = l1_bucket_finish(l1, b);
		if (rv != 0) {
			l1_bucket_free(b);
			rv = drift_err_set(err, rv,
					   "L1 build: storing vectors");
			goto out;
		}
		ch[nch].nb = b;
		l1_take_slot(l1, &ch[nch].slot); /* room reserved above */
		nch++;
	}
	l1_publish(l1, ch, nch, NULL, 0);
	nch = 0;
	rv = 0;
out:
	if (rv != 0 && ch != NULL) {
		for (size_t c = 0; c < nch; c++) {
			l1->free_slots[l1->nfree++] = ch[c].slot;
			l1_bucket_discard(l1, ch[c].nb);
		}
	}
	drift_free(cent);
	drift_free(assign);
	drift_free(start);
	drift_free(order);
	drift_free(ch);
	return rv;
}

int drift_l1_build(drift_l1 *l1, const uint64_t *ids, const float *vecs,
		   size_t n, uint64_t version, drift_err *err)
{
	if (l1->count > 0 || l1->live > 0)
		return drift_err_set(err, DRIFT_EINVAL,
				     "L1 build needs an empty index");
	if (n == 0)
		return 0;
	size_t zero = SIZE_MAX;
	bool nonfinite = false;
	float *owned;
	const float *x =
		prepare_vectors(l1, vecs, n, &zero, &nonfinite, &owned);
	if (x == NULL)
		return bad_input(err, zero, nonfinite, "L1 build");
	int rv = build_buckets(l1, ids, x, n, version, err);
	drift_free(owned);
	if (rv == 0)
		rv = drift_l1_calibrate(l1, err);
	return rv;
}

/* ---- Apply -------------------------------------------------------------- */

typedef struct slot_row {
	uint32_t slot, row;
} slot_row;

static int slot_row_cmp(const void *a, const void *b)
{
	const slot_row *x = a, *y = b;
	if (x->slot != y->slot)
		return x->slot < y->slot ? -1 : 1;
	return x->row < y->row ? -1 : x->row > y->row;
}

/* Everything apply allocates, freed in one place. */
typedef struct apply_work {
	const float *x;	   /* prepared upsert vectors */
	float *x_owned;	   /* their copy, when normalised */
	uint32_t *dead;	   /* store rows of the rows leaving (nrem) */
	drift_kv batch;	   /* id -> last index among upserts */
	uint32_t *target;  /* per upsert: slot, or UINT32_MAX if superseded */
	slot_row *rem;	   /* rows leaving their bucket */
	slot_row *add;	   /* (slot, upsert index) joining */
	uint32_t *touched; /* per slot: change index + 1, or 0 */
	l1_change *ch;
	size_t nrem, nadd, nch;
	uint64_t *kept_ids; /* for a first build */
	float *kept_x;
	uint32_t *win;	  /* the winning upserts, for the calibration */
	drift_hit *pairs; /* l1_calib_note's room */
} apply_work;

static void apply_work_free(drift_l1 *l1, apply_work *w)
{
	drift_free(w->x_owned);
	drift_free(w->dead);
	drift_kv_free(&w->batch);
	drift_free(w->target);
	drift_free(w->rem);
	drift_free(w->add);
	drift_free(w->touched);
	if (w->ch != NULL)
		for (size_t i = 0; i < w->nch; i++)
			l1_bucket_discard(l1, w->ch[i].nb);
	drift_free(w->ch);
	drift_free(w->kept_ids);
	drift_free(w->kept_x);
	drift_free(w->win);
	drift_free(w->pairs);
}

/* Builds the new version of slot s: its old rows minus rem[*ri...] of s,
 * plus the adds of s. */
static int rebuild_slot(drift_l1 *l1, apply_work *w, uint32_t s, size_t *ri,
			size_t *ai, const uint64_t *ids, uint64_t version,
			l1_bucket **out)
{
	uint32_t dim = l1->dim;
	const l1_bucket *old = l1->b[s];
	size_t r0 = *ri, a0 = *ai;
	while (*ri < w->nrem && w->rem[*ri].slot == s)
		(*ri)++;
	while (*ai < w->nadd && w->add[*ai].slot == s)
		(*ai)++;
	size_t nold = old != NULL ? old->n : 0;
	size_t nadd = *ai - a0;
	size_t n = nold - (*ri - r0) + nadd;
	for (size_t rr = r0; rr < *ri; rr++)
		w->dead[rr] = old->rows[w->rem[rr].row];
	if (n == 0) {
		*out = NULL;
		return 0;
	}
	l1_bucket *b;
	int rv = l1_bucket_alloc(l1, (uint32_t)n, (uint32_t)nadd,
				 l1->cent + (size_t)s * dim, &b);
	if (rv != 0)
		return rv;
	size_t o = 0, rr = r0;
	for (uint32_t r = 0; r < nold; r++) {
		if (rr < *ri && w->rem[rr].row == r) {
			rr++;
			continue;
		}
		b->ids[o] = old->ids[r];
		b->versions[o] = old->versions[r];
		b->rows[o] = old->rows[r];
		l1_bucket_copy_codes(l1, b, (uint32_t)o, old, r);
		o++;
	}
	for (size_t a = a0; a < *ai; a++, o++) {
		uint32_t i = w->add[a].row;
		b->ids[o] = ids[i];
		b->versions[o] = version;
		memcpy(b->newvecs + (a - a0) * dim, w->x + (size_t)i * dim,
		       dim * sizeof(float));
	}
	rv = l1_bucket_finish_update(l1, b, old, w->dead + r0, *ri - r0);
	if (rv != 0) {
		l1_bucket_free(b);
		return rv;
	}
	*out = b;
	return 0;
}

int drift_l1_apply(drift_l1 *l1, const uint64_t *ids, const float *vecs,
		   size_t n, const uint64_t *del, size_t ndel, uint64_t version,
		   size_t *deleted, drift_err *err)
{
	uint32_t dim = l1->dim;
	apply_work w = {0};
	drift_kv_init(&w.batch);
	int rv = DRIFT_ENOMEM;
	size_t zero = SIZE_MAX, ndeleted = 0;

	if (n > 0) {
		bool nonfinite = false;
		w.x = prepare_vectors(l1, vecs, n, &zero, &nonfinite,
				      &w.x_owned);
		if (w.x == NULL) {
			rv = bad_input(err, zero, nonfinite, "L1 apply");
			goto out;
		}
	}
	/* The last upsert of an id wins within a batch. */
	if (drift_kv_reserve(&w.batch, n) != 0)
		goto nomem;
	for (size_t i = 0; i < n; i++)
		drift_kv_put(&w.batch, ids[i], (drift_kv_loc){0, 0, i});
	for (size_t j = 0; j < ndel; j++) {
		drift_kv_loc loc;
		if (drift_kv_get(&w.batch, del[j], &loc) == 0) {
			rv = drift_err_set(err, DRIFT_EINVAL,
					   "id %llu is both upserted and "
					   "deleted in one batch",
					   (unsigned long long)del[j]);
			goto out;
		}
	}

	if (l1->live == 0) {
		/* A first build: k-means over the distinct new rows. */
		size_t m = 0;
		w.kept_ids = drift_mallocarray(n ? n : 1, sizeof(uint64_t));
		w.kept_x = drift_mallocarray(n ? n * dim : 1, sizeof(float));
		if (w.kept_ids == NULL || w.kept_x == NULL)
			goto nomem;
		for (size_t i = 0; i < n; i++) {
			drift_kv_loc loc;
			drift_kv_get(&w.batch, ids[i], &loc);
			if (loc.version != i)
				continue;
			w.kept_ids[m] = ids[i];
			memcpy(w.kept_x + m * dim, w.x + i * dim,
			       dim * sizeof(float));
			m++;
		}
		rv = m > 0 ? build_buckets(l1, w.kept_ids, w.kept_x, m, version,
					   err)
			   : 0;
		if (rv == 0 && m > 0)
			rv = drift_l1_calibrate(l1, err);
		goto out;
	}

	w.target = drift_mallocarray(n ? n : 1, sizeof(uint32_t));
	w.rem = drift_mallocarray(n + ndel ? n + ndel : 1, sizeof(slot_row));
	w.add = drift_mallocarray(n ? n : 1, sizeof(slot_row));
	w.touched = drift_calloc(l1->nslots, sizeof(uint32_t));
	w.dead = drift_mallocarray(n + ndel ? n + ndel : 1, sizeof(uint32_t));
	if (!w.target || !w.rem || !w.add || !w.touched || !w.dead)
		goto nomem;
	size_t nnew = 0;
	for (size_t i = 0; i < n; i++) {
		drift_kv_loc loc;
		drift_kv_get(&w.batch, ids[i], &loc);
		if (loc.version != i)
			continue; /* a later upsert of the id wins */
		uint32_t s =
			l1_nearest_slot(l1, w.x + i * dim, UINT32_MAX, NULL);
		w.add[w.nadd++] = (slot_row){s, (uint32_t)i};
		if (drift_kv_get(&l1->kv, ids[i], &loc) == 0)
			w.rem[w.nrem++] = (slot_row){loc.bucket, loc.row};
		else
			nnew++;
	}
	for (size_t j = 0; j < ndel; j++) {
		drift_kv_loc loc;
		if (drift_kv_get(&l1->kv, del[j], &loc) != 0)
			continue;
		/* A repeated delete of one id removes one row. */
		bool dup = false;
		for (size_t t = 0; t < j && !dup; t++)
			dup = del[t] == del[j];
		if (dup)
			continue;
		w.rem[w.nrem++] = (slot_row){loc.bucket, loc.row};
		ndeleted++;
	}
	qsort(w.rem, w.nrem, sizeof(slot_row), slot_row_cmp);
	qsort(w.add, w.nadd, sizeof(slot_row), slot_row_cmp);

	/* One change per touched slot, in slot order. */
	size_t maxch = w.nrem + w.nadd;
	w.ch = drift_calloc(maxch ? maxch : 1, sizeof(l1_change));
	if (w.ch == NULL || l1_kv_reserve(l1, l1->kv.len + nnew) != 0)
		goto nomem;
	size_t ri = 0, ai = 0;
	while (ri < w.nrem || ai < w.nadd) {
		uint32_t s = ri < w.nrem ? w.rem[ri].slot : UINT32_MAX;
		if (ai < w.nadd && w.add[ai].slot < s)
			s = w.add[ai].slot;
		l1_change *c = &w.ch[w.nch];
		c->slot = s;
		rv = rebuild_slot(l1, &w, s, &ri, &ai, ids, version, &c->nb);
		if (rv == DRIFT_ENOMEM)
			goto nomem;
		if (rv != 0) {
			rv = drift_err_set(err, rv,
					   "L1 apply: reading or storing "
					   "vectors");
			goto out;
		}
		w.nch++;
	}
	w.win = drift_mallocarray(w.nadd ? w.nadd : 1, sizeof(uint32_t));
	w.pairs = drift_mallocarray(l1_calib_note_room(l1) + 1,
				    sizeof(drift_hit));
	if (w.win == NULL || w.pairs == NULL)
		goto nomem;
	l1_publish(l1, w.ch, w.nch, del, ndel);
	for (size_t i = 0; i < w.nch; i++)
		w.ch[i].nb = NULL; /* published: owned by the index */
	/* No search can hold the rows that left now. */
	drift_vstore_release(l1->vs, w.dead, w.nrem);
	l1->changed_since_calib += n + ndeleted;
	/* The calibration sample follows the change. */
	for (size_t a = 0; a < w.nadd; a++)
		w.win[a] = w.add[a].row;
	l1_calib_note(l1, ids, w.x, w.win, w.nadd, n, del, ndel, w.pairs);
	rv = 0;
	goto out;
nomem:
	rv = drift_err_set(err, DRIFT_ENOMEM, "L1 apply of %zu vectors", n);
out:
	apply_work_free(l1, &w);
	if (rv == 0 && deleted != NULL)
		*deleted = ndeleted;
	return rv;
}

/* ---- Search ------------------------------------------------------------- */

/* Rows of a bucket read at once by an exact scan. */
#define EXACT_BLOCK 256u
/* Candidates beyond twice the top's room read unsorted (l1_exact_scan). */
#define EXACT_UNSORTED 16u
/* Buckets a recall-target search first asks the centroid graph for. */
#define GRAPH_FIRST 64u

static int probe_cmp(const void *a, const void *b)
{
	const probe *x = a, *y = b;
	if (x->key != y->key)
		return x->key < y->key ? -1 : 1;
	return x->slot < y->slot ? -1 : x->slot > y->slot;
}

/* Puts the `want` least probes of pr[0..n) first, in order. A probe
 * budget needs only its few nearest of all the buckets: a quickselect
 * (Lomuto partitions; keys are distinct in probe_cmp order) and a sort of
 * those, instead of a sort of all (measured: docs/search-profile.md). */
static void probe_select(probe *pr, size_t n, size_t want)
{
	size_t lo = 0, hi = n;
	while (want < n && hi - lo > 1) {
		probe p = pr[lo + (hi - lo) / 2];
		pr[lo + (hi - lo) / 2] = pr[hi - 1];
		size_t at = lo;
		for (size_t i = lo; i + 1 < hi; i++)
			if (probe_cmp(&pr[i], &p) < 0) {
				probe t = pr[i];
				pr[i] = pr[at];
				pr[at++] = t;
			}
		pr[hi - 1] = pr[at];
		pr[at] = p;
		if (at == want)
			break;
		if (at < want)
			lo = at + 1;
		else
			hi = at;
	}
	qsort(pr, want < n ? want : n, sizeof(probe), probe_cmp);
}

/* ---- Probe order ---------------------------------------------------------
 *
 * The buckets a search scans come one at a time from probe_next, which the
 * scan asks before each bucket with r, the Euclidean distance of the
 * calib_rank-th best SQ8 distance so far (+inf while fewer). A probe budget
 * or an exact search takes pr[0..limit) in order and ignores r. A recall
 * target on L2 decides per query (the adaptive rule, l1_calib.c): after the
 * nearest bucket, a bucket b is worth scanning while its boundary
 * hyperplane with the nearest centroid c0,
 *
 *     h(b) = (|q - c_b|^2 - |q - c0|^2) / (2 |c_b - c0|),
 *
 * lies within tau * r of the query: a member of b at distance at most r
 * from q must lie on b's side of that hyperplane (Quake's APS, OSDI'25,
 * estimates recall from the same geometry; DARTH, SIGMOD'26, stops each
 * query on its own progress rather than a fixed budget). Buckets come in h
 * order and r only falls, so the first bucket past tau * r ends the search.
 * Since |c_b - c0| <= |q - c_b| + |q - c0|, h(b) >= (key_b - key_0) / 2:
 * only buckets whose key is within 2 tau r_1 of the nearest (r_1 after the
 * nearest bucket) need an h at all. */
typedef struct prober {
	const drift_l1 *l1;
	const float *qn;
	probe *pr; /* room for l1->nslots */
	size_t n, limit, next;
	bool adaptive;
	bool graph; /* adaptive: pr came from the centroid graph (want) */
	size_t want;
	drift_hit *gs; /* adaptive with the graph: l1_graph_probe's scratch */
	float tau;
} prober;

/* Every live centroid's key into p->pr; returns the count. */
static size_t probe_flat(const drift_l1 *l1, const float *qn, probe *pr)
{
	const drift_vec_kernels *k = drift_vec();
	size_t np = 0;
	for (uint32_t s = 0; s < l1->nslots; s++) {
		if (l1->b[s] == NULL)
			continue;
		const float *c = l1->cent + (size_t)s * l1->dim;
		float key = l1->o.metric == DRIFT_METRIC_L2
				    ? sqrtf(k->l2sq(qn, c, l1->dim))
				    : -k->dot(qn, c, l1->dim);
		pr[np++] = (probe){key, s};
	}
	return np;
}

/* The adaptive rule's candidates, once the nearest bucket pr[0] is
 * scanned and r is known: the buckets with h <= tau * r, their key
 * replaced by h, sorted, in pr[1..n). */
static int prober_candidates(prober *p, float r)
{
	const drift_l1 *l1 = p->l1;
	const drift_vec_kernels *k = drift_vec();
	probe first = p->pr[0];
	float lim = p->tau * r, gap = 2.0f * lim;
	/* With the graph: ask again with four times more while every answer
	 * lies within the key gap (the nearest is among them again). */
	while (p->graph && p->want < l1->live) {
		size_t inside = 0;
		for (size_t i = 0; i < p->n; i++)
			inside += p->pr[i].key - first.key <= gap;
		if (inside < p->n)
			break;
		p->want *= 4;
		drift_free(p->gs);
		p->gs = drift_mallocarray(p->want, sizeof(drift_hit));
		if (p->gs == NULL)
			return DRIFT_ENOMEM;
		p->n = l1_graph_probe(l1, p->qn, p->want, p->gs, p->pr);
		if (p->n == 0) {
			p->n = probe_flat(l1, p->qn, p->pr);
			break;
		}
	}
	const float *c0 = l1->cent + (size_t)first.slot * l1->dim;
	size_t m = 1;
	for (size_t i = 0; i < p->n; i++) {
		probe c = p->pr[i];
		if (c.slot == first.slot || c.key - first.key > gap)
			continue;
		float dc = sqrtf(k->l2sq(l1->cent + (size_t)c.slot * l1->dim,
					 c0, l1->dim));
		float num = (c.key - first.key) * (c.key + first.key);
		float h = num > 0 ? num / (2.0f * dc) : 0.0f;
		if (!(h <= lim)) /* also dc 0 with num > 0 */
			continue;
		p->pr[m++] = (probe){h, c.slot};
	}
	p->pr[0] = first;
	p->n = m;
	qsort(p->pr + 1, m - 1, sizeof(probe), probe_cmp);
	return 0;
}

/* The next bucket to scan into *out: 1, 0 when the search ends, or a
 * negative error. */
static int probe_next(prober *p, float r, probe *out)
{
	if (!p->adaptive) {
		if (p->next >= p->limit)
			return 0;
		*out = p->pr[p->next++];
		return 1;
	}
	if (p->next == 0) {
		if (p->n == 0)
			return 0;
		size_t best = 0;
		for (size_t i = 1; i < p->n; i++)
			if (probe_cmp(&p->pr[i], &p->pr[best]) < 0)
				best = i;
		probe t = p->pr[0];
		p->pr[0] = p->pr[best];
		p->pr[best] = t;
		*out = p->pr[p->next++];
		return 1;
	}
	if (p->next == 1) {
		int rv = prober_candidates(p, r);
		if (rv != 0)
			return rv;
	}
	if (p->next >= p->n || !(p->pr[p->next].key <= p->tau * r))
		return 0;
	*out = p->pr[p->next++];
	return 1;
}

/* The radius probe_next wants from the calib_rank-th best SQ8 distance
 * (squared L2) kept in rk. */
static float probe_radius(const drift_topk *rk)
{
	float d = drift_topk_bound(rk);
	return d < INFINITY ? sqrtf(d > 0 ? d : 0) : INFINITY;
}

void l1_exact_scratch_free(l1_exact_scratch *sc)
{
	drift_free(sc->lb);
	drift_free(sc->order);
	drift_free(sc->rows);
	drift_free(sc->tq);
	drift_free(sc->vbuf);
	memset(sc, 0, sizeof(*sc));
}

static int exact_scratch_room(l1_exact_scratch *sc, uint32_t n, uint32_t dim)
{
	if (sc->tq == NULL || sc->dim != dim) {
		drift_free(sc->tq);
		drift_free(sc->vbuf);
		sc->tq = drift_mallocarray(dim, sizeof(float));
		sc->vbuf = drift_aligned_alloc(DRIFT_ALIGN_CACHE,
					       (size_t)EXACT_BLOCK * dim *
						       sizeof(float));
		sc->dim = dim;
		if (sc->tq == NULL || sc->vbuf == NULL)
			return DRIFT_ENOMEM;
	}
	if (n <= sc->cap)
		return 0;
	uint32_t cap = sc->cap ? sc->cap : 256;
	while (cap < n)
		cap *= 2;
	drift_free(sc->lb);
	drift_free(sc->order);
	drift_free(sc->rows);
	sc->lb = drift_mallocarray(cap, sizeof(float));
	sc->order = drift_mallocarray(cap, sizeof(*sc->order));
	sc->rows = drift_mallocarray(EXACT_BLOCK, sizeof(uint32_t));
	sc->cap = sc->lb && sc->order && sc->rows ? cap : 0;
	return sc->cap ? 0 : DRIFT_ENOMEM;
}

static int lb_row_cmp(const void *a, const void *b)
{
	const struct l1_lb_row *x = a, *y = b;
	if (x->lb != y->lb)
		return x->lb < y->lb ? -1 : 1;
	return x->row < y->row ? -1 : x->row > y->row;
}

int l1_exact_scan(const drift_l1 *l1, const l1_bucket *b, const float *qn,
		  float qnorm, uint64_t skip, drift_topk *top,
		  l1_exact_scratch *sc)
{
	uint32_t dim = l1->dim, n = b->n;
	const drift_vec_kernels *k = drift_vec();
	const drift_sq8_kernels *sk = drift_sq8();
	if (n == 0)
		return 0;
	int rv = exact_scratch_room(sc, n, dim);
	if (rv != 0)
		return rv;
	/* Lower bounds from the codes: |q - x| >= |q - x'| - e for the
	 * decoded x' and the error bound e (L2); |q.x - q.x'| <= |q| e for
	 * inner products. The slack covers float rounding of the sums. */
	enum drift_metric m = l1->o.metric;
	float bias = 0, e = b->qerr, slack = 0;
	if (m == DRIFT_METRIC_L2) {
		drift_sq8_prepare_l2(b->qmin, dim, qn, sc->tq);
	} else {
		bias = drift_sq8_prepare_ip(b->qmin, b->qscale, dim, qn,
					    sc->tq) +
		       (m == DRIFT_METRIC_COSINE ? 1.0f : 0.0f);
		float cn = sqrtf(k->dot(b->centroid, b->centroid, dim));
		slack = 1e-4f * qnorm * (cn + b->radius + e) + 1e-6f;
	}
	for (uint32_t r0 = 0; r0 < n; r0 += 256) {
		uint32_t c = n - r0 < 256 ? n - r0 : 256;
		const uint8_t *codes = b->codes + (size_t)r0 * dim;
		float *d = sc->lb + r0;
		if (m == DRIFT_METRIC_L2) {
			sk->l2(sc->tq, b->qscale, codes, c, dim, d);
			for (uint32_t r = 0; r < c; r++) {
				float a = sqrtf(d[r] > 0 ? d[r] : 0) *
						  (1.0f - 1e-4f) -
					  e;
				d[r] = a > 0 ? a * a : 0.0f;
			}
		} else {
			sk->ip(sc->tq, codes, c, dim, d);
			for (uint32_t r = 0; r < c; r++)
				d[r] += bias - qnorm * e - slack;
		}
	}
	if (!(e < INFINITY))
		for (uint32_t r = 0; r < n; r++)
			sc->lb[r] = -INFINITY; /* no bound: read them all */
	/* The rows the bound cannot rule out now, by ascending bound. */
	float bound = drift_topk_bound(top);
	struct l1_lb_row *order = sc->order;
	uint32_t nc = 0;
	for (uint32_t r = 0; r < n; r++)
		if (sc->lb[r] <= bound && b->ids[r] != skip)
			order[nc++] = (struct l1_lb_row){sc->lb[r], r};
	if (nc == 0)
		return 0;
	if (nc <= 2 * (top->k - top->n) + EXACT_UNSORTED) {
		/* Most of them enter a top that has room for half: sorting
		 * costs more than reading them all (a recall calibration's
		 * top-100 over a bucket of 200 spent most of its time in
		 * qsort). In row order, each checked against the bound of
		 * the moment. */
		for (uint32_t i = 0; i < nc && rv == 0; i += EXACT_BLOCK) {
			uint32_t c = 0;
			float bd = drift_topk_bound(top);
			for (uint32_t j = i; j < nc && j < i + EXACT_BLOCK; j++)
				if (order[j].lb <= bd)
					order[i + c++] = order[j];
			for (uint32_t j = 0; j < c; j++)
				sc->rows[j] = b->rows[order[i + j].row];
			rv = drift_vstore_read(l1->vs, sc->rows, c, sc->vbuf);
			for (uint32_t j = 0; j < c && rv == 0; j++) {
				if (order[i + j].lb > drift_topk_bound(top))
					continue;
				float d = drift_metric_dist(
					k, m, qn, sc->vbuf + (size_t)j * dim,
					dim);
				drift_topk_push(
					top,
					(drift_hit){b->ids[order[i + j].row],
						    d});
			}
		}
		return rv;
	}
	qsort(order, nc, sizeof(*order), lb_row_cmp);
	/* Blocks grow from 16 rows: the first block usually fills the top
	 * and tightens the bound, after which few rows are read. */
	uint32_t i = 0, blk = 16;
	while (i < nc && rv == 0) {
		if (order[i].lb > drift_topk_bound(top))
			break;
		uint32_t c = nc - i < blk ? nc - i : blk;
		for (uint32_t j = 0; j < c; j++)
			sc->rows[j] = b->rows[order[i + j].row];
		rv = drift_vstore_read(l1->vs, sc->rows, c, sc->vbuf);
		for (uint32_t j = 0; j < c && rv == 0; j++) {
			if (order[i + j].lb > drift_topk_bound(top))
				break;
			float d = drift_metric_dist(
				k, m, qn, sc->vbuf + (size_t)j * dim, dim);
			drift_topk_push(
				top, (drift_hit){b->ids[order[i + j].row], d});
		}
		i += c;
		blk = blk * 2 < EXACT_BLOCK ? blk * 2 : EXACT_BLOCK;
	}
	return rv;
}

/* The smallest distance any member of slot s could have (exact mode). */
float l1_lower_bound(const drift_l1 *l1, float key, uint32_t s, float qnorm)
{
	float r = l1->radius[s];
	switch (l1->o.metric) {
	case DRIFT_METRIC_IP:
		return key - qnorm * r;
	case DRIFT_METRIC_COSINE:
		return 1.0f + key - r;
	default: {
		float d = key - r;
		return d > 0 ? d * d : 0.0f;
	}
	}
}

/* Prepares qn for the SQ8 kernels over b's ranges into tq; returns the
 * bias to add to their results. */
static float sq8_prepare(const drift_l1 *l1, const l1_bucket *b,
			 const float *qn, float *tq)
{
	if (l1->o.metric == DRIFT_METRIC_L2) {
		drift_sq8_prepare_l2(b->qmin, l1->dim, qn, tq);
		return 0;
	}
	return drift_sq8_prepare_ip(b->qmin, b->qscale, l1->dim, qn, tq) +
	       (l1->o.metric == DRIFT_METRIC_COSINE ? 1.0f : 0.0f);
}

/* The greatest exact distance a member of b can have whose SQ8 distance
 * is d (+inf without a bound). */
static float sq8_upper_bound(const drift_l1 *l1, const l1_bucket *b, float d,
			     float qnorm)
{
	float e = b->qerr;
	if (!(e < INFINITY))
		return INFINITY;
	if (l1->o.metric == DRIFT_METRIC_L2) {
		float a = sqrtf(d > 0 ? d : 0) * (1.0f + 1e-4f) + e;
		return a * a;
	}
	return d + qnorm * e + 1e-4f * (fabsf(d) + qnorm * e) + 1e-6f;
}

/* The least exact distance a member of b can have whose SQ8 distance is
 * d (qnorm: the query's norm): the decoded vector is within b->qerr of the
 * member (as in l1_exact_scan, with slack for float rounding). */
static float sq8_lower_bound(const drift_l1 *l1, const l1_bucket *b, float d,
			     float qnorm)
{
	float e = b->qerr;
	if (!(e < INFINITY))
		return -INFINITY;
	if (l1->o.metric == DRIFT_METRIC_L2) {
		float a = sqrtf(d > 0 ? d : 0) * (1.0f - 1e-4f) - e;
		return a > 0 ? a * a : 0.0f;
	}
	return d - qnorm * e - 1e-4f * (fabsf(d) + qnorm * e) - 1e-6f;
}

/* Ranks the candidates of cand (id: slot << 32 | row) by their exact
 * distance into top. They are taken in SQ8 order and their rows read a
 * block at a time, until the SQ8 bound of the next one shows that it
 * cannot beat the k-th exact distance: the result is that of reading
 * them all, and usually little more than k rows are read. cand is sorted
 * (and emptied of heap order). */
static int rerank_candidates(const drift_l1 *l1, const float *qn, float qnorm,
			     drift_topk *cand, drift_topk *top, float *vbuf,
			     uint32_t *vrow)
{
	const drift_vec_kernels *k = drift_vec();
	uint32_t dim = l1->dim;
	size_t n = drift_topk_sort(cand), i = 0;
	/* The first block fills the top; later ones are small. */
	size_t blk = top->k;
	int rv = 0;
	while (i < n && rv == 0) {
		size_t c = n - i < blk ? n - i : blk;
		size_t m = 0;
		for (; m < c; m++) {
			const drift_hit *h = &cand->h[i + m];
			const l1_bucket *b = l1->b[h->id >> 32];
			if (sq8_lower_bound(l1, b, h->distance, qnorm) >
			    drift_topk_bound(top))
				break;
			vrow[m] = b->rows[(uint32_t)h->id];
		}
		if (m == 0)
			break;
		rv = drift_vstore_read(l1->vs, vrow, m, vbuf);
		for (size_t j = 0; j < m && rv == 0; j++) {
			const drift_hit *h = &cand->h[i + j];
			const l1_bucket *b = l1->b[h->id >> 32];
			float d = drift_metric_dist(k, l1->o.metric, qn,
						    vbuf + j * dim, dim);
			drift_topk_push(
				top, (drift_hit){b->ids[(uint32_t)h->id], d});
		}
		if (m < c)
			break;
		i += m;
		blk = 8;
	}
	return rv;
}

/* The eps of the RaBitQ bound (the paper's eps0 is 1.9; measured in
 * docs/search-profile.md). */
#define RABITQ_EPS 1.9f

/* The three-pass scan (RaBitQ bounds, SQ8 for the rows they cannot rule
 * out, exact distances for the best of those) of the buckets
 * pr[0..limit). Each bucket's 1-bit codes bound every member's distance
 * from below (node/codec/rabitq.h). A member is scored by SQ8 only when
 * that bound is below both the rerank-th best SQ8 distance (where the
 * SQ8 scan would drop it) and the k-th best upper bound of an exact
 * distance so far (from SQ8 distances and their error bound: it cannot
 * enter the top k), so, but for the RaBitQ bound's small failure
 * probability, the answer is the SQ8 scan's. */
static int rabitq_scan(const drift_l1 *l1, const float *qn, float qnorm,
		       prober *p, size_t rerank, drift_hit *cbuf,
		       drift_topk *rk, drift_topk *top, float *vbuf,
		       uint32_t *vrow, uint32_t *probed, uint64_t *scanned,
		       uint64_t *nrefined)
{
	uint32_t dim = l1->dim, pdim = l1->pdim;
	const drift_sq8_kernels *sk = drift_sq8();
	bool l2 = l1->o.metric == DRIFT_METRIC_L2;
	float cos1 = l1->o.metric == DRIFT_METRIC_COSINE ? 1.0f : 0.0f;
	drift_rabitq_query pq;
	int rv = drift_rabitq_query_init(&pq, pdim);
	if (rv != 0)
		return rv;
	float *qr = drift_mallocarray(2 * (size_t)pdim + dim, sizeof(float));
	uint32_t lbcap = 0;
	float *lb = NULL;
	uint32_t *sel = NULL;
	if (qr == NULL) {
		rv = DRIFT_ENOMEM;
		goto out;
	}
	float *t = qr + pdim, *tq = t + pdim;
	drift_rabitq_rotate(l1->rq, qn, qr);
	drift_topk cand, kth;
	drift_topk_init(&cand, cbuf, rerank);
	drift_topk_init(&kth, cbuf + rerank, top->k);
	uint64_t refined = 0;
	probe cur;
	while ((rv = probe_next(p, probe_radius(rk), &cur)) > 0) {
		uint32_t s = cur.slot;
		const l1_bucket *b = l1->b[s];
		/* Bounds come in whole blocks. */
		uint32_t rows = (b->n + DRIFT_RABITQ_BLOCK - 1) &
				~(DRIFT_RABITQ_BLOCK - 1);
		if (rows > lbcap) {
			drift_free(lb);
			drift_free(sel);
			lbcap = rows;
			lb = drift_mallocarray(lbcap, sizeof(float));
			sel = drift_mallocarray(lbcap, sizeof(uint32_t));
			if (lb == NULL || sel == NULL) {
				rv = DRIFT_ENOMEM;
				goto out;
			}
		}
		if (l2) {
			for (uint32_t j = 0; j < pdim; j++)
				t[j] = qr[j] - b->pcent[j];
			drift_rabitq_prepare(&pq, t, true, 0);
		} else {
			/* The probe key is -<q, c>. */
			drift_rabitq_prepare(&pq, qr, false, cur.key + cos1);
		}
		drift_rabitq_bounds(&pq, b->bits, b->bfac, b->n, RABITQ_EPS,
				    NULL, lb);
		float bias = sq8_prepare(l1, b, qn, tq);
		float bc = drift_topk_bound(&cand), bk = drift_topk_bound(&kth);
		float bound = bc < bk ? bc : bk;
		/* The rows the bound lets through, their codes fetched
		 * ahead: they are scattered over the bucket, and waiting on
		 * each in turn cost more than the scan (measured). */
		uint32_t nsel = 0;
		for (uint32_t r = 0; r < b->n; r++) {
			sel[nsel] = r;
			nsel += lb[r] <= bound;
		}
		for (uint32_t i2 = 0; i2 < nsel; i2++)
			for (uint32_t off = 0; off < dim; off += 64)
				__builtin_prefetch(b->codes +
						   (size_t)sel[i2] * dim + off);
		for (uint32_t i2 = 0; i2 < nsel; i2++) {
			uint32_t r = sel[i2];
			if (lb[r] > bound)
				continue;
			float d;
			const uint8_t *c = b->codes + (size_t)r * dim;
			if (l2)
				sk->l2(tq, b->qscale, c, 1, dim, &d);
			else
				sk->ip(tq, c, 1, dim, &d);
			d += bias;
			refined++;
			drift_hit h = {(uint64_t)s << 32 | r, d};
			drift_topk_push(&cand, h);
			if (p->adaptive)
				drift_topk_push(rk, h);
			h.distance = sq8_upper_bound(l1, b, d, qnorm);
			drift_topk_push(&kth, h);
			bc = drift_topk_bound(&cand);
			bk = drift_topk_bound(&kth);
			bound = bc < bk ? bc : bk;
		}
		(*probed)++;
		*scanned += b->n;
	}
	if (rv < 0)
		goto out;
	*nrefined = refined;
	rv = rerank_candidates(l1, qn, qnorm, &cand, top, vbuf, vrow);
out:
	drift_rabitq_query_free(&pq);
	drift_free(qr);
	drift_free(lb);
	drift_free(sel);
	return rv;
}

int drift_l1_search(drift_l1 *l1, const float *q,
		    const drift_l1_search_opts *so, drift_hit *out,
		    size_t *n_out, drift_l1_search_stats *stats)
{
	uint32_t dim = l1->dim;
	if (so->k == 0 || (so->nprobe > 0 && so->recall_target > 0) ||
	    so->recall_target > 1 || so->recall_target < 0)
		return DRIFT_EINVAL;
	const drift_vec_kernels *k = drift_vec();
	/* Rerank depth: enough SQ8 candidates that quantization error
	 * rarely pushes a true neighbour out (measured: tests/unit/test_l1.c
	 * recall floors, docs/benchmarks.md). */
	size_t rerank = (size_t)so->k * 4 < 40 ? 40 : (size_t)so->k * 4;
	float target = so->recall_target;
	if (so->nprobe == 0 && target == 0 && !so->exhaustive)
		target = l1->o.default_recall;
	bool exact = so->exhaustive || so->exact || target >= 1.0f;
	bool use_rabitq = l1->rq != NULL && !so->sq8_scan;
	/* Full vectors come from the store, a block of rows at a time (the
	 * re-rank candidates, or EXACT_BLOCK rows of a bucket). */
	size_t vrows = exact ? EXACT_BLOCK : rerank;
	float *vbuf = drift_aligned_alloc(DRIFT_ALIGN_CACHE,
					  vrows * dim * sizeof(float));
	uint32_t *vrow = drift_mallocarray(rerank, sizeof(uint32_t));
	float *qn = drift_aligned_alloc(DRIFT_ALIGN_CACHE, dim * sizeof(float));
	float *tq = drift_mallocarray(dim, sizeof(float));
	drift_hit *heap = drift_mallocarray(so->k, sizeof(drift_hit));
	/* The radius of the adaptive rule: the calib_rank-th best SQ8
	 * distance (l1_calib_rank). */
	size_t rrank = l1_calib_rank(so->k);
	drift_hit *cbuf =
		drift_mallocarray(rerank + so->k + rrank, sizeof(drift_hit));
	probe *pr = NULL;
	int rv = DRIFT_ENOMEM;
	if (qn == NULL || tq == NULL || heap == NULL || cbuf == NULL ||
	    vbuf == NULL || vrow == NULL)
		goto out;
	memcpy(qn, q, dim * sizeof(float));
	float qnorm = sqrtf(k->dot(qn, qn, dim));
	if (l1->o.metric == DRIFT_METRIC_COSINE) {
		if (!(qnorm > 0)) {
			rv = DRIFT_EINVAL;
			goto out;
		}
		for (uint32_t j = 0; j < dim; j++)
			qn[j] /= qnorm;
		qnorm = 1;
	}

	pthread_rwlock_rdlock(&l1->lock);
	pr = drift_mallocarray(l1->nslots ? l1->nslots : 1, sizeof(probe));
	if (pr == NULL) {
		pthread_rwlock_unlock(&l1->lock);
		goto out;
	}
	rv = 0;
	float tau = 0, scale = 1;
	if (!exact && so->nprobe == 0) {
		tau = l1_calib_tau(l1, target, so->k);
		scale = l1->calib.scale > 0 ? l1->calib.scale : 1.0f;
		if (l1->o.metric != DRIFT_METRIC_L2)
			scale *= qnorm;
	}
	/* A calibrated recall target on L2 decides bucket by bucket
	 * (probe_next); on the other metrics it probes the buckets within
	 * the calibrated key gap of the nearest (l1_calib.c). */
	prober pb = {.l1 = l1, .qn = qn, .pr = pr, .tau = tau};
	pb.adaptive = !exact && so->nprobe == 0 && tau < FLT_MAX &&
		      l1->o.metric == DRIFT_METRIC_L2;
	size_t np = 0;
	float kmin = FLT_MAX;
	/* Centroid order: from the centroid graph when there is one (a probe
	 * budget asks it for that many; a recall target for GRAPH_FIRST,
	 * then four times more while every answer is within the gap: at
	 * once for the key gap, after the nearest bucket for the adaptive
	 * rule), else a flat scan of every centroid. */
	bool flat = true;
	size_t want = so->nprobe > 0 ? so->nprobe : GRAPH_FIRST;
	while (!exact && l1->cg != NULL && l1->cg_ok && want < l1->live) {
		drift_hit *gs = drift_mallocarray(want, sizeof(drift_hit));
		np = gs != NULL ? l1_graph_probe(l1, qn, want, gs, pr) : 0;
		drift_free(gs);
		if (np == 0)
			break;
		kmin = FLT_MAX;
		for (size_t i = 0; i < np; i++)
			if (pr[i].key < kmin)
				kmin = pr[i].key;
		size_t inside = 0;
		for (size_t i = 0; i < np && so->nprobe == 0; i++)
			inside += (pr[i].key - kmin) <= tau * scale;
		if (so->nprobe > 0 || pb.adaptive || inside < np) {
			flat = false;
			pb.graph = pb.adaptive;
			pb.want = want;
			break;
		}
		want *= 4;
	}
	if (flat) {
		np = probe_flat(l1, qn, pr);
		kmin = FLT_MAX;
		for (size_t i = 0; i < np; i++)
			if (pr[i].key < kmin)
				kmin = pr[i].key;
	}
	size_t limit = np;
	if (so->nprobe > 0 && !so->exhaustive) {
		limit = so->nprobe < np ? so->nprobe : np;
	} else if (!exact && !pb.adaptive) {
		/* Probe the buckets within the calibrated gap of the
		 * nearest centroid (l1_calib.c). */
		size_t m = 0;
		for (size_t i = 0; i < np; i++)
			if ((pr[i].key - kmin) <= tau * scale)
				pr[m++] = pr[i];
		np = m;
		limit = np;
	}
	if (!pb.adaptive)
		probe_select(pr, np, limit);
	pb.n = np;
	pb.limit = limit;

	drift_topk top, rk;
	drift_topk_init(&top, heap, so->k);
	drift_topk_init(&rk, cbuf + rerank + so->k, rrank);
	uint32_t probed = 0;
	uint64_t scanned = 0, refined = 0;
	if (exact) {
		/* Full precision, pruning only what provably cannot hold a
		 * better vector: the answer is the true top-k. */
		l1_exact_scratch sc = {0};
		for (size_t i = 0; i < limit && !so->exhaustive && rv == 0;
		     i++) {
			uint32_t s = pr[i].slot;
			if (l1_lower_bound(l1, pr[i].key, s, qnorm) >
			    drift_topk_bound(&top))
				continue;
			rv = l1_exact_scan(l1, l1->b[s], qn, qnorm, UINT64_MAX,
					   &top, &sc);
			probed++;
			scanned += l1->b[s]->n;
		}
		l1_exact_scratch_free(&sc);
		/* Exhaustive: every full vector, no bound (the reference
		 * the tests hold the exact scan to). */
		for (size_t i = 0; i < limit && so->exhaustive; i++) {
			uint32_t s = pr[i].slot;
			const l1_bucket *b = l1->b[s];
			for (uint32_t r0 = 0; r0 < b->n && rv == 0;
			     r0 += EXACT_BLOCK) {
				uint32_t m = b->n - r0 < EXACT_BLOCK
						     ? b->n - r0
						     : EXACT_BLOCK;
				rv = l1_bucket_vectors(l1, b, r0, m, vbuf);
				for (uint32_t r = 0; r < m && rv == 0; r++) {
					float d = drift_metric_dist(
						k, l1->o.metric, qn,
						vbuf + (size_t)r * dim, dim);
					drift_topk_push(
						&top,
						(drift_hit){b->ids[r0 + r], d});
				}
			}
			probed++;
			scanned += b->n;
		}
	} else if (use_rabitq) {
		rv = rabitq_scan(l1, qn, qnorm, &pb, rerank, cbuf, &rk, &top,
				 vbuf, vrow, &probed, &scanned, &refined);
	} else {
		/* SQ8 asymmetric distances pick rerank candidates, which
		 * are then ranked by their exact distance. The candidate's
		 * id field holds its place: slot << 32 | row. */
		const drift_sq8_kernels *sk = drift_sq8();
		drift_topk cand;
		drift_topk_init(&cand, cbuf, rerank);
		float dists[256];
		probe cur;
		while ((rv = probe_next(&pb, probe_radius(&rk), &cur)) > 0) {
			uint32_t s = cur.slot;
			const l1_bucket *b = l1->b[s];
			float bias = sq8_prepare(l1, b, qn, tq);
			for (uint32_t r0 = 0; r0 < b->n; r0 += 256) {
				uint32_t m = b->n - r0 < 256 ? b->n - r0 : 256;
				const uint8_t *c = b->codes + (size_t)r0 * dim;
				if (l1->o.metric == DRIFT_METRIC_L2)
					sk->l2(tq, b->qscale, c, m, dim, dists);
				else
					sk->ip(tq, c, m, dim, dists);
				for (uint32_t r = 0; r < m; r++) {
					drift_hit h = {(uint64_t)s << 32 |
							       (r0 + r),
						       dists[r] + bias};
					drift_topk_push(&cand, h);
					if (pb.adaptive)
						drift_topk_push(&rk, h);
				}
			}
			probed++;
			scanned += b->n;
		}
		if (rv == 0)
			rv = rerank_candidates(l1, qn, qnorm, &cand, &top, vbuf,
					       vrow);
	}
	drift_free(pb.gs);
	pthread_rwlock_unlock(&l1->lock);
	if (rv != 0)
		goto out;

	size_t n = drift_topk_sort(&top);
	memcpy(out, heap, n * sizeof(drift_hit));
	*n_out = n;
	if (stats != NULL) {
		stats->probed = probed;
		stats->scanned = scanned;
		stats->refined = refined;
	}
	rv = 0;
out:
	drift_free(qn);
	drift_free(tq);
	drift_free(heap);
	drift_free(cbuf);
	drift_free(pr);
	drift_free(vbuf);
	drift_free(vrow);
	return rv;
}

/* ---- Point reads and statistics ---------------------------------------- */

int drift_l1_get(drift_l1 *l1, uint64_t id, float *out, uint64_t *version)
{
	pthread_rwlock_rdlock(&l1->lock);
	drift_kv_loc loc;
	int rv = drift_kv_get(&l1->kv, id, &loc);
	if (rv == 0) {
		const l1_bucket *b = l1->b[loc.bucket];
		rv = l1_bucket_vectors(l1, b, loc.row, 1, out);
		if (version != NULL && rv == 0)
			*version = b->versions[loc.row];
	}
	pthread_rwlock_unlock(&l1->lock);
	return rv;
}

int drift_l1_locate(drift_l1 *l1, uint64_t id, uint32_t *bucket)
{
	pthread_rwlock_rdlock(&l1->lock);
	drift_kv_loc loc;
	int rv = drift_kv_get(&l1->kv, id, &loc);
	if (rv == 0)
		*bucket = loc.bucket;
	pthread_rwlock_unlock(&l1->lock);
	return rv;
}

void drift_l1_size(drift_l1 *l1, uint64_t *vectors, uint32_t *buckets)
{
	pthread_rwlock_rdlock(&l1->lock);
	*vectors = l1->count;
	*buckets = l1->live;
	pthread_rwlock_unlock(&l1->lock);
}

void drift_l1_stats_get(drift_l1 *l1, drift_l1_stats *st)
{
	memset(st, 0, sizeof(*st));
	pthread_rwlock_rdlock(&l1->lock);
	st->vectors = l1->count;
	st->buckets = l1->live;
	st->min_size = UINT32_MAX;
	double drift = 0;
	for (uint32_t s = 0; s < l1->nslots; s++) {
		const l1_bucket *b = l1->b[s];
		if (b == NULL)
			continue;
		if (b->n < st->min_size)
			st->min_size = b->n;
		if (b->n > st->max_size)
			st->max_size = b->n;
		double d2 = 0;
		for (uint32_t j = 0; j < l1->dim; j++) {
			double m = b->sum[j] / b->n - b->centroid[j];
			d2 += m * m;
		}
		drift += b->rms > 0 ? sqrt(d2) / b->rms : 0;
	}
	if (st->buckets == 0)
		st->min_size = 0;
	else
		st->mean_drift = drift / st->buckets;
	drift_vstore_stats vst;
	drift_vstore_stats_get(l1->vs, &vst);
	st->vec_resident_bytes = vst.resident_bytes;
	st->vec_store_rows = vst.rows + vst.free_rows;
	st->vec_cache_hits = vst.hits;
	st->vec_cache_misses = vst.misses;
	st->vec_disk_reads = vst.disk_reads;
	st->centroid_graph = l1->cg != NULL && l1->cg_ok;
	pthread_rwlock_unlock(&l1->lock);
}
