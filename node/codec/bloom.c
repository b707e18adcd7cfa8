#include "node/codec/bloom.h"

#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/err.h"
#include "common/hash.h"

#define SEED1 UINT64_C(0x626c6f6f6d2d6831) /* "bloom-h1" */
#define SEED2 UINT64_C(0x626c6f6f6d2d6832) /* "bloom-h2" */
#define MAX_WORDS (UINT64_C(1) << 26)	   /* 512 MiB of bits */
#define HEADER 16

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "drift_bloom_view reads little-endian words in place"
#endif

int drift_bloom_new(drift_bloom *b, uint64_t n, double p)
{
	if (!(p > 0 && p < 1))
		return DRIFT_EINVAL;
	if (n == 0)
		n = 1;
	double ln2 = log(2.0);
	double bits = -(double)n * log(p) / (ln2 * ln2);
	uint64_t words = (uint64_t)ceil(bits / 64.0);
	if (words == 0)
		words = 1;
	if (words > MAX_WORDS)
		return DRIFT_EINVAL;
	long k = lround((double)(words * 64) / (double)n * ln2);
	k = k < 1 ? 1 : k > 30 ? 30 : k;
	uint64_t *w = drift_calloc(words, sizeof(uint64_t));
	if (w == NULL)
		return DRIFT_ENOMEM;
	*b = (drift_bloom){w, words, (unsigned)k, true};
	return 0;
}

void drift_bloom_free(drift_bloom *b)
{
	if (b->owned)
		drift_free(b->words);
	memset(b, 0, sizeof(*b));
}

/* The i-th probe: a bit index in 0 .. nwords * 64 - 1. The second hash is
 * made odd so that the probes never collapse onto one bit. */
static inline uint64_t probe(uint64_t h1, uint64_t h2, unsigned i,
			     uint64_t bits)
{
	return (h1 + (uint64_t)i * (h2 | 1)) % bits;
}

void drift_bloom_add(drift_bloom *b, uint64_t id)
{
	uint64_t h1 = drift_hash_u64(id, SEED1), h2 = drift_hash_u64(id, SEED2);
	uint64_t bits = b->nwords * 64;
	for (unsigned i = 0; i < b->k; i++) {
		uint64_t x = probe(h1, h2, i, bits);
		b->words[x / 64] |= UINT64_C(1) << (x % 64);
	}
}

bool drift_bloom_maybe(const drift_bloom *b, uint64_t id)
{
	uint64_t h1 = drift_hash_u64(id, SEED1), h2 = drift_hash_u64(id, SEED2);
	uint64_t bits = b->nwords * 64;
	for (unsigned i = 0; i < b->k; i++) {
		uint64_t x = probe(h1, h2, i, bits);
		if (!(b->words[x / 64] & (UINT64_C(1) << (x % 64))))
			return false;
	}
	return true;
}

size_t drift_bloom_size(const drift_bloom *b)
{
	return HEADER + (size_t)b->nwords * 8;
}

void drift_bloom_write(const drift_bloom *b, uint8_t *out)
{
	memcpy(out, "DBLM", 4);
	out[4] = 1;
	out[5] = (uint8_t)b->k;
	out[6] = out[7] = 0;
	drift_store_le64(out + 8, b->nwords);
	for (uint64_t i = 0; i < b->nwords; i++)
		drift_store_le64(out + HEADER + 8 * i, b->words[i]);
}

int drift_bloom_view(drift_bloom *b, const uint8_t *data, size_t len)
{
	if (len < HEADER || memcmp(data, "DBLM", 4) != 0 || data[4] != 1 ||
	    data[5] < 1 || data[5] > 30 || data[6] != 0 || data[7] != 0)
		return DRIFT_ECORRUPT;
	uint64_t words = drift_load_le64(data + 8);
	if (words == 0 || words > MAX_WORDS || len - HEADER != words * 8 ||
	    ((uintptr_t)(data + HEADER) & 7) != 0)
		return DRIFT_ECORRUPT;
	/* Little-endian words on a little-endian host are read in place. */
	*b = (drift_bloom){(uint64_t *)(uintptr_t)(data + HEADER), words,
			   data[5], false};
	return 0;
}
