/* Tests of common/pool: every job runs once; a job that blocks does not
 * hold up the others (the pool grows up to max and not beyond); free runs
 * what is queued. */
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

#include "common/err.h"
#include "common/pool.h"
#include "drift_test.h"

/* ---- Helpers ---- */

static atomic_int ran;

static void count(void *arg)
{
	(void)arg;
	atomic_fetch_add(&ran, 1);
}

struct gate {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	int open;
	int waiting;
};

static void block(void *arg)
{
	struct gate *g = arg;
	pthread_mutex_lock(&g->mu);
	g->waiting++;
	pthread_cond_broadcast(&g->cv);
	while (!g->open)
		pthread_cond_wait(&g->cv, &g->mu);
	pthread_mutex_unlock(&g->mu);
	atomic_fetch_add(&ran, 1);
}

/* ---- Cases ---- */

DRIFT_TEST(pool, every_job_runs_once)
{
	drift_pool *p;
	atomic_store(&ran, 0);
	cr_assert_eq(drift_pool_new(2, 4, &p), 0);
	for (int i = 0; i < 10000; i++)
		cr_assert_eq(drift_pool_submit(p, count, NULL), 0);
	drift_pool_free(p);
	cr_assert_eq(atomic_load(&ran), 10000);
}

/* Three jobs block; with min 1 and max 4 the fourth job still runs at
 * once, and a fifth blocking one waits for a free thread. */
DRIFT_TEST(pool, grows_past_blocked_jobs_up_to_max)
{
	struct gate g = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, 0,
			 0};
	drift_pool *p;
	atomic_store(&ran, 0);
	cr_assert_eq(drift_pool_new(1, 4, &p), 0);
	for (int i = 0; i < 4; i++)
		cr_assert_eq(drift_pool_submit(p, block, &g), 0);
	pthread_mutex_lock(&g.mu);
	while (g.waiting < 4)
		pthread_cond_wait(&g.cv, &g.mu);
	pthread_mutex_unlock(&g.mu);
	cr_assert_eq(drift_pool_threads(p), 4);
	cr_assert_eq(drift_pool_submit(p, count, NULL), 0);
	usleep(50000);
	cr_assert_eq(atomic_load(&ran), 0, "no thread beyond max");
	cr_assert_eq(drift_pool_threads(p), 4);
	pthread_mutex_lock(&g.mu);
	g.open = 1;
	pthread_cond_broadcast(&g.cv);
	pthread_mutex_unlock(&g.mu);
	drift_pool_free(p);
	cr_assert_eq(atomic_load(&ran), 5);
}

DRIFT_TEST(pool, bad_sizes)
{
	drift_pool *p = NULL;
	cr_assert_eq(drift_pool_new(0, 4, &p), DRIFT_EINVAL);
	cr_assert_eq(drift_pool_new(3, 2, &p), DRIFT_EINVAL);
	cr_assert_null(p);
}
