/* Tests of cluster/ring: placement is deterministic, replicas are distinct,
 * load is balanced, and membership changes move only what they must. */
#include <stdio.h>
#include <string.h>

#include "cluster/ring.h"
#include "common/alloc.h"
#include "common/err.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static drift_ring *ring;

static void setup(void)
{
	cr_assert_eq(drift_ring_new(DRIFT_RING_DEFAULT_VNODES, &ring), 0);
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_ring_free(ring);
}

TestSuite(ring, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

enum { SHARDS = 4000 };

static void add_nodes(uint64_t first, uint64_t n)
{
	for (uint64_t i = first; i < first + n; i++)
		cr_assert_eq(drift_ring_add(ring, 1000 + i * 7), 0);
}

static uint64_t primary(uint32_t shard)
{
	uint64_t out[1];
	cr_assert_eq(
		drift_ring_place(ring, drift_shard_key("docs", shard), 1, out),
		1);
	return out[0];
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(ring, membership)
{
	uint64_t out[3];
	cr_assert_eq(drift_ring_place(ring, 42, 3, out), 0, "empty ring");
	cr_assert_eq(drift_ring_add(ring, 5), 0);
	cr_assert_eq(drift_ring_add(ring, 5), DRIFT_EEXIST);
	cr_assert_eq(drift_ring_size(ring), 1);
	cr_assert_eq(drift_ring_remove(ring, 6), DRIFT_ENOENT);
	cr_assert_eq(drift_ring_remove(ring, 5), 0);
	cr_assert_eq(drift_ring_size(ring), 0);
	cr_assert_eq(drift_ring_remove(ring, 5), DRIFT_ENOENT);

	drift_ring *r;
	cr_assert_eq(drift_ring_new(0, &r), DRIFT_EINVAL);
	cr_assert_eq(drift_ring_new(DRIFT_RING_MAX_VNODES + 1, &r),
		     DRIFT_EINVAL);
}

DRIFT_TEST(ring, replicas_are_distinct_and_capped)
{
	add_nodes(0, 5);
	uint64_t out[8];
	for (uint32_t s = 0; s < 500; s++) {
		uint64_t key = drift_shard_key("docs", s);
		unsigned n = drift_ring_place(ring, key, 3, out);
		cr_assert_eq(n, 3);
		cr_assert(out[0] != out[1] && out[1] != out[2] &&
			  out[0] != out[2]);
		cr_assert_eq(drift_ring_place(ring, key, 8, out), 5,
			     "rf above the node count gives every node");
	}
}

DRIFT_TEST(ring, placement_is_deterministic_and_order_free)
{
	add_nodes(0, 6);
	drift_ring *other;
	cr_assert_eq(drift_ring_new(DRIFT_RING_DEFAULT_VNODES, &other), 0);
	for (int i = 5; i >= 0; i--)
		cr_assert_eq(drift_ring_add(other, 1000 + (uint64_t)i * 7), 0);
	for (uint32_t s = 0; s < 1000; s++) {
		uint64_t a[3], b[3];
		uint64_t key = drift_shard_key("docs", s);
		drift_ring_place(ring, key, 3, a);
		drift_ring_place(other, key, 3, b);
		cr_assert_eq(memcmp(a, b, sizeof(a)), 0, "shard %u", s);
	}
	drift_ring_free(other);
	/* Keys depend on name and shard number. */
	cr_assert_neq(drift_shard_key("docs", 1), drift_shard_key("docs", 2));
	cr_assert_neq(drift_shard_key("docs", 1), drift_shard_key("doc", 1));
	cr_assert_eq(drift_shard_key("docs", 1), drift_shard_key("docs", 1));
}

DRIFT_TEST(ring, load_is_balanced)
{
	enum { NODES = 10 };
	add_nodes(0, NODES);
	long count[NODES] = {0};
	for (uint32_t s = 0; s < SHARDS; s++) {
		uint64_t node = primary(s);
		count[(node - 1000) / 7]++;
	}
	double mean = (double)SHARDS / NODES;
	for (int i = 0; i < NODES; i++)
		cr_assert(count[i] > 0.7 * mean && count[i] < 1.3 * mean,
			  "node %d has %ld shards, mean %.0f", i, count[i],
			  mean);
}

DRIFT_TEST(ring, adding_a_node_moves_only_what_it_takes)
{
	add_nodes(0, 5);
	static uint64_t before[SHARDS];
	for (uint32_t s = 0; s < SHARDS; s++)
		before[s] = primary(s);
	add_nodes(5, 1);
	uint64_t added = 1000 + 5 * 7;
	long moved = 0;
	for (uint32_t s = 0; s < SHARDS; s++) {
		uint64_t now = primary(s);
		if (now != before[s]) {
			cr_assert_eq(now, added,
				     "shard %u moved between old "
				     "nodes",
				     s);
			moved++;
		}
	}
	/* The new node's fair share is 1/6 of the shards. */
	double frac = (double)moved / SHARDS;
	cr_assert(frac > 0.10 && frac < 0.24, "moved %.3f", frac);

	/* Removing it again restores the old placement exactly. */
	cr_assert_eq(drift_ring_remove(ring, added), 0);
	for (uint32_t s = 0; s < SHARDS; s++)
		cr_assert_eq(primary(s), before[s]);
}

DRIFT_TEST(ring, removing_a_node_moves_only_its_shards)
{
	add_nodes(0, 5);
	static uint64_t before[SHARDS];
	for (uint32_t s = 0; s < SHARDS; s++)
		before[s] = primary(s);
	uint64_t gone = 1000 + 2 * 7;
	cr_assert_eq(drift_ring_remove(ring, gone), 0);
	for (uint32_t s = 0; s < SHARDS; s++) {
		uint64_t now = primary(s);
		cr_assert_neq(now, gone);
		if (before[s] != gone)
			cr_assert_eq(now, before[s], "shard %u", s);
	}
}

DRIFT_TEST(ring, failed_add_changes_nothing)
{
	add_nodes(0, 3);
	uint64_t before = primary(7);
	drift_failalloc_arm(1, 0);
	cr_assert_eq(drift_ring_add(ring, 99), DRIFT_ENOMEM);
	drift_failalloc_arm(0, 0);
	cr_assert_eq(drift_ring_size(ring), 3);
	cr_assert_eq(primary(7), before);
	cr_assert_eq(drift_ring_add(ring, 99), 0);
}
