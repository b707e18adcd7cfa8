/*
 * drift_kv: the global id index of a shard, id -> (bucket, row, version).
 *
 * Delete, update and get find an id's place in O(1) instead of scanning
 * buckets, and every move (flush, split, merge, re-centre) updates it.
 *
 * Open addressing with linear probing and backward-shift deletion (no
 * tombstones, so probe lengths stay short under churn); the table doubles
 * when it is 70% full. Every uint64 is a valid id, 0 and 2^64-1 included,
 * so occupancy is kept in its own byte array rather than by a reserved key.
 *
 * Persistence: drift_kv is derived state. The truth is the id column of
 * every bucket in the segments (plus the WAL for what L0 holds); the shard
 * rebuilds the index from them when it opens, so the index is crash-safe by
 * construction and never written to disk on its own.
 *
 * Not thread-safe: the shard's single writer owns it.
 */
#ifndef DRIFT_NODE_KV_H
#define DRIFT_NODE_KV_H

#include <stddef.h>
#include <stdint.h>

typedef struct drift_kv_loc {
	uint32_t bucket;  /* bucket slot */
	uint32_t row;	  /* row in the bucket's columns */
	uint64_t version; /* sequence number of the write that put it there */
} drift_kv_loc;

typedef struct drift_kv {
	uint64_t *keys;
	drift_kv_loc *vals;
	uint8_t *used;
	size_t cap; /* power of two, or 0 */
	size_t len;
} drift_kv;

void drift_kv_init(drift_kv *kv);
void drift_kv_free(drift_kv *kv);

/* Makes room for n entries without growing. 0 or DRIFT_ENOMEM. */
int drift_kv_reserve(drift_kv *kv, size_t n);

/* Inserts or replaces. 0 or DRIFT_ENOMEM (then nothing changed); replacing
 * an id already present never fails. */
int drift_kv_put(drift_kv *kv, uint64_t id, drift_kv_loc loc);

/* 0 and *loc, or DRIFT_ENOENT. */
int drift_kv_get(const drift_kv *kv, uint64_t id, drift_kv_loc *loc);

/* 0 (removed, *loc gets what was there when loc is not NULL) or
 * DRIFT_ENOENT. */
int drift_kv_del(drift_kv *kv, uint64_t id, drift_kv_loc *loc);

static inline size_t drift_kv_len(const drift_kv *kv)
{
	return kv->len;
}

#endif /* DRIFT_NODE_KV_H */
