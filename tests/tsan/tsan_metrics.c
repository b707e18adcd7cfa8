/*
 * tsan-metrics: the metrics registry (common/metrics.c) under
 * ThreadSanitizer, as a plain executable. Built and run by
 * tests/tsan/run.sh.
 *
 * WRITERS threads create series of a labelled counter and a histogram as
 * they go (every thread the same label values, so creations race) and
 * update them, and a gauge; SCRAPERS threads render without pause, and
 * one adds and removes a collector. Every rendering must hold cumulative
 * buckets with _count equal to +Inf. At the end the counters must hold
 * exactly what was added. Exits 0 when all holds (ThreadSanitizer exits
 * 66 on a race).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/metrics.h"

#define WRITERS 3
#define SCRAPERS 2
#define ROUNDS 20000
#define LABELS 8

static drift_metrics *reg;
static drift_metric_family *calls, *lat;
static drift_series *gauge;
static atomic_int writers_left = WRITERS;
static atomic_int failures;

static void fail(const char *what)
{
	fprintf(stderr, "tsan-metrics: %s\n", what);
	atomic_fetch_add(&failures, 1);
}

static void *writer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		char v[16];
		snprintf(v, sizeof(v), "m%d", i % LABELS);
		const char *values[] = {v};
		drift_series *c, *h;
		if (drift_metrics_series(calls, values, &c) != 0 ||
		    drift_metrics_series(lat, values, &h) != 0) {
			fail("series");
			break;
		}
		drift_metrics_inc(c);
		drift_metrics_observe(h, (double)(i % 1000) * 1e-5);
		drift_metrics_gauge_add(gauge, 1);
		drift_metrics_gauge_add(gauge, -1);
	}
	atomic_fetch_sub(&writers_left, 1);
	return NULL;
}

static void collect(drift_metrics_out *o, void *ctx)
{
	(void)ctx;
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "drift_collected", "C.", NULL,
			   NULL, 0, 1);
}

/* Buckets of each series cumulative, _count the last bucket. */
static void check(const char *t)
{
	double prev = -1;
	for (const char *p = t; (p = strstr(p, "drift_lat_seconds_")) != NULL;
	     p++) {
		const char *sp = strchr(p, ' ');
		if (sp == NULL)
			break;
		double v = strtod(sp + 1, NULL);
		if (strncmp(p, "drift_lat_seconds_bucket", 24) == 0) {
			if (v < prev)
				fail("buckets not cumulative");
			prev = v;
		} else if (strncmp(p, "drift_lat_seconds_count", 23) == 0) {
			if (v != prev)
				fail("_count is not the +Inf bucket");
			prev = -1;
		} else {
			/* _sum: the next series' buckets start again. */
		}
	}
}

static void *scraper(void *arg)
{
	long id = (long)arg;
	int n = 0;
	while (atomic_load(&writers_left) > 0 || n < 5) {
		if (id == 0 && n % 4 == 0)
			drift_metrics_add_collector(reg, collect, NULL);
		char *t;
		size_t len;
		if (drift_metrics_render(reg, &t, &len) != 0) {
			fail("render");
			break;
		}
		check(t);
		drift_free(t);
		if (id == 0 && n % 4 == 2)
			drift_metrics_remove_collector(reg, collect, NULL);
		n++;
	}
	if (id == 0)
		drift_metrics_remove_collector(reg, collect, NULL);
	return NULL;
}

int main(void)
{
	if (drift_metrics_new(&reg) != 0)
		return 1;
	const char *l[] = {"method"};
	if (drift_metrics_family(reg, DRIFT_METRIC_COUNTER, "drift_calls_total",
				 "Calls.", l, 1, NULL, 0, &calls) != 0 ||
	    drift_metrics_family(reg, DRIFT_METRIC_HISTOGRAM,
				 "drift_lat_seconds", "Latency.", l, 1,
				 drift_metrics_latency_bounds,
				 drift_metrics_latency_nbounds, &lat) != 0)
		return 1;
	gauge = drift_metrics_simple(reg, DRIFT_METRIC_GAUGE, "drift_g", "G.",
				     NULL, 0);
	pthread_t w[WRITERS], s[SCRAPERS];
	for (long i = 0; i < SCRAPERS; i++)
		pthread_create(&s[i], NULL, scraper, (void *)i);
	for (int i = 0; i < WRITERS; i++)
		pthread_create(&w[i], NULL, writer, NULL);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < SCRAPERS; i++)
		pthread_join(s[i], NULL);
	double total = 0, hist = 0;
	for (int i = 0; i < LABELS; i++) {
		char v[16];
		snprintf(v, sizeof(v), "m%d", i);
		const char *values[] = {v};
		drift_series *c, *h;
		drift_metrics_series(calls, values, &c);
		drift_metrics_series(lat, values, &h);
		total += drift_metrics_value(c);
		hist += drift_metrics_value(h);
	}
	if (total != (double)WRITERS * ROUNDS || hist != total)
		fail("counts lost");
	if (drift_metrics_value(gauge) != 0)
		fail("gauge adds lost");
	drift_metrics_free(reg);
	int f = atomic_load(&failures);
	printf("tsan-metrics: %s (%d writers x %d rounds, %d scrapers)\n",
	       f ? "FAILED" : "ok", WRITERS, ROUNDS, SCRAPERS);
	return f ? 1 : 0;
}
