/* Tests of node/janitor: every posted task runs, on no more threads than
 * the pool has and never on two at once; FLUSH runs before MAINT, yet
 * MAINT is not starved by a stream of FLUSH; a delayed post waits its
 * delay; posts during a run are kept and run once after it; a task that
 * re-posts itself takes turns with the others; detach waits for a run in
 * progress and ignores later posts. */
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/clock.h"
#include "node/engine/janitor.h"
#include "drift_test.h"

/* ---- Fixture ---- */

static drift_janitor *pool;

static void teardown(void)
{
	drift_janitor_free(pool);
	pool = NULL;
}

TestSuite(janitor, .fini = teardown);

/* ---- Helpers ---- */

#define MAX_LOG 4096

typedef struct job {
	drift_janitor_task task;
	int name;
	atomic_int runs;
	atomic_int again;      /* re-posts left */
	atomic_int inside;     /* runs in progress (must stay <= 1) */
	atomic_int overlapped; /* a second run started during one */
	unsigned sleep_us;     /* each run sleeps this long */
	uint64_t first_run_ns;
} job;

static atomic_int log_n;
static int log_names[MAX_LOG];
static atomic_int running_now, running_max;

static void job_fn(drift_janitor_task *t)
{
	job *j = (job *)((char *)t - offsetof(job, task));
	if (atomic_fetch_add(&j->inside, 1) != 0)
		atomic_store(&j->overlapped, 1);
	int now = atomic_fetch_add(&running_now, 1) + 1;
	int max = atomic_load(&running_max);
	while (now > max &&
	       !atomic_compare_exchange_weak(&running_max, &max, now))
		;
	if (j->first_run_ns == 0)
		j->first_run_ns = drift_now_ns();
	int at = atomic_fetch_add(&log_n, 1);
	if (at < MAX_LOG)
		log_names[at] = j->name;
	if (j->sleep_us)
		usleep(j->sleep_us);
	atomic_fetch_add(&j->runs, 1);
	atomic_fetch_sub(&running_now, 1);
	atomic_fetch_sub(&j->inside, 1);
	if (atomic_fetch_sub(&j->again, 1) > 0)
		drift_janitor_post(pool, t, DRIFT_JANITOR_MAINT, 0);
}

static void job_init(job *j, int name)
{
	memset(j, 0, sizeof(*j));
	j->name = name;
	drift_janitor_task_init(&j->task, job_fn);
}

static void reset_log(void)
{
	atomic_store(&log_n, 0);
	atomic_store(&running_now, 0);
	atomic_store(&running_max, 0);
}

/* Waits (bounded) until every job of js has run at least want times. */
static void wait_runs(job *js, int n, int want)
{
	uint64_t until = drift_now_ns() + 10 * 1000000000ull;
	for (;;) {
		bool done = true;
		for (int i = 0; i < n; i++)
			done = done && atomic_load(&js[i].runs) >= want;
		if (done)
			return;
		cr_assert_lt(drift_now_ns(), until, "tasks did not run");
		usleep(1000);
	}
}

/* ---- Cases ---- */

DRIFT_TEST(janitor, every_task_runs_on_bounded_threads)
{
	reset_log();
	drift_err err;
	cr_assert_eq(drift_janitor_new(3, &pool, &err), 0, "%s", err.msg);
	cr_assert_eq(drift_janitor_threads(pool), 3);
	static job js[200];
	for (int i = 0; i < 200; i++) {
		job_init(&js[i], i);
		js[i].sleep_us = 200;
		atomic_store(&js[i].again, 2);
	}
	for (int i = 0; i < 200; i++)
		drift_janitor_post(
			pool, &js[i].task,
			i % 2 ? DRIFT_JANITOR_MAINT : DRIFT_JANITOR_FLUSH, 0);
	wait_runs(js, 200, 3);
	usleep(20000);
	for (int i = 0; i < 200; i++) {
		cr_assert_eq(atomic_load(&js[i].runs), 3, "task %d", i);
		cr_assert_eq(atomic_load(&js[i].overlapped), 0, "task %d", i);
		drift_janitor_detach(pool, &js[i].task);
	}
	cr_assert_leq(atomic_load(&running_max), 3);
	cr_assert_geq(atomic_load(&running_max), 2, "the threads work at once");
}

DRIFT_TEST(janitor, flush_first_and_maint_not_starved)
{
	reset_log();
	drift_err err;
	cr_assert_eq(drift_janitor_new(1, &pool, &err), 0, "%s", err.msg);
	/* Hold the one thread while everything is queued. */
	job gate, m[8], f[8];
	job_init(&gate, 100);
	gate.sleep_us = 50000;
	drift_janitor_post(pool, &gate.task, DRIFT_JANITOR_FLUSH, 0);
	usleep(10000);
	for (int i = 0; i < 8; i++) {
		job_init(&m[i], 200 + i);
		job_init(&f[i], 300 + i);
		drift_janitor_post(pool, &m[i].task, DRIFT_JANITOR_MAINT, 0);
	}
	for (int i = 0; i < 8; i++)
		drift_janitor_post(pool, &f[i].task, DRIFT_JANITOR_FLUSH, 0);
	wait_runs(m, 8, 1);
	wait_runs(f, 8, 1);
	int n = atomic_load(&log_n);
	cr_assert_eq(n, 17);
	/* After the gate: FLUSH tasks first, in order, except that every
	 * fourth pick takes the oldest MAINT task. */
	int flush_seen = 0, maint_seen = 0, first_maint_at = -1;
	for (int i = 1; i < n; i++) {
		int nm = log_names[i];
		if (nm >= 300) {
			cr_assert_eq(nm, 300 + flush_seen, "FLUSH in order");
			flush_seen++;
		} else {
			cr_assert_eq(nm, 200 + maint_seen, "MAINT in order");
			if (first_maint_at < 0)
				first_maint_at = i;
			maint_seen++;
		}
	}
	cr_assert(first_maint_at > 1 && first_maint_at <= 4,
		  "MAINT waits behind FLUSH, but not for all of it (at %d)",
		  first_maint_at);
	for (int i = 0; i < 8; i++) {
		drift_janitor_detach(pool, &m[i].task);
		drift_janitor_detach(pool, &f[i].task);
	}
	drift_janitor_detach(pool, &gate.task);
}

DRIFT_TEST(janitor, delays_posts_during_a_run_and_detach)
{
	reset_log();
	drift_err err;
	cr_assert_eq(drift_janitor_new(2, &pool, &err), 0, "%s", err.msg);
	job d;
	job_init(&d, 1);
	uint64_t t0 = drift_now_ns();
	drift_janitor_post(pool, &d.task, DRIFT_JANITOR_MAINT, 60000000ull);
	/* A second, later post of the same task keeps the earlier time. */
	drift_janitor_post(pool, &d.task, DRIFT_JANITOR_MAINT, 500000000ull);
	wait_runs(&d, 1, 1);
	uint64_t waited = d.first_run_ns - t0;
	cr_assert(waited >= 60000000ull && waited < 400000000ull,
		  "ran after %llu ns", (unsigned long long)waited);
	usleep(600000);
	cr_assert_eq(atomic_load(&d.runs), 1, "one place, one run");

	/* Posts while a run is in progress: one more run after it. */
	job r;
	job_init(&r, 2);
	r.sleep_us = 100000;
	drift_janitor_post(pool, &r.task, DRIFT_JANITOR_FLUSH, 0);
	usleep(30000);
	for (int i = 0; i < 5; i++)
		drift_janitor_post(pool, &r.task, DRIFT_JANITOR_MAINT, 0);
	wait_runs(&r, 1, 2);
	usleep(150000);
	cr_assert_eq(atomic_load(&r.runs), 2);
	cr_assert_eq(atomic_load(&r.overlapped), 0);

	/* Detach waits for the run in progress; later posts are ignored. */
	r.sleep_us = 100000;
	drift_janitor_post(pool, &r.task, DRIFT_JANITOR_FLUSH, 0);
	usleep(30000);
	drift_janitor_detach(pool, &r.task);
	cr_assert_eq(atomic_load(&r.inside), 0, "detach waited for the run");
	int runs = atomic_load(&r.runs);
	drift_janitor_post(pool, &r.task, DRIFT_JANITOR_FLUSH, 0);
	usleep(50000);
	cr_assert_eq(atomic_load(&r.runs), runs, "posts after detach ignored");
	/* A queued (delayed) task detached never runs. */
	job q;
	job_init(&q, 3);
	drift_janitor_post(pool, &q.task, DRIFT_JANITOR_MAINT, 50000000ull);
	drift_janitor_detach(pool, &q.task);
	usleep(100000);
	cr_assert_eq(atomic_load(&q.runs), 0);
	drift_janitor_detach(pool, &d.task);
}
