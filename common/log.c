#include "common/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"

atomic_int drift_log_threshold = DRIFT_LOG_INFO;

/* Sink and its context are swapped together under this pair: tests install a
 * sink before starting threads, so a plain pair of atomics is enough. */
static _Atomic(drift_log_sink) log_sink;
static _Atomic(void *) log_sink_ctx;
static _Atomic(const drift_clock *) log_clock;

static const char *const level_names[] = {
	"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF",
};

void drift_log_set_level(int level)
{
	if (level < DRIFT_LOG_TRACE)
		level = DRIFT_LOG_TRACE;
	if (level > DRIFT_LOG_OFF)
		level = DRIFT_LOG_OFF;
	atomic_store(&drift_log_threshold, level);
}

int drift_log_parse_level(const char *name, int *level)
{
	for (int i = DRIFT_LOG_TRACE; i <= DRIFT_LOG_OFF; i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*level = i;
			return 0;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*level = DRIFT_LOG_WARN;
		return 0;
	}
	return DRIFT_EINVAL;
}

const char *drift_log_level_name(int level)
{
	if (level < DRIFT_LOG_TRACE || level > DRIFT_LOG_OFF)
		return "?";
	return level_names[level];
}

void drift_log_set_sink(drift_log_sink sink, void *ctx)
{
	atomic_store(&log_sink_ctx, ctx);
	atomic_store(&log_sink, sink);
}

void drift_log_set_clock(const drift_clock *clock)
{
	atomic_store(&log_clock, clock);
}

/* Writes "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" for wall time ns into out. */
static size_t format_time(char *out, size_t cap, uint64_t ns)
{
	time_t secs = (time_t)(ns / DRIFT_NS_PER_S);
	unsigned usec = (unsigned)((ns % DRIFT_NS_PER_S) / DRIFT_NS_PER_US);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	int m = snprintf(out + n, cap - n, ".%06uZ", usec);
	return n + (m > 0 ? (size_t)m : 0);
}

void drift_log_emit(int level, const char *file, int line, const char *fmt, ...)
{
	char buf[DRIFT_LOG_LINE_MAX];
	const drift_clock *clock = atomic_load(&log_clock);
	if (clock == NULL)
		clock = drift_clock_system();

	size_t n = format_time(buf, sizeof(buf), drift_clock_wall(clock));
	int m = snprintf(buf + n, sizeof(buf) - n, " %-5s %s:%d ",
			 drift_log_level_name(level), file, line);
	if (m > 0)
		n += (size_t)m;
	if (n < sizeof(buf) - 1) {
		va_list ap;
		va_start(ap, fmt);
		m = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
		va_end(ap);
		if (m > 0)
			n += (size_t)m;
	}
	/* Leave room for the newline; a cut line ends in "...". */
	if (n >= sizeof(buf) - 1) {
		n = sizeof(buf) - 1;
		memcpy(buf + n - 3, "...", 3);
	}
	buf[n++] = '\n';

	drift_log_sink sink = atomic_load(&log_sink);
	if (sink != NULL) {
		sink(atomic_load(&log_sink_ctx), level, buf, n);
		return;
	}
	/* stderr: one write per line; a failed log write has nowhere to go. */
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
}
