/*
 * The shard's WAL records (node/storage/wal.h payloads), little endian:
 *   OP_UPSERT (1): u32 n, u32 dim, then n x (u64 id, dim x f32)
 *   OP_DELETE (2): u32 n, then n x u64 id
 * Every row of a record carries the record's sequence number; later rows of
 * one record win over earlier ones for the same id. A record whose type,
 * dimension, row count or length does not fit the shard is DRIFT_ECORRUPT
 * at replay (the WAL's checksum held, so the log itself is damaged or
 * belongs to another shard).
 */
#include <stdint.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "node/engine/shard_internal.h"

int shard_record_upsert(const uint64_t *ids, const float *vecs, size_t n,
			uint32_t dim, uint8_t **out, size_t *len)
{
	size_t row = 8 + 4 * (size_t)dim;
	size_t l = 8 + n * row;
	uint8_t *rec = drift_malloc(l);
	if (rec == NULL)
		return DRIFT_ENOMEM;
	drift_store_le32(rec, (uint32_t)n);
	drift_store_le32(rec + 4, dim);
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = rec + 8 + i * row;
		drift_store_le64(p, ids[i]);
		for (uint32_t j = 0; j < dim; j++)
			drift_store_lef32(p + 8 + 4 * j, vecs[i * dim + j]);
	}
	*out = rec;
	*len = l;
	return 0;
}

int shard_record_delete(const uint64_t *ids, size_t n, uint8_t **out,
			size_t *len)
{
	size_t l = 4 + 8 * n;
	uint8_t *rec = drift_malloc(l);
	if (rec == NULL)
		return DRIFT_ENOMEM;
	drift_store_le32(rec, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		drift_store_le64(rec + 4 + 8 * i, ids[i]);
	*out = rec;
	*len = l;
	return 0;
}

int shard_record_parse(uint32_t type, const void *payload, size_t len,
		       uint32_t dim, uint32_t max_rows, shard_record *out)
{
	const uint8_t *p = payload;
	if (len < 4)
		return DRIFT_ECORRUPT;
	uint32_t n = drift_load_le32(p);
	if (n > max_rows)
		return DRIFT_ECORRUPT;
	size_t row = 8 + 4 * (size_t)dim;
	if (type == OP_UPSERT) {
		if (len < 8 || drift_load_le32(p + 4) != dim ||
		    (len - 8) / row != n || (len - 8) % row != 0)
			return DRIFT_ECORRUPT;
		*out = (shard_record){
			.type = type, .n = n, .p = p + 8, .dim = dim};
		return 0;
	}
	if (type == OP_DELETE) {
		if (len != 4 + 8 * (size_t)n)
			return DRIFT_ECORRUPT;
		*out = (shard_record){.type = type, .n = n, .p = p + 4};
		return 0;
	}
	return DRIFT_ECORRUPT;
}

uint64_t shard_record_row(const shard_record *r, uint32_t i, float *vec)
{
	if (r->type == OP_DELETE)
		return drift_load_le64(r->p + 8 * (size_t)i);
	const uint8_t *row = r->p + i * (8 + 4 * (size_t)r->dim);
	for (uint32_t j = 0; vec != NULL && j < r->dim; j++)
		vec[j] = drift_load_lef32(row + 8 + 4 * j);
	return drift_load_le64(row);
}
