/*
 * The shard's Janitor (see shard.h): one turn of flush and bounded
 * maintenance, a task of the node's pool (node/engine/janitor.h).
 */
#include <malloc.h>
#include <stdatomic.h>
#include <stddef.h>

#include "common/clock.h"
#include "common/log.h"
#include "node/engine/janitor_metrics.h"
#include "node/engine/shard_internal.h"

#define FLUSH_WARN_NS (10 * 1000000000ull)
#define MAINT_PERSIST_NS (10 * 1000000000ull)
#define FLUSH_BACKOFF_MAX_NS (5 * 1000000000ull)

/* A failed flush is tried again after 2^fails Janitor periods (at most
 * FLUSH_BACKOFF_MAX_NS; a writer that needs the room flushes at once
 * itself), and logged once per FLUSH_WARN_NS, not every period. */
static void flush_failed(drift_shard *s, const drift_err *err)
{
	uint64_t now = drift_now_ns();
	unsigned shift = s->flush_fails < 10 ? s->flush_fails : 10;
	uint64_t wait = s->o.janitor_period_ns << shift;
	if (wait > FLUSH_BACKOFF_MAX_NS)
		wait = FLUSH_BACKOFF_MAX_NS;
	s->flush_fails++;
	s->flush_retry_ns = now + wait;
	if (s->flush_warn_ns != 0 && now - s->flush_warn_ns < FLUSH_WARN_NS)
		return;
	DRIFT_WARN("shard %s: flush failed (%u times; retried in %llu ms): %s",
		   s->dir, s->flush_fails,
		   (unsigned long long)(wait / 1000000u), err->msg);
	s->flush_warn_ns = now;
}

/* One turn of the Janitor: a pending flush, then up to maint_per_tick
 * maintenance actions, then what it wants next: a turn at once when
 * maintenance used its whole budget (a backlog of splits after a large
 * flush is worked off at the pool's full speed, taking turns with the
 * other shards), a turn after the period while it still finds work, has
 * changes to persist or wrote a manifest (compaction looks at the space
 * that left), the flush retried after its backoff, or
 * nothing (an index in good shape waits for its next flush). */
/* Gives the heaps' free pages back to the system (malloc_trim): the
 * blocks a flush, a compaction or a merge freed sit in the middle of the
 * allocator's heaps, where it keeps them. At most once per TRIM_NS over
 * the process: a trim walks every heap. */
#define TRIM_NS (1000 * 1000000ull)

static void trim_heaps(void)
{
	static _Atomic uint64_t last;
	uint64_t now = drift_now_ns(), was = atomic_load(&last);
	if (now - was < TRIM_NS ||
	    !atomic_compare_exchange_strong(&last, &was, now))
		return;
	malloc_trim(0);
}

void shard_on_l1_action(void *ctx, enum drift_l1_action a, uint64_t ns)
{
	(void)ctx;
	drift_janitor_metrics_observe(
		a == DRIFT_L1_SPLIT   ? DRIFT_JANITOR_ACT_SPLIT
		: a == DRIFT_L1_MERGE ? DRIFT_JANITOR_ACT_MERGE
				      : DRIFT_JANITOR_ACT_RECENTER,
		ns);
}

void shard_janitor_run(drift_janitor_task *t)
{
	drift_shard *s =
		(drift_shard *)((char *)t - offsetof(drift_shard, task));
	drift_err err;
	drift_err_clear(&err);
	if (atomic_load(&s->imm) != NULL &&
	    drift_now_ns() >= s->flush_retry_ns) {
		if (shard_flush_imm(s, &err) != 0) {
			flush_failed(s, &err);
		} else if (s->flush_fails > 0) {
			DRIFT_INFO("shard %s: flush works again (after %u "
				   "failures)",
				   s->dir, s->flush_fails);
			s->flush_fails = 0;
			s->flush_retry_ns = 0;
		}
	}
	pthread_mutex_lock(&s->l1mu);
	uint64_t generation = s->man.generation;
	drift_l1_maint_stats ms = {0};
	if (drift_l1_maintain(s->l1, s->o.maint_per_tick, &ms, &err) != 0)
		DRIFT_WARN("shard %s: maintenance: %s", s->dir, err.msg);
	atomic_fetch_add(&s->splits, ms.splits);
	atomic_fetch_add(&s->merges, ms.merges);
	atomic_fetch_add(&s->recenters, ms.recenters);
	uint32_t compacting = shard_compact_segments(s);
	/* What maintenance (or compaction) changed becomes durable once it
	 * pauses, or MAINT_PERSIST_NS after the last persist while it goes
	 * on (a crash before that only loses the rearrangement, never data).
	 * Under a steady ingest the flushes persist it: a bucket that splits
	 * and then takes a flush is written once, not twice. */
	uint64_t actions = ms.splits + ms.merges + ms.recenters + ms.packs;
	if (actions > 0)
		atomic_store(&s->trim_due, true);
	if (drift_l1_dirty_count(s->l1) > 0 &&
	    (actions == 0 ||
	     drift_now_ns() - s->last_persist_ns > MAINT_PERSIST_NS)) {
		/* A compaction is the persist that rewrites the garbage
		 * segments' buckets (with whatever else is dirty); until one
		 * succeeds they are marked again each turn, counted once. */
		uint64_t t0 = drift_now_ns();
		if (shard_persist(s, s->man.wal_seq, &err) != 0) {
			DRIFT_WARN("shard %s: persisting maintenance: %s",
				   s->dir, err.msg);
		} else if (compacting > 0) {
			atomic_fetch_add(&s->compactions, compacting);
			drift_janitor_metrics_observe(
				DRIFT_JANITOR_ACT_COMPACTION,
				drift_now_ns() - t0);
		}
	}
	/* A manifest written since the turn began (here or by a flush) may
	 * leave a segment mostly garbage: one more turn checks. */
	bool dirty = drift_l1_dirty_count(s->l1) > 0 ||
		     s->man.generation != generation;
	pthread_mutex_unlock(&s->l1mu);
	if (actions >= s->o.maint_per_tick)
		drift_janitor_post(s->pool, t, DRIFT_JANITOR_MAINT, 0);
	else if (actions > 0 || dirty)
		drift_janitor_post(s->pool, t, DRIFT_JANITOR_MAINT,
				   s->o.janitor_period_ns);
	else if (atomic_exchange(&s->trim_due, false))
		trim_heaps(); /* idle after freeing */
	if (atomic_load(&s->imm) != NULL) {
		uint64_t now = drift_now_ns();
		drift_janitor_post(
			s->pool, t, DRIFT_JANITOR_FLUSH,
			s->flush_retry_ns > now ? s->flush_retry_ns - now : 0);
	}
}
