#include "common/hash.h"

#include <xxhash.h>

#include "common/endian.h"

uint64_t drift_checksum64(const void *data, size_t len)
{
	return XXH3_64bits(data, len);
}

uint64_t drift_checksum64_seeded(const void *data, size_t len, uint64_t seed)
{
	return XXH3_64bits_withSeed(data, len, seed);
}

uint64_t drift_hash_u64(uint64_t key, uint64_t seed)
{
	uint8_t bytes[8];
	drift_store_le64(bytes, key);
	return XXH3_64bits_withSeed(bytes, sizeof(bytes), seed);
}

uint64_t drift_hash64_seeded(const void *data, size_t len, uint64_t seed)
{
	return XXH64(data, len, seed);
}
