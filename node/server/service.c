/*
 * drift.v1.Drift (and a first drift.v1.Cluster) on the gRPC layer: each
 * handler unpacks its request, validates every field before touching
 * anything, runs it on the CollectionManager and answers with a status
 * whose message names the problem (SPEC section 5). Limits are documented
 * in node/server/service.h.
 */
#include "node/server/service.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/api/validate.h"
#include "common/log.h"
#include "drift/peer/v1/peer.pb-c.h"
#include "drift/v1/drift.pb-c.h"
#include "node/replica/replica.h"
#include "node/server/cluster_svc.h"
#include "router/map.h"
#include "router/service.h"

struct service {
	drift_cm *cm;
	drift_node_cluster *nc;	  /* NULL: no cluster (tests of the API) */
	drift_rmap_follower *fwd; /* the map forwarded calls route with */
	drift_replica *repl;	  /* with a cluster: replication */
};

static struct service svc;

/* A shard-level call (drift.peer.v1, below) runs the public handler's
 * code on one shard: its scope is set for the handler's thread while it
 * runs (NULL: a public call). */
struct scope {
	uint32_t shard;
	uint64_t map_version;
	bool replica; /* a read sent to an in-sync replica (reads.c) */
};
static _Thread_local const struct scope *scope;

/* Forwarding. A public call whose shards are not all on this node is
 * served by drift-router's code (router/service.h) over the shard map
 * this node follows (svc.fwd): its handler sets `forwardable`, and
 * acquire() or route(), finding a shard elsewhere, set `forward` instead
 * of answering; the handler then hands the request over. A shard-level
 * call (scope) is never forwarded: the node answers for its own shard. */
static _Thread_local bool forwardable;
static _Thread_local bool forward;

/* Whether the current call should be forwarded rather than refused. */
static bool defer(void)
{
	if (!forwardable || scope != NULL || svc.fwd == NULL)
		return false;
	forward = true;
	return true;
}

/* ---- Helpers ---- */

/* What common/api/validate.h checks a request against. */
static drift_api_collection api_of(drift_collection *col)
{
	const drift_collection_config *cfg = drift_collection_cfg(col);
	drift_api_collection a = {.name = cfg->name,
				  .dim = cfg->dim,
				  .cosine = cfg->metric == DRIFT_METRIC_COSINE,
				  .max_batch = drift_collection_max_batch(col)};
	return a;
}

/* What a client is told first about a failure: a full disk is named as
 * such (RESOURCE_EXHAUSTED alone could be a batch or memory limit), the
 * engine's message, with the file, follows. */
static const char *err_lead(int rv)
{
	return rv == DRIFT_ENOSPC ? "disk full: " : "";
}

/* Finishes with the status of a DRIFT_E* failure and its message, after
 * prefix (a stream's position, or ""). */
static void fail_err_at(drift_grpc_call *c, const char *prefix, int rv,
			const drift_err *err)
{
	drift_grpc_call_finish(c, drift_grpc_code_from_err(rv), "%s%s%s",
			       prefix, err_lead(rv), drift_err_msg(err, rv));
}

static void fail_err(drift_grpc_call *c, int rv, const drift_err *err)
{
	fail_err_at(c, "", rv, err);
}

/* Acquires the named collection or finishes the call. */
static drift_collection *acquire(drift_grpc_call *c, const char *name)
{
	drift_collection *col = NULL;
	drift_err err;
	drift_err_clear(&err);
	if (name == NULL || name[0] == '\0') {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "collection name is empty");
		return NULL;
	}
	int rv = drift_cm_acquire(svc.cm, name, &col, &err);
	if (rv == DRIFT_ENOENT && svc.nc != NULL) {
		/* Not here: on another node, or not opened here yet. */
		drift_err rerr;
		drift_err_clear(&rerr);
		int r = scope != NULL
				? drift_cluster_svc_route_shard(
					  svc.nc, name, scope->shard,
					  scope->map_version, NULL, 0, &rerr)
				: drift_cluster_svc_route(svc.nc, name, NULL, 0,
							  &rerr);
		if (r == DRIFT_ESTALE && defer())
			return NULL;
		if (r != 0 && r != DRIFT_ENOENT) {
			fail_err(c, r, &rerr);
			return NULL;
		}
		if (r == 0)
			rv = drift_cm_acquire(svc.cm, name, &col, &err);
	}
	if (rv == DRIFT_ECORRUPT && svc.repl != NULL &&
	    drift_replica_repairable(svc.repl, name)) {
		drift_grpc_call_finish(c, DRIFT_GRPC_UNAVAILABLE,
				       "collection %s: the copy on node %s is "
				       "damaged (%s) and is being rebuilt from "
				       "the other replicas: retry",
				       name, drift_node_cluster_node_id(svc.nc),
				       err.msg);
		return NULL;
	}
	if (rv != 0) {
		fail_err(c, rv, &err);
		return NULL;
	}
	return col;
}

/* 0 when this node holds the shards of the n ids (all shards when ids is
 * NULL), else the call is finished with FAILED_PRECONDITION naming the
 * node that does (after prefix). */
static int route(drift_grpc_call *c, const char *name, const uint64_t *ids,
		 size_t n, const char *prefix)
{
	if (svc.nc == NULL)
		return 0;
	drift_err err;
	drift_err_clear(&err);
	int rv;
	if (scope != NULL && scope->replica && svc.repl != NULL) {
		drift_collection *col = NULL;
		rv = drift_cm_acquire(svc.cm, name, &col, &err);
		if (rv == 0) {
			rv = drift_replica_read_at(svc.repl, col, scope->shard,
						   scope->map_version, &err);
			drift_cm_release(svc.cm, col);
		}
		if (rv == 0)
			return 0;
		fail_err_at(c, prefix, rv, &err);
		return -1;
	}
	if (scope != NULL) {
		rv = drift_cluster_svc_route_shard(svc.nc, name, scope->shard,
						   scope->map_version, ids, n,
						   &err);
		if (rv == 0)
			return 0;
		fail_err_at(c, prefix, rv, &err);
		return -1;
	}
	rv = drift_cluster_svc_route(svc.nc, name, ids, n, &err);
	if (rv == 0 || rv == DRIFT_ENOENT)
		return 0;
	if (rv == DRIFT_ESTALE && defer())
		return -1;
	fail_err_at(c, prefix, rv, &err);
	return -1;
}

static Drift__V1__Metric metric_to_pb(enum drift_metric m)
{
	return m == DRIFT_METRIC_IP	  ? DRIFT__V1__METRIC__METRIC_IP
	       : m == DRIFT_METRIC_COSINE ? DRIFT__V1__METRIC__METRIC_COSINE
					  : DRIFT__V1__METRIC__METRIC_L2;
}

/* One shard's statistics as drift.v1.ShardStats. */
static void stats_to_pb(uint32_t shard, const drift_shard_stats *st,
			Drift__V1__ShardStats *ps)
{
	drift__v1__shard_stats__init(ps);
	ps->shard = shard;
	ps->l0_rows = st->l0_rows;
	ps->l0_tombstones = st->l0_tombstones;
	ps->l1_vectors = st->l1_vectors;
	ps->l1_buckets = st->l1_buckets;
	ps->segments = st->segments;
	ps->wal_bytes = st->wal_bytes;
	ps->wal_seq = st->wal_seq;
	ps->flushed_seq = st->flushed_seq;
	ps->flushes = st->flushes;
	ps->splits = st->splits;
	ps->merges = st->merges;
	ps->recenters = st->recenters;
	ps->live = st->live;
	ps->memory_bytes = st->memory_bytes;
}

/* Fills info (and its shard stats, allocated: free_info) for col. */
static int fill_info(drift_collection *col, Drift__V1__CollectionInfo *info)
{
	const drift_collection_config *cfg = drift_collection_cfg(col);
	drift__v1__collection_info__init(info);
	info->name = (char *)cfg->name;
	info->dimension = cfg->dim;
	info->metric = metric_to_pb(cfg->metric);
	info->shards = cfg->shards;
	info->replication_factor = cfg->replication_factor;
	info->wal_sync = (Drift__V1__WalSync)cfg->sync;
	info->memtable_rows = cfg->memtable_rows;
	info->default_recall = cfg->default_recall;
	drift_shard_stats *st = drift_mallocarray(cfg->shards, sizeof(*st));
	Drift__V1__ShardStats *ps = drift_mallocarray(cfg->shards, sizeof(*ps));
	Drift__V1__ShardStats **pp =
		drift_mallocarray(cfg->shards, sizeof(*pp));
	if (st == NULL || ps == NULL || pp == NULL) {
		drift_free(st);
		drift_free(ps);
		drift_free(pp);
		return DRIFT_ENOMEM;
	}
	info->vector_count = drift_collection_stats(col, st);
	info->memory_bytes = drift_collection_memory(col, &info->memory_limit);
	for (uint32_t i = 0; i < cfg->shards; i++) {
		stats_to_pb(i, &st[i], &ps[i]);
		pp[i] = &ps[i];
	}
	drift_free(st);
	info->n_shard_stats = cfg->shards;
	info->shard_stats = pp;
	return 0;
}

static void free_info(Drift__V1__CollectionInfo *info)
{
	if (info->n_shard_stats > 0)
		drift_free(info->shard_stats[0]);
	drift_free(info->shard_stats);
}

/* ---- Collections ---- */

static void create_collection(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__CreateCollectionRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__create_collection_request__descriptor);
	if (req == NULL)
		return;
	drift_collection_config cfg = {0};
	drift_err err;
	drift_err_clear(&err);
	if (req->metric < 0 || req->metric > DRIFT__V1__METRIC__METRIC_COSINE) {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "unknown metric %d", (int)req->metric);
		goto out;
	}
	if (req->wal_sync < 0 ||
	    req->wal_sync > DRIFT__V1__WAL_SYNC__WAL_SYNC_NONE) {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "unknown wal_sync %d",
				       (int)req->wal_sync);
		goto out;
	}
	if (strlen(req->name) > DRIFT_COLLECTION_NAME_MAX ||
	    !drift_collection_name_ok(req->name)) {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "collection name \"%.80s\" must match "
				       "[A-Za-z0-9_-]{1,64}",
				       req->name);
		goto out;
	}
	snprintf(cfg.name, sizeof(cfg.name), "%s", req->name);
	cfg.dim = req->dimension;
	cfg.metric = (enum drift_metric)req->metric;
	cfg.shards = req->shards;
	cfg.replication_factor = req->replication_factor;
	cfg.sync = (enum drift_wal_sync)req->wal_sync;
	cfg.memtable_rows = req->memtable_rows;
	cfg.default_recall = req->default_recall;
	cfg.memory_limit = req->memory_limit;
	int rv;
	if (svc.nc != NULL) {
		/* Checked here, agreed on by the Raft group, opened by the
		 * nodes the placement names. */
		drift_collection_config checked;
		if ((rv = drift_cm_check(svc.cm, &cfg, &checked, &err)) != 0) {
			fail_err(c, rv, &err);
			goto out;
		}
		if (!drift_cluster_svc_lead(
			    svc.nc, c, &req->base,
			    &drift__v1__create_collection_response__descriptor))
			goto out;
		rv = drift_cluster_svc_create(svc.nc, &checked, &err);
		cfg = checked;
	} else {
		rv = drift_cm_create(svc.cm, &cfg, &err);
	}
	if (rv != 0) {
		fail_err(c, rv, &err);
		goto out;
	}
	Drift__V1__CollectionInfo info;
	Drift__V1__CreateCollectionResponse resp =
		DRIFT__V1__CREATE_COLLECTION_RESPONSE__INIT;
	drift_collection *col = NULL;
	if (drift_cm_acquire(svc.cm, cfg.name, &col, NULL) != 0) {
		/* Its shards are on other nodes: the configuration. */
		drift__v1__collection_info__init(&info);
		info.name = cfg.name;
		info.dimension = cfg.dim;
		info.metric = metric_to_pb(cfg.metric);
		info.shards = cfg.shards;
		info.replication_factor = cfg.replication_factor;
		info.wal_sync = (Drift__V1__WalSync)cfg.sync;
		info.memtable_rows = cfg.memtable_rows;
		info.default_recall = cfg.default_recall;
		resp.collection = &info;
		drift_grpc_call_reply(c, &resp.base);
		goto out;
	}
	if (fill_info(col, &info) == 0) {
		resp.collection = &info;
		drift_grpc_call_reply(c, &resp.base);
		free_info(&info);
	} else {
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "out of memory");
	}
	drift_cm_release(svc.cm, col);
out:
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void drop_collection(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__DropCollectionRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__drop_collection_request__descriptor);
	if (req == NULL)
		return;
	drift_err err;
	drift_err_clear(&err);
	int rv;
	if (svc.nc != NULL) {
		if (!drift_collection_name_ok(req->name)) {
			drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
					       "collection name \"%.80s\" must "
					       "match [A-Za-z0-9_-]{1,64}",
					       req->name);
			goto out;
		}
		if (!drift_cluster_svc_lead(
			    svc.nc, c, &req->base,
			    &drift__v1__drop_collection_response__descriptor))
			goto out;
		rv = drift_cluster_svc_drop(svc.nc, req->name, &err);
	} else {
		rv = drift_cm_drop(svc.cm, req->name, &err);
	}
	if (rv != 0) {
		fail_err(c, rv, &err);
	} else {
		Drift__V1__DropCollectionResponse resp =
			DRIFT__V1__DROP_COLLECTION_RESPONSE__INIT;
		drift_grpc_call_reply(c, &resp.base);
	}
out:
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* Whether the cluster has more than this node. */
static bool several_nodes(void)
{
	drift_meta *st = drift_member_state(drift_node_cluster_member(svc.nc));
	bool more = st->n_nodes > 1;
	drift_meta_unref(st);
	return more;
}

static void list_collections(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__ListCollectionsRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__list_collections_request__descriptor);
	if (req == NULL)
		return;
	if (svc.fwd != NULL && several_nodes()) {
		/* The map's collections, not only those with a shard here. */
		drift_router_list(c, req);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		return;
	}
	char token[DRIFT_COLLECTION_NAME_MAX + 1] = "";
	size_t page =
		req->page_size == 0 || req->page_size > DRIFT_NODE_MAX_PAGE
			? DRIFT_NODE_MAX_PAGE
			: req->page_size;
	drift_err verr;
	drift_err_clear(&verr);
	int vrv = drift_api_check_list(req, &verr);
	if (vrv != 0) {
		drift_grpc_call_finish(c, drift_grpc_code_from_err(vrv), "%s",
				       verr.msg);
		protobuf_c_message_free_unpacked(&req->base, NULL);
		return;
	}
	snprintf(token, sizeof(token), "%s", req->page_token);
	protobuf_c_message_free_unpacked(&req->base, NULL);
	char **all = NULL;
	size_t n_all = 0;
	if (drift_cm_list(svc.cm, &all, &n_all) != 0) {
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "out of memory");
		return;
	}
	/* The page: the names after the token, sorted, at most page of them
	 * (the token is the last name of the previous page). */
	size_t first = 0;
	while (token[0] != '\0' && first < n_all &&
	       strcmp(all[first], token) <= 0)
		first++;
	char **names = all + first;
	size_t n = n_all - first < page ? n_all - first : page;
	bool more = first + n < n_all;
	Drift__V1__CollectionInfo *infos =
		drift_calloc(n ? n : 1, sizeof(*infos));
	Drift__V1__CollectionInfo **pp = drift_calloc(n ? n : 1, sizeof(*pp));
	drift_collection **held = drift_calloc(n ? n : 1, sizeof(*held));
	for (size_t i = 0; infos && pp && held && i < n; i++) {
		drift_err err;
		pp[i] = &infos[i];
		if (drift_cm_acquire(svc.cm, names[i], &held[i], &err) == 0 &&
		    fill_info(held[i], &infos[i]) == 0)
			continue;
		/* Broken (or dropped meanwhile): listed by name only. */
		drift__v1__collection_info__init(&infos[i]);
		infos[i].name = names[i];
	}
	if (infos && pp && held) {
		Drift__V1__ListCollectionsResponse resp =
			DRIFT__V1__LIST_COLLECTIONS_RESPONSE__INIT;
		resp.n_collections = n;
		resp.collections = pp;
		if (more)
			resp.next_page_token = names[n - 1];
		drift_grpc_call_reply(c, &resp.base);
	} else {
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		if (held != NULL && held[i] != NULL) {
			free_info(&infos[i]);
			drift_cm_release(svc.cm, held[i]);
		}
	}
	for (size_t i = 0; i < n_all; i++)
		drift_free(all[i]);
	drift_free(all);
	drift_free(infos);
	drift_free(pp);
	drift_free(held);
}

static void describe_collection(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__DescribeCollectionRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__describe_collection_request__descriptor);
	if (req == NULL)
		return;
	forwardable = true;
	forward = false;
	drift_collection *col = acquire(c, req->name);
	if (col != NULL && route(c, req->name, NULL, 0, "") != 0) {
		/* Shards elsewhere: this node's counts are not the
		 * collection's. */
		drift_cm_release(svc.cm, col);
		col = NULL;
	}
	forwardable = false;
	if (forward) {
		forward = false;
		drift_router_describe(c, req);
	}
	if (col != NULL) {
		Drift__V1__CollectionInfo info;
		Drift__V1__DescribeCollectionResponse resp =
			DRIFT__V1__DESCRIBE_COLLECTION_RESPONSE__INIT;
		if (fill_info(col, &info) == 0) {
			resp.collection = &info;
			drift_grpc_call_reply(c, &resp.base);
			free_info(&info);
		} else {
			drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
					       "out of memory");
		}
		drift_cm_release(svc.cm, col);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- Writes ---- */

/* Validates and applies one UpsertRequest. 0, or the call is finished
 * (with `prefix` before the message, for streams). */
static int upsert_one(drift_grpc_call *c, Drift__V1__UpsertRequest *req,
		      uint64_t *written, const char *prefix)
{
	drift_collection *col = acquire(c, req->collection);
	if (col == NULL)
		return -1;
	const drift_collection_config *cfg = drift_collection_cfg(col);
	size_t n = req->n_points;
	int rv = 0;
	uint64_t *ids = NULL;
	float *vecs = NULL;
	drift_api_collection api = api_of(col);
	drift_err verr;
	drift_err_clear(&verr);
	int vrv = drift_api_check_upsert(req, &api, prefix, &verr);
	if (vrv != 0) {
		drift_grpc_call_finish(c, drift_grpc_code_from_err(vrv), "%s",
				       verr.msg);
		rv = -1;
		goto out;
	}
	ids = drift_mallocarray(n ? n : 1, 8);
	vecs = drift_mallocarray(n ? n * cfg->dim : 1, sizeof(float));
	if (ids == NULL || vecs == NULL) {
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "%sout of memory", prefix);
		rv = -1;
		goto out;
	}
	for (size_t i = 0; i < n; i++) {
		ids[i] = req->points[i]->id;
		memcpy(vecs + i * cfg->dim, req->points[i]->vector,
		       cfg->dim * sizeof(float));
	}
	if (route(c, cfg->name, ids, n, prefix) != 0) {
		rv = -1;
		goto out;
	}
	drift_err err;
	drift_err_clear(&err);
	int r = svc.repl != NULL
			? drift_replica_upsert(svc.repl, col, ids, vecs, n,
					       &err)
			: drift_collection_upsert(col, ids, vecs, n, &err);
	if (r == DRIFT_ESTALE && defer()) {
		/* The primary moved while this node wrote: forwarded to the
		 * new one (an upsert may be applied again). */
		rv = -1;
		goto out;
	}
	if (r != 0) {
		fail_err_at(c, prefix, r, &err);
		rv = -1;
		goto out;
	}
	*written += n;
out:
	drift_free(ids);
	drift_free(vecs);
	drift_cm_release(svc.cm, col);
	return rv;
}

/* upsert_one, or drift-router's when the batch's shards are not all
 * here (a public call). */
static int upsert_fw(drift_grpc_call *c, Drift__V1__UpsertRequest *req,
		     uint64_t *written, const char *prefix)
{
	forwardable = true;
	forward = false;
	int rv = upsert_one(c, req, written, prefix);
	forwardable = false;
	if (forward) {
		forward = false;
		rv = drift_router_upsert_one(c, req, written, prefix);
	}
	return rv;
}

static void upsert_req(drift_grpc_call *c, Drift__V1__UpsertRequest *req)
{
	uint64_t written = 0;
	if ((scope != NULL ? upsert_one(c, req, &written, "")
			   : upsert_fw(c, req, &written, "")) == 0) {
		Drift__V1__UpsertResponse resp =
			DRIFT__V1__UPSERT_RESPONSE__INIT;
		resp.written = written;
		drift_grpc_call_reply(c, &resp.base);
	}
}

static void upsert(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__UpsertRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__upsert_request__descriptor);
	if (req == NULL)
		return;
	upsert_req(c, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void upsert_stream(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	uint64_t written = 0;
	unsigned batch = 0;
	for (;;) {
		ProtobufCMessage *m = NULL;
		int rv = drift_grpc_call_recv_pb(
			c, &drift__v1__upsert_request__descriptor, &m);
		if (rv == 0)
			break;
		if (rv < 0)
			return; /* cancelled, deadline, or answered */
		char prefix[96];
		snprintf(prefix, sizeof(prefix),
			 "message %u (after %llu points written): ", batch,
			 (unsigned long long)written);
		int r = upsert_fw(c, (Drift__V1__UpsertRequest *)m, &written,
				  prefix);
		protobuf_c_message_free_unpacked(m, NULL);
		if (r != 0)
			return;
		batch++;
	}
	Drift__V1__UpsertResponse resp = DRIFT__V1__UPSERT_RESPONSE__INIT;
	resp.written = written;
	drift_grpc_call_reply(c, &resp.base);
}

/* The handler's work on an unpacked request (also a shard-level call's,
 * under its scope). */
static void delete_req(drift_grpc_call *c, Drift__V1__DeleteRequest *req)
{
	drift_collection *col = acquire(c, req->collection);
	if (col != NULL &&
	    route(c, req->collection, req->ids, req->n_ids, "") != 0) {
		drift_cm_release(svc.cm, col);
		col = NULL;
	}
	if (col != NULL) {
		drift_err err;
		drift_err_clear(&err);
		size_t deleted = 0;
		int rv = svc.repl != NULL
				 ? drift_replica_delete(svc.repl, col, req->ids,
							req->n_ids, &deleted,
							&err)
				 : drift_collection_delete(col, req->ids,
							   req->n_ids, &deleted,
							   &err);
		if (rv == DRIFT_ESTALE && defer()) {
			/* The primary moved: forwarded to the new one. */
		} else if (rv != 0) {
			fail_err(c, rv, &err);
		} else {
			Drift__V1__DeleteResponse resp =
				DRIFT__V1__DELETE_RESPONSE__INIT;
			resp.deleted = deleted;
			drift_grpc_call_reply(c, &resp.base);
		}
		drift_cm_release(svc.cm, col);
	}
}

static void delete_(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__DeleteRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__delete_request__descriptor);
	if (req == NULL)
		return;
	forwardable = true;
	forward = false;
	delete_req(c, req);
	forwardable = false;
	if (forward) {
		forward = false;
		drift_router_delete(c, req);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- Reads ---- */

/* The handler's work on an unpacked request (also a shard-level call's,
 * under its scope). */
static void get_req(drift_grpc_call *c, Drift__V1__GetRequest *req)
{
	drift_collection *col = acquire(c, req->collection);
	if (col == NULL)
		return;
	uint32_t dim = drift_collection_cfg(col)->dim;
	size_t n = req->n_ids;
	drift_err verr;
	drift_err_clear(&verr);
	int vrv = drift_api_check_get(req, &verr);
	if (vrv != 0) {
		drift_grpc_call_finish(c, drift_grpc_code_from_err(vrv), "%s",
				       verr.msg);
		goto rel;
	}
	if (route(c, req->collection, req->ids, n, "") != 0)
		goto rel;
	Drift__V1__Point *pts = drift_calloc(n ? n : 1, sizeof(*pts));
	Drift__V1__Point **pp = drift_calloc(n ? n : 1, sizeof(*pp));
	float *vecs = drift_mallocarray(n ? n * dim : 1, sizeof(float));
	if (pts == NULL || pp == NULL || vecs == NULL) {
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "out of memory");
		goto freeall;
	}
	size_t found = 0;
	for (size_t i = 0; i < n; i++) {
		float *v = vecs + found * dim;
		if (drift_collection_get(col, req->ids[i], v) != 0)
			continue;
		drift__v1__point__init(&pts[found]);
		pts[found].id = req->ids[i];
		if (req->with_vectors) {
			pts[found].n_vector = dim;
			pts[found].vector = v;
		}
		pp[found] = &pts[found];
		found++;
	}
	Drift__V1__GetResponse resp = DRIFT__V1__GET_RESPONSE__INIT;
	resp.n_points = found;
	resp.points = pp;
	drift_grpc_call_reply(c, &resp.base);
freeall:
	drift_free(pts);
	drift_free(pp);
	drift_free(vecs);
rel:
	drift_cm_release(svc.cm, col);
}

static void get(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__GetRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__get_request__descriptor);
	if (req == NULL)
		return;
	forwardable = true;
	forward = false;
	get_req(c, req);
	forwardable = false;
	if (forward) {
		forward = false;
		drift_router_get(c, req);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* Runs one validated search into resp (hits allocated: free_search). */
static int run_search(drift_collection *col, const Drift__V1__SearchRequest *r,
		      Drift__V1__SearchResponse *resp)
{
	uint32_t dim = drift_collection_cfg(col)->dim;
	drift__v1__search_response__init(resp);
	drift_hit *hits = drift_mallocarray(r->k, sizeof(*hits));
	Drift__V1__Hit *ph = drift_calloc(r->k, sizeof(*ph));
	Drift__V1__Hit **pp = drift_calloc(r->k, sizeof(*pp));
	float *vecs = r->with_vectors ? drift_mallocarray((size_t)r->k * dim, 4)
				      : NULL;
	int rv = DRIFT_ENOMEM;
	if (hits == NULL || ph == NULL || pp == NULL ||
	    (r->with_vectors && vecs == NULL))
		goto fail;
	drift_shard_search_opts so = {.k = r->k,
				      .nprobe = r->nprobe,
				      .recall_target = r->recall_target};
	size_t n = 0;
	rv = scope != NULL
		     ? drift_collection_search_shard(col, scope->shard,
						     r->vector, &so, hits, &n)
		     : drift_collection_search(col, r->vector, &so, hits, &n);
	if (rv != 0)
		goto fail;
	size_t out = 0;
	for (size_t i = 0; i < n; i++) {
		drift__v1__hit__init(&ph[out]);
		ph[out].id = hits[i].id;
		ph[out].distance = hits[i].distance;
		if (r->with_vectors) {
			float *v = vecs + out * dim;
			/* Deleted between search and fetch: dropped. */
			if (drift_collection_get(col, hits[i].id, v) != 0)
				continue;
			ph[out].n_vector = dim;
			ph[out].vector = v;
		}
		pp[out] = &ph[out];
		out++;
	}
	drift_free(hits);
	resp->n_hits = out;
	resp->hits = pp;
	/* ph and vecs are reached through pp[0] ... ; kept in the response
	 * via the first hit's pointer for free_search. */
	if (out == 0) {
		drift_free(ph);
		drift_free(vecs);
		drift_free(pp);
		resp->hits = NULL;
	} else {
		ph[0].vector = r->with_vectors ? vecs : NULL;
	}
	return 0;
fail:
	drift_free(hits);
	drift_free(ph);
	drift_free(pp);
	drift_free(vecs);
	return rv;
}

static void free_search(Drift__V1__SearchResponse *resp)
{
	if (resp->n_hits == 0)
		return;
	drift_free(resp->hits[0]->vector); /* the vector block (or NULL) */
	drift_free(resp->hits[0]);	   /* the Hit array */
	drift_free(resp->hits);
}

/* The handler's work on an unpacked request (also a shard-level call's,
 * under its scope). */
static void search_req(drift_grpc_call *c, Drift__V1__SearchRequest *req)
{
	drift_collection *col = acquire(c, req->collection);
	if (col != NULL) {
		drift_api_collection api = api_of(col);
		drift_err verr;
		drift_err_clear(&verr);
		int vrv = drift_api_check_search(req, &api, &verr);
		if (vrv != 0) {
			drift_grpc_call_finish(c, drift_grpc_code_from_err(vrv),
					       "%s", verr.msg);
		} else if (route(c, req->collection, NULL, 0, "") != 0) {
			/* answered: not every shard is here */
		} else {
			Drift__V1__SearchResponse resp;
			int rv = run_search(col, req, &resp);
			if (rv != 0) {
				drift_grpc_call_finish(
					c, drift_grpc_code_from_err(rv),
					"search: %s", drift_strerror(rv));
			} else {
				drift_grpc_call_reply(c, &resp.base);
				free_search(&resp);
			}
		}
		drift_cm_release(svc.cm, col);
	}
}

static void search(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__SearchRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__search_request__descriptor);
	if (req == NULL)
		return;
	forwardable = true;
	forward = false;
	search_req(c, req);
	forwardable = false;
	if (forward) {
		forward = false;
		drift_router_search(c, req);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* The handler's work on an unpacked request (also a shard-level call's,
 * under its scope). */
static void search_batch_req(drift_grpc_call *c,
			     Drift__V1__SearchBatchRequest *req)
{
	drift_collection *col = acquire(c, req->collection);
	if (col == NULL)
		return;
	size_t n = req->n_queries;
	drift_api_collection api = api_of(col);
	drift_err verr;
	drift_err_clear(&verr);
	int vrv = drift_api_check_search_batch(req, &api, &verr);
	if (vrv != 0) {
		drift_grpc_call_finish(c, drift_grpc_code_from_err(vrv), "%s",
				       verr.msg);
		goto rel;
	}
	if (route(c, req->collection, NULL, 0, "") != 0)
		goto rel; /* answered: not every shard is here */
	Drift__V1__SearchResponse *rs = drift_calloc(n ? n : 1, sizeof(*rs));
	Drift__V1__SearchResponse **pp = drift_calloc(n ? n : 1, sizeof(*pp));
	size_t done = 0;
	int rv = rs && pp ? 0 : DRIFT_ENOMEM;
	for (; rv == 0 && done < n; done++) {
		if (drift_grpc_call_done(c)) {
			rv = DRIFT_ETIMEDOUT;
			break;
		}
		rv = run_search(col, req->queries[done], &rs[done]);
		if (rv != 0)
			break;
		pp[done] = &rs[done];
	}
	if (rv == 0) {
		Drift__V1__SearchBatchResponse resp =
			DRIFT__V1__SEARCH_BATCH_RESPONSE__INIT;
		resp.n_results = n;
		resp.results = pp;
		drift_grpc_call_reply(c, &resp.base);
	} else {
		drift_grpc_call_finish(c, drift_grpc_code_from_err(rv),
				       "search batch stopped at query %zu: %s",
				       done, drift_strerror(rv));
	}
	for (size_t i = 0; rs != NULL && i < done; i++)
		free_search(&rs[i]);
	drift_free(rs);
	drift_free(pp);
rel:
	drift_cm_release(svc.cm, col);
}

static void search_batch(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__SearchBatchRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__search_batch_request__descriptor);
	if (req == NULL)
		return;
	forwardable = true;
	forward = false;
	search_batch_req(c, req);
	forwardable = false;
	if (forward) {
		forward = false;
		drift_router_search_batch(c, req);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* The handler's work on an unpacked request (also a shard-level call's,
 * under its scope: that shard alone). */
static void flush_req(drift_grpc_call *c, Drift__V1__FlushRequest *req)
{
	drift_collection *col = acquire(c, req->collection);
	if (col == NULL)
		return;
	if (route(c, req->collection, NULL, 0, "") == 0) {
		drift_err err;
		drift_err_clear(&err);
		int rv = scope != NULL ? drift_collection_flush_shard(
						 col, scope->shard, &err)
				       : drift_collection_flush(col, &err);
		if (rv != 0) {
			fail_err(c, rv, &err);
		} else {
			Drift__V1__FlushResponse resp =
				DRIFT__V1__FLUSH_RESPONSE__INIT;
			drift_grpc_call_reply(c, &resp.base);
		}
	}
	drift_cm_release(svc.cm, col);
}

static void flush(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__FlushRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__flush_request__descriptor);
	if (req == NULL)
		return;
	forwardable = true;
	forward = false;
	flush_req(c, req);
	forwardable = false;
	if (forward) {
		forward = false;
		drift_router_flush(c, req);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- drift.peer.v1: one shard (proto/drift/peer/v1/peer.proto) ---- */

/* Runs a public handler's work under a shard's scope (a read sent to a
 * replica with `replica`). The inner request is required. */
#define PEER_SCOPED(c, req, fn, replica_read)                                  \
	do {                                                                   \
		if ((req)->request == NULL) {                                  \
			drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT, \
					       "no request");                  \
			break;                                                 \
		}                                                              \
		const struct scope sc = {.shard = (req)->shard,                \
					 .map_version = (req)->map_version,    \
					 .replica = (replica_read)};           \
		scope = &sc;                                                   \
		fn(c, (req)->request);                                         \
		scope = NULL;                                                  \
	} while (0)
#define PEER_CALL(c, req, fn) PEER_SCOPED(c, req, fn, false)

static void peer_upsert(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__Peer__V1__ShardUpsertRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__shard_upsert_request__descriptor);
	if (req == NULL)
		return;
	PEER_CALL(c, req, upsert_req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void peer_delete(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__Peer__V1__ShardDeleteRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__shard_delete_request__descriptor);
	if (req == NULL)
		return;
	PEER_CALL(c, req, delete_req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void peer_get(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__Peer__V1__ShardGetRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__shard_get_request__descriptor);
	if (req == NULL)
		return;
	PEER_CALL(c, req, get_req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void peer_search(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__Peer__V1__ShardSearchRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__shard_search_request__descriptor);
	if (req == NULL)
		return;
	PEER_SCOPED(c, req, search_req, req->replica);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void peer_search_batch(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__Peer__V1__ShardSearchBatchRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__shard_search_batch_request__descriptor);
	if (req == NULL)
		return;
	PEER_SCOPED(c, req, search_batch_req, req->replica);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void peer_describe(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__Peer__V1__ShardDescribeRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__shard_describe_request__descriptor);
	if (req == NULL)
		return;
	const struct scope sc = {.shard = req->shard,
				 .map_version = req->map_version};
	scope = &sc;
	drift_collection *col = acquire(c, req->collection);
	if (col != NULL && route(c, req->collection, NULL, 0, "") == 0) {
		const drift_collection_config *cfg = drift_collection_cfg(col);
		drift_shard_stats *st =
			drift_mallocarray(cfg->shards, sizeof(*st));
		if (st == NULL) {
			drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
					       "out of memory");
		} else {
			drift_collection_stats(col, st);
			const drift_shard_stats *t = &st[req->shard];
			Drift__V1__ShardStats ps = DRIFT__V1__SHARD_STATS__INIT;
			stats_to_pb(req->shard, t, &ps);
			Drift__Peer__V1__ShardDescribeResponse resp =
				DRIFT__PEER__V1__SHARD_DESCRIBE_RESPONSE__INIT;
			resp.vector_count = t->live;
			resp.memory_bytes = t->memory_bytes;
			drift_collection_memory(col, &resp.memory_limit);
			resp.stats = &ps;
			drift_grpc_call_reply(c, &resp.base);
			drift_free(st);
		}
	}
	if (col != NULL)
		drift_cm_release(svc.cm, col);
	scope = NULL;
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void peer_flush(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__Peer__V1__ShardFlushRequest *req = drift_grpc_call_recv_req(
		c, &drift__peer__v1__shard_flush_request__descriptor);
	if (req == NULL)
		return;
	const struct scope sc = {.shard = req->shard,
				 .map_version = req->map_version};
	Drift__V1__FlushRequest inner = DRIFT__V1__FLUSH_REQUEST__INIT;
	inner.collection = req->collection;
	scope = &sc;
	flush_req(c, &inner);
	scope = NULL;
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* The leader's probe hook: promotions of shards whose primary is down. */
static void failover(void *arg)
{
	(void)arg;
	drift_replica_failover(svc.repl);
}

/* RemoveNode's hook: the node's replicas move away first. */
static int evacuate(void *arg, const char *id, drift_err *err)
{
	(void)arg;
	return drift_replica_evacuate(svc.repl, id, err);
}

/* Status and ShardMap's hook: how far a move has come. */
static void progress(void *arg, const char *name, uint64_t created,
		     uint32_t shard, const char *to, uint64_t *done,
		     uint64_t *total)
{
	(void)arg;
	drift_replica_move_progress(svc.repl, name, created, shard, to, done,
				    total);
}

int drift_node_service_register(drift_grpc_server *srv, drift_cm *cm,
				drift_node_cluster *nc)
{
	svc.cm = cm;
	svc.nc = nc;
	if (nc != NULL) {
		/* The map forwarded calls route with: this node's own
		 * (WatchShardMap on itself). */
		drift_err err;
		drift_err_clear(&err);
		int rv = drift_rmap_follow(drift_node_cluster_address(nc),
					   &svc.fwd, &err);
		if (rv != 0) {
			DRIFT_ERROR("drift-node: forwarding: %s", err.msg);
			return rv;
		}
		drift_router_use(svc.fwd);
		if ((rv = drift_replica_open(cm, nc, svc.fwd, &svc.repl,
					     &err)) != 0 ||
		    (rv = drift_replica_register(svc.repl, srv)) != 0) {
			DRIFT_ERROR("drift-node: replication: %s", err.msg);
			return rv;
		}
		drift_node_cluster_on_probe(nc, failover, NULL);
		drift_node_cluster_on_evacuate(nc, evacuate, NULL);
		drift_node_cluster_on_progress(nc, progress, NULL);
	}
	static const struct {
		const char *path;
		enum drift_grpc_kind kind;
		drift_grpc_handler fn;
		bool cpu; /* only computes: on the server's fixed CPU pool */
	} m[] = {
		{"/drift.v1.Drift/CreateCollection", DRIFT_GRPC_UNARY,
		 create_collection, false},
		{"/drift.v1.Drift/DropCollection", DRIFT_GRPC_UNARY,
		 drop_collection, false},
		{"/drift.v1.Drift/ListCollections", DRIFT_GRPC_UNARY,
		 list_collections, false},
		{"/drift.v1.Drift/DescribeCollection", DRIFT_GRPC_UNARY,
		 describe_collection, false},
		{"/drift.v1.Drift/Upsert", DRIFT_GRPC_UNARY, upsert, false},
		{"/drift.v1.Drift/UpsertStream", DRIFT_GRPC_CLIENT_STREAM,
		 upsert_stream, false},
		{"/drift.v1.Drift/Delete", DRIFT_GRPC_UNARY, delete_, false},
		{"/drift.v1.Drift/Get", DRIFT_GRPC_UNARY, get, true},
		{"/drift.v1.Drift/Search", DRIFT_GRPC_UNARY, search, true},
		/* Not on the CPU pool: up to DRIFT_NODE_MAX_BATCH_QUERIES
		 * queries can take seconds, and the Search calls queued
		 * behind it would wait that long; over many queries, the
		 * elastic pool's thread costs nothing. */
		{"/drift.v1.Drift/SearchBatch", DRIFT_GRPC_UNARY, search_batch,
		 false},
		{"/drift.v1.Drift/Flush", DRIFT_GRPC_UNARY, flush, false},
		{"/drift.peer.v1.Shard/Upsert", DRIFT_GRPC_UNARY, peer_upsert,
		 false},
		{"/drift.peer.v1.Shard/Delete", DRIFT_GRPC_UNARY, peer_delete,
		 false},
		{"/drift.peer.v1.Shard/Get", DRIFT_GRPC_UNARY, peer_get, true},
		{"/drift.peer.v1.Shard/Search", DRIFT_GRPC_UNARY, peer_search,
		 true},
		{"/drift.peer.v1.Shard/SearchBatch", DRIFT_GRPC_UNARY,
		 peer_search_batch, false},
		{"/drift.peer.v1.Shard/Describe", DRIFT_GRPC_UNARY,
		 peer_describe, false},
		{"/drift.peer.v1.Shard/Flush", DRIFT_GRPC_UNARY, peer_flush,
		 false},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		int rv = m[i].cpu ? drift_grpc_server_add_cpu(srv, m[i].path,
							      m[i].fn, NULL)
				  : drift_grpc_server_add(srv, m[i].path,
							  m[i].kind, m[i].fn,
							  NULL);
		if (rv != 0)
			return rv;
	}
	return nc != NULL ? drift_cluster_svc_register(srv, nc) : 0;
}

void drift_node_service_close(void)
{
	if (svc.nc != NULL) {
		drift_node_cluster_stop(svc.nc); /* the prober, the member */
		drift_node_cluster_on_probe(svc.nc, NULL, NULL);
		drift_node_cluster_on_evacuate(svc.nc, NULL, NULL);
		drift_node_cluster_on_progress(svc.nc, NULL, NULL);
	}
	drift_replica_close(svc.repl);
	svc.repl = NULL;
	drift_rmap_stop(svc.fwd);
	svc.fwd = NULL;
}
