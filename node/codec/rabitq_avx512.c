/* RaBitQ FastScan kernel for AVX-512 (F, BW): four groups (64 code bytes)
 * per step, one byte shuffle per half (per 128-bit lane, each lane its
 * group's table); byte sums of four steps (at most 4 * 56 = 224) are
 * widened into 16-bit sums. pdim is a multiple of 64: whole runs of 16
 * groups. */
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

static void scan_avx512(const uint8_t *codes, const uint8_t *lut,
			size_t nblocks, uint32_t pdim, uint16_t *out)
{
	uint32_t groups = pdim / 4;
	const __m512i low4 = _mm512_set1_epi8(0x0f);
	for (size_t b = 0; b < nblocks; b++) {
		const uint8_t *c = codes + b * (size_t)groups * 16;
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
				__m512i h = _mm512_and_si512(
					_mm512_srli_epi16(cb, 4), low4);
				lo8 = _mm512_add_epi8(
					lo8, _mm512_shuffle_epi8(tb, l));
				hi8 = _mm512_add_epi8(
					hi8, _mm512_shuffle_epi8(tb, h));
			}
			lo16 = widen_add(lo16, lo8);
			hi16 = widen_add(hi16, hi8);
		}
		/* Each 256-bit half of the 16-bit sums: lanes of two groups
		 * of the same 16 vectors. */
		__m256i lo = fold(lo16), hi = fold(hi16);
		uint16_t *o = out + b * DRIFT_RABITQ_BLOCK;
		_mm256_storeu_si256((__m256i *)o, lo);
		_mm256_storeu_si256((__m256i *)(o + 16), hi);
	}
}

const drift_rabitq_kernels drift_rabitq_avx512 = {
	.level = DRIFT_SIMD_AVX512,
	.scan = scan_avx512,
};
