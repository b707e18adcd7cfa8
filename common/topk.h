/*
 * A bounded top-k of hits: a binary max-heap of at most k hits ordered by
 * drift_hit_less, whose root is the worst hit kept, so a new hit either
 * beats the root or is dropped in O(1). The caller owns the array.
 */
#ifndef DRIFT_COMMON_TOPK_H
#define DRIFT_COMMON_TOPK_H

#include <stddef.h>

#include "common/hit.h"

typedef struct drift_topk {
	drift_hit *h; /* room for k */
	size_t k, n;
} drift_topk;

static inline void drift_topk_init(drift_topk *t, drift_hit *buf, size_t k)
{
	t->h = buf;
	t->k = k;
	t->n = 0;
}

/* The distance a new hit must beat to enter (+inf while not full). */
static inline float drift_topk_bound(const drift_topk *t)
{
	return t->n < t->k ? __builtin_inff() : t->h[0].distance;
}

/* Keeps hit if it belongs to the top k. The common case, a hit that does
 * not beat a full top-k's root, is decided inline. */
void drift_topk_insert(drift_topk *t, drift_hit hit);
static inline void drift_topk_push(drift_topk *t, drift_hit hit)
{
	if (t->n == t->k && (t->k == 0 || !drift_hit_less(hit, t->h[0])))
		return;
	drift_topk_insert(t, hit);
}

/* Sorts the kept hits best first (in place, in t->h) and returns how many;
 * the top-k is then empty of heap order and must be re-initialised before
 * reuse. */
size_t drift_topk_sort(drift_topk *t);

#endif /* DRIFT_COMMON_TOPK_H */
