/* Tests of cluster/placement: the id -> shard hash is pinned (data
 * directories depend on it); plans are valid, balanced, deterministic and
 * move no more than they must; bad input changes nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cluster/placement.h"
#include "common/alloc.h"
#include "common/err.h"
#include "common/rand.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

enum { MAX_NODES = 16, MAX_SHARDS = 512 };

static char names[MAX_NODES][8];
static struct drift_placement_node nodes[MAX_NODES];
static struct drift_placement_shard shards[MAX_SHARDS];

static void setup(void)
{
	for (int i = 0; i < MAX_NODES; i++) {
		snprintf(names[i], sizeof(names[i]), "n%02d", i);
		nodes[i] = (struct drift_placement_node){names[i], true};
	}
	memset(shards, 0, sizeof(shards));
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
}

TestSuite(placement, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static int node_index(size_t n_nodes, const char *id)
{
	for (size_t i = 0; i < n_nodes; i++)
		if (strcmp(nodes[i].id, id) == 0)
			return (int)i;
	cr_assert_fail("unknown node %s", id);
	return -1;
}

static void new_shards(size_t n, uint32_t rf)
{
	for (size_t s = 0; s < n; s++)
		shards[s] = (struct drift_placement_shard){.rf = rf};
}

/* Plans and asserts success; returns the number of moves. */
static size_t plan_ok(size_t n_nodes, size_t n_shards, bool rebalance,
		      struct drift_placement_move **moves)
{
	size_t n = 0;
	int rv = drift_placement_plan(nodes, n_nodes, shards, n_shards,
				      rebalance, moves, &n);
	cr_assert_eq(rv, 0, "plan: %s", drift_strerror(rv));
	return n;
}

/* Every shard has rf distinct replicas, all on accepting nodes, and every
 * entry points to the id string of its node. */
static void assert_valid(size_t n_nodes, size_t n_shards)
{
	for (size_t s = 0; s < n_shards; s++) {
		cr_assert_eq(shards[s].n, shards[s].rf, "shard %zu", s);
		for (uint32_t i = 0; i < shards[s].n; i++) {
			int k = node_index(n_nodes, shards[s].nodes[i]);
			cr_assert_eq(shards[s].nodes[i], nodes[k].id);
			cr_assert(nodes[k].accepts, "shard %zu on %s", s,
				  nodes[k].id);
			for (uint32_t j = 0; j < i; j++)
				cr_assert_neq(shards[s].nodes[i],
					      shards[s].nodes[j],
					      "shard %zu twice on a node", s);
		}
		for (uint32_t i = shards[s].n; i < DRIFT_PLACEMENT_MAX_RF; i++)
			cr_assert_null(shards[s].nodes[i]);
	}
}

/* Replicas (or primaries) per node into count[]; returns min and max over
 * accepting nodes through the pointers. */
static void counts(size_t n_nodes, size_t n_shards, bool primaries, long *count,
		   long *min, long *max)
{
	memset(count, 0, n_nodes * sizeof(*count));
	for (size_t s = 0; s < n_shards; s++)
		for (uint32_t i = 0; i < (primaries ? 1 : shards[s].n); i++)
			count[node_index(n_nodes, shards[s].nodes[i])]++;
	*min = -1;
	*max = -1;
	for (size_t i = 0; i < n_nodes; i++) {
		if (!nodes[i].accepts)
			continue;
		if (*min < 0 || count[i] < *min)
			*min = count[i];
		if (count[i] > *max)
			*max = count[i];
	}
}

/* Every accepting node within floor..ceil of the mean, for replicas and
 * for primaries. */
static void assert_balanced(size_t n_nodes, size_t n_shards)
{
	long count[MAX_NODES], min, max, total = 0, acc = 0;
	for (size_t i = 0; i < n_nodes; i++)
		acc += nodes[i].accepts;
	for (size_t s = 0; s < n_shards; s++)
		total += shards[s].rf;
	counts(n_nodes, n_shards, false, count, &min, &max);
	cr_assert(min >= total / acc && max <= (total + acc - 1) / acc,
		  "replicas per node %ld..%ld, total %ld over %ld", min, max,
		  total, acc);
	counts(n_nodes, n_shards, true, count, &min, &max);
	long ns = (long)n_shards;
	cr_assert(min >= ns / acc && max <= (ns + acc - 1) / acc,
		  "primaries per node %ld..%ld over %ld", min, max, acc);
}

/* Replaying the moves on `before` gives the replica sets of shards[]. */
static void assert_moves_explain(const struct drift_placement_shard *before,
				 size_t n_shards,
				 const struct drift_placement_move *moves,
				 size_t n_moves)
{
	static struct drift_placement_shard t[MAX_SHARDS];
	memcpy(t, before, n_shards * sizeof(*t));
	for (size_t m = 0; m < n_moves; m++) {
		struct drift_placement_shard *sh = &t[moves[m].shard];
		cr_assert(moves[m].from != NULL || moves[m].to != NULL);
		if (moves[m].from != NULL) {
			uint32_t i = 0;
			while (i < sh->n && strcmp(sh->nodes[i], moves[m].from))
				i++;
			cr_assert_lt(i, sh->n, "move %zu: from a non-replica",
				     m);
			sh->nodes[i] = sh->nodes[--sh->n];
		}
		if (moves[m].to != NULL) {
			for (uint32_t i = 0; i < sh->n; i++)
				cr_assert_str_neq(sh->nodes[i], moves[m].to,
						  "move %zu: to a replica", m);
			sh->nodes[sh->n++] = moves[m].to;
		}
	}
	for (size_t s = 0; s < n_shards; s++) {
		cr_assert_eq(t[s].n, shards[s].n);
		for (uint32_t i = 0; i < t[s].n; i++) {
			uint32_t j = 0;
			while (j < shards[s].n &&
			       strcmp(t[s].nodes[i], shards[s].nodes[j]))
				j++;
			cr_assert_lt(j, shards[s].n, "shard %zu", s);
		}
	}
}

/* ---- Cases: id -> shard ----------------------------------------------- */

/* Computed outside Drift (libxxhash's XXH3_64bits_withSeed over the id's
 * 8 little-endian bytes, seed 0x5eedc011ec7105, from Python through ctypes):
 * the hash node/engine/collection.c has always used. A change here strands
 * every row already written. */
DRIFT_TEST(placement, shard_of_id_is_pinned)
{
	static const uint32_t counts_of[] = {1, 2, 3, 8, 64};
	static const struct {
		uint64_t id;
		uint32_t shard[5];
	} pins[] = {
		{UINT64_C(0x0), {0, 0, 2, 6, 38}},
		{UINT64_C(0x1), {0, 0, 1, 2, 34}},
		{UINT64_C(0x2), {0, 1, 2, 7, 47}},
		{UINT64_C(0x3), {0, 1, 0, 7, 15}},
		{UINT64_C(0x2a), {0, 1, 1, 5, 53}},
		{UINT64_C(0x3e8), {0, 1, 1, 7, 15}},
		{UINT64_C(0x75bcd15), {0, 1, 1, 3, 27}},
		{UINT64_C(0x100000007), {0, 0, 0, 4, 60}},
		{UINT64_C(0x8000000000000000), {0, 1, 2, 7, 23}},
		{UINT64_C(0xffffffffffffffff), {0, 1, 2, 7, 47}},
	};
	for (size_t i = 0; i < sizeof(pins) / sizeof(pins[0]); i++)
		for (size_t k = 0; k < 5; k++)
			cr_assert_eq(
				drift_shard_of_id(pins[i].id, counts_of[k]),
				pins[i].shard[k], "id %#llx, %u shards",
				(unsigned long long)pins[i].id, counts_of[k]);
}

DRIFT_TEST(placement, ids_spread_over_shards)
{
	enum { N = 8 };
	long count[N] = {0};
	for (uint64_t id = 0; id < 80000; id++)
		count[drift_shard_of_id(id, N)]++;
	for (int i = 0; i < N; i++)
		cr_assert(count[i] > 9500 && count[i] < 10500, "shard %d: %ld",
			  i, count[i]);
}

/* ---- Cases: shard -> nodes -------------------------------------------- */

DRIFT_TEST(placement, new_shards_fill_the_least_loaded)
{
	new_shards(4, 1);
	struct drift_placement_move *mv;
	cr_assert_eq(plan_ok(3, 4, false, &mv), 4);
	for (int s = 0; s < 4; s++) {
		cr_assert_eq(mv[s].shard, (uint32_t)s);
		cr_assert_null(mv[s].from);
		cr_assert_eq(mv[s].to, shards[s].nodes[0]);
	}
	/* The first three take one node each; the fourth any of them. */
	cr_assert_str_neq(mv[0].to, mv[1].to);
	cr_assert_str_neq(mv[0].to, mv[2].to);
	cr_assert_str_neq(mv[1].to, mv[2].to);
	drift_free(mv);
}

/* A leaving node's replicas must be able to go anywhere: its shards'
 * other replicas are spread over the cluster, not the same few nodes. */
DRIFT_TEST(placement, replica_partners_are_spread)
{
	enum { NODES = 10, SHARDS = 200 };
	new_shards(SHARDS, 5);
	struct drift_placement_move *mv;
	plan_ok(NODES, SHARDS, true, &mv);
	drift_free(mv);
	long together[NODES] = {0};
	for (int s = 0; s < SHARDS; s++) {
		bool has0 = false;
		for (int i = 0; i < 5; i++)
			has0 |= strcmp(shards[s].nodes[i], "n00") == 0;
		for (int i = 0; has0 && i < 5; i++)
			together[node_index(NODES, shards[s].nodes[i])]++;
	}
	/* n00 holds 100 shards; each other node shares 400/9 = 44 of them on
	 * average. Ties in id order would give 100 to four nodes, 0 to five. */
	for (int i = 1; i < NODES; i++)
		cr_assert(together[i] >= 25 && together[i] <= 65,
			  "n00 and n%02d share %ld shards", i, together[i]);
}

DRIFT_TEST(placement, a_new_collection_is_balanced)
{
	enum { NODES = 7, SHARDS = 100 };
	new_shards(SHARDS, 3);
	struct drift_placement_move *mv;
	size_t n = plan_ok(NODES, SHARDS, true, &mv);
	cr_assert_eq(n, SHARDS * 3, "one move per replica, none redone");
	assert_valid(NODES, SHARDS);
	assert_balanced(NODES, SHARDS);
	static struct drift_placement_shard empty[SHARDS];
	for (int s = 0; s < SHARDS; s++)
		empty[s] = (struct drift_placement_shard){.rf = 3};
	assert_moves_explain(empty, SHARDS, mv, n);
	drift_free(mv);

	/* A valid balanced map needs nothing, with or without rebalance. */
	cr_assert_eq(plan_ok(NODES, SHARDS, false, &mv), 0);
	cr_assert_null(mv);
	cr_assert_eq(plan_ok(NODES, SHARDS, true, &mv), 0);
}

DRIFT_TEST(placement, adding_a_node_moves_the_least_that_balances)
{
	enum { SHARDS = 300 };
	new_shards(SHARDS, 2);
	struct drift_placement_move *mv;
	plan_ok(5, SHARDS, true, &mv);
	drift_free(mv);
	static struct drift_placement_shard before[SHARDS];
	memcpy(before, shards, sizeof(before));

	/* 600 replicas over 6 nodes: the newcomer must receive 100, and no
	 * plan that balances can move fewer. */
	size_t n = plan_ok(6, SHARDS, true, &mv);
	cr_assert_eq(n, 100);
	for (size_t m = 0; m < n; m++) {
		cr_assert_str_eq(mv[m].to, "n05");
		cr_assert_not_null(mv[m].from);
	}
	assert_valid(6, SHARDS);
	assert_balanced(6, SHARDS);
	assert_moves_explain(before, SHARDS, mv, n);
	drift_free(mv);

	/* Without rebalance the map is valid already: nothing moves. */
	memcpy(shards, before, sizeof(before));
	cr_assert_eq(plan_ok(6, SHARDS, false, &mv), 0);
}

DRIFT_TEST(placement, a_leaving_node_is_emptied_by_its_own_replicas)
{
	enum { NODES = 8, SHARDS = 256 };
	new_shards(SHARDS, 3);
	struct drift_placement_move *mv;
	plan_ok(NODES, SHARDS, true, &mv);
	drift_free(mv);
	static struct drift_placement_shard before[SHARDS];
	memcpy(before, shards, sizeof(before));
	long count[NODES], min, max;
	counts(NODES, SHARDS, false, count, &min, &max);
	long primaries[NODES];
	counts(NODES, SHARDS, true, primaries, &min, &max);

	nodes[3].accepts = false;
	size_t n = plan_ok(NODES, SHARDS, false, &mv);
	/* Each of its replicas moves once, and nothing else does. */
	cr_assert_eq((long)n, count[3]);
	for (size_t m = 0; m < n; m++)
		cr_assert_str_eq(mv[m].from, "n03");
	assert_valid(NODES, SHARDS);
	assert_moves_explain(before, SHARDS, mv, n);
	/* Its primaries go to replicas that have the data; the other
	 * shards keep theirs. */
	long handed = 0;
	for (size_t s = 0; s < SHARDS; s++) {
		if (strcmp(before[s].nodes[0], "n03") != 0) {
			cr_assert_eq(shards[s].nodes[0], before[s].nodes[0]);
			continue;
		}
		handed++;
		bool had = false;
		for (uint32_t i = 1; i < 3; i++)
			had |= shards[s].nodes[0] == before[s].nodes[i];
		cr_assert(had, "shard %zu: primary %s had no replica", s,
			  shards[s].nodes[0]);
	}
	cr_assert_eq(handed, primaries[3]);
	cr_assert_gt(handed, 0);
	drift_free(mv);
	/* Least-loaded placement keeps the rest balanced; rebalance then has
	 * only primaries (no data) to even out, if anything. */
	counts(NODES, SHARDS, false, count, &min, &max);
	cr_assert_leq(max - min, 1);
	cr_assert_eq(plan_ok(NODES, SHARDS, true, &mv), 0);
	assert_balanced(NODES, SHARDS);
}

DRIFT_TEST(placement, surplus_replicas_are_dropped_leaving_nodes_first)
{
	shards[0] = (struct drift_placement_shard){
		.rf = 2, .n = 4, .nodes = {"n00", "n01", "n02", "n03"}};
	nodes[2].accepts = false;
	struct drift_placement_move *mv;
	size_t n = plan_ok(4, 1, false, &mv);
	cr_assert_eq(n, 2);
	cr_assert_str_eq(mv[0].from, "n02");
	cr_assert_null(mv[0].to);
	/* Then a secondary (not the primary n00); loads tie at one, so the
	 * first id: n01. */
	cr_assert_str_eq(mv[1].from, "n01");
	cr_assert_null(mv[1].to);
	cr_assert_eq(shards[0].n, 2);
	cr_assert_str_eq(shards[0].nodes[0], "n00");
	cr_assert_str_eq(shards[0].nodes[1], "n03");
	drift_free(mv);
}

DRIFT_TEST(placement, primaries_are_balanced_by_reordering_only)
{
	/* Every shard on all three nodes with n00 primary: rebalancing must
	 * not move data, only leadership. */
	enum { SHARDS = 90 };
	for (int s = 0; s < SHARDS; s++)
		shards[s] = (struct drift_placement_shard){
			.rf = 3, .n = 3, .nodes = {"n00", "n01", "n02"}};
	struct drift_placement_move *mv;
	cr_assert_eq(plan_ok(3, SHARDS, true, &mv), 0);
	assert_valid(3, SHARDS);
	assert_balanced(3, SHARDS);
	long count[3], min, max;
	counts(3, SHARDS, true, count, &min, &max);
	cr_assert_eq(min, 30);
	cr_assert_eq(max, 30);
}

DRIFT_TEST(placement, plans_do_not_depend_on_node_order)
{
	enum { NODES = 9, SHARDS = 200 };
	new_shards(SHARDS, 3);
	struct drift_placement_move *a, *b;
	size_t na = plan_ok(NODES, SHARDS, true, &a);
	static struct drift_placement_shard first[SHARDS];
	memcpy(first, shards, sizeof(first));

	/* The same nodes backwards. */
	for (int i = 0; i < NODES / 2; i++) {
		struct drift_placement_node t = nodes[i];
		nodes[i] = nodes[NODES - 1 - i];
		nodes[NODES - 1 - i] = t;
	}
	new_shards(SHARDS, 3);
	size_t nb = plan_ok(NODES, SHARDS, true, &b);
	cr_assert_eq(na, nb);
	for (size_t m = 0; m < na; m++) {
		cr_assert_eq(a[m].shard, b[m].shard);
		cr_assert_str_eq(a[m].to, b[m].to);
	}
	for (int s = 0; s < SHARDS; s++)
		for (uint32_t i = 0; i < 3; i++)
			cr_assert_str_eq(first[s].nodes[i], shards[s].nodes[i]);
	drift_free(a);
	drift_free(b);
}

/* Seeded random life of a cluster: nodes join and leave, collections of
 * mixed rf come; after every plan the map is valid, balanced and explained
 * by its moves, and copies no more than the change forces when nothing
 * else was out of balance. */
DRIFT_TEST(placement, random_membership_changes_stay_balanced)
{
	drift_rand rng;
	drift_rand_seed(&rng, 17);
	size_t n_nodes = 4, n_shards = 0;
	int joins = 0, leaves = 0;
	static struct drift_placement_shard before[MAX_SHARDS];
	for (int round = 0; round < 60; round++) {
		size_t acc = 0;
		for (size_t i = 0; i < n_nodes; i++)
			acc += nodes[i].accepts;
		uint64_t what = drift_rand_below(&rng, 3);
		long forced = 0; /* replicas that must be copied */
		bool leave = false, join = false;
		if (what == 0 && n_nodes < MAX_NODES) {
			n_nodes++; /* a node joins */
			join = true;
		} else if (what == 1 && acc > 10) {
			leave = true;
			size_t i;
			do
				i = drift_rand_below(&rng, n_nodes);
			while (!nodes[i].accepts);
			nodes[i].accepts = false; /* a node leaves */
			for (size_t s = 0; s < n_shards; s++)
				for (uint32_t k = 0; k < shards[s].n; k++)
					forced += shards[s].nodes[k] ==
						  nodes[i].id;
		} else if (n_shards + 64 <= MAX_SHARDS) {
			/* A collection of 1..64 shards, rf 1..5. */
			size_t add = 1 + drift_rand_below(&rng, 64);
			uint32_t rf = 1 + (uint32_t)drift_rand_below(&rng, 5);
			for (size_t s = n_shards; s < n_shards + add; s++)
				shards[s] = (struct drift_placement_shard){
					.rf = rf};
			n_shards += add;
			forced = (long)add * rf;
		}
		memcpy(before, shards, n_shards * sizeof(*before));
		struct drift_placement_move *mv;
		size_t n = plan_ok(n_nodes, n_shards, true, &mv);
		assert_valid(n_nodes, n_shards);
		assert_balanced(n_nodes, n_shards);
		assert_moves_explain(before, n_shards, mv, n);
		/* A leave must copy the leaver's replicas; a join its share.
		 * Both within the 1.1x the issue asks for. (With few nodes and
		 * rf 5 a leave can need more: when the only nodes a leaver's
		 * shards may go to are the ones that joined last, they end up
		 * above the mean and must pass others on. Hence leaves only
		 * while more than 10 nodes accept.) */
		long total = 0;
		for (size_t s = 0; s < n_shards; s++)
			total += shards[s].rf;
		/* A plan is a fixed point: planning again changes nothing. */
		memcpy(before, shards, n_shards * sizeof(*before));
		struct drift_placement_move *again;
		cr_assert_eq(plan_ok(n_nodes, n_shards, true, &again), 0);
		cr_assert_eq(memcmp(before, shards, n_shards * sizeof(*before)),
			     0, "round %d: a second plan reordered", round);
		joins += join;
		leaves += leave;
		if (leave)
			cr_assert(
				forced <= (long)n && (double)n <= 1.1 * forced,
				"round %d: a leave of %ld replicas copied %zu",
				round, forced, n);
		if (join)
			cr_assert((double)n <= 1.1 * total / (acc + 1) + 1,
				  "round %d: a join copied %zu of %ld", round,
				  n, total);
		drift_free(mv);
	}
	cr_assert(joins >= 8 && leaves >= 3, "%d joins, %d leaves", joins,
		  leaves);
	cr_assert_gt(n_shards, 300);
}

DRIFT_TEST(placement, bad_input_changes_nothing)
{
	struct drift_placement_move *mv = (void *)&mv;
	size_t n = 77;
	shards[0] = (struct drift_placement_shard){
		.rf = 2, .n = 2, .nodes = {"n00", "n01"}};
	shards[1] = (struct drift_placement_shard){.rf = 2};
	struct drift_placement_shard keep[2];
	memcpy(keep, shards, sizeof(keep));

	/* rf 0, above the maximum, above the accepting nodes. */
	shards[1].rf = 0;
	cr_assert_eq(drift_placement_plan(nodes, 3, shards, 2, true, &mv, &n),
		     DRIFT_EINVAL);
	shards[1].rf = DRIFT_PLACEMENT_MAX_RF + 1;
	cr_assert_eq(drift_placement_plan(nodes, 8, shards, 2, true, &mv, &n),
		     DRIFT_EINVAL);
	shards[1].rf = 3;
	nodes[2].accepts = false;
	cr_assert_eq(drift_placement_plan(nodes, 3, shards, 2, true, &mv, &n),
		     DRIFT_EINVAL);
	nodes[2].accepts = true;
	shards[1].rf = 2;

	/* A replica on an unknown node, twice on one node; n too large. */
	shards[0].nodes[1] = "nope";
	cr_assert_eq(drift_placement_plan(nodes, 3, shards, 2, true, &mv, &n),
		     DRIFT_EINVAL);
	shards[0].nodes[1] = "n00";
	cr_assert_eq(drift_placement_plan(nodes, 3, shards, 2, true, &mv, &n),
		     DRIFT_EINVAL);
	shards[0].nodes[1] = "n01";
	shards[0].n = DRIFT_PLACEMENT_MAX_RF + 1;
	cr_assert_eq(drift_placement_plan(nodes, 3, shards, 2, true, &mv, &n),
		     DRIFT_EINVAL);
	shards[0].n = 2;

	/* A node id NULL or repeated. */
	nodes[2].id = NULL;
	cr_assert_eq(drift_placement_plan(nodes, 3, shards, 2, true, &mv, &n),
		     DRIFT_EINVAL);
	nodes[2].id = "n01";
	cr_assert_eq(drift_placement_plan(nodes, 3, shards, 2, true, &mv, &n),
		     DRIFT_EINVAL);
	nodes[2].id = names[2];

	cr_assert_eq(mv, (void *)&mv, "moves untouched");
	cr_assert_eq(n, 77);
	cr_assert_eq(memcmp(keep, shards, sizeof(keep)), 0);

	/* And the same input, corrected, plans. */
	cr_assert_eq(drift_placement_plan(nodes, 3, shards, 2, true, &mv, &n),
		     0);
	cr_assert_eq(n, 2);
	drift_free(mv);
}

DRIFT_TEST(placement, allocation_failures_change_nothing)
{
	enum { SHARDS = 40 };
	new_shards(SHARDS, 2);
	struct drift_placement_move *mv;
	plan_ok(4, SHARDS, true, &mv);
	drift_free(mv);
	nodes[1].accepts = false;
	static struct drift_placement_shard keep[SHARDS];
	memcpy(keep, shards, sizeof(keep));
	/* Fail each allocation in turn until the plan needs no more. */
	for (long nth = 1;; nth++) {
		size_t n = 77;
		mv = NULL;
		drift_failalloc_arm(nth, 0);
		int rv = drift_placement_plan(nodes, 5, shards, SHARDS, true,
					      &mv, &n);
		bool fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			cr_assert_gt(n, 0);
			drift_free(mv);
			cr_assert_gt(nth, 3, "the plan allocates");
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM, "allocation %ld", nth);
		cr_assert_eq(n, 77);
		cr_assert_null(mv);
		cr_assert_eq(memcmp(keep, shards, sizeof(keep)), 0);
	}
}
