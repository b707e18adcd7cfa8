/*
 * Hashing and checksums over xxHash.
 *
 * - drift_checksum64: XXH3-64, for block, footer and record checksums. The
 *   seeded form chains checksums (seed = the previous checksum), which gives a
 *   cumulative checksum over a sequence of records.
 * - drift_hash_u64: XXH3-64 of the 8 little-endian bytes of a key, seeded;
 *   bloom filters and hash tables use it.
 * - drift_hash64_seeded: XXH64 with a seed, for the consistent-hash ring, whose
 *   placement must stay stable across versions and machines (XXH64's output is
 *   fixed by its specification).
 *
 * All are deterministic across runs, processes and CPUs (xxHash is defined
 * over little-endian reads and has no runtime-dependent seed), so their
 * values may be stored on disk.
 */
#ifndef DRIFT_COMMON_HASH_H
#define DRIFT_COMMON_HASH_H

#include <stddef.h>
#include <stdint.h>

uint64_t drift_checksum64(const void *data, size_t len);
uint64_t drift_checksum64_seeded(const void *data, size_t len, uint64_t seed);

uint64_t drift_hash_u64(uint64_t key, uint64_t seed);

uint64_t drift_hash64_seeded(const void *data, size_t len, uint64_t seed);

/* A 32-bit checksum for places with room for only four bytes: the low half of
 * drift_checksum64. */
static inline uint32_t drift_checksum32(const void *data, size_t len)
{
	return (uint32_t)drift_checksum64(data, len);
}

#endif /* DRIFT_COMMON_HASH_H */
