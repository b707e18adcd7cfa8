/*
 * A small seeded pseudo-random generator: xoshiro256** (Blackman & Vigna,
 * "Scrambled linear pseudorandom number generators", 2021) seeded through
 * splitmix64. Deterministic for a seed on every machine, so sampling,
 * k-means initialisation and tests are reproducible. Not for secrets.
 * A drift_rand is a plain value owned by one thread.
 */
#ifndef DRIFT_COMMON_RAND_H
#define DRIFT_COMMON_RAND_H

#include <stdint.h>

typedef struct drift_rand {
	uint64_t s[4];
} drift_rand;

void drift_rand_seed(drift_rand *r, uint64_t seed);

/* Uniform over all 64-bit values. */
uint64_t drift_rand_next(drift_rand *r);

/* Uniform in [0, bound) without modulo bias; bound > 0. */
uint64_t drift_rand_below(drift_rand *r, uint64_t bound);

/* Uniform in [0, 1) with 53 random bits. */
double drift_rand_unit(drift_rand *r);

/* Standard normal (mean 0, variance 1), Box-Muller. */
double drift_rand_normal(drift_rand *r);

#endif /* DRIFT_COMMON_RAND_H */
