/* RaBitQ FastScan kernels for AVX2 + FMA: two groups (32 code bytes) per
 * step, one byte shuffle per half; byte sums of four steps (at most
 * 4 * 56 = 224) are widened into 16-bit sums. pdim is a multiple of 64, so
 * the groups come in whole runs of eight. The bounds follow in 8-float
 * vectors. */
#include <immintrin.h>

#include "common/simd.h"
#include "node/codec/rabitq.h"

/* The table sums of one block: vectors 0-15 into *lo, 16-31 into *hi. */
static inline void block_sums(const uint8_t *c, const uint8_t *lut,
			      uint32_t groups, __m256i *lo, __m256i *hi)
{
	const __m256i low4 = _mm256_set1_epi8(0x0f);
	__m256i lo16 = _mm256_setzero_si256();
	__m256i hi16 = _mm256_setzero_si256();
	for (uint32_t g = 0; g < groups; g += 8) {
		__m256i lo8 = _mm256_setzero_si256();
		__m256i hi8 = _mm256_setzero_si256();
		for (uint32_t s = 0; s < 8; s += 2) {
			__m256i cb = _mm256_loadu_si256(
				(const __m256i *)(c + (g + s) * 16));
			__m256i tb = _mm256_load_si256(
				(const __m256i *)(lut + (g + s) * 16));
			__m256i l = _mm256_and_si256(cb, low4);
			__m256i h = _mm256_and_si256(_mm256_srli_epi16(cb, 4),
						     low4);
			lo8 = _mm256_add_epi8(lo8, _mm256_shuffle_epi8(tb, l));
			hi8 = _mm256_add_epi8(hi8, _mm256_shuffle_epi8(tb, h));
		}
		/* Both 128-bit lanes hold the same 16 vectors. */
		lo16 = _mm256_add_epi16(
			lo16,
			_mm256_cvtepu8_epi16(_mm256_castsi256_si128(lo8)));
		lo16 = _mm256_add_epi16(
			lo16,
			_mm256_cvtepu8_epi16(_mm256_extracti128_si256(lo8, 1)));
		hi16 = _mm256_add_epi16(
			hi16,
			_mm256_cvtepu8_epi16(_mm256_castsi256_si128(hi8)));
		hi16 = _mm256_add_epi16(
			hi16,
			_mm256_cvtepu8_epi16(_mm256_extracti128_si256(hi8, 1)));
	}
	*lo = lo16;
	*hi = hi16;
}

static void scan_avx2(const uint8_t *codes, const uint8_t *lut, size_t nblocks,
		      uint32_t pdim, uint16_t *out)
{
	uint32_t groups = pdim / 4;
	for (size_t b = 0; b < nblocks; b++) {
		__m256i lo, hi;
		block_sums(codes + b * (size_t)groups * 16, lut, groups, &lo,
			   &hi);
		uint16_t *o = out + b * DRIFT_RABITQ_BLOCK;
		_mm256_storeu_si256((__m256i *)o, lo);
		_mm256_storeu_si256((__m256i *)(o + 16), hi);
	}
}

static void bounds_avx2(const uint8_t *codes, const uint8_t *lut,
			const float *fac, size_t nblocks, uint32_t pdim,
			const drift_rabitq_consts *c, float *est, float *lb)
{
	uint32_t groups = pdim / 4;
	const __m256 a = _mm256_set1_ps(c->a), b = _mm256_set1_ps(c->b);
	const __m256 w = _mm256_set1_ps(c->w), base = _mm256_set1_ps(c->base);
	const __m256 m = _mm256_set1_ps(c->m), eb = _mm256_set1_ps(c->eb);
	const __m256 qb = _mm256_set1_ps(c->qb), zero = _mm256_setzero_ps();
	for (size_t blk = 0; blk < nblocks; blk++) {
		__m256i s[2];
		block_sums(codes + blk * (size_t)groups * 16, lut, groups,
			   &s[0], &s[1]);
		const float *fb = fac + blk * 2 * DRIFT_RABITQ_BLOCK;
		for (int q = 0; q < 4; q++) {
			__m128i s8 =
				q % 2 == 0
					? _mm256_castsi256_si128(s[q / 2])
					: _mm256_extracti128_si256(s[q / 2], 1);
			__m256 sum =
				_mm256_cvtepi32_ps(_mm256_cvtepu16_epi32(s8));
			__m256 n2 = _mm256_loadu_ps(fb + 8 * q);
			__m256 f = _mm256_loadu_ps(fb + 32 + 8 * q);
			__m256 ip =
				_mm256_mul_ps(f, _mm256_fmadd_ps(a, sum, b));
			__m256 e = _mm256_fnmadd_ps(
				m, ip, _mm256_fmadd_ps(w, n2, base));
			__m256 g = _mm256_sqrt_ps(
				_mm256_max_ps(_mm256_fmsub_ps(f, f, n2), zero));
			__m256 l = _mm256_fnmadd_ps(qb, f,
						    _mm256_fnmadd_ps(eb, g, e));
			size_t r = blk * DRIFT_RABITQ_BLOCK + 8 * (size_t)q;
			if (est != NULL)
				_mm256_storeu_ps(est + r, e);
			_mm256_storeu_ps(lb + r, l);
		}
	}
}

const drift_rabitq_kernels drift_rabitq_avx2 = {
	.level = DRIFT_SIMD_AVX2,
	.scan = scan_avx2,
	.bounds = bounds_avx2,
};
