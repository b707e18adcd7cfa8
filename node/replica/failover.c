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

int repl_hand_over(drift_replica *r, const drift_meta *st,
		   const drift_meta_collection *mc, uint32_t shard,
		   const char *gone, const char *prefer, bool keep,
		   uint64_t *version, drift_err *err)
{
	const drift_meta_shard *sh = &mc->shard[shard];
	drift_err ferr;
	/* The old primary first, when it may still be up: it takes no write
	 * after this. */
	const drift_meta_node *gn = drift_meta_node_find(st, gone);
	uint64_t gl;
	if (gn != NULL && gn->state != DRIFT_NODE_DOWN)
		repl_fence(r, gn->address, mc, shard, sh->epoch + 1, &gl,
			   &ferr);
	/* Fenced, the in-sync replicas stop taking the old primary's writes;
	 * the ones it had sent to some of them only (not acknowledged) make
	 * their logs differ in length: the new primary is one of the
	 * longest, and only those as long stay in sync (the others catch up
	 * from it). */
	uint64_t last[DRIFT_META_MAX_RF] = {0};
	bool answered[DRIFT_META_MAX_RF] = {false};
	uint64_t longest = 0;
	for (uint32_t i = 0; i < sh->n; i++) {
		const drift_meta_node *n =
			drift_meta_node_find(st, sh->nodes[i]);
		if (!(sh->in_sync & (1u << i)) || n == NULL ||
		    n->state != DRIFT_NODE_UP ||
		    strcmp(sh->nodes[i], gone) == 0)
			continue;
		if (repl_fence(r, n->address, mc, shard, sh->epoch + 1,
			       &last[i], &ferr) != 0) {
			DRIFT_WARN("%s/%u: replica %s: %s", mc->name, shard,
				   sh->nodes[i], ferr.msg);
			continue;
		}
		answered[i] = true;
		if (last[i] > longest)
			longest = last[i];
	}
	int first = -1;
	for (uint32_t i = 0; i < sh->n; i++)
		if (answered[i] && last[i] == longest &&
		    (first < 0 || strcmp(sh->nodes[i], prefer) == 0))
			first = (int)i;
	if (first < 0)
		return drift_err_set(err, DRIFT_EUNAVAIL,
				     "%s/%u: no in-sync replica answers to "
				     "take over from %s",
				     mc->name, shard, gone);
	char *nodes[DRIFT_META_MAX_RF], *in_sync[DRIFT_META_MAX_RF];
	size_t nn = 0, ni = 0;
	nodes[nn++] = (char *)sh->nodes[first];
	in_sync[ni++] = (char *)sh->nodes[first];
	for (uint32_t i = 0; i < sh->n; i++) {
		if ((int)i == first ||
		    (!keep && strcmp(sh->nodes[i], gone) == 0))
			continue;
		nodes[nn++] = (char *)sh->nodes[i];
		if (answered[i] && last[i] == longest)
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
	int rv = repl_propose(r, &req, version, err);
	if (rv == 0)
		DRIFT_WARN("%s/%u: %s (at record %" PRIu64 ") is the primary "
			   "now in place of %s, %zu of %zu replicas in sync "
			   "(map version %" PRIu64 ")",
			   mc->name, shard, sh->nodes[first], longest, gone, ni,
			   nn, *version);
	return rv;
}

/* A shard whose primary is on a DOWN node: its longest in-sync replica
 * takes over; the old primary stays a replica, out of sync. */
static void promote(drift_replica *r, const drift_meta *st,
		    const drift_meta_collection *mc, uint32_t shard)
{
	const char *gone = mc->shard[shard].nodes[0];
	uint64_t version;
	drift_err err;
	drift_err_clear(&err);
	if (repl_hand_over(r, st, mc, shard, gone, "", true, &version, &err) !=
	    0)
		DRIFT_WARN("failover: %s/%u: the primary %s is down: %s; the "
			   "shard waits",
			   mc->name, shard, gone, err.msg);
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
	repl_join_rebalance(r);
	repl_replace_down(r);
}
