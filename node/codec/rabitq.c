#include "node/codec/rabitq.h"

#include <math.h>
#include <string.h>

#include "common/abuf.h"
#include "common/alloc.h"
#include "common/err.h"
#include "common/rand.h"
#include "common/simd.h"

/* Rounds of sign flips and Hadamard transforms in the rotation: one round
 * leaves a sparse vector sparse; three spread any input over every
 * coordinate. */
#define ROUNDS 3

/* The query-quantization part of the bound, per unit of f * delta: four
 * standard deviations of the rounding sum over about D / 2 set bits,
 * 2 * 4 * sqrt(D / 24) / sqrt(D) (see the header). */
#define QERR 1.633f

/* Table entries are biased by this so that they are unsigned: 4 steps of
 * at most 7 each. */
#define LUT_BIAS 28

struct drift_rabitq {
	uint32_t dim, pdim;
	float *signs; /* ROUNDS * pdim of +-1 */
};

uint32_t drift_rabitq_padded(uint32_t dim)
{
	uint32_t p = 64;
	while (p < dim)
		p *= 2;
	return p;
}

size_t drift_rabitq_code_bytes(uint32_t pdim, size_t n)
{
	size_t blocks = (n + DRIFT_RABITQ_BLOCK - 1) / DRIFT_RABITQ_BLOCK;
	return blocks * (size_t)pdim * (DRIFT_RABITQ_BLOCK / 8);
}

size_t drift_rabitq_fac_count(size_t n)
{
	size_t blocks = (n + DRIFT_RABITQ_BLOCK - 1) / DRIFT_RABITQ_BLOCK;
	return blocks * 2 * DRIFT_RABITQ_BLOCK;
}

/* Where the factors of row live: |r|^2 at the index, f 32 further. */
static inline size_t fac_at(size_t row)
{
	return row / DRIFT_RABITQ_BLOCK * 2 * DRIFT_RABITQ_BLOCK +
	       row % DRIFT_RABITQ_BLOCK;
}

int drift_rabitq_new(uint32_t dim, uint64_t seed, drift_rabitq **out)
{
	drift_rabitq *rq = drift_calloc(1, sizeof(*rq));
	if (rq == NULL)
		return DRIFT_ENOMEM;
	rq->dim = dim;
	rq->pdim = drift_rabitq_padded(dim);
	rq->signs = drift_mallocarray((size_t)ROUNDS * rq->pdim, sizeof(float));
	if (rq->signs == NULL) {
		drift_free(rq);
		return DRIFT_ENOMEM;
	}
	drift_rand rng;
	drift_rand_seed(&rng, seed ^ 0x5241426974510000ull);
	for (size_t i = 0; i < (size_t)ROUNDS * rq->pdim; i++)
		rq->signs[i] = (drift_rand_next(&rng) >> 63) ? 1.0f : -1.0f;
	*out = rq;
	return 0;
}

void drift_rabitq_free(drift_rabitq *rq)
{
	if (rq == NULL)
		return;
	drift_free(rq->signs);
	drift_free(rq);
}

uint32_t drift_rabitq_dim(const drift_rabitq *rq)
{
	return rq->dim;
}

uint32_t drift_rabitq_pdim(const drift_rabitq *rq)
{
	return rq->pdim;
}

/* In-place unnormalized Walsh-Hadamard transform of n (a power of two)
 * floats. */
static void fwht(float *x, uint32_t n)
{
	for (uint32_t h = 1; h < n; h *= 2)
		for (uint32_t i = 0; i < n; i += 2 * h)
			for (uint32_t j = i; j < i + h; j++) {
				float a = x[j], b = x[j + h];
				x[j] = a + b;
				x[j + h] = a - b;
			}
}

void drift_rabitq_rotate(const drift_rabitq *rq, const float *x, float *out)
{
	uint32_t d = rq->pdim;
	memcpy(out, x, rq->dim * sizeof(float));
	memset(out + rq->dim, 0, (d - rq->dim) * sizeof(float));
	for (int r = 0; r < ROUNDS; r++) {
		const float *s = rq->signs + (size_t)r * d;
		for (uint32_t i = 0; i < d; i++)
			out[i] *= s[i];
		fwht(out, d);
	}
	/* Each unnormalized transform scales norms by sqrt(d). */
	float norm = 1.0f / ((float)d * sqrtf((float)d));
	for (uint32_t i = 0; i < d; i++)
		out[i] *= norm;
}

/* Where the 4 bits of group g of row `row` live: byte offset and shift. */
static inline size_t nibble_at(uint32_t pdim, size_t row, uint32_t g,
			       unsigned *shift)
{
	size_t blk = row / DRIFT_RABITQ_BLOCK;
	unsigned j = (unsigned)(row % DRIFT_RABITQ_BLOCK);
	*shift = j >= 16 ? 4 : 0;
	return blk * (size_t)pdim * (DRIFT_RABITQ_BLOCK / 8) + (size_t)g * 16 +
	       (j & 15);
}

void drift_rabitq_encode(uint32_t pdim, const float *r, uint8_t *codes,
			 size_t row, float *fac)
{
	double n2 = 0, l1 = 0;
	for (uint32_t i = 0; i < pdim; i++) {
		n2 += (double)r[i] * r[i];
		l1 += fabs((double)r[i]);
	}
	for (uint32_t g = 0; g < pdim / 4; g++) {
		unsigned nib = 0, shift;
		for (unsigned t = 0; t < 4; t++)
			nib |= (unsigned)(r[4 * g + t] > 0) << t;
		size_t at = nibble_at(pdim, row, g, &shift);
		codes[at] = (uint8_t)((codes[at] & ~(0xfu << shift)) |
				      (nib << shift));
	}
	/* f = |r| / <ob, o> = sqrt(D) |r|^2 / sum |r_i|; 0 for r = 0, whose
	 * estimate |t|^2 is then exact. */
	size_t at = fac_at(row);
	fac[at] = (float)n2;
	fac[at + DRIFT_RABITQ_BLOCK] =
		l1 > 0 ? (float)(sqrt((double)pdim) * n2 / l1) : 0;
}

void drift_rabitq_copy(uint32_t pdim, uint8_t *dst, float *dfac, size_t drow,
		       const uint8_t *src, const float *sfac, size_t srow)
{
	size_t fs = fac_at(srow), fd = fac_at(drow);
	dfac[fd] = sfac[fs];
	dfac[fd + DRIFT_RABITQ_BLOCK] = sfac[fs + DRIFT_RABITQ_BLOCK];
	for (uint32_t g = 0; g < pdim / 4; g++) {
		unsigned ss, ds;
		size_t sa = nibble_at(pdim, srow, g, &ss);
		size_t da = nibble_at(pdim, drow, g, &ds);
		unsigned nib = (src[sa] >> ss) & 0xfu;
		dst[da] = (uint8_t)((dst[da] & ~(0xfu << ds)) | (nib << ds));
	}
}

int drift_rabitq_query_init(drift_rabitq_query *pq, uint32_t pdim)
{
	memset(pq, 0, sizeof(*pq));
	pq->pdim = pdim;
	pq->lut = drift_aligned_alloc(DRIFT_ALIGN_CACHE, (size_t)pdim / 4 * 16);
	pq->k = drift_rabitq_kernels_active();
	if (pq->lut == NULL) {
		drift_rabitq_query_free(pq);
		return DRIFT_ENOMEM;
	}
	return 0;
}

void drift_rabitq_query_free(drift_rabitq_query *pq)
{
	drift_free(pq->lut);
	pq->lut = NULL;
}

void drift_rabitq_prepare(drift_rabitq_query *pq, const float *t, bool l2,
			  float bias)
{
	uint32_t d = pq->pdim;
	float m = 0, sum = 0, n2 = 0;
	for (uint32_t i = 0; i < d; i++) {
		float a = fabsf(t[i]);
		m = a > m ? a : m;
		sum += t[i];
		n2 += t[i] * t[i];
	}
	float delta = m / 7.0f, inv = m > 0 ? 7.0f / m : 0;
	for (uint32_t g = 0; g < d / 4; g++) {
		int v[4];
		for (unsigned j = 0; j < 4; j++)
			v[j] = (int)lrintf(t[4 * g + j] * inv);
		uint8_t *lut = pq->lut + (size_t)g * 16;
		lut[0] = LUT_BIAS;
		for (unsigned p = 1; p < 16; p++) {
			unsigned low = (unsigned)__builtin_ctz(p);
			lut[p] = (uint8_t)(lut[p & (p - 1)] + v[low]);
		}
	}
	pq->l2 = l2;
	pq->bias = bias;
	pq->delta = delta;
	pq->sum = sum;
	pq->tn2 = n2;
	pq->tn = sqrtf(n2);
}

void drift_rabitq_bounds(const drift_rabitq_query *pq, const uint8_t *codes,
			 const float *fac, size_t n, float eps, float *est,
			 float *lb)
{
	uint32_t d = pq->pdim;
	float isd = 1.0f / sqrtf((float)d);
	float kb = pq->l2 ? 2.0f : 1.0f;
	/* <ob, t> = (2 delta (S - bias) - sum t) / sqrt(D) */
	drift_rabitq_consts c = {
		.a = 2.0f * pq->delta * isd,
		.b = -(2.0f * pq->delta * (float)(LUT_BIAS * (d / 4)) +
		       pq->sum) *
		     isd,
		.w = pq->l2 ? 1.0f : 0.0f,
		.base = pq->l2 ? pq->tn2 : pq->bias,
		.m = kb,
		.eb = kb * eps * pq->tn / sqrtf((float)(d - 1)),
		.qb = kb * QERR * pq->delta,
	};
	size_t nblocks = (n + DRIFT_RABITQ_BLOCK - 1) / DRIFT_RABITQ_BLOCK;
	pq->k->bounds(codes, pq->lut, fac, nblocks, d, &c, est, lb);
}

static void scan_scalar(const uint8_t *codes, const uint8_t *lut,
			size_t nblocks, uint32_t pdim, uint16_t *out)
{
	uint32_t groups = pdim / 4;
	for (size_t b = 0; b < nblocks; b++) {
		const uint8_t *c = codes + b * (size_t)groups * 16;
		uint16_t *o = out + b * DRIFT_RABITQ_BLOCK;
		for (unsigned j = 0; j < DRIFT_RABITQ_BLOCK; j++)
			o[j] = 0;
		for (uint32_t g = 0; g < groups; g++) {
			const uint8_t *cg = c + (size_t)g * 16;
			const uint8_t *lg = lut + (size_t)g * 16;
			for (unsigned j = 0; j < 16; j++) {
				o[j] = (uint16_t)(o[j] + lg[cg[j] & 0xf]);
				o[j + 16] =
					(uint16_t)(o[j + 16] + lg[cg[j] >> 4]);
			}
		}
	}
}

static void bounds_scalar(const uint8_t *codes, const uint8_t *lut,
			  const float *fac, size_t nblocks, uint32_t pdim,
			  const drift_rabitq_consts *c, float *est, float *lb)
{
	uint16_t sums[DRIFT_RABITQ_BLOCK];
	size_t block_bytes = (size_t)pdim * (DRIFT_RABITQ_BLOCK / 8);
	for (size_t b = 0; b < nblocks; b++) {
		scan_scalar(codes + b * block_bytes, lut, 1, pdim, sums);
		const float *n2 = fac + b * 2 * DRIFT_RABITQ_BLOCK;
		const float *f = n2 + DRIFT_RABITQ_BLOCK;
		for (unsigned j = 0; j < DRIFT_RABITQ_BLOCK; j++) {
			float ip = f[j] * (c->a * (float)sums[j] + c->b);
			float e = c->w * n2[j] + c->base - c->m * ip;
			float g2 = f[j] * f[j] - n2[j];
			float g = g2 > 0 ? sqrtf(g2) : 0.0f;
			size_t r = b * DRIFT_RABITQ_BLOCK + j;
			if (est != NULL)
				est[r] = e;
			lb[r] = e - c->eb * g - c->qb * f[j];
		}
	}
}

const drift_rabitq_kernels drift_rabitq_scalar = {
	.level = DRIFT_SIMD_SCALAR,
	.scan = scan_scalar,
	.bounds = bounds_scalar,
};

const drift_rabitq_kernels *drift_rabitq_for(int level)
{
	if (level < DRIFT_SIMD_SCALAR || level > drift_simd_detected())
		return NULL;
	switch (level) {
#if defined(__x86_64__)
	case DRIFT_SIMD_AVX512:
		return &drift_rabitq_avx512;
	case DRIFT_SIMD_AVX2:
		return &drift_rabitq_avx2;
#endif
	default:
		return &drift_rabitq_scalar;
	}
}

const drift_rabitq_kernels *drift_rabitq_kernels_active(void)
{
	return drift_rabitq_for(drift_simd_level());
}
