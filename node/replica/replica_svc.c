/*
 * drift.peer.v1.Replica's handlers: a replica's side of replication (see
 * replica.h and proto/drift/peer/v1/replica.proto).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/member.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/grpc/status.h"
#include "common/log.h"
#include "drift/v1/drift.pb-c.h"
#include "node/replica/replica_internal.h"
#include "node/server/cluster_svc.h"

static void fail(drift_grpc_call *c, int rv, const drift_err *err)
{
	drift_grpc_call_finish(c, drift_grpc_code_from_err(rv), "%s",
			       drift_err_msg(err, rv));
}

/* The collection of a replication call: this node's copy of the one the
 * map created at `created` (waiting a little for the watcher to open it),
 * or NULL with the call answered. */
static drift_collection *acquire(drift_replica *r, drift_grpc_call *c,
				 const char *name, uint64_t created,
				 uint32_t shard)
{
	drift_collection *col = NULL;
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_cm_acquire(r->cm, name, &col, &err);
	if (rv == DRIFT_ENOENT && drift_node_cluster_wait_applied(
					  r->nc, created, REPL_TIMEOUT_NS) == 0)
		rv = drift_cm_acquire(r->cm, name, &col, &err);
	if (rv != 0) {
		fail(c, rv, &err);
		return NULL;
	}
	const drift_collection_config *cfg = drift_collection_cfg(col);
	if (cfg->cluster_version != created || shard >= cfg->shards) {
		drift_grpc_call_finish(
			c, DRIFT_GRPC_FAILED_PRECONDITION,
			"collection %s on node %s is the one of "
			"map version %" PRIu64 " with %u "
			"shards, not the one of %" PRIu64 " (shard %u)",
			name, drift_node_cluster_node_id(r->nc),
			cfg->cluster_version, cfg->shards, created, shard);
		drift_cm_release(r->cm, col);
		return NULL;
	}
	return col;
}

static void replicate(drift_grpc_call *c, void *ctx)
{
	drift_replica *r = ctx;
	Drift__Peer__V1__ReplicateRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__replicate_request__descriptor);
	if (req == NULL)
		return;
	drift_collection *col = acquire(r, c, req->collection,
					req->created_version, req->shard);
	if (col == NULL)
		goto done;
	drift_err err;
	drift_err_clear(&err);
	struct repl_shard *e = repl_shard_of(r, col, req->shard, &err);
	if (e == NULL) {
		fail(c, DRIFT_ENOMEM, &err);
		goto release;
	}
	/* A primary of an epoch the map (or a promotion's fence) has passed
	 * is refused: it must not acknowledge anything. */
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	const drift_meta_collection *mc =
		drift_meta_col_find(st, req->collection);
	uint64_t map_epoch = 0;
	char primary[DRIFT_NODE_ID_MAX + 1] = "";
	if (mc != NULL && mc->created_version == req->created_version &&
	    req->shard < mc->shards) {
		map_epoch = mc->shard[req->shard].epoch;
		snprintf(primary, sizeof(primary), "%s",
			 mc->shard[req->shard].nodes[0]);
	}
	drift_meta_unref(st);
	pthread_rwlock_rdlock(&e->applying);
	if (map_epoch > req->epoch) {
		pthread_rwlock_unlock(&e->applying);
		drift_grpc_call_finish(c, DRIFT_GRPC_ABORTED,
				       "%s/%u: epoch %" PRIu64 " of node %s "
				       "is over: the primary is node %s since "
				       "epoch %" PRIu64,
				       req->collection, req->shard, req->epoch,
				       req->primary, primary, map_epoch);
		goto release;
	}
	pthread_mutex_lock(&e->mu);
	if (e->ep.fence > req->epoch) {
		uint64_t fence = e->ep.fence;
		pthread_mutex_unlock(&e->mu);
		pthread_rwlock_unlock(&e->applying);
		drift_grpc_call_finish(c, DRIFT_GRPC_ABORTED,
				       "%s/%u: node %s accepts epoch %" PRIu64
				       " and newer only, not %" PRIu64
				       " (a failover fenced it)",
				       req->collection, req->shard,
				       drift_node_cluster_node_id(r->nc), fence,
				       req->epoch);
		goto release;
	}
	if (req->n_records > 0 &&
	    drift_epochs_begin(&e->ep, req->epoch, req->records[0]->seq) &&
	    repl_save_epochs(e, &err) != 0) {
		pthread_mutex_unlock(&e->mu);
		pthread_rwlock_unlock(&e->applying);
		fail(c, err.code ? err.code : DRIFT_EIO, &err);
		goto release;
	}
	pthread_mutex_unlock(&e->mu);
	drift_shard *sh = drift_collection_shard_enter(col, req->shard);
	/* Waiting for records before these: at most until the caller stops
	 * waiting for the answer. */
	uint64_t deadline = drift_now_ns() + REPL_TIMEOUT_NS;
	if (drift_grpc_call_deadline(c) < deadline)
		deadline = drift_grpc_call_deadline(c);
	for (size_t i = 0; i < req->n_records; i++) {
		const Drift__Peer__V1__Record *rec = req->records[i];
		int rv = drift_shard_apply(sh, rec->seq, rec->type,
					   rec->payload.data, rec->payload.len,
					   deadline, &err);
		if (rv == DRIFT_EEXIST)
			continue; /* sent again: it is here */
		if (rv != 0) {
			drift_collection_shard_leave(col, req->shard);
			pthread_rwlock_unlock(&e->applying);
			fail(c, rv, &err);
			goto release;
		}
	}
	uint64_t last = drift_shard_last_seq(sh);
	drift_collection_shard_leave(col, req->shard);
	pthread_rwlock_unlock(&e->applying);
	Drift__Peer__V1__ReplicateResponse resp =
		DRIFT__PEER__V1__REPLICATE_RESPONSE__INIT;
	resp.last_seq = last;
	drift_grpc_call_reply(c, &resp.base);
release:
	repl_shard_put(r, e);
	drift_cm_release(r->cm, col);
done:
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void state(drift_grpc_call *c, void *ctx)
{
	drift_replica *r = ctx;
	Drift__Peer__V1__ReplicaStateRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__replica_state_request__descriptor);
	if (req == NULL)
		return;
	drift_collection *col = acquire(r, c, req->collection,
					req->created_version, req->shard);
	if (col == NULL)
		goto done;
	drift_err err;
	drift_err_clear(&err);
	struct repl_shard *e = repl_shard_of(r, col, req->shard, &err);
	if (e == NULL) {
		fail(c, DRIFT_ENOMEM, &err);
		goto release;
	}
	bool fencing = req->fence_epoch > 0;
	if (fencing)
		pthread_rwlock_wrlock(&e->applying);
	pthread_mutex_lock(&e->mu);
	if (req->fence_epoch > e->ep.fence) {
		uint64_t was = e->ep.fence;
		e->ep.fence = req->fence_epoch;
		if (repl_save_epochs(e, &err) != 0) {
			e->ep.fence = was;
			pthread_mutex_unlock(&e->mu);
			if (fencing)
				pthread_rwlock_unlock(&e->applying);
			fail(c, err.code ? err.code : DRIFT_EIO, &err);
			goto release;
		}
	}
	Drift__Peer__V1__ReplicaStateResponse resp =
		DRIFT__PEER__V1__REPLICA_STATE_RESPONSE__INIT;
	Drift__Peer__V1__EpochStart hs[DRIFT_EPOCHS_MAX], *hp[DRIFT_EPOCHS_MAX];
	for (size_t i = 0; i < e->ep.n; i++) {
		drift__peer__v1__epoch_start__init(&hs[i]);
		hs[i].epoch = e->ep.h[i].epoch;
		hs[i].first_seq = e->ep.h[i].first_seq;
		hp[i] = &hs[i];
	}
	resp.history = hp;
	resp.n_history = e->ep.n;
	resp.fence = e->ep.fence;
	/* Read under e->mu: no record of a newer epoch slips in between. */
	resp.last_seq = repl_last_seq(col, req->shard);
	pthread_mutex_unlock(&e->mu);
	if (fencing)
		pthread_rwlock_unlock(&e->applying);
	drift_grpc_call_reply(c, &resp.base);
release:
	repl_shard_put(r, e);
	drift_cm_release(r->cm, col);
done:
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void set_replicas(drift_grpc_call *c, void *ctx)
{
	drift_replica *r = ctx;
	Drift__Peer__V1__SetReplicasRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__set_replicas_request__descriptor);
	if (req == NULL)
		return;
	drift_err err;
	drift_err_clear(&err);
	uint64_t version = 0;
	int rv = req->change != NULL
			 ? repl_propose(r, req->change, &version, &err)
			 : drift_err_set(&err, DRIFT_EINVAL, "no change named");
	if (rv == DRIFT_ESTALE) {
		drift_grpc_call_finish(c, DRIFT_GRPC_UNAVAILABLE, "%s",
				       err.msg);
	} else if (rv != 0) {
		fail(c, rv, &err);
	} else {
		Drift__Peer__V1__SetReplicasResponse resp =
			DRIFT__PEER__V1__SET_REPLICAS_RESPONSE__INIT;
		resp.map_version = version;
		drift_grpc_call_reply(c, &resp.base);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void install(drift_grpc_call *c, void *ctx)
{
	drift_replica *r = ctx;
	Drift__Peer__V1__InstallRequest *h = drift_grpc_call_recv_req(
		c, &drift__peer__v1__install_request__descriptor);
	if (h == NULL)
		return;
	drift_collection *col =
		acquire(r, c, h->collection, h->created_version, h->shard);
	if (col == NULL)
		goto done;
	drift_err err;
	drift_err_clear(&err);
	struct repl_shard *e = repl_shard_of(r, col, h->shard, &err);
	if (e == NULL) {
		fail(c, DRIFT_ENOMEM, &err);
		goto release;
	}
	pthread_mutex_lock(&e->mu);
	uint64_t fence = e->ep.fence;
	pthread_mutex_unlock(&e->mu);
	if (fence > h->epoch) {
		drift_grpc_call_finish(c, DRIFT_GRPC_ABORTED,
				       "%s/%u: node %s accepts epoch %" PRIu64
				       " and newer only, not %" PRIu64,
				       h->collection, h->shard,
				       drift_node_cluster_node_id(r->nc), fence,
				       h->epoch);
		goto release;
	}
	uint64_t last = 0;
	int rv = repl_install(c, col, e, h, &last, &err);
	if (rv != 0) {
		DRIFT_WARN("replication: %s/%u: installing a full copy: %s",
			   h->collection, h->shard, err.msg);
		fail(c, rv, &err);
		goto release;
	}
	DRIFT_INFO("replication: %s/%u: installed a full copy up to record "
		   "%" PRIu64,
		   h->collection, h->shard, last);
	Drift__Peer__V1__InstallResponse resp =
		DRIFT__PEER__V1__INSTALL_RESPONSE__INIT;
	resp.last_seq = last;
	drift_grpc_call_reply(c, &resp.base);
release:
	repl_shard_put(r, e);
	drift_cm_release(r->cm, col);
done:
	protobuf_c_message_free_unpacked(&h->base, NULL);
}

static void rebalance(drift_grpc_call *c, void *ctx)
{
	drift_replica *r = ctx;
	Drift__V1__RebalanceRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__rebalance_request__descriptor);
	if (req == NULL)
		return;
	if (drift_cluster_svc_lead(
		    r->nc, c, &req->base,
		    &drift__v1__rebalance_response__descriptor)) {
		drift_err err;
		drift_err_clear(&err);
		uint32_t n = 0;
		int rv = drift_replica_rebalance(r, req->wait, &n, &err);
		if (rv != 0) {
			fail(c, rv, &err);
		} else {
			Drift__V1__RebalanceResponse resp =
				DRIFT__V1__REBALANCE_RESPONSE__INIT;
			resp.moves = n;
			drift_grpc_call_reply(c, &resp.base);
		}
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void progress(drift_grpc_call *c, void *ctx)
{
	drift_replica *r = ctx;
	Drift__Peer__V1__ProgressRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__progress_request__descriptor);
	if (req == NULL)
		return;
	Drift__Peer__V1__ProgressResponse resp =
		DRIFT__PEER__V1__PROGRESS_RESPONSE__INIT;
	repl_job_progress(r, req->collection, req->created_version, req->shard,
			  req->node, &resp.bytes_done, &resp.bytes_total);
	drift_grpc_call_reply(c, &resp.base);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void repair(drift_grpc_call *c, void *ctx)
{
	drift_replica *r = ctx;
	Drift__Peer__V1__RepairRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__repair_request__descriptor);
	if (req == NULL)
		return;
	if (drift_cluster_svc_lead(
		    r->nc, c, &req->base,
		    &drift__peer__v1__set_replicas_response__descriptor)) {
		drift_err err;
		drift_err_clear(&err);
		uint64_t version = 0;
		int rv = repl_take_out(r, req->collection, req->created_version,
				       req->node, &version, &err);
		if (rv != 0) {
			fail(c, rv, &err);
		} else {
			Drift__Peer__V1__SetReplicasResponse resp =
				DRIFT__PEER__V1__SET_REPLICAS_RESPONSE__INIT;
			resp.map_version = version;
			drift_grpc_call_reply(c, &resp.base);
		}
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void read_index(drift_grpc_call *c, void *ctx)
{
	drift_replica *r = ctx;
	Drift__Peer__V1__ReadIndexRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__read_index_request__descriptor);
	if (req == NULL)
		return;
	drift_collection *col = acquire(r, c, req->collection,
					req->created_version, req->shard);
	if (col != NULL) {
		drift_err err;
		drift_err_clear(&err);
		struct repl_shard *e = repl_shard_of(r, col, req->shard, &err);
		Drift__Peer__V1__ReadIndexResponse resp =
			DRIFT__PEER__V1__READ_INDEX_RESPONSE__INIT;
		int rv = e != NULL ? repl_read_index(r, col, e, req,
						     &resp.last_seq, &err)
				   : err.code;
		if (rv != 0)
			fail(c, rv, &err);
		else
			drift_grpc_call_reply(c, &resp.base);
		repl_shard_put(r, e);
		drift_cm_release(r->cm, col);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

int drift_replica_register(drift_replica *r, drift_grpc_server *srv)
{
	static const struct {
		const char *path;
		enum drift_grpc_kind kind;
		void (*fn)(drift_grpc_call *c, void *ctx);
	} methods[] = {
		{"/drift.peer.v1.Replica/Replicate", DRIFT_GRPC_UNARY,
		 replicate},
		{"/drift.peer.v1.Replica/State", DRIFT_GRPC_UNARY, state},
		{"/drift.peer.v1.Replica/SetReplicas", DRIFT_GRPC_UNARY,
		 set_replicas},
		{"/drift.peer.v1.Replica/Install", DRIFT_GRPC_CLIENT_STREAM,
		 install},
		{"/drift.peer.v1.Replica/Progress", DRIFT_GRPC_UNARY, progress},
		{"/drift.peer.v1.Replica/Repair", DRIFT_GRPC_UNARY, repair},
		{"/drift.peer.v1.Replica/ReadIndex", DRIFT_GRPC_UNARY,
		 read_index},
		{"/drift.v1.Cluster/Rebalance", DRIFT_GRPC_UNARY, rebalance},
	};
	for (size_t i = 0; i < sizeof(methods) / sizeof(methods[0]); i++) {
		int rv = drift_grpc_server_add(srv, methods[i].path,
					       methods[i].kind, methods[i].fn,
					       r);
		if (rv != 0)
			return rv;
	}
	return 0;
}
