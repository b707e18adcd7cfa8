/*
 * The Janitor pool (see janitor.h for the contract).
 *
 * One mutex guards everything: three intrusive lists (the FLUSH and MAINT
 * run queues, first in first out, and the timer list of delayed posts,
 * sorted by due time) and every task's pool fields. Workers wait on one
 * condition variable (CLOCK_MONOTONIC) until a task is ready or the
 * earliest timer is due. A run is short next to the lock's hold times, so
 * one lock costs nothing measurable even with thousands of tasks; a post
 * is O(1) except a delayed one, which walks the timer list from its tail
 * (delays are mostly one fixed period, so the walk stops at once).
 */
#include "node/engine/janitor.h"

#include <pthread.h>
#include <stddef.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"

#define MAX_THREADS 64
/* Every MAINT_EVERY-th pick prefers a waiting MAINT task (janitor.h). */
#define MAINT_EVERY 4

enum { NOWHERE = 0, ON_FLUSH, ON_MAINT, ON_TIMER };

typedef struct tlist {
	drift_janitor_task *head, *tail;
} tlist;

struct drift_janitor {
	pthread_mutex_t mu;
	pthread_cond_t work; /* a task is ready, a timer moved, stop */
	pthread_cond_t idle; /* a run returned (detach waits for it) */
	tlist flush, maint, timer;
	unsigned picks;
	bool stop;
	unsigned nthreads;
	pthread_t threads[MAX_THREADS];
};

/* ---- Lists (under mu) ---- */

static void list_push_back(tlist *l, drift_janitor_task *t)
{
	t->next = NULL;
	t->prev = l->tail;
	if (l->tail != NULL)
		l->tail->next = t;
	else
		l->head = t;
	l->tail = t;
}

static void list_remove(tlist *l, drift_janitor_task *t)
{
	if (t->prev != NULL)
		t->prev->next = t->next;
	else
		l->head = t->next;
	if (t->next != NULL)
		t->next->prev = t->prev;
	else
		l->tail = t->prev;
	t->prev = t->next = NULL;
}

/* In due order, after the tasks due at the same time. */
static void timer_insert(tlist *l, drift_janitor_task *t)
{
	drift_janitor_task *at = l->tail;
	while (at != NULL && at->due_ns > t->due_ns)
		at = at->prev;
	t->prev = at;
	t->next = at != NULL ? at->next : l->head;
	if (t->next != NULL)
		t->next->prev = t;
	else
		l->tail = t;
	if (at != NULL)
		at->next = t;
	else
		l->head = t;
}

static tlist *list_of(drift_janitor *j, int where)
{
	return where == ON_FLUSH   ? &j->flush
	       : where == ON_MAINT ? &j->maint
				   : &j->timer;
}

static void unqueue(drift_janitor *j, drift_janitor_task *t)
{
	if (t->where != NOWHERE)
		list_remove(list_of(j, t->where), t);
	t->where = NOWHERE;
}

/* Queues t (not running) to run at prio from due_ns on; a task already
 * queued keeps the more urgent of both. */
static void enqueue(drift_janitor *j, drift_janitor_task *t, int prio,
		    uint64_t due_ns, uint64_t now)
{
	/* Queued to run now: only a FLUSH post for now moves it ahead. */
	if (t->where == ON_FLUSH ||
	    (t->where == ON_MAINT &&
	     (prio != DRIFT_JANITOR_FLUSH || due_ns > now)))
		return;
	if (t->where == ON_TIMER) {
		if (t->due_ns <= due_ns && t->prio <= prio)
			return;
		if (t->due_ns < due_ns)
			due_ns = t->due_ns;
		if (t->prio < prio)
			prio = t->prio;
	}
	unqueue(j, t);
	t->prio = prio;
	if (due_ns > now) {
		t->due_ns = due_ns;
		t->where = ON_TIMER;
		timer_insert(&j->timer, t);
	} else {
		t->where = prio == DRIFT_JANITOR_FLUSH ? ON_FLUSH : ON_MAINT;
		list_push_back(list_of(j, t->where), t);
	}
	pthread_cond_signal(&j->work);
}

/* ---- Workers ---- */

/* Moves due timers to their run queues; the next due time (0: none). */
static uint64_t release_timers(drift_janitor *j, uint64_t now)
{
	drift_janitor_task *t;
	while ((t = j->timer.head) != NULL && t->due_ns <= now) {
		list_remove(&j->timer, t);
		t->where = t->prio == DRIFT_JANITOR_FLUSH ? ON_FLUSH : ON_MAINT;
		list_push_back(list_of(j, t->where), t);
	}
	return t != NULL ? t->due_ns : 0;
}

static drift_janitor_task *pick(drift_janitor *j)
{
	tlist *first = &j->flush, *second = &j->maint;
	if (++j->picks % MAINT_EVERY == 0) {
		first = &j->maint;
		second = &j->flush;
	}
	drift_janitor_task *t = first->head ? first->head : second->head;
	if (t != NULL)
		unqueue(j, t);
	return t;
}

static void *worker(void *arg)
{
	drift_janitor *j = arg;
	pthread_mutex_lock(&j->mu);
	while (!j->stop) {
		uint64_t now = drift_now_ns();
		uint64_t next = release_timers(j, now);
		drift_janitor_task *t = pick(j);
		if (t == NULL) {
			if (next == 0) {
				pthread_cond_wait(&j->work, &j->mu);
			} else {
				struct timespec ts = {
					.tv_sec = (time_t)(next / 1000000000u),
					.tv_nsec = (long)(next % 1000000000u)};
				pthread_cond_timedwait(&j->work, &j->mu, &ts);
			}
			continue;
		}
		/* Another worker may find more: this one takes a while. */
		if (j->flush.head != NULL || j->maint.head != NULL)
			pthread_cond_signal(&j->work);
		t->running = true;
		pthread_mutex_unlock(&j->mu);
		t->fn(t);
		pthread_mutex_lock(&j->mu);
		t->running = false;
		if (t->pending && !t->detached) {
			t->pending = false;
			enqueue(j, t, t->pend_prio, t->pend_due_ns,
				drift_now_ns());
		}
		t->pending = false;
		pthread_cond_broadcast(&j->idle);
	}
	pthread_mutex_unlock(&j->mu);
	return NULL;
}

/* ---- API ---- */

static void stop_threads(drift_janitor *j)
{
	pthread_mutex_lock(&j->mu);
	j->stop = true;
	pthread_cond_broadcast(&j->work);
	pthread_mutex_unlock(&j->mu);
	for (unsigned i = 0; i < j->nthreads; i++)
		pthread_join(j->threads[i], NULL);
	j->nthreads = 0;
}

int drift_janitor_new(unsigned threads, drift_janitor **out, drift_err *err)
{
	if (threads == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		threads = n > 0 ? (unsigned)n : 1;
	}
	if (threads > MAX_THREADS)
		threads = MAX_THREADS;
	drift_janitor *j = drift_calloc(1, sizeof(*j));
	if (j == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "janitor pool");
	pthread_mutex_init(&j->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&j->work, &ca);
	pthread_condattr_destroy(&ca);
	pthread_cond_init(&j->idle, NULL);
	for (unsigned i = 0; i < threads; i++) {
		int rv = pthread_create(&j->threads[i], NULL, worker, j);
		if (rv != 0) {
			drift_janitor_free(j);
			return drift_err_errno(err, rv,
					       "janitor pool: thread %u of %u",
					       i + 1, threads);
		}
		j->nthreads++;
	}
	*out = j;
	return 0;
}

void drift_janitor_free(drift_janitor *j)
{
	if (j == NULL)
		return;
	stop_threads(j);
	pthread_cond_destroy(&j->work);
	pthread_cond_destroy(&j->idle);
	pthread_mutex_destroy(&j->mu);
	drift_free(j);
}

unsigned drift_janitor_threads(const drift_janitor *j)
{
	return j->nthreads;
}

void drift_janitor_task_init(drift_janitor_task *t, drift_janitor_fn *fn)
{
	*t = (drift_janitor_task){.fn = fn, .where = NOWHERE};
}

void drift_janitor_post(drift_janitor *j, drift_janitor_task *t,
			enum drift_janitor_prio prio, uint64_t delay_ns)
{
	uint64_t now = drift_now_ns(), due = now + delay_ns;
	pthread_mutex_lock(&j->mu);
	if (t->detached) {
		/* nothing */
	} else if (t->running) {
		if (!t->pending || (int)prio < t->pend_prio)
			t->pend_prio = (int)prio;
		if (!t->pending || due < t->pend_due_ns)
			t->pend_due_ns = due;
		t->pending = true;
	} else {
		enqueue(j, t, (int)prio, due, now);
	}
	pthread_mutex_unlock(&j->mu);
}

void drift_janitor_detach(drift_janitor *j, drift_janitor_task *t)
{
	pthread_mutex_lock(&j->mu);
	t->detached = true;
	unqueue(j, t);
	while (t->running)
		pthread_cond_wait(&j->idle, &j->mu);
	t->pending = false;
	pthread_mutex_unlock(&j->mu);
}
