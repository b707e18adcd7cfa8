/*
 * RaBitQ: one bit per dimension and two factors per vector, the first pass
 * of the L1 scan, with an error bound that says which candidates need a
 * finer look.
 *
 * Gao and Long, "RaBitQ: Quantizing High-Dimensional Vectors with a
 * Theoretical Error Bound for Approximate Nearest Neighbor Search", SIGMOD
 * 2024. A vector x of a bucket with centroid c is coded by the signs of its
 * rotated residual r = P x - P c (P a random orthogonal matrix): bit i is
 * r_i > 0. With o = r / |r| and the code's unit vector
 * ob = (2 bits - 1) / sqrt(D), the estimator of section 3.2 is
 * <o, q> ~ <ob, q> / <ob, o>, unbiased, and its error is below
 * eps0 * sqrt(1 - a^2) / a / sqrt(D - 1) (a = <ob, o>) with high
 * probability (Theorem 3.2; eps0 = 1.9 in the paper).
 *
 * Per vector we keep |r|^2 and f = |r| / a; the bound's
 * |r| sqrt(1 - a^2) / a is sqrt(f^2 - |r|^2), derived at scan time. Then for
 * a query q with rotated residual t = P q - P c:
 *   |x - q|^2 = |r|^2 + |t|^2 - 2 <r, t>,   <r, t> ~ f <ob, t>,
 * and for inner products <x, q> = <c, q> + <r, P q>, the same with t = P q.
 *
 * P is a randomized Hadamard transform (three rounds of random sign flips
 * and a normalized Walsh-Hadamard transform, as in the fast
 * Johnson-Lindenstrauss transform of Ailon and Chazelle, STOC 2006): it is
 * orthogonal, costs O(D log D), and needs D a power of two, so vectors are
 * padded with zeros to D = drift_rabitq_padded(dim) >= 64.
 *
 * The scan is FastScan (André, Kermarrec and Le Scouarnec, "Cache
 * locality is not enough: high-performance nearest neighbor search with
 * product quantization fast scan", VLDB 2015; the 4-bit layout of FAISS's
 * IndexPQFastScan): t is quantized to signed 4-bit steps q_i in [-7, 7]
 * (t_i ~ delta q_i), every group of 4 dimensions gets a 16-entry table of
 * the sums of q over the bits set, and a block of 32 codes is scored by
 * in-register byte shuffles. Codes are stored in blocks of 32 vectors: for
 * each group g (D / 4 of them) 16 bytes, byte j holding the group's 4 bits
 * of vector j in its low half and of vector j + 16 in its high half.
 *
 * Quantizing t adds an error to <ob, t> of 2 delta e / sqrt(D), e a sum of
 * about D / 2 roundings within +-1/2; the bound counts it at four standard
 * deviations, which the tests check.
 */
#ifndef DRIFT_NODE_CODEC_RABITQ_H
#define DRIFT_NODE_CODEC_RABITQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Vectors per code block. */
#define DRIFT_RABITQ_BLOCK 32u

/* The padded dimension D of vectors of dim floats: the power of two >= dim,
 * at least 64. */
uint32_t drift_rabitq_padded(uint32_t dim);

/* Bytes of the codes of n vectors of padded dimension pdim (whole blocks). */
size_t drift_rabitq_code_bytes(uint32_t pdim, size_t n);

/* Floats of the factors of n vectors (whole blocks: per block the 32
 * |r|^2, then the 32 f). */
size_t drift_rabitq_fac_count(size_t n);

typedef struct drift_rabitq drift_rabitq;

/* A rotation for vectors of dim floats, drawn from seed. 0 or
 * DRIFT_ENOMEM. */
int drift_rabitq_new(uint32_t dim, uint64_t seed, drift_rabitq **out);
void drift_rabitq_free(drift_rabitq *rq);
uint32_t drift_rabitq_dim(const drift_rabitq *rq);
uint32_t drift_rabitq_pdim(const drift_rabitq *rq);

/* out (pdim floats) = P x, x being dim floats padded with zeros. out must
 * not overlap x. */
void drift_rabitq_rotate(const drift_rabitq *rq, const float *x, float *out);

/* Codes row of a code array from its rotated residual r (pdim floats):
 * sets the row's bits in codes and its factors |r|^2 and f in fac. */
void drift_rabitq_encode(uint32_t pdim, const float *r, uint8_t *codes,
			 size_t row, float *fac);

/* Copies the code bits and factors of row srow of src / sfac into row drow
 * of dst / dfac. */
void drift_rabitq_copy(uint32_t pdim, uint8_t *dst, float *dfac, size_t drow,
		       const uint8_t *src, const float *sfac, size_t srow);

/* A query prepared for one bucket. */
typedef struct drift_rabitq_query {
	uint32_t pdim;
	bool l2;       /* squared L2; else bias - <x, q> */
	float bias;    /* inner products: -<c, q> (plus 1 for cosine) */
	float delta;   /* the quantization step of t */
	float sum;     /* sum of t */
	float tn2, tn; /* |t|^2, |t| */
	uint8_t *lut;  /* pdim / 4 * 16 bytes, 64-byte aligned */
	const struct drift_rabitq_kernels *k; /* the active level's */
} drift_rabitq_query;

/* Room for the tables of a query of padded dimension pdim, scanned with
 * the kernels of the active SIMD level; 0 or DRIFT_ENOMEM. Free with
 * drift_rabitq_query_free. */
int drift_rabitq_query_init(drift_rabitq_query *pq, uint32_t pdim);
void drift_rabitq_query_free(drift_rabitq_query *pq);

/* Prepares t (pdim floats): the rotated residual P q - P c for L2 (l2
 * true), or P q for inner products, whose distances get bias added. */
void drift_rabitq_prepare(drift_rabitq_query *pq, const float *t, bool l2,
			  float bias);

/* For the rows of codes / fac, whole blocks (room for n rounded up to 32
 * in est and lb): est[r] the estimated distance (squared L2, or
 * bias - <x, q>) and lb[r] = est[r] minus eps times the bound (eps 1.9 is
 * the paper's eps0; the query quantization's part is added). est may be
 * NULL. */
void drift_rabitq_bounds(const drift_rabitq_query *pq, const uint8_t *codes,
			 const float *fac, size_t n, float eps, float *est,
			 float *lb);

/* What turns a row's table sum S and factors (n2 = |r|^2, f) into its
 * estimate and bound: ip = f (a S + b), est = w n2 + base - m ip,
 * lb = est - eb sqrt(max(f^2 - n2, 0)) - qb f. */
typedef struct drift_rabitq_consts {
	float a, b, w, base, m, eb, qb;
} drift_rabitq_consts;

typedef struct drift_rabitq_kernels {
	int level;
	/* out[32 b + j] = sum over groups g of lut[16 g + nibble(g, j)] for
	 * the nblocks blocks of codes (pdim / 4 groups each). */
	void (*scan)(const uint8_t *codes, const uint8_t *lut, size_t nblocks,
		     uint32_t pdim, uint16_t *out);
	/* est (may be NULL) and lb of every row of nblocks blocks. */
	void (*bounds)(const uint8_t *codes, const uint8_t *lut,
		       const float *fac, size_t nblocks, uint32_t pdim,
		       const drift_rabitq_consts *c, float *est, float *lb);
} drift_rabitq_kernels;

/* The kernels of a SIMD level (NULL when this CPU cannot run it), and those
 * of the active level. */
const drift_rabitq_kernels *drift_rabitq_for(int level);
const drift_rabitq_kernels *drift_rabitq_kernels_active(void);

extern const drift_rabitq_kernels drift_rabitq_scalar;
extern const drift_rabitq_kernels drift_rabitq_avx2;
extern const drift_rabitq_kernels drift_rabitq_avx512;

#endif /* DRIFT_NODE_CODEC_RABITQ_H */
