/*
 * The gRPC server's metrics, in the process's default registry
 * (common/metrics.h):
 *
 *   drift_grpc_requests_total{method,code}   calls answered, by method
 *                                            ("drift.v1.Drift/Search": the
 *                                            path without "/", or "unknown"
 *                                            for a path not registered)
 *                                            and gRPC status name
 *   drift_grpc_request_duration_seconds{method}
 *                                            histogram, from the request
 *                                            headers to the status sent
 *   drift_grpc_calls_in_flight               handlers running or queued
 *   drift_grpc_connections                   open HTTP/2 connections
 *   drift_grpc_http_refused_total            requests answered with an
 *                                            HTTP error (not gRPC)
 *
 * A method's series are made when it is registered, and a code's counter
 * the first time that code is answered; after that, a call costs two
 * relaxed atomic adds and a compare-and-swap (the histogram's sum).
 */
#ifndef DRIFT_COMMON_GRPC_SERVER_METRICS_H
#define DRIFT_COMMON_GRPC_SERVER_METRICS_H

#include <stdint.h>

typedef struct drift_grpc_method_metrics drift_grpc_method_metrics;

/* The metrics of a method path (made on first use; they live as long as
 * the process, shared by every server of it). NULL when the registry is
 * out of memory (recording then does nothing). */
drift_grpc_method_metrics *drift_grpc_method_metrics_get(const char *path);

/* One call answered with code after ns nanoseconds (ns 0: unknown, only
 * counted). mm NULL stands for "unknown". */
void drift_grpc_metrics_record(drift_grpc_method_metrics *mm, int code,
			       uint64_t ns);

/* Gauges: d is +1 or -1. */
void drift_grpc_metrics_in_flight(int d);
void drift_grpc_metrics_connections(int d);
void drift_grpc_metrics_http_refused(void);

#endif /* DRIFT_COMMON_GRPC_SERVER_METRICS_H */
