/* Tests of common/topk: against a full sort of random hits for every k,
 * ties broken by id, fewer hits than k, k = 1. */
#include <stdlib.h>

#include "common/rand.h"
#include "common/topk.h"
#include "drift_test.h"

/* ---- Helpers ---- */

static int cmp_hit(const void *a, const void *b)
{
	drift_hit x = *(const drift_hit *)a, y = *(const drift_hit *)b;
	return drift_hit_less(x, y) ? -1 : drift_hit_less(y, x) ? 1 : 0;
}

/* ---- Cases ---- */

DRIFT_TEST(topk, matches_full_sort)
{
	enum { N = 2000 };
	static drift_hit all[N], sorted[N], buf[N];
	drift_rand r;
	drift_rand_seed(&r, 11);
	for (size_t i = 0; i < N; i++) {
		/* Few distinct distances: many ties, broken by id. */
		all[i].id = drift_rand_next(&r);
		all[i].distance = (float)drift_rand_below(&r, 50);
		sorted[i] = all[i];
	}
	qsort(sorted, N, sizeof(drift_hit), cmp_hit);
	static const size_t ks[] = {1, 2, 10, 100, 1999, 2000, 3000};
	for (size_t t = 0; t < sizeof(ks) / sizeof(ks[0]); t++) {
		drift_topk tk;
		drift_topk_init(&tk, buf, ks[t]);
		for (size_t i = 0; i < N; i++)
			drift_topk_push(&tk, all[i]);
		/* Full: the bound is the k-th best distance. */
		if (ks[t] <= N)
			cr_assert_float_eq(drift_topk_bound(&tk),
					   sorted[ks[t] - 1].distance, 0);
		size_t n = drift_topk_sort(&tk);
		size_t want = ks[t] < N ? ks[t] : N;
		cr_assert_eq(n, want);
		for (size_t i = 0; i < n; i++) {
			cr_assert_eq(buf[i].id, sorted[i].id, "k %zu pos %zu",
				     ks[t], i);
			cr_assert_float_eq(buf[i].distance, sorted[i].distance,
					   0);
		}
	}
}

DRIFT_TEST(topk, bound_and_empty)
{
	drift_hit buf[3];
	drift_topk tk;
	drift_topk_init(&tk, buf, 3);
	cr_assert(drift_topk_bound(&tk) > 1e38f, "+inf while not full");
	cr_assert_eq(drift_topk_sort(&tk), 0);
	drift_topk_init(&tk, buf, 3);
	drift_topk_push(&tk, (drift_hit){.id = 1, .distance = 5});
	drift_topk_push(&tk, (drift_hit){.id = 2, .distance = 3});
	drift_topk_push(&tk, (drift_hit){.id = 3, .distance = 4});
	cr_assert_float_eq(drift_topk_bound(&tk), 5, 0);
	drift_topk_push(&tk, (drift_hit){.id = 4, .distance = 9});
	cr_assert_float_eq(drift_topk_bound(&tk), 5, 0);
	drift_topk_push(&tk, (drift_hit){.id = 0, .distance = 5});
	cr_assert_float_eq(drift_topk_bound(&tk), 5, 0);
	cr_assert_eq(drift_topk_sort(&tk), 3);
	cr_assert_eq(buf[0].id, 2);
	cr_assert_eq(buf[1].id, 3);
	cr_assert_eq(buf[2].id, 0, "tie at 5: the smaller id wins");
}
