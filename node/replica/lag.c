/*
 * The replication lag metric: drift_replication_lag_ops{collection,
 * shard, replica} on a shard's primary, one series per other replica:
 * the records of the primary's log that replica is not known to hold (its
 * acknowledgements of writes and of the catch-up's batches). An in-sync
 * replica not heard from since this node became the primary counts 0 (in
 * sync, it holds every acknowledged write); an out-of-sync one the whole
 * log. Computed at scrape time from the shards this node has written.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/member.h"
#include "common/alloc.h"
#include "common/metrics.h"
#include "node/replica/replica_internal.h"

void repl_note_position(struct repl_shard *e, const char *id, uint64_t seq)
{
	pthread_mutex_lock(&e->mu);
	size_t i = 0;
	while (i < e->n_pos && strcmp(e->pos[i].id, id) != 0)
		i++;
	if (i == e->n_pos && e->n_pos < DRIFT_META_MAX_RF) {
		snprintf(e->pos[i].id, sizeof(e->pos[i].id), "%s", id);
		e->pos[i].seq = 0;
		e->n_pos++;
	}
	if (i < e->n_pos && seq > e->pos[i].seq)
		e->pos[i].seq = seq;
	pthread_mutex_unlock(&e->mu);
}

/* The samples of one shard entry this node is the primary of. */
static void collect_shard(drift_metrics_out *o, drift_replica *r,
			  const drift_meta *st, struct repl_shard *e)
{
	const char *self = drift_node_cluster_node_id(r->nc);
	const drift_meta_collection *mc = drift_meta_col_find(st, e->name);
	if (mc == NULL || mc->created_version != e->created ||
	    e->shard >= mc->shards)
		return;
	const drift_meta_shard *sh = &mc->shard[e->shard];
	if (sh->n < 2 || strcmp(sh->nodes[0], self) != 0)
		return;
	drift_collection *col;
	if (drift_cm_acquire(r->cm, e->name, &col, NULL) != 0)
		return;
	uint64_t own = drift_collection_cfg(col)->cluster_version == e->created
			       ? repl_last_seq(col, e->shard)
			       : 0;
	drift_cm_release(r->cm, col);
	char shard[16];
	snprintf(shard, sizeof(shard), "%u", e->shard);
	static const char *const labels[] = {"collection", "shard", "replica"};
	for (uint32_t i = 1; i < sh->n; i++) {
		bool in_sync = (sh->in_sync & (1u << i)) != 0;
		uint64_t held = in_sync ? own : 0;
		pthread_mutex_lock(&e->mu);
		for (size_t k = 0; k < e->n_pos; k++)
			if (strcmp(e->pos[k].id, sh->nodes[i]) == 0)
				held = e->pos[k].seq;
		pthread_mutex_unlock(&e->mu);
		const char *values[] = {e->name, shard, sh->nodes[i]};
		drift_metrics_emit(
			o, DRIFT_METRIC_GAUGE, "drift_replication_lag_ops",
			"Records of the primary's log a replica is not known "
			"to hold (on the shard's primary).",
			labels, values, 3,
			own > held ? (double)(own - held) : 0);
	}
}

static void collect(drift_metrics_out *o, void *ctx)
{
	drift_replica *r = ctx;
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	/* The entries, held (repl_reap frees only unused ones). */
	pthread_mutex_lock(&r->mu);
	size_t n = 0;
	for (struct repl_shard *e = r->shards; e != NULL; e = e->next)
		n++;
	struct repl_shard **all = drift_mallocarray(n + 1, sizeof(*all));
	n = 0;
	for (struct repl_shard *e = r->shards; all != NULL && e != NULL;
	     e = e->next) {
		e->refs++;
		all[n++] = e;
	}
	pthread_mutex_unlock(&r->mu);
	for (size_t i = 0; i < n; i++) {
		collect_shard(o, r, st, all[i]);
		repl_shard_put(r, all[i]);
	}
	drift_free(all);
	drift_meta_unref(st);
}

int repl_lag_start(drift_replica *r)
{
	return drift_metrics_add_collector(drift_metrics_default(), collect, r);
}

void repl_lag_stop(drift_replica *r)
{
	drift_metrics_remove_collector(drift_metrics_default(), collect, r);
}
