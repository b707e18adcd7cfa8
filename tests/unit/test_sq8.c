/* Tests of node/codec/sq8: quantization error bounds on real data, edge
 * values, and every ADC kernel level against the decoded-vector distance
 * for every dimension from 1 to 1024. */
#include <float.h>
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

/* Rows of special floats: the decoded value stays within half a step of
 * the input (plus the float rounding of the step itself), constant and
 * denormal dimensions divide by nothing, and NaN or Inf is refused by
 * train and encode alike, with nothing written. */
DRIFT_TEST(sq8, adversarial_rows)
{
	enum { DIM = 6, N = 1025 };
	float *x = malloc(N * DIM * sizeof(float));
	float *back = malloc(N * DIM * sizeof(float));
	uint8_t *codes = malloc(N * DIM);
	float min[DIM], scale[DIM];
	drift_rand r;
	drift_rand_seed(&r, 9);
	static const size_t sizes[] = {1, 2, 1023, 1024, 1025};
	for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
		size_t n = sizes[s];
		for (size_t i = 0; i < n; i++) {
			float *row = x + i * DIM;
			row[0] = -0.0f;				/* all -0.0 */
			row[1] = i % 2 ? 0.0f : -0.0f;		/* +/- zero */
			row[2] = (float)(i % 7) * FLT_TRUE_MIN; /* denormal */
			row[3] = 42.0f;				/* all equal */
			row[4] = (float)drift_rand_normal(&r) * 1e30f;
			row[5] = i % 3 ? FLT_MAX : -FLT_MAX;
		}
		cr_assert_eq(drift_sq8_train(x, n, DIM, min, scale), 0);
		cr_assert_eq(drift_sq8_encode(min, scale, DIM, x, n, codes), 0);
		drift_sq8_decode(min, scale, DIM, codes, n, back);
		for (size_t i = 0; i < n * DIM; i++) {
			size_t j = i % DIM;
			cr_assert(isfinite(back[i]), "value %zu", i);
			double err = fabs((double)back[i] - (double)x[i]);
			double bound = 0.5 * scale[j] * (1 + 1e-5) +
				       1e-6 * fabs((double)x[i]) +
				       8 * (double)FLT_TRUE_MIN;
			/* Dimension 5 spans more than FLT_MAX: capped. */
			if (j != 5)
				cr_assert_leq(err, bound,
					      "n %zu dim %zu: %g -> %g", n, j,
					      (double)x[i], (double)back[i]);
		}
		cr_assert_float_eq(scale[0], 0.0f, 0);
		cr_assert_float_eq(scale[3], 0.0f, 0);
	}
	/* NaN and Inf: refused, nothing written. */
	float bad[DIM] = {1, 2, 3, 4, 5, NAN};
	memset(codes, 0x77, DIM);
	float m2[DIM] = {9}, s2[DIM] = {9};
	for (int k = 0; k < 3; k++) {
		bad[5] = k == 0 ? NAN : k == 1 ? INFINITY : -INFINITY;
		cr_assert_eq(drift_sq8_encode(min, scale, DIM, bad, 1, codes),
			     DRIFT_EINVAL);
		cr_assert_eq(drift_sq8_train(bad, 1, DIM, m2, s2),
			     DRIFT_EINVAL);
		cr_assert_eq(codes[0], 0x77);
		cr_assert_float_eq(m2[0], 9.0f, 0);
	}
	/* Empty input: min and scale 0, nothing to encode. */
	cr_assert_eq(drift_sq8_train(x, 0, DIM, min, scale), 0);
	cr_assert_eq(drift_sq8_encode(min, scale, DIM, x, 0, codes), 0);
	free(x);
	free(back);
	free(codes);
}
