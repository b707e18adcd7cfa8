/*
 * The process's own metrics, read from /proc/self at scrape time by a
 * collector in the default registry (common/metrics.h), the same set every
 * Prometheus client library exports, under the drift_ prefix:
 *
 *   drift_process_resident_memory_bytes   RSS
 *   drift_process_virtual_memory_bytes    address space
 *   drift_process_cpu_seconds_total       user + system CPU time
 *   drift_process_threads                 threads
 *   drift_process_open_fds                open file descriptors
 *   drift_process_max_fds                 the RLIMIT_NOFILE soft limit
 *   drift_process_start_time_seconds      start, Unix time
 *
 * A file that cannot be read leaves its samples out of that scrape.
 */
#ifndef DRIFT_COMMON_PROCESS_METRICS_H
#define DRIFT_COMMON_PROCESS_METRICS_H

/* Adds the collector (once per process; later calls do nothing).
 * 0 or DRIFT_ENOMEM. */
int drift_process_metrics_start(void);

#endif /* DRIFT_COMMON_PROCESS_METRICS_H */
