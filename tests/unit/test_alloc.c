/* Tests of common/alloc: the allocator interface and failure injection. */
#include <stdint.h>
#include <string.h>

#include "common/abuf.h"
#include "common/alloc.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_alloc_set(NULL);
}

TestSuite(alloc, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static long counted;

static void *count_malloc(void *ctx, size_t size)
{
	(void)ctx;
	counted++;
	return drift_alloc_libc()->malloc(NULL, size);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(alloc, nth_allocation_fails_once)
{
	drift_failalloc_arm(3, 0);
	void *a = drift_malloc(8), *b = drift_calloc(2, 8);
	void *c = drift_malloc(8), *d = drift_realloc(NULL, 8);
	cr_assert_not_null(a);
	cr_assert_not_null(b);
	cr_assert_null(c, "the third allocation must fail");
	cr_assert_not_null(d, "a non-sticky failure fires once");
	cr_assert_eq(drift_failalloc_seen(), 4);
	cr_assert(drift_failalloc_fired());
	drift_free(a);
	drift_free(b);
	drift_free(d);
}

DRIFT_TEST(alloc, sticky_failure_keeps_failing)
{
	drift_failalloc_arm(2, 1);
	void *a = drift_malloc(8);
	cr_assert_not_null(a);
	cr_assert_null(drift_malloc(8));
	cr_assert_null(drift_aligned_alloc(64, 64));
	cr_assert_null(drift_strdup("x"));
	drift_failalloc_arm(0, 0);
	cr_assert_not(drift_failalloc_fired());
	void *b = drift_malloc(8);
	cr_assert_not_null(b, "disarmed: allocations succeed");
	drift_free(a);
	drift_free(b);
}

DRIFT_TEST(alloc, overflowing_sizes_are_refused)
{
	cr_assert_null(drift_calloc(SIZE_MAX / 2, 3));
	cr_assert_null(drift_mallocarray(SIZE_MAX / 4, 8));
	void *p = drift_mallocarray(0, 8);
	cr_assert_not_null(p, "zero-size allocations give a pointer");
	drift_free(p);
	drift_free(NULL);
}

DRIFT_TEST(alloc, aligned_allocations)
{
	size_t aligns[] = {sizeof(void *), DRIFT_ALIGN_CACHE, DRIFT_ALIGN_PAGE};
	for (size_t i = 0; i < 3; i++) {
		uint8_t *p = drift_aligned_alloc(aligns[i], 100);
		cr_assert_not_null(p);
		cr_assert(drift_is_aligned(p, aligns[i]));
		memset(p, 1, 100);
		drift_free(p);
	}
	cr_assert_null(drift_aligned_alloc(48, 100), "not a power of two");
	cr_assert_null(drift_aligned_alloc(2, 100), "below sizeof(void *)");
}

DRIFT_TEST(alloc, custom_allocator_is_used)
{
	drift_allocator a = *drift_alloc_libc();
	a.malloc = count_malloc;
	counted = 0;
	drift_alloc_set(&a);
	char *s = drift_strdup("drift");
	char *t = drift_strndup("drifting", 5);
	drift_alloc_set(NULL);
	cr_assert_eq(counted, 2);
	cr_assert_str_eq(s, "drift");
	cr_assert_str_eq(t, "drift");
	drift_free(s);
	drift_free(t);
}
