/*
 * The router's shard map (see map.h).
 */
#include "router/map.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cluster/placement.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"

#define MAX_JOIN 16
#define MAX_CLIENTS 256
#define ADDR_MAX 255
#define BACKOFF_NS 200000000ull
#define CALL_TIMEOUT_NS 2000000000ull

struct drift_rmap {
	atomic_uint refs;
	Drift__V1__ShardMapResponse *pb;
	drift_rmap_collection *cols; /* sorted by name */
	size_t n_cols;
};

struct peer {
	char address[ADDR_MAX + 1];
	drift_grpc_client *client;
};

struct drift_rmap_follower {
	char join[MAX_JOIN][ADDR_MAX + 1];
	size_t n_join;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	drift_rmap *cur;		/* under mu */
	bool stopping;			/* under mu */
	drift_grpc_ccall *call;		/* the open watch, under mu */
	struct peer peers[MAX_CLIENTS]; /* under mu */
	size_t n_peers;
	pthread_t thread;
	bool started;
};

/* ---- Maps ---- */

static int col_cmp(const void *a, const void *b)
{
	const drift_rmap_collection *x = a, *y = b;
	return strcmp(x->info->name, y->info->name);
}

static void map_free(drift_rmap *m)
{
	if (m == NULL)
		return;
	for (size_t i = 0; i < m->n_cols; i++) {
		drift_free(m->cols[i].primary);
		drift_free(m->cols[i].primary_id);
		drift_free(m->cols[i].assignment);
	}
	drift_free(m->cols);
	if (m->pb != NULL)
		protobuf_c_message_free_unpacked(&m->pb->base, NULL);
	drift_free(m);
}

void drift_rmap_unref(drift_rmap *m)
{
	if (m != NULL && atomic_fetch_sub(&m->refs, 1) == 1)
		map_free(m);
}

static const Drift__V1__NodeInfo *
node_info(const Drift__V1__ShardMapResponse *pb, const char *id)
{
	for (size_t i = 0; i < pb->n_nodes; i++)
		if (strcmp(pb->nodes[i]->id, id) == 0)
			return pb->nodes[i];
	return NULL;
}

static const char *node_address(const Drift__V1__ShardMapResponse *pb,
				const char *id)
{
	for (size_t i = 0; i < pb->n_nodes; i++)
		if (strcmp(pb->nodes[i]->id, id) == 0)
			return pb->nodes[i]->address;
	return "";
}

/* Takes pb (unpacked) into a new map; NULL when out of memory (pb is
 * freed). */
static drift_rmap *map_new(Drift__V1__ShardMapResponse *pb)
{
	drift_rmap *m = drift_calloc(1, sizeof(*m));
	if (m == NULL) {
		protobuf_c_message_free_unpacked(&pb->base, NULL);
		return NULL;
	}
	atomic_init(&m->refs, 1);
	m->pb = pb;
	m->cols = drift_calloc(pb->n_collections + 1, sizeof(*m->cols));
	if (m->cols == NULL)
		goto fail;
	for (size_t i = 0; i < pb->n_collections; i++) {
		drift_rmap_collection *c = &m->cols[m->n_cols++];
		c->info = pb->collections[i];
		uint32_t ns = c->info->shards;
		c->primary = drift_calloc(ns + 1, sizeof(*c->primary));
		c->primary_id = drift_calloc(ns + 1, sizeof(*c->primary_id));
		c->assignment = drift_calloc(ns + 1, sizeof(*c->assignment));
		if (c->primary == NULL || c->primary_id == NULL ||
		    c->assignment == NULL)
			goto fail;
		for (uint32_t s = 0; s < ns; s++)
			c->primary[s] = c->primary_id[s] = "";
	}
	qsort(m->cols, m->n_cols, sizeof(*m->cols), col_cmp);
	for (size_t i = 0; i < pb->n_shards; i++) {
		const Drift__V1__ShardAssignment *a = pb->shards[i];
		drift_rmap_collection *c =
			(drift_rmap_collection *)drift_rmap_find(m,
								 a->collection);
		if (c == NULL || a->shard >= c->info->shards || a->n_nodes == 0)
			continue;
		c->primary_id[a->shard] = a->nodes[0];
		c->primary[a->shard] = node_address(pb, a->nodes[0]);
		c->assignment[a->shard] = a;
	}
	return m;
fail:
	map_free(m);
	return NULL;
}

const char *drift_rmap_reader(const drift_rmap *m,
			      const drift_rmap_collection *c, uint32_t s,
			      unsigned pick, bool *replica)
{
	const Drift__V1__ShardAssignment *a = c->assignment[s];
	*replica = false;
	if (a == NULL || a->n_in_sync < 2 ||
	    !drift_placement_reads_spread((uint32_t)a->n_nodes,
					  c->info->replication_factor))
		return c->primary[s];
	/* The in-sync replicas on nodes the map has UP, the primary among
	 * them whatever its state (it is asked anyway). */
	const char *ids[DRIFT_PLACEMENT_MAX_RF + 1];
	size_t n = 0;
	for (size_t i = 0; i < a->n_in_sync && n < DRIFT_PLACEMENT_MAX_RF + 1;
	     i++) {
		const Drift__V1__NodeInfo *ni = node_info(m->pb, a->in_sync[i]);
		if (strcmp(a->in_sync[i], a->nodes[0]) == 0 ||
		    (ni != NULL &&
		     ni->state == DRIFT__V1__NODE_STATE__NODE_STATE_UP))
			ids[n++] = a->in_sync[i];
	}
	if (n < 2)
		return c->primary[s];
	const char *id = ids[pick % n];
	const char *addr = node_address(m->pb, id);
	if (strcmp(id, a->nodes[0]) == 0 || addr[0] == '\0')
		return c->primary[s];
	*replica = true;
	return addr;
}

const drift_rmap_collection *drift_rmap_find(const drift_rmap *m,
					     const char *name)
{
	size_t lo = 0, hi = m->n_cols;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		int c = strcmp(m->cols[mid].info->name, name);
		if (c == 0)
			return &m->cols[mid];
		if (c < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return NULL;
}

uint64_t drift_rmap_version(const drift_rmap *m)
{
	return m->pb->version;
}

const Drift__V1__ShardMapResponse *drift_rmap_pb(const drift_rmap *m)
{
	return m->pb;
}

/* Installs pb when it is newer than the current map. */
static void install(drift_rmap_follower *f, Drift__V1__ShardMapResponse *pb)
{
	pthread_mutex_lock(&f->mu);
	bool newer = f->cur == NULL || pb->version > f->cur->pb->version;
	pthread_mutex_unlock(&f->mu);
	if (!newer) {
		protobuf_c_message_free_unpacked(&pb->base, NULL);
		return;
	}
	drift_rmap *m = map_new(pb);
	if (m == NULL)
		return;
	pthread_mutex_lock(&f->mu);
	drift_rmap *old = NULL;
	if (f->cur == NULL || m->pb->version > f->cur->pb->version) {
		old = f->cur;
		f->cur = m;
		m = NULL;
		pthread_cond_broadcast(&f->cond);
	}
	pthread_mutex_unlock(&f->mu);
	drift_rmap_unref(old);
	drift_rmap_unref(m);
}

drift_rmap *drift_rmap_get(drift_rmap_follower *f)
{
	pthread_mutex_lock(&f->mu);
	drift_rmap *m = f->cur;
	if (m != NULL)
		atomic_fetch_add(&m->refs, 1);
	pthread_mutex_unlock(&f->mu);
	return m;
}

/* ---- Clients ---- */

int drift_rmap_client(drift_rmap_follower *f, const char *address,
		      drift_grpc_client **out, drift_err *err)
{
	pthread_mutex_lock(&f->mu);
	for (size_t i = 0; i < f->n_peers; i++)
		if (strcmp(f->peers[i].address, address) == 0) {
			*out = f->peers[i].client;
			pthread_mutex_unlock(&f->mu);
			return 0;
		}
	int rv = 0;
	if (f->n_peers == MAX_CLIENTS) {
		rv = drift_err_set(err, DRIFT_ELIMIT, "too many nodes");
		goto out;
	}
	drift_grpc_client_opts co = {.connect_timeout_ns = CALL_TIMEOUT_NS,
				     .backoff_max_ns = 500000000ull};
	drift_grpc_client *c = NULL;
	if ((rv = drift_grpc_client_new(address, &co, &c, err)) != 0)
		goto out;
	struct peer *p = &f->peers[f->n_peers++];
	snprintf(p->address, sizeof(p->address), "%s", address);
	p->client = c;
	*out = c;
out:
	pthread_mutex_unlock(&f->mu);
	return rv;
}

void drift_rmap_any_node(drift_rmap_follower *f, char *out, size_t cap)
{
	drift_rmap *m = drift_rmap_get(f);
	const char *a = f->join[0];
	if (m != NULL) {
		const Drift__V1__ShardMapResponse *pb = m->pb;
		if (pb->leader[0] != '\0' && node_address(pb, pb->leader)[0])
			a = node_address(pb, pb->leader);
		else if (pb->n_nodes > 0)
			a = pb->nodes[0]->address;
	}
	snprintf(out, cap, "%s", a);
	drift_rmap_unref(m);
}

/* ---- Following ---- */

static bool stopping(drift_rmap_follower *f)
{
	pthread_mutex_lock(&f->mu);
	bool s = f->stopping;
	pthread_mutex_unlock(&f->mu);
	return s;
}

static uint64_t current_version(drift_rmap_follower *f)
{
	drift_rmap *m = drift_rmap_get(f);
	uint64_t v = m != NULL ? m->pb->version : 0;
	drift_rmap_unref(m);
	return v;
}

/* One WatchShardMap stream at address, until it ends. */
static void watch(drift_rmap_follower *f, const char *address)
{
	drift_grpc_client *cl;
	drift_err err;
	drift_err_clear(&err);
	if (drift_rmap_client(f, address, &cl, &err) != 0)
		return;
	Drift__V1__WatchShardMapRequest req =
		DRIFT__V1__WATCH_SHARD_MAP_REQUEST__INIT;
	req.known_version = current_version(f);
	uint8_t buf[32];
	size_t len = drift__v1__watch_shard_map_request__pack(&req, buf);
	drift_grpc_ccall *call = NULL;
	if (drift_grpc_ccall_start(cl, "/drift.v1.Cluster/WatchShardMap", 0,
				   NULL, &call) != 0)
		return;
	pthread_mutex_lock(&f->mu);
	bool stop = f->stopping;
	if (!stop)
		f->call = call;
	pthread_mutex_unlock(&f->mu);
	if (!stop && drift_grpc_ccall_send(call, buf, len) == 0 &&
	    drift_grpc_ccall_close_send(call) == 0) {
		drift_grpc_msg *msg;
		while (drift_grpc_ccall_recv(call, &msg) == 1) {
			Drift__V1__ShardMapResponse *pb =
				drift__v1__shard_map_response__unpack(
					NULL, msg->len, msg->data);
			drift_grpc_msg_free(msg);
			if (pb == NULL)
				break;
			install(f, pb);
		}
	}
	pthread_mutex_lock(&f->mu);
	f->call = NULL;
	pthread_mutex_unlock(&f->mu);
	drift_grpc_status st;
	drift_grpc_ccall_finish(call, &st);
	if (!stopping(f))
		DRIFT_WARN("router: shard map stream from %s ended: %s %s",
			   address, drift_grpc_code_name(st.code), st.msg);
}

static void *follow_main(void *arg)
{
	drift_rmap_follower *f = arg;
	size_t next = 0;
	while (!stopping(f)) {
		watch(f, f->join[next]);
		next = (next + 1) % f->n_join;
		uint64_t until = drift_now_ns() + BACKOFF_NS;
		pthread_mutex_lock(&f->mu);
		while (!f->stopping && drift_now_ns() < until) {
			struct timespec ts = {
				.tv_sec = (time_t)(until / 1000000000u),
				.tv_nsec = (long)(until % 1000000000u)};
			pthread_cond_timedwait(&f->cond, &f->mu, &ts);
		}
		pthread_mutex_unlock(&f->mu);
	}
	return NULL;
}

void drift_rmap_refresh(drift_rmap_follower *f, uint64_t newer_than,
			uint64_t timeout_ns)
{
	if (newer_than != 0 && current_version(f) > newer_than)
		return;
	char first[ADDR_MAX + 1];
	drift_rmap_any_node(f, first, sizeof(first));
	uint64_t until = drift_now_ns() + timeout_ns;
	for (size_t i = 0; i <= f->n_join && drift_now_ns() < until; i++) {
		const char *a = i == 0 ? first : f->join[i - 1];
		drift_grpc_client *cl;
		if (drift_rmap_client(f, a, &cl, NULL) != 0)
			continue;
		Drift__V1__ShardMapRequest req =
			DRIFT__V1__SHARD_MAP_REQUEST__INIT;
		ProtobufCMessage *out = NULL;
		if (drift_grpc_client_unary_pb(
			    cl, "/drift.v1.Cluster/ShardMap", &req.base,
			    &drift__v1__shard_map_response__descriptor,
			    until - drift_now_ns(), &out, NULL) != 0)
			continue;
		install(f, (Drift__V1__ShardMapResponse *)out);
		return;
	}
}

int drift_rmap_wait(drift_rmap_follower *f, uint64_t timeout_ns)
{
	uint64_t until = drift_now_ns() + timeout_ns;
	pthread_mutex_lock(&f->mu);
	while (f->cur == NULL && drift_now_ns() < until) {
		struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
				      .tv_nsec = (long)(until % 1000000000u)};
		pthread_cond_timedwait(&f->cond, &f->mu, &ts);
	}
	int rv = f->cur != NULL ? 0 : DRIFT_ETIMEDOUT;
	pthread_mutex_unlock(&f->mu);
	return rv;
}

drift_rmap *drift_rmap_wait_newer(drift_rmap_follower *f, uint64_t known,
				  uint64_t timeout_ns)
{
	uint64_t until = drift_now_ns() + timeout_ns;
	pthread_mutex_lock(&f->mu);
	while ((f->cur == NULL || f->cur->pb->version <= known) &&
	       !f->stopping && drift_now_ns() < until) {
		struct timespec ts = {.tv_sec = (time_t)(until / 1000000000u),
				      .tv_nsec = (long)(until % 1000000000u)};
		pthread_cond_timedwait(&f->cond, &f->mu, &ts);
	}
	drift_rmap *m = f->cur;
	if (m != NULL && m->pb->version > known)
		atomic_fetch_add(&m->refs, 1);
	else
		m = NULL;
	pthread_mutex_unlock(&f->mu);
	return m;
}

int drift_rmap_follow(const char *join, drift_rmap_follower **out,
		      drift_err *err)
{
	drift_rmap_follower *f = drift_calloc(1, sizeof(*f));
	if (f == NULL)
		return DRIFT_ENOMEM;
	const char *p = join;
	while (p != NULL && *p != '\0') {
		const char *e = strchr(p, ',');
		size_t n = e != NULL ? (size_t)(e - p) : strlen(p);
		if (n > 0 && n <= ADDR_MAX && f->n_join < MAX_JOIN) {
			memcpy(f->join[f->n_join], p, n);
			f->join[f->n_join++][n] = '\0';
		} else if (n > 0) {
			drift_free(f);
			return drift_err_set(err, DRIFT_EINVAL,
					     "--join: at most %d addresses of "
					     "%d bytes",
					     MAX_JOIN, ADDR_MAX);
		}
		p = e != NULL ? e + 1 : NULL;
	}
	if (f->n_join == 0) {
		drift_free(f);
		return drift_err_set(err, DRIFT_EINVAL,
				     "--join names no node (HOST:PORT,...)");
	}
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cond, &ca);
	pthread_condattr_destroy(&ca);
	if (pthread_create(&f->thread, NULL, follow_main, f) != 0) {
		drift_rmap_stop(f);
		return drift_err_set(err, DRIFT_ENOMEM, "no thread");
	}
	f->started = true;
	*out = f;
	return 0;
}

void drift_rmap_stop(drift_rmap_follower *f)
{
	if (f == NULL)
		return;
	pthread_mutex_lock(&f->mu);
	f->stopping = true;
	if (f->call != NULL)
		drift_grpc_ccall_cancel(f->call);
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
	if (f->started)
		pthread_join(f->thread, NULL);
	for (size_t i = 0; i < f->n_peers; i++)
		drift_grpc_client_free(f->peers[i].client);
	drift_rmap_unref(f->cur);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->mu);
	drift_free(f);
}
