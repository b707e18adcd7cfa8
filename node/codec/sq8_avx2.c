/* SQ8 ADC kernels for AVX2 + FMA: 8 dimensions per step (8 code bytes
 * widened to 8 floats); the dim % 8 tail in scalar code. */
#include <immintrin.h>

#include "common/simd.h"
#include "node/codec/sq8.h"

static inline float hsum(__m256 v)
{
	__m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
	lo = _mm_add_ps(lo, hi);
	lo = _mm_add_ps(lo, _mm_movehl_ps(lo, lo));
	lo = _mm_add_ss(lo, _mm_movehdup_ps(lo));
	return _mm_cvtss_f32(lo);
}

static inline __m256 widen8(const uint8_t *c)
{
	__m128i b = _mm_loadl_epi64((const __m128i *)c);
	return _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(b));
}

static void l2_avx2(const float *t, const float *s, const uint8_t *codes,
		    size_t n, uint32_t dim, float *out)
{
	uint32_t body = dim & ~7u;
	for (size_t r = 0; r < n; r++) {
		const uint8_t *c = codes + r * dim;
		__m256 acc = _mm256_setzero_ps();
		for (uint32_t j = 0; j < body; j += 8) {
			__m256 d = _mm256_fnmadd_ps(_mm256_loadu_ps(s + j),
						    widen8(c + j),
						    _mm256_loadu_ps(t + j));
			acc = _mm256_fmadd_ps(d, d, acc);
		}
		float a = hsum(acc);
		for (uint32_t j = body; j < dim; j++) {
			float d = t[j] - s[j] * c[j];
			a += d * d;
		}
		out[r] = a;
	}
}

static void ip_avx2(const float *w, const uint8_t *codes, size_t n,
		    uint32_t dim, float *out)
{
	uint32_t body = dim & ~7u;
	for (size_t r = 0; r < n; r++) {
		const uint8_t *c = codes + r * dim;
		__m256 acc = _mm256_setzero_ps();
		for (uint32_t j = 0; j < body; j += 8)
			acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + j),
					      widen8(c + j), acc);
		float a = hsum(acc);
		for (uint32_t j = body; j < dim; j++)
			a += w[j] * c[j];
		out[r] = -a;
	}
}

const drift_sq8_kernels drift_sq8_avx2 = {
	.level = DRIFT_SIMD_AVX2,
	.l2 = l2_avx2,
	.ip = ip_avx2,
};
