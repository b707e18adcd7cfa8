/*
 * SIMD dispatch.
 *
 * The CPU's vector level is detected once, at first use: AVX-512 (F, BW, DQ,
 * VL, with the OS saving ZMM state), AVX2 with FMA, or scalar. The
 * environment variable DRIFT_SIMD=scalar|avx2|avx512 lowers it (a level above
 * what the CPU supports is refused with a warning and the detected level is
 * kept), so every kernel variant can be run on one machine.
 *
 * Kernels are reached through tables of function pointers
 * (drift_vec_kernels in common/vec.h and the tables of later modules) picked
 * for the active level. Hot loops fetch their table once, outside the loop.
 */
#ifndef DRIFT_COMMON_SIMD_H
#define DRIFT_COMMON_SIMD_H

enum drift_simd_level {
	DRIFT_SIMD_SCALAR = 0,
	DRIFT_SIMD_AVX2 = 1,   /* AVX2 + FMA */
	DRIFT_SIMD_AVX512 = 2, /* AVX-512 F/BW/DQ/VL */
};

/* The highest level this CPU and OS support. Detected once; thread-safe. */
int drift_simd_detected(void);

/* The active level: detected, lowered by DRIFT_SIMD, or set by
 * drift_simd_set_level(). Thread-safe. */
int drift_simd_level(void);

/* Forces the active level (tests, configuration). 0, or DRIFT_ENOTSUP when the
 * CPU lacks it, DRIFT_EINVAL for a value that is no level. Kernel tables
 * fetched before the call keep their old level. */
int drift_simd_set_level(int level);

/* "scalar", "avx2", "avx512"; "?" for anything else. */
const char *drift_simd_name(int level);

/* Parses a level name (any case). 0 or DRIFT_EINVAL. */
int drift_simd_parse(const char *name, int *level);

#endif /* DRIFT_COMMON_SIMD_H */
