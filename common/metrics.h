/*
 * Metrics: a registry of counters, gauges and histograms, rendered in the
 * Prometheus text exposition format (version 0.0.4) for GET /metrics
 * (common/grpc/metrics_http.h serves it).
 *
 * Two ways to publish a metric:
 *
 *   1. Live series, updated where the event happens. Register a family once
 *      (drift_metrics_family: a name, a help text, label names and, for a
 *      histogram, its bucket bounds), get the series of one label-value
 *      combination once (drift_metrics_series) and keep the pointer; then
 *      drift_metrics_inc / _add / _set / _observe on the hot path are one or
 *      two relaxed atomic operations, no lock, no allocation.
 *
 *   2. Values that already live elsewhere (engine statistics, Raft state,
 *      a replica's lag): register a collector (drift_metrics_add_collector).
 *      It runs at scrape time on the scraping thread and writes samples
 *      with drift_metrics_emit; it must take only the locks its data's own
 *      readers take, never one a request holds for long.
 *
 *   Example, in a module that counts its moves:
 *
 *       static drift_series *moves_done;
 *       ...
 *       drift_metric_family *f;
 *       const char *labels[] = {"result"};
 *       if (drift_metrics_family(drift_metrics_default(),
 *                                DRIFT_METRIC_COUNTER,
 *                                "drift_shard_moves_total",
 *                                "Shard moves finished, by result.",
 *                                labels, 1, NULL, 0, &f) == 0) {
 *               const char *ok[] = {"ok"};
 *               drift_metrics_series(f, ok, &moves_done);
 *       }
 *       ...
 *       drift_metrics_inc(moves_done);   (NULL is ignored)
 *
 * Names. Every family name matches [a-zA-Z_:][a-zA-Z0-9_:]* and starts with
 * "drift_"; counters end in "_total"; label names match
 * [a-zA-Z_][a-zA-Z0-9_]*, do not start with "__", and "le" is reserved for
 * histogram buckets. Values are in base units (seconds, bytes).
 *
 * Scrapes never block updates: families and series are append-only lists
 * published with release stores; a scrape walks them with acquire loads
 * and reads each value atomically. Creating a family or a series takes the
 * registry's mutex (only creators contend on it). A histogram's buckets are
 * read one by one, so a scrape racing observations may see a _sum that
 * lags its _count by the observations in flight; _count is always the
 * +Inf bucket, and buckets are always cumulative.
 *
 * Lifetime: families and series live as long as their registry; the
 * default registry lives as long as the process.
 */
#ifndef DRIFT_COMMON_METRICS_H
#define DRIFT_COMMON_METRICS_H

#include <stddef.h>
#include <stdint.h>

typedef struct drift_metrics drift_metrics;
typedef struct drift_metric_family drift_metric_family;
typedef struct drift_series drift_series;
typedef struct drift_metrics_out drift_metrics_out;

enum drift_metric_type {
	DRIFT_METRIC_COUNTER,
	DRIFT_METRIC_GAUGE,
	DRIFT_METRIC_HISTOGRAM,
};

#define DRIFT_METRICS_LABELS_MAX 4
#define DRIFT_METRICS_BOUNDS_MAX 32

/* Bucket bounds for latencies in seconds: 50 us to 10 s. */
extern const double drift_metrics_latency_bounds[];
extern const size_t drift_metrics_latency_nbounds;

/* The process's registry (created on first use; never freed). */
drift_metrics *drift_metrics_default(void);

/* A registry of its own (tests). 0 or DRIFT_ENOMEM. */
int drift_metrics_new(drift_metrics **out);
/* Frees the registry, its families and series. NULL is ignored. */
void drift_metrics_free(drift_metrics *r);

/* Gets or creates a family. labels: nlabels label names (copied; at most
 * DRIFT_METRICS_LABELS_MAX). bounds: for a histogram, nbounds finite upper
 * bounds, strictly increasing (at most DRIFT_METRICS_BOUNDS_MAX; +Inf is
 * implied), else NULL and 0. Asking again for a name already registered
 * with the same type, labels and bounds returns the same family.
 * 0 and *out, DRIFT_EINVAL (a bad name, label or bounds), DRIFT_EEXIST
 * (the name is registered with another shape), DRIFT_ENOMEM. */
int drift_metrics_family(drift_metrics *r, enum drift_metric_type type,
			 const char *name, const char *help,
			 const char *const *labels, size_t nlabels,
			 const double *bounds, size_t nbounds,
			 drift_metric_family **out);

/* Gets or creates the series of one combination of label values (one value
 * per label of the family, copied; any bytes but NUL, escaped when
 * rendered). Look it up once and keep it: this walks a list. 0 and *out,
 * DRIFT_EINVAL (values NULL for a family with labels), DRIFT_ENOMEM. */
int drift_metrics_series(drift_metric_family *f, const char *const *values,
			 drift_series **out);

/* A family without labels and its one series, in one call; NULL on any
 * error (then the updates below ignore it). */
drift_series *drift_metrics_simple(drift_metrics *r,
				   enum drift_metric_type type,
				   const char *name, const char *help,
				   const double *bounds, size_t nbounds);

/* Updates; m may be NULL (ignored), so a failed registration costs
 * nothing later. Counter: inc/add. Gauge: set/add (negative d lowers it).
 * Histogram: observe. Calling one on a series of another type is a bug
 * (assert). */
void drift_metrics_inc(drift_series *m);
void drift_metrics_add(drift_series *m, uint64_t n);
void drift_metrics_set(drift_series *m, double v);
void drift_metrics_gauge_add(drift_series *m, double d);
void drift_metrics_observe(drift_series *m, double v);

/* Reads, for tests and collectors: a counter's count, a gauge's value, a
 * histogram's count (the +Inf bucket). */
double drift_metrics_value(const drift_series *m);

/* ---- Collectors ---- */

/* Runs at scrape time; writes its samples through drift_metrics_emit. */
typedef void (*drift_metrics_collect_fn)(drift_metrics_out *out, void *ctx);

/* Adds a collector (fn, ctx). 0 or DRIFT_ENOMEM. Collectors run in the
 * order added, each under the registry's collector lock, so removing one
 * waits for a scrape that is running it. */
int drift_metrics_add_collector(drift_metrics *r, drift_metrics_collect_fn fn,
				void *ctx);
/* Removes (fn, ctx); after it returns, fn is not running and will not run
 * with ctx. Unknown pairs are ignored. */
void drift_metrics_remove_collector(drift_metrics *r,
				    drift_metrics_collect_fn fn, void *ctx);

/* One sample of a counter or gauge family, from a collector: name and help
 * as for drift_metrics_family (the first help given for a name is kept),
 * nlabels label names and their values. Samples of one name are rendered
 * together under one # HELP and # TYPE wherever they were emitted.
 * Samples with a bad name or labels are dropped (and counted in
 * drift_metrics_dropped_samples_total). */
void drift_metrics_emit(drift_metrics_out *out, enum drift_metric_type type,
			const char *name, const char *help,
			const char *const *labels, const char *const *values,
			size_t nlabels, double v);

/* ---- Exposition ---- */

/* Renders every family of r and every collector's samples in the text
 * exposition format into a new NUL-terminated buffer (*text, *len; free
 * with drift_free). 0 or DRIFT_ENOMEM. */
int drift_metrics_render(drift_metrics *r, char **text, size_t *len);

/* The Content-Type of what drift_metrics_render writes. */
#define DRIFT_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

#endif /* DRIFT_COMMON_METRICS_H */
