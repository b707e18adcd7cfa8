/* RaBitQ FastScan kernels for AVX-512 (F, BW): four groups (64 code
 * bytes) per step, one byte shuffle per half (per 128-bit lane, each lane
 * its group's table); byte sums of four steps (at most 4 * 56 = 224) are
 * widened into 16-bit sums. pdim is a multiple of 64: whole runs of 16
 * groups. The bounds follow in 16-float vectors. */
#include <immintrin.h>

#include "common/simd.h"
#include "node/codec/rabitq.h"

static inline __m512i widen_add(__m512i acc, __m512i b8)
{
	acc = _mm512_add_epi16(
		acc, _mm512_cvtepu8_epi16(_mm512_castsi512_si256(b8)));
	return _mm512_add_epi16(
		acc, _mm512_cvtepu8_epi16(_mm512_extracti64x4_epi64(b8, 1)));
}

static inline __m256i fold(__m512i v)
{
	/* Lanes 0-1 and 2-3 of the 16-bit sums are the same 16 vectors. */
	return _mm256_add_epi16(_mm512_castsi512_si256(v),
				_mm512_extracti64x4_epi64(v, 1));
}

/* The table sums of one block: vectors 0-15 into *lo, 16-31 into *hi. */
static inline void block_sums(const uint8_t *c, const uint8_t *lut,
			      uint32_t groups, __m256i *lo, __m256i *hi)
{
	const __m512i low4 = _mm512_set1_epi8(0x0f);
	__m512i lo16 = _mm512_setzero_si512();
	__m512i hi16 = _mm512_setzero_si512();
	for (uint32_t g = 0; g < groups; g += 16) {
		__m512i lo8 = _mm512_setzero_si512();
		__m512i hi8 = _mm512_setzero_si512();
		for (uint32_t s = 0; s < 16; s += 4) {
			__m512i cb = _mm512_loadu_si512(
				(const void *)(c + (g + s) * 16));
			__m512i tb = _mm512_load_si512(
				(const void *)(lut + (g + s) * 16));
			__m512i l = _mm512_and_si512(cb, low4);
			__m512i h = _mm512_and_si512(_mm512_srli_epi16(cb, 4),
						     low4);
			lo8 = _mm512_add_epi8(lo8, _mm512_shuffle_epi8(tb, l));
			hi8 = _mm512_add_epi8(hi8, _mm512_shuffle_epi8(tb, h));
		}
		lo16 = widen_add(lo16, lo8);
		hi16 = widen_add(hi16, hi8);
	}
	*lo = fold(lo16);
	*hi = fold(hi16);
}

static void scan_avx512(const uint8_t *codes, const uint8_t *lut,
			size_t nblocks, uint32_t pdim, uint16_t *out)
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

static void bounds_avx512(const uint8_t *codes, const uint8_t *lut,
			  const float *fac, size_t nblocks, uint32_t pdim,
			  const drift_rabitq_consts *c, float *est, float *lb)
{
	uint32_t groups = pdim / 4;
	const __m512 a = _mm512_set1_ps(c->a), b = _mm512_set1_ps(c->b);
	const __m512 w = _mm512_set1_ps(c->w), base = _mm512_set1_ps(c->base);
	const __m512 m = _mm512_set1_ps(c->m), eb = _mm512_set1_ps(c->eb);
	const __m512 qb = _mm512_set1_ps(c->qb), zero = _mm512_setzero_ps();
	for (size_t blk = 0; blk < nblocks; blk++) {
		__m256i s[2];
		block_sums(codes + blk * (size_t)groups * 16, lut, groups,
			   &s[0], &s[1]);
		const float *fb = fac + blk * 2 * DRIFT_RABITQ_BLOCK;
		for (int h = 0; h < 2; h++) {
			__m512 sum =
				_mm512_cvtepi32_ps(_mm512_cvtepu16_epi32(s[h]));
			__m512 n2 = _mm512_loadu_ps(fb + 16 * h);
			__m512 f = _mm512_loadu_ps(fb + 32 + 16 * h);
			__m512 ip =
				_mm512_mul_ps(f, _mm512_fmadd_ps(a, sum, b));
			__m512 e = _mm512_fnmadd_ps(
				m, ip, _mm512_fmadd_ps(w, n2, base));
			__m512 g = _mm512_sqrt_ps(
				_mm512_max_ps(_mm512_fmsub_ps(f, f, n2), zero));
			__m512 l = _mm512_fnmadd_ps(qb, f,
						    _mm512_fnmadd_ps(eb, g, e));
			size_t r = blk * DRIFT_RABITQ_BLOCK + 16 * (size_t)h;
			if (est != NULL)
				_mm512_storeu_ps(est + r, e);
			_mm512_storeu_ps(lb + r, l);
		}
	}
}

const drift_rabitq_kernels drift_rabitq_avx512 = {
	.level = DRIFT_SIMD_AVX512,
	.scan = scan_avx512,
	.bounds = bounds_avx512,
};
