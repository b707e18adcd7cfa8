/*
 * An elastic thread pool: FIFO jobs run by at least `min` and at most `max`
 * threads.
 *
 * A job that finds no idle thread starts a new one while fewer than max run,
 * so jobs that block for long (a streaming call waiting for its peer) do not
 * starve short ones; threads beyond min that stay idle for a few seconds
 * exit. With max threads busy, jobs wait in the queue in order.
 */
#ifndef DRIFT_COMMON_POOL_H
#define DRIFT_COMMON_POOL_H

typedef struct drift_pool drift_pool;
typedef void (*drift_pool_fn)(void *arg);

/* min >= 1 threads start now; max >= min. 0, DRIFT_EINVAL or DRIFT_ENOMEM
 * (or the error of pthread_create, mapped). */
int drift_pool_new(unsigned min, unsigned max, drift_pool **out);

/* Queues fn(arg). 0, DRIFT_ENOMEM, or DRIFT_ECLOSED once the pool is being
 * freed (fn is then never called). */
int drift_pool_submit(drift_pool *p, drift_pool_fn fn, void *arg);

/* Threads running or idle now (for tests and stats). */
unsigned drift_pool_threads(drift_pool *p);

/* Runs every queued job, waits for all threads to exit, frees the pool. */
void drift_pool_free(drift_pool *p);

#endif /* DRIFT_COMMON_POOL_H */
