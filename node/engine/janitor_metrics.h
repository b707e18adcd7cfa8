/*
 * The Janitor's work as Prometheus histograms, in the process's default
 * registry (common/metrics.h), observed where each action ends:
 *
 *   drift_janitor_action_seconds{action}   how long each action took:
 *       flush       an immutable memtable applied to L1 and persisted (a
 *                   Janitor flush or an explicit Flush)
 *       split, merge, recenter
 *                   one L1 maintenance action (node/l1/l1.h)
 *       compaction  the persist that rewrote the live buckets of segments
 *                   that were mostly garbage
 *
 * Summed over every shard of the node (no collection label: a series per
 * collection would outlive a dropped one); the counts per shard are
 * drift_janitor_actions_total (node/engine/engine_metrics.h). One relaxed
 * atomic update per observation; registration happens once, on first use.
 */
#ifndef DRIFT_NODE_JANITOR_METRICS_H
#define DRIFT_NODE_JANITOR_METRICS_H

#include <stdint.h>

enum drift_janitor_action {
	DRIFT_JANITOR_ACT_FLUSH,
	DRIFT_JANITOR_ACT_SPLIT,
	DRIFT_JANITOR_ACT_MERGE,
	DRIFT_JANITOR_ACT_RECENTER,
	DRIFT_JANITOR_ACT_COMPACTION,
	DRIFT_JANITOR_ACT_COUNT,
};

/* The action's label value ("flush", ..., "compaction"). */
const char *drift_janitor_action_name(enum drift_janitor_action a);

/* Records one action of a that took ns nanoseconds. Never fails (without
 * memory for the histogram the observation is dropped). */
void drift_janitor_metrics_observe(enum drift_janitor_action a, uint64_t ns);

/* Registers the histogram's series now, so a scrape shows them (at zero)
 * before the first action. */
void drift_janitor_metrics_init(void);

#endif /* DRIFT_NODE_JANITOR_METRICS_H */
