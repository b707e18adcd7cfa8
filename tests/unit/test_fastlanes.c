/* Tests of node/codec/fastlanes: the kernels against a bit-by-bit model of
 * the interleaved layout for every width, bit-exact column round trips on
 * real and adversarial data, and corrupt columns refused or survived. */
#include <stdlib.h>
#include <string.h>

#include "common/err.h"
#include "common/rand.h"
#include "node/codec/fastlanes.h"
#include "drift_test.h"

/* ---- Helpers ------------------------------------------------------------ */

static uint64_t mask_of(unsigned w)
{
	return w == 64 ? UINT64_MAX : (UINT64_C(1) << w) - 1;
}

/* The layout as docs/codecs.md states it, one bit at a time: value i is
 * lane i % L, row i / L; bit j of it is bit (row * w + j) of its lane's
 * stream, whose word k sits at byte (k * L + lane) * T / 8. */
static int model_bit(const uint8_t *packed, unsigned tbits, size_t i,
		     unsigned w, unsigned j)
{
	size_t lanes = 1024 / tbits, lane = i % lanes, row = i / lanes;
	size_t pos = row * w + j, k = pos / tbits, b = pos % tbits;
	const uint8_t *word = packed + (k * lanes + lane) * (tbits / 8);
	return (word[b / 8] >> (b % 8)) & 1;
}

static const size_t counts[] = {1, 15, 16, 17, 31, 32, 33, 500, 1023, 1024};
#define NCOUNTS (sizeof(counts) / sizeof(counts[0]))

/* Encodes and decodes in (n values of tbits), checks bit-exactness and
 * the bound; returns the encoded size. */
static size_t round_trip(const uint64_t *in, size_t n, unsigned tbits,
			 bool delta)
{
	size_t cap = drift_fastlanes_bound(n, tbits, delta), len = 0;
	uint8_t *buf = malloc(cap);
	cr_assert_not_null(buf);
	int rv;
	drift_fastlanes_info info;
	if (tbits == 32) {
		uint32_t *x = malloc((n + 1) * 4), *y = malloc((n + 1) * 4);
		for (size_t i = 0; i < n; i++)
			x[i] = (uint32_t)in[i];
		cr_assert_eq(
			drift_fastlanes_encode32(x, n, delta, buf, cap, &len),
			0);
		y[n] = 0xdeadbeef;
		rv = drift_fastlanes_decode32(buf, len, y, n);
		cr_assert_eq(rv, 0, "n %zu delta %d: %s", n, delta,
			     drift_errname(rv));
		cr_assert_eq(memcmp(x, y, n * 4), 0, "n %zu delta %d", n,
			     delta);
		cr_assert_eq(y[n], 0xdeadbeef, "wrote past n");
		free(x);
		free(y);
	} else {
		uint64_t *y = malloc((n + 1) * 8);
		cr_assert_eq(
			drift_fastlanes_encode64(in, n, delta, buf, cap, &len),
			0);
		y[n] = 42;
		rv = drift_fastlanes_decode64(buf, len, y, n);
		cr_assert_eq(rv, 0, "n %zu delta %d: %s", n, delta,
			     drift_errname(rv));
		cr_assert_eq(memcmp(in, y, n * 8), 0, "n %zu delta %d", n,
			     delta);
		cr_assert_eq(y[n], 42, "wrote past n");
		free(y);
	}
	cr_assert_leq(len, cap);
	cr_assert_eq(drift_fastlanes_info_of(buf, len, &info), 0);
	cr_assert_eq(info.n, n);
	cr_assert_eq(info.tbits, tbits);
	cr_assert_eq(info.delta, delta);
	free(buf);
	return len;
}

/* ---- Cases -------------------------------------------------------------- */

DRIFT_TEST(fastlanes, kernels_match_the_layout_for_every_width)
{
	drift_rand r;
	drift_rand_seed(&r, 7);
	uint64_t in64[1024], out64[1024];
	uint32_t in32[1024], out32[1024];
	uint8_t packed[1024 * 8 + 8];
	for (unsigned tbits = 32; tbits <= 64; tbits += 32) {
		for (unsigned w = 0; w <= tbits; w++) {
			for (size_t ci = 0; ci < NCOUNTS; ci++) {
				size_t c = counts[ci];
				size_t size = drift_fastlanes_packed_size(tbits,
									  c, w);
				cr_assert_leq(size, 128 * (size_t)w);
				if (c == 1024)
					cr_assert_eq(size, 128 * (size_t)w);
				memset(packed, 0xa5, sizeof(packed));
				/* Bits above w must be ignored. */
				for (size_t i = 0; i < c; i++) {
					in64[i] = drift_rand_next(&r);
					in32[i] = (uint32_t)in64[i];
				}
				if (tbits == 32)
					drift_fastlanes_pack32(in32, c, w,
							       packed);
				else
					drift_fastlanes_pack64(in64, c, w,
							       packed);
				cr_assert_eq(packed[size], 0xa5,
					     "T %u w %u c %zu: past the size",
					     tbits, w, c);
				for (size_t i = 0; i < c; i += 7)
					for (unsigned j = 0; j < w; j++)
						cr_assert_eq(
							model_bit(packed, tbits,
								  i, w, j),
							(int)((in64[i] >> j) &
							      1),
							"T %u w %u c %zu value "
							"%zu bit %u",
							tbits, w, c, i, j);
				if (tbits == 32) {
					drift_fastlanes_unpack32(packed, c, w,
								 out32);
					for (size_t i = 0; i < c; i++)
						cr_assert_eq(out32[i],
							     in32[i] &
								     mask_of(w),
							     "w %u c %zu i %zu",
							     w, c, i);
				} else {
					drift_fastlanes_unpack64(packed, c, w,
								 out64);
					for (size_t i = 0; i < c; i++)
						cr_assert_eq(out64[i],
							     in64[i] &
								     mask_of(w),
							     "w %u c %zu i %zu",
							     w, c, i);
				}
			}
		}
	}
}

DRIFT_TEST(fastlanes, adversarial_columns_round_trip)
{
	static const size_t sizes[] = {0, 1, 2, 1023, 1024, 1025, 3000};
	uint64_t *x = malloc(3000 * sizeof(uint64_t));
	drift_rand r;
	drift_rand_seed(&r, 3);
	for (int pattern = 0; pattern < 9; pattern++) {
		for (size_t i = 0; i < 3000; i++) {
			switch (pattern) {
			case 0: /* all zero */
				x[i] = 0;
				break;
			case 1: /* all ones: 2^64 - 1 */
				x[i] = UINT64_MAX;
				break;
			case 2: /* the extremes alternating */
				x[i] = i % 2 ? UINT64_MAX : 0;
				break;
			case 3: /* random bits */
				x[i] = drift_rand_next(&r);
				break;
			case 4: /* sorted with small gaps */
				x[i] = (i ? x[i - 1] : UINT64_C(1) << 40) +
				       drift_rand_below(&r, 20);
				break;
			case 5: /* a constant stride */
				x[i] = 784 * 4 * (uint64_t)i;
				break;
			case 6: /* descending: deltas wrap */
				x[i] = UINT64_MAX - 3 * (uint64_t)i;
				break;
			case 7: /* sorted up to 2^64 - 1 */
				x[i] = UINT64_MAX - (3000 - 1 - i);
				break;
			default: /* small values, one huge */
				x[i] = i == 1500 || i == 700 ? UINT64_MAX
							     : i % 5;
				break;
			}
		}
		for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++)
			for (unsigned tbits = 32; tbits <= 64; tbits += 32)
				for (int delta = 0; delta < 2; delta++)
					round_trip(x, sizes[s], tbits, delta);
	}
	free(x);
}

DRIFT_TEST(fastlanes, compresses_ids_offsets_and_pixels)
{
	enum { N = 100000 };
	uint64_t *x = malloc(N * sizeof(uint64_t));
	size_t blocks = (N + 1023) / 1024;
	/* A constant stride under delta: width 0, headers only. */
	for (size_t i = 0; i < N; i++)
		x[i] = (UINT64_C(1) << 50) + 3136 * (uint64_t)i;
	cr_assert_eq(round_trip(x, N, 64, true), 16 + blocks * 24);
	cr_assert_eq(round_trip(x, N, 32, true), 16 + blocks * 12);
	/* Dense sorted ids (gaps 1..4): under 3 bits per id. */
	drift_rand r;
	drift_rand_seed(&r, 5);
	for (size_t i = 0; i < N; i++)
		x[i] = (i ? x[i - 1] : 0) + 1 + drift_rand_below(&r, 4);
	size_t len = round_trip(x, N, 64, true);
	cr_log_info("sorted ids, delta: %.2f bits per id",
		    8.0 * (double)len / N);
	cr_assert_lt(len, N * 3 / 8);
	/* Fashion-MNIST pixels as integers: 8 bits, or fewer in a block
	 * whose range is smaller. */
	size_t rows;
	float *img = drift_test_fmnist("t10k", 200, &rows);
	size_t n = rows * DRIFT_TEST_FMNIST_DIM;
	uint64_t *px = malloc(n * sizeof(uint64_t));
	for (size_t i = 0; i < n; i++)
		px[i] = (uint64_t)img[i];
	len = round_trip(px, n, 32, false);
	cr_log_info("fmnist pixels as u32: ratio %.2f",
		    (double)n * 4 / (double)len);
	cr_assert_leq(len, 16 + n + ((n + 1023) / 1024) * 8);
	free(px);
	free(img);
	free(x);
}

DRIFT_TEST(fastlanes, decode_refuses_what_it_cannot_hold)
{
	uint32_t in[3000], out[3000];
	uint64_t out64[3000];
	for (int i = 0; i < 3000; i++)
		in[i] = (uint32_t)i * 7;
	uint8_t buf[16000];
	size_t len;
	cr_assert_eq(drift_fastlanes_encode32(in, 3000, false, buf, 100, &len),
		     DRIFT_EINVAL, "a buffer under the bound");
	cr_assert_eq(drift_fastlanes_encode32(in, 3000, false, buf, sizeof(buf),
					      &len),
		     0);
	memset(out, 0x5a, sizeof(out));
	cr_assert_eq(drift_fastlanes_decode32(buf, len, out, 2999),
		     DRIFT_EINVAL);
	cr_assert_eq(drift_fastlanes_decode64(buf, len, out64, 3000),
		     DRIFT_ECORRUPT, "a 32-bit column read as 64-bit");
	for (int i = 0; i < 3000; i++)
		cr_assert_eq(out[i], 0x5a5a5a5au, "written on failure");
}

/* Every truncation is corrupt (the blocks must fill the column exactly);
 * every single-bit flip is refused or decodes to something, with no read
 * out of bounds (ASan watches). */
DRIFT_TEST(fastlanes, truncations_and_bit_flips)
{
	enum { N = 2500 };
	uint64_t *in = malloc(N * 8), *out = malloc(N * 8);
	drift_rand r;
	drift_rand_seed(&r, 11);
	for (size_t i = 0; i < N; i++)
		in[i] = (i ? in[i - 1] : 0) + drift_rand_below(&r, 1000);
	for (int delta = 0; delta < 2; delta++) {
		size_t cap = drift_fastlanes_bound(N, 64, delta), len;
		uint8_t *buf = malloc(cap);
		cr_assert_eq(
			drift_fastlanes_encode64(in, N, delta, buf, cap, &len),
			0);
		for (size_t cut = 0; cut < len; cut++) {
			/* A copy of exactly cut bytes, so ASan sees any
			 * read past it. */
			uint8_t *t = malloc(cut ? cut : 1);
			memcpy(t, buf, cut);
			cr_assert_eq(drift_fastlanes_decode64(t, cut, out, N),
				     DRIFT_ECORRUPT, "cut at %zu", cut);
			free(t);
		}
		uint8_t *t = malloc(len);
		for (size_t byte = 0; byte < len; byte++) {
			/* Headers densely, packed bits sparsely. */
			if (byte > 64 && byte % 13 != 0)
				continue;
			for (int bit = 0; bit < 8; bit++) {
				memcpy(t, buf, len);
				t[byte] ^= (uint8_t)(1u << bit);
				int rv = drift_fastlanes_decode64(t, len, out,
								  N);
				cr_assert(rv == 0 || rv == DRIFT_ECORRUPT ||
						  rv == DRIFT_EINVAL,
					  "byte %zu bit %d: %d", byte, bit, rv);
			}
		}
		free(t);
		free(buf);
	}
	free(in);
	free(out);
}
