/*
 * Float vector kernels, one table per SIMD level.
 *
 * Every distance in Drift is computed by these kernels (L0 graph and L1
 * re-rank alike), so a search gives the same distances wherever a vector
 * lives. Vectors need no alignment; n may be any value, 0 included (the
 * result is then 0).
 *
 * Results differ between levels only by float rounding (the summation order
 * differs); the tests bound that difference against a double-precision
 * reference.
 */
#ifndef DRIFT_COMMON_VEC_H
#define DRIFT_COMMON_VEC_H

#include <stddef.h>

typedef struct drift_vec_kernels {
	int level; /* the enum drift_simd_level these kernels need */
	/* sum_i (a_i - b_i)^2 */
	float (*l2sq)(const float *a, const float *b, size_t n);
	/* sum_i a_i * b_i */
	float (*dot)(const float *a, const float *b, size_t n);
} drift_vec_kernels;

/* The table for the active level (drift_simd_level()). Never NULL. */
const drift_vec_kernels *drift_vec(void);

/* The table for a given level, or NULL when this CPU cannot run it or the
 * build lacks it. */
const drift_vec_kernels *drift_vec_for(int level);

/* The per-level tables, defined in vec_<level>.c. Use drift_vec_for(). */
extern const drift_vec_kernels drift_vec_scalar;
extern const drift_vec_kernels drift_vec_avx2;
extern const drift_vec_kernels drift_vec_avx512;

#endif /* DRIFT_COMMON_VEC_H */
