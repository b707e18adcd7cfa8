/*
 * Bloom filter of the ids in a segment, kept in its footer, so "this id is
 * not here" costs no data read.
 *
 * Sized from the expected number of ids n and a target false-positive rate
 * p: m = -n ln p / (ln 2)^2 bits rounded up to whole 64-bit words, and
 * k = round(m / n ln 2) probes (Bloom 1970; the optimum for a given m/n).
 * The k probe positions come from two hashes by double hashing,
 * h1 + i * h2 (Kirsch & Mitzenmacher, 2006), both from XXH3 of the id's
 * eight little-endian bytes under two seeds.
 *
 * Serialised layout (little endian), for the segment footer:
 *    0  4  magic "DBLM"
 *    4  1  version (1)
 *    5  1  k (1..30)
 *    6  2  reserved (0)
 *    8  8  number of 64-bit words w (1..2^26)
 *   16  8w the bit array
 * Parsing checks every field and the exact length: bad bytes are
 * DRIFT_ECORRUPT, never trusted (the footer checksum guards them too).
 */
#ifndef DRIFT_NODE_CODEC_BLOOM_H
#define DRIFT_NODE_CODEC_BLOOM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct drift_bloom {
	uint64_t *words;
	uint64_t nwords;
	unsigned k;
	bool owned; /* words allocated by drift_bloom_new */
} drift_bloom;

/* A filter for about n ids at false-positive rate p (0 < p < 1). 0,
 * DRIFT_EINVAL or DRIFT_ENOMEM. */
int drift_bloom_new(drift_bloom *b, uint64_t n, double p);
void drift_bloom_free(drift_bloom *b);

void drift_bloom_add(drift_bloom *b, uint64_t id);

/* false: id was never added. true: it probably was. */
bool drift_bloom_maybe(const drift_bloom *b, uint64_t id);

/* Bytes of the serialised form, and the serialisation itself into out. */
size_t drift_bloom_size(const drift_bloom *b);
void drift_bloom_write(const drift_bloom *b, uint8_t *out);

/* A read-only filter over len serialised bytes (not copied: they must
 * outlive it; it needs no free). 0 or DRIFT_ECORRUPT. The words are read
 * in place, so data must be 8-byte aligned (segment footers are). */
int drift_bloom_view(drift_bloom *b, const uint8_t *data, size_t len);

#endif /* DRIFT_NODE_CODEC_BLOOM_H */
