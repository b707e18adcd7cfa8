/*
 * ALP for float32: sampling, the three vector schemes, the column format.
 *
 * Column layout (little endian):
 *
 *    0  4  magic "DALP"
 *    4  1  version (1)
 *    5  3  reserved (0)
 *    8  8  n, the number of values (at most DRIFT_ALP_MAX_VALUES)
 *   16 4B  B = ceil(n / 1024) block end offsets (u32), relative to the
 *          data area at 16 + 4B; block i spans [end(i-1), end(i)), the
 *          first starts at 0 and the last ends at the end of the column
 *    .     the blocks; block i holds c = min(1024, n - 1024 i) values
 *
 * Block, scheme 0 (ALP):
 *    0  1  0
 *    1  1  e, the exponent (0..10)
 *    2  1  f, the factor (0..e)
 *    3  1  w, the packed width (0..32)
 *    4  2  x, the number of exceptions (0..c)
 *    6  2  reserved (0)
 *    8  4  base (int32): the frame of reference
 *   12     the c integers d - base, FastLanes-packed at w bits
 *          (drift_fastlanes_packed_size(32, c, w) bytes)
 *    .  2x exception positions (u16, < c)
 *    .  4x exception values (the float's bits)
 *   A value is (float)d * 10^f * 10^-e (float arithmetic, two rounded
 *   multiplications by the float constants below, in that order), then
 *   each exception overwrites its position.
 *
 * Block, scheme 1 (ALP-RD):
 *    0  1  1
 *    1  1  r, the right width (16..31); the left part has 32 - r bits
 *    2  1  b, the dictionary index width (0..3); the dictionary has 2^b
 *          entries
 *    3  1  reserved (0)
 *    4  2  x, the number of exceptions (0..c)
 *    6  2  reserved (0)
 *    8 16  dictionary: 8 u16 slots, the first 2^b used (each < 2^(32-r)),
 *          the others 0
 *   24     the c dictionary indexes, packed at b bits
 *    .     the c right parts, packed at r bits
 *    .  2x exception positions (u16, < c)
 *    .  2x exception left parts (u16, < 2^(32-r))
 *   A value's bits are left << r | right, left = dict[index] or the
 *   exception's left part.
 *
 * Block, scheme 2 (stored):
 *    0  1  2
 *    1  3  reserved (0)
 *    4 4c  the floats' bits
 *
 * The decoder checks the header, the block table entries it uses and every
 * field, size and exception of the blocks it decodes before writing a
 * value; anything off is DRIFT_ECORRUPT. Packed bits cannot be checked
 * (every pattern decodes to some float); the segment's checksum guards
 * them.
 */
#include "node/codec/alp.h"

#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "common/endian.h"
#include "common/err.h"
#include "node/codec/fastlanes.h"

#define VEC DRIFT_ALP_VECTOR
#define HEADER 16
#define VERSION 1

enum { SCHEME_ALP = 0, SCHEME_RD = 1, SCHEME_STORED = 2 };

#define ALP_HEADER 12
#define RD_HEADER 24
#define STORED_HEADER 4

/* The paper's decimal encoding, float variant: exponents up to 10, the
 * integers int32.
 *
 * The arithmetic is done in double and rounded to float once: for a
 * decimal d / 10^e of at most 7 significant digits, (float)(d * 10^-e)
 * with the double constant is the float nearest that decimal, so the
 * value comes back exact. Float products (d * (float)10^-e) miss it for
 * 20-50% of such values (measured on k / 100 and k / 1000), each an
 * exception. */
#define MAX_E 10
/* The paper's fast rounding: adding and subtracting 2^52 + 2^51 rounds a
 * double of magnitude below 2^51 to an integer (round half to even). */
#define MAGIC 6755399441055744.0
/* Integers must fit int32. */
#define INT_LIMIT 2147483647.0

/* The paper's two-level sampling: a row group of 100 vectors; 8 of its vectors
 * are sampled, 32 values each, to find the best (e, f) of each; the 5 most
 * often best are the candidates; each vector then samples 32 of its values
 * to pick among them, stopping after 2 candidates in a row do no better. */
#define ROWGROUP 100
#define SAMPLE_VECTORS 8
#define SAMPLES 32
#define MAX_K 5
#define EARLY_EXIT 2

/* Estimated sizes in bits, as the paper's sampling counts them: an ALP
 * exception costs its 32 bits and a 16-bit position; an ALP-RD exception a
 * 16-bit left part and a 16-bit position (the paper's ALP-RD). */
#define ALP_EXC_BITS (32 + 16)
#define RD_EXC_BITS (16 + 16)
/* The paper's ALP-RD: left parts of at most 16 bits, a dictionary of at
 * most 8 entries. */
#define RD_MAX_LEFT 16
#define RD_MAX_DICT_BITS 3
#define RD_DICT_SLOTS 8

static const double F10[MAX_E + 1] = {
	1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
};
static const double IF10[MAX_E + 1] = {
	1e0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10,
};

static inline uint32_t fbits(float x)
{
	uint32_t u;
	memcpy(&u, &x, sizeof(u));
	return u;
}

/* ---- The ALP transform -------------------------------------------------- */

/* d = round(x * 10^e * 10^-f); false when it cannot be an int32. */
static inline bool alp_enc(float x, unsigned e, unsigned f, int32_t *d)
{
	double t = (double)x * F10[e];
	t = t * IF10[f];
	if (!(fabs(t) <= INT_LIMIT))
		return false; /* NaN, Inf, or too large */
	*d = (int32_t)((t + MAGIC) - MAGIC);
	return true;
}

/* Products only, never an addition a compiler could fuse with one (ISO C
 * mode contracts nothing anyway): encoder and decoder round alike. */
static inline float alp_dec(int32_t d, unsigned e, unsigned f)
{
	double v = (double)d * F10[f];
	return (float)(v * IF10[e]);
}

/* d, or false when x is an exception under (e, f). */
static inline bool alp_try(float x, unsigned e, unsigned f, int32_t *d)
{
	return alp_enc(x, e, f, d) && fbits(alp_dec(*d, e, f)) == fbits(x);
}

static unsigned width32(uint32_t x)
{
	return x ? 32u - (unsigned)__builtin_clz(x) : 0;
}

/* Estimated bits of m sampled values under (e, f). */
static uint64_t alp_estimate(const float *s, size_t m, unsigned e, unsigned f)
{
	int32_t lo = 0, hi = 0;
	size_t ok = 0;
	for (size_t i = 0; i < m; i++) {
		int32_t d;
		if (!alp_try(s[i], e, f, &d))
			continue;
		if (ok++ == 0)
			lo = hi = d;
		lo = d < lo ? d : lo;
		hi = d > hi ? d : hi;
	}
	unsigned w = width32((uint32_t)hi - (uint32_t)lo);
	return (uint64_t)w * m + (uint64_t)(m - ok) * ALP_EXC_BITS;
}

/* m values equidistant over in[0..c). */
static size_t sample(const float *in, size_t c, size_t m, float *s)
{
	size_t step = c > m ? c / m : 1;
	size_t k = 0;
	for (size_t i = 0; i < c && k < m; i += step)
		s[k++] = in[i];
	return k;
}

/* ---- ALP-RD parameters -------------------------------------------------- */

typedef struct rd_params {
	unsigned r, b;
	uint16_t dict[RD_DICT_SLOTS];
} rd_params;

static int cmp_u16(const void *a, const void *b)
{
	uint16_t x = *(const uint16_t *)a, y = *(const uint16_t *)b;
	return (x > y) - (x < y);
}

/* Best cut and dictionary for the m sampled values (as the paper's ALP-RD:
 * every left width up to 16; we also try dictionaries of 1, 2, 4 and 8
 * entries). Returns the estimated bits. */
static uint64_t rd_choose(const float *s, size_t m, rd_params *best)
{
	uint64_t best_bits = UINT64_MAX;
	uint16_t left[SAMPLE_VECTORS * SAMPLES];
	for (unsigned lw = 1; lw <= RD_MAX_LEFT; lw++) {
		unsigned r = 32 - lw;
		for (size_t i = 0; i < m; i++)
			left[i] = (uint16_t)(fbits(s[i]) >> r);
		qsort(left, m, sizeof(left[0]), cmp_u16);
		/* The 8 most frequent left parts, most frequent first. */
		uint16_t top[RD_DICT_SLOTS] = {0};
		size_t freq[RD_DICT_SLOTS] = {0};
		for (size_t i = 0; i < m;) {
			size_t j = i;
			while (j < m && left[j] == left[i])
				j++;
			size_t f = j - i;
			for (int k = 0; k < RD_DICT_SLOTS; k++) {
				if (f > freq[k]) {
					for (int q = RD_DICT_SLOTS - 1; q > k;
					     q--) {
						freq[q] = freq[q - 1];
						top[q] = top[q - 1];
					}
					freq[k] = f;
					top[k] = left[i];
					break;
				}
			}
			i = j;
		}
		size_t covered = 0;
		for (unsigned b = 0; b <= RD_MAX_DICT_BITS; b++) {
			for (unsigned k = b ? 1u << (b - 1) : 0; k < 1u << b;
			     k++)
				covered += freq[k];
			uint64_t bits = (uint64_t)(r + b) * m +
					(uint64_t)(m - covered) * RD_EXC_BITS;
			if (bits < best_bits) {
				best_bits = bits;
				best->r = r;
				best->b = b;
				memset(best->dict, 0, sizeof(best->dict));
				for (unsigned k = 0; k < 1u << b; k++)
					best->dict[k] = top[k];
			}
		}
	}
	return best_bits;
}

/* ---- Row-group sampling (the paper's first level) ----------------------- */

typedef struct plan {
	bool rd;
	unsigned k; /* candidates */
	uint8_t e[MAX_K], f[MAX_K];
	rd_params rdp;
} plan;

static void plan_rowgroup(const float *in, size_t n, plan *p)
{
	size_t vectors = (n + VEC - 1) / VEC;
	size_t step = vectors > SAMPLE_VECTORS ? vectors / SAMPLE_VECTORS : 1;
	unsigned count[MAX_E + 1][MAX_E + 1] = {{0}};
	float all[SAMPLE_VECTORS * SAMPLES];
	size_t m_all = 0;
	uint64_t alp_bits = 0;
	for (size_t v = 0, taken = 0; v < vectors && taken < SAMPLE_VECTORS;
	     v += step, taken++) {
		size_t c = n - v * VEC < VEC ? n - v * VEC : VEC;
		float *s = all + m_all;
		size_t m = sample(in + v * VEC, c, SAMPLES, s);
		m_all += m;
		uint64_t best = UINT64_MAX;
		unsigned be = 0, bf = 0;
		for (unsigned e = 0; e <= MAX_E; e++)
			for (unsigned f = 0; f <= e; f++) {
				uint64_t bits = alp_estimate(s, m, e, f);
				if (bits < best)
					best = bits, be = e, bf = f;
			}
		count[be][bf]++;
		alp_bits += best;
	}
	/* The k combinations most often best, most often first (ties: the
	 * smaller exponent, then factor). */
	p->k = 0;
	for (unsigned k = 0; k < MAX_K; k++) {
		unsigned top = 0, te = 0, tf = 0;
		for (unsigned e = 0; e <= MAX_E; e++)
			for (unsigned f = 0; f <= e; f++)
				if (count[e][f] > top)
					top = count[e][f], te = e, tf = f;
		if (top == 0)
			break;
		p->e[p->k] = (uint8_t)te;
		p->f[p->k] = (uint8_t)tf;
		p->k++;
		count[te][tf] = 0;
	}
	/* ALP-RD when its estimate on the same sample is smaller (the paper
	 * switches on a threshold of ALP's estimate; comparing the two
	 * estimates is our rule). */
	uint64_t rd_bits = rd_choose(all, m_all, &p->rdp);
	p->rd = rd_bits < alp_bits;
}

/* Second level: the candidate for one vector. */
static unsigned pick(const plan *p, const float *in, size_t c)
{
	if (p->k <= 1)
		return 0;
	float s[SAMPLES];
	size_t m = sample(in, c, SAMPLES, s);
	uint64_t best = UINT64_MAX;
	unsigned at = 0, worse = 0;
	for (unsigned k = 0; k < p->k; k++) {
		uint64_t bits = alp_estimate(s, m, p->e[k], p->f[k]);
		if (bits < best) {
			best = bits;
			at = k;
			worse = 0;
		} else if (++worse == EARLY_EXIT) {
			break;
		}
	}
	return at;
}

/* ---- Vector encoders: each returns the block's size ---------------------- */

static size_t encode_stored(const float *in, size_t c, uint8_t *o)
{
	memset(o, 0, STORED_HEADER);
	o[0] = SCHEME_STORED;
	for (size_t i = 0; i < c; i++)
		drift_store_le32(o + STORED_HEADER + 4 * i, fbits(in[i]));
	return STORED_HEADER + 4 * c;
}

/* One vector under (e, f), before it is written. */
typedef struct alp_vec {
	int32_t d[VEC];
	uint16_t pos[VEC];
	size_t x, size;
	int32_t lo;
	unsigned e, f, w;
} alp_vec;

/* Fills v and returns its block size (SIZE_MAX when exceptions alone
 * would outgrow the stored scheme). */
static size_t alp_prepare(const float *in, size_t c, unsigned e, unsigned f,
			  alp_vec *v)
{
	size_t x = 0;
	for (size_t i = 0; i < c; i++)
		if (!alp_try(in[i], e, f, &v->d[i]))
			v->pos[x++] = (uint16_t)i;
	v->x = x;
	v->e = e;
	v->f = f;
	if (x * ALP_EXC_BITS >= c * 32)
		return v->size = SIZE_MAX;
	/* Exceptions take the first encoded value, so that they do not
	 * widen the frame (as in the paper). */
	int32_t fill = 0;
	for (size_t i = 0, j = 0; i < c; i++) {
		if (j < x && v->pos[j] == i) {
			j++;
			continue;
		}
		fill = v->d[i];
		break;
	}
	for (size_t j = 0; j < x; j++)
		v->d[v->pos[j]] = fill;
	int32_t lo = v->d[0], hi = v->d[0];
	for (size_t i = 1; i < c; i++) {
		lo = v->d[i] < lo ? v->d[i] : lo;
		hi = v->d[i] > hi ? v->d[i] : hi;
	}
	v->lo = lo;
	v->w = width32((uint32_t)hi - (uint32_t)lo);
	v->size = ALP_HEADER + drift_fastlanes_packed_size(32, c, v->w) + 6 * x;
	return v->size;
}

static size_t write_alp(const float *in, size_t c, const alp_vec *v, uint8_t *o)
{
	uint32_t u[VEC];
	for (size_t i = 0; i < c; i++)
		u[i] = (uint32_t)v->d[i] - (uint32_t)v->lo;
	size_t x = v->x;
	o[0] = SCHEME_ALP;
	o[1] = (uint8_t)v->e;
	o[2] = (uint8_t)v->f;
	o[3] = (uint8_t)v->w;
	drift_store_le16(o + 4, (uint16_t)x);
	drift_store_le16(o + 6, 0);
	drift_store_le32(o + 8, (uint32_t)v->lo);
	drift_fastlanes_pack32(u, c, v->w, o + ALP_HEADER);
	uint8_t *q = o + ALP_HEADER + drift_fastlanes_packed_size(32, c, v->w);
	for (size_t j = 0; j < x; j++) {
		drift_store_le16(q + 2 * j, v->pos[j]);
		drift_store_le32(q + 2 * x + 4 * j, fbits(in[v->pos[j]]));
	}
	return v->size;
}

/* The sampled candidate first; when it leaves more than 1/32 of the values
 * as exceptions (the sample missed them), every candidate is tried on the
 * whole vector and the smallest kept: a guard of ours, not in the paper,
 * that costs encoding time only on such vectors. */
static size_t encode_alp(const plan *p, const float *in, size_t c, uint8_t *o)
{
	alp_vec v[2];
	unsigned k = pick(p, in, c), best = 0;
	alp_prepare(in, c, p->e[k], p->f[k], &v[0]);
	if (v[0].x > c / 32)
		for (unsigned j = 0; j < p->k; j++) {
			if (j == k)
				continue;
			if (alp_prepare(in, c, p->e[j], p->f[j], &v[1 - best]) <
			    v[best].size)
				best = 1 - best;
		}
	if (v[best].size >= STORED_HEADER + 4 * c)
		return encode_stored(in, c, o);
	return write_alp(in, c, &v[best], o);
}

static size_t encode_rd(const float *in, size_t c, const rd_params *p,
			uint8_t *o)
{
	uint32_t idx[VEC], right[VEC];
	uint16_t pos[VEC], exc[VEC];
	size_t x = 0;
	unsigned r = p->r, entries = 1u << p->b;
	uint32_t rmask = (UINT32_C(1) << r) - 1;
	for (size_t i = 0; i < c; i++) {
		uint32_t v = fbits(in[i]);
		uint16_t left = (uint16_t)(v >> r);
		right[i] = v & rmask;
		unsigned k = 0;
		while (k < entries && p->dict[k] != left)
			k++;
		if (k == entries) {
			pos[x] = (uint16_t)i;
			exc[x++] = left;
			k = 0;
		}
		idx[i] = k;
	}
	size_t pi = drift_fastlanes_packed_size(32, c, p->b);
	size_t pr = drift_fastlanes_packed_size(32, c, r);
	size_t size = RD_HEADER + pi + pr + 4 * x;
	if (size >= STORED_HEADER + 4 * c)
		return encode_stored(in, c, o);
	o[0] = SCHEME_RD;
	o[1] = (uint8_t)r;
	o[2] = (uint8_t)p->b;
	o[3] = 0;
	drift_store_le16(o + 4, (uint16_t)x);
	drift_store_le16(o + 6, 0);
	for (int k = 0; k < RD_DICT_SLOTS; k++)
		drift_store_le16(o + 8 + 2 * k, p->dict[k]);
	drift_fastlanes_pack32(idx, c, p->b, o + RD_HEADER);
	drift_fastlanes_pack32(right, c, r, o + RD_HEADER + pi);
	uint8_t *q = o + RD_HEADER + pi + pr;
	for (size_t j = 0; j < x; j++) {
		drift_store_le16(q + 2 * j, pos[j]);
		drift_store_le16(q + 2 * x + 2 * j, exc[j]);
	}
	return size;
}

/* ---- Column encoder ------------------------------------------------------ */

static size_t nblocks(uint64_t n)
{
	return (size_t)(n / VEC + (n % VEC != 0));
}

size_t drift_alp_bound(size_t n)
{
	/* Every block is at most the stored scheme; plus the table. */
	return HEADER + 4 * nblocks(n) + STORED_HEADER * nblocks(n) + 4 * n;
}

int drift_alp_encode(const float *in, size_t n, uint8_t *out, size_t cap,
		     size_t *len)
{
	if (n > DRIFT_ALP_MAX_VALUES || cap < drift_alp_bound(n))
		return DRIFT_EINVAL;
	size_t blocks = nblocks(n);
	memcpy(out, "DALP", 4);
	out[4] = VERSION;
	out[5] = out[6] = out[7] = 0;
	drift_store_le64(out + 8, n);
	uint8_t *table = out + HEADER, *data = table + 4 * blocks;
	size_t at = 0, b = 0;
	for (size_t g = 0; g < n; g += (size_t)ROWGROUP * VEC) {
		size_t gn = n - g < (size_t)ROWGROUP * VEC
				    ? n - g
				    : (size_t)ROWGROUP * VEC;
		plan p;
		plan_rowgroup(in + g, gn, &p);
		for (size_t v = 0; v < gn; v += VEC, b++) {
			const float *x = in + g + v;
			size_t c = gn - v < VEC ? gn - v : VEC;
			if (p.rd) {
				at += encode_rd(x, c, &p.rdp, data + at);
			} else {
				at += encode_alp(&p, x, c, data + at);
			}
			drift_store_le32(table + 4 * b, (uint32_t)at);
		}
	}
	*len = (size_t)(data - out) + at;
	return 0;
}

/* ---- Decoder ------------------------------------------------------------- */

typedef struct column {
	uint64_t n;
	size_t blocks;
	const uint8_t *table, *data;
	size_t data_len;
} column;

static int open_column(const uint8_t *in, size_t len, column *col)
{
	if (len < HEADER || memcmp(in, "DALP", 4) != 0 || in[4] != VERSION ||
	    in[5] != 0 || in[6] != 0 || in[7] != 0)
		return DRIFT_ECORRUPT;
	uint64_t n = drift_load_le64(in + 8);
	if (n > DRIFT_ALP_MAX_VALUES)
		return DRIFT_ECORRUPT;
	size_t blocks = nblocks(n);
	if (blocks > (len - HEADER) / 4)
		return DRIFT_ECORRUPT;
	col->n = n;
	col->blocks = blocks;
	col->table = in + HEADER;
	col->data = col->table + 4 * blocks;
	col->data_len = len - HEADER - 4 * blocks;
	/* The last block ends where the column ends. */
	uint32_t last =
		blocks ? drift_load_le32(col->table + 4 * (blocks - 1)) : 0;
	if (last != col->data_len)
		return DRIFT_ECORRUPT;
	return 0;
}

typedef struct block {
	const uint8_t *p;
	size_t size, c;
	unsigned x;
} block;

/* Locates block b and checks everything in it that can be checked. */
static int check_block(const column *col, size_t b, block *blk)
{
	uint32_t start = b ? drift_load_le32(col->table + 4 * (b - 1)) : 0;
	uint32_t end = drift_load_le32(col->table + 4 * b);
	if (start > end || end > col->data_len || end - start < 4)
		return DRIFT_ECORRUPT;
	const uint8_t *p = col->data + start;
	size_t size = end - start;
	size_t c = b + 1 < col->blocks || col->n % VEC == 0
			   ? VEC
			   : (size_t)(col->n % VEC);
	unsigned x = 0;
	switch (p[0]) {
	case SCHEME_ALP: {
		if (size < ALP_HEADER)
			return DRIFT_ECORRUPT;
		unsigned e = p[1], f = p[2], w = p[3];
		x = drift_load_le16(p + 4);
		if (e > MAX_E || f > e || w > 32 || x > c ||
		    drift_load_le16(p + 6) != 0)
			return DRIFT_ECORRUPT;
		size_t packed = drift_fastlanes_packed_size(32, c, w);
		if (size != ALP_HEADER + packed + 6 * (size_t)x)
			return DRIFT_ECORRUPT;
		const uint8_t *q = p + ALP_HEADER + packed;
		for (unsigned j = 0; j < x; j++)
			if (drift_load_le16(q + 2 * j) >= c)
				return DRIFT_ECORRUPT;
		break;
	}
	case SCHEME_RD: {
		if (size < RD_HEADER)
			return DRIFT_ECORRUPT;
		unsigned r = p[1], bw = p[2];
		x = drift_load_le16(p + 4);
		if (r < 32 - RD_MAX_LEFT || r > 31 || bw > RD_MAX_DICT_BITS ||
		    p[3] != 0 || x > c || drift_load_le16(p + 6) != 0)
			return DRIFT_ECORRUPT;
		uint32_t lmax = UINT32_C(1) << (32 - r);
		for (unsigned k = 0; k < RD_DICT_SLOTS; k++) {
			uint16_t v = drift_load_le16(p + 8 + 2 * k);
			if (k < 1u << bw ? v >= lmax : v != 0)
				return DRIFT_ECORRUPT;
		}
		size_t pi = drift_fastlanes_packed_size(32, c, bw);
		size_t pr = drift_fastlanes_packed_size(32, c, r);
		if (size != RD_HEADER + pi + pr + 4 * (size_t)x)
			return DRIFT_ECORRUPT;
		const uint8_t *q = p + RD_HEADER + pi + pr;
		for (unsigned j = 0; j < x; j++)
			if (drift_load_le16(q + 2 * j) >= c ||
			    drift_load_le16(q + 2 * x + 2 * j) >= lmax)
				return DRIFT_ECORRUPT;
		break;
	}
	case SCHEME_STORED:
		if (p[1] != 0 || p[2] != 0 || p[3] != 0 ||
		    size != STORED_HEADER + 4 * c)
			return DRIFT_ECORRUPT;
		break;
	default:
		return DRIFT_ECORRUPT;
	}
	*blk = (block){p, size, c, x};
	return 0;
}

/* Decodes a checked block into out (blk->c floats). */
static void decode_block(const block *blk, float *out)
{
	const uint8_t *p = blk->p;
	size_t c = blk->c;
	unsigned x = blk->x;
	switch (p[0]) {
	case SCHEME_ALP: {
		unsigned e = p[1], f = p[2], w = p[3];
		uint32_t base = drift_load_le32(p + 8);
		uint32_t u[VEC];
		drift_fastlanes_unpack32(p + ALP_HEADER, c, w, u);
		double mf = F10[f], me = IF10[e];
		/* The same two products as alp_dec. */
		for (size_t i = 0; i < c; i++) {
			double v = (double)(int32_t)(u[i] + base) * mf;
			out[i] = (float)(v * me);
		}
		const uint8_t *q =
			p + ALP_HEADER + drift_fastlanes_packed_size(32, c, w);
		for (unsigned j = 0; j < x; j++) {
			uint32_t bits = drift_load_le32(q + 2 * x + 4 * j);
			memcpy(&out[drift_load_le16(q + 2 * j)], &bits, 4);
		}
		break;
	}
	case SCHEME_RD: {
		unsigned r = p[1], bw = p[2];
		uint32_t dict[RD_DICT_SLOTS];
		for (int k = 0; k < RD_DICT_SLOTS; k++)
			dict[k] = (uint32_t)drift_load_le16(p + 8 + 2 * k) << r;
		uint32_t idx[VEC], v[VEC];
		size_t pi = drift_fastlanes_packed_size(32, c, bw);
		size_t pr = drift_fastlanes_packed_size(32, c, r);
		drift_fastlanes_unpack32(p + RD_HEADER, c, bw, idx);
		drift_fastlanes_unpack32(p + RD_HEADER + pi, c, r, v);
		/* bw <= 3: every index is inside the 8 slots. */
		for (size_t i = 0; i < c; i++)
			v[i] |= dict[idx[i] & (RD_DICT_SLOTS - 1)];
		const uint8_t *q = p + RD_HEADER + pi + pr;
		uint32_t rmask = (UINT32_C(1) << r) - 1;
		for (unsigned j = 0; j < x; j++) {
			uint16_t at = drift_load_le16(q + 2 * j);
			uint32_t left = drift_load_le16(q + 2 * x + 2 * j);
			v[at] = (v[at] & rmask) | left << r;
		}
		memcpy(out, v, c * sizeof(*out));
		break;
	}
	default: /* SCHEME_STORED */
		for (size_t i = 0; i < c; i++) {
			uint32_t bits =
				drift_load_le32(p + STORED_HEADER + 4 * i);
			memcpy(&out[i], &bits, 4);
		}
		break;
	}
}

int drift_alp_count(const uint8_t *in, size_t len, uint64_t *n)
{
	column col;
	int rv = open_column(in, len, &col);
	if (rv != 0)
		return rv;
	*n = col.n;
	return 0;
}

int drift_alp_decode_range(const uint8_t *in, size_t len, uint64_t first,
			   size_t count, float *out)
{
	column col;
	int rv = open_column(in, len, &col);
	if (rv != 0)
		return rv;
	if (first > col.n || count > col.n - first)
		return DRIFT_EINVAL;
	if (count == 0)
		return 0;
	size_t b0 = (size_t)(first / VEC),
	       b1 = (size_t)((first + count - 1) / VEC);
	block blk;
	for (size_t b = b0; b <= b1; b++)
		if ((rv = check_block(&col, b, &blk)) != 0)
			return rv;
	for (size_t b = b0; b <= b1; b++) {
		(void)check_block(&col, b, &blk); /* checked above */
		uint64_t start = (uint64_t)b * VEC;
		uint64_t lo = first > start ? first : start;
		uint64_t hi = first + count < start + blk.c ? first + count
							    : start + blk.c;
		float *dst = out + (lo - first);
		if (lo == start && hi == start + blk.c) {
			decode_block(&blk, dst);
		} else {
			float tmp[VEC];
			decode_block(&blk, tmp);
			memcpy(dst, tmp + (lo - start),
			       (size_t)(hi - lo) * sizeof(float));
		}
	}
	return 0;
}

int drift_alp_decode(const uint8_t *in, size_t len, float *out, size_t cap)
{
	column col;
	int rv = open_column(in, len, &col);
	if (rv != 0)
		return rv;
	if (col.n > cap)
		return DRIFT_EINVAL;
	return drift_alp_decode_range(in, len, 0, (size_t)col.n, out);
}

int drift_alp_stats_of(const uint8_t *in, size_t len, drift_alp_stats *st)
{
	column col;
	int rv = open_column(in, len, &col);
	if (rv != 0)
		return rv;
	drift_alp_stats s = {0};
	for (size_t b = 0; b < col.blocks; b++) {
		block blk;
		if ((rv = check_block(&col, b, &blk)) != 0)
			return rv;
		s.alp += blk.p[0] == SCHEME_ALP;
		s.rd += blk.p[0] == SCHEME_RD;
		s.stored += blk.p[0] == SCHEME_STORED;
		s.exceptions += blk.x;
	}
	*st = s;
	return 0;
}
