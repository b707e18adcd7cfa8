#include "common/pool.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <time.h>

#include "common/alloc.h"
#include "common/err.h"

/* An idle thread above min exits after this long without work. */
#define IDLE_EXIT_S 5

struct job {
	struct job *next;
	drift_pool_fn fn;
	void *arg;
};

struct drift_pool {
	pthread_mutex_t mu;
	pthread_cond_t work; /* a job arrived, or closing */
	pthread_cond_t gone; /* a thread exited */
	struct job *head, *tail;
	unsigned min, max;
	unsigned threads, idle;
	size_t queued; /* jobs in the queue */
	bool closing;
};

static void *worker(void *arg)
{
	drift_pool *p = arg;
	pthread_mutex_lock(&p->mu);
	for (;;) {
		struct job *j = p->head;
		if (j != NULL) {
			p->head = j->next;
			if (p->head == NULL)
				p->tail = NULL;
			p->queued--;
			pthread_mutex_unlock(&p->mu);
			j->fn(j->arg);
			drift_free(j);
			pthread_mutex_lock(&p->mu);
			continue;
		}
		if (p->closing)
			break;
		p->idle++;
		int rc;
		if (p->threads > p->min) {
			struct timespec ts;
			clock_gettime(CLOCK_REALTIME, &ts);
			ts.tv_sec += IDLE_EXIT_S;
			rc = pthread_cond_timedwait(&p->work, &p->mu, &ts);
		} else {
			rc = pthread_cond_wait(&p->work, &p->mu);
		}
		p->idle--;
		if (rc == ETIMEDOUT && p->head == NULL && p->threads > p->min)
			break;
	}
	p->threads--;
	pthread_cond_broadcast(&p->gone);
	/* The last touch of p: drift_pool_free takes the mutex after this. */
	pthread_mutex_unlock(&p->mu);
	return NULL;
}

/* Starts one detached thread; called with mu held. */
static int spawn(drift_pool *p)
{
	pthread_t t;
	pthread_attr_t a;
	pthread_attr_init(&a);
	pthread_attr_setdetachstate(&a, PTHREAD_CREATE_DETACHED);
	int rc = pthread_create(&t, &a, worker, p);
	pthread_attr_destroy(&a);
	if (rc != 0)
		return drift_err_from_errno(rc);
	p->threads++;
	return 0;
}

int drift_pool_new(unsigned min, unsigned max, drift_pool **out)
{
	if (min == 0 || max < min)
		return DRIFT_EINVAL;
	drift_pool *p = drift_calloc(1, sizeof(*p));
	if (p == NULL)
		return DRIFT_ENOMEM;
	pthread_mutex_init(&p->mu, NULL);
	pthread_cond_init(&p->work, NULL);
	pthread_cond_init(&p->gone, NULL);
	p->min = min;
	p->max = max;
	pthread_mutex_lock(&p->mu);
	for (unsigned i = 0; i < min; i++) {
		int rv = spawn(p);
		if (rv != 0) {
			pthread_mutex_unlock(&p->mu);
			drift_pool_free(p);
			return rv;
		}
	}
	pthread_mutex_unlock(&p->mu);
	*out = p;
	return 0;
}

int drift_pool_submit(drift_pool *p, drift_pool_fn fn, void *arg)
{
	struct job *j = drift_malloc(sizeof(*j));
	if (j == NULL)
		return DRIFT_ENOMEM;
	j->next = NULL;
	j->fn = fn;
	j->arg = arg;
	pthread_mutex_lock(&p->mu);
	if (p->closing) {
		pthread_mutex_unlock(&p->mu);
		drift_free(j);
		return DRIFT_ECLOSED;
	}
	if (p->tail != NULL)
		p->tail->next = j;
	else
		p->head = j;
	p->tail = j;
	p->queued++;
	/* Each queued job needs an idle thread of its own, or a long job
	 * would hold up the ones behind it. A failed spawn is not the job's
	 * failure: a running thread takes it later. */
	if (p->queued > p->idle && p->threads < p->max)
		(void)spawn(p);
	pthread_cond_signal(&p->work);
	pthread_mutex_unlock(&p->mu);
	return 0;
}

unsigned drift_pool_threads(drift_pool *p)
{
	pthread_mutex_lock(&p->mu);
	unsigned n = p->threads;
	pthread_mutex_unlock(&p->mu);
	return n;
}

void drift_pool_free(drift_pool *p)
{
	if (p == NULL)
		return;
	pthread_mutex_lock(&p->mu);
	p->closing = true;
	pthread_cond_broadcast(&p->work);
	while (p->threads > 0)
		pthread_cond_wait(&p->gone, &p->mu);
	pthread_mutex_unlock(&p->mu);
	pthread_mutex_destroy(&p->mu);
	pthread_cond_destroy(&p->work);
	pthread_cond_destroy(&p->gone);
	drift_free(p);
}
