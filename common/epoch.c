#include "common/epoch.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "common/alloc.h"
#include "common/err.h"

/* One cache line per slot: readers on different cores do not share. */
struct slot {
	_Atomic uint64_t epoch; /* 0: free */
	char pad[64 - sizeof(uint64_t)];
};

struct retired {
	struct retired *next;
	void *obj;
	void (*fn)(void *);
	uint64_t epoch;
};

struct drift_epoch {
	struct slot slots[DRIFT_EPOCH_SLOTS];
	_Atomic uint64_t global;
	pthread_mutex_t mu;
	struct retired *head; /* newest first */
	size_t pending;
};

int drift_epoch_new(drift_epoch **out)
{
	drift_epoch *e = drift_aligned_alloc(64, sizeof(*e));
	if (e == NULL)
		return DRIFT_ENOMEM;
	for (unsigned i = 0; i < DRIFT_EPOCH_SLOTS; i++)
		atomic_init(&e->slots[i].epoch, 0);
	atomic_init(&e->global, 1);
	pthread_mutex_init(&e->mu, NULL);
	e->head = NULL;
	e->pending = 0;
	*out = e;
	return 0;
}

static void free_list(struct retired *r)
{
	while (r != NULL) {
		struct retired *next = r->next;
		r->fn(r->obj);
		drift_free(r);
		r = next;
	}
}

void drift_epoch_free(drift_epoch *e)
{
	if (e == NULL)
		return;
	free_list(e->head);
	pthread_mutex_destroy(&e->mu);
	drift_free(e);
}

void drift_epoch_enter(drift_epoch *e, drift_epoch_guard *g)
{
	/* Start from a slot that depends on the thread, so threads rarely
	 * contend for one. */
	unsigned start = (unsigned)((uintptr_t)pthread_self() >> 6);
	for (unsigned tries = 0;; tries++) {
		unsigned i = (start + tries) % DRIFT_EPOCH_SLOTS;
		uint64_t free_ = 0;
		uint64_t now = atomic_load(&e->global);
		if (atomic_compare_exchange_strong(&e->slots[i].epoch, &free_,
						   now)) {
			g->slot = i;
			return;
		}
		if (tries > 0 && tries % DRIFT_EPOCH_SLOTS == 0)
			sched_yield();
	}
}

void drift_epoch_exit(drift_epoch *e, drift_epoch_guard *g)
{
	atomic_store(&e->slots[g->slot].epoch, 0);
}

/* The smallest published epoch, or UINT64_MAX when no reader is inside. */
static uint64_t min_active(drift_epoch *e)
{
	uint64_t m = UINT64_MAX;
	for (unsigned i = 0; i < DRIFT_EPOCH_SLOTS; i++) {
		uint64_t v = atomic_load(&e->slots[i].epoch);
		if (v != 0 && v < m)
			m = v;
	}
	return m;
}

size_t drift_epoch_reclaim(drift_epoch *e)
{
	uint64_t m = min_active(e);
	pthread_mutex_lock(&e->mu);
	/* The list is newest first: cut it where epochs fall below m. */
	struct retired **pp = &e->head;
	while (*pp != NULL && (*pp)->epoch >= m)
		pp = &(*pp)->next;
	struct retired *dead = *pp;
	*pp = NULL;
	size_t n = 0;
	for (struct retired *r = dead; r != NULL; r = r->next)
		n++;
	e->pending -= n;
	pthread_mutex_unlock(&e->mu);
	free_list(dead);
	return n;
}

void drift_epoch_barrier(drift_epoch *e)
{
	uint64_t target = atomic_fetch_add(&e->global, 1) + 1;
	for (;;) {
		if (min_active(e) >= target)
			break;
		sched_yield();
	}
	drift_epoch_reclaim(e);
}

int drift_epoch_retire(drift_epoch *e, void *obj, void (*fn)(void *))
{
	struct retired *r = drift_malloc(sizeof(*r));
	if (r == NULL) {
		/* No room to remember it: wait for the readers instead. */
		drift_epoch_barrier(e);
		fn(obj);
		return DRIFT_ENOMEM;
	}
	r->obj = obj;
	r->fn = fn;
	pthread_mutex_lock(&e->mu);
	r->epoch = atomic_fetch_add(&e->global, 1);
	/* Keep the list ordered by epoch: fetch_add under the mutex. */
	r->next = e->head;
	e->head = r;
	e->pending++;
	pthread_mutex_unlock(&e->mu);
	return 0;
}

size_t drift_epoch_pending(drift_epoch *e)
{
	pthread_mutex_lock(&e->mu);
	size_t n = e->pending;
	pthread_mutex_unlock(&e->mu);
	return n;
}
