/*
 * The cluster's metrics on a node, read at scrape time by a collector in
 * the default registry (common/metrics.h) from the node's Raft member
 * (drift_member_info_get: a copy taken under the member's mutex) and the
 * replicated state (drift_member_state: a reference, never a lock a
 * request holds):
 *
 *   drift_raft_role             raft.h's numbering: 0 unavailable,
 *                               1 follower, 2 candidate, 3 leader
 *   drift_raft_term, drift_raft_commit_index, drift_raft_applied_index,
 *   drift_raft_last_index       as this member sees them
 *   drift_raft_voters           voters in the Raft configuration
 *   drift_raft_leader_known     1 when this member knows a leader
 *   drift_cluster_map_version   the shard map's version applied here
 *   drift_cluster_nodes{state}  nodes of the map by state (up, down,
 *                               joining, leaving)
 *   drift_cluster_collections   collections in the map
 *   drift_shard_replica_in_sync{collection,shard,node}
 *                               1 when the map says that replica holds
 *                               every write of the shard, else 0
 *
 * Every node exports the map's view it has applied, so the cluster-wide
 * families repeat per node (aggregate with max by).
 */
#ifndef DRIFT_NODE_RAFT_METRICS_H
#define DRIFT_NODE_RAFT_METRICS_H

#include "node/server/cluster.h"

/* Publishes nc's metrics until drift_raft_metrics_stop (nc must outlive
 * that). 0 or DRIFT_ENOMEM. */
int drift_raft_metrics_start(drift_node_cluster *nc);
/* Stops; after it returns no scrape reads nc. */
void drift_raft_metrics_stop(drift_node_cluster *nc);

#endif /* DRIFT_NODE_RAFT_METRICS_H */
