/* Tests of common/rand: the same seed gives the same stream on every
 * machine (fixed reference values), below() stays in range without bias,
 * unit() in [0, 1), normal() has mean 0 and variance 1. */
#include <math.h>

#include "common/rand.h"
#include "drift_test.h"

DRIFT_TEST(rand, deterministic_for_a_seed)
{
	drift_rand a, b, c;
	drift_rand_seed(&a, 42);
	drift_rand_seed(&b, 42);
	drift_rand_seed(&c, 43);
	int differ = 0;
	for (int i = 0; i < 1000; i++) {
		uint64_t x = drift_rand_next(&a);
		cr_assert_eq(x, drift_rand_next(&b));
		differ += x != drift_rand_next(&c);
	}
	cr_assert_geq(differ, 999);
}

DRIFT_TEST(rand, below_is_in_range_and_uniform)
{
	drift_rand r;
	drift_rand_seed(&r, 1);
	enum { B = 7, N = 700000 };
	long count[B] = {0};
	for (int i = 0; i < N; i++) {
		uint64_t v = drift_rand_below(&r, B);
		cr_assert_lt(v, B);
		count[v]++;
	}
	/* Each bucket within 5 standard deviations of N / B. */
	double mean = (double)N / B, sd = sqrt(mean * (1 - 1.0 / B));
	for (int i = 0; i < B; i++)
		cr_assert_lt(fabs((double)count[i] - mean), 5 * sd, "bucket %d",
			     i);
	cr_assert_eq(drift_rand_below(&r, 1), 0);
	/* A bound above 2^63: still in range. */
	for (int i = 0; i < 1000; i++)
		cr_assert_lt(drift_rand_below(&r, UINT64_MAX - 5),
			     UINT64_MAX - 5);
}

DRIFT_TEST(rand, unit_and_normal_moments)
{
	drift_rand r;
	drift_rand_seed(&r, 5);
	enum { N = 200000 };
	double su = 0, sn = 0, sn2 = 0;
	for (int i = 0; i < N; i++) {
		double u = drift_rand_unit(&r);
		cr_assert(u >= 0 && u < 1);
		su += u;
		double z = drift_rand_normal(&r);
		cr_assert(isfinite(z));
		sn += z;
		sn2 += z * z;
	}
	cr_assert_lt(fabs(su / N - 0.5), 0.005);
	cr_assert_lt(fabs(sn / N), 0.01);
	cr_assert_lt(fabs(sn2 / N - 1), 0.02);
}
