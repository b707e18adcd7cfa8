/*
 * SQ8: 8-bit scalar quantization of vectors, per-dimension ranges (one
 * range set per bucket), and the asymmetric-distance (ADC) scan kernels of
 * the L1 index.
 *
 * A value x of dimension i is stored as the byte c = round((x - min_i) /
 * scale_i), scale_i = (max_i - min_i) / 255, and read back as min_i + scale_i
 * c. A dimension where every value is the same has scale 0 and code 0; a
 * range wider than FLT_MAX is capped so that decoded values stay finite. The
 * query stays in float ("asymmetric"): for L2 the scan computes
 * sum_i (t_i - scale_i c_i)^2 with t = q - min; for inner product
 * bias - sum_i w_i c_i with w = q * scale and bias = -sum_i q_i min_i. Both
 * equal the exact distance between the query and the decoded vector, up to
 * float rounding.
 *
 * The scan kernels come in scalar, AVX2+FMA and AVX-512 versions behind the
 * run-time dispatch of common/simd.h; the tests hold each to the scalar
 * reference on every dimension from 1 to 1024.
 */
#ifndef DRIFT_NODE_CODEC_SQ8_H
#define DRIFT_NODE_CODEC_SQ8_H

#include <stddef.h>
#include <stdint.h>

/* Per-dimension min and scale over the n rows of x (row-major, dim floats).
 * 0, or DRIFT_EINVAL when a value is NaN or infinite (min and scale are then
 * not written). n = 0 gives min 0, scale 0. */
int drift_sq8_train(const float *x, size_t n, uint32_t dim, float *min,
		    float *scale);

/* Encodes n rows into codes (n * dim bytes, row-major). Values outside the
 * trained range are clamped. 0, or DRIFT_EINVAL when a value is NaN or
 * infinite (codes are then not written). */
int drift_sq8_encode(const float *min, const float *scale, uint32_t dim,
		     const float *x, size_t n, uint8_t *codes);

/* Decodes n rows of codes into out (n * dim floats). */
void drift_sq8_decode(const float *min, const float *scale, uint32_t dim,
		      const uint8_t *codes, size_t n, float *out);

/* Query preparation. L2: t = q - min (dim floats). IP: w = q * scale and
 * returns bias = -sum q_i min_i. */
void drift_sq8_prepare_l2(const float *min, uint32_t dim, const float *q,
			  float *t);
float drift_sq8_prepare_ip(const float *min, const float *scale, uint32_t dim,
			   const float *q, float *w);

typedef struct drift_sq8_kernels {
	int level;
	/* out[r] = sum_i (t_i - s_i * codes[r * dim + i])^2, r < n */
	void (*l2)(const float *t, const float *s, const uint8_t *codes,
		   size_t n, uint32_t dim, float *out);
	/* out[r] = -sum_i w_i * codes[r * dim + i] (add the bias) */
	void (*ip)(const float *w, const uint8_t *codes, size_t n, uint32_t dim,
		   float *out);
} drift_sq8_kernels;

/* The kernels of a SIMD level (NULL when this CPU cannot run it), and those
 * of the active level. */
const drift_sq8_kernels *drift_sq8_for(int level);
const drift_sq8_kernels *drift_sq8(void);

extern const drift_sq8_kernels drift_sq8_scalar;
extern const drift_sq8_kernels drift_sq8_avx2;
extern const drift_sq8_kernels drift_sq8_avx512;

#endif /* DRIFT_NODE_CODEC_SQ8_H */
