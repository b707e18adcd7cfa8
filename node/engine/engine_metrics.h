/*
 * The engine's metrics, read at scrape time from the statistics the
 * engine keeps anyway (drift_collection_stats, drift_collection_memory),
 * by a collector in the process's default registry (common/metrics.h).
 * Per collection and shard (labels collection, shard):
 *
 *   drift_shard_live_vectors            live vectors (deletes subtracted)
 *   drift_shard_l0_rows                 memtable rows (active + immutable)
 *   drift_shard_l0_tombstones           memtable tombstones
 *   drift_shard_l1_vectors              vectors in L1 buckets
 *   drift_shard_l1_buckets              L1 buckets
 *   drift_shard_l1_bytes                bytes of its .drift segment files
 *                                       (a readdir and a stat per file)
 *   drift_shard_segments                live .drift segment files
 *   drift_shard_wal_bytes               bytes of WAL files kept
 *   drift_shard_wal_unflushed_ops       WAL records not yet covered by L1
 *   drift_shard_memory_bytes            the shard's memory estimate
 *   drift_janitor_actions_total{action} flush, split, merge, recenter,
 *                                       compaction (segments rewritten)
 *
 * Their durations, over every shard of the node:
 * drift_janitor_action_seconds{action} (node/engine/janitor_metrics.h).
 *
 * Per collection: drift_collection_memory_bytes and
 * drift_collection_memory_limit_bytes (0: no limit). A scrape walks each
 * shard's memtables under an epoch guard (no lock a writer holds); it
 * costs what a DescribeCollection costs.
 */
#ifndef DRIFT_NODE_ENGINE_METRICS_H
#define DRIFT_NODE_ENGINE_METRICS_H

#include "node/engine/collection.h"

/* Publishes cm's metrics until drift_engine_metrics_stop (cm must outlive
 * that). 0 or DRIFT_ENOMEM. */
int drift_engine_metrics_start(drift_cm *cm);
/* Stops; after it returns no scrape reads cm. */
void drift_engine_metrics_stop(drift_cm *cm);

#endif /* DRIFT_NODE_ENGINE_METRICS_H */
