/*
 * Replication: the per-shard entries and the primary's write path (see
 * replica.h).
 */
#include "node/replica/replica.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/member.h"
#include "cluster/placement.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/hash.h"
#include "common/grpc/status.h"
#include "common/log.h"
#include "node/replica/replica_internal.h"
#include "router/fanout.h"

/* ---- Entries ---- */

static size_t bucket_of(uint64_t created, uint32_t shard)
{
	return (size_t)(drift_hash_u64(created * 4096 + shard, 0x5eed) &
			(REPL_BUCKETS - 1));
}

struct repl_shard *repl_shard_of(drift_replica *r, drift_collection *col,
				 uint32_t shard, drift_err *err)
{
	const drift_collection_config *cfg = drift_collection_cfg(col);
	size_t b = bucket_of(cfg->cluster_version, shard);
	pthread_mutex_lock(&r->mu);
	struct repl_shard *e = r->buckets[b];
	while (e != NULL &&
	       (e->shard != shard || e->created != cfg->cluster_version ||
		strcmp(e->name, cfg->name) != 0))
		e = e->hnext;
	if (e != NULL) {
		e->refs++;
		pthread_mutex_unlock(&r->mu);
		return e;
	}
	e = drift_calloc(1, sizeof(*e));
	if (e == NULL) {
		pthread_mutex_unlock(&r->mu);
		drift_err_set(err, DRIFT_ENOMEM, "replication");
		return NULL;
	}
	snprintf(e->name, sizeof(e->name), "%s", cfg->name);
	e->created = cfg->cluster_version;
	e->shard = shard;
	char dir[4200];
	snprintf(dir, sizeof(dir), "%s/shard-%u", drift_collection_dir(col),
		 shard);
	int rv = (e->dir = drift_strdup(dir)) != NULL
			 ? drift_epochs_load(e->dir, &e->ep, err)
			 : drift_err_set(err, DRIFT_ENOMEM, "replication");
	if (rv != 0) {
		pthread_mutex_unlock(&r->mu);
		drift_free(e->dir);
		drift_free(e);
		return NULL;
	}
	pthread_rwlockattr_t a;
	pthread_rwlockattr_init(&a);
	/* The catch-up's exclusive moment must not wait for a pause in a
	 * steady stream of writes. */
	pthread_rwlockattr_setkind_np(
		&a, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&e->writes, &a);
	pthread_rwlock_init(&e->applying, &a);
	pthread_rwlockattr_destroy(&a);
	pthread_mutex_init(&e->mu, NULL);
	e->refs = 1;
	e->next = r->shards;
	r->shards = e;
	e->hnext = r->buckets[b];
	r->buckets[b] = e;
	pthread_mutex_unlock(&r->mu);
	return e;
}

void repl_shard_put(drift_replica *r, struct repl_shard *e)
{
	if (e == NULL)
		return;
	pthread_mutex_lock(&r->mu);
	e->refs--;
	pthread_mutex_unlock(&r->mu);
}

static void shard_free(struct repl_shard *e)
{
	pthread_rwlock_destroy(&e->writes);
	pthread_rwlock_destroy(&e->applying);
	pthread_mutex_destroy(&e->mu);
	drift_free(e->dir);
	drift_free(e);
}

void repl_reap(drift_replica *r)
{
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	pthread_mutex_lock(&r->mu);
	for (struct repl_shard **pp = &r->shards; *pp != NULL;) {
		struct repl_shard *e = *pp;
		const drift_meta_collection *mc =
			drift_meta_col_find(st, e->name);
		if (e->refs == 0 && st->version >= e->created &&
		    (mc == NULL || mc->created_version != e->created)) {
			*pp = e->next;
			struct repl_shard **hp =
				&r->buckets[bucket_of(e->created, e->shard)];
			while (*hp != e)
				hp = &(*hp)->hnext;
			*hp = e->hnext;
			shard_free(e);
		} else {
			pp = &e->next;
		}
	}
	pthread_mutex_unlock(&r->mu);
	drift_meta_unref(st);
}

int repl_save_epochs(struct repl_shard *e, drift_err *err)
{
	return drift_epochs_save(e->dir, &e->ep, err);
}

uint64_t repl_last_seq(drift_collection *col, uint32_t shard)
{
	drift_shard *s = drift_collection_shard_enter(col, shard);
	uint64_t last = s != NULL ? drift_shard_last_seq(s) : 0;
	drift_collection_shard_leave(col, shard);
	return last;
}

void repl_hold_log(drift_collection *col, uint32_t shard, uint64_t after)
{
	drift_shard *s = drift_collection_shard_enter(col, shard);
	if (s != NULL)
		drift_shard_hold_log(s, after);
	drift_collection_shard_leave(col, shard);
}

/* ---- Calls ---- */

const char *repl_address(const drift_meta *st, const char *id)
{
	const drift_meta_node *n = drift_meta_node_find(st, id);
	return n != NULL ? n->address : "";
}

int repl_call(drift_replica *r, const char *address, const char *path,
	      const ProtobufCMessage *req,
	      const ProtobufCMessageDescriptor *resp_desc, uint64_t timeout_ns,
	      ProtobufCMessage **resp, drift_err *err)
{
	drift_grpc_client *cl;
	int rv = drift_rmap_client(r->peers, address, &cl, err);
	if (rv != 0)
		return rv;
	drift_grpc_status st;
	memset(&st, 0, sizeof(st));
	rv = drift_grpc_client_unary_pb(cl, path, req, resp_desc, timeout_ns,
					resp, &st);
	if (rv != 0)
		drift_err_set(err, rv, "node at %s: %s", address,
			      st.msg[0] ? st.msg : drift_strerror(rv));
	return rv;
}

int repl_propose(drift_replica *r, const Drift__Cluster__V1__SetReplicas *req,
		 uint64_t *version, drift_err *err)
{
	drift_member *m = drift_node_cluster_member(r->nc);
	drift_member_info in;
	drift_member_info_get(m, &in);
	if (!in.leader)
		return drift_err_set(err, DRIFT_ESTALE,
				     "node %s is not the metadata leader",
				     drift_node_cluster_node_id(r->nc));
	Drift__Cluster__V1__Command cmd = DRIFT__CLUSTER__V1__COMMAND__INIT;
	cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_REPLICAS;
	cmd.set_replicas = (Drift__Cluster__V1__SetReplicas *)req;
	int rv = drift_member_propose(m, &cmd, REPL_TIMEOUT_NS, err);
	if (rv == 0) {
		drift_meta *st = drift_member_state(m);
		*version = st->version;
		drift_meta_unref(st);
	}
	return rv;
}

int repl_set_replicas(drift_replica *r,
		      const Drift__Cluster__V1__SetReplicas *req,
		      drift_err *err)
{
	drift_member *m = drift_node_cluster_member(r->nc);
	uint64_t deadline = drift_now_ns() + REPL_TIMEOUT_NS;
	uint64_t version = 0;
	int rv;
	for (;;) {
		rv = repl_propose(r, req, &version, err);
		if (rv != DRIFT_ESTALE)
			break;
		char id[DRIFT_NODE_ID_MAX + 1], addr[DRIFT_ADDR_MAX + 1];
		if (drift_member_leader(m, id, addr) &&
		    strcmp(id, drift_node_cluster_node_id(r->nc)) != 0) {
			ProtobufCMessage *out = NULL;
			Drift__Peer__V1__SetReplicasRequest w =
				DRIFT__PEER__V1__SET_REPLICAS_REQUEST__INIT;
			w.change = (Drift__Cluster__V1__SetReplicas *)req;
			rv = repl_call(
				r, addr, "/drift.peer.v1.Replica/SetReplicas",
				&w.base,
				&drift__peer__v1__set_replicas_response__descriptor,
				REPL_TIMEOUT_NS, &out, err);
			if (rv == 0) {
				version = ((Drift__Peer__V1__SetReplicasResponse
						    *)out)
						  ->map_version;
				protobuf_c_message_free_unpacked(out, NULL);
				break;
			}
			if (rv != DRIFT_EUNAVAIL && rv != DRIFT_ESTALE)
				return rv;
		}
		if (drift_now_ns() >= deadline)
			return drift_err_set(err, DRIFT_EUNAVAIL,
					     "no metadata leader took the "
					     "change of %s/%u's replicas",
					     req->collection, req->shard);
		drift_clock_sleep(drift_clock_system(), 20000000);
	}
	if (rv != 0)
		return rv;
	/* This node acts on the change only once its own map has it. */
	drift_meta *st = NULL;
	rv = drift_member_wait(m, version - 1, deadline, &st);
	drift_meta_unref(st);
	if (rv != 0)
		return drift_err_set(err, DRIFT_EUNAVAIL,
				     "the change of %s/%u's replicas (map "
				     "version %" PRIu64 ") has not reached "
				     "node %s",
				     req->collection, req->shard, version,
				     drift_node_cluster_node_id(r->nc));
	return 0;
}

/* ---- The primary's writes ---- */

static unsigned popcount(uint32_t x)
{
	return (unsigned)__builtin_popcount(x);
}

/* Waits (at most REPL_WRITE_TIMEOUT_NS) until this node's map has shard
 * in an epoch after `epoch`. */
static void wait_new_epoch(drift_replica *r, const drift_collection_config *cfg,
			   uint32_t shard, uint64_t epoch)
{
	drift_member *m = drift_node_cluster_member(r->nc);
	uint64_t deadline = drift_now_ns() + REPL_WRITE_TIMEOUT_NS;
	drift_meta *st = drift_member_state(m);
	for (;;) {
		const drift_meta_collection *mc =
			drift_meta_col_find(st, cfg->name);
		if (mc == NULL || mc->created_version != cfg->cluster_version ||
		    shard >= mc->shards || mc->shard[shard].epoch > epoch)
			break;
		uint64_t known = st->version;
		drift_meta_unref(st);
		st = NULL;
		if (drift_member_wait(m, known, deadline, &st) != 0)
			break;
	}
	drift_meta_unref(st);
}

/* One shard's part of a write: written here, then sent to the other
 * in-sync replicas. */
static int write_shard(drift_replica *r, drift_collection *col, uint32_t shard,
		       bool del, const uint64_t *ids, const float *vecs,
		       size_t n, size_t *deleted, drift_err *err)
{
	const drift_collection_config *cfg = drift_collection_cfg(col);
	const char *self = drift_node_cluster_node_id(r->nc);
	struct repl_shard *e = repl_shard_of(r, col, shard, err);
	if (e == NULL)
		return err != NULL && err->code ? err->code : DRIFT_ENOMEM;
	pthread_rwlock_rdlock(&e->writes);
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	drift_shard_record rec = {0};
	uint8_t *packed = NULL;
	drift_fanout_part *parts = NULL;
	size_t np = 0;
	int rv = 0;
	const drift_meta_collection *mc = drift_meta_col_find(st, cfg->name);
	if (mc == NULL || mc->created_version != cfg->cluster_version ||
	    shard >= mc->shards) {
		rv = drift_err_set(
			err, DRIFT_ESTALE,
			"collection %s is not in map version %" PRIu64
			" any more",
			cfg->name, st->version);
		goto out;
	}
	const drift_meta_shard *sh = &mc->shard[shard];
	if (strcmp(sh->nodes[0], self) != 0) {
		rv = drift_err_set(err, DRIFT_ESTALE,
				   "collection %s: the primary of shard %u is "
				   "node %s, not %s (map version %" PRIu64 ")",
				   cfg->name, shard, sh->nodes[0], self,
				   st->version);
		goto out;
	}
	/* A majority of the collection's replication factor: a moving shard
	 * has one replica more for a while, not yet in sync. */
	unsigned rf = mc->replication_factor ? mc->replication_factor : sh->n;
	unsigned need = rf / 2 + 1, have = popcount(sh->in_sync);
	if (have < need) {
		rv = drift_err_set(err, DRIFT_EUNAVAIL,
				   "collection %s: %u of shard %u's %u "
				   "replicas are in sync, a write needs %u "
				   "(the others are down or catching up)",
				   cfg->name, have, shard, rf, need);
		goto out;
	}
	pthread_mutex_lock(&e->mu);
	if (e->ep.fence > sh->epoch) {
		pthread_mutex_unlock(&e->mu);
		/* A failover or a move is under way: wait a moment for the map
		 * that ends it, then send the write to the new primary. */
		wait_new_epoch(r, cfg, shard, sh->epoch);
		rv = drift_err_set(err, DRIFT_ESTALE,
				   "collection %s: shard %u's primary changes "
				   "(epoch %" PRIu64 " is fenced on node %s, "
				   "map version %" PRIu64 ")",
				   cfg->name, shard, sh->epoch, self,
				   st->version);
		goto out;
	}
	uint64_t next = repl_last_seq(col, shard) + 1;
	if (drift_epochs_begin(&e->ep, sh->epoch, next) &&
	    (rv = repl_save_epochs(e, err)) != 0) {
		pthread_mutex_unlock(&e->mu);
		goto out;
	}
	pthread_mutex_unlock(&e->mu);
	size_t dummy;
	rv = del ? drift_collection_delete_rec(col, shard, ids, n,
					       deleted ? deleted : &dummy, &rec,
					       err)
		 : drift_collection_upsert_rec(col, shard, ids, vecs, n, &rec,
					       err);
	if (rv != 0 || rec.seq == 0 || sh->n == 1)
		goto out;
	/* To the other in-sync replicas, all at once. */
	Drift__Peer__V1__Record pr = DRIFT__PEER__V1__RECORD__INIT;
	pr.seq = rec.seq;
	pr.type = rec.type;
	pr.payload.data = rec.payload;
	pr.payload.len = rec.len;
	Drift__Peer__V1__Record *prs[] = {&pr};
	Drift__Peer__V1__ReplicateRequest req =
		DRIFT__PEER__V1__REPLICATE_REQUEST__INIT;
	req.collection = (char *)cfg->name;
	req.created_version = cfg->cluster_version;
	req.shard = shard;
	req.epoch = sh->epoch;
	req.primary = (char *)self;
	req.records = prs;
	req.n_records = 1;
	size_t len = drift__peer__v1__replicate_request__get_packed_size(&req);
	packed = drift_malloc(len ? len : 1);
	parts = drift_calloc(sh->n, sizeof(*parts));
	if (packed == NULL || parts == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "replication");
		goto out;
	}
	drift__peer__v1__replicate_request__pack(&req, packed);
	uint32_t who[DRIFT_META_MAX_RF];
	for (uint32_t i = 1; i < sh->n; i++) {
		if (!(sh->in_sync & (1u << i)))
			continue;
		parts[np].address = repl_address(st, sh->nodes[i]);
		parts[np].path = "/drift.peer.v1.Replica/Replicate";
		parts[np].req = packed;
		parts[np].len = len;
		who[np++] = i;
	}
	drift_fanout_run(r->peers, parts, np, REPL_WRITE_TIMEOUT_NS);
	char *drop[DRIFT_META_MAX_RF];
	size_t ndrop = 0;
	const drift_fanout_part *first_bad = NULL;
	for (size_t i = 0; i < np; i++) {
		if (parts[i].st.code == DRIFT_GRPC_OK) {
			repl_note_position(e, sh->nodes[who[i]], rec.seq);
			continue;
		}
		if (first_bad == NULL)
			first_bad = &parts[i];
		if (parts[i].st.code == DRIFT_GRPC_ABORTED) {
			/* A replica fenced this epoch: a newer primary. The
			 * caller retries once with a newer map: wait for the
			 * one that names it. */
			wait_new_epoch(r, cfg, shard, sh->epoch);
			rv = drift_err_set(err, DRIFT_ESTALE,
					   "collection %s: shard %u has a new "
					   "primary (map version %" PRIu64
					   "; node %s: %s)",
					   cfg->name, shard, st->version,
					   sh->nodes[who[i]], parts[i].st.msg);
			goto out;
		}
		drop[ndrop++] = (char *)sh->nodes[who[i]];
	}
	if (ndrop == 0)
		goto out;
	if (have - ndrop < need) {
		rv = drift_err_set(err, DRIFT_EUNAVAIL,
				   "collection %s: shard %u's write reached "
				   "%zu of its %u replicas, it needs %u "
				   "(node %s: %s)",
				   cfg->name, shard, have - ndrop, rf, need,
				   sh->nodes[who[first_bad - parts]],
				   first_bad->st.msg);
		goto out;
	}
	DRIFT_WARN("replication: %s/%u: dropping %zu replica(s) from the "
		   "in-sync set (node %s: %s)",
		   cfg->name, shard, ndrop, sh->nodes[who[first_bad - parts]],
		   first_bad->st.msg);
	Drift__Cluster__V1__SetReplicas sr =
		DRIFT__CLUSTER__V1__SET_REPLICAS__INIT;
	sr.collection = (char *)cfg->name;
	sr.created_version = cfg->cluster_version;
	sr.shard = shard;
	sr.epoch = sh->epoch;
	sr.drop_in_sync = drop;
	sr.n_drop_in_sync = ndrop;
	drift_err serr;
	drift_err_clear(&serr);
	if (repl_set_replicas(r, &sr, &serr) != 0)
		rv = drift_err_set(err, DRIFT_EUNAVAIL,
				   "collection %s: shard %u's write reached "
				   "too few replicas, and dropping the others "
				   "from the in-sync set failed: %s",
				   cfg->name, shard, serr.msg);
out:
	if (parts != NULL)
		drift_fanout_free(parts, np);
	drift_free(parts);
	drift_free(packed);
	drift_shard_record_free(&rec);
	drift_meta_unref(st);
	pthread_rwlock_unlock(&e->writes);
	repl_shard_put(r, e);
	return rv;
}

/* The write split by shard (each part all or nothing, as on one node). */
static int write_split(drift_replica *r, drift_collection *col, bool del,
		       const uint64_t *ids, const float *vecs, size_t n,
		       size_t *deleted, drift_err *err)
{
	const drift_collection_config *cfg = drift_collection_cfg(col);
	uint32_t ns = cfg->shards, dim = cfg->dim;
	if (deleted != NULL)
		*deleted = 0;
	if (n > drift_collection_max_batch(col))
		return del ? drift_collection_delete(col, ids, n, deleted, err)
			   : drift_collection_upsert(col, ids, vecs, n, err);
	if (ns == 1)
		return write_shard(r, col, 0, del, ids, vecs, n, deleted, err);
	/* The whole batch checked first, as on one node (collection.h). */
	int rv =
		del ? 0 : drift_collection_check_upsert(col, ids, vecs, n, err);
	if (rv == 0)
		rv = drift_collection_check_room(col, n, del, err);
	if (rv != 0)
		return rv;
	uint64_t *pid = drift_mallocarray(n ? n : 1, 8);
	float *pv = del ? NULL : drift_mallocarray(n ? n * dim : 1, 4);
	if (pid == NULL || (!del && pv == NULL)) {
		drift_free(pid);
		drift_free(pv);
		return drift_err_set(err, DRIFT_ENOMEM, "write");
	}
	for (uint32_t s = 0; s < ns && rv == 0; s++) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++) {
			if (drift_shard_of_id(ids[i], ns) != s)
				continue;
			pid[m] = ids[i];
			if (!del)
				memcpy(pv + m * dim, vecs + i * dim,
				       dim * sizeof(float));
			m++;
		}
		size_t d = 0;
		if (m > 0)
			rv = write_shard(r, col, s, del, pid, pv, m, &d, err);
		if (deleted != NULL)
			*deleted += d;
	}
	drift_free(pid);
	drift_free(pv);
	return rv;
}

int drift_replica_upsert(drift_replica *r, drift_collection *col,
			 const uint64_t *ids, const float *vecs, size_t n,
			 drift_err *err)
{
	return write_split(r, col, false, ids, vecs, n, NULL, err);
}

int drift_replica_delete(drift_replica *r, drift_collection *col,
			 const uint64_t *ids, size_t n, size_t *deleted,
			 drift_err *err)
{
	return write_split(r, col, true, ids, NULL, n, deleted, err);
}

/* ---- Life ---- */

int drift_replica_open(drift_cm *cm, drift_node_cluster *nc,
		       drift_rmap_follower *peers, drift_replica **out,
		       drift_err *err)
{
	drift_replica *r = drift_calloc(1, sizeof(*r));
	if (r == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "replication");
	r->cm = cm;
	r->nc = nc;
	r->peers = peers;
	pthread_mutex_init(&r->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&r->cond, &ca);
	pthread_condattr_destroy(&ca);
	int rv = pthread_create(&r->catchup, NULL, repl_catchup_main, r);
	if (rv != 0) {
		drift_replica_close(r);
		return drift_err_errno(err, rv, "starting the catch-up thread");
	}
	r->catchup_running = true;
	if (repl_lag_start(r) != 0) {
		drift_replica_close(r);
		return drift_err_set(err, DRIFT_ENOMEM, "replication metrics");
	}
	r->lag_running = true;
	*out = r;
	return 0;
}

void drift_replica_close(drift_replica *r)
{
	if (r == NULL)
		return;
	if (r->lag_running)
		repl_lag_stop(r);
	pthread_mutex_lock(&r->mu);
	r->stop = true;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->mu);
	if (r->catchup_running)
		pthread_join(r->catchup, NULL);
	pthread_mutex_lock(&r->mu);
	while (r->rebalancing) /* a move in the background sees stop */
		pthread_cond_wait(&r->cond, &r->mu);
	pthread_mutex_unlock(&r->mu);
	while (r->shards != NULL) {
		struct repl_shard *e = r->shards;
		r->shards = e->next;
		shard_free(e);
	}
	pthread_cond_destroy(&r->cond);
	pthread_mutex_destroy(&r->mu);
	drift_free(r);
}
