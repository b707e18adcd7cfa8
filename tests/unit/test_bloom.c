/* Tests of node/codec/bloom: no false negatives, the false-positive rate
 * near its target, and a serialised form that survives a round trip and
 * refuses bad bytes. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "node/codec/bloom.h"
#include "drift_test.h"

DRIFT_TEST(bloom, no_false_negatives_and_rate_near_target)
{
	const double targets[] = {0.01, 0.001};
	for (int t = 0; t < 2; t++) {
		enum { N = 100000, PROBES = 1000000 };
		drift_bloom b;
		cr_assert_eq(drift_bloom_new(&b, N, targets[t]), 0);
		/* Ids spread over the whole range, 0 and 2^64-1 included. */
		for (uint64_t i = 0; i < N; i++)
			drift_bloom_add(&b, i * UINT64_C(0x9E3779B97F4A7C15));
		drift_bloom_add(&b, UINT64_MAX);
		for (uint64_t i = 0; i < N; i++)
			cr_assert(drift_bloom_maybe(
				&b, i * UINT64_C(0x9E3779B97F4A7C15)));
		cr_assert(drift_bloom_maybe(&b, UINT64_MAX));
		long fp = 0;
		for (uint64_t i = 0; i < PROBES; i++)
			fp += drift_bloom_maybe(&b, (UINT64_C(1) << 62) + i);
		double rate = (double)fp / PROBES;
		cr_log_info("target %.4f: measured %.5f, k=%u, %llu bytes",
			    targets[t], rate, b.k,
			    (unsigned long long)b.nwords * 8);
		cr_assert_leq(rate, 1.5 * targets[t]);
		drift_bloom_free(&b);
	}
}

DRIFT_TEST(bloom, serialised_round_trip)
{
	drift_bloom b, v;
	cr_assert_eq(drift_bloom_new(&b, 1000, 0.01), 0);
	for (uint64_t i = 0; i < 1000; i++)
		drift_bloom_add(&b, i * 3);
	size_t len = drift_bloom_size(&b);
	uint64_t *store = drift_aligned_alloc(64, len + 8);
	uint8_t *buf = (uint8_t *)store;
	drift_bloom_write(&b, buf);
	cr_assert_eq(drift_bloom_view(&v, buf, len), 0);
	for (uint64_t i = 0; i < 3000; i++)
		cr_assert_eq(drift_bloom_maybe(&v, i),
			     drift_bloom_maybe(&b, i));
	drift_bloom_free(&v); /* a view owns nothing */

	/* Bad headers and lengths are corruption. */
	cr_assert_eq(drift_bloom_view(&v, buf, len - 1), DRIFT_ECORRUPT);
	cr_assert_eq(drift_bloom_view(&v, buf, 10), DRIFT_ECORRUPT);
	for (int byte = 0; byte < 16; byte++) {
		if (byte >= 9) /* the word count's high bytes: below */
			continue;
		buf[byte] ^= 0x40;
		cr_assert_eq(drift_bloom_view(&v, buf, len), DRIFT_ECORRUPT,
			     "header byte %d", byte);
		buf[byte] ^= 0x40;
	}
	buf[15] = 0x80; /* a word count that does not fit the length */
	cr_assert_eq(drift_bloom_view(&v, buf, len), DRIFT_ECORRUPT);
	drift_free(store);
	drift_bloom_free(&b);
}

DRIFT_TEST(bloom, bad_parameters)
{
	drift_bloom b;
	cr_assert_eq(drift_bloom_new(&b, 10, 0), DRIFT_EINVAL);
	cr_assert_eq(drift_bloom_new(&b, 10, 1), DRIFT_EINVAL);
	cr_assert_eq(drift_bloom_new(&b, UINT64_C(1) << 40, 0.01),
		     DRIFT_EINVAL);
	drift_failalloc_arm(1, 0);
	cr_assert_eq(drift_bloom_new(&b, 10, 0.01), DRIFT_ENOMEM);
	drift_failalloc_arm(0, 0);
	cr_assert_eq(drift_bloom_new(&b, 0, 0.5), 0, "an empty filter");
	cr_assert_not(drift_bloom_maybe(&b, 42));
	drift_bloom_free(&b);
}
