/*
 * Consistent hashing: which nodes would hold a shard on a ring.
 *
 * The ring (DESIGN.md, "The cluster"): every node owns `vnodes` points on a
 * 64-bit ring, at XXH64(node id, vnode index); shard s of collection c lives
 * on the first rf distinct nodes met clockwise from drift_shard_key(c, s).
 * Adding a node takes over only the arcs in front of its own points, so only
 * the shards that now belong to it move; removing a node moves only its own
 * shards. Both hashes are fixed by the xxHash specification, so every
 * process and version computes the same placement.
 *
 * An id's shard is not the ring's business: drift_shard_of_id in
 * cluster/placement.h is the one function for it.
 *
 * The cluster does not place shards this way: it keeps an explicit
 * placement table (cluster/placement.h), which docs/placement.md chose by
 * measurement. The ring stays as the baseline tests/bench/placement_bench.c
 * measures the table against.
 *
 * A drift_ring is a plain value owned by one thread; readers may share it
 * read-only.
 */
#ifndef DRIFT_CLUSTER_RING_H
#define DRIFT_CLUSTER_RING_H

#include <stddef.h>
#include <stdint.h>

/* Virtual nodes per node unless told otherwise: with 128 points each, the
 * largest node's share stays within about 15% of the mean for up to
 * hundreds of nodes (see tests/unit/test_ring.c). */
#define DRIFT_RING_DEFAULT_VNODES 128
#define DRIFT_RING_MAX_VNODES 4096

typedef struct drift_ring drift_ring;

/* A new empty ring with vnodes points per node (1..DRIFT_RING_MAX_VNODES).
 * 0, DRIFT_EINVAL or DRIFT_ENOMEM; *out is written only on success. */
int drift_ring_new(unsigned vnodes, drift_ring **out);

void drift_ring_free(drift_ring *r);

/* Adds a node. 0, DRIFT_EEXIST (already on the ring; nothing changes) or
 * DRIFT_ENOMEM (nothing changes). */
int drift_ring_add(drift_ring *r, uint64_t node);

/* Removes a node. 0 or DRIFT_ENOENT. */
int drift_ring_remove(drift_ring *r, uint64_t node);

/* Number of nodes on the ring. */
size_t drift_ring_size(const drift_ring *r);

/* Writes to out[0..] the first min(rf, size) distinct nodes clockwise from
 * key, primary first, and returns how many it wrote (0 on an empty ring). */
unsigned drift_ring_place(const drift_ring *r, uint64_t key, unsigned rf,
			  uint64_t *out);

/* The ring position of shard `shard` of collection `collection`. */
uint64_t drift_shard_key(const char *collection, uint32_t shard);

#endif /* DRIFT_CLUSTER_RING_H */
