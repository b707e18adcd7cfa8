/*
 * The progress bar of long drift-cli work (load, bench): rows done of the
 * total, the rate and the time left, redrawn in place on stderr at most
 * ten times a second. Only when stderr is a terminal: otherwise it prints
 * nothing and the command prints one summary line itself.
 */
#ifndef DRIFT_CLI_PROGRESS_H
#define DRIFT_CLI_PROGRESS_H

#include <stdbool.h>
#include <stdint.h>

typedef struct drift_progress {
	bool on;	   /* stderr is a terminal */
	const char *unit;  /* "rows" */
	uint64_t total;	   /* 0: unknown */
	uint64_t base;	   /* done already at the start: the rate is after */
	uint64_t start_ns; /* monotonic */
	uint64_t drawn_ns; /* last redraw */
} drift_progress;

void drift_progress_init(drift_progress *p, const char *unit, uint64_t total);

/* done units so far; redraws when 100 ms have passed since the last. */
void drift_progress_update(drift_progress *p, uint64_t done);

/* Draws the final state and ends the line. */
void drift_progress_end(drift_progress *p, uint64_t done);

#endif /* DRIFT_CLI_PROGRESS_H */
