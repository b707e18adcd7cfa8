#include "node/l1/kmeans.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rand.h"
#include "common/vec.h"

/* Below this k, initialise with k-means++. */
#define PLUSPLUS_MAX_K 64

uint32_t drift_nearest(const float *v, const float *centroids, uint32_t k,
		       uint32_t dim, float *dist)
{
	const drift_vec_kernels *kern = drift_vec();
	uint32_t best = 0;
	float bd = FLT_MAX;
	for (uint32_t c = 0; c < k; c++) {
		float d = kern->l2sq(v, centroids + (size_t)c * dim, dim);
		if (d < bd) {
			bd = d;
			best = c;
		}
	}
	if (dist != NULL)
		*dist = bd;
	return best;
}

/* Picks the sample: the first m indices of a seeded partial shuffle. */
static void pick_sample(size_t n, size_t m, drift_rand *r, size_t *idx)
{
	/* Floyd's algorithm would avoid the n-sized array; n-sized is fine
	 * here because the caller holds n rows anyway. */
	for (size_t i = 0; i < n; i++)
		idx[i] = i;
	for (size_t i = 0; i < m; i++) {
		size_t j = i + (size_t)drift_rand_below(r, n - i);
		size_t t = idx[i];
		idx[i] = idx[j];
		idx[j] = t;
	}
}

static void init_plusplus(const float *s, size_t m, uint32_t dim, uint32_t k,
			  drift_rand *r, float *cent, float *mind)
{
	const drift_vec_kernels *kern = drift_vec();
	size_t first = (size_t)drift_rand_below(r, m);
	memcpy(cent, s + first * dim, dim * sizeof(float));
	for (size_t i = 0; i < m; i++)
		mind[i] = kern->l2sq(s + i * dim, cent, dim);
	for (uint32_t c = 1; c < k; c++) {
		double total = 0;
		for (size_t i = 0; i < m; i++)
			total += mind[i];
		size_t pick = 0;
		if (total > 0) {
			double t = drift_rand_unit(r) * total;
			for (pick = 0; pick + 1 < m; pick++) {
				t -= mind[pick];
				if (t <= 0)
					break;
			}
		} else {
			pick = (size_t)drift_rand_below(r, m);
		}
		float *cc = cent + (size_t)c * dim;
		memcpy(cc, s + pick * dim, dim * sizeof(float));
		for (size_t i = 0; i < m; i++) {
			float d = kern->l2sq(s + i * dim, cc, dim);
			if (d < mind[i])
				mind[i] = d;
		}
	}
}

int drift_kmeans(const float *x, size_t n, uint32_t dim, uint32_t k,
		 const drift_kmeans_opts *opts, float *centroids,
		 uint32_t *assign, drift_err *err)
{
	if (k == 0 || dim == 0 || n < k)
		return drift_err_set(err, DRIFT_EINVAL,
				     "k-means: need 1 <= k <= n (k=%u, n=%zu)",
				     k, n);
	drift_kmeans_opts o = opts != NULL ? *opts : (drift_kmeans_opts){0};
	if (o.iters == 0)
		o.iters = 10;
	if (o.sample_per_centroid == 0)
		o.sample_per_centroid = 64;
	size_t m = (size_t)o.sample_per_centroid * k;
	if (m > n)
		m = n;

	int rv = DRIFT_ENOMEM;
	size_t *idx = drift_mallocarray(n, sizeof(size_t));
	float *s = drift_mallocarray(m * dim, sizeof(float));
	float *cent = drift_mallocarray((size_t)k * dim, sizeof(float));
	double *sum = drift_mallocarray((size_t)k * dim, sizeof(double));
	size_t *cnt = drift_mallocarray(k, sizeof(size_t));
	uint32_t *sa = drift_mallocarray(m, sizeof(uint32_t));
	float *mind = drift_mallocarray(m, sizeof(float));
	if (!idx || !s || !cent || !sum || !cnt || !sa || !mind) {
		drift_err_set(err, DRIFT_ENOMEM, "k-means of %zu points", n);
		goto out;
	}
	drift_rand r;
	drift_rand_seed(&r, o.seed);
	pick_sample(n, m, &r, idx);
	for (size_t i = 0; i < m; i++)
		memcpy(s + i * dim, x + idx[i] * dim, dim * sizeof(float));

	if (k <= PLUSPLUS_MAX_K)
		init_plusplus(s, m, dim, k, &r, cent, mind);
	else /* the sample is already a random permutation */
		memcpy(cent, s, (size_t)k * dim * sizeof(float));

	for (unsigned it = 0; it < o.iters; it++) {
		memset(sum, 0, (size_t)k * dim * sizeof(double));
		memset(cnt, 0, k * sizeof(size_t));
		for (size_t i = 0; i < m; i++) {
			const float *v = s + i * dim;
			uint32_t c = drift_nearest(v, cent, k, dim, &mind[i]);
			sa[i] = c;
			cnt[c]++;
			double *sc = sum + (size_t)c * dim;
			for (uint32_t j = 0; j < dim; j++)
				sc[j] += v[j];
		}
		for (uint32_t c = 0; c < k; c++) {
			if (cnt[c] == 0)
				continue;
			for (uint32_t j = 0; j < dim; j++)
				cent[(size_t)c * dim + j] =
					(float)(sum[(size_t)c * dim + j] /
						(double)cnt[c]);
		}
		/* Re-seed empty clusters next to the largest one: both
		 * halves of it then compete for its members. */
		for (uint32_t c = 0; c < k; c++) {
			if (cnt[c] > 0)
				continue;
			uint32_t big = 0;
			for (uint32_t b = 1; b < k; b++)
				if (cnt[b] > cnt[big])
					big = b;
			if (cnt[big] < 2)
				break;
			for (uint32_t j = 0; j < dim; j++) {
				float v = cent[(size_t)big * dim + j];
				float eps = (fabsf(v) + 1e-3f) * 1e-3f;
				cent[(size_t)c * dim + j] = v + eps;
				cent[(size_t)big * dim + j] = v - eps;
			}
			cnt[c] = cnt[big] / 2;
			cnt[big] -= cnt[c];
		}
	}
	if (assign != NULL)
		for (size_t i = 0; i < n; i++)
			assign[i] =
				drift_nearest(x + i * dim, cent, k, dim, NULL);
	memcpy(centroids, cent, (size_t)k * dim * sizeof(float));
	rv = 0;
out:
	drift_free(idx);
	drift_free(s);
	drift_free(cent);
	drift_free(sum);
	drift_free(cnt);
	drift_free(sa);
	drift_free(mind);
	return rv;
}
