/* RaBitQ FastScan kernel for AVX2: two groups (32 code bytes) per step,
 * one byte shuffle per half; byte sums of four steps (at most
 * 4 * 56 = 224) are widened into 16-bit sums. pdim is a multiple of 64, so
 * the groups come in whole runs of eight. */
#include <immintrin.h>

#include "common/simd.h"
#include "node/codec/rabitq.h"

static void scan_avx2(const uint8_t *codes, const uint8_t *lut, size_t nblocks,
		      uint32_t pdim, uint16_t *out)
{
	uint32_t groups = pdim / 4;
	const __m256i low4 = _mm256_set1_epi8(0x0f);
	for (size_t b = 0; b < nblocks; b++) {
		const uint8_t *c = codes + b * (size_t)groups * 16;
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
				__m256i h = _mm256_and_si256(
					_mm256_srli_epi16(cb, 4), low4);
				lo8 = _mm256_add_epi8(
					lo8, _mm256_shuffle_epi8(tb, l));
				hi8 = _mm256_add_epi8(
					hi8, _mm256_shuffle_epi8(tb, h));
			}
			/* Both 128-bit lanes hold the same 16 vectors. */
			lo16 = _mm256_add_epi16(
				lo16, _mm256_cvtepu8_epi16(
					      _mm256_castsi256_si128(lo8)));
			lo16 = _mm256_add_epi16(
				lo16, _mm256_cvtepu8_epi16(
					      _mm256_extracti128_si256(lo8, 1)));
			hi16 = _mm256_add_epi16(
				hi16, _mm256_cvtepu8_epi16(
					      _mm256_castsi256_si128(hi8)));
			hi16 = _mm256_add_epi16(
				hi16, _mm256_cvtepu8_epi16(
					      _mm256_extracti128_si256(hi8, 1)));
		}
		uint16_t *o = out + b * DRIFT_RABITQ_BLOCK;
		_mm256_storeu_si256((__m256i *)o, lo16);
		_mm256_storeu_si256((__m256i *)(o + 16), hi16);
	}
}

const drift_rabitq_kernels drift_rabitq_avx2 = {
	.level = DRIFT_SIMD_AVX2,
	.scan = scan_avx2,
};
