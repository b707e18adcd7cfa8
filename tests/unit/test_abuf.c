/* Tests of common/abuf: alignment through growth, padding, failures. */
#include <stdint.h>
#include <string.h>

#include "common/abuf.h"
#include "common/alloc.h"
#include "common/err.h"
#include "drift_test.h"

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
}

TestSuite(abuf, .fini = teardown);

DRIFT_TEST(abuf, keeps_alignment_and_contents_through_growth)
{
	size_t aligns[] = {DRIFT_ALIGN_CACHE, DRIFT_ALIGN_PAGE};
	for (int a = 0; a < 2; a++) {
		drift_abuf b;
		drift_abuf_init(&b, aligns[a]);
		cr_assert_null(b.data);
		for (uint32_t i = 0; i < 100000; i++) {
			cr_assert_eq(drift_abuf_append(&b, &i, sizeof(i)), 0);
			cr_assert(drift_is_aligned(b.data, aligns[a]));
		}
		cr_assert_eq(b.len, 400000);
		cr_assert_eq(b.cap % aligns[a], 0);
		for (uint32_t i = 0; i < 100000; i++) {
			uint32_t v;
			memcpy(&v, b.data + 4 * i, 4);
			cr_assert_eq(v, i);
		}
		drift_abuf_free(&b);
		cr_assert_null(b.data);
		cr_assert_eq(b.len, 0);
	}
}

DRIFT_TEST(abuf, pad_to_page_with_zeros)
{
	drift_abuf b;
	drift_abuf_init(&b, DRIFT_ALIGN_PAGE);
	cr_assert_eq(drift_abuf_append(&b, "abc", 3), 0);
	cr_assert_eq(drift_abuf_pad(&b, DRIFT_ALIGN_PAGE), 0);
	cr_assert_eq(b.len, DRIFT_ALIGN_PAGE);
	cr_assert_eq(memcmp(b.data, "abc", 3), 0);
	for (size_t i = 3; i < b.len; i++)
		cr_assert_eq(b.data[i], 0);
	/* Already aligned: nothing added. */
	cr_assert_eq(drift_abuf_pad(&b, DRIFT_ALIGN_PAGE), 0);
	cr_assert_eq(b.len, DRIFT_ALIGN_PAGE);
	cr_assert_eq(drift_abuf_append(&b, NULL, 10), 0);
	cr_assert_eq(b.data[DRIFT_ALIGN_PAGE + 9], 0);
	drift_abuf_clear(&b);
	cr_assert_eq(b.len, 0);
	cr_assert_geq(b.cap, 2 * DRIFT_ALIGN_PAGE);
	drift_abuf_free(&b);
	cr_assert_eq(drift_align_up(4097, 4096), 8192);
	cr_assert_eq(drift_align_up(4096, 4096), 4096);
	cr_assert_eq(drift_align_up(0, 64), 0);
}

DRIFT_TEST(abuf, failed_growth_leaves_buffer_unchanged)
{
	drift_abuf b;
	drift_abuf_init(&b, DRIFT_ALIGN_CACHE);
	cr_assert_eq(drift_abuf_append(&b, "hello", 5), 0);
	uint8_t *before = b.data;
	size_t cap = b.cap;
	static uint8_t big[1 << 16];
	drift_failalloc_arm(1, 0);
	cr_assert_eq(drift_abuf_append(&b, big, sizeof(big)), DRIFT_ENOMEM);
	cr_assert(drift_failalloc_fired());
	cr_assert_eq(b.data, before);
	cr_assert_eq(b.len, 5);
	cr_assert_eq(b.cap, cap);
	cr_assert_eq(memcmp(b.data, "hello", 5), 0);
	cr_assert_eq(drift_abuf_append(&b, NULL, SIZE_MAX - 2), DRIFT_ERANGE);
	cr_assert_eq(drift_abuf_reserve(&b, SIZE_MAX), DRIFT_ERANGE);
	cr_assert_eq(b.len, 5);
	drift_abuf_free(&b);
}
