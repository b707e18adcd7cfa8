#include "node/engine/kv.h"

#include <stdbool.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/hash.h"

#define KV_SEED UINT64_C(0x6b762d7365656421)

static inline size_t slot_of(const drift_kv *kv, uint64_t id)
{
	return (size_t)drift_hash_u64(id, KV_SEED) & (kv->cap - 1);
}

void drift_kv_init(drift_kv *kv)
{
	memset(kv, 0, sizeof(*kv));
}

void drift_kv_free(drift_kv *kv)
{
	drift_free(kv->keys);
	drift_free(kv->vals);
	drift_free(kv->used);
	drift_kv_init(kv);
}

/* Rebuilds the table at capacity cap (a power of two above len / 0.7). */
static int rehash(drift_kv *kv, size_t cap)
{
	drift_kv n = {
		.keys = drift_mallocarray(cap, sizeof(uint64_t)),
		.vals = drift_mallocarray(cap, sizeof(drift_kv_loc)),
		.used = drift_calloc(cap, 1),
		.cap = cap,
	};
	if (n.keys == NULL || n.vals == NULL || n.used == NULL) {
		drift_kv_free(&n);
		return DRIFT_ENOMEM;
	}
	for (size_t i = 0; i < kv->cap; i++) {
		if (!kv->used[i])
			continue;
		size_t s = slot_of(&n, kv->keys[i]);
		while (n.used[s])
			s = (s + 1) & (cap - 1);
		n.used[s] = 1;
		n.keys[s] = kv->keys[i];
		n.vals[s] = kv->vals[i];
	}
	n.len = kv->len;
	drift_kv_free(kv);
	*kv = n;
	return 0;
}

int drift_kv_reserve(drift_kv *kv, size_t n)
{
	size_t cap = kv->cap ? kv->cap : 16;
	while (cap * 7 / 10 < n)
		cap *= 2;
	return cap == kv->cap ? 0 : rehash(kv, cap);
}

static size_t find(const drift_kv *kv, uint64_t id);

int drift_kv_put(drift_kv *kv, uint64_t id, drift_kv_loc loc)
{
	/* Replacing never grows the table, so it cannot fail. */
	size_t s = find(kv, id);
	if (s != SIZE_MAX) {
		kv->vals[s] = loc;
		return 0;
	}
	int rv = drift_kv_reserve(kv, kv->len + 1);
	if (rv != 0)
		return rv;
	s = slot_of(kv, id);
	while (kv->used[s])
		s = (s + 1) & (kv->cap - 1);
	kv->used[s] = 1;
	kv->keys[s] = id;
	kv->vals[s] = loc;
	kv->len++;
	return 0;
}

static size_t find(const drift_kv *kv, uint64_t id)
{
	if (kv->cap == 0)
		return SIZE_MAX;
	size_t s = slot_of(kv, id);
	while (kv->used[s]) {
		if (kv->keys[s] == id)
			return s;
		s = (s + 1) & (kv->cap - 1);
	}
	return SIZE_MAX;
}

int drift_kv_get(const drift_kv *kv, uint64_t id, drift_kv_loc *loc)
{
	size_t s = find(kv, id);
	if (s == SIZE_MAX)
		return DRIFT_ENOENT;
	*loc = kv->vals[s];
	return 0;
}

int drift_kv_del(drift_kv *kv, uint64_t id, drift_kv_loc *loc)
{
	size_t s = find(kv, id);
	if (s == SIZE_MAX)
		return DRIFT_ENOENT;
	if (loc != NULL)
		*loc = kv->vals[s];
	/* Backward-shift deletion (Knuth 6.4, Algorithm R): move later
	 * entries of the same run back into the hole when their home slot
	 * allows, so lookups never need tombstones. */
	size_t mask = kv->cap - 1, hole = s, i = s;
	for (;;) {
		i = (i + 1) & mask;
		if (!kv->used[i])
			break;
		size_t home = slot_of(kv, kv->keys[i]);
		/* Entry i may move to hole when home is not in (hole, i]. */
		bool stays = hole <= i ? (home > hole && home <= i)
				       : (home > hole || home <= i);
		if (stays)
			continue;
		kv->keys[hole] = kv->keys[i];
		kv->vals[hole] = kv->vals[i];
		hole = i;
	}
	kv->used[hole] = 0;
	kv->len--;
	return 0;
}
