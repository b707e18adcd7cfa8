/* Tests of node/codec/rabitq: the rotation is orthogonal, every FastScan
 * kernel level gives the table sums of the coded bits, row copies keep the
 * bits, and on real data (Fashion-MNIST) the distance estimate lies within
 * its bound for nearly every pair, as the paper's theorem says. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/rand.h"
#include "common/simd.h"
#include "node/codec/rabitq.h"
#include "drift_test.h"

/* ---- Helpers ---------------------------------------------------------- */

static double dot_d(const float *a, const float *b, uint32_t n)
{
	double s = 0;
	for (uint32_t i = 0; i < n; i++)
		s += (double)a[i] * b[i];
	return s;
}

/* Bit i of row `row` of codes, read through the documented layout. */
static unsigned code_bit(uint32_t pdim, const uint8_t *codes, size_t row,
			 uint32_t i)
{
	size_t blk = row / 32;
	unsigned j = (unsigned)(row % 32);
	uint8_t byte = codes[blk * pdim * 4 + (i / 4) * 16 + (j & 15)];
	unsigned nib = j >= 16 ? byte >> 4 : byte & 0xf;
	return (nib >> (i % 4)) & 1u;
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(rabitq, rotation_is_orthogonal)
{
	static const uint32_t dims[] = {1, 3, 64, 100, 128, 784};
	drift_rand r;
	drift_rand_seed(&r, 5);
	for (size_t d = 0; d < sizeof(dims) / sizeof(dims[0]); d++) {
		drift_rabitq *rq;
		cr_assert_eq(drift_rabitq_new(dims[d], 7, &rq), 0);
		uint32_t dim = dims[d], pdim = drift_rabitq_pdim(rq);
		cr_assert_eq(pdim, drift_rabitq_padded(dim));
		cr_assert_geq(pdim, dim);
		cr_assert_eq(pdim & (pdim - 1), 0, "power of two");
		float *x = malloc(dim * 4), *y = malloc(dim * 4);
		float *px = malloc(pdim * 4), *py = malloc(pdim * 4);
		for (int t = 0; t < 20; t++) {
			for (uint32_t i = 0; i < dim; i++) {
				x[i] = (float)drift_rand_normal(&r);
				y[i] = (float)drift_rand_normal(&r) + x[i];
			}
			drift_rabitq_rotate(rq, x, px);
			drift_rabitq_rotate(rq, y, py);
			double xy = dot_d(x, y, dim), pxy = dot_d(px, py, pdim);
			double xx = dot_d(x, x, dim), pxx = dot_d(px, px, pdim);
			cr_assert(fabs(pxx - xx) <= 1e-4 * xx, "dim %u norm",
				  dim);
			cr_assert(fabs(pxy - xy) <= 1e-4 * (xx + fabs(xy)),
				  "dim %u dot %f vs %f", dim, pxy, xy);
		}
		/* A one-hot vector is spread over every coordinate. */
		memset(x, 0, dim * 4);
		x[0] = 1;
		drift_rabitq_rotate(rq, x, px);
		uint32_t nonzero = 0;
		for (uint32_t i = 0; i < pdim; i++)
			nonzero += fabsf(px[i]) > 1e-3f / sqrtf((float)pdim);
		cr_assert_geq(nonzero, pdim / 2, "dim %u", dim);
		free(x);
		free(y);
		free(px);
		free(py);
		drift_rabitq_free(rq);
	}
}

/* Every level: the sum of each row is the table entries its bits pick. */
DRIFT_TEST(rabitq, kernels_sum_the_tables_of_the_bits)
{
	static const uint32_t pdims[] = {64, 128, 256, 1024};
	drift_rand r;
	drift_rand_seed(&r, 11);
	int levels = 0;
	for (int level = 0; level <= DRIFT_SIMD_AVX512; level++) {
		const drift_rabitq_kernels *k = drift_rabitq_for(level);
		if (k == NULL)
			continue;
		levels++;
		for (size_t p = 0; p < sizeof(pdims) / sizeof(pdims[0]); p++) {
			uint32_t pdim = pdims[p];
			size_t nblocks = 3, n = nblocks * 32;
			size_t bytes = drift_rabitq_code_bytes(pdim, n);
			cr_assert_eq(bytes, n * pdim / 8);
			uint8_t *codes = malloc(bytes);
			uint8_t *lut = aligned_alloc(64, pdim / 4 * 16);
			uint16_t *out = malloc(n * sizeof(uint16_t));
			for (size_t i = 0; i < bytes; i++)
				codes[i] = (uint8_t)drift_rand_next(&r);
			/* Table entries at their largest (56) too: the byte
			 * sums must not overflow. */
			for (size_t i = 0; i < pdim / 4 * 16; i++)
				lut[i] =
					(uint8_t)(i % 5 == 0 ? 56
							     : drift_rand_below(
								       &r, 57));
			k->scan(codes, lut, nblocks, pdim, out);
			for (size_t row = 0; row < n; row++) {
				unsigned want = 0;
				for (uint32_t g = 0; g < pdim / 4; g++) {
					unsigned nib = 0;
					for (unsigned t = 0; t < 4; t++)
						nib |= code_bit(pdim, codes,
								row, 4 * g + t)
						       << t;
					want += lut[g * 16 + nib];
				}
				cr_assert_eq(out[row], want,
					     "%s pdim %u row %zu",
					     drift_simd_name(level), pdim, row);
			}
			free(codes);
			free(lut);
			free(out);
		}
	}
	cr_assert_geq(levels, 1);
}

/* Every level's bounds equal the scalar ones (up to float rounding), for
 * random codes, factors and constants. */
DRIFT_TEST(rabitq, bounds_kernels_match_the_scalar_ones)
{
	enum { PDIM = 256, NB = 4, N = NB * 32 };
	drift_rand r;
	drift_rand_seed(&r, 21);
	size_t bytes = drift_rabitq_code_bytes(PDIM, N);
	uint8_t *codes = malloc(bytes), *lut = aligned_alloc(64, PDIM * 4);
	float *fac = malloc(drift_rabitq_fac_count(N) * 4);
	float want_e[N], want_l[N], e[N], l[N];
	for (size_t i = 0; i < bytes; i++)
		codes[i] = (uint8_t)drift_rand_next(&r);
	for (size_t i = 0; i < PDIM * 4; i++)
		lut[i] = (uint8_t)drift_rand_below(&r, 57);
	for (size_t i = 0; i < drift_rabitq_fac_count(N); i++)
		fac[i] = (float)drift_rand_unit(&r) * 10;
	for (int metric = 0; metric < 2; metric++) {
		drift_rabitq_consts c = {.a = 0.01f,
					 .b = -3.5f,
					 .w = metric ? 0.0f : 1.0f,
					 .base = 7,
					 .m = metric ? 1.0f : 2.0f,
					 .eb = 0.3f,
					 .qb = 0.05f};
		drift_rabitq_scalar.bounds(codes, lut, fac, NB, PDIM, &c,
					   want_e, want_l);
		for (int level = 1; level <= DRIFT_SIMD_AVX512; level++) {
			const drift_rabitq_kernels *k = drift_rabitq_for(level);
			if (k == NULL)
				continue;
			k->bounds(codes, lut, fac, NB, PDIM, &c, e, l);
			for (size_t i = 0; i < N; i++) {
				float tol = 1e-4f * (fabsf(want_e[i]) + 10);
				cr_assert_float_eq(e[i], want_e[i], tol,
						   "%s row %zu",
						   drift_simd_name(level), i);
				cr_assert_float_eq(l[i], want_l[i], tol,
						   "%s row %zu",
						   drift_simd_name(level), i);
			}
			/* Without est, the same bounds. */
			k->bounds(codes, lut, fac, NB, PDIM, &c, NULL, l);
			for (size_t i = 0; i < N; i++)
				cr_assert_float_eq(
					l[i], want_l[i],
					1e-4f * (fabsf(want_e[i]) + 10));
		}
	}
	free(codes);
	free(lut);
	free(fac);
}

DRIFT_TEST(rabitq, encode_sets_the_signs_and_copy_moves_them)
{
	enum { PDIM = 128, N = 70 };
	drift_rand r;
	drift_rand_seed(&r, 3);
	size_t bytes = drift_rabitq_code_bytes(PDIM, N);
	uint8_t *codes = calloc(1, bytes), *other = calloc(1, bytes);
	memset(other, 0xa5, bytes);
	size_t nf = drift_rabitq_fac_count(N);
	cr_assert_eq(nf, 2 * 96);
	float *x = malloc(N * PDIM * 4), *fac = malloc(nf * 4),
	      *fac2 = malloc(nf * 4), *fac3 = malloc(nf * 4);
	for (size_t i = 0; i < (size_t)N * PDIM; i++)
		x[i] = (float)drift_rand_normal(&r);
	for (size_t row = 0; row < N; row++)
		drift_rabitq_encode(PDIM, x + row * PDIM, codes, row, fac);
	for (size_t row = 0; row < N; row++) {
		const float *v = x + row * PDIM;
		double n2 = dot_d(v, v, PDIM), l1 = 0;
		for (uint32_t i = 0; i < PDIM; i++) {
			cr_assert_eq(code_bit(PDIM, codes, row, i), v[i] > 0);
			l1 += fabs(v[i]);
		}
		size_t at = row / 32 * 64 + row % 32;
		cr_assert_float_eq(fac[at], n2, 1e-4 * n2);
		/* f = |r| / <ob, o> >= |r| */
		cr_assert_geq(fac[at + 32], sqrt(n2) * 0.999);
		cr_assert_float_eq(fac[at + 32], sqrt(PDIM) * n2 / l1,
				   1e-3 * fac[at + 32]);
	}
	/* Reversed order into a dirty array: every bit lands, no other row
	 * is touched. */
	for (size_t row = 0; row < N; row++)
		drift_rabitq_copy(PDIM, other, fac3, N - 1 - row, codes, fac,
				  row);
	for (size_t row = 0; row < N; row++) {
		for (uint32_t i = 0; i < PDIM; i++)
			cr_assert_eq(code_bit(PDIM, other, N - 1 - row, i),
				     code_bit(PDIM, codes, row, i));
		size_t at = row / 32 * 64 + row % 32;
		size_t to = (N - 1 - row) / 32 * 64 + (N - 1 - row) % 32;
		cr_assert_eq(fac3[to], fac[at]);
		cr_assert_eq(fac3[to + 32], fac[at + 32]);
	}
	/* A zero residual: the estimate is exactly |t|^2. */
	memset(x, 0, PDIM * 4);
	drift_rabitq_encode(PDIM, x, codes, 0, fac2);
	cr_assert_eq(fac2[32], 0.0f);
	free(codes);
	free(other);
	free(x);
	free(fac);
	free(fac2);
	free(fac3);
}

/* Real data: 2,000 Fashion-MNIST train images around their mean, 100 test
 * images as queries. The estimated squared distance lies within its bound
 * (eps0 = 1.9) for at least 99% of the pairs, and the estimate is nearly
 * unbiased; the same for inner products. */
DRIFT_TEST(rabitq, estimate_within_bound_on_fashion_mnist)
{
	enum { DIM = DRIFT_TEST_FMNIST_DIM, NB = 2000, NQ = 100 };
	size_t nb, nq;
	float *base = drift_test_fmnist("train", NB, &nb);
	float *qs = drift_test_fmnist("t10k", NQ, &nq);
	drift_rabitq *rq;
	cr_assert_eq(drift_rabitq_new(DIM, 42, &rq), 0);
	uint32_t pdim = drift_rabitq_pdim(rq);
	float *c = calloc(DIM, 4);
	for (size_t i = 0; i < nb; i++)
		for (uint32_t j = 0; j < DIM; j++)
			c[j] += base[i * DIM + j] / (float)nb;
	float *pc = malloc(pdim * 4), *px = malloc(pdim * 4);
	float *t = malloc(pdim * 4);
	uint8_t *codes = calloc(1, drift_rabitq_code_bytes(pdim, nb));
	float *fac = malloc(drift_rabitq_fac_count(nb) * 4),
	      *est = malloc((nb + 32) * 4), *lb = malloc((nb + 32) * 4);
	drift_rabitq_rotate(rq, c, pc);
	for (size_t i = 0; i < nb; i++) {
		drift_rabitq_rotate(rq, base + i * DIM, px);
		for (uint32_t j = 0; j < pdim; j++)
			px[j] -= pc[j];
		drift_rabitq_encode(pdim, px, codes, i, fac);
	}
	drift_rabitq_query pq;
	cr_assert_eq(drift_rabitq_query_init(&pq, pdim), 0);
	size_t outside = 0, pairs = 0, ip_outside = 0;
	double rel = 0;
	for (size_t qi = 0; qi < nq; qi++) {
		const float *q = qs + qi * DIM;
		drift_rabitq_rotate(rq, q, px);
		for (uint32_t j = 0; j < pdim; j++)
			t[j] = px[j] - pc[j];
		drift_rabitq_prepare(&pq, t, true, 0);
		drift_rabitq_bounds(&pq, codes, fac, nb, 1.9f, est, lb);
		for (size_t i = 0; i < nb; i++) {
			const float *x = base + i * DIM;
			double d = 0;
			for (uint32_t j = 0; j < DIM; j++)
				d += ((double)x[j] - q[j]) * (x[j] - q[j]);
			cr_assert_leq(lb[i], est[i]);
			outside += fabs(est[i] - d) > est[i] - lb[i];
			rel += (est[i] - d) / d;
			pairs++;
		}
		/* Inner products: t = P q, bias -<c, q>. */
		double cq = dot_d(c, q, DIM);
		drift_rabitq_prepare(&pq, px, false, (float)-cq);
		drift_rabitq_bounds(&pq, codes, fac, nb, 1.9f, est, lb);
		for (size_t i = 0; i < nb; i++) {
			double d = -dot_d(base + i * DIM, q, DIM);
			ip_outside += fabs(est[i] - d) > est[i] - lb[i];
		}
	}
	cr_assert_leq(outside, pairs / 100, "%zu of %zu outside", outside,
		      pairs);
	cr_assert_leq(ip_outside, pairs / 100, "%zu of %zu outside", ip_outside,
		      pairs);
	cr_assert_leq(fabs(rel / (double)pairs), 0.02, "mean relative error %f",
		      rel / (double)pairs);
	drift_rabitq_query_free(&pq);
	drift_rabitq_free(rq);
	free(base);
	free(qs);
	free(c);
	free(pc);
	free(px);
	free(t);
	free(codes);
	free(fac);
	free(est);
	free(lb);
}
