#include "common/rand.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
	uint64_t z = (*x += UINT64_C(0x9E3779B97F4A7C15));
	z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
	z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
	return z ^ (z >> 31);
}

void drift_rand_seed(drift_rand *r, uint64_t seed)
{
	for (int i = 0; i < 4; i++)
		r->s[i] = splitmix64(&seed);
}

static inline uint64_t rotl(uint64_t x, int k)
{
	return (x << k) | (x >> (64 - k));
}

uint64_t drift_rand_next(drift_rand *r)
{
	uint64_t *s = r->s;
	uint64_t result = rotl(s[1] * 5, 7) * 9;
	uint64_t t = s[1] << 17;
	s[2] ^= s[0];
	s[3] ^= s[1];
	s[1] ^= s[2];
	s[0] ^= s[3];
	s[2] ^= t;
	s[3] = rotl(s[3], 45);
	return result;
}

uint64_t drift_rand_below(drift_rand *r, uint64_t bound)
{
	/* Rejection of the last partial range of 2^64 keeps it unbiased. */
	uint64_t limit = -bound % bound;
	for (;;) {
		uint64_t x = drift_rand_next(r);
		if (x >= limit)
			return x % bound;
	}
}

double drift_rand_unit(drift_rand *r)
{
	return (double)(drift_rand_next(r) >> 11) * 0x1.0p-53;
}

double drift_rand_normal(drift_rand *r)
{
	double u1 = drift_rand_unit(r), u2 = drift_rand_unit(r);
	if (u1 < 1e-300)
		u1 = 1e-300;
	return sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
}
