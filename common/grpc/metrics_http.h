/*
 * The /metrics endpoint: a small HTTP/1.1 server on a libuv loop thread of
 * its own that answers GET (and HEAD) /metrics with the rendering of a
 * metrics registry (common/metrics.h), so Prometheus can scrape every
 * process on its --metrics-listen address.
 *
 * One request per connection (the response says Connection: close);
 * requests over 8 KiB of headers, or not complete within 10 s, are dropped.
 * Anything but GET/HEAD is 405, another path 404 ("/" lists the path).
 * Rendering runs on this thread, so a scrape never holds up a gRPC loop or
 * a handler (see metrics.h for what a scrape reads and how).
 */
#ifndef DRIFT_COMMON_GRPC_METRICS_HTTP_H
#define DRIFT_COMMON_GRPC_METRICS_HTTP_H

#include "common/err.h"
#include "common/metrics.h"

typedef struct drift_metrics_http drift_metrics_http;

/* Binds addr ("host:port"; port 0: any free one) and starts serving reg
 * (which must outlive the server). 0 and *out, or an error with a message
 * (bad address, address in use, DRIFT_ENOMEM). */
int drift_metrics_http_start(drift_metrics *reg, const char *addr,
			     drift_metrics_http **out, drift_err *err);

/* The bound port (the real one when 0 was asked for). */
int drift_metrics_http_port(const drift_metrics_http *h);

/* Scrapes answered so far. */
unsigned long long drift_metrics_http_scrapes(const drift_metrics_http *h);

/* Closes the listener and every connection, stops the thread and frees.
 * NULL is ignored. */
void drift_metrics_http_stop(drift_metrics_http *h);

#endif /* DRIFT_COMMON_GRPC_METRICS_HTTP_H */
