/*
 * Clocks behind a small interface, so tests can drive time by hand.
 *
 * Code that measures time, waits or stamps records takes a
 * `const drift_clock *` (drift_clock_system() in production). A test gives a
 * drift_manual_clock instead and advances it explicitly; its sleep() returns
 * at once after advancing the clock, so timeouts can be tested without
 * waiting.
 */
#ifndef DRIFT_COMMON_CLOCK_H
#define DRIFT_COMMON_CLOCK_H

#include <stdatomic.h>
#include <stdint.h>

#define DRIFT_NS_PER_US UINT64_C(1000)
#define DRIFT_NS_PER_MS UINT64_C(1000000)
#define DRIFT_NS_PER_S UINT64_C(1000000000)

typedef struct drift_clock {
	/* Monotonic time in nanoseconds from an unspecified origin. */
	uint64_t (*mono_ns)(const struct drift_clock *c);
	/* Wall-clock time in nanoseconds since the Unix epoch (UTC). */
	uint64_t (*wall_ns)(const struct drift_clock *c);
	/* Waits ns nanoseconds of this clock's time. */
	void (*sleep_ns)(const struct drift_clock *c, uint64_t ns);
} drift_clock;

/* The operating system's clocks (CLOCK_MONOTONIC, CLOCK_REALTIME). Static;
 * never NULL. */
const drift_clock *drift_clock_system(void);

static inline uint64_t drift_clock_mono(const drift_clock *c)
{
	return c->mono_ns(c);
}

static inline uint64_t drift_clock_wall(const drift_clock *c)
{
	return c->wall_ns(c);
}

static inline void drift_clock_sleep(const drift_clock *c, uint64_t ns)
{
	c->sleep_ns(c, ns);
}

/* Shortcut for drift_clock_mono(drift_clock_system()). */
uint64_t drift_now_ns(void);

/* A clock that moves only when told to. Thread-safe. */
typedef struct drift_manual_clock {
	drift_clock clock; /* first member: pass &mc->clock */
	_Atomic uint64_t mono;
	_Atomic uint64_t wall;
} drift_manual_clock;

void drift_manual_clock_init(drift_manual_clock *mc, uint64_t wall_ns);
void drift_manual_clock_advance(drift_manual_clock *mc, uint64_t ns);

#endif /* DRIFT_COMMON_CLOCK_H */
