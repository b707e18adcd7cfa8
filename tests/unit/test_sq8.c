/* Tests of node/codec/sq8: quantization error bounds on real data, edge
 * values, and every ADC kernel level against the decoded-vector distance
 * for every dimension from 1 to 1024. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/err.h"
#include "common/rand.h"
#include "common/simd.h"
#include "node/codec/sq8.h"
#include "drift_test.h"

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(sq8, round_trip_error_on_fashion_mnist)
{
	enum { DIM = DRIFT_TEST_FMNIST_DIM };
	size_t n;
	float *x = drift_test_fmnist("t10k", 2000, &n);
	float *min = malloc(DIM * sizeof(float)), *scale = malloc(DIM * 4);
	uint8_t *codes = malloc(n * DIM);
	float *back = malloc(n * DIM * sizeof(float));
	cr_assert_eq(drift_sq8_train(x, n, DIM, min, scale), 0);
	drift_sq8_encode(min, scale, DIM, x, n, codes);
	drift_sq8_decode(min, scale, DIM, codes, n, back);
	for (size_t i = 0; i < n * DIM; i++) {
		float s = scale[i % DIM];
		cr_assert_leq(fabsf(back[i] - x[i]), s * 0.5f + 1e-3f,
			      "value %zu: %f -> %f (scale %f)", i, x[i],
			      back[i], s);
	}
	/* Pixel values are integers 0..255 with full range: lossless. */
	size_t exact = 0;
	for (size_t i = 0; i < n * DIM; i++)
		exact += back[i] == x[i];
	cr_assert_gt(exact, n * DIM * 9 / 10);
	free(x);
	free(min);
	free(scale);
	free(codes);
	free(back);
}

DRIFT_TEST(sq8, edge_values)
{
	float x[3 * 2] = {5, -1e30f, 5, 1e30f, 5, 0};
	float min[2], scale[2];
	uint8_t c[6];
	cr_assert_eq(drift_sq8_train(x, 3, 2, min, scale), 0);
	cr_assert_float_eq(scale[0], 0.0f, 0, "constant dimension");
	cr_assert(isfinite(scale[1]), "huge range stays finite");
	drift_sq8_encode(min, scale, 2, x, 3, c);
	cr_assert_eq(c[0], 0);
	cr_assert_eq(c[1], 0);
	cr_assert_eq(c[3], 255);
	/* Out of range values are clamped. */
	float y[2] = {7, 2e30f};
	drift_sq8_encode(min, scale, 2, y, 1, c);
	cr_assert_eq(c[1], 255);
	float bad[2] = {NAN, 1};
	cr_assert_eq(drift_sq8_train(bad, 1, 2, min, scale), DRIFT_EINVAL);
	bad[0] = INFINITY;
	cr_assert_eq(drift_sq8_train(bad, 1, 2, min, scale), DRIFT_EINVAL);
	cr_assert_eq(drift_sq8_train(x, 0, 2, min, scale), 0);
	cr_assert_float_eq(scale[0], 0.0f, 0);
}

/* Every level, every dimension 1..1024: the kernel's distance equals the
 * double-precision distance between the query and the decoded vector. */
DRIFT_TEST(sq8, kernels_match_the_decoded_distance)
{
	enum { MAXD = 1024, ROWS = 3 };
	float *q = malloc(MAXD * 4), *min = malloc(MAXD * 4),
	      *scale = malloc(MAXD * 4), *t = malloc(MAXD * 4),
	      *w = malloc(MAXD * 4);
	uint8_t *codes = malloc(ROWS * MAXD);
	float out[ROWS];
	drift_rand r;
	drift_rand_seed(&r, 12);
	int levels = 0;
	for (int level = 0; level <= DRIFT_SIMD_AVX512; level++) {
		const drift_sq8_kernels *k = drift_sq8_for(level);
		if (k == NULL)
			continue;
		levels++;
		for (uint32_t dim = 1; dim <= MAXD; dim++) {
			for (uint32_t j = 0; j < dim; j++) {
				q[j] = (float)drift_rand_normal(&r) * 50;
				min[j] = (float)drift_rand_normal(&r) * 10;
				scale[j] = (float)drift_rand_unit(&r);
			}
			for (uint32_t j = 0; j < ROWS * dim; j++)
				codes[j] = (uint8_t)drift_rand_next(&r);
			drift_sq8_prepare_l2(min, dim, q, t);
			float bias =
				drift_sq8_prepare_ip(min, scale, dim, q, w);
			k->l2(t, scale, codes, ROWS, dim, out);
			for (int row = 0; row < ROWS; row++) {
				double want = 0, mag = 0;
				for (uint32_t j = 0; j < dim; j++) {
					double x = (double)min[j] +
						   (double)scale[j] *
							   codes[row * dim + j];
					want += (q[j] - x) * (q[j] - x);
				}
				mag = want;
				cr_assert(fabs(out[row] - want) <=
						  1e-5 * mag + 1e-3,
					  "l2 %s dim %u: %f vs %f",
					  drift_simd_name(level), dim, out[row],
					  want);
			}
			k->ip(w, codes, ROWS, dim, out);
			for (int row = 0; row < ROWS; row++) {
				double want = 0, mag = 0;
				for (uint32_t j = 0; j < dim; j++) {
					double x = (double)min[j] +
						   (double)scale[j] *
							   codes[row * dim + j];
					want -= q[j] * x;
					mag += fabs(q[j] * x);
				}
				cr_assert(fabs(bias + out[row] - want) <=
						  1e-5 * mag + 1e-3,
					  "ip %s dim %u",
					  drift_simd_name(level), dim);
			}
		}
	}
	cr_assert_geq(levels, 1);
	free(q);
	free(min);
	free(scale);
	free(t);
	free(w);
	free(codes);
}

/* A row of codes ending where readable memory ends: no kernel reads past
 * it. */
DRIFT_TEST(sq8, kernels_never_read_past_the_codes)
{
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(map, MAP_FAILED);
	cr_assert_eq(mprotect(map + page, (size_t)page, PROT_NONE), 0);
	memset(map, 1, (size_t)page);
	float t[64], s[64], out[1];
	for (int j = 0; j < 64; j++)
		t[j] = 1, s[j] = 1;
	for (int level = 0; level <= DRIFT_SIMD_AVX512; level++) {
		const drift_sq8_kernels *k = drift_sq8_for(level);
		if (k == NULL)
			continue;
		for (uint32_t dim = 1; dim <= 64; dim++) {
			k->l2(t, s, map + page - dim, 1, dim, out);
			cr_assert_float_eq(out[0], 0.0f, 0);
			k->ip(t, map + page - dim, 1, dim, out);
			cr_assert_float_eq(out[0], -(float)dim, 0);
		}
	}
	munmap(map, (size_t)page * 2);
}
