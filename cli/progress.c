#include "cli/progress.h"

#include <inttypes.h>
#include <stdio.h>
#include <unistd.h>

#include "common/clock.h"

#define BAR_WIDTH 30

void drift_progress_init(drift_progress *p, const char *unit, uint64_t total)
{
	p->on = isatty(STDERR_FILENO) == 1;
	p->unit = unit;
	p->total = total;
	p->base = 0;
	p->start_ns = drift_now_ns();
	p->drawn_ns = 0;
}

static void draw(drift_progress *p, uint64_t done, uint64_t now)
{
	double secs = (double)(now - p->start_ns) / 1e9;
	double rate = secs > 0 && done > p->base
			      ? (double)(done - p->base) / secs
			      : 0;
	char bar[BAR_WIDTH + 1];
	unsigned fill = p->total > 0 ? (unsigned)((double)done /
						  (double)p->total * BAR_WIDTH)
				     : 0;
	for (unsigned i = 0; i < BAR_WIDTH; i++)
		bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
	bar[BAR_WIDTH] = '\0';
	/* \r and "erase to end of line": the bar redraws in place. */
	fprintf(stderr, "\r\033[K[%s] %" PRIu64 "/%" PRIu64 " %s  %.0f %s/s",
		bar, done, p->total, p->unit, rate, p->unit);
	if (p->total > done && rate > 0) {
		uint64_t left = (uint64_t)((double)(p->total - done) / rate);
		fprintf(stderr, "  ETA %" PRIu64 ":%02" PRIu64, left / 60,
			left % 60);
	}
	fflush(stderr);
	p->drawn_ns = now;
}

void drift_progress_update(drift_progress *p, uint64_t done)
{
	if (!p->on)
		return;
	uint64_t now = drift_now_ns();
	if (p->drawn_ns != 0 && now - p->drawn_ns < 100000000ull)
		return;
	draw(p, done, now);
}

void drift_progress_end(drift_progress *p, uint64_t done)
{
	if (!p->on)
		return;
	draw(p, done, drift_now_ns());
	fputc('\n', stderr);
	fflush(stderr);
}
