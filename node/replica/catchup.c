/*
 * The catch-up thread: a primary brings its replicas that are out of the
 * in-sync set back into it (see replica.h).
 */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cluster/member.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "node/replica/replica_internal.h"

#define PASS_NS 300000000ull   /* between passes over the map */
#define BATCH_BYTES (2u << 20) /* of payload per Replicate call */
#define CLOSE_ENOUGH 64	       /* records left for the held moment */
#define MAX_ROUNDS 1000	       /* batches before the held moment */

/* Records read from the log, to send in one call. */
struct batch {
	Drift__Peer__V1__Record *recs;
	Drift__Peer__V1__Record **ptrs;
	size_t n, cap;
};

static int batch_add(void *ctx, uint64_t seq, uint32_t type,
		     const void *payload, size_t len)
{
	struct batch *b = ctx;
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 64;
		Drift__Peer__V1__Record *r =
			drift_realloc(b->recs, cap * sizeof(*r));
		if (r == NULL)
			return DRIFT_ENOMEM;
		b->recs = r;
		b->cap = cap;
	}
	uint8_t *copy = drift_malloc(len);
	if (copy == NULL)
		return DRIFT_ENOMEM;
	memcpy(copy, payload, len);
	Drift__Peer__V1__Record *r = &b->recs[b->n++];
	drift__peer__v1__record__init(r);
	r->seq = seq;
	r->type = type;
	r->payload.data = copy;
	r->payload.len = len;
	return 0;
}

static void batch_clear(struct batch *b)
{
	for (size_t i = 0; i < b->n; i++)
		drift_free(b->recs[i].payload.data);
	b->n = 0;
}

static void batch_free(struct batch *b)
{
	batch_clear(b);
	drift_free(b->recs);
	drift_free(b->ptrs);
}

/* Sends the log after *last (at most max_bytes of it) to the replica at
 * addr; *last becomes the replica's position. */
static int send_tail(drift_replica *r, const char *addr, drift_collection *col,
		     uint32_t shard, uint64_t epoch, uint64_t *last,
		     size_t max_bytes, struct repl_progress *prog,
		     drift_err *err)
{
	const drift_collection_config *cfg = drift_collection_cfg(col);
	struct batch b = {0};
	drift_shard *sh = drift_collection_shard_enter(col, shard);
	int rv = drift_shard_read_log(sh, *last, max_bytes, batch_add, &b, err);
	drift_collection_shard_leave(col, shard);
	if (rv == 0 && b.n > 0) {
		b.ptrs = drift_mallocarray(b.n, sizeof(*b.ptrs));
		if (b.ptrs == NULL)
			rv = drift_err_set(err, DRIFT_ENOMEM, "catch-up");
	}
	if (rv == 0 && b.n > 0) {
		for (size_t i = 0; i < b.n; i++)
			b.ptrs[i] = &b.recs[i];
		Drift__Peer__V1__ReplicateRequest req =
			DRIFT__PEER__V1__REPLICATE_REQUEST__INIT;
		req.collection = (char *)cfg->name;
		req.created_version = cfg->cluster_version;
		req.shard = shard;
		req.epoch = epoch;
		req.primary = (char *)drift_node_cluster_node_id(r->nc);
		req.records = b.ptrs;
		req.n_records = b.n;
		ProtobufCMessage *out = NULL;
		rv = repl_call(r, addr, "/drift.peer.v1.Replica/Replicate",
			       &req.base,
			       &drift__peer__v1__replicate_response__descriptor,
			       REPL_TIMEOUT_NS, &out, err);
		if (rv == 0) {
			*last = ((Drift__Peer__V1__ReplicateResponse *)out)
					->last_seq;
			protobuf_c_message_free_unpacked(out, NULL);
		}
	}
	if (rv == 0 && b.n > 0) {
		/* What is left, at the size of these records. */
		uint64_t sent = 0;
		for (size_t i = 0; i < b.n; i++)
			sent += b.recs[i].payload.len + 16;
		uint64_t own = repl_last_seq(col, shard);
		uint64_t left = own > *last ? own - *last : 0;
		uint64_t done = atomic_fetch_add(&prog->done, sent) + sent;
		atomic_store(&prog->total, done + left * (sent / b.n));
	}
	batch_free(&b);
	return rv;
}

/* The replica's position: 0 and *last, *epoch (its last one), or an
 * error. */
static int replica_position(drift_replica *r, const char *addr,
			    const drift_collection_config *cfg, uint32_t shard,
			    uint64_t *last, uint64_t *epoch, drift_err *err)
{
	Drift__Peer__V1__ReplicaStateRequest req =
		DRIFT__PEER__V1__REPLICA_STATE_REQUEST__INIT;
	req.collection = (char *)cfg->name;
	req.created_version = cfg->cluster_version;
	req.shard = shard;
	ProtobufCMessage *out = NULL;
	int rv = repl_call(r, addr, "/drift.peer.v1.Replica/State", &req.base,
			   &drift__peer__v1__replica_state_response__descriptor,
			   REPL_TIMEOUT_NS, &out, err);
	if (rv != 0)
		return rv;
	Drift__Peer__V1__ReplicaStateResponse *resp = (void *)out;
	*last = resp->last_seq;
	*epoch = resp->n_history > 0 ? resp->history[resp->n_history - 1]->epoch
				     : 0;
	protobuf_c_message_free_unpacked(out, NULL);
	return 0;
}

/* Whether this node is still the primary of shard at epoch, and node is
 * still out of its in-sync set. */
static bool still(drift_replica *r, const drift_collection_config *cfg,
		  uint32_t shard, uint64_t epoch, const char *node)
{
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	const drift_meta_collection *mc = drift_meta_col_find(st, cfg->name);
	bool ok = false;
	if (mc != NULL && mc->created_version == cfg->cluster_version &&
	    shard < mc->shards) {
		const drift_meta_shard *sh = &mc->shard[shard];
		ok = sh->epoch == epoch &&
		     strcmp(sh->nodes[0], drift_node_cluster_node_id(r->nc)) ==
			     0;
		for (uint32_t i = 0; ok && i < sh->n; i++)
			if (strcmp(sh->nodes[i], node) == 0 &&
			    (sh->in_sync & (1u << i)))
				ok = false;
	}
	drift_meta_unref(st);
	return ok;
}

/* Brings replica `node` of shard back into the in-sync set, if its log
 * allows (see replica.h). */
static void catch_up(drift_replica *r, const char *name, uint64_t created,
		     uint32_t shard, uint64_t epoch, const char *node,
		     const char *addr, struct repl_progress *prog)
{
	drift_collection *col;
	if (drift_cm_acquire(r->cm, name, &col, NULL) != 0)
		return;
	const drift_collection_config *cfg = drift_collection_cfg(col);
	drift_err err;
	drift_err_clear(&err);
	struct repl_shard *e = NULL;
	bool held = false;
	if (cfg->cluster_version != created || shard >= cfg->shards ||
	    (e = repl_shard_of(r, col, shard, &err)) == NULL)
		goto out;
	uint64_t last, their_epoch;
	if (replica_position(r, addr, cfg, shard, &last, &their_epoch, &err) !=
	    0)
		goto out;
	pthread_mutex_lock(&e->mu);
	bool prefix = drift_epochs_prefix(&e->ep, repl_last_seq(col, shard),
					  their_epoch, last);
	pthread_mutex_unlock(&e->mu);
	uint64_t t0 = drift_now_ns(), from = last;
	bool copied = false;
	int rv = 0;
	if (!prefix) {
		DRIFT_INFO("replication: %s/%u: node %s's log (at %" PRIu64
			   ", epoch %" PRIu64 ") is not a prefix of this "
			   "primary's: a full copy",
			   name, shard, node, last, their_epoch);
		held = true; /* the checkpoint holds the log */
		if ((rv = repl_full_copy(r, addr, col, shard, epoch, e, prog,
					 &last, &err)) != 0)
			goto out;
		copied = true;
		from = last;
	}
	repl_hold_log(col, shard, last);
	held = true;
	for (int round = 0; round < MAX_ROUNDS; round++) {
		/* One batch at least: it tells whether the log still holds
		 * what the replica misses (before the writes are held). */
		uint64_t own = repl_last_seq(col, shard);
		if (own == last || (round > 0 && own <= last + CLOSE_ENOUGH))
			break;
		rv = send_tail(r, addr, col, shard, epoch, &last, BATCH_BYTES,
			       prog, &err);
		if (rv == 0)
			repl_note_position(e, node, last);
		if (rv == DRIFT_ENOENT && !copied) {
			/* The records it misses are only in segments now. */
			DRIFT_INFO("replication: %s/%u: node %s misses records "
				   "this primary's log no longer holds: a full "
				   "copy",
				   name, shard, node);
			drift_err_clear(&err);
			if ((rv = repl_full_copy(r, addr, col, shard, epoch, e,
						 prog, &last, &err)) != 0)
				goto out;
			copied = true;
			from = last;
			repl_hold_log(col, shard, last);
			continue;
		}
		if (rv != 0)
			goto out;
	}
	/* The last records with the shard's writes held back, then the
	 * in-sync set grows before they resume. */
	pthread_rwlock_wrlock(&e->writes);
	if (!still(r, cfg, shard, epoch, node)) {
		pthread_rwlock_unlock(&e->writes);
		goto out;
	}
	uint64_t own = repl_last_seq(col, shard);
	for (uint64_t was = 0; rv == 0 && last < own && last != was;) {
		was = last;
		rv = send_tail(r, addr, col, shard, epoch, &last, BATCH_BYTES,
			       prog, &err);
		if (rv == 0)
			repl_note_position(e, node, last);
	}
	if (rv == 0 && last != own)
		rv = drift_err_set(&err, DRIFT_EINTERNAL,
				   "it reports %" PRIu64 " after the tail to "
				   "%" PRIu64,
				   last, own);
	if (rv == 0) {
		char *add[] = {(char *)node};
		Drift__Cluster__V1__SetReplicas sr =
			DRIFT__CLUSTER__V1__SET_REPLICAS__INIT;
		sr.collection = (char *)cfg->name;
		sr.created_version = cfg->cluster_version;
		sr.shard = shard;
		sr.epoch = epoch;
		sr.add_in_sync = add;
		sr.n_add_in_sync = 1;
		rv = repl_set_replicas(r, &sr, &err);
	}
	pthread_rwlock_unlock(&e->writes);
	if (rv == 0) {
		DRIFT_INFO("replication: %s/%u: node %s caught up (%" PRIu64
			   " records in %.1f s) and is in sync again",
			   name, shard, node, own - from,
			   (double)(drift_now_ns() - t0) / 1e9);
		/* A step retried on the way (the leader asked first was not
		 * one) left its message: no warning for a success. */
		drift_err_clear(&err);
	}
out:
	if (err.code != 0)
		DRIFT_WARN("replication: %s/%u: catching up node %s: %s", name,
			   shard, node, err.msg);
	if (held)
		repl_hold_log(col, shard, DRIFT_WAL_NO_HOLD);
	repl_shard_put(r, e);
	drift_cm_release(r->cm, col);
}

/* A catch-up running on a thread of its own. */
struct job {
	drift_replica *r;
	struct repl_job *slot;
	uint64_t created, epoch;
	uint32_t shard;
	char name[DRIFT_META_NAME_MAX + 1];
	char node[DRIFT_NODE_ID_MAX + 1];
	char addr[DRIFT_ADDR_MAX + 1];
};

static void *job_main(void *arg)
{
	struct job *j = arg;
	catch_up(j->r, j->name, j->created, j->shard, j->epoch, j->node,
		 j->addr, &j->slot->prog);
	pthread_mutex_lock(&j->r->mu);
	j->slot->busy = false;
	j->r->jobs--;
	pthread_cond_broadcast(&j->r->cond);
	pthread_mutex_unlock(&j->r->mu);
	drift_free(j);
	return NULL;
}

/* Starts the catch-up of one shard's replica unless that shard has one
 * running or REPL_MAX_JOBS run. */
static void start_job(drift_replica *r, const drift_meta_collection *mc,
		      uint32_t shard, const drift_meta_shard *sh,
		      const char *node, const char *addr)
{
	pthread_mutex_lock(&r->mu);
	struct repl_job *slot = NULL, *free_slot = NULL;
	for (size_t i = 0; i < REPL_MAX_JOBS; i++) {
		struct repl_job *q = &r->slots[i];
		if (q->busy && q->shard == shard &&
		    q->created == mc->created_version &&
		    strcmp(q->name, mc->name) == 0)
			slot = q;
		else if (!q->busy && free_slot == NULL)
			free_slot = q;
	}
	struct job *j = NULL;
	if (slot == NULL && free_slot != NULL && !r->stop &&
	    (j = drift_calloc(1, sizeof(*j))) != NULL) {
		j->r = r;
		j->slot = free_slot;
		j->created = mc->created_version;
		j->epoch = sh->epoch;
		j->shard = shard;
		snprintf(j->name, sizeof(j->name), "%s", mc->name);
		snprintf(j->node, sizeof(j->node), "%s", node);
		snprintf(j->addr, sizeof(j->addr), "%s", addr);
		snprintf(free_slot->name, sizeof(free_slot->name), "%s",
			 mc->name);
		free_slot->created = mc->created_version;
		free_slot->shard = shard;
		snprintf(free_slot->node, sizeof(free_slot->node), "%s", node);
		atomic_store(&free_slot->prog.done, 0);
		atomic_store(&free_slot->prog.total, 0);
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		pthread_t t;
		if (pthread_create(&t, &at, job_main, j) == 0) {
			free_slot->busy = true;
			r->jobs++;
		} else {
			drift_free(j);
		}
		pthread_attr_destroy(&at);
	}
	pthread_mutex_unlock(&r->mu);
}

bool repl_job_progress(drift_replica *r, const char *name, uint64_t created,
		       uint32_t shard, const char *node, uint64_t *done,
		       uint64_t *total)
{
	/* A running catch-up of it, or else the last one (its slot not yet
	 * taken by another): a move shows its copy done until it flips. */
	const struct repl_job *found = NULL;
	pthread_mutex_lock(&r->mu);
	for (size_t i = 0; i < REPL_MAX_JOBS; i++) {
		const struct repl_job *q = &r->slots[i];
		if (q->shard == shard && q->created == created &&
		    strcmp(q->name, name) == 0 && strcmp(q->node, node) == 0 &&
		    (found == NULL || q->busy))
			found = q;
	}
	if (found != NULL) {
		*done = atomic_load(&found->prog.done);
		*total = atomic_load(&found->prog.total);
	}
	pthread_mutex_unlock(&r->mu);
	return found != NULL;
}

/* Sleeps a pass (or less: a new map may name a replica to catch up, a
 * failover or a move's new primary's); false when stopping. */
static bool pause_pass(drift_replica *r, uint64_t *known)
{
	uint64_t until = drift_now_ns() + PASS_NS;
	drift_member *m = drift_node_cluster_member(r->nc);
	for (;;) {
		pthread_mutex_lock(&r->mu);
		bool stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		if (stop)
			return false;
		uint64_t now = drift_now_ns();
		if (now >= until)
			return true;
		uint64_t step =
			now + 50000000ull < until ? now + 50000000ull : until;
		drift_meta *st = NULL;
		int rv = drift_member_wait(m, *known, step, &st);
		if (st != NULL)
			*known = st->version;
		drift_meta_unref(st);
		if (rv == 0)
			return true;
	}
}

void *repl_catchup_main(void *arg)
{
	drift_replica *r = arg;
	const char *self = drift_node_cluster_node_id(r->nc);
	uint64_t known = 0;
	uint64_t reap_next = 0;
	while (pause_pass(r, &known)) {
		repl_repair_pass(r);
		if (drift_now_ns() >= reap_next) {
			repl_reap(r);
			reap_next = drift_now_ns() + 2000000000ull;
		}
		drift_meta *st =
			drift_member_state(drift_node_cluster_member(r->nc));
		for (size_t c = 0; c < st->n_cols; c++) {
			const drift_meta_collection *mc = &st->cols[c];
			for (uint32_t s = 0; s < mc->shards; s++) {
				const drift_meta_shard *sh = &mc->shard[s];
				if (sh->n < 2 ||
				    strcmp(sh->nodes[0], self) != 0)
					continue;
				for (uint32_t i = 1; i < sh->n; i++) {
					const drift_meta_node *n =
						drift_meta_node_find(
							st, sh->nodes[i]);
					if ((sh->in_sync & (1u << i)) ||
					    n == NULL ||
					    n->state != DRIFT_NODE_UP)
						continue;
					start_job(r, mc, s, sh, sh->nodes[i],
						  n->address);
				}
			}
		}
		drift_meta_unref(st);
	}
	/* The jobs still running finish (each within its calls' timeouts). */
	pthread_mutex_lock(&r->mu);
	while (r->jobs > 0)
		pthread_cond_wait(&r->cond, &r->mu);
	pthread_mutex_unlock(&r->mu);
	return NULL;
}
