/*
 * A search result: an id and its distance to the query (smaller is better:
 * squared L2, negated inner product, or 1 - cosine similarity).
 *
 * Every list of hits in Drift (L0, L1, a shard, a merged answer) is ordered
 * by drift_hit_less: distance, then id, so equal distances always come out
 * in the same order on every node and every run.
 */
#ifndef DRIFT_COMMON_HIT_H
#define DRIFT_COMMON_HIT_H

#include <stdbool.h>
#include <stdint.h>

typedef struct drift_hit {
	uint64_t id;
	float distance;
} drift_hit;

static inline bool drift_hit_less(drift_hit a, drift_hit b)
{
	return a.distance < b.distance ||
	       (a.distance == b.distance && a.id < b.id);
}

#endif /* DRIFT_COMMON_HIT_H */
