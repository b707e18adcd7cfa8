#include "common/grpc/server_metrics.h"

#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "common/alloc.h"
#include "common/grpc/status.h"
#include "common/metrics.h"

#define CODES 17

struct drift_grpc_method_metrics {
	struct drift_grpc_method_metrics *next;
	char *path;
	drift_series *latency;
	_Atomic(drift_series *) by_code[CODES];
};

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static struct drift_grpc_method_metrics *methods;
static drift_metric_family *requests, *durations;
static drift_series *in_flight, *connections, *http_refused;
static struct drift_grpc_method_metrics *unknown_method;

static struct drift_grpc_method_metrics *make(const char *path)
{
	struct drift_grpc_method_metrics *mm = drift_calloc(1, sizeof(*mm));
	if (mm == NULL || (mm->path = drift_strdup(path)) == NULL) {
		drift_free(mm);
		return NULL;
	}
	/* "drift.v1.Drift/Search": the path without its leading slash. */
	const char *v[] = {path[0] == '/' ? path + 1 : path};
	if (durations != NULL)
		drift_metrics_series(durations, v, &mm->latency);
	mm->next = methods;
	methods = mm;
	return mm;
}

/* Under mu: the families, once. */
static void init_locked(void)
{
	if (requests != NULL)
		return;
	drift_metrics *r = drift_metrics_default();
	const char *rl[] = {"method", "code"};
	const char *dl[] = {"method"};
	drift_metrics_family(r, DRIFT_METRIC_COUNTER,
			     "drift_grpc_requests_total",
			     "gRPC calls answered, by method and status code.",
			     rl, 2, NULL, 0, &requests);
	drift_metrics_family(
		r, DRIFT_METRIC_HISTOGRAM,
		"drift_grpc_request_duration_seconds",
		"gRPC call latency, from the request headers to the status.",
		dl, 1, drift_metrics_latency_bounds,
		drift_metrics_latency_nbounds, &durations);
	in_flight = drift_metrics_simple(
		r, DRIFT_METRIC_GAUGE, "drift_grpc_calls_in_flight",
		"gRPC handlers running or queued for a worker.", NULL, 0);
	connections = drift_metrics_simple(r, DRIFT_METRIC_GAUGE,
					   "drift_grpc_connections",
					   "Open HTTP/2 connections.", NULL, 0);
	http_refused = drift_metrics_simple(
		r, DRIFT_METRIC_COUNTER, "drift_grpc_http_refused_total",
		"Requests answered with an HTTP error instead of a gRPC "
		"status (not POST, not application/grpc, bad te).",
		NULL, 0);
	unknown_method = make("unknown");
}

drift_grpc_method_metrics *drift_grpc_method_metrics_get(const char *path)
{
	pthread_mutex_lock(&mu);
	init_locked();
	struct drift_grpc_method_metrics *mm = methods;
	while (mm != NULL && strcmp(mm->path, path) != 0)
		mm = mm->next;
	if (mm == NULL)
		mm = make(path);
	pthread_mutex_unlock(&mu);
	return mm;
}

void drift_grpc_metrics_record(drift_grpc_method_metrics *mm, int code,
			       uint64_t ns)
{
	if (mm == NULL) {
		pthread_mutex_lock(&mu);
		init_locked();
		mm = unknown_method;
		pthread_mutex_unlock(&mu);
		if (mm == NULL)
			return;
	}
	if (code < 0 || code >= CODES)
		code = DRIFT_GRPC_UNKNOWN;
	drift_series *c =
		atomic_load_explicit(&mm->by_code[code], memory_order_acquire);
	if (c == NULL && requests != NULL) {
		const char *v[] = {mm->path[0] == '/' ? mm->path + 1 : mm->path,
				   drift_grpc_code_name(code)};
		if (drift_metrics_series(requests, v, &c) == 0)
			atomic_store_explicit(&mm->by_code[code], c,
					      memory_order_release);
	}
	drift_metrics_inc(c);
	if (ns > 0)
		drift_metrics_observe(mm->latency, (double)ns / 1e9);
}

void drift_grpc_metrics_in_flight(int d)
{
	drift_metrics_gauge_add(in_flight, d);
}

void drift_grpc_metrics_connections(int d)
{
	drift_metrics_gauge_add(connections, d);
}

void drift_grpc_metrics_http_refused(void)
{
	drift_metrics_inc(http_refused);
}
