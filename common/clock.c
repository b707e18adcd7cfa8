#include "common/clock.h"

#include <errno.h>
#include <time.h>

static uint64_t read_clock(clockid_t id)
{
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * DRIFT_NS_PER_S + (uint64_t)ts.tv_nsec;
}

static uint64_t system_mono(const drift_clock *c)
{
	(void)c;
	return read_clock(CLOCK_MONOTONIC);
}

static uint64_t system_wall(const drift_clock *c)
{
	(void)c;
	return read_clock(CLOCK_REALTIME);
}

static void system_sleep(const drift_clock *c, uint64_t ns)
{
	(void)c;
	struct timespec ts = {
		.tv_sec = (time_t)(ns / DRIFT_NS_PER_S),
		.tv_nsec = (long)(ns % DRIFT_NS_PER_S),
	};
	while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static const drift_clock system_clock = {
	.mono_ns = system_mono,
	.wall_ns = system_wall,
	.sleep_ns = system_sleep,
};

const drift_clock *drift_clock_system(void)
{
	return &system_clock;
}

uint64_t drift_now_ns(void)
{
	return read_clock(CLOCK_MONOTONIC);
}

static uint64_t manual_mono(const drift_clock *c)
{
	const drift_manual_clock *mc = (const drift_manual_clock *)c;
	return atomic_load(&mc->mono);
}

static uint64_t manual_wall(const drift_clock *c)
{
	const drift_manual_clock *mc = (const drift_manual_clock *)c;
	return atomic_load(&mc->wall);
}

static void manual_sleep(const drift_clock *c, uint64_t ns)
{
	drift_manual_clock_advance((drift_manual_clock *)c, ns);
}

void drift_manual_clock_init(drift_manual_clock *mc, uint64_t wall_ns)
{
	mc->clock.mono_ns = manual_mono;
	mc->clock.wall_ns = manual_wall;
	mc->clock.sleep_ns = manual_sleep;
	atomic_init(&mc->mono, 0);
	atomic_init(&mc->wall, wall_ns);
}

void drift_manual_clock_advance(drift_manual_clock *mc, uint64_t ns)
{
	atomic_fetch_add(&mc->mono, ns);
	atomic_fetch_add(&mc->wall, ns);
}
