/*
 * drift.v1.Cluster on a node and the cluster's part of drift.v1.Drift
 * (see cluster_svc.h).
 */
#include "node/server/cluster_svc.h"

#include "cluster/placement.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/config.h"
#include "common/log.h"
#include "drift/v1/drift.pb-c.h"
#include "node/server/service.h"

#define CHANGE_TIMEOUT_NS 5000000000ull
#define PEER_TIMEOUT_NS 2000000000ull
/* Set on a metadata change forwarded to the leader. */
#define FORWARDED_HEADER "drift-forwarded"
/* How long a metadata change waits for a leader to be known. */
#define LEADER_WAIT_NS 1500000000ull
/* A health check of a peer before placing shards on it. */
#define PROBE_TIMEOUT_NS 300000000ull

/* ---- Helpers ---- */

static void finish_err(drift_grpc_call *c, int rv, const drift_err *err)
{
	drift_grpc_call_finish(c, drift_grpc_code_from_err(rv), "%s",
			       drift_err_msg(err, rv));
}

static uint64_t remaining(drift_grpc_call *c, uint64_t cap)
{
	uint64_t dl = drift_grpc_call_deadline(c);
	if (dl == UINT64_MAX)
		return cap;
	uint64_t now = drift_now_ns();
	if (dl <= now)
		return 1;
	return dl - now < cap ? dl - now : cap;
}

static int propose(drift_node_cluster *nc, Drift__Cluster__V1__Command *cmd,
		   drift_err *err)
{
	int rv = drift_member_propose(drift_node_cluster_member(nc), cmd,
				      CHANGE_TIMEOUT_NS, err);
	if (rv == DRIFT_ETIMEDOUT || rv == DRIFT_ESTALE)
		rv = drift_err_set(err, DRIFT_EUNAVAIL,
				   "metadata change: %s (no Raft quorum "
				   "reached it; retry)",
				   err != NULL ? err->msg : "not committed");
	return rv;
}

/* ---- Leader or forward ---- */

/* What a node answers to a change forwarded to it when it does not lead
 * (before doing anything): the forwarding node may try again. */
#define NOT_LEADER_TEXT "is no longer the Raft leader"

/* Forwards the call's request to the leader id at addr: 1 with the answer
 * in *msg, or the status in *st. */
static int forward_to(drift_node_cluster *nc, drift_grpc_call *c,
		      const ProtobufCMessage *req, const char *id,
		      const char *addr, drift_grpc_status *st,
		      drift_grpc_msg **msg)
{
	drift_grpc_client *cl;
	drift_err err;
	drift_err_clear(&err);
	memset(st, 0, sizeof(*st));
	if (drift_node_cluster_client(nc, addr, &cl, &err) != 0) {
		st->code = DRIFT_GRPC_UNAVAILABLE;
		snprintf(st->msg, sizeof(st->msg),
			 "leader %.64s at %.100s: %.160s", id, addr, err.msg);
		return -1;
	}
	/* One hop only: the leader marks nothing, but a node that gets a
	 * forwarded change and does not lead (leadership moved meanwhile)
	 * answers UNAVAILABLE at once instead of forwarding again, so two
	 * nodes with stale views never pass a call back and forth until its
	 * deadline. */
	static const char *const hop[] = {FORWARDED_HEADER, "1", NULL};
	size_t len = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = drift_malloc(len ? len : 1);
	drift_grpc_ccall *call = NULL;
	int got = -1;
	if (buf != NULL &&
	    drift_grpc_ccall_start(cl, drift_grpc_call_path(c),
				   remaining(c, 2 * CHANGE_TIMEOUT_NS), hop,
				   &call) == 0) {
		protobuf_c_message_pack(req, buf);
		if (drift_grpc_ccall_send(call, buf, len) == 0 &&
		    drift_grpc_ccall_close_send(call) == 0)
			got = drift_grpc_ccall_recv(call, msg);
		drift_grpc_ccall_finish(call, st);
	} else {
		st->code = DRIFT_GRPC_RESOURCE_EXHAUSTED;
		snprintf(st->msg, sizeof(st->msg), "out of memory");
	}
	drift_free(buf);
	return got;
}

bool drift_cluster_svc_lead(drift_node_cluster *nc, drift_grpc_call *c,
			    const ProtobufCMessage *req,
			    const ProtobufCMessageDescriptor *resp_desc)
{
	(void)resp_desc;
	drift_member *m = drift_node_cluster_member(nc);
	const char *self = drift_node_cluster_node_id(nc);
	drift_member_info in;
	char id[DRIFT_NODE_ID_MAX + 1], addr[DRIFT_ADDR_MAX + 1];
	char refused[DRIFT_NODE_ID_MAX + 1] = "";
	for (int attempt = 0;; attempt++) {
		/* No leader known (an election, a node that has just
		 * started), or only the one that just said it no longer
		 * leads (this node's view lags by up to a tick): wait a
		 * little, within the caller's deadline, rather than fail a
		 * change that would succeed a moment later. */
		uint64_t until = drift_now_ns() + remaining(c, LEADER_WAIT_NS);
		bool known;
		for (;;) {
			drift_member_info_get(m, &in);
			if (in.leader)
				return true;
			known = drift_member_leader(m, id, addr) &&
				strcmp(id, self) != 0 &&
				strcmp(id, refused) != 0;
			if (known || drift_now_ns() >= until ||
			    drift_grpc_call_done(c))
				break;
			usleep(10000);
		}
		if (known &&
		    drift_grpc_call_header(c, FORWARDED_HEADER) != NULL) {
			drift_grpc_call_finish(c, DRIFT_GRPC_UNAVAILABLE,
					       "node %s " NOT_LEADER_TEXT
					       " (the leader is %s now): retry",
					       self, id);
			return false;
		}
		if (!known) {
			drift_grpc_call_finish(
				c, DRIFT_GRPC_UNAVAILABLE,
				"no Raft leader is known to node %s (an "
				"election, or no quorum): the metadata cannot "
				"change now; retry",
				self);
			return false;
		}
		drift_grpc_status st;
		drift_grpc_msg *msg = NULL;
		int got = forward_to(nc, c, req, id, addr, &st, &msg);
		if (got == 1 && st.code == DRIFT_GRPC_OK) {
			if (drift_grpc_call_send(c, msg->data, msg->len) == 0)
				drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
			drift_grpc_msg_free(msg);
			return false;
		}
		drift_grpc_msg_free(msg);
		/* The node refused before doing anything: it is safe to go
		 * to the leader it names (or to lead here) instead. */
		if (attempt < 2 && st.code == DRIFT_GRPC_UNAVAILABLE &&
		    strstr(st.msg, NOT_LEADER_TEXT) != NULL &&
		    !drift_grpc_call_done(c)) {
			snprintf(refused, sizeof(refused), "%s", id);
			continue;
		}
		drift_grpc_call_finish(
			c,
			st.code != DRIFT_GRPC_OK ? st.code
						 : DRIFT_GRPC_INTERNAL,
			"%s", st.msg[0] ? st.msg : "no answer from the leader");
		return false;
	}
}

/* ---- Data path routing ---- */

static void holder_text(const drift_meta *st, const drift_meta_shard *sh,
			char *out, size_t cap)
{
	if (sh->n == 0) {
		snprintf(out, cap, "no node");
		return;
	}
	const drift_meta_node *n = drift_meta_node_find(st, sh->nodes[0]);
	snprintf(out, cap, "node %s (%s)", sh->nodes[0],
		 n != NULL ? n->address : "address unknown");
}

static bool holds(const drift_meta_shard *sh, const char *id)
{
	return sh->n > 0 && strcmp(sh->nodes[0], id) == 0;
}

/* The leader's map version, asked over gRPC (0 when it cannot be). */
static uint64_t leader_version(drift_node_cluster *nc)
{
	char id[DRIFT_NODE_ID_MAX + 1], addr[DRIFT_ADDR_MAX + 1];
	drift_member_info in;
	drift_member_info_get(drift_node_cluster_member(nc), &in);
	if (in.leader ||
	    !drift_member_leader(drift_node_cluster_member(nc), id, addr))
		return 0;
	drift_grpc_client *cl;
	if (drift_node_cluster_client(nc, addr, &cl, NULL) != 0)
		return 0;
	Drift__V1__StatusRequest req = DRIFT__V1__STATUS_REQUEST__INIT;
	ProtobufCMessage *out = NULL;
	if (drift_grpc_client_unary_pb(cl, "/drift.v1.Cluster/Status",
				       &req.base,
				       &drift__v1__status_response__descriptor,
				       PEER_TIMEOUT_NS, &out, NULL) != 0)
		return 0;
	uint64_t v = ((Drift__V1__StatusResponse *)out)->map_version;
	protobuf_c_message_free_unpacked(out, NULL);
	return v;
}

int drift_cluster_svc_route(drift_node_cluster *nc, const char *name,
			    const uint64_t *ids, size_t n, drift_err *err)
{
	drift_member *m = drift_node_cluster_member(nc);
	drift_meta *st = drift_member_state(m);
	const drift_meta_collection *mc = drift_meta_col_find(st, name);
	if (mc == NULL) {
		/* Perhaps only this node has not heard of it yet: catch up
		 * with the leader's map once. */
		uint64_t v = leader_version(nc);
		if (v > st->version) {
			drift_meta_unref(st);
			drift_member_wait(m, v - 1,
					  drift_now_ns() + PEER_TIMEOUT_NS,
					  &st);
			drift_node_cluster_wait_applied(nc, st->version,
							PEER_TIMEOUT_NS);
			mc = drift_meta_col_find(st, name);
		}
	}
	int rv = 0;
	if (mc == NULL) {
		rv = DRIFT_ENOENT;
		goto out;
	}
	const char *self = drift_node_cluster_node_id(nc);
	bool mine = false;
	for (uint32_t s = 0; s < mc->shards; s++)
		mine |= holds(&mc->shard[s], self);
	if (mine) {
		/* The map gives this node shards: make sure the watcher has
		 * opened them (or say why it could not). */
		if (drift_node_cluster_wait_applied(nc, mc->created_version,
						    PEER_TIMEOUT_NS) != 0) {
			rv = drift_err_set(
				err, DRIFT_EUNAVAIL,
				"collection %s: node %s has not opened it "
				"yet (map version %llu)",
				name, self,
				(unsigned long long)mc->created_version);
			goto out;
		}
		drift_err oerr;
		drift_err_clear(&oerr);
		if ((rv = drift_node_cluster_open_error(
			     nc, name, mc->created_version, &oerr)) != 0) {
			drift_err_set(err, rv,
				      "collection %s cannot be opened on node "
				      "%s: %s",
				      name, self, oerr.msg);
			goto out;
		}
	}
	char who[DRIFT_ADDR_MAX + DRIFT_NODE_ID_MAX + 32];
	if (ids == NULL) {
		for (uint32_t s = 0; s < mc->shards; s++)
			if (!holds(&mc->shard[s], self)) {
				holder_text(st, &mc->shard[s], who,
					    sizeof(who));
				rv = drift_err_set(err, DRIFT_ESTALE,
						   "collection %s: shard %u of "
						   "%u is on %s, not on node "
						   "%s (send it there, or "
						   "through drift-router)",
						   name, s, mc->shards, who,
						   self);
				goto out;
			}
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t s = drift_shard_of_id(ids[i], mc->shards);
		if (holds(&mc->shard[s], self))
			continue;
		holder_text(st, &mc->shard[s], who, sizeof(who));
		rv = drift_err_set(err, DRIFT_ESTALE,
				   "collection %s: id %llu belongs to shard "
				   "%u, which is on %s, not on node %s (send "
				   "it there, or through drift-router)",
				   name, (unsigned long long)ids[i], s, who,
				   self);
		goto out;
	}
out:
	drift_meta_unref(st);
	return rv;
}

int drift_cluster_svc_route_shard(drift_node_cluster *nc, const char *name,
				  uint32_t shard, uint64_t version,
				  const uint64_t *ids, size_t n, drift_err *err)
{
	drift_member *m = drift_node_cluster_member(nc);
	drift_meta *st = drift_member_state(m);
	if (version > st->version) {
		/* The caller saw a newer map: catch up first. */
		drift_meta_unref(st);
		drift_member_wait(m, version - 1,
				  drift_now_ns() + PEER_TIMEOUT_NS / 2, &st);
	}
	int rv = 0;
	const char *self = drift_node_cluster_node_id(nc);
	const drift_meta_collection *mc = drift_meta_col_find(st, name);
	if (mc == NULL) {
		rv = drift_err_set(err, DRIFT_ENOENT,
				   "collection \"%s\" does not exist (map "
				   "version %llu)",
				   name, (unsigned long long)st->version);
		goto out;
	}
	if (shard >= mc->shards) {
		rv = drift_err_set(err, DRIFT_EINVAL,
				   "collection %s has shards 0..%u, not %u",
				   name, mc->shards - 1, shard);
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		uint32_t s = drift_shard_of_id(ids[i], mc->shards);
		if (s != shard) {
			rv = drift_err_set(err, DRIFT_EINVAL,
					   "id %llu belongs to shard %u of "
					   "collection %s, not to shard %u",
					   (unsigned long long)ids[i], s, name,
					   shard);
			goto out;
		}
	}
	if (!holds(&mc->shard[shard], self)) {
		char who[DRIFT_ADDR_MAX + DRIFT_NODE_ID_MAX + 32];
		holder_text(st, &mc->shard[shard], who, sizeof(who));
		rv = drift_err_set(err, DRIFT_ESTALE,
				   "collection %s: shard %u is on %s, not on "
				   "node %s (map version %llu)",
				   name, shard, who, self,
				   (unsigned long long)st->version);
		goto out;
	}
	if (drift_node_cluster_wait_applied(nc, mc->created_version,
					    PEER_TIMEOUT_NS) != 0) {
		rv = drift_err_set(err, DRIFT_EUNAVAIL,
				   "collection %s: node %s has not opened it "
				   "yet (map version %llu)",
				   name, self,
				   (unsigned long long)mc->created_version);
		goto out;
	}
	drift_err oerr;
	drift_err_clear(&oerr);
	if ((rv = drift_node_cluster_open_error(nc, name, mc->created_version,
						&oerr)) != 0)
		drift_err_set(err, rv,
			      "collection %s cannot be opened on node %s: %s",
			      name, self, oerr.msg);
out:
	drift_meta_unref(st);
	return rv;
}

/* ---- Collections ---- */

/* Whether node `address` lists collection `name` as open: 1 or 0, or
 * an error when it cannot be asked. */
static int peer_lists(drift_node_cluster *nc, const char *address,
		      const char *name)
{
	drift_grpc_client *cl;
	int rv = drift_node_cluster_client(nc, address, &cl, NULL);
	if (rv != 0)
		return rv;
	Drift__V1__StatusRequest req = DRIFT__V1__STATUS_REQUEST__INIT;
	ProtobufCMessage *out = NULL;
	if ((rv = drift_grpc_client_unary_pb(
		     cl, "/drift.v1.Cluster/Status", &req.base,
		     &drift__v1__status_response__descriptor, PEER_TIMEOUT_NS,
		     &out, NULL)) != 0)
		return rv;
	Drift__V1__StatusResponse *r = (Drift__V1__StatusResponse *)out;
	int has = 0;
	for (size_t i = 0; i < r->n_collections; i++)
		has |= strcmp(r->collections[i], name) == 0;
	protobuf_c_message_free_unpacked(out, NULL);
	return has;
}

/* Whether node n has opened collection `name`: 0 (yes), DRIFT_EUNAVAIL
 * (not yet, or not reachable: asked again), or the error it answers, with its
 * message. */
static int peer_opened(drift_node_cluster *nc, const drift_meta_node *n,
		       const char *name, drift_err *err)
{
	int listed = peer_lists(nc, n->address, name);
	if (listed < 0)
		return DRIFT_EUNAVAIL;
	if (listed == 1)
		return 0;
	drift_grpc_client *cl;
	if (drift_node_cluster_client(nc, n->address, &cl, NULL) != 0)
		return DRIFT_EUNAVAIL;
	/* Not listed: its answer to a Describe says why. */
	Drift__V1__DescribeCollectionRequest req =
		DRIFT__V1__DESCRIBE_COLLECTION_REQUEST__INIT;
	req.name = (char *)name;
	ProtobufCMessage *out = NULL;
	drift_grpc_status st;
	memset(&st, 0, sizeof(st));
	int rv = drift_grpc_client_unary_pb(
		cl, "/drift.v1.Drift/DescribeCollection", &req.base,
		&drift__v1__describe_collection_response__descriptor,
		PEER_TIMEOUT_NS, &out, &st);
	if (rv == 0) {
		protobuf_c_message_free_unpacked(out, NULL);
		return 0;
	}
	if (st.code == DRIFT_GRPC_UNAVAILABLE ||
	    st.code == DRIFT_GRPC_NOT_FOUND ||
	    st.code == DRIFT_GRPC_FAILED_PRECONDITION ||
	    st.code == DRIFT_GRPC_DEADLINE_EXCEEDED || st.code == DRIFT_GRPC_OK)
		return DRIFT_EUNAVAIL;
	return drift_err_set(err, rv, "node %s: %s", n->id, st.msg);
}

/* Waits (bounded) until every node that holds a shard of collection mc
 * (in state st) has opened it: 0, or the first error a holder answers
 * (the collection cannot be opened there). A holder that does not answer
 * for PEER_TIMEOUT_NS is passed over: it opens the collection when it is
 * back. */
static int wait_opened(drift_node_cluster *nc, const drift_meta *st,
		       const drift_meta_collection *mc, drift_err *err)
{
	const char *self = drift_node_cluster_node_id(nc);
	int rv = 0;
	for (size_t i = 0; i < st->n_nodes && rv == 0; i++) {
		const drift_meta_node *n = &st->nodes[i];
		bool holder = false;
		for (uint32_t s = 0; s < mc->shards; s++)
			for (uint32_t r = 0; r < mc->shard[s].n; r++)
				holder |= strcmp(mc->shard[s].nodes[r],
						 n->id) == 0;
		if (!holder)
			continue;
		if (strcmp(n->id, self) == 0) {
			if (drift_node_cluster_wait_applied(
				    nc, st->version, 3 * PEER_TIMEOUT_NS) != 0)
				rv = drift_err_set(
					err, DRIFT_EUNAVAIL,
					"node %s has not applied map version "
					"%llu within %llu s (opening the "
					"collection's shards); retry",
					self, (unsigned long long)st->version,
					3 * PEER_TIMEOUT_NS / 1000000000ull);
			else if ((rv = drift_node_cluster_open_error(
					  nc, mc->name, mc->created_version,
					  err)) != 0)
				drift_err_wrap(err, rv, "node %s", self);
			continue;
		}
		uint64_t until = drift_now_ns() + PEER_TIMEOUT_NS;
		while ((rv = peer_opened(nc, n, mc->name, err)) ==
			       DRIFT_EUNAVAIL &&
		       drift_now_ns() < until)
			usleep(10000);
		if (rv == DRIFT_EUNAVAIL) {
			/* Down since the placement: the create stands (it is
			 * in the map), the node opens it when it is back. */
			DRIFT_WARN("cluster: node %s (%s) has not opened "
				   "collection %s yet",
				   n->id, n->address, mc->name);
			rv = 0;
		}
	}
	return rv;
}

/* Waits (bounded) until every node that held a shard of mc has closed
 * it. */
static void wait_dropped(drift_node_cluster *nc, const drift_meta *st,
			 const drift_meta_collection *mc)
{
	const char *self = drift_node_cluster_node_id(nc);
	for (size_t i = 0; i < st->n_nodes; i++) {
		const drift_meta_node *n = &st->nodes[i];
		bool holder = false;
		for (uint32_t s = 0; s < mc->shards; s++)
			for (uint32_t r = 0; r < mc->shard[s].n; r++)
				holder |= strcmp(mc->shard[s].nodes[r],
						 n->id) == 0;
		if (!holder || strcmp(n->id, self) == 0)
			continue;
		uint64_t until = drift_now_ns() + 3 * PEER_TIMEOUT_NS;
		while (peer_lists(nc, n->address, mc->name) != 0 &&
		       drift_now_ns() < until)
			usleep(10000);
	}
	drift_node_cluster_wait_applied(nc, st->version, PEER_TIMEOUT_NS);
}

int drift_cluster_svc_create(drift_node_cluster *nc,
			     const drift_collection_config *cfg, drift_err *err)
{
	drift_member *m = drift_node_cluster_member(nc);
	drift_meta *st = drift_member_state(m);
	int rv = 0;
	Drift__Cluster__V1__Shard *sh = NULL, **ps = NULL;
	char **ids = NULL;
	bool *skip = NULL;
	if (drift_meta_col_find(st, cfg->name) != NULL) {
		rv = drift_err_set(err, DRIFT_EEXIST,
				   "collection \"%s\" already exists",
				   cfg->name);
		goto out;
	}
	/* Only on nodes that answer now (the state marks a node DOWN only
	 * 1.5 s after it stopped answering). */
	skip = drift_calloc(st->n_nodes + 1, sizeof(*skip));
	if (skip == NULL) {
		rv = DRIFT_ENOMEM;
		goto out;
	}
	uint32_t up = 0;
	for (size_t i = 0; i < st->n_nodes; i++) {
		const drift_meta_node *n = &st->nodes[i];
		skip[i] = n->state != DRIFT_NODE_UP ||
			  (strcmp(n->id, drift_node_cluster_node_id(nc)) != 0 &&
			   !drift_node_cluster_alive(nc, n->address,
						     PROBE_TIMEOUT_NS));
		up += !skip[i];
	}
	if (cfg->replication_factor > up) {
		rv = drift_err_set(
			err, up < st->n_nodes ? DRIFT_EUNAVAIL : DRIFT_EINVAL,
			"replication_factor %u is more than the "
			"%u nodes of the cluster that are up (of "
			"%zu)",
			cfg->replication_factor, up, st->n_nodes);
		goto out;
	}
	sh = drift_calloc(cfg->shards, sizeof(*sh));
	ps = drift_calloc(cfg->shards, sizeof(*ps));
	ids = drift_calloc((size_t)cfg->shards * cfg->replication_factor,
			   sizeof(*ids));
	if (sh == NULL || ps == NULL || ids == NULL) {
		rv = DRIFT_ENOMEM;
		goto out;
	}
	/* Placement: each shard's replicas on the least-loaded nodes. */
	uint32_t *idx = NULL;
	if ((rv = drift_meta_place(st, skip, cfg->shards,
				   cfg->replication_factor, &idx)) != 0)
		goto out;
	for (uint32_t s = 0; s < cfg->shards; s++) {
		drift__cluster__v1__shard__init(&sh[s]);
		sh[s].collection = (char *)cfg->name;
		sh[s].shard = s;
		sh[s].nodes = &ids[(size_t)s * cfg->replication_factor];
		for (uint32_t r = 0; r < cfg->replication_factor; r++)
			sh[s].nodes[r] =
				st->nodes[idx[(size_t)s *
						      cfg->replication_factor +
					      r]]
					.id;
		sh[s].n_nodes = cfg->replication_factor;
		sh[s].in_sync = sh[s].nodes;
		sh[s].n_in_sync = sh[s].n_nodes;
		ps[s] = &sh[s];
	}
	drift_free(idx);
	Drift__Cluster__V1__Collection col =
		DRIFT__CLUSTER__V1__COLLECTION__INIT;
	col.name = (char *)cfg->name;
	col.dimension = cfg->dim;
	col.metric = (int)cfg->metric;
	col.shards = cfg->shards;
	col.replication_factor = cfg->replication_factor;
	col.wal_sync = (int)cfg->sync;
	col.memtable_rows = cfg->memtable_rows;
	col.default_recall = cfg->default_recall;
	col.memory_limit = cfg->memory_limit;
	Drift__Cluster__V1__CreateCollection cc =
		DRIFT__CLUSTER__V1__CREATE_COLLECTION__INIT;
	cc.collection = &col;
	cc.shards = ps;
	cc.n_shards = cfg->shards;
	Drift__Cluster__V1__Command cmd = DRIFT__CLUSTER__V1__COMMAND__INIT;
	cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_CREATE_COLLECTION;
	cmd.create_collection = &cc;
	if ((rv = propose(nc, &cmd, err)) != 0)
		goto out;
	drift_meta_unref(st);
	st = drift_member_state(m);
	const drift_meta_collection *made = drift_meta_col_find(st, cfg->name);
	if (made == NULL)
		goto out; /* dropped meanwhile */
	if ((rv = wait_opened(nc, st, made, err)) != 0) {
		/* A holder cannot open it (disk full, memory): undo, so a
		 * refused create changes nothing. */
		drift_err derr;
		drift_err_clear(&derr);
		if (drift_cluster_svc_drop(nc, cfg->name, &derr) != 0)
			DRIFT_WARN("cluster: undoing the create of %s: %s",
				   cfg->name, derr.msg);
	}
out:
	drift_free(skip);
	drift_free(sh);
	drift_free(ps);
	drift_free(ids);
	drift_meta_unref(st);
	return rv;
}

int drift_cluster_svc_drop(drift_node_cluster *nc, const char *name,
			   drift_err *err)
{
	drift_member *m = drift_node_cluster_member(nc);
	drift_meta *before = drift_member_state(m);
	if (drift_meta_col_find(before, name) == NULL) {
		drift_meta_unref(before);
		return drift_err_set(err, DRIFT_ENOENT,
				     "collection \"%s\" does not exist", name);
	}
	Drift__Cluster__V1__DropCollection d =
		DRIFT__CLUSTER__V1__DROP_COLLECTION__INIT;
	d.name = (char *)name;
	Drift__Cluster__V1__Command cmd = DRIFT__CLUSTER__V1__COMMAND__INIT;
	cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_DROP_COLLECTION;
	cmd.drop_collection = &d;
	int rv = propose(nc, &cmd, err);
	if (rv == 0) {
		drift_meta *after = drift_member_state(m);
		wait_dropped(nc, after, drift_meta_col_find(before, name));
		drift_meta_unref(after);
	}
	drift_meta_unref(before);
	return rv;
}

/* ---- drift.v1.Cluster ---- */

static void node_info(const drift_meta *st, const drift_meta_node *n,
		      uint64_t leader_raft, Drift__V1__NodeInfo *out)
{
	drift__v1__node_info__init(out);
	out->id = (char *)n->id;
	out->address = (char *)n->address;
	out->raft_address = (char *)n->raft_address;
	out->state = (Drift__V1__NodeState)n->state;
	out->role = n->raft_id == leader_raft
			    ? DRIFT__V1__NODE_ROLE__NODE_ROLE_LEADER
			    : (Drift__V1__NodeRole)n->role;
	out->shards = drift_meta_node_load(st, n->id, &out->primaries);
}

/* The moves marked in st (node/replica/moves.c), with the progress their
 * primaries report: an array of *n (NULL when none or out of memory) to
 * free with free_moves. */
static Drift__V1__ShardMove **moves_of(drift_node_cluster *nc,
				       const drift_meta *st, size_t *n)
{
	*n = 0;
	size_t want = 0;
	for (size_t i = 0; i < st->n_cols; i++)
		for (uint32_t s = 0; s < st->cols[i].shards; s++)
			want += st->cols[i].shard[s].move_to[0] != '\0';
	Drift__V1__ShardMove **out =
		want > 0 ? drift_calloc(want, sizeof(*out)) : NULL;
	for (size_t i = 0; out != NULL && i < st->n_cols; i++) {
		const drift_meta_collection *mc = &st->cols[i];
		for (uint32_t s = 0; s < mc->shards && *n < want; s++) {
			const drift_meta_shard *sh = &mc->shard[s];
			Drift__V1__ShardMove *m;
			if (sh->move_to[0] == '\0' ||
			    (m = drift_calloc(1, sizeof(*m))) == NULL)
				continue;
			drift__v1__shard_move__init(m);
			m->collection = (char *)mc->name;
			m->shard = s;
			m->from = (char *)sh->move_from;
			m->to = (char *)sh->move_to;
			drift_node_cluster_progress(
				nc, mc->name, mc->created_version, s,
				sh->move_to, &m->bytes_done, &m->bytes_total);
			out[(*n)++] = m;
		}
	}
	return out;
}

static void free_moves(Drift__V1__ShardMove **m, size_t n)
{
	for (size_t i = 0; i < n; i++)
		drift_free(m[i]);
	drift_free(m);
}

static void status(drift_grpc_call *c, void *ctx)
{
	drift_node_cluster *nc = ctx;
	Drift__V1__StatusRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__status_request__descriptor);
	if (req == NULL)
		return;
	protobuf_c_message_free_unpacked(&req->base, NULL);
	drift_member *m = drift_node_cluster_member(nc);
	drift_meta *st = drift_member_state(m);
	drift_member_info in;
	drift_member_info_get(m, &in);
	char **names = NULL;
	size_t n = 0;
	Drift__V1__NodeInfo *nodes =
		drift_calloc(st->n_nodes + 1, sizeof(*nodes));
	Drift__V1__NodeInfo **pn = drift_calloc(st->n_nodes + 1, sizeof(*pn));
	if (nodes == NULL || pn == NULL ||
	    drift_cm_list(drift_node_cluster_cm(nc), &names, &n) != 0) {
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "out of memory");
		goto out;
	}
	Drift__V1__StatusResponse resp = DRIFT__V1__STATUS_RESPONSE__INIT;
	resp.node_id = (char *)drift_node_cluster_node_id(nc);
	resp.version = (char *)DRIFT_NODE_VERSION;
	resp.n_collections = n;
	resp.collections = names;
	resp.map_version = st->version;
	resp.cluster_id = st->cluster_id;
	resp.term = in.term;
	const drift_meta_node *leader =
		in.leader_raft_id
			? drift_meta_node_by_raft(st, in.leader_raft_id)
			: NULL;
	resp.leader = leader != NULL ? (char *)leader->id : "";
	for (size_t i = 0; i < st->n_nodes; i++) {
		node_info(st, &st->nodes[i], in.leader_raft_id, &nodes[i]);
		pn[i] = &nodes[i];
	}
	resp.n_nodes = st->n_nodes;
	/* A node not yet in any cluster describes itself, so that a member
	 * asked to add it learns its Raft address. */
	Drift__V1__NodeInfo self = DRIFT__V1__NODE_INFO__INIT;
	if (drift_meta_node_find(st, drift_node_cluster_node_id(nc)) == NULL) {
		self.id = (char *)drift_node_cluster_node_id(nc);
		self.address = (char *)drift_node_cluster_address(nc);
		self.raft_address = (char *)drift_node_cluster_raft_address(nc);
		self.state = DRIFT__V1__NODE_STATE__NODE_STATE_JOINING;
		pn[resp.n_nodes++] = &self;
	}
	resp.nodes = pn;
	resp.moves = moves_of(nc, st, &resp.n_moves);
	drift_grpc_call_reply(c, &resp.base);
	free_moves(resp.moves, resp.n_moves);
out:
	for (size_t i = 0; i < n; i++)
		drift_free(names[i]);
	drift_free(names);
	drift_free(nodes);
	drift_free(pn);
	drift_meta_unref(st);
}

static void add_node(drift_grpc_call *c, void *ctx)
{
	drift_node_cluster *nc = ctx;
	Drift__V1__AddNodeRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__add_node_request__descriptor);
	if (req == NULL)
		return;
	char host[256];
	uint16_t port;
	drift_meta *st = NULL;
	ProtobufCMessage *out = NULL;
	if (drift_cfg_parse_addr(req->address, host, sizeof(host), &port) !=
		    0 ||
	    port == 0 || strlen(req->address) > DRIFT_ADDR_MAX) {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "address \"%.100s\" is not HOST:PORT",
				       req->address);
		goto done;
	}
	if (req->id[0] != '\0' && !drift_meta_node_id_ok(req->id)) {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "node id \"%.80s\" must match "
				       "[A-Za-z0-9_.-]{1,64}",
				       req->id);
		goto done;
	}
	if (!drift_cluster_svc_lead(nc, c, &req->base,
				    &drift__v1__add_node_response__descriptor))
		goto done;
	/* Ask the node who it is: it must answer, be the id asked for, and
	 * belong to no other cluster. */
	drift_grpc_client *cl;
	drift_err err;
	drift_err_clear(&err);
	drift_grpc_status gs;
	Drift__V1__StatusRequest sreq = DRIFT__V1__STATUS_REQUEST__INIT;
	if (drift_node_cluster_client(nc, req->address, &cl, &err) != 0 ||
	    drift_grpc_client_unary_pb(cl, "/drift.v1.Cluster/Status",
				       &sreq.base,
				       &drift__v1__status_response__descriptor,
				       PEER_TIMEOUT_NS, &out, &gs) != 0) {
		drift_grpc_call_finish(c, DRIFT_GRPC_UNAVAILABLE,
				       "node at %s does not answer: %s",
				       req->address,
				       err.msg[0] ? err.msg : gs.msg);
		goto done;
	}
	Drift__V1__StatusResponse *who = (Drift__V1__StatusResponse *)out;
	st = drift_member_state(drift_node_cluster_member(nc));
	if (req->id[0] != '\0' && strcmp(req->id, who->node_id) != 0) {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "the node at %s is %s, not %s",
				       req->address, who->node_id, req->id);
		goto done;
	}
	if (who->cluster_id[0] != '\0' &&
	    strcmp(who->cluster_id, st->cluster_id) != 0) {
		drift_grpc_call_finish(c, DRIFT_GRPC_FAILED_PRECONDITION,
				       "node %s at %s belongs to another "
				       "cluster (%s; this one is %s): give it "
				       "an empty data directory to join",
				       who->node_id, req->address,
				       who->cluster_id, st->cluster_id);
		goto done;
	}
	const drift_meta_node *old = drift_meta_node_find(st, who->node_id);
	if (old != NULL && old->state != DRIFT_NODE_JOINING &&
	    who->cluster_id[0] == '\0') {
		/* Its Raft log is gone: the group cannot take it back under
		 * the old member's id (a voter's log never shrinks). */
		drift_grpc_call_finish(
			c, DRIFT_GRPC_FAILED_PRECONDITION,
			"node %s is a member, and the node at %s that says it "
			"is %s has an empty data directory (lost or wiped): it "
			"cannot take the member's place; start it with another "
			"--node-id (the old member's replicas are copied to "
			"the "
			"nodes up after --replace-down-after), or remove node "
			"%s first",
			who->node_id, req->address, who->node_id, who->node_id);
		goto done;
	}
	if (old != NULL) {
		drift_grpc_call_finish(c, DRIFT_GRPC_ALREADY_EXISTS,
				       "node %s is already a member",
				       who->node_id);
		goto done;
	}
	const char *raft_address = req->raft_address;
	for (size_t i = 0; raft_address[0] == '\0' && i < who->n_nodes; i++)
		if (strcmp(who->nodes[i]->id, who->node_id) == 0)
			raft_address = who->nodes[i]->raft_address;
	if (raft_address[0] == '\0') {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "node %s did not say its Raft address",
				       who->node_id);
		goto done;
	}
	Drift__Cluster__V1__Node n = DRIFT__CLUSTER__V1__NODE__INIT;
	n.id = who->node_id;
	n.raft_id = drift_meta_raft_id(who->node_id);
	n.address = req->address;
	n.raft_address = (char *)raft_address;
	n.state = DRIFT_NODE_JOINING;
	n.role = drift_meta_voters(st) < st->max_voters ? DRIFT_ROLE_VOTER
							: DRIFT_ROLE_STANDBY;
	Drift__Cluster__V1__AddNode an = DRIFT__CLUSTER__V1__ADD_NODE__INIT;
	an.node = &n;
	Drift__Cluster__V1__Command cmd = DRIFT__CLUSTER__V1__COMMAND__INIT;
	cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_ADD_NODE;
	cmd.add_node = &an;
	int rv = propose(nc, &cmd, &err);
	if (rv != 0) {
		finish_err(c, rv, &err);
		goto done;
	}
	DRIFT_INFO("cluster: node %s (%s, Raft %s) added as %s", n.id,
		   n.address, n.raft_address,
		   n.role == DRIFT_ROLE_VOTER ? "voter" : "standby");
	Drift__V1__NodeInfo ni = DRIFT__V1__NODE_INFO__INIT;
	ni.id = n.id;
	ni.address = n.address;
	ni.raft_address = n.raft_address;
	ni.state = DRIFT__V1__NODE_STATE__NODE_STATE_JOINING;
	ni.role = (Drift__V1__NodeRole)n.role;
	Drift__V1__AddNodeResponse resp = DRIFT__V1__ADD_NODE_RESPONSE__INIT;
	resp.node = &ni;
	drift_grpc_call_reply(c, &resp.base);
done:
	if (out != NULL)
		protobuf_c_message_free_unpacked(out, NULL);
	drift_meta_unref(st);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void remove_node(drift_grpc_call *c, void *ctx)
{
	drift_node_cluster *nc = ctx;
	Drift__V1__RemoveNodeRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__remove_node_request__descriptor);
	if (req == NULL)
		return;
	drift_meta *st = NULL;
	if (!drift_meta_node_id_ok(req->id)) {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "node id \"%.80s\" must match "
				       "[A-Za-z0-9_.-]{1,64}",
				       req->id);
		goto done;
	}
	if (!drift_cluster_svc_lead(
		    nc, c, &req->base,
		    &drift__v1__remove_node_response__descriptor))
		goto done;
	st = drift_member_state(drift_node_cluster_member(nc));
	const drift_meta_node *n = drift_meta_node_find(st, req->id);
	if (n == NULL) {
		drift_grpc_call_finish(c, DRIFT_GRPC_NOT_FOUND,
				       "no node %s in the cluster", req->id);
		goto done;
	}
	if (n->role == DRIFT_ROLE_VOTER && drift_meta_voters(st) == 1) {
		drift_grpc_call_finish(c, DRIFT_GRPC_FAILED_PRECONDITION,
				       "node %s is the last voter of the "
				       "metadata group: it cannot be removed",
				       req->id);
		goto done;
	}
	drift_err err;
	drift_err_clear(&err);
	/* Its shards move away first. */
	int rv = drift_node_cluster_evacuate(nc, req->id, &err);
	if (rv != 0) {
		finish_err(c, rv, &err);
		goto done;
	}
	Drift__Cluster__V1__RemoveNode rn =
		DRIFT__CLUSTER__V1__REMOVE_NODE__INIT;
	rn.id = req->id;
	Drift__Cluster__V1__Command cmd = DRIFT__CLUSTER__V1__COMMAND__INIT;
	cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_REMOVE_NODE;
	cmd.remove_node = &rn;
	rv = propose(nc, &cmd, &err);
	if (rv == DRIFT_EBUSY)
		drift_grpc_call_finish(c, DRIFT_GRPC_FAILED_PRECONDITION,
				       "%s (a shard was placed on it while its "
				       "shards moved away: retry)",
				       err.msg);
	else if (rv != 0)
		finish_err(c, rv, &err);
	else {
		DRIFT_INFO("cluster: node %s removed", req->id);
		Drift__V1__RemoveNodeResponse resp =
			DRIFT__V1__REMOVE_NODE_RESPONSE__INIT;
		drift_grpc_call_reply(c, &resp.base);
	}
done:
	drift_meta_unref(st);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* Fills a ShardMapResponse from st (only `only`'s shards when not empty);
 * the arrays are allocated: free_map. */
struct map_bufs {
	Drift__V1__ShardAssignment *sa, **psa;
	Drift__V1__NodeInfo *ni, **pni;
	Drift__V1__CollectionInfo *ci, **pci;
	char **ids;
};

static void free_map(struct map_bufs *b)
{
	drift_free(b->sa);
	drift_free(b->psa);
	drift_free(b->ni);
	drift_free(b->pni);
	drift_free(b->ci);
	drift_free(b->pci);
	drift_free(b->ids);
}

static int fill_map(drift_node_cluster *nc, const drift_meta *st,
		    const char *only, Drift__V1__ShardMapResponse *resp,
		    struct map_bufs *b)
{
	memset(b, 0, sizeof(*b));
	drift__v1__shard_map_response__init(resp);
	size_t n_sh = 0, n_col = 0;
	for (size_t i = 0; i < st->n_cols; i++)
		if (only[0] == '\0' || strcmp(st->cols[i].name, only) == 0) {
			n_sh += st->cols[i].shards;
			n_col++;
		}
	b->sa = drift_calloc(n_sh + 1, sizeof(*b->sa));
	b->psa = drift_calloc(n_sh + 1, sizeof(*b->psa));
	b->ni = drift_calloc(st->n_nodes + 1, sizeof(*b->ni));
	b->pni = drift_calloc(st->n_nodes + 1, sizeof(*b->pni));
	b->ci = drift_calloc(n_col + 1, sizeof(*b->ci));
	b->pci = drift_calloc(n_col + 1, sizeof(*b->pci));
	b->ids =
		drift_calloc(2 * DRIFT_META_MAX_RF * n_sh + 1, sizeof(*b->ids));
	if (!b->sa || !b->psa || !b->ni || !b->pni || !b->ci || !b->pci ||
	    !b->ids) {
		free_map(b);
		return DRIFT_ENOMEM;
	}
	drift_member_info in;
	drift_member_info_get(drift_node_cluster_member(nc), &in);
	resp->version = st->version;
	resp->cluster_id = (char *)st->cluster_id;
	const drift_meta_node *leader =
		in.leader_raft_id
			? drift_meta_node_by_raft(st, in.leader_raft_id)
			: NULL;
	resp->leader = leader != NULL ? (char *)leader->id : "";
	for (size_t i = 0; i < st->n_nodes; i++) {
		node_info(st, &st->nodes[i], in.leader_raft_id, &b->ni[i]);
		b->pni[i] = &b->ni[i];
	}
	resp->n_nodes = st->n_nodes;
	resp->nodes = b->pni;
	size_t k = 0, c = 0, idn = 0;
	for (size_t i = 0; i < st->n_cols; i++) {
		const drift_meta_collection *mc = &st->cols[i];
		if (only[0] != '\0' && strcmp(mc->name, only) != 0)
			continue;
		Drift__V1__CollectionInfo *ci = &b->ci[c];
		drift__v1__collection_info__init(ci);
		ci->name = (char *)mc->name;
		ci->dimension = mc->dimension;
		ci->metric = (Drift__V1__Metric)mc->metric;
		ci->shards = mc->shards;
		ci->replication_factor = mc->replication_factor;
		ci->wal_sync = (Drift__V1__WalSync)mc->wal_sync;
		ci->memtable_rows = mc->memtable_rows;
		ci->default_recall = mc->default_recall;
		ci->memory_limit = mc->memory_limit;
		b->pci[c++] = ci;
		for (uint32_t s = 0; s < mc->shards; s++, k++) {
			const drift_meta_shard *sh = &mc->shard[s];
			Drift__V1__ShardAssignment *a = &b->sa[k];
			drift__v1__shard_assignment__init(a);
			a->collection = (char *)mc->name;
			a->shard = s;
			a->nodes = &b->ids[idn];
			for (uint32_t r = 0; r < sh->n; r++)
				b->ids[idn++] = (char *)sh->nodes[r];
			a->n_nodes = sh->n;
			a->in_sync = &b->ids[idn];
			for (uint32_t r = 0; r < sh->n; r++)
				if (sh->in_sync & (1u << r)) {
					b->ids[idn++] = (char *)sh->nodes[r];
					a->n_in_sync++;
				}
			b->psa[k] = a;
		}
	}
	resp->n_shards = k;
	resp->shards = b->psa;
	resp->n_collections = c;
	resp->collections = b->pci;
	return 0;
}

static void shard_map(drift_grpc_call *c, void *ctx)
{
	drift_node_cluster *nc = ctx;
	Drift__V1__ShardMapRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__shard_map_request__descriptor);
	if (req == NULL)
		return;
	drift_member *m = drift_node_cluster_member(nc);
	drift_meta *st = drift_member_state(m);
	uint64_t lv = 0;
	drift_member_info in = {.leader = true};
	if (req->collection[0] != '\0' &&
	    drift_meta_col_find(st, req->collection) == NULL) {
		/* Perhaps only this node has not applied it yet (a create
		 * acknowledged by the leader while this node lagged): catch
		 * up with the leader's map once, as the data path does. */
		uint64_t until = drift_now_ns() + PEER_TIMEOUT_NS;
		for (;;) {
			drift_member_info_get(m, &in);
			if (in.leader || (lv = leader_version(nc)) > 0 ||
			    drift_now_ns() >= until || drift_grpc_call_done(c))
				break;
			usleep(20000); /* no leader known yet: an election */
		}
		if (lv > st->version) {
			drift_meta_unref(st);
			drift_member_wait(m, lv - 1,
					  drift_now_ns() + PEER_TIMEOUT_NS,
					  &st);
		}
	}
	if (req->collection[0] != '\0' &&
	    drift_meta_col_find(st, req->collection) == NULL) {
		if (!in.leader && lv == 0)
			drift_grpc_call_finish(
				c, DRIFT_GRPC_UNAVAILABLE,
				"collection \"%.80s\" is not in node %s's "
				"map (version %llu) and no Raft leader "
				"answered to tell whether it is behind; retry",
				req->collection, drift_node_cluster_node_id(nc),
				(unsigned long long)st->version);
		else if (lv > st->version)
			drift_grpc_call_finish(
				c, DRIFT_GRPC_UNAVAILABLE,
				"node %s has map version %llu, the leader "
				"%llu: it is catching up; retry",
				drift_node_cluster_node_id(nc),
				(unsigned long long)st->version,
				(unsigned long long)lv);
		else
			drift_grpc_call_finish(
				c, DRIFT_GRPC_NOT_FOUND,
				"collection \"%.80s\" does not exist",
				req->collection);
	} else {
		Drift__V1__ShardMapResponse resp;
		struct map_bufs b;
		if (fill_map(nc, st, req->collection, &resp, &b) == 0) {
			size_t nm;
			Drift__V1__ShardMove **mv = moves_of(nc, st, &nm);
			for (size_t i = 0; i < nm; i++)
				for (size_t k = 0; k < resp.n_shards; k++)
					if (resp.shards[k]->shard ==
						    mv[i]->shard &&
					    strcmp(resp.shards[k]->collection,
						   mv[i]->collection) == 0)
						resp.shards[k]->move = mv[i];
			drift_grpc_call_reply(c, &resp.base);
			free_moves(mv, nm);
			free_map(&b);
		} else {
			drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
					       "out of memory");
		}
	}
	drift_meta_unref(st);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* A watcher gets the whole map at every change (the protocol has no
 * deltas): with 10,000 collections, every create cost each watcher a map
 * of about 1 MB to build, send and parse, and one create at a time kept a
 * core busy with it (a watcher that parses it, such as the node's own
 * forwarding map, router/map.h, spends about twice as long as the
 * sending). After each map the stream holds the next for HOLD_FACTOR times
 * as long as building and sending it took (at most HOLD_MAX_NS), and the
 * changes of that time go out as one map: a small map (tens of
 * microseconds) still goes out within a millisecond, and a large one
 * takes at most about 1 / (1 + HOLD_FACTOR) of the stream's time (10,000
 * collections: a map every 50 to 100 ms). */
#define HOLD_FACTOR 16
#define HOLD_MAX_NS 200000000ull
#define HOLD_STEP_NS 5000000ull

static void watch_shard_map(drift_grpc_call *c, void *ctx)
{
	drift_node_cluster *nc = ctx;
	Drift__V1__WatchShardMapRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__watch_shard_map_request__descriptor);
	if (req == NULL)
		return;
	uint64_t known = req->known_version;
	char only[DRIFT_META_NAME_MAX + 1];
	snprintf(only, sizeof(only), "%s", req->collection);
	protobuf_c_message_free_unpacked(&req->base, NULL);
	drift_member *m = drift_node_cluster_member(nc);
	uint64_t hold_until = 0; /* no map goes out before (see HOLD_) */
	while (!drift_grpc_call_done(c)) {
		uint64_t now = drift_now_ns();
		if (now < hold_until && !drift_node_cluster_closing(nc)) {
			uint64_t left = hold_until - now;
			usleep((useconds_t)((left < HOLD_STEP_NS
						     ? left
						     : HOLD_STEP_NS) /
					    1000));
			continue;
		}
		if (drift_node_cluster_closing(nc)) {
			/* The watcher moves to another node now, and the
			 * server's shutdown does not wait its grace for this
			 * stream. */
			drift_grpc_call_finish(c, DRIFT_GRPC_UNAVAILABLE,
					       "node %s is shutting down",
					       drift_node_cluster_node_id(nc));
			return;
		}
		drift_meta *st = NULL;
		int rv = drift_member_wait(m, known,
					   drift_now_ns() + 500000000ull, &st);
		if (rv != 0) {
			drift_meta_unref(st);
			continue;
		}
		Drift__V1__ShardMapResponse resp;
		struct map_bufs b;
		uint64_t t0 = drift_now_ns();
		rv = fill_map(nc, st, only, &resp, &b);
		known = st->version;
		if (rv == 0) {
			rv = drift_grpc_call_send_pb(c, &resp.base);
			free_map(&b);
		}
		drift_meta_unref(st);
		uint64_t took = drift_now_ns() - t0;
		hold_until = drift_now_ns() + (took < HOLD_MAX_NS / HOLD_FACTOR
						       ? took * HOLD_FACTOR
						       : HOLD_MAX_NS);
		if (rv != 0)
			return; /* the call is over */
	}
}

int drift_cluster_svc_register(drift_grpc_server *srv, drift_node_cluster *nc)
{
	static const struct {
		const char *path;
		enum drift_grpc_kind kind;
		drift_grpc_handler fn;
	} m[] = {
		{"/drift.v1.Cluster/Status", DRIFT_GRPC_UNARY, status},
		{"/drift.v1.Cluster/AddNode", DRIFT_GRPC_UNARY, add_node},
		{"/drift.v1.Cluster/RemoveNode", DRIFT_GRPC_UNARY, remove_node},
		{"/drift.v1.Cluster/ShardMap", DRIFT_GRPC_UNARY, shard_map},
		{"/drift.v1.Cluster/WatchShardMap", DRIFT_GRPC_SERVER_STREAM,
		 watch_shard_map},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		int rv = drift_grpc_server_add(srv, m[i].path, m[i].kind,
					       m[i].fn, nc);
		if (rv != 0)
			return rv;
	}
	return 0;
}
