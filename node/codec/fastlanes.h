/*
 * FastLanes bit-packing of integer columns (ids, offsets), after Afroozeh &
 * Boncz, "The FastLanes Compression Layout: Decoding >100 Billion Integers
 * per Second with Scalar Code", VLDB 2023.
 *
 * Values are cut into blocks of 1024 (the last block may be shorter). A
 * block of T-bit values (T = 32 or 64) is a matrix of 1024 / T lanes
 * (32 lanes of 32-bit values, 16 lanes of 64-bit values) by T rows: value i
 * is row i / lanes, lane i % lanes. Each lane packs its rows at w bits into
 * T-bit words, and word k of every lane is stored next to word k of the
 * other lanes (the paper's interleaved layout): unpacking runs the
 * same shifts on every lane at once, so a plain C loop over the lanes is
 * what the compiler vectorises (the paper's point: scalar code).
 *
 * Column encoding: per block, frame of reference (the block minimum is
 * subtracted, w = bits of max - min), optionally after delta coding for
 * sorted columns. Our delta is the simple variant: d_i = v_i - v_(i-1)
 * within the block (wrapping, so unsorted input still round-trips), the
 * block's first value in the block header, then frame of reference over
 * the deltas and packing. A constant stride packs at width 0. Decoding the
 * deltas is a sequential prefix sum (one add per value); the paper's
 * transposed per-lane delta trades bits for parallelism we do not need.
 *
 * Every value, 0 and 2^64 - 1 included, round-trips bit for bit. The byte
 * layout is in fastlanes.c and docs/codecs.md.
 */
#ifndef DRIFT_NODE_CODEC_FASTLANES_H
#define DRIFT_NODE_CODEC_FASTLANES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define DRIFT_FASTLANES_BLOCK 1024

/* ---- Kernels: one block of up to 1024 values ---------------------------
 *
 * count is 1..1024; the rows used are ceil(count / lanes), a partial last
 * row is padded with zeros. w is 0..T; input bits above w are ignored. */

/* Bytes of count values packed at width w in T-bit words (tbits 32 or
 * 64): 128 * ceil(rows * w / T). A full block takes 128 * w bytes. */
size_t drift_fastlanes_packed_size(unsigned tbits, size_t count, unsigned w);

void drift_fastlanes_pack32(const uint32_t *in, size_t count, unsigned w,
			    uint8_t *out);
void drift_fastlanes_unpack32(const uint8_t *in, size_t count, unsigned w,
			      uint32_t *out);
void drift_fastlanes_pack64(const uint64_t *in, size_t count, unsigned w,
			    uint8_t *out);
void drift_fastlanes_unpack64(const uint8_t *in, size_t count, unsigned w,
			      uint64_t *out);

/* ---- Columns ----------------------------------------------------------- */

/* The most bytes an encoded column of n T-bit values can take (tbits 32 or
 * 64): the exact size of the worst case, for the caller's buffer. */
size_t drift_fastlanes_bound(size_t n, unsigned tbits, bool delta);

/* Encodes n values into out, which has cap bytes, and stores the size
 * written in *len. 0, or DRIFT_EINVAL when cap < drift_fastlanes_bound(n,
 * ...) (nothing is written then). The encoders allocate nothing. */
int drift_fastlanes_encode32(const uint32_t *in, size_t n, bool delta,
			     uint8_t *out, size_t cap, size_t *len);
int drift_fastlanes_encode64(const uint64_t *in, size_t n, bool delta,
			     uint8_t *out, size_t cap, size_t *len);

typedef struct drift_fastlanes_info {
	uint64_t n;	/* values in the column */
	unsigned tbits; /* 32 or 64 */
	bool delta;
} drift_fastlanes_info;

/* Checks the whole encoded column in (len bytes: every header, width and
 * size, and that the blocks fill len exactly) and describes it. 0 or
 * DRIFT_ECORRUPT; *info is written only on success. n is at most 128 * len
 * values (a block of 1024 takes at least 8 bytes), so a caller that sizes a
 * buffer from it allocates at most 1 KiB (4 KiB for 64 bit) per input
 * byte; a caller that knows the row count should compare. */
int drift_fastlanes_info_of(const uint8_t *in, size_t len,
			    drift_fastlanes_info *info);

/* Decodes a whole column into out, which holds cap values. 0;
 * DRIFT_ECORRUPT for bad bytes or a column of the other width;
 * DRIFT_EINVAL when it has more than cap values. The column is checked
 * before anything is written, so out is untouched on failure. */
int drift_fastlanes_decode32(const uint8_t *in, size_t len, uint32_t *out,
			     size_t cap);
int drift_fastlanes_decode64(const uint8_t *in, size_t len, uint64_t *out,
			     size_t cap);

#endif /* DRIFT_NODE_CODEC_FASTLANES_H */
