/* Tests of node/kv: drift_kv against a plain model under random
 * insert/move/delete, every id value included. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/rand.h"
#include "node/engine/kv.h"
#include "drift_test.h"

/* ---- Helpers ---------------------------------------------------------- */

/* The model: a small id space so that collisions, moves and re-inserts are
 * frequent, spread over the whole uint64 range. */
enum { SPACE = 4096, STEPS = 200000 };

static uint64_t id_of(uint64_t i)
{
	/* Includes 0 and UINT64_MAX, and ids that differ in high bits. */
	if (i == 0)
		return 0;
	if (i == 1)
		return UINT64_MAX;
	return i * UINT64_C(0x9E3779B97F4A7C15);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(kv, matches_a_model_under_random_steps)
{
	static bool present[SPACE];
	static drift_kv_loc model[SPACE];
	memset(present, 0, sizeof(present));
	drift_kv kv;
	drift_kv_init(&kv);
	drift_rand r;
	drift_rand_seed(&r, 1);
	size_t live = 0;
	for (long step = 0; step < STEPS; step++) {
		uint64_t i = drift_rand_below(&r, SPACE);
		uint64_t id = id_of(i);
		unsigned op = (unsigned)drift_rand_below(&r, 10);
		if (op < 6) { /* insert or move */
			drift_kv_loc loc = {(uint32_t)drift_rand_next(&r),
					    (uint32_t)step, (uint64_t)step};
			cr_assert_eq(drift_kv_put(&kv, id, loc), 0);
			if (!present[i])
				live++;
			present[i] = true;
			model[i] = loc;
		} else if (op < 9) { /* delete */
			drift_kv_loc got;
			int rv = drift_kv_del(&kv, id, &got);
			if (present[i]) {
				cr_assert_eq(rv, 0);
				cr_assert_eq(got.version, model[i].version);
				live--;
			} else {
				cr_assert_eq(rv, DRIFT_ENOENT);
			}
			present[i] = false;
		} else { /* lookup */
			drift_kv_loc got;
			int rv = drift_kv_get(&kv, id, &got);
			cr_assert_eq(rv, present[i] ? 0 : DRIFT_ENOENT);
			if (rv == 0)
				cr_assert(got.bucket == model[i].bucket &&
					  got.row == model[i].row &&
					  got.version == model[i].version);
		}
		cr_assert_eq(drift_kv_len(&kv), live);
	}
	for (uint64_t i = 0; i < SPACE; i++) {
		drift_kv_loc got;
		cr_assert_eq(drift_kv_get(&kv, id_of(i), &got),
			     present[i] ? 0 : DRIFT_ENOENT, "id %llu",
			     (unsigned long long)id_of(i));
	}
	drift_kv_free(&kv);
}

DRIFT_TEST(kv, growth_failure_changes_nothing)
{
	drift_kv kv;
	drift_kv_init(&kv);
	uint64_t n = 0;
	/* Fill to the growth threshold. */
	while (kv.cap == 0 || kv.len + 1 <= kv.cap * 7 / 10)
		cr_assert_eq(drift_kv_put(&kv, n++, (drift_kv_loc){0, 0, n}),
			     0);
	size_t cap = kv.cap, len = kv.len;
	drift_failalloc_arm(1, 1);
	cr_assert_eq(drift_kv_put(&kv, UINT64_MAX, (drift_kv_loc){0}),
		     DRIFT_ENOMEM);
	/* Replacing an existing id never needs memory. */
	cr_assert_eq(drift_kv_put(&kv, 0, (drift_kv_loc){7, 7, 7}), 0);
	drift_failalloc_arm(0, 0);
	cr_assert_eq(kv.cap, cap);
	cr_assert_eq(kv.len, len);
	drift_kv_loc got;
	cr_assert_eq(drift_kv_get(&kv, UINT64_MAX, &got), DRIFT_ENOENT);
	cr_assert_eq(drift_kv_get(&kv, 0, &got), 0);
	cr_assert_eq(got.row, 7);
	for (uint64_t i = 1; i < n; i++)
		cr_assert_eq(drift_kv_get(&kv, i, &got), 0);
	drift_kv_free(&kv);
}

DRIFT_TEST(kv, empty_table)
{
	drift_kv kv;
	drift_kv_init(&kv);
	drift_kv_loc got;
	cr_assert_eq(drift_kv_get(&kv, 5, &got), DRIFT_ENOENT);
	cr_assert_eq(drift_kv_del(&kv, 5, NULL), DRIFT_ENOENT);
	cr_assert_eq(drift_kv_reserve(&kv, 1000), 0);
	cr_assert_geq(kv.cap * 7 / 10, 1000);
	drift_kv_free(&kv);
}
