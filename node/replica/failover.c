/*
 * The metadata leader's promotions: a shard whose primary is on a DOWN
 * node gets its longest in-sync replica as primary, in a new epoch (see
 * replica.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/member.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "node/replica/replica_internal.h"

#define FENCE_TIMEOUT_NS 1000000000ull

/* A replica's position, after fencing it at `fence`: 0 or an error. */
int repl_fence(drift_replica *r, const char *addr,
	       const drift_meta_collection *mc, uint32_t shard, uint64_t fence,
	       uint64_t *last, drift_err *err)
{
	Drift__Peer__V1__ReplicaStateRequest req =
		DRIFT__PEER__V1__REPLICA_STATE_REQUEST__INIT;
	req.collection = (char *)mc->name;
	req.created_version = mc->created_version;
	req.shard = shard;
	req.fence_epoch = fence;
	ProtobufCMessage *out = NULL;
	int rv = repl_call(r, addr, "/drift.peer.v1.Replica/State", &req.base,
			   &drift__peer__v1__replica_state_response__descriptor,
			   FENCE_TIMEOUT_NS, &out, err);
	if (rv == 0) {
		*last = ((Drift__Peer__V1__ReplicaStateResponse *)out)
				->last_seq;
		protobuf_c_message_free_unpacked(out, NULL);
	}
	return rv;
}

static void promote(drift_replica *r, const drift_meta *st,
		    const drift_meta_collection *mc, uint32_t shard)
{
	const drift_meta_shard *sh = &mc->shard[shard];
	uint64_t last[DRIFT_META_MAX_RF] = {0};
	bool answered[DRIFT_META_MAX_RF] = {false};
	int best = -1;
	drift_err err;
	drift_err_clear(&err);
	for (uint32_t i = 1; i < sh->n; i++) {
		const drift_meta_node *n =
			drift_meta_node_find(st, sh->nodes[i]);
		if (!(sh->in_sync & (1u << i)) || n == NULL ||
		    n->state != DRIFT_NODE_UP)
			continue;
		if (repl_fence(r, n->address, mc, shard, sh->epoch + 1,
			       &last[i], &err) != 0) {
			DRIFT_WARN("failover: %s/%u: replica %s: %s", mc->name,
				   shard, sh->nodes[i], err.msg);
			continue;
		}
		answered[i] = true;
		if (best < 0 || last[i] > last[best])
			best = (int)i;
	}
	if (best < 0) {
		DRIFT_WARN("failover: %s/%u: the primary %s is down and no "
			   "in-sync replica answers: the shard waits for one",
			   mc->name, shard, sh->nodes[0]);
		return;
	}
	char *nodes[DRIFT_META_MAX_RF], *in_sync[DRIFT_META_MAX_RF];
	size_t nn = 0, ni = 0;
	nodes[nn++] = (char *)sh->nodes[best];
	in_sync[ni++] = (char *)sh->nodes[best];
	for (uint32_t i = 0; i < sh->n; i++) {
		if ((int)i == best)
			continue;
		nodes[nn++] = (char *)sh->nodes[i];
		if (answered[i] && last[i] == last[best])
			in_sync[ni++] = (char *)sh->nodes[i];
	}
	Drift__Cluster__V1__SetReplicas req =
		DRIFT__CLUSTER__V1__SET_REPLICAS__INIT;
	req.collection = (char *)mc->name;
	req.created_version = mc->created_version;
	req.shard = shard;
	req.epoch = sh->epoch;
	req.new_epoch = true;
	req.nodes = nodes;
	req.n_nodes = nn;
	req.in_sync = in_sync;
	req.n_in_sync = ni;
	uint64_t version;
	if (repl_propose(r, &req, &version, &err) != 0) {
		DRIFT_WARN("failover: %s/%u: promoting %s: %s", mc->name, shard,
			   sh->nodes[best], err.msg);
		return;
	}
	DRIFT_WARN("failover: %s/%u: primary %s is down; %s (at record %" PRIu64
		   ") is the primary now, %zu of %u replicas in sync (map "
		   "version %" PRIu64 ")",
		   mc->name, shard, sh->nodes[0], sh->nodes[best], last[best],
		   ni, sh->n, version);
}

void drift_replica_failover(drift_replica *r)
{
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	for (size_t c = 0; c < st->n_cols; c++) {
		const drift_meta_collection *mc = &st->cols[c];
		for (uint32_t s = 0; s < mc->shards; s++) {
			const drift_meta_shard *sh = &mc->shard[s];
			const drift_meta_node *p =
				drift_meta_node_find(st, sh->nodes[0]);
			if (sh->n < 2 ||
			    (p != NULL && p->state != DRIFT_NODE_DOWN))
				continue;
			promote(r, st, mc, s);
		}
	}
	drift_meta_unref(st);
	repl_resume_moves(r);
}
