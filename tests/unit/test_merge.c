/* Tests of common/merge: the best k distinct ids of many shard answers. */
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/rand.h"
#include "common/merge.h"
#include "drift_test.h"

/* ---- Helpers ---------------------------------------------------------- */

static int hit_cmp(const void *a, const void *b)
{
	drift_hit x = *(const drift_hit *)a, y = *(const drift_hit *)b;
	return drift_hit_less(x, y) ? -1 : drift_hit_less(y, x) ? 1 : 0;
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(merge, interleaved_lists)
{
	drift_hit a[] = {{1, 0.1f}, {3, 0.3f}, {5, 0.5f}};
	drift_hit b[] = {{2, 0.2f}, {4, 0.4f}};
	drift_hit c[] = {{0, 0.0f}};
	const drift_hit *lists[] = {a, b, c};
	size_t lens[] = {3, 2, 1};
	drift_hit out[4];
	size_t n = 99;
	cr_assert_eq(drift_merge_topk(lists, lens, 3, 4, out, &n), 0);
	cr_assert_eq(n, 4);
	for (size_t i = 0; i < n; i++)
		cr_assert_eq(out[i].id, i);
}

DRIFT_TEST(merge, duplicates_keep_the_best_distance)
{
	drift_hit a[] = {{7, 0.5f}, {8, 0.6f}};
	drift_hit b[] = {{7, 0.2f}, {9, 0.7f}};
	const drift_hit *lists[] = {a, b};
	size_t lens[] = {2, 2};
	drift_hit out[10];
	size_t n;
	cr_assert_eq(drift_merge_topk(lists, lens, 2, 10, out, &n), 0);
	cr_assert_eq(n, 3, "ids are distinct");
	cr_assert_eq(out[0].id, 7);
	cr_assert_float_eq(out[0].distance, 0.2f, 0);
	cr_assert_eq(out[1].id, 8);
	cr_assert_eq(out[2].id, 9);
}

DRIFT_TEST(merge, ties_break_by_id)
{
	drift_hit a[] = {{9, 1.0f}, {10, 1.0f}};
	drift_hit b[] = {{UINT64_MAX, 0.5f}, {0, 1.0f}};
	const drift_hit *lists[] = {a, b};
	size_t lens[] = {2, 2};
	drift_hit out[3];
	size_t n;
	cr_assert_eq(drift_merge_topk(lists, lens, 2, 3, out, &n), 0);
	cr_assert_eq(out[0].id, UINT64_MAX);
	cr_assert_eq(out[1].id, 0);
	cr_assert_eq(out[2].id, 9);
}

DRIFT_TEST(merge, edges_and_errors)
{
	drift_hit a[] = {{1, 0.5f}, {2, 0.1f}};
	const drift_hit *lists[] = {a};
	size_t lens[] = {2};
	drift_hit out[2];
	size_t n = 77;
	cr_assert_eq(drift_merge_topk(lists, lens, 1, 2, out, &n), DRIFT_EINVAL,
		     "a list out of order is refused");
	cr_assert_eq(n, 77);
	lens[0] = 0;
	cr_assert_eq(drift_merge_topk(lists, lens, 1, 2, out, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(drift_merge_topk(NULL, NULL, 0, 5, out, &n), 0);
	cr_assert_eq(n, 0);
	lens[0] = 1;
	drift_failalloc_arm(1, 0);
	cr_assert_eq(drift_merge_topk(lists, lens, 1, 2, out, &n),
		     DRIFT_ENOMEM);
	drift_failalloc_arm(0, 0);
	cr_assert_eq(drift_merge_topk(lists, lens, 1, 0, out, &n), 0);
	cr_assert_eq(n, 0);
}

/* Against a brute force on random shard answers with overlapping ids. */
DRIFT_TEST(merge, matches_brute_force)
{
	enum { LISTS = 7, PER = 60, K = 50 };
	static drift_hit data[LISTS][PER], all[LISTS * PER], want[K], out[K];
	drift_rand r;
	drift_rand_seed(&r, 3);
	for (int round = 0; round < 50; round++) {
		const drift_hit *lists[LISTS];
		size_t lens[LISTS];
		size_t total = 0;
		for (int l = 0; l < LISTS; l++) {
			lens[l] = drift_rand_below(&r, PER + 1);
			for (size_t j = 0; j < lens[l]; j++) {
				data[l][j].id = drift_rand_below(&r, 300);
				data[l][j].distance =
					(float)drift_rand_below(&r, 100);
			}
			qsort(data[l], lens[l], sizeof(drift_hit), hit_cmp);
			lists[l] = data[l];
			memcpy(all + total, data[l],
			       lens[l] * sizeof(drift_hit));
			total += lens[l];
		}
		qsort(all, total, sizeof(drift_hit), hit_cmp);
		size_t nw = 0;
		for (size_t i = 0; i < total && nw < K; i++) {
			size_t j = 0;
			while (j < nw && want[j].id != all[i].id)
				j++;
			if (j == nw)
				want[nw++] = all[i];
		}
		size_t n;
		cr_assert_eq(drift_merge_topk(lists, lens, LISTS, K, out, &n),
			     0);
		cr_assert_eq(n, nw);
		for (size_t i = 0; i < n; i++) {
			cr_assert_eq(out[i].id, want[i].id, "round %d", round);
			cr_assert_float_eq(out[i].distance, want[i].distance,
					   0);
		}
	}
}
