/* SQ8 ADC kernels for AVX-512 (F, BW, VL): 16 dimensions per step (16 code
 * bytes widened to 16 floats); the tail with masked loads, which read no
 * byte past the row. */
#include <immintrin.h>

#include "common/simd.h"
#include "node/codec/sq8.h"

static inline __m512 widen16(__mmask16 m, const uint8_t *c)
{
	__m128i b = _mm_maskz_loadu_epi8(m, c);
	return _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(b));
}

static void l2_avx512(const float *t, const float *s, const uint8_t *codes,
		      size_t n, uint32_t dim, float *out)
{
	uint32_t body = dim & ~15u;
	__mmask16 tail = (__mmask16)((1u << (dim - body)) - 1u);
	for (size_t r = 0; r < n; r++) {
		const uint8_t *c = codes + r * dim;
		__m512 acc = _mm512_setzero_ps();
		for (uint32_t j = 0; j < body; j += 16) {
			__m512 d = _mm512_fnmadd_ps(
				_mm512_loadu_ps(s + j),
				widen16((__mmask16)0xffff, c + j),
				_mm512_loadu_ps(t + j));
			acc = _mm512_fmadd_ps(d, d, acc);
		}
		if (tail) {
			__m512 d = _mm512_fnmadd_ps(
				_mm512_maskz_loadu_ps(tail, s + body),
				widen16(tail, c + body),
				_mm512_maskz_loadu_ps(tail, t + body));
			acc = _mm512_fmadd_ps(d, d, acc);
		}
		out[r] = _mm512_reduce_add_ps(acc);
	}
}

static void ip_avx512(const float *w, const uint8_t *codes, size_t n,
		      uint32_t dim, float *out)
{
	uint32_t body = dim & ~15u;
	__mmask16 tail = (__mmask16)((1u << (dim - body)) - 1u);
	for (size_t r = 0; r < n; r++) {
		const uint8_t *c = codes + r * dim;
		__m512 acc = _mm512_setzero_ps();
		for (uint32_t j = 0; j < body; j += 16)
			acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + j),
					      widen16((__mmask16)0xffff, c + j),
					      acc);
		if (tail)
			acc = _mm512_fmadd_ps(
				_mm512_maskz_loadu_ps(tail, w + body),
				widen16(tail, c + body), acc);
		out[r] = -_mm512_reduce_add_ps(acc);
	}
}

const drift_sq8_kernels drift_sq8_avx512 = {
	.level = DRIFT_SIMD_AVX512,
	.l2 = l2_avx512,
	.ip = ip_avx512,
};
