/*
 * Merging the answers of shards into one top-k.
 *
 * A search fans out to one replica of every shard; each returns its own
 * top-k, ordered by drift_hit_less. The one merge of the code base keeps the
 * best k of the union: the collection over its local shards
 * (node/engine/collection.c), the router and forwarding nodes over the shards'
 * answers.
 * An id can come back from two shards while a shard moves between nodes
 * (both the old and the new owner answer for a moment); it is reported once,
 * with its best distance.
 */
#ifndef DRIFT_COMMON_MERGE_H
#define DRIFT_COMMON_MERGE_H

#include <stddef.h>

#include "common/hit.h"

/* Merges nlists lists (lists[i] has lens[i] hits, sorted by drift_hit_less)
 * into out, which has room for k hits: the k best distinct ids, sorted.
 * *n_out gets how many were written (fewer than k when the lists hold fewer
 * distinct ids). Returns 0, DRIFT_EINVAL (a list out of order: a shard broke
 * its contract) or DRIFT_ENOMEM; out and *n_out are written only on
 * success. */
int drift_merge_topk(const drift_hit *const lists[], const size_t lens[],
		     size_t nlists, size_t k, drift_hit *out, size_t *n_out);

#endif /* DRIFT_COMMON_MERGE_H */
