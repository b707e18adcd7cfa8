/*
 * FastLanes bit-packing: kernels and the column format.
 *
 * Column layout (little endian; t = T / 8 bytes per value, T = 32 or 64):
 *
 *    0  4  magic "DFLP"
 *    4  1  version (1)
 *    5  1  T: 32 or 64
 *    6  1  flags: bit 0 delta; the other bits 0
 *    7  1  reserved (0)
 *    8  8  n, the number of values
 *   16     ceil(n / 1024) blocks of min(1024, rest) values, each:
 *            0    1  w, the packed width (0..T)
 *            1  t-1  reserved (0)
 *            t    t  base: the frame of reference (minimum)
 *           2t    t  delta columns only: the block's first value
 *            .    .  drift_fastlanes_packed_size(T, count, w) bytes
 *
 * Plain blocks store v_i - base. Delta blocks store d_i - base with
 * d_i = v_i - v_(i-1) (mod 2^T) for i >= 1; row 0 holds 0 and is ignored.
 * The blocks must fill the column exactly. The decoder checks every field
 * and size before it writes a value: bad bytes are DRIFT_ECORRUPT, never a
 * read out of bounds. Packed bits are not checksummed (the segment is).
 */
#include "node/codec/fastlanes.h"

#include <string.h>

#include "common/endian.h"
#include "common/err.h"

#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "the packed words are loaded and stored in host order"
#endif

#define BLOCK DRIFT_FASTLANES_BLOCK
#define HEADER 16
#define VERSION 1
#define FLAG_DELTA 1

/* ---- Kernels -------------------------------------------------------------
 *
 * Word k of lane l is at byte (k * lanes + l) * t = 128 k + l t: one row of
 * words is always 128 bytes (a 1024-bit register of the paper). */

static inline uint32_t ld32(const uint8_t *p)
{
	uint32_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline uint64_t ld64(const uint8_t *p)
{
	uint64_t v;
	memcpy(&v, p, sizeof(v));
	return v;
}

static inline void st32(uint8_t *p, uint32_t v)
{
	memcpy(p, &v, sizeof(v));
}

static inline void st64(uint8_t *p, uint64_t v)
{
	memcpy(p, &v, sizeof(v));
}

size_t drift_fastlanes_packed_size(unsigned tbits, size_t count, unsigned w)
{
	size_t lanes = 1024 / tbits;
	size_t rows = (count + lanes - 1) / lanes;
	return 128 * ((rows * w + tbits - 1) / tbits);
}

void drift_fastlanes_pack32(const uint32_t *in, size_t count, unsigned w,
			    uint8_t *out)
{
	enum { L = 32 };
	if (w == 0 || count == 0)
		return;
	uint32_t mask = w == 32 ? UINT32_MAX : (UINT32_C(1) << w) - 1;
	size_t rows = (count + L - 1) / L;
	uint64_t acc[L] = {0};
	unsigned bits = 0;
	uint8_t *o = out;
	for (size_t r = 0; r < rows; r++) {
		uint32_t row[L];
		if ((r + 1) * L <= count) {
			memcpy(row, in + r * L, sizeof(row));
		} else {
			memset(row, 0, sizeof(row));
			memcpy(row, in + r * L, (count - r * L) * 4);
		}
		/* bits < 32 and w <= 32: the shifted value fits 63 bits. */
		for (int l = 0; l < L; l++)
			acc[l] |= (uint64_t)(row[l] & mask) << bits;
		bits += w;
		if (bits >= 32) {
			for (int l = 0; l < L; l++) {
				st32(o + 4 * l, (uint32_t)acc[l]);
				acc[l] >>= 32;
			}
			o += 128;
			bits -= 32;
		}
	}
	if (bits > 0)
		for (int l = 0; l < L; l++)
			st32(o + 4 * l, (uint32_t)acc[l]);
}

/* Unpacks rows into dst (rows * 32 values). */
static void unpack32_rows(const uint8_t *in, size_t rows, unsigned w,
			  uint32_t *dst)
{
	enum { L = 32 };
	uint32_t mask = w == 32 ? UINT32_MAX : (UINT32_C(1) << w) - 1;
	for (size_t r = 0; r < rows; r++) {
		size_t s = r * w;
		unsigned o = (unsigned)(s & 31);
		const uint8_t *p = in + (s >> 5) * 128;
		uint32_t *d = dst + r * L;
		if (o + w <= 32) {
			for (int l = 0; l < L; l++)
				d[l] = (ld32(p + 4 * l) >> o) & mask;
		} else {
			/* The value straddles words k and k + 1 of the lane;
			 * k + 1 exists because (s + w - 1) / 32 < words. */
			for (int l = 0; l < L; l++)
				d[l] = (uint32_t)(((uint64_t)ld32(p + 4 * l) |
						   (uint64_t)ld32(p + 128 +
								  4 * l)
							   << 32) >>
						  o) &
				       mask;
		}
	}
}

void drift_fastlanes_unpack32(const uint8_t *in, size_t count, unsigned w,
			      uint32_t *out)
{
	enum { L = 32 };
	if (w == 0) {
		memset(out, 0, count * sizeof(*out));
		return;
	}
	size_t rows = (count + L - 1) / L;
	if (rows * L == count) {
		unpack32_rows(in, rows, w, out);
	} else {
		uint32_t tmp[BLOCK];
		unpack32_rows(in, rows, w, tmp);
		memcpy(out, tmp, count * sizeof(*out));
	}
}

void drift_fastlanes_pack64(const uint64_t *in, size_t count, unsigned w,
			    uint8_t *out)
{
	enum { L = 16 };
	if (w == 0 || count == 0)
		return;
	uint64_t mask = w == 64 ? UINT64_MAX : (UINT64_C(1) << w) - 1;
	size_t rows = (count + L - 1) / L;
	uint64_t cur[L] = {0};
	unsigned bits = 0;
	uint8_t *o = out;
	for (size_t r = 0; r < rows; r++) {
		uint64_t row[L];
		if ((r + 1) * L <= count) {
			memcpy(row, in + r * L, sizeof(row));
		} else {
			memset(row, 0, sizeof(row));
			memcpy(row, in + r * L, (count - r * L) * 8);
		}
		for (int l = 0; l < L; l++)
			cur[l] |= (row[l] & mask) << bits;
		if (bits + w >= 64) {
			/* The word is full: store it and carry the bits of
			 * this row that did not fit (none when bits is 0). */
			for (int l = 0; l < L; l++) {
				st64(o + 8 * l, cur[l]);
				cur[l] = bits ? (row[l] & mask) >> (64 - bits)
					      : 0;
			}
			o += 128;
		}
		bits = (bits + w) & 63;
	}
	if (bits > 0)
		for (int l = 0; l < L; l++)
			st64(o + 8 * l, cur[l]);
}

static void unpack64_rows(const uint8_t *in, size_t rows, unsigned w,
			  uint64_t *dst)
{
	enum { L = 16 };
	uint64_t mask = w == 64 ? UINT64_MAX : (UINT64_C(1) << w) - 1;
	for (size_t r = 0; r < rows; r++) {
		size_t s = r * w;
		unsigned o = (unsigned)(s & 63);
		const uint8_t *p = in + (s >> 6) * 128;
		uint64_t *d = dst + r * L;
		if (o + w <= 64) {
			for (int l = 0; l < L; l++)
				d[l] = (ld64(p + 8 * l) >> o) & mask;
		} else {
			/* o > 0 here, since w <= 64. */
			for (int l = 0; l < L; l++)
				d[l] = ((ld64(p + 8 * l) >> o) |
					(ld64(p + 128 + 8 * l) << (64 - o))) &
				       mask;
		}
	}
}

void drift_fastlanes_unpack64(const uint8_t *in, size_t count, unsigned w,
			      uint64_t *out)
{
	enum { L = 16 };
	if (w == 0) {
		memset(out, 0, count * sizeof(*out));
		return;
	}
	size_t rows = (count + L - 1) / L;
	if (rows * L == count) {
		unpack64_rows(in, rows, w, out);
	} else {
		uint64_t tmp[BLOCK];
		unpack64_rows(in, rows, w, tmp);
		memcpy(out, tmp, count * sizeof(*out));
	}
}

/* ---- Column format ------------------------------------------------------ */

static size_t block_header(unsigned tbits, bool delta)
{
	return (delta ? 3 : 2) * (size_t)(tbits / 8);
}

static size_t nblocks(uint64_t n)
{
	return (size_t)(n / BLOCK + (n % BLOCK != 0));
}

size_t drift_fastlanes_bound(size_t n, unsigned tbits, bool delta)
{
	size_t full = n / BLOCK, tail = n % BLOCK;
	size_t size = HEADER + nblocks(n) * block_header(tbits, delta);
	size += full * drift_fastlanes_packed_size(tbits, BLOCK, tbits);
	if (tail)
		size += drift_fastlanes_packed_size(tbits, tail, tbits);
	return size;
}

static unsigned width32(uint32_t x)
{
	return x ? 32u - (unsigned)__builtin_clz(x) : 0;
}

static unsigned width64(uint64_t x)
{
	return x ? 64u - (unsigned)__builtin_clzll(x) : 0;
}

static void write_header(uint8_t *out, unsigned tbits, bool delta, size_t n)
{
	memcpy(out, "DFLP", 4);
	out[4] = VERSION;
	out[5] = (uint8_t)tbits;
	out[6] = delta ? FLAG_DELTA : 0;
	out[7] = 0;
	drift_store_le64(out + 8, n);
}

/* One block of 32-bit values at o; returns the bytes written. */
static size_t encode_block32(const uint32_t *in, size_t count, bool delta,
			     uint8_t *o)
{
	uint32_t v[BLOCK];
	if (delta) {
		v[0] = 0;
		for (size_t i = 1; i < count; i++)
			v[i] = in[i] - in[i - 1];
	} else {
		memcpy(v, in, count * sizeof(*v));
	}
	size_t from = delta ? 1 : 0;
	uint32_t lo = count > from ? v[from] : 0, hi = lo;
	for (size_t i = from; i < count; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	for (size_t i = from; i < count; i++)
		v[i] -= lo;
	unsigned w = width32(hi - lo);
	memset(o, 0, 4);
	o[0] = (uint8_t)w;
	drift_store_le32(o + 4, lo);
	size_t h = 8;
	if (delta) {
		drift_store_le32(o + 8, in[0]);
		h = 12;
	}
	drift_fastlanes_pack32(v, count, w, o + h);
	return h + drift_fastlanes_packed_size(32, count, w);
}

static size_t encode_block64(const uint64_t *in, size_t count, bool delta,
			     uint8_t *o)
{
	uint64_t v[BLOCK];
	if (delta) {
		v[0] = 0;
		for (size_t i = 1; i < count; i++)
			v[i] = in[i] - in[i - 1];
	} else {
		memcpy(v, in, count * sizeof(*v));
	}
	size_t from = delta ? 1 : 0;
	uint64_t lo = count > from ? v[from] : 0, hi = lo;
	for (size_t i = from; i < count; i++) {
		lo = v[i] < lo ? v[i] : lo;
		hi = v[i] > hi ? v[i] : hi;
	}
	for (size_t i = from; i < count; i++)
		v[i] -= lo;
	unsigned w = width64(hi - lo);
	memset(o, 0, 8);
	o[0] = (uint8_t)w;
	drift_store_le64(o + 8, lo);
	size_t h = 16;
	if (delta) {
		drift_store_le64(o + 16, in[0]);
		h = 24;
	}
	drift_fastlanes_pack64(v, count, w, o + h);
	return h + drift_fastlanes_packed_size(64, count, w);
}

int drift_fastlanes_encode32(const uint32_t *in, size_t n, bool delta,
			     uint8_t *out, size_t cap, size_t *len)
{
	if (cap < drift_fastlanes_bound(n, 32, delta))
		return DRIFT_EINVAL;
	write_header(out, 32, delta, n);
	size_t at = HEADER;
	for (size_t i = 0; i < n; i += BLOCK) {
		size_t count = n - i < BLOCK ? n - i : BLOCK;
		at += encode_block32(in + i, count, delta, out + at);
	}
	*len = at;
	return 0;
}

int drift_fastlanes_encode64(const uint64_t *in, size_t n, bool delta,
			     uint8_t *out, size_t cap, size_t *len)
{
	if (cap < drift_fastlanes_bound(n, 64, delta))
		return DRIFT_EINVAL;
	write_header(out, 64, delta, n);
	size_t at = HEADER;
	for (size_t i = 0; i < n; i += BLOCK) {
		size_t count = n - i < BLOCK ? n - i : BLOCK;
		at += encode_block64(in + i, count, delta, out + at);
	}
	*len = at;
	return 0;
}

/* Walks every block header and size; 0 when the blocks fill len exactly. */
int drift_fastlanes_info_of(const uint8_t *in, size_t len,
			    drift_fastlanes_info *info)
{
	if (len < HEADER || memcmp(in, "DFLP", 4) != 0 || in[4] != VERSION ||
	    (in[5] != 32 && in[5] != 64) || (in[6] & ~FLAG_DELTA) != 0 ||
	    in[7] != 0)
		return DRIFT_ECORRUPT;
	unsigned tbits = in[5], t = tbits / 8;
	bool delta = in[6] & FLAG_DELTA;
	uint64_t n = drift_load_le64(in + 8);
	size_t bh = block_header(tbits, delta);
	/* Every block takes at least bh bytes: a count that cannot fit is
	 * refused before the walk. */
	if (n / BLOCK > (len - HEADER) / bh)
		return DRIFT_ECORRUPT;
	size_t at = HEADER, blocks = nblocks(n);
	for (size_t b = 0; b < blocks; b++) {
		size_t count =
			b + 1 < blocks || n % BLOCK == 0 ? BLOCK : n % BLOCK;
		if (len - at < bh)
			return DRIFT_ECORRUPT;
		const uint8_t *h = in + at;
		if (h[0] > tbits)
			return DRIFT_ECORRUPT;
		for (unsigned i = 1; i < t; i++)
			if (h[i] != 0)
				return DRIFT_ECORRUPT;
		size_t size = drift_fastlanes_packed_size(tbits, count, h[0]);
		if (len - at - bh < size)
			return DRIFT_ECORRUPT;
		at += bh + size;
	}
	if (at != len)
		return DRIFT_ECORRUPT;
	*info = (drift_fastlanes_info){n, tbits, delta};
	return 0;
}

int drift_fastlanes_decode32(const uint8_t *in, size_t len, uint32_t *out,
			     size_t cap)
{
	drift_fastlanes_info info;
	int rv = drift_fastlanes_info_of(in, len, &info);
	if (rv != 0)
		return rv;
	if (info.tbits != 32)
		return DRIFT_ECORRUPT;
	if (info.n > cap)
		return DRIFT_EINVAL;
	size_t n = (size_t)info.n, at = HEADER;
	for (size_t i = 0; i < n; i += BLOCK) {
		size_t count = n - i < BLOCK ? n - i : BLOCK;
		const uint8_t *h = in + at;
		unsigned w = h[0];
		uint32_t base = drift_load_le32(h + 4);
		uint32_t *o = out + i;
		if (info.delta) {
			drift_fastlanes_unpack32(h + 12, count, w, o);
			uint32_t prev = drift_load_le32(h + 8);
			o[0] = prev;
			for (size_t j = 1; j < count; j++)
				o[j] = prev += o[j] + base;
			at += 12;
		} else {
			drift_fastlanes_unpack32(h + 8, count, w, o);
			for (size_t j = 0; j < count; j++)
				o[j] += base;
			at += 8;
		}
		at += drift_fastlanes_packed_size(32, count, w);
	}
	return 0;
}

int drift_fastlanes_decode64(const uint8_t *in, size_t len, uint64_t *out,
			     size_t cap)
{
	drift_fastlanes_info info;
	int rv = drift_fastlanes_info_of(in, len, &info);
	if (rv != 0)
		return rv;
	if (info.tbits != 64)
		return DRIFT_ECORRUPT;
	if (info.n > cap)
		return DRIFT_EINVAL;
	size_t n = (size_t)info.n, at = HEADER;
	for (size_t i = 0; i < n; i += BLOCK) {
		size_t count = n - i < BLOCK ? n - i : BLOCK;
		const uint8_t *h = in + at;
		unsigned w = h[0];
		uint64_t base = drift_load_le64(h + 8);
		uint64_t *o = out + i;
		if (info.delta) {
			drift_fastlanes_unpack64(h + 24, count, w, o);
			uint64_t prev = drift_load_le64(h + 16);
			o[0] = prev;
			for (size_t j = 1; j < count; j++)
				o[j] = prev += o[j] + base;
			at += 24;
		} else {
			drift_fastlanes_unpack64(h + 16, count, w, o);
			for (size_t j = 0; j < count; j++)
				o[j] += base;
			at += 16;
		}
		at += drift_fastlanes_packed_size(64, count, w);
	}
	return 0;
}
