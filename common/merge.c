#include "common/merge.h"

#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/hash.h"

/* A cursor into one list, in a binary min-heap ordered by its head hit. */
typedef struct cursor {
	const drift_hit *hits;
	size_t len, pos;
} cursor;

static bool cursor_less(const cursor *a, const cursor *b)
{
	return drift_hit_less(a->hits[a->pos], b->hits[b->pos]);
}

static void sift_down(cursor *h, size_t n, size_t i)
{
	for (;;) {
		size_t l = 2 * i + 1, r = l + 1, m = i;
		if (l < n && cursor_less(&h[l], &h[m]))
			m = l;
		if (r < n && cursor_less(&h[r], &h[m]))
			m = r;
		if (m == i)
			return;
		cursor t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

/* Open-addressing set of ids already emitted; capacity a power of two at
 * least twice k, so it never fills. */
typedef struct idset {
	uint64_t *keys;
	bool *used;
	size_t mask;
} idset;

static bool idset_insert(idset *s, uint64_t id)
{
	size_t i = (size_t)drift_hash_u64(id, 0) & s->mask;
	while (s->used[i]) {
		if (s->keys[i] == id)
			return false;
		i = (i + 1) & s->mask;
	}
	s->used[i] = true;
	s->keys[i] = id;
	return true;
}

int drift_merge_topk(const drift_hit *const lists[], const size_t lens[],
		     size_t nlists, size_t k, drift_hit *out, size_t *n_out)
{
	for (size_t i = 0; i < nlists; i++)
		for (size_t j = 1; j < lens[i]; j++)
			if (drift_hit_less(lists[i][j], lists[i][j - 1]))
				return DRIFT_EINVAL;
	if (k == 0) {
		*n_out = 0;
		return 0;
	}

	size_t cap = 16;
	while (cap < 2 * k)
		cap *= 2;
	int rv = DRIFT_ENOMEM;
	cursor *heap = drift_mallocarray(nlists ? nlists : 1, sizeof(*heap));
	idset set = {drift_mallocarray(cap, sizeof(uint64_t)),
		     drift_calloc(cap, sizeof(bool)), cap - 1};
	if (heap == NULL || set.keys == NULL || set.used == NULL)
		goto out;

	size_t n = 0;
	for (size_t i = 0; i < nlists; i++)
		if (lens[i] > 0)
			heap[n++] = (cursor){lists[i], lens[i], 0};
	for (size_t i = n / 2; i-- > 0;)
		sift_down(heap, n, i);

	size_t got = 0;
	while (n > 0 && got < k) {
		drift_hit best = heap[0].hits[heap[0].pos];
		if (idset_insert(&set, best.id))
			out[got++] = best;
		if (++heap[0].pos == heap[0].len)
			heap[0] = heap[--n];
		sift_down(heap, n, 0);
	}
	*n_out = got;
	rv = 0;
out:
	drift_free(heap);
	drift_free(set.keys);
	drift_free(set.used);
	return rv;
}
