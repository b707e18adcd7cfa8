#include "node/server/raft_metrics.h"

#include <stdio.h>

#include "cluster/member.h"
#include "cluster/meta.h"
#include "common/metrics.h"

static void gauge(drift_metrics_out *o, const char *name, const char *help,
		  double v)
{
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, name, help, NULL, NULL, 0, v);
}

static void collect_member(drift_metrics_out *o, drift_member *m)
{
	drift_member_info in;
	drift_member_info_get(m, &in);
	gauge(o, "drift_raft_role",
	      "This member's Raft state: 0 unavailable, 1 follower, "
	      "2 candidate, 3 leader.",
	      in.raft_state);
	gauge(o, "drift_raft_term", "The Raft term this member is in.",
	      (double)in.term);
	gauge(o, "drift_raft_commit_index",
	      "The highest Raft log index known committed.",
	      (double)in.commit_index);
	gauge(o, "drift_raft_applied_index",
	      "The highest Raft log index applied to the state here.",
	      (double)in.applied_index);
	gauge(o, "drift_raft_last_index",
	      "The last index of this member's log.", (double)in.last_index);
	gauge(o, "drift_raft_voters", "Voters in the Raft configuration.",
	      in.voters);
	gauge(o, "drift_raft_leader_known",
	      "1 when this member knows a leader.", in.leader_raft_id != 0);
}

static void collect_map(drift_metrics_out *o, const drift_meta *st)
{
	gauge(o, "drift_cluster_map_version",
	      "The shard map's version applied on this node.",
	      (double)st->version);
	static const char *const states[] = {"up", "down", "joining",
					     "leaving"};
	size_t by_state[4] = {0};
	for (size_t i = 0; i < st->n_nodes; i++)
		if (st->nodes[i].state >= 0 && st->nodes[i].state < 4)
			by_state[st->nodes[i].state]++;
	const char *sl[] = {"state"};
	for (size_t i = 0; i < 4; i++) {
		const char *v[] = {states[i]};
		drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "drift_cluster_nodes",
				   "Nodes of the shard map, by state.", sl, v,
				   1, (double)by_state[i]);
	}
	gauge(o, "drift_cluster_collections", "Collections in the shard map.",
	      (double)st->n_cols);
	const char *rl[] = {"collection", "shard", "node"};
	for (size_t c = 0; c < st->n_cols; c++) {
		const drift_meta_collection *col = &st->cols[c];
		for (uint32_t s = 0; s < col->shards; s++) {
			const drift_meta_shard *sh = &col->shard[s];
			char sn[12];
			snprintf(sn, sizeof(sn), "%u", s);
			for (uint32_t r = 0; r < sh->n; r++) {
				const char *v[] = {col->name, sn, sh->nodes[r]};
				drift_metrics_emit(
					o, DRIFT_METRIC_GAUGE,
					"drift_shard_replica_in_sync",
					"1 when the map says the replica holds "
					"every write of its shard.",
					rl, v, 3, (sh->in_sync >> r) & 1u);
			}
		}
	}
}

static void collect(drift_metrics_out *o, void *ctx)
{
	drift_member *m = drift_node_cluster_member(ctx);
	if (m == NULL)
		return;
	collect_member(o, m);
	drift_meta *st = drift_member_state(m);
	if (st != NULL) {
		collect_map(o, st);
		drift_meta_unref(st);
	}
}

int drift_raft_metrics_start(drift_node_cluster *nc)
{
	return drift_metrics_add_collector(drift_metrics_default(), collect,
					   nc);
}

void drift_raft_metrics_stop(drift_node_cluster *nc)
{
	drift_metrics_remove_collector(drift_metrics_default(), collect, nc);
}
