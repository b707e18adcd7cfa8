/* Tests of node/kmeans: finds well-separated clusters, is deterministic for
 * a seed, and refuses bad arguments. */
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rand.h"
#include "node/l1/kmeans.h"
#include "drift_test.h"

/* ---- Helpers ---------------------------------------------------------- */

enum { DIM = 16, K = 8, PER = 300 };

/* K tight blobs around far-apart centres; row i belongs to blob i % K. */
static void blobs(float *x, float *centres)
{
	drift_rand r;
	drift_rand_seed(&r, 21);
	for (int c = 0; c < K; c++)
		for (int j = 0; j < DIM; j++)
			centres[c * DIM + j] =
				(float)(drift_rand_normal(&r) * 100);
	for (int i = 0; i < K * PER; i++)
		for (int j = 0; j < DIM; j++)
			x[i * DIM + j] = centres[(i % K) * DIM + j] +
					 (float)drift_rand_normal(&r);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(kmeans, separates_blobs)
{
	static float x[K * PER * DIM], centres[K * DIM], cent[K * DIM];
	static uint32_t assign[K * PER];
	blobs(x, centres);
	drift_kmeans_opts o = {.seed = 3};
	cr_assert_eq(drift_kmeans(x, K * PER, DIM, K, &o, cent, assign, NULL),
		     0);
	/* Every blob maps to exactly one cluster and back. */
	for (int c = 0; c < K; c++) {
		uint32_t first = assign[c];
		for (int i = c; i < K * PER; i += K)
			cr_assert_eq(assign[i], first, "blob %d split", c);
		for (int d = 0; d < c; d++)
			cr_assert_neq(assign[d], first, "blobs %d, %d merged",
				      c, d);
		float dist;
		drift_nearest(centres + c * DIM, cent, K, DIM, &dist);
		cr_assert_lt(dist, 1.0f, "centroid near blob %d", c);
	}
}

DRIFT_TEST(kmeans, deterministic_for_a_seed)
{
	static float x[K * PER * DIM], centres[K * DIM], a[K * DIM], b[K * DIM];
	blobs(x, centres);
	drift_kmeans_opts o = {.seed = 9, .iters = 3};
	cr_assert_eq(drift_kmeans(x, K * PER, DIM, K, &o, a, NULL, NULL), 0);
	cr_assert_eq(drift_kmeans(x, K * PER, DIM, K, &o, b, NULL, NULL), 0);
	cr_assert_eq(memcmp(a, b, sizeof(a)), 0);
}

DRIFT_TEST(kmeans, identical_points_and_bad_arguments)
{
	static float x[40 * 4];
	for (int i = 0; i < 40 * 4; i++)
		x[i] = 1.0f;
	float cent[2 * 4];
	uint32_t assign[40];
	cr_assert_eq(drift_kmeans(x, 40, 4, 2, NULL, cent, assign, NULL), 0);
	for (int j = 0; j < 8; j++)
		cr_assert(fabsf(cent[j] - 1.0f) < 0.01f);
	drift_err err;
	cr_assert_eq(drift_kmeans(x, 1, 4, 2, NULL, cent, NULL, &err),
		     DRIFT_EINVAL);
	cr_assert_eq(drift_kmeans(x, 40, 4, 0, NULL, cent, NULL, &err),
		     DRIFT_EINVAL);
	drift_failalloc_arm(2, 0);
	cr_assert_eq(drift_kmeans(x, 40, 4, 2, NULL, cent, NULL, &err),
		     DRIFT_ENOMEM);
	drift_failalloc_arm(0, 0);
}
