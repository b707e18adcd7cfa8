/* Tests of node/codec/alp: bit-exact round trips on real data (Fashion-
 * MNIST; SIFT descriptors when the benchmark cache has them) and on
 * adversarial floats, the scheme each kind of data gets, range decoding,
 * and corrupt columns refused or survived. */
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/rand.h"
#include "node/codec/alp.h"
#include "drift_test.h"

/* ---- Helpers ------------------------------------------------------------ */

static float from_bits(uint32_t u)
{
	float f;
	memcpy(&f, &u, sizeof(f));
	return f;
}

/* Encodes, checks the bound, decodes whole and checks every bit; returns
 * the encoded column (free it) and its size in *len. */
static uint8_t *round_trip(const float *x, size_t n, size_t *len)
{
	size_t cap = drift_alp_bound(n);
	uint8_t *buf = malloc(cap);
	float *y = malloc((n + 1) * sizeof(float));
	cr_assert(buf != NULL && y != NULL);
	cr_assert_eq(drift_alp_encode(x, n, buf, cap, len), 0);
	cr_assert_leq(*len, cap);
	uint64_t count;
	cr_assert_eq(drift_alp_count(buf, *len, &count), 0);
	cr_assert_eq(count, n);
	y[n] = 1234.5f;
	int rv = drift_alp_decode(buf, *len, y, n);
	cr_assert_eq(rv, 0, "n %zu: %s", n, drift_errname(rv));
	for (size_t i = 0; i < n; i++) {
		uint32_t a, b;
		memcpy(&a, &x[i], 4);
		memcpy(&b, &y[i], 4);
		cr_assert_eq(a, b, "n %zu value %zu: %08x became %08x", n, i, a,
			     b);
	}
	cr_assert_float_eq(y[n], 1234.5f, 0, "wrote past n");
	free(y);
	return buf;
}

static drift_alp_stats stats(const uint8_t *buf, size_t len)
{
	drift_alp_stats st;
	cr_assert_eq(drift_alp_stats_of(buf, len, &st), 0);
	return st;
}

/* Rows of an fvecs file (int32 dim, then dim floats per row). NULL when
 * the file is absent. */
static float *read_fvecs(const char *path, size_t max_rows, uint32_t *dim,
			 size_t *rows)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	int32_t d = 0;
	cr_assert_eq(fread(&d, 4, 1, f), 1);
	cr_assert(d > 0 && d < 100000);
	float *x = malloc(max_rows * (size_t)d * sizeof(float));
	size_t n = 0;
	rewind(f);
	for (; n < max_rows; n++) {
		int32_t dd;
		if (fread(&dd, 4, 1, f) != 1)
			break;
		cr_assert_eq(dd, d);
		cr_assert_eq(fread(x + n * (size_t)d, 4, (size_t)d, f),
			     (size_t)d);
	}
	fclose(f);
	*dim = (uint32_t)d;
	*rows = n;
	return x;
}

/* ---- Cases -------------------------------------------------------------- */

DRIFT_TEST(alp, fashion_mnist_is_bit_exact_and_small)
{
	size_t rows, len;
	float *x = drift_test_fmnist("t10k", 2000, &rows);
	size_t n = rows * DRIFT_TEST_FMNIST_DIM;
	uint8_t *buf = round_trip(x, n, &len);
	double ratio = (double)n * 4 / (double)len;
	drift_alp_stats st = stats(buf, len);
	cr_log_info("fmnist: ratio %.2f, %llu ALP / %llu RD / %llu stored",
		    ratio, (unsigned long long)st.alp,
		    (unsigned long long)st.rd, (unsigned long long)st.stored);
	/* Integers 0..255: ALP, at most 8 bits a value (a mostly black
	 * vector may do better with its few non-zero pixels as exceptions). */
	cr_assert_eq(st.alp, (n + 1023) / 1024);
	cr_assert_lt(st.exceptions, n / 1000);
	cr_assert_geq(ratio, 3.8);
	free(buf);

	/* Scaled to [0, 1] (x / 255): not decimals, ALP-RD or stored. */
	for (size_t i = 0; i < n; i++)
		x[i] /= 255.0f;
	buf = round_trip(x, n, &len);
	st = stats(buf, len);
	cr_log_info("fmnist / 255: ratio %.2f, %llu ALP / %llu RD / %llu "
		    "stored",
		    (double)n * 4 / (double)len, (unsigned long long)st.alp,
		    (unsigned long long)st.rd, (unsigned long long)st.stored);
	cr_assert_leq(len, drift_alp_bound(n));
	free(buf);
	free(x);
}

DRIFT_TEST(alp, sift_descriptors_when_cached)
{
	const char *base = getenv("DRIFT_BENCH_DATA");
	char path[512];
	snprintf(path, sizeof(path), "%s/sift/base.fvecs",
		 base != NULL && base[0] ? base : "/var/tmp/drift-bench");
	uint32_t dim;
	size_t rows, len;
	float *x = read_fvecs(path, 5000, &dim, &rows);
	if (x == NULL) {
		cr_log_info("%s absent: SIFT round trip skipped", path);
		return;
	}
	size_t n = rows * dim;
	uint8_t *buf = round_trip(x, n, &len);
	cr_log_info("sift (%zu x %u): ratio %.2f", rows, dim,
		    (double)n * 4 / (double)len);
	cr_assert_geq((double)n * 4 / (double)len, 2.0);
	free(buf);
	free(x);
}

DRIFT_TEST(alp, decimals_use_alp_with_few_exceptions)
{
	enum { N = 10000 };
	float *x = malloc(N * sizeof(float));
	drift_rand r;
	drift_rand_seed(&r, 1);
	/* Prices with two decimals. */
	for (size_t i = 0; i < N; i++)
		x[i] = (float)(drift_rand_below(&r, 100000)) / 100.0f;
	size_t len;
	uint8_t *buf = round_trip(x, N, &len);
	drift_alp_stats st = stats(buf, len);
	cr_assert_eq(st.alp, (N + 1023) / 1024);
	cr_assert_lt(st.exceptions, N / 100);
	cr_assert_lt(len, N * 3, "about 17 bits a value");
	free(buf);
	/* The same with -0.0, NaN and Inf sprinkled in: exceptions. */
	for (size_t i = 0; i < N; i += 97)
		x[i] = i % 3 == 0 ? -0.0f : i % 3 == 1 ? NAN : -INFINITY;
	buf = round_trip(x, N, &len);
	st = stats(buf, len);
	cr_assert_geq(st.exceptions, N / 97);
	cr_assert_eq(st.stored, 0);
	free(buf);
	free(x);
}

/* Sizes around the vector length, and the floats ALP must not lose. */
DRIFT_TEST(alp, adversarial_floats_are_bit_exact)
{
	static const size_t sizes[] = {0, 1, 2, 1023, 1024, 1025, 2049, 5000};
	enum { MAXN = 5000 };
	float *x = malloc(MAXN * sizeof(float));
	drift_rand r;
	drift_rand_seed(&r, 2);
	for (int pattern = 0; pattern < 14; pattern++) {
		for (size_t i = 0; i < MAXN; i++) {
			uint64_t z = drift_rand_next(&r);
			switch (pattern) {
			case 0: /* NaN payloads, both signs, quiet and
				   signalling */
				x[i] = from_bits(
					(uint32_t)(z & 0x80000000u) |
					0x7f800000u |
					((uint32_t)(z >> 32) & 0x7fffff) | 1);
				break;
			case 1:
				x[i] = -0.0f;
				break;
			case 2: /* denormals */
				x[i] = from_bits((uint32_t)z & 0x807fffffu);
				break;
			case 3: /* the infinities */
				x[i] = z & 1 ? INFINITY : -INFINITY;
				break;
			case 4: /* all equal */
				x[i] = 3.14159f;
				break;
			case 5: /* random bits */
				x[i] = from_bits((uint32_t)z);
				break;
			case 6: /* extremes */
				x[i] = (float[]){FLT_MAX,     -FLT_MAX, FLT_MIN,
						 -FLT_MIN,    0.0f,	-0.0f,
						 FLT_TRUE_MIN}[z % 7];
				break;
			case 7: /* integers near and above 2^22, halves */
				x[i] = 4194304.0f + (float)(z % 64) * 0.5f;
				break;
			case 8: /* large integers up to 2^31 and past */
				x[i] = (float)(int64_t)(z %
							(UINT64_C(1) << 33)) -
				       (float)(UINT64_C(1) << 32);
				break;
			case 9: /* a mixture of everything */
				x[i] = (float[]){
					NAN,	  -0.0f, 1.5f,	  1e-40f,
					INFINITY, 0.1f,	 1e30f,	  -7.25f,
					1e-7f,	  2.0f,	 0.3333f, 255.0f,
				}[z % 12];
				break;
			case 10: /* normal floats: not decimals */
				x[i] = (float)drift_rand_normal(&r);
				break;
			case 11: /* decimals with many digits */
				x[i] = (float)(z % 100000000) / 1e8f;
				break;
			case 12: /* tiny decimals: need e = 10 */
				x[i] = (float)(z % 1000) * 1e-10f;
				break;
			default: /* negatives */
				x[i] = -(float)(z % 1000) / 10.0f;
				break;
			}
		}
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
			size_t len;
			free(round_trip(x, sizes[s], &len));
		}
	}
	free(x);
}

DRIFT_TEST(alp, more_than_one_row_group)
{
	/* Row groups of 100 vectors: the first decimal, the second not. */
	enum { N = 150 * 1024 + 7 };
	float *x = malloc(N * sizeof(float));
	drift_rand r;
	drift_rand_seed(&r, 4);
	for (size_t i = 0; i < N; i++)
		x[i] = i < 100 * 1024 ? (float)drift_rand_below(&r, 1000) / 10
				      : (float)drift_rand_normal(&r);
	size_t len;
	uint8_t *buf = round_trip(x, N, &len);
	drift_alp_stats st = stats(buf, len);
	cr_assert_eq(st.alp, 100);
	cr_assert_eq(st.rd + st.stored, 51);
	free(buf);
	free(x);
}

DRIFT_TEST(alp, decode_range_matches_the_whole)
{
	enum { N = 4000 };
	float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
	drift_rand r;
	drift_rand_seed(&r, 5);
	for (size_t i = 0; i < N; i++)
		x[i] = i < 2048 ? (float)drift_rand_below(&r, 256)
				: (float)drift_rand_normal(&r);
	size_t len;
	uint8_t *buf = round_trip(x, N, &len);
	for (int t = 0; t < 300; t++) {
		size_t first = drift_rand_below(&r, N + 1);
		size_t count = drift_rand_below(&r, N - first + 1);
		cr_assert_eq(drift_alp_decode_range(buf, len, first, count, y),
			     0);
		cr_assert_eq(memcmp(y, x + first, count * 4), 0, "[%zu, +%zu)",
			     first, count);
	}
	cr_assert_eq(drift_alp_decode_range(buf, len, N, 0, y), 0);
	cr_assert_eq(drift_alp_decode_range(buf, len, N, 1, y), DRIFT_EINVAL);
	cr_assert_eq(drift_alp_decode_range(buf, len, 10, N, y), DRIFT_EINVAL);
	cr_assert_eq(drift_alp_decode_range(buf, len, UINT64_MAX, 2, y),
		     DRIFT_EINVAL);
	cr_assert_eq(drift_alp_decode(buf, len, y, N - 1), DRIFT_EINVAL);
	cr_assert_eq(drift_alp_encode(x, N, buf, len - 1, &len), DRIFT_EINVAL,
		     "a buffer under the bound");
	free(buf);
	free(x);
	free(y);
}

/* Every truncation is corrupt (the block table must end at the column's
 * end); every bit flip is refused or decodes to something, reading
 * nothing out of bounds (ASan watches); out is untouched on failure. */
DRIFT_TEST(alp, truncations_and_bit_flips)
{
	enum { N = 2100 };
	float *x = malloc(N * sizeof(float)), *y = malloc(N * sizeof(float));
	drift_rand r;
	drift_rand_seed(&r, 6);
	for (int kind = 0; kind < 3; kind++) {
		for (size_t i = 0; i < N; i++) {
			uint64_t z = drift_rand_next(&r);
			if (kind == 0) /* ALP with exceptions */
				x[i] = z % 50 ? (float)(z % 1000) / 100
					      : from_bits((uint32_t)z);
			else if (kind == 1) /* ALP-RD: three exponents */
				x[i] = 0.5f + 3.5f * (float)drift_rand_unit(&r);
			else /* stored */
				x[i] = from_bits((uint32_t)z);
		}
		size_t len;
		uint8_t *buf = round_trip(x, N, &len);
		drift_alp_stats st = stats(buf, len);
		/* The two full vectors (the 52-value tail may be stored:
		 * lane padding costs more than it saves there). */
		cr_assert_geq(kind == 0	  ? st.alp
			      : kind == 1 ? st.rd
					  : st.stored,
			      2, "kind %d", kind);
		for (size_t cut = 0; cut < len; cut++) {
			uint8_t *t = malloc(cut ? cut : 1);
			memcpy(t, buf, cut);
			cr_assert_eq(drift_alp_decode(t, cut, y, N),
				     DRIFT_ECORRUPT, "kind %d cut %zu", kind,
				     cut);
			free(t);
		}
		uint8_t *t = malloc(len);
		for (size_t byte = 0; byte < len; byte++) {
			/* Headers and exceptions densely, the rest
			 * sparsely. */
			bool dense =
				byte < 64 || byte + 400 > len || byte % 11 == 0;
			if (!dense)
				continue;
			for (int bit = 0; bit < 8; bit++) {
				memcpy(t, buf, len);
				t[byte] ^= (uint8_t)(1u << bit);
				memset(y, 0x5a, N * sizeof(float));
				int rv = drift_alp_decode(t, len, y, N);
				cr_assert(rv == 0 || rv == DRIFT_ECORRUPT ||
						  rv == DRIFT_EINVAL,
					  "kind %d byte %zu bit %d: %d", kind,
					  byte, bit, rv);
				if (rv != 0)
					for (size_t i = 0; i < N; i++)
						cr_assert_eq(
							((uint8_t *)y)[i * 4],
							0x5a,
							"written on failure");
			}
		}
		free(t);
		free(buf);
	}
	free(x);
	free(y);
}
