/* Tests of common/epoch: an object retired while a reader is inside
 * survives until that reader leaves; later readers do not hold it back;
 * a stress run of readers dereferencing a pointer that a writer keeps
 * swapping and retiring (ASan turns any early free into a failure); a
 * failed allocation in retire still frees the object, after the readers. */
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/epoch.h"
#include "common/err.h"
#include "drift_test.h"

/* ---- Helpers ---- */

static atomic_int freed;

static void count_free(void *p)
{
	atomic_fetch_add(&freed, 1);
	free(p);
}

struct obj {
	uint64_t magic;
	uint64_t value;
};
#define MAGIC 0x5eed5eed5eed5eedull

struct shared {
	drift_epoch *e;
	_Atomic(struct obj *) cur;
	atomic_bool stop;
	atomic_ullong reads, bad;
};

static void *reader(void *arg)
{
	struct shared *s = arg;
	while (!atomic_load(&s->stop)) {
		drift_epoch_guard g;
		drift_epoch_enter(s->e, &g);
		struct obj *o = atomic_load(&s->cur);
		/* Under ASan a freed object would be reported here. */
		if (o->magic != MAGIC)
			atomic_fetch_add(&s->bad, 1);
		drift_epoch_exit(s->e, &g);
		atomic_fetch_add(&s->reads, 1);
	}
	return NULL;
}

/* ---- Cases ---- */

DRIFT_TEST(epoch, reader_holds_back_what_it_may_see)
{
	drift_epoch *e;
	cr_assert_eq(drift_epoch_new(&e), 0);
	atomic_store(&freed, 0);
	drift_epoch_guard g;
	drift_epoch_enter(e, &g);
	cr_assert_eq(drift_epoch_retire(e, malloc(8), count_free), 0);
	cr_assert_eq(drift_epoch_reclaim(e), 0);
	cr_assert_eq(drift_epoch_pending(e), 1);
	/* A reader that enters now cannot see the object: it does not hold
	 * it back once the first one leaves. */
	drift_epoch_guard g2;
	drift_epoch_enter(e, &g2);
	drift_epoch_exit(e, &g);
	cr_assert_eq(drift_epoch_reclaim(e), 1);
	cr_assert_eq(atomic_load(&freed), 1);
	/* But it holds back what is retired while it is inside. */
	cr_assert_eq(drift_epoch_retire(e, malloc(8), count_free), 0);
	cr_assert_eq(drift_epoch_reclaim(e), 0);
	drift_epoch_exit(e, &g2);
	cr_assert_eq(drift_epoch_reclaim(e), 1);
	/* Free releases whatever is still pending. */
	cr_assert_eq(drift_epoch_retire(e, malloc(8), count_free), 0);
	drift_epoch_free(e);
	cr_assert_eq(atomic_load(&freed), 3);
}

DRIFT_TEST(epoch, stress_swap_and_retire)
{
	struct shared s = {0};
	cr_assert_eq(drift_epoch_new(&s.e), 0);
	atomic_store(&freed, 0);
	struct obj *first = malloc(sizeof(*first));
	*first = (struct obj){MAGIC, 0};
	atomic_store(&s.cur, first);
	enum { READERS = 3 };
	pthread_t t[READERS];
	for (int i = 0; i < READERS; i++)
		pthread_create(&t[i], NULL, reader, &s);
	uint64_t until = drift_now_ns() + 1000000000ull;
	int retired = 0;
	while (drift_now_ns() < until) {
		struct obj *o = malloc(sizeof(*o));
		*o = (struct obj){MAGIC, (uint64_t)retired};
		struct obj *old = atomic_exchange(&s.cur, o);
		cr_assert_eq(drift_epoch_retire(s.e, old, count_free), 0);
		retired++;
		if (retired % 16 == 0)
			drift_epoch_reclaim(s.e);
	}
	atomic_store(&s.stop, true);
	for (int i = 0; i < READERS; i++)
		pthread_join(t[i], NULL);
	drift_epoch_barrier(s.e);
	cr_assert_eq(atomic_load(&s.bad), 0);
	cr_assert_gt(atomic_load(&s.reads), 1000);
	cr_assert_eq(atomic_load(&freed), retired, "%d of %d freed",
		     atomic_load(&freed), retired);
	cr_assert_eq(drift_epoch_pending(s.e), 0);
	free(atomic_load(&s.cur));
	drift_epoch_free(s.e);
}

DRIFT_TEST(epoch, retire_without_memory_still_frees)
{
	drift_epoch *e;
	cr_assert_eq(drift_epoch_new(&e), 0);
	atomic_store(&freed, 0);
	void *p = malloc(8);
	drift_failalloc_arm(1, 0);
	int rv = drift_epoch_retire(e, p, count_free);
	drift_failalloc_arm(0, 0);
	cr_assert_eq(rv, DRIFT_ENOMEM);
	cr_assert_eq(atomic_load(&freed), 1, "freed after the barrier");
	cr_assert_eq(drift_epoch_pending(e), 0);
	drift_failalloc_arm(1, 0);
	drift_epoch *e2 = NULL;
	cr_assert_eq(drift_epoch_new(&e2), DRIFT_ENOMEM);
	drift_failalloc_arm(0, 0);
	cr_assert_null(e2);
	drift_epoch_free(e);
}

/* Every slot taken: a further reader waits for one instead of failing. */
struct crowd {
	drift_epoch *e;
	atomic_int inside;
};

static void *late_reader(void *arg)
{
	struct crowd *c = arg;
	drift_epoch_guard g;
	drift_epoch_enter(c->e, &g);
	atomic_fetch_add(&c->inside, 1);
	drift_epoch_exit(c->e, &g);
	return NULL;
}

DRIFT_TEST(epoch, all_slots_busy)
{
	struct crowd c = {0};
	cr_assert_eq(drift_epoch_new(&c.e), 0);
	static drift_epoch_guard g[DRIFT_EPOCH_SLOTS];
	for (unsigned i = 0; i < DRIFT_EPOCH_SLOTS; i++)
		drift_epoch_enter(c.e, &g[i]);
	pthread_t t;
	pthread_create(&t, NULL, late_reader, &c);
	struct timespec ts = {0, 20000000};
	nanosleep(&ts, NULL);
	cr_assert_eq(atomic_load(&c.inside), 0, "waits for a free slot");
	drift_epoch_exit(c.e, &g[7]);
	pthread_join(t, NULL);
	cr_assert_eq(atomic_load(&c.inside), 1);
	for (unsigned i = 0; i < DRIFT_EPOCH_SLOTS; i++)
		if (i != 7)
			drift_epoch_exit(c.e, &g[i]);
	drift_epoch_free(c.e);
}
