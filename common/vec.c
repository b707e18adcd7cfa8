/* Scalar kernels and the dispatch. The scalar kernels keep four partial sums,
 * which lets the CPU overlap the additions without -ffast-math. */
#include "common/vec.h"

#include "common/simd.h"

static float l2sq_scalar(const float *a, const float *b, size_t n)
{
	float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	size_t i = 0;
	for (; i + 4 <= n; i += 4) {
		float d0 = a[i] - b[i], d1 = a[i + 1] - b[i + 1];
		float d2 = a[i + 2] - b[i + 2], d3 = a[i + 3] - b[i + 3];
		s0 += d0 * d0;
		s1 += d1 * d1;
		s2 += d2 * d2;
		s3 += d3 * d3;
	}
	for (; i < n; i++) {
		float d = a[i] - b[i];
		s0 += d * d;
	}
	return (s0 + s1) + (s2 + s3);
}

static float dot_scalar(const float *a, const float *b, size_t n)
{
	float s0 = 0, s1 = 0, s2 = 0, s3 = 0;
	size_t i = 0;
	for (; i + 4 <= n; i += 4) {
		s0 += a[i] * b[i];
		s1 += a[i + 1] * b[i + 1];
		s2 += a[i + 2] * b[i + 2];
		s3 += a[i + 3] * b[i + 3];
	}
	for (; i < n; i++)
		s0 += a[i] * b[i];
	return (s0 + s1) + (s2 + s3);
}

const drift_vec_kernels drift_vec_scalar = {
	.level = DRIFT_SIMD_SCALAR,
	.l2sq = l2sq_scalar,
	.dot = dot_scalar,
};

const drift_vec_kernels *drift_vec_for(int level)
{
	if (level < DRIFT_SIMD_SCALAR || level > drift_simd_detected())
		return NULL;
	switch (level) {
#if defined(__x86_64__)
	case DRIFT_SIMD_AVX512:
		return &drift_vec_avx512;
	case DRIFT_SIMD_AVX2:
		return &drift_vec_avx2;
#endif
	case DRIFT_SIMD_SCALAR:
		return &drift_vec_scalar;
	default:
		return NULL;
	}
}

const drift_vec_kernels *drift_vec(void)
{
	return drift_vec_for(drift_simd_level());
}
