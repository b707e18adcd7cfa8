/* Tests of common/clock: the system clock and the manual test clock. */
#include <time.h>

#include "common/clock.h"
#include "drift_test.h"

DRIFT_TEST(clock, system_clock_moves_forward_and_sleeps)
{
	const drift_clock *c = drift_clock_system();
	uint64_t t0 = drift_clock_mono(c);
	drift_clock_sleep(c, 2 * DRIFT_NS_PER_MS);
	uint64_t t1 = drift_clock_mono(c);
	cr_assert_geq(t1 - t0, 2 * DRIFT_NS_PER_MS);
	cr_assert_geq(drift_now_ns(), t1);

	uint64_t wall_s = drift_clock_wall(c) / DRIFT_NS_PER_S;
	uint64_t now = (uint64_t)time(NULL);
	cr_assert(wall_s + 2 >= now && wall_s <= now + 2,
		  "wall clock %llu vs time() %llu", (unsigned long long)wall_s,
		  (unsigned long long)now);
}

DRIFT_TEST(clock, manual_clock_moves_only_when_told)
{
	drift_manual_clock mc;
	drift_manual_clock_init(&mc, 5 * DRIFT_NS_PER_S);
	const drift_clock *c = &mc.clock;
	cr_assert_eq(drift_clock_mono(c), 0);
	cr_assert_eq(drift_clock_wall(c), 5 * DRIFT_NS_PER_S);
	drift_manual_clock_advance(&mc, 7);
	cr_assert_eq(drift_clock_mono(c), 7);
	/* Sleeping on a manual clock advances it and returns at once. */
	drift_clock_sleep(c, 10 * DRIFT_NS_PER_S);
	cr_assert_eq(drift_clock_mono(c), 10 * DRIFT_NS_PER_S + 7);
	cr_assert_eq(drift_clock_wall(c), 15 * DRIFT_NS_PER_S + 7);
}
