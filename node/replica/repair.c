/*
 * Repair of this node's damaged copies (see replica.h): a collection that
 * this node holds replicas of and that opened broken (DRIFT_ECORRUPT: a
 * damaged or missing segment, manifest or log file) is rebuilt from the
 * other replicas without anyone asking:
 *   1. the metadata leader takes this node's replicas of it out of the
 *      in-sync sets (Replica/Repair): a primary hands over first, in a new
 *      epoch, to the longest in-sync replica (repl_hand_over). Refused
 *      when a shard has no other in-sync replica on a node that is up:
 *      the damaged copy may then hold acknowledged writes no one else
 *      has, and stays as it is (DATA_LOSS) for the operator;
 *   2. once this node's map has that, the damaged copy is dropped and the
 *      collection created again, empty, from the map's configuration;
 *   3. the primaries' catch-up copies every shard to it (a full copy, or
 *      the log) and adds it to the in-sync sets again.
 * Meanwhile the node answers its requests for the collection with
 * UNAVAILABLE (retryable) rather than DATA_LOSS (drift_replica_repairable).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/member.h"
#include "common/clock.h"
#include "common/log.h"
#include "node/replica/replica_internal.h"

#define REPAIR_SCAN_NS 1000000000ull
#define REPAIR_WARN_NS (30ull * 1000000000ull)

static int replica_at(const drift_meta_shard *sh, const char *id)
{
	for (uint32_t i = 0; i < sh->n; i++)
		if (strcmp(sh->nodes[i], id) == 0)
			return (int)i;
	return -1;
}

/* Whether every shard of mc that node is in sync for has another in-sync
 * replica on a node that is UP (the shard's name into what if not). */
static bool others_hold(const drift_meta *st, const drift_meta_collection *mc,
			const char *node, char *what, size_t cap)
{
	for (uint32_t s = 0; s < mc->shards; s++) {
		const drift_meta_shard *sh = &mc->shard[s];
		int at = replica_at(sh, node);
		if (at < 0 || !(sh->in_sync & (1u << at)))
			continue;
		bool other = false;
		for (uint32_t i = 0; i < sh->n && !other; i++) {
			const drift_meta_node *n =
				drift_meta_node_find(st, sh->nodes[i]);
			other = (int)i != at && (sh->in_sync & (1u << i)) &&
				n != NULL && n->state == DRIFT_NODE_UP;
		}
		if (!other) {
			snprintf(what, cap, "%s/%u", mc->name, s);
			return false;
		}
	}
	return true;
}

bool drift_replica_repairable(drift_replica *r, const char *name)
{
	drift_member *m = drift_node_cluster_member(r->nc);
	drift_member_info in;
	drift_member_info_get(m, &in);
	drift_meta *st = drift_member_state(m);
	const drift_meta_collection *mc = drift_meta_col_find(st, name);
	char what[DRIFT_META_NAME_MAX + 16];
	/* A map not caught up yet (a node just started) may not know the
	 * collection: its copy is taken to be rebuilt, as it will be if the
	 * map has replicas elsewhere. */
	bool ok = mc != NULL ? others_hold(st, mc,
					   drift_node_cluster_node_id(r->nc),
					   what, sizeof(what))
			     : in.leader_raft_id == 0 ||
				       in.applied_index < in.commit_index;
	drift_meta_unref(st);
	return ok;
}

int repl_take_out(drift_replica *r, const char *name, uint64_t created,
		  const char *node, uint64_t *version, drift_err *err)
{
	drift_member *m = drift_node_cluster_member(r->nc);
	drift_meta *st = drift_member_state(m);
	const drift_meta_collection *mc = drift_meta_col_find(st, name);
	char what[DRIFT_META_NAME_MAX + 16];
	int rv = 0;
	*version = st->version;
	if (mc == NULL || mc->created_version != created)
		rv = drift_err_set(err, DRIFT_ENOENT,
				   "no collection %s of map version %" PRIu64,
				   name, created);
	else if (!others_hold(st, mc, node, what, sizeof(what)))
		rv = drift_err_set(err, DRIFT_ESTALE,
				   "shard %s has no in-sync replica but node "
				   "%s's on a node that is up: its copy is "
				   "left as it is",
				   what, node);
	uint32_t shards = mc != NULL ? mc->shards : 0;
	drift_meta_unref(st);
	for (uint32_t s = 0; rv == 0 && s < shards; s++) {
		st = drift_member_state(m);
		mc = drift_meta_col_find(st, name);
		const drift_meta_shard *sh = mc != NULL ? &mc->shard[s] : NULL;
		int at = sh != NULL ? replica_at(sh, node) : -1;
		if (at == 0) {
			rv = repl_hand_over(r, st, mc, s, node, "", true,
					    version, err);
		} else if (at > 0 && (sh->in_sync & (1u << at))) {
			char *drop[] = {(char *)node};
			Drift__Cluster__V1__SetReplicas sr =
				DRIFT__CLUSTER__V1__SET_REPLICAS__INIT;
			sr.collection = (char *)name;
			sr.created_version = created;
			sr.shard = s;
			sr.epoch = sh->epoch;
			sr.drop_in_sync = drop;
			sr.n_drop_in_sync = 1;
			rv = repl_propose(r, &sr, version, err);
		}
		drift_meta_unref(st);
	}
	return rv;
}

/* Step 1 through the leader: 0 (*version: the map that has it) or why. */
static int ask_leader(drift_replica *r, const drift_meta_collection *mc,
		      uint64_t *version, drift_err *err)
{
	drift_member *m = drift_node_cluster_member(r->nc);
	const char *self = drift_node_cluster_node_id(r->nc);
	char id[DRIFT_NODE_ID_MAX + 1], addr[DRIFT_ADDR_MAX + 1];
	if (!drift_member_leader(m, id, addr))
		return drift_err_set(err, DRIFT_EUNAVAIL,
				     "no metadata leader is known");
	if (strcmp(id, self) == 0)
		return repl_take_out(r, mc->name, mc->created_version, self,
				     version, err);
	Drift__Peer__V1__RepairRequest req =
		DRIFT__PEER__V1__REPAIR_REQUEST__INIT;
	req.collection = (char *)mc->name;
	req.created_version = mc->created_version;
	req.node = (char *)self;
	ProtobufCMessage *out = NULL;
	int rv = repl_call(r, addr, "/drift.peer.v1.Replica/Repair", &req.base,
			   &drift__peer__v1__set_replicas_response__descriptor,
			   REPL_TIMEOUT_NS * 3, &out, err);
	if (rv == 0) {
		*version = ((Drift__Peer__V1__SetReplicasResponse *)out)
				   ->map_version;
		protobuf_c_message_free_unpacked(out, NULL);
	}
	return rv;
}

/* Whether node is out of every in-sync set of mc. */
static bool out_of_sync(const drift_meta_collection *mc, const char *node)
{
	for (uint32_t s = 0; s < mc->shards; s++) {
		int at = replica_at(&mc->shard[s], node);
		if (at >= 0 && (mc->shard[s].in_sync & (1u << at)))
			return false;
	}
	return true;
}

static void repair_one(drift_replica *r, const drift_meta_collection *mc,
		       const char *why)
{
	const char *self = drift_node_cluster_node_id(r->nc);
	drift_err err;
	drift_err_clear(&err);
	uint64_t version = 0;
	int rv = out_of_sync(mc, self) ? 0 : ask_leader(r, mc, &version, &err);
	if (rv == 0 && version > 0 &&
	    drift_node_cluster_wait_applied(r->nc, version, REPL_TIMEOUT_NS) !=
		    0)
		rv = drift_err_set(&err, DRIFT_EUNAVAIL,
				   "map version %" PRIu64 " has not reached "
				   "this node",
				   version);
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	const drift_meta_collection *now = drift_meta_col_find(st, mc->name);
	if (rv == 0 &&
	    (now == NULL || now->created_version != mc->created_version ||
	     !out_of_sync(now, self)))
		rv = drift_err_set(&err, DRIFT_ECONFLICT,
				   "the map still has this node in sync");
	drift_meta_unref(st);
	if (rv != 0) {
		uint64_t t = drift_now_ns();
		if (t - r->repair_warned >= REPAIR_WARN_NS) {
			r->repair_warned = t;
			DRIFT_WARN("repair: collection %s is damaged here (%s) "
				   "and cannot be rebuilt now: %s",
				   mc->name, why, err.msg);
		}
		return;
	}
	DRIFT_WARN("repair: collection %s is damaged here (%s): its copy is "
		   "dropped and made again, empty; the primaries copy its "
		   "shards back",
		   mc->name, why);
	drift_collection_config cfg;
	if (drift_cm_drop(r->cm, mc->name, &err) != 0 ||
	    drift_node_cluster_config(r->nc, mc->name, &cfg) != 0 ||
	    drift_cm_create(r->cm, &cfg, &err) != 0)
		DRIFT_WARN("repair: collection %s: %s", mc->name,
			   err.msg[0] ? err.msg : "gone from the map");
}

void repl_repair_pass(drift_replica *r)
{
	uint64_t t = drift_now_ns();
	if (t < r->repair_next)
		return;
	r->repair_next = t + REPAIR_SCAN_NS;
	const char *self = drift_node_cluster_node_id(r->nc);
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	for (size_t c = 0; c < st->n_cols; c++) {
		const drift_meta_collection *mc = &st->cols[c];
		bool held = false;
		for (uint32_t s = 0; s < mc->shards && !held; s++)
			held = replica_at(&mc->shard[s], self) >= 0;
		drift_collection *col;
		drift_err err;
		drift_err_clear(&err);
		if (!held || mc->shard[0].n < 2)
			continue;
		int rv = drift_cm_acquire(r->cm, mc->name, &col, &err);
		if (rv == 0)
			drift_cm_release(r->cm, col);
		else if (rv == DRIFT_ECORRUPT)
			repair_one(r, mc, err.msg);
	}
	drift_meta_unref(st);
}
