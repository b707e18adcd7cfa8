/*
 * ALP: lossless compression of float32 columns, after Afroozeh, Kuffo and
 * Boncz, "ALP: Adaptive Lossless floating-Point Compression", SIGMOD 2024.
 * Used for the full-precision vectors kept for re-ranking.
 *
 * Values are cut into vectors of 1024 (the paper's vector size; the last one
 * may be shorter), each encoded on its own by one of three schemes:
 *
 *  - ALP (the paper's main scheme): values that are decimals with few
 *    digits become integers d = round(x * 10^e * 10^-f) for an exponent e
 *    (0..10) and a factor f (0..e); a value whose decoding d * 10^f * 10^-e
 *    is not the same 32 bits is an exception, stored as its position and
 *    its bits. The integers are frame-of-reference coded and bit-packed in
 *    the FastLanes layout (node/codec/fastlanes.h). (e, f) is chosen by
 *    the paper's two-level sampling.
 *  - ALP-RD (the paper's fallback for "real doubles"), for floats that are
 *    not decimals: each value's bits are cut into a left part (the top
 *    1..16 bits) and a right part; the left parts go through a dictionary
 *    of up to 8 entries (left parts not in it are exceptions), the right
 *    parts are bit-packed.
 *  - stored: the raw bits, when neither is smaller (our addition, so the
 *    encoded size never exceeds the input by more than the headers).
 *
 * Every input round-trips bit for bit: NaN payloads, -0.0, denormals,
 * +/-Inf. The byte layout (with a format version) is in alp.c and
 * docs/codecs.md. The encoder and the decoders allocate nothing.
 */
#ifndef DRIFT_NODE_CODEC_ALP_H
#define DRIFT_NODE_CODEC_ALP_H

#include <stddef.h>
#include <stdint.h>

#define DRIFT_ALP_VECTOR 1024
/* Values per encoded column: block offsets are 32-bit. */
#define DRIFT_ALP_MAX_VALUES (UINT64_C(1) << 29)

/* The most bytes an encoded column of n values can take: the exact worst
 * case, for the caller's buffer. */
size_t drift_alp_bound(size_t n);

/* Encodes n floats into out, which has cap bytes, and stores the size
 * written in *len. 0, or DRIFT_EINVAL when n > DRIFT_ALP_MAX_VALUES or
 * cap < drift_alp_bound(n) (nothing is written then). */
int drift_alp_encode(const float *in, size_t n, uint8_t *out, size_t cap,
		     size_t *len);

/* Reads the header and block table of an encoded column: the number of
 * values in *n. 0 or DRIFT_ECORRUPT (then *n is not written). n is at most
 * 256 * len, since every vector of 1024 takes at least 4 bytes. */
int drift_alp_count(const uint8_t *in, size_t len, uint64_t *n);

/* Decodes values [first, first + count) of an encoded column into out
 * (count floats): only the vectors that hold them are read, so a re-rank
 * fetches one row without decoding the column. 0; DRIFT_ECORRUPT for bad
 * bytes in the header, the block table or those vectors; DRIFT_EINVAL
 * when the range is not inside the column. Those vectors are checked
 * before anything is written: out is untouched on failure. */
int drift_alp_decode_range(const uint8_t *in, size_t len, uint64_t first,
			   size_t count, float *out);

/* Decodes a whole column into out, which holds cap floats. 0,
 * DRIFT_ECORRUPT, or DRIFT_EINVAL when it has more than cap values. */
int drift_alp_decode(const uint8_t *in, size_t len, float *out, size_t cap);

/* How a column was encoded, for benchmarks and tests: the number of
 * vectors by scheme and the exceptions (ALP and ALP-RD). 0 or
 * DRIFT_ECORRUPT. */
typedef struct drift_alp_stats {
	uint64_t alp, rd, stored, exceptions;
} drift_alp_stats;
int drift_alp_stats_of(const uint8_t *in, size_t len, drift_alp_stats *st);

#endif /* DRIFT_NODE_CODEC_ALP_H */
