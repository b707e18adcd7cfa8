/* Tests of common/hash: stable values (they are stored on disk) and
 * distribution. */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "common/hash.h"
#include "common/rand.h"
#include "drift_test.h"

/* Reference values from the xxHash specification's test vectors, so a change
 * of algorithm or seed handling is caught before it reaches a disk. */
DRIFT_TEST(hash, reference_values)
{
	cr_assert_eq(drift_hash64_seeded("", 0, 0),
		     UINT64_C(0xEF46DB3751D8E999), "XXH64 of empty input");
	cr_assert_eq(drift_checksum64("", 0), UINT64_C(0x2D06800538D394C2),
		     "XXH3-64 of empty input");
	cr_assert_eq(drift_checksum64_seeded("", 0, 0),
		     drift_checksum64("", 0));
}

DRIFT_TEST(hash, u64_key_hash_is_the_hash_of_its_little_endian_bytes)
{
	uint8_t bytes[8] = {0x08, 0x07, 0x06, 0x05, 0x04, 0x03, 0x02, 0x01};
	uint64_t key = UINT64_C(0x0102030405060708);
	cr_assert_eq(drift_hash_u64(key, 99),
		     drift_checksum64_seeded(bytes, 8, 99));
	cr_assert_neq(drift_hash_u64(key, 1), drift_hash_u64(key, 2),
		      "the seed changes the hash");
}

DRIFT_TEST(hash, seeds_and_chaining)
{
	const char *a = "segment-block-0", *b = "segment-block-1";
	uint64_t ca = drift_checksum64(a, strlen(a));
	uint64_t chained = drift_checksum64_seeded(b, strlen(b), ca);
	cr_assert_neq(chained, drift_checksum64(b, strlen(b)));
	cr_assert_eq(chained, drift_checksum64_seeded(b, strlen(b), ca),
		     "deterministic");
	cr_assert_neq(drift_hash64_seeded(a, 5, 1),
		      drift_hash64_seeded(a, 5, 2));
	cr_assert_eq(drift_checksum32(a, 5), (uint32_t)drift_checksum64(a, 5));
}

/* Every single-bit flip of a 4 KiB block changes its checksum. */
DRIFT_TEST(hash, checksum_detects_every_bit_flip)
{
	static uint8_t block[4096];
	drift_rand r;
	drift_rand_seed(&r, 7);
	for (size_t i = 0; i < sizeof(block); i++)
		block[i] = (uint8_t)drift_rand_next(&r);
	uint64_t good = drift_checksum64(block, sizeof(block));
	for (size_t bit = 0; bit < sizeof(block) * 8; bit += 7) {
		block[bit / 8] ^= (uint8_t)(1u << (bit % 8));
		cr_assert_neq(drift_checksum64(block, sizeof(block)), good,
			      "bit %zu", bit);
		block[bit / 8] ^= (uint8_t)(1u << (bit % 8));
	}
}

/* Sequential ids (the worst case for a weak hash) spread evenly over 64
 * buckets: chi-square with 63 degrees of freedom stays far below the 0.1%
 * tail (~103.4). */
DRIFT_TEST(hash, sequential_ids_spread_evenly)
{
	enum { BUCKETS = 64, N = 1 << 18 };
	static long count[BUCKETS];
	memset(count, 0, sizeof(count));
	for (uint64_t id = 0; id < N; id++)
		count[drift_hash_u64(id, 0) % BUCKETS]++;
	double expected = (double)N / BUCKETS, chi2 = 0;
	for (int i = 0; i < BUCKETS; i++)
		chi2 += pow(count[i] - expected, 2) / expected;
	cr_assert_lt(chi2, 103.4, "chi-square %.1f", chi2);
}
