#include "node/codec/sq8.h"

#include <float.h>
#include <math.h>
#include <stdbool.h>
#include <string.h>

#include "common/err.h"
#include "common/simd.h"

static bool all_finite(const float *x, size_t count)
{
	/* One pass without early exit: it vectorises. */
	bool ok = true;
	for (size_t i = 0; i < count; i++)
		ok &= isfinite(x[i]) != 0;
	return ok;
}

int drift_sq8_train(const float *x, size_t n, uint32_t dim, float *min,
		    float *scale)
{
	if (!all_finite(x, n * dim))
		return DRIFT_EINVAL;
	if (n == 0) {
		for (uint32_t j = 0; j < dim; j++)
			min[j] = scale[j] = 0;
		return 0;
	}
	/* Row by row, with scale holding the running maximum until the end:
	 * the rows are read in memory order. */
	memcpy(min, x, dim * sizeof(float));
	memcpy(scale, x, dim * sizeof(float));
	for (size_t r = 1; r < n; r++) {
		const float *row = x + r * dim;
		for (uint32_t j = 0; j < dim; j++) {
			min[j] = row[j] < min[j] ? row[j] : min[j];
			scale[j] = row[j] > scale[j] ? row[j] : scale[j];
		}
	}
	for (uint32_t j = 0; j < dim; j++) {
		/* The float difference may overflow for huge opposite
		 * values: computed in double. */
		double range = (double)scale[j] - (double)min[j];
		/* A range beyond FLT_MAX (values of both signs near it) is
		 * capped so that min + 255 scale stays finite: such a
		 * dimension clamps its top, the decoded vector stays finite. */
		if (range > (double)FLT_MAX)
			range = (double)FLT_MAX * (255.0 / 256.0);
		scale[j] = (float)(range / 255.0);
	}
	return 0;
}

int drift_sq8_encode(const float *min, const float *scale, uint32_t dim,
		     const float *x, size_t n, uint8_t *codes)
{
	if (!all_finite(x, n * dim))
		return DRIFT_EINVAL;
	for (size_t r = 0; r < n; r++) {
		for (uint32_t j = 0; j < dim; j++) {
			float c = scale[j] > 0
					  ? (x[r * dim + j] - min[j]) / scale[j]
					  : 0.0f;
			c = c < 0 ? 0 : c > 255 ? 255 : c;
			codes[r * dim + j] = (uint8_t)lrintf(c);
		}
	}
	return 0;
}

void drift_sq8_decode(const float *min, const float *scale, uint32_t dim,
		      const uint8_t *codes, size_t n, float *out)
{
	for (size_t r = 0; r < n; r++)
		for (uint32_t j = 0; j < dim; j++)
			out[r * dim + j] =
				min[j] + scale[j] * codes[r * dim + j];
}

void drift_sq8_prepare_l2(const float *min, uint32_t dim, const float *q,
			  float *t)
{
	for (uint32_t j = 0; j < dim; j++)
		t[j] = q[j] - min[j];
}

float drift_sq8_prepare_ip(const float *min, const float *scale, uint32_t dim,
			   const float *q, float *w)
{
	double bias = 0;
	for (uint32_t j = 0; j < dim; j++) {
		w[j] = q[j] * scale[j];
		bias -= (double)q[j] * min[j];
	}
	return (float)bias;
}

static void l2_scalar(const float *t, const float *s, const uint8_t *codes,
		      size_t n, uint32_t dim, float *out)
{
	for (size_t r = 0; r < n; r++) {
		const uint8_t *c = codes + r * dim;
		float a0 = 0, a1 = 0;
		uint32_t j = 0;
		for (; j + 2 <= dim; j += 2) {
			float d0 = t[j] - s[j] * c[j];
			float d1 = t[j + 1] - s[j + 1] * c[j + 1];
			a0 += d0 * d0;
			a1 += d1 * d1;
		}
		if (j < dim) {
			float d = t[j] - s[j] * c[j];
			a0 += d * d;
		}
		out[r] = a0 + a1;
	}
}

static void ip_scalar(const float *w, const uint8_t *codes, size_t n,
		      uint32_t dim, float *out)
{
	for (size_t r = 0; r < n; r++) {
		const uint8_t *c = codes + r * dim;
		float a = 0;
		for (uint32_t j = 0; j < dim; j++)
			a += w[j] * c[j];
		out[r] = -a;
	}
}

const drift_sq8_kernels drift_sq8_scalar = {
	.level = DRIFT_SIMD_SCALAR,
	.l2 = l2_scalar,
	.ip = ip_scalar,
};

const drift_sq8_kernels *drift_sq8_for(int level)
{
	if (level < DRIFT_SIMD_SCALAR || level > drift_simd_detected())
		return NULL;
	switch (level) {
#if defined(__x86_64__)
	case DRIFT_SIMD_AVX512:
		return &drift_sq8_avx512;
	case DRIFT_SIMD_AVX2:
		return &drift_sq8_avx2;
#endif
	default:
		return &drift_sq8_scalar;
	}
}

const drift_sq8_kernels *drift_sq8(void)
{
	return drift_sq8_for(drift_simd_level());
}
