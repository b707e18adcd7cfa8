/*
 * A node's part in the cluster (see cluster.h).
 */
#include "node/server/cluster.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/log.h"
#include <sys/random.h>
#include "drift/v1/drift.pb-c.h"
#include "grpc/health/v1/health.pb-c.h"

#define PATHLEN 4096
#define MAX_CLIENTS 256
/* The leader probes every node's health this often, and marks a node
 * that has not answered for DOWN_AFTER_NS DOWN (no new shards go to it)
 * until it answers again. */
#define PROBE_NS 500000000ull
#define DOWN_AFTER_NS 1500000000ull

struct peer_client {
	char address[DRIFT_ADDR_MAX + 1];
	drift_grpc_client *client;
};

/* A collection the map gives this node that it could not open. */
struct open_failure {
	char name[DRIFT_COLLECTION_NAME_MAX + 1];
	uint64_t version; /* its created_version */
	int rv;
	drift_err err;
};

#define MAX_FAILURES 64

/* A collection the map still has but no longer places on this node (its
 * replicas moved away) is deleted here only after it has been so for this
 * long, as seen by a node caught up with the leader: routers still on an
 * older map find it meanwhile, and a node replaying its Raft log at start
 * passes through states older than the moves that gave it the shards. */
#define MOVED_GRACE_NS (10ull * 1000000000ull)
#define MAX_MOVED 256
/* A full pass of the watcher at least this often, map change or not: a
 * local collection dropped or left missing by something other than the
 * watcher (node/replica's repair re-creates a damaged copy itself) is
 * created again even while its map entry does not change. */
#define FULL_PASS_NS (30ull * 1000000000ull)
struct moved_away {
	char name[DRIFT_META_NAME_MAX + 1];
	uint64_t version; /* the map version that created it */
	uint64_t since;	  /* drift_now_ns() it was first seen so */
};

struct drift_node_cluster {
	char node_id[DRIFT_NODE_ID_MAX + 1];
	char address[DRIFT_ADDR_MAX + 1];
	char raft_address[DRIFT_ADDR_MAX + 1];
	char join[1024];
	char raft_dir[PATHLEN];
	bool fresh; /* the Raft directory was empty at open */
	unsigned max_voters;
	drift_cm *cm;
	drift_member *member;

	pthread_mutex_t mu;
	pthread_cond_t cond;
	struct peer_client clients[MAX_CLIENTS]; /* under mu */
	size_t n_clients;
	uint64_t applied; /* under mu: map version applied locally */
	bool closing;	  /* under mu */
	struct open_failure failures[MAX_FAILURES]; /* under mu */
	struct moved_away moved[MAX_MOVED];	    /* the watcher's own */
	size_t n_moved;
	/* The watcher's own: the next map is applied by a full pass over
	 * every collection (not only those that changed) when a failure or
	 * a moved-away collection found no room in its list (rescan), or
	 * while a local collection was made by a map version later than the
	 * last one applied (ahead, its version: a restart that replays the
	 * Raft log). */
	bool rescan;
	uint64_t ahead;
	uint64_t next_full; /* drift_now_ns() of the next full pass */
	size_t n_failures;
	pthread_t watcher;
	bool watching;
	pthread_t prober;
	bool probing;
	/* After each of the leader's probe passes (under mu to set). */
	void (*on_probe)(void *arg);
	void *on_probe_arg;
	drift_node_cluster_evacuate_fn evacuate;
	void *evacuate_arg;
	drift_node_cluster_progress_fn progress;
	void *progress_arg;
};

/* ---- Identity ---- */

/* Random bits for ids (not a secret: uniqueness is what matters). */
static uint64_t random64(void)
{
	uint64_t r = 0;
	if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
		r = drift_now_ns() ^ ((uint64_t)getpid() << 32);
	return r;
}

static int read_identity(const char *path, char *id, drift_err *err)
{
	uint8_t *data;
	size_t len;
	int rv = drift_fs_read_file(drift_fs_posix(), path, 4096, &data, &len,
				    err);
	if (rv != 0)
		return rv;
	while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == ' '))
		len--;
	if (len == 0 || len > DRIFT_NODE_ID_MAX) {
		drift_free(data);
		return drift_err_set(err, DRIFT_ECORRUPT, "%s: not a node id",
				     path);
	}
	memcpy(id, data, len);
	id[len] = '\0';
	drift_free(data);
	if (!drift_meta_node_id_ok(id))
		return drift_err_set(err, DRIFT_ECORRUPT, "%s: not a node id",
				     path);
	return 0;
}

static int identity(const char *data_dir, const char *want, char *id,
		    drift_err *err)
{
	char path[PATHLEN];
	snprintf(path, sizeof(path), "%s/node.id", data_dir);
	struct stat sb;
	if (stat(path, &sb) == 0) {
		int rv = read_identity(path, id, err);
		if (rv != 0)
			return rv;
		if (want != NULL && want[0] != '\0' && strcmp(want, id) != 0)
			return drift_err_set(err, DRIFT_EINVAL,
					     "--node-id %s: the data directory "
					     "%s belongs to node %s",
					     want, data_dir, id);
		return 0;
	}
	if (want != NULL && want[0] != '\0') {
		if (!drift_meta_node_id_ok(want))
			return drift_err_set(err, DRIFT_EINVAL,
					     "--node-id \"%s\" must match "
					     "[A-Za-z0-9_.-]{1,64}",
					     want);
		snprintf(id, DRIFT_NODE_ID_MAX + 1, "%s", want);
	} else {
		uint64_t r = random64();
		snprintf(id, DRIFT_NODE_ID_MAX + 1, "node-%012llx",
			 (unsigned long long)(r & 0xffffffffffffULL));
	}
	char text[DRIFT_NODE_ID_MAX + 2];
	int n = snprintf(text, sizeof(text), "%s\n", id);
	return drift_fs_write_file_atomic(drift_fs_posix(), path, text,
					  (size_t)n, err);
}

/* ---- Clients ---- */

int drift_node_cluster_client(drift_node_cluster *nc, const char *address,
			      drift_grpc_client **out, drift_err *err)
{
	pthread_mutex_lock(&nc->mu);
	for (size_t i = 0; i < nc->n_clients; i++)
		if (strcmp(nc->clients[i].address, address) == 0) {
			*out = nc->clients[i].client;
			pthread_mutex_unlock(&nc->mu);
			return 0;
		}
	int rv = 0;
	if (nc->n_clients == MAX_CLIENTS) {
		rv = drift_err_set(err, DRIFT_ELIMIT, "too many peers");
		goto out;
	}
	drift_grpc_client_opts co = {.connect_timeout_ns = 2000000000ull,
				     .backoff_max_ns = PROBE_NS};
	drift_grpc_client *c;
	if ((rv = drift_grpc_client_new(address, &co, &c, err)) != 0)
		goto out;
	struct peer_client *pc = &nc->clients[nc->n_clients++];
	snprintf(pc->address, sizeof(pc->address), "%s", address);
	pc->client = c;
	*out = c;
out:
	pthread_mutex_unlock(&nc->mu);
	return rv;
}

/* ---- Config conversion ---- */

static void config_of(const drift_meta_collection *mc,
		      drift_collection_config *cfg)
{
	memset(cfg, 0, sizeof(*cfg));
	snprintf(cfg->name, sizeof(cfg->name), "%s", mc->name);
	cfg->dim = mc->dimension;
	cfg->metric = (enum drift_metric)mc->metric;
	cfg->shards = mc->shards;
	cfg->replication_factor = mc->replication_factor;
	cfg->sync = (enum drift_wal_sync)mc->wal_sync;
	cfg->memtable_rows = mc->memtable_rows;
	cfg->default_recall = mc->default_recall;
	cfg->memory_limit = mc->memory_limit;
	cfg->cluster_version = mc->created_version;
}

int drift_node_cluster_config(drift_node_cluster *nc, const char *name,
			      drift_collection_config *cfg)
{
	drift_meta *st = drift_member_state(nc->member);
	const drift_meta_collection *mc = drift_meta_col_find(st, name);
	if (mc != NULL)
		config_of(mc, cfg);
	drift_meta_unref(st);
	return mc != NULL ? 0 : DRIFT_ENOENT;
}

/* ---- The watcher ---- */

static bool holds_shard(const drift_meta_collection *mc, const char *id)
{
	for (uint32_t s = 0; s < mc->shards; s++)
		for (uint32_t r = 0; r < mc->shard[s].n; r++)
			if (strcmp(mc->shard[s].nodes[r], id) == 0)
				return true;
	return false;
}

/* Records (rv != 0) or clears (rv == 0) the open failure of a
 * collection: false when there was no room to record it. */
static bool set_failure(drift_node_cluster *nc, const char *name,
			uint64_t version, int rv, const drift_err *err)
{
	bool kept = true;
	pthread_mutex_lock(&nc->mu);
	size_t i = 0;
	while (i < nc->n_failures && strcmp(nc->failures[i].name, name) != 0)
		i++;
	if (rv == 0) {
		if (i < nc->n_failures)
			nc->failures[i] = nc->failures[--nc->n_failures];
	} else {
		if (i == nc->n_failures && nc->n_failures < MAX_FAILURES)
			nc->n_failures++;
		if (i < nc->n_failures) {
			struct open_failure *f = &nc->failures[i];
			snprintf(f->name, sizeof(f->name), "%s", name);
			f->version = version;
			f->rv = rv;
			f->err = *err;
		} else {
			kept = false;
		}
	}
	pthread_mutex_unlock(&nc->mu);
	return kept;
}

int drift_node_cluster_open_error(drift_node_cluster *nc, const char *name,
				  uint64_t version, drift_err *err)
{
	int rv = 0;
	pthread_mutex_lock(&nc->mu);
	for (size_t i = 0; i < nc->n_failures; i++) {
		const struct open_failure *f = &nc->failures[i];
		if (strcmp(f->name, name) == 0 && f->version == version) {
			rv = f->rv;
			if (err != NULL)
				*err = f->err;
		}
	}
	pthread_mutex_unlock(&nc->mu);
	return rv;
}

/* Whether collection `name` (of map version `made`), which the map no
 * longer places here, has been so for MOVED_GRACE_NS on a node caught up
 * with the leader (see MOVED_GRACE_NS); records it the first time. */
static bool moved_long_enough(drift_node_cluster *nc, const char *name,
			      uint64_t made)
{
	uint64_t now = drift_now_ns();
	size_t i = 0;
	while (i < nc->n_moved && (strcmp(nc->moved[i].name, name) != 0 ||
				   nc->moved[i].version != made))
		i++;
	if (i == nc->n_moved) {
		if (nc->n_moved == MAX_MOVED)
			return false;
		snprintf(nc->moved[i].name, sizeof(nc->moved[i].name), "%s",
			 name);
		nc->moved[i].version = made;
		nc->moved[i].since = now;
		nc->n_moved++;
		return false;
	}
	drift_member_info in;
	drift_member_info_get(nc->member, &in);
	bool caught_up =
		in.leader_raft_id != 0 && in.applied_index >= in.commit_index;
	if (now - nc->moved[i].since < MOVED_GRACE_NS || !caught_up)
		return false;
	nc->moved[i] = nc->moved[--nc->n_moved];
	return true;
}

/* Forgets the collections the map places here again (or dropped). */
static void moved_forget(drift_node_cluster *nc, const drift_meta *st)
{
	for (size_t i = 0; i < nc->n_moved;) {
		const drift_meta_collection *mc =
			drift_meta_col_find(st, nc->moved[i].name);
		if (mc == NULL || mc->created_version != nc->moved[i].version ||
		    holds_shard(mc, nc->node_id))
			nc->moved[i] = nc->moved[--nc->n_moved];
		else
			i++;
	}
}

/* The created_version of local collection name in *made: false when it is
 * not open here (absent, or broken: left for the operator). */
static bool local_version(drift_node_cluster *nc, const char *name,
			  uint64_t *made)
{
	drift_collection *c;
	if (drift_cm_acquire(nc->cm, name, &c, NULL) != 0)
		return false;
	*made = drift_collection_cfg(c)->cluster_version;
	drift_cm_release(nc->cm, c);
	return true;
}

/* Local collection name, made at map version made: dropped when the map
 * st no longer has it (or has a newer one of that name), or no longer
 * places it here and has not for long enough (moved_long_enough). */
static void settle_local(drift_node_cluster *nc, const drift_meta *st,
			 const char *name, uint64_t made)
{
	if (made > st->version && made > nc->ahead)
		nc->ahead = made; /* judged once the map reaches it */
	const drift_meta_collection *mc = drift_meta_col_find(st, name);
	bool gone = made != 0 && st->version >= made &&
		    (mc == NULL || mc->created_version != made);
	bool away = made != 0 && st->version >= made && !gone &&
		    !holds_shard(mc, nc->node_id);
	if (away && !moved_long_enough(nc, name, made)) {
		if (nc->n_moved == MAX_MOVED)
			nc->rescan = true; /* not recorded: found again */
		return;
	}
	if (!gone && !away)
		return;
	drift_err err;
	drift_err_clear(&err);
	if (drift_cm_drop(nc->cm, name, &err) == 0)
		DRIFT_INFO("cluster: collection %s dropped here (map version "
			   "%llu)",
			   name, (unsigned long long)st->version);
	else
		DRIFT_WARN("cluster: dropping %s: %s", name, err.msg);
}

/* Collection mc of the map st: opened (created) here when the map places
 * one of its shards here and it is not; a failure is kept for
 * drift_node_cluster_open_error and tried again at the next change. */
static void settle_mapped(drift_node_cluster *nc,
			  const drift_meta_collection *mc)
{
	if (!holds_shard(mc, nc->node_id))
		return;
	drift_collection *c;
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_cm_acquire(nc->cm, mc->name, &c, &err);
	if (rv == 0) {
		drift_cm_release(nc->cm, c);
		return;
	}
	if (rv != DRIFT_ENOENT)
		return;
	drift_collection_config cfg;
	config_of(mc, &cfg);
	rv = drift_cm_create(nc->cm, &cfg, &err);
	if (rv == DRIFT_EEXIST)
		rv = 0;
	if (rv != 0 && drift_node_cluster_open_error(
			       nc, mc->name, mc->created_version, NULL) == 0)
		DRIFT_ERROR("cluster: creating collection %s here: %s",
			    mc->name, err.msg);
	if (!set_failure(nc, mc->name, mc->created_version, rv, &err))
		nc->rescan = true; /* not recorded: tried again by a scan */
}

/* Every local collection against the map, then every collection of the
 * map: O(collections) per change. */
static void apply_full(drift_node_cluster *nc, const drift_meta *st)
{
	char **names = NULL;
	size_t n = 0;
	if (drift_cm_list(nc->cm, &names, &n) != 0) {
		nc->rescan = true;
		return;
	}
	nc->rescan = false;
	nc->ahead = 0;
	for (size_t i = 0; i < n; i++) {
		uint64_t made;
		if (local_version(nc, names[i], &made))
			settle_local(nc, st, names[i], made);
	}
	for (size_t i = 0; i < n; i++)
		drift_free(names[i]);
	drift_free(names);
	for (size_t i = 0; i < st->n_cols; i++)
		settle_mapped(nc, &st->cols[i]);
}

/* Only the collections whose entries differ between prev, applied
 * before, and st (both sorted by name; an entry whose placements are
 * shared, meta.h, is unchanged), then those waiting out their moved-away
 * grace and those whose open failed. The outcome of apply_full for every
 * other collection is the same under prev and st: its entry is the same,
 * and its created version, at most prev's (nc->ahead), no longer depends
 * on the map version. */
static void apply_diff(drift_node_cluster *nc, const drift_meta *prev,
		       const drift_meta *st)
{
	size_t i = 0, j = 0;
	while (prev != st && (i < prev->n_cols || j < st->n_cols)) {
		const drift_meta_collection *a =
			i < prev->n_cols ? &prev->cols[i] : NULL;
		const drift_meta_collection *b =
			j < st->n_cols ? &st->cols[j] : NULL;
		if (a != NULL && b != NULL && a->shard == b->shard) {
			i++, j++;
			continue;
		}
		int cmp = a == NULL   ? 1
			  : b == NULL ? -1
				      : strcmp(a->name, b->name);
		const char *name = cmp < 0 ? a->name : b->name;
		uint64_t made;
		if (local_version(nc, name, &made))
			settle_local(nc, st, name, made);
		if (cmp >= 0)
			settle_mapped(nc, b);
		i += cmp <= 0;
		j += cmp >= 0;
	}
	/* The lists change as they are worked through: copies. */
	struct moved_away moved[MAX_MOVED];
	size_t n_moved = nc->n_moved;
	memcpy(moved, nc->moved, n_moved * sizeof(moved[0]));
	for (size_t k = 0; k < n_moved; k++) {
		uint64_t made;
		if (local_version(nc, moved[k].name, &made) &&
		    made == moved[k].version)
			settle_local(nc, st, moved[k].name, made);
	}
	pthread_mutex_lock(&nc->mu);
	size_t n_failed = nc->n_failures;
	char(*failed)[DRIFT_COLLECTION_NAME_MAX + 1] =
		drift_mallocarray(n_failed ? n_failed : 1, sizeof(*failed));
	for (size_t k = 0; failed != NULL && k < n_failed; k++)
		snprintf(failed[k], sizeof(failed[k]), "%s",
			 nc->failures[k].name);
	pthread_mutex_unlock(&nc->mu);
	if (failed == NULL) {
		nc->rescan = true;
		return;
	}
	for (size_t k = 0; k < n_failed; k++) {
		const drift_meta_collection *mc =
			drift_meta_col_find(st, failed[k]);
		if (mc != NULL)
			settle_mapped(nc, mc);
	}
	drift_free(failed);
}

/* Applies map st locally; prev is the map applied before (NULL: none). */
static void apply_map(drift_node_cluster *nc, const drift_meta *prev,
		      const drift_meta *st)
{
	moved_forget(nc, st);
	if (prev == NULL || nc->rescan || nc->ahead > prev->version ||
	    drift_now_ns() >= nc->next_full) {
		apply_full(nc, st);
		nc->next_full = drift_now_ns() + FULL_PASS_NS;
	} else {
		apply_diff(nc, prev, st);
	}
	/* Failures of collections the map no longer gives this node. */
	pthread_mutex_lock(&nc->mu);
	for (size_t i = 0; i < nc->n_failures;) {
		const drift_meta_collection *mc =
			drift_meta_col_find(st, nc->failures[i].name);
		if (mc == NULL ||
		    mc->created_version != nc->failures[i].version)
			nc->failures[i] = nc->failures[--nc->n_failures];
		else
			i++;
	}
	pthread_mutex_unlock(&nc->mu);
}

static void *watch_main(void *arg)
{
	drift_node_cluster *nc = arg;
	uint64_t known = 0;
	drift_meta *prev = NULL; /* the map applied last */
	for (;;) {
		pthread_mutex_lock(&nc->mu);
		bool closing = nc->closing;
		pthread_mutex_unlock(&nc->mu);
		if (closing)
			break;
		drift_meta *st = NULL;
		int rv = drift_member_wait(nc->member, known,
					   drift_now_ns() + 500000000ull, &st);
		/* Without a new version too while moved-away collections wait
		 * for their grace period. */
		if (rv == 0 || prev == NULL || nc->n_moved > 0 ||
		    drift_now_ns() >= nc->next_full) {
			apply_map(nc, prev, st);
			known = st->version;
			pthread_mutex_lock(&nc->mu);
			nc->applied = known;
			pthread_cond_broadcast(&nc->cond);
			pthread_mutex_unlock(&nc->mu);
			drift_meta_unref(prev);
			prev = drift_meta_ref(st);
		}
		drift_meta_unref(st);
	}
	drift_meta_unref(prev);
	return NULL;
}

int drift_node_cluster_wait_applied(drift_node_cluster *nc, uint64_t version,
				    uint64_t timeout_ns)
{
	uint64_t deadline = drift_now_ns() + timeout_ns;
	pthread_mutex_lock(&nc->mu);
	while (nc->applied < version && !nc->closing) {
		if (drift_now_ns() >= deadline)
			break;
		struct timespec ts = {
			.tv_sec = (time_t)(deadline / 1000000000u),
			.tv_nsec = (long)(deadline % 1000000000u)};
		pthread_cond_timedwait(&nc->cond, &nc->mu, &ts);
	}
	int rv = nc->applied >= version ? 0 : DRIFT_ETIMEDOUT;
	pthread_mutex_unlock(&nc->mu);
	return rv;
}

/* ---- Liveness ---- */

bool drift_node_cluster_alive(drift_node_cluster *nc, const char *address,
			      uint64_t timeout_ns)
{
	drift_grpc_client *cl;
	if (drift_node_cluster_client(nc, address, &cl, NULL) != 0)
		return false;
	/* drift.v1.Drift, not the server as a whole: a node shutting down
	 * still answers, but NOT_SERVING, and gets no new shards. */
	Grpc__Health__V1__HealthCheckRequest req =
		GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
	req.service = "drift.v1.Drift";
	ProtobufCMessage *resp = NULL;
	int rv = drift_grpc_client_unary_pb(
		cl, "/grpc.health.v1.Health/Check", &req.base,
		&grpc__health__v1__health_check_response__descriptor,
		timeout_ns, &resp, NULL);
	bool serving =
		rv == 0 &&
		((Grpc__Health__V1__HealthCheckResponse *)resp)->status ==
			GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
	if (resp != NULL)
		protobuf_c_message_free_unpacked(resp, NULL);
	return serving;
}

static void set_state(drift_node_cluster *nc, const drift_meta_node *n,
		      int state)
{
	Drift__Cluster__V1__SetNode sn = DRIFT__CLUSTER__V1__SET_NODE__INIT;
	sn.id = (char *)n->id;
	sn.state = state;
	sn.role = n->role;
	Drift__Cluster__V1__Command cmd = DRIFT__CLUSTER__V1__COMMAND__INIT;
	cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_NODE;
	cmd.set_node = &sn;
	drift_err err;
	drift_err_clear(&err);
	if (drift_member_propose(nc->member, &cmd, DOWN_AFTER_NS, &err) == 0)
		DRIFT_WARN("cluster: node %s (%s) is %s", n->id, n->address,
			   state == DRIFT_NODE_DOWN ? "DOWN: it has not been "
						      "serving for 1.5 s"
						    : "UP again");
}

/* The leader's prober: every PROBE_NS, the health of every other node;
 * UP <-> DOWN changes go through Raft. */
static void *probe_main(void *arg)
{
	drift_node_cluster *nc = arg;
	struct {
		char id[DRIFT_NODE_ID_MAX + 1];
		uint64_t since; /* first failed probe of a run, 0: none */
	} fail[MAX_CLIENTS];
	size_t n_fail = 0;
	for (;;) {
		uint64_t next = drift_now_ns() + PROBE_NS;
		pthread_mutex_lock(&nc->mu);
		while (!nc->closing && drift_now_ns() < next) {
			struct timespec ts = {
				.tv_sec = (time_t)(next / 1000000000u),
				.tv_nsec = (long)(next % 1000000000u)};
			pthread_cond_timedwait(&nc->cond, &nc->mu, &ts);
		}
		bool closing = nc->closing;
		pthread_mutex_unlock(&nc->mu);
		if (closing)
			break;
		drift_member_info in;
		drift_member_info_get(nc->member, &in);
		if (!in.leader) {
			n_fail = 0; /* a new leader starts afresh */
			continue;
		}
		drift_meta *st = drift_member_state(nc->member);
		for (size_t i = 0; i < st->n_nodes; i++) {
			const drift_meta_node *n = &st->nodes[i];
			if (strcmp(n->id, nc->node_id) == 0 ||
			    (n->state != DRIFT_NODE_UP &&
			     n->state != DRIFT_NODE_DOWN))
				continue;
			size_t f = 0;
			while (f < n_fail && strcmp(fail[f].id, n->id) != 0)
				f++;
			if (f == n_fail) {
				if (n_fail == MAX_CLIENTS)
					continue;
				snprintf(fail[f].id, sizeof(fail[f].id), "%s",
					 n->id);
				fail[f].since = 0;
				n_fail++;
			}
			uint64_t now = drift_now_ns();
			if (drift_node_cluster_alive(nc, n->address,
						     PROBE_NS)) {
				fail[f].since = 0;
				if (n->state == DRIFT_NODE_DOWN)
					set_state(nc, n, DRIFT_NODE_UP);
				continue;
			}
			if (fail[f].since == 0)
				fail[f].since = now;
			if (n->state == DRIFT_NODE_UP &&
			    now - fail[f].since >= DOWN_AFTER_NS)
				set_state(nc, n, DRIFT_NODE_DOWN);
		}
		drift_meta_unref(st);
		pthread_mutex_lock(&nc->mu);
		void (*fn)(void *) = nc->on_probe;
		void *fn_arg = nc->on_probe_arg;
		pthread_mutex_unlock(&nc->mu);
		if (fn != NULL)
			fn(fn_arg);
	}
	return NULL;
}

void drift_node_cluster_on_probe(drift_node_cluster *nc, void (*fn)(void *),
				 void *arg)
{
	pthread_mutex_lock(&nc->mu);
	nc->on_probe = fn;
	nc->on_probe_arg = arg;
	pthread_mutex_unlock(&nc->mu);
}

void drift_node_cluster_on_evacuate(drift_node_cluster *nc,
				    drift_node_cluster_evacuate_fn fn,
				    void *arg)
{
	pthread_mutex_lock(&nc->mu);
	nc->evacuate = fn;
	nc->evacuate_arg = arg;
	pthread_mutex_unlock(&nc->mu);
}

int drift_node_cluster_evacuate(drift_node_cluster *nc, const char *id,
				drift_err *err)
{
	pthread_mutex_lock(&nc->mu);
	drift_node_cluster_evacuate_fn fn = nc->evacuate;
	void *arg = nc->evacuate_arg;
	pthread_mutex_unlock(&nc->mu);
	return fn != NULL ? fn(arg, id, err) : 0;
}

void drift_node_cluster_on_progress(drift_node_cluster *nc,
				    drift_node_cluster_progress_fn fn,
				    void *arg)
{
	pthread_mutex_lock(&nc->mu);
	nc->progress = fn;
	nc->progress_arg = arg;
	pthread_mutex_unlock(&nc->mu);
}

void drift_node_cluster_progress(drift_node_cluster *nc, const char *name,
				 uint64_t created, uint32_t shard,
				 const char *to, uint64_t *done,
				 uint64_t *total)
{
	pthread_mutex_lock(&nc->mu);
	drift_node_cluster_progress_fn fn = nc->progress;
	void *arg = nc->progress_arg;
	pthread_mutex_unlock(&nc->mu);
	*done = *total = 0;
	if (fn != NULL)
		fn(arg, name, created, shard, to, done, total);
}

/* ---- Bootstrap and join ---- */

static int wait_leader(drift_node_cluster *nc, uint64_t timeout_ns)
{
	uint64_t deadline = drift_now_ns() + timeout_ns;
	while (drift_now_ns() < deadline) {
		drift_member_info in;
		drift_member_info_get(nc->member, &in);
		if (in.leader)
			return 0;
		usleep(10000);
	}
	return DRIFT_ETIMEDOUT;
}

static Drift__Cluster__V1__Node self_pb(drift_node_cluster *nc)
{
	Drift__Cluster__V1__Node n = DRIFT__CLUSTER__V1__NODE__INIT;
	n.id = nc->node_id;
	n.raft_id = drift_meta_raft_id(nc->node_id);
	n.address = nc->address;
	n.raft_address = nc->raft_address;
	return n;
}

/* Proposes the collections of the data directory that the map lacks, all
 * shards on this node (a node of before the cluster keeps its data). */
static int adopt(drift_node_cluster *nc, drift_err *err)
{
	char **names = NULL;
	size_t n = 0;
	if (drift_cm_list(nc->cm, &names, &n) != 0)
		return DRIFT_ENOMEM;
	int rv = 0;
	drift_meta *st = drift_member_state(nc->member);
	for (size_t i = 0; rv == 0 && i < n; i++) {
		if (drift_meta_col_find(st, names[i]) != NULL)
			continue;
		drift_collection *c;
		if (drift_cm_acquire(nc->cm, names[i], &c, NULL) != 0)
			continue;
		drift_collection_config cfg = *drift_collection_cfg(c);
		drift_cm_release(nc->cm, c);
		Drift__Cluster__V1__Collection col =
			DRIFT__CLUSTER__V1__COLLECTION__INIT;
		col.name = cfg.name;
		col.dimension = cfg.dim;
		col.metric = (int)cfg.metric;
		col.shards = cfg.shards;
		col.replication_factor = cfg.replication_factor;
		col.wal_sync = (int)cfg.sync;
		col.memtable_rows = cfg.memtable_rows;
		col.default_recall = cfg.default_recall;
		col.memory_limit = cfg.memory_limit;
		Drift__Cluster__V1__Shard *sh =
			drift_calloc(cfg.shards, sizeof(*sh));
		Drift__Cluster__V1__Shard **ps =
			drift_calloc(cfg.shards, sizeof(*ps));
		char *self = nc->node_id;
		if (sh == NULL || ps == NULL) {
			drift_free(sh);
			drift_free(ps);
			rv = DRIFT_ENOMEM;
			break;
		}
		for (uint32_t s = 0; s < cfg.shards; s++) {
			drift__cluster__v1__shard__init(&sh[s]);
			sh[s].collection = cfg.name;
			sh[s].shard = s;
			sh[s].nodes = &self;
			sh[s].n_nodes = 1;
			sh[s].in_sync = &self;
			sh[s].n_in_sync = 1;
			ps[s] = &sh[s];
		}
		Drift__Cluster__V1__CreateCollection cc =
			DRIFT__CLUSTER__V1__CREATE_COLLECTION__INIT;
		cc.collection = &col;
		cc.shards = ps;
		cc.n_shards = cfg.shards;
		Drift__Cluster__V1__Command cmd =
			DRIFT__CLUSTER__V1__COMMAND__INIT;
		cmd.cmd_case =
			DRIFT__CLUSTER__V1__COMMAND__CMD_CREATE_COLLECTION;
		cmd.create_collection = &cc;
		rv = drift_member_propose(nc->member, &cmd, 10000000000ull,
					  err);
		drift_free(sh);
		drift_free(ps);
		if (rv == 0)
			DRIFT_INFO("cluster: adopted collection %s (%u "
				   "shards) from the data directory",
				   cfg.name, cfg.shards);
	}
	drift_meta_unref(st);
	for (size_t i = 0; i < n; i++)
		drift_free(names[i]);
	drift_free(names);
	return rv;
}

static int bootstrap(drift_node_cluster *nc, drift_err *err)
{
	int rv = wait_leader(nc, 10000000000ull);
	if (rv != 0)
		return drift_err_set(err, rv,
				     "bootstrap: this node did not become "
				     "the Raft leader of its cluster of one");
	drift_meta *st = drift_member_state(nc->member);
	bool done = st->cluster_id[0] != '\0';
	drift_meta_unref(st);
	if (!done) {
		char cid[DRIFT_NODE_ID_MAX + 1];
		uint64_t r1 = random64(), r2 = random64();
		snprintf(cid, sizeof(cid), "%08llx%08llx",
			 (unsigned long long)(r1 & 0xffffffffu),
			 (unsigned long long)(r2 & 0xffffffffu));
		Drift__Cluster__V1__Node self = self_pb(nc);
		Drift__Cluster__V1__Bootstrap b =
			DRIFT__CLUSTER__V1__BOOTSTRAP__INIT;
		b.cluster_id = cid;
		b.node = &self;
		b.max_voters = nc->max_voters;
		Drift__Cluster__V1__Command cmd =
			DRIFT__CLUSTER__V1__COMMAND__INIT;
		cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_BOOTSTRAP;
		cmd.bootstrap = &b;
		if ((rv = drift_member_propose(nc->member, &cmd, 10000000000ull,
					       err)) != 0)
			return rv;
		DRIFT_INFO("cluster: bootstrapped cluster %s with node %s", cid,
			   nc->node_id);
	}
	return adopt(nc, err);
}

static bool is_member(drift_node_cluster *nc)
{
	drift_meta *st = drift_member_state(nc->member);
	const drift_meta_node *n = drift_meta_node_find(st, nc->node_id);
	bool yes = n != NULL;
	drift_meta_unref(st);
	return yes;
}

static int join(drift_node_cluster *nc, uint64_t timeout_ns, drift_err *err)
{
	uint64_t deadline = drift_now_ns() + timeout_ns;
	char last[DRIFT_ERR_MSG_MAX] = "no member answered";
	unsigned attempt = 0;
	while (drift_now_ns() < deadline) {
		if (is_member(nc))
			return 0;
		/* Next address of the list, in turn. */
		char list[sizeof(nc->join)];
		snprintf(list, sizeof(list), "%s", nc->join);
		size_t count = 0;
		char *addrs[64], *save = NULL;
		for (char *a = strtok_r(list, ",", &save); a && count < 64;
		     a = strtok_r(NULL, ",", &save))
			addrs[count++] = a;
		if (count == 0)
			return drift_err_set(err, DRIFT_EINVAL,
					     "--join lists no address");
		const char *to = addrs[attempt++ % count];
		drift_grpc_client *c;
		drift_err e;
		drift_err_clear(&e);
		if (drift_node_cluster_client(nc, to, &c, &e) == 0) {
			Drift__V1__AddNodeRequest req =
				DRIFT__V1__ADD_NODE_REQUEST__INIT;
			req.address = nc->address;
			req.id = nc->node_id;
			req.raft_address = nc->raft_address;
			ProtobufCMessage *resp = NULL;
			drift_grpc_status st;
			int rv = drift_grpc_client_unary_pb(
				c, "/drift.v1.Cluster/AddNode", &req.base,
				&drift__v1__add_node_response__descriptor,
				5000000000ull, &resp, &st);
			if (resp != NULL)
				protobuf_c_message_free_unpacked(resp, NULL);
			if (rv == 0 || rv == DRIFT_EEXIST) {
				/* Added: wait for the log to reach us. */
				uint64_t until =
					drift_now_ns() + 10000000000ull;
				while (drift_now_ns() < until &&
				       drift_now_ns() < deadline) {
					if (is_member(nc))
						return 0;
					usleep(20000);
				}
				continue;
			}
			snprintf(last, sizeof(last), "%.200s: %.300s", to,
				 st.msg[0] ? st.msg : drift_strerror(rv));
			if (rv == DRIFT_ESTALE || rv == DRIFT_EINVAL ||
			    rv == DRIFT_EPERM)
				return drift_err_set(
					err, rv, "joining through %s", last);
		} else {
			snprintf(last, sizeof(last), "%.200s: %.300s", to,
				 e.msg);
		}
		DRIFT_WARN("cluster: join: %s (retrying)", last);
		usleep(500000);
	}
	return drift_err_set(err, DRIFT_ETIMEDOUT, "joining the cluster: %s",
			     last);
}

/* ---- Public ---- */

static bool raft_dir_empty(const char *dir)
{
	char p[PATHLEN];
	struct stat sb;
	snprintf(p, sizeof(p), "%s/metadata1", dir);
	if (stat(p, &sb) == 0)
		return false;
	snprintf(p, sizeof(p), "%s/metadata2", dir);
	return stat(p, &sb) != 0;
}

int drift_node_cluster_open(const drift_node_cluster_opts *o,
			    drift_node_cluster **out, drift_err *err)
{
	drift_node_cluster *nc = drift_calloc(1, sizeof(*nc));
	if (nc == NULL)
		return DRIFT_ENOMEM;
	pthread_mutex_init(&nc->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&nc->cond, &ca);
	pthread_condattr_destroy(&ca);
	nc->cm = o->cm;
	nc->max_voters = o->max_voters == 5 ? 5 : 3;
	int rv = identity(o->data_dir, o->node_id, nc->node_id, err);
	if (rv != 0)
		goto fail;
	snprintf(nc->address, sizeof(nc->address), "%s", o->address);
	snprintf(nc->raft_address, sizeof(nc->raft_address), "%s",
		 o->raft_address);
	snprintf(nc->join, sizeof(nc->join), "%s", o->join ? o->join : "");
	snprintf(nc->raft_dir, sizeof(nc->raft_dir), "%s/raft", o->data_dir);
	nc->fresh = raft_dir_empty(nc->raft_dir);
	drift_member_opts mo = {
		.dir = nc->raft_dir,
		.node_id = nc->node_id,
		.raft_address = nc->raft_address,
		.raft_bind = o->raft_bind,
		.bootstrap = nc->fresh && nc->join[0] == '\0',
		.election_ms = o->election_ms,
		.snapshot_threshold = o->snapshot_threshold,
	};
	if ((rv = drift_member_start(&mo, &nc->member, err)) != 0)
		goto fail;
	if (!nc->fresh && nc->join[0] != '\0')
		DRIFT_INFO("cluster: %s restarts from its own state; --join "
			   "is ignored",
			   nc->node_id);
	*out = nc;
	return 0;
fail:
	pthread_cond_destroy(&nc->cond);
	pthread_mutex_destroy(&nc->mu);
	drift_free(nc);
	return rv;
}

int drift_node_cluster_start(drift_node_cluster *nc, uint64_t timeout_ns,
			     drift_err *err)
{
	int rv = 0;
	if (nc->fresh && nc->join[0] != '\0') {
		rv = join(nc, timeout_ns, err);
	} else if (nc->fresh) {
		rv = bootstrap(nc, err);
	} else {
		/* A restart: a cluster of one that crashed before its
		 * bootstrap entry finishes it now. */
		drift_meta *st = drift_member_state(nc->member);
		bool empty = st->cluster_id[0] == '\0';
		drift_meta_unref(st);
		drift_member_info in;
		drift_member_info_get(nc->member, &in);
		if (empty && in.voters == 1)
			rv = bootstrap(nc, err);
	}
	if (rv != 0)
		return rv;
	if (pthread_create(&nc->watcher, NULL, watch_main, nc) != 0)
		return drift_err_set(err, DRIFT_ENOMEM, "no watcher thread");
	nc->watching = true;
	if (pthread_create(&nc->prober, NULL, probe_main, nc) != 0)
		return drift_err_set(err, DRIFT_ENOMEM, "no prober thread");
	nc->probing = true;
	return 0;
}

void drift_node_cluster_stop(drift_node_cluster *nc)
{
	if (nc == NULL)
		return;
	pthread_mutex_lock(&nc->mu);
	nc->closing = true;
	pthread_cond_broadcast(&nc->cond);
	pthread_mutex_unlock(&nc->mu);
	if (nc->probing)
		pthread_join(nc->prober, NULL);
	nc->probing = false;
	drift_member_stop(nc->member);
	if (nc->watching)
		pthread_join(nc->watcher, NULL);
	nc->watching = false;
}

bool drift_node_cluster_closing(drift_node_cluster *nc)
{
	pthread_mutex_lock(&nc->mu);
	bool closing = nc->closing;
	pthread_mutex_unlock(&nc->mu);
	return closing;
}

void drift_node_cluster_close(drift_node_cluster *nc)
{
	if (nc == NULL)
		return;
	drift_node_cluster_stop(nc);
	drift_member_free(nc->member);
	for (size_t i = 0; i < nc->n_clients; i++)
		drift_grpc_client_free(nc->clients[i].client);
	pthread_cond_destroy(&nc->cond);
	pthread_mutex_destroy(&nc->mu);
	drift_free(nc);
}

const char *drift_node_cluster_node_id(const drift_node_cluster *nc)
{
	return nc->node_id;
}

const char *drift_node_cluster_address(const drift_node_cluster *nc)
{
	return nc->address;
}

const char *drift_node_cluster_raft_address(const drift_node_cluster *nc)
{
	return nc->raft_address;
}

drift_member *drift_node_cluster_member(drift_node_cluster *nc)
{
	return nc->member;
}

drift_cm *drift_node_cluster_cm(drift_node_cluster *nc)
{
	return nc->cm;
}
