/*
 * Reads from in-sync replicas (see replica.h): the search load of a shard
 * spread over its replicas, each read still seeing every write
 * acknowledged before it began.
 *
 * A replica R asked to serve a read of shard s (its map naming it in sync,
 * P the primary at epoch e) asks P for its log's position L (ReadIndex,
 * after Raft's read index: Ongaro, "Consensus: Bridging Theory and
 * Practice", 2014, section 6.4). P answers only while its own map names it
 * the primary at epoch e with R in sync, and no newer epoch has fenced it;
 * then R checks that no newer epoch has fenced R either, waits until its
 * log holds L and those records are applied, and serves the read.
 *
 * Why that sees every acknowledged write W: one P acknowledged at epoch e
 * has sequence number <= L, and R holds it (in sync at e: every in-sync
 * replica holds every acknowledged write; a replica P dropped from the set
 * is refused, since P waits for its map to have the drop before it
 * acknowledges). One acknowledged at a newer epoch needed a majority of
 * the replication factor fenced at it, before the read began. When the
 * shard has at most that majority + 1 replicas, any majority holds P or R,
 * whose check then fails. With more replicas (RF 5; a move's extra
 * replica) reads stay with the primary.
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/member.h"
#include "cluster/placement.h"
#include "common/clock.h"
#include "node/replica/replica_internal.h"

#define READ_INDEX_TIMEOUT_NS 1000000000ull

static int index_in(const drift_meta_shard *sh, const char *id)
{
	for (uint32_t i = 0; i < sh->n; i++)
		if (strcmp(sh->nodes[i], id) == 0)
			return (int)i;
	return -1;
}

int repl_read_index(drift_replica *r, drift_collection *col,
		    struct repl_shard *e,
		    const Drift__Peer__V1__ReadIndexRequest *req,
		    uint64_t *last, drift_err *err)
{
	const char *self = drift_node_cluster_node_id(r->nc);
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	const drift_meta_collection *mc =
		drift_meta_col_find(st, req->collection);
	const drift_meta_shard *sh =
		mc != NULL && mc->created_version == req->created_version &&
				req->shard < mc->shards
			? &mc->shard[req->shard]
			: NULL;
	int at = sh != NULL ? index_in(sh, req->node) : -1;
	int rv = 0;
	if (sh == NULL || strcmp(sh->nodes[0], self) != 0 ||
	    sh->epoch != req->epoch)
		rv = drift_err_set(err, DRIFT_ESTALE,
				   "%s/%u: node %s is not its primary at epoch "
				   "%" PRIu64 " (map version %" PRIu64 ")",
				   req->collection, req->shard, self,
				   req->epoch, st->version);
	else if (at < 0 || !(sh->in_sync & (1u << at)))
		rv = drift_err_set(err, DRIFT_ESTALE,
				   "%s/%u: node %s is not in sync (map version "
				   "%" PRIu64 ")",
				   req->collection, req->shard, req->node,
				   st->version);
	drift_meta_unref(st);
	if (rv != 0)
		return rv;
	pthread_mutex_lock(&e->mu);
	uint64_t fence = e->ep.fence;
	pthread_mutex_unlock(&e->mu);
	if (fence > req->epoch)
		return drift_err_set(err, DRIFT_ESTALE,
				     "%s/%u: node %s was fenced at epoch "
				     "%" PRIu64,
				     req->collection, req->shard, self, fence);
	*last = repl_last_seq(col, req->shard);
	return 0;
}

static int ask_and_wait(drift_replica *r, drift_collection *col, uint32_t shard,
			struct repl_shard *e, uint64_t epoch,
			const char *primary, uint64_t deadline, drift_err *err);

int drift_replica_read_at(drift_replica *r, drift_collection *col,
			  uint32_t shard, uint64_t version, drift_err *err)
{
	drift_member *m = drift_node_cluster_member(r->nc);
	const drift_collection_config *cfg = drift_collection_cfg(col);
	const char *self = drift_node_cluster_node_id(r->nc);
	uint64_t deadline = drift_now_ns() + READ_INDEX_TIMEOUT_NS;
	drift_meta *st = drift_member_state(m);
	if (version > st->version) {
		drift_meta_unref(st);
		drift_member_wait(m, version - 1, deadline, &st);
	}
	const drift_meta_collection *mc = drift_meta_col_find(st, cfg->name);
	const drift_meta_shard *sh =
		mc != NULL && mc->created_version == cfg->cluster_version &&
				shard < mc->shards
			? &mc->shard[shard]
			: NULL;
	int at = sh != NULL ? index_in(sh, self) : -1;
	if (at == 0) {
		drift_meta_unref(st);
		return 0; /* the primary itself */
	}
	if (at < 0 || !(sh->in_sync & (1u << at)) ||
	    !drift_placement_reads_spread(sh->n, mc->replication_factor)) {
		int rv = drift_err_set(
			err, DRIFT_ESTALE,
			"collection %s: shard %u's reads go to its primary %s, "
			"not to node %s (map version %" PRIu64 ")",
			cfg->name, shard, sh != NULL ? sh->nodes[0] : "-", self,
			st->version);
		drift_meta_unref(st);
		return rv;
	}
	uint64_t epoch = sh->epoch;
	char primary[DRIFT_ADDR_MAX + 1];
	snprintf(primary, sizeof(primary), "%s",
		 repl_address(st, sh->nodes[0]));
	drift_meta_unref(st);
	struct repl_shard *e = repl_shard_of(r, col, shard, err);
	if (e == NULL)
		return err->code;
	int rv = ask_and_wait(r, col, shard, e, epoch, primary, deadline, err);
	repl_shard_put(r, e);
	return rv;
}

/* read_at's steps 1 and 2 (see above) for e, col's shard. */
static int ask_and_wait(drift_replica *r, drift_collection *col, uint32_t shard,
			struct repl_shard *e, uint64_t epoch,
			const char *primary, uint64_t deadline, drift_err *err)
{
	const drift_collection_config *cfg = drift_collection_cfg(col);
	const char *self = drift_node_cluster_node_id(r->nc);
	Drift__Peer__V1__ReadIndexRequest req =
		DRIFT__PEER__V1__READ_INDEX_REQUEST__INIT;
	req.collection = (char *)cfg->name;
	req.created_version = cfg->cluster_version;
	req.shard = shard;
	req.epoch = epoch;
	req.node = (char *)self;
	ProtobufCMessage *out = NULL;
	int rv = repl_call(r, primary, "/drift.peer.v1.Replica/ReadIndex",
			   &req.base,
			   &drift__peer__v1__read_index_response__descriptor,
			   READ_INDEX_TIMEOUT_NS, &out, err);
	if (rv != 0) {
		char why[DRIFT_ERR_MSG_MAX];
		snprintf(why, sizeof(why), "%s", err->msg);
		return drift_err_set(err, DRIFT_ESTALE,
				     "collection %s: shard %u's primary %s: %s",
				     cfg->name, shard, primary, why);
	}
	uint64_t last = ((Drift__Peer__V1__ReadIndexResponse *)out)->last_seq;
	protobuf_c_message_free_unpacked(out, NULL);
	/* After the primary's answer: not fenced past the epoch since. */
	pthread_mutex_lock(&e->mu);
	uint64_t fence = e->ep.fence;
	pthread_mutex_unlock(&e->mu);
	if (fence > epoch)
		return drift_err_set(err, DRIFT_ESTALE,
				     "collection %s: shard %u moved to epoch "
				     "%" PRIu64,
				     cfg->name, shard, fence);
	drift_shard *s = drift_collection_shard_enter(col, shard);
	rv = s != NULL ? drift_shard_wait_applied(s, last, deadline)
		       : DRIFT_EINVAL;
	drift_collection_shard_leave(col, shard);
	if (rv != 0)
		return drift_err_set(err, DRIFT_ESTALE,
				     "collection %s: shard %u on node %s is "
				     "behind its primary (record %" PRIu64 ")",
				     cfg->name, shard, self, last);
	return 0;
}
