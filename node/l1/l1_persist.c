/*
 * Writing L1 buckets into segment blocks and reading them back (see the
 * persistence part of l1.h).
 *
 * One block (kind DRIFT_BLOCK_BUCKET) per bucket, little endian:
 *
 *   offset  size        field
 *   0       4           magic "DBK1"
 *   4       4           rows n
 *   8       4           dimension
 *   12      4           metric (the index's; a mismatch is corruption)
 *   16      4 * dim     centroid (float32)
 *   ...     8           length I of the id column
 *   ...     I           ids, ascending, FastLanes with delta
 *                       (node/codec/fastlanes.h)
 *   ...     8 * n       versions (the rows in the same order)
 *   ...     8           length V of the vector column
 *   ...     V           the n * dim full-precision vectors, row-major in
 *                       the same order, ALP (node/codec/alp.h): bit-exact
 *
 * SQ8 codes, running sums and radii are derived data: loading recomputes
 * them (l1_bucket_finish), which costs one pass over the vectors and keeps
 * the block a little smaller. The segment's per-block checksum guards the
 * payload; the decoder still checks every length and count against the
 * block, so damage that slips past is DRIFT_ECORRUPT, never a crash.
 */
#include <float.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "node/codec/alp.h"
#include "node/codec/fastlanes.h"
#include "node/l1/l1_internal.h"

#define BLOCK_MAGIC 0x314b4244u /* "DBK1" */

/* ---- Encoding ---- */

struct sort_row {
	uint64_t id;
	uint32_t row;
};

static int cmp_row(const void *a, const void *b)
{
	uint64_t x = ((const struct sort_row *)a)->id;
	uint64_t y = ((const struct sort_row *)b)->id;
	return x < y ? -1 : x > y;
}

/* Encodes b into a new buffer (*out, drift_free). */
static int encode_bucket(const drift_l1 *l1, const l1_bucket *b, uint8_t **out,
			 size_t *len, uint64_t **sorted)
{
	uint32_t dim = l1->dim, n = b->n;
	size_t nv = (size_t)n * dim;
	struct sort_row *order = drift_mallocarray(n ? n : 1, sizeof(*order));
	uint64_t *ids = drift_mallocarray(n ? n : 1, 8);
	float *vecs = drift_mallocarray(nv ? nv : 1, sizeof(float));
	size_t idcap = drift_fastlanes_bound(n, 64, true);
	size_t vcap = drift_alp_bound(nv);
	size_t cap =
		16 + 4 * (size_t)dim + 8 + idcap + 8 * (size_t)n + 8 + vcap;
	uint8_t *buf = drift_malloc(cap);
	int rv = DRIFT_ENOMEM;
	if (order == NULL || ids == NULL || vecs == NULL || buf == NULL)
		goto out;
	for (uint32_t r = 0; r < n; r++)
		order[r] = (struct sort_row){b->ids[r], r};
	qsort(order, n, sizeof(*order), cmp_row);
	uint32_t *rows = (uint32_t *)buf; /* scratch until the header */
	for (uint32_t r = 0; r < n; r++) {
		ids[r] = order[r].id;
		rows[r] = b->rows[order[r].row];
	}
	rv = drift_vstore_read(l1->vs, rows, n, vecs);
	if (rv != 0)
		goto out;
	uint8_t *p = buf;
	drift_store_le32(p, BLOCK_MAGIC);
	drift_store_le32(p + 4, n);
	drift_store_le32(p + 8, dim);
	drift_store_le32(p + 12, (uint32_t)l1->o.metric);
	p += 16;
	for (uint32_t j = 0; j < dim; j++, p += 4)
		drift_store_lef32(p, b->centroid[j]);
	size_t ilen;
	rv = drift_fastlanes_encode64(ids, n, true, p + 8, idcap, &ilen);
	if (rv != 0)
		goto out;
	drift_store_le64(p, ilen);
	p += 8 + ilen;
	for (uint32_t r = 0; r < n; r++, p += 8)
		drift_store_le64(p, b->versions[order[r].row]);
	size_t vlen;
	rv = drift_alp_encode(vecs, nv, p + 8, vcap, &vlen);
	if (rv != 0)
		goto out;
	drift_store_le64(p, vlen);
	p += 8 + vlen;
	*out = buf;
	*len = (size_t)(p - buf);
	*sorted = ids;
	ids = NULL;
	buf = NULL;
out:
	drift_free(order);
	drift_free(ids);
	drift_free(vecs);
	drift_free(buf);
	return rv;
}

int drift_l1_encode_dirty(drift_l1 *l1, drift_l1_block_fn fn, void *ctx,
			  drift_err *err)
{
	for (uint32_t s = 0; s < l1->nslots; s++) {
		if (!l1->dirty[s])
			continue;
		const l1_bucket *b = l1->b[s];
		if (b == NULL) {
			int rv = fn(ctx, s, NULL, 0, NULL, 0);
			if (rv != 0)
				return rv;
			continue;
		}
		uint8_t *block;
		size_t len;
		uint64_t *ids;
		int rv = encode_bucket(l1, b, &block, &len, &ids);
		if (rv != 0)
			return drift_err_set(err, rv,
					     "L1: encoding bucket %u: %s", s,
					     drift_strerror(rv));
		rv = fn(ctx, s, block, len, ids, b->n);
		drift_free(block);
		drift_free(ids);
		if (rv != 0)
			return rv;
	}
	return 0;
}

uint32_t drift_l1_dirty_count(drift_l1 *l1)
{
	return l1->ndirty;
}

void drift_l1_mark_dirty(drift_l1 *l1, uint32_t slot)
{
	if (slot < l1->nslots && l1->b[slot] != NULL && !l1->dirty[slot]) {
		l1->dirty[slot] = 1;
		l1->ndirty++;
	}
}

void drift_l1_clear_dirty(drift_l1 *l1)
{
	if (l1->dirty != NULL)
		memset(l1->dirty, 0, l1->cap);
	l1->ndirty = 0;
}

/* ---- Decoding ---- */

static int bad(drift_err *err, uint32_t slot, const char *what)
{
	return drift_err_set(err, DRIFT_ECORRUPT, "L1 bucket %u: %s", slot,
			     what);
}

int drift_l1_load_block(drift_l1 *l1, uint32_t slot, const void *block,
			size_t len, drift_err *err)
{
	const uint8_t *p = block, *end = p + len;
	uint32_t dim = l1->dim;
	if (slot < l1->nslots && l1->b[slot] != NULL)
		return drift_err_set(err, DRIFT_EINVAL,
				     "L1 bucket %u: slot already loaded", slot);
	if (slot >= UINT32_MAX / 2)
		return bad(err, slot, "slot number out of range");
	if (len < 16 || drift_load_le32(p) != BLOCK_MAGIC)
		return bad(err, slot, "not a bucket block");
	uint32_t n = drift_load_le32(p + 4);
	if (drift_load_le32(p + 8) != dim)
		return bad(err, slot, "dimension differs from the index's");
	if (drift_load_le32(p + 12) != (uint32_t)l1->o.metric)
		return bad(err, slot, "metric differs from the index's");
	p += 16;
	/* Centroid, two lengths and the versions at least. */
	if ((uint64_t)(end - p) < 4ull * dim + 16 + 8ull * n)
		return bad(err, slot, "block shorter than its row count");
	/* Walk the lengths first, so that nothing is allocated for a row
	 * count the columns do not back. */
	{
		const uint8_t *q = p + 4 * (size_t)dim;
		uint64_t il = drift_load_le64(q);
		q += 8;
		if (il > (uint64_t)(end - q) ||
		    (uint64_t)(end - q) - il < 8ull * n + 8)
			return bad(err, slot, "columns overrun the block");
		q += il + 8ull * n;
		uint64_t vl = drift_load_le64(q), cnt;
		q += 8;
		if (vl != (uint64_t)(end - q) || drift_alp_count(q, vl, &cnt) ||
		    cnt != (uint64_t)n * dim)
			return bad(err, slot,
				   "vector column does not match "
				   "the row count");
	}
	float *cent = drift_mallocarray(dim, sizeof(float));
	if (cent == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "L1 bucket %u", slot);
	for (uint32_t j = 0; j < dim; j++, p += 4) {
		cent[j] = drift_load_lef32(p);
		if (!(cent[j] >= -FLT_MAX && cent[j] <= FLT_MAX)) {
			drift_free(cent);
			return bad(err, slot, "the centroid is not finite");
		}
	}
	l1_bucket *b = NULL;
	int rv = l1_bucket_alloc(l1, n, n, cent, &b);
	drift_free(cent);
	if (rv != 0)
		return drift_err_set(err, rv, "L1 bucket %u", slot);
	uint64_t ilen = drift_load_le64(p);
	p += 8;
	if (ilen > (uint64_t)(end - p) ||
	    drift_fastlanes_decode64(p, ilen, b->ids, n) != 0) {
		rv = bad(err, slot, "id column does not decode");
		goto fail;
	}
	drift_fastlanes_info info;
	if (drift_fastlanes_info_of(p, ilen, &info) != 0 || info.n != n) {
		rv = bad(err, slot, "id column has the wrong row count");
		goto fail;
	}
	for (uint32_t r = 1; r < n; r++)
		if (b->ids[r] <= b->ids[r - 1]) {
			rv = bad(err, slot, "ids not ascending and distinct");
			goto fail;
		}
	p += ilen;
	if ((uint64_t)(end - p) < 8ull * n + 8) {
		rv = bad(err, slot, "version column truncated");
		goto fail;
	}
	for (uint32_t r = 0; r < n; r++, p += 8)
		b->versions[r] = drift_load_le64(p);
	uint64_t vlen = drift_load_le64(p);
	p += 8;
	uint64_t count;
	if (vlen != (uint64_t)(end - p) || drift_alp_count(p, vlen, &count) ||
	    count != (uint64_t)n * dim ||
	    drift_alp_decode(p, vlen, b->newvecs, (size_t)n * dim) != 0) {
		rv = bad(err, slot, "vector column does not decode");
		goto fail;
	}
	for (size_t i = 0; i < (size_t)n * dim; i++)
		if (!(b->newvecs[i] >= -FLT_MAX && b->newvecs[i] <= FLT_MAX)) {
			rv = bad(err, slot, "a vector is not finite");
			goto fail;
		}
	/* Into the vector store: it is rebuilt from the blocks at each open
	 * (node/storage/vstore.h). */
	if ((rv = l1_bucket_finish(l1, b)) != 0) {
		drift_err_set(err, rv, "L1 bucket %u: storing vectors", slot);
		goto fail;
	}
	if ((rv = l1_reserve_slots(l1, slot + 1)) != 0 ||
	    (rv = l1_kv_reserve(l1, drift_kv_len(&l1->kv) + n)) != 0) {
		drift_err_set(err, rv, "L1 bucket %u", slot);
		goto fail;
	}
	/* An id in two buckets is corruption too: the index would lose
	 * track of one of them. */
	for (uint32_t r = 0; r < n; r++) {
		drift_kv_loc loc;
		if (drift_kv_get(&l1->kv, b->ids[r], &loc) == 0) {
			rv = bad(err, slot, "an id is also in another bucket");
			goto fail;
		}
	}
	if (slot >= l1->nslots)
		l1->nslots = slot + 1;
	l1_change ch = {.slot = slot, .nb = b};
	l1_publish(l1, &ch, 1, NULL, 0);
	return 0;
fail:
	l1_bucket_discard(l1, b);
	return rv;
}

int drift_l1_load_finish(drift_l1 *l1, drift_err *err)
{
	/* Slots below the highest loaded one that stayed empty are free. */
	l1->nfree = 0;
	for (uint32_t s = l1->nslots; s-- > 0;)
		if (l1->b[s] == NULL)
			l1->free_slots[l1->nfree++] = s;
	drift_l1_clear_dirty(l1);
	if (l1->live == 0)
		return 0;
	return drift_l1_calibrate(l1, err);
}
