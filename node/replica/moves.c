/*
 * Moves of replicas between nodes, run by the metadata leader: Rebalance
 * plans them with the one placement planner (cluster/placement.h) and
 * carries them out one after another (see replica.h).
 *
 * A move of shard s from node F to node T:
 *   1. T is added to the shard's replicas, out of sync (SetReplicas
 *      add_nodes): T opens the collection, and the primary's catch-up
 *      copies the shard to it (a full copy, then the log) and adds it to
 *      the in-sync set, writes going on meanwhile;
 *   2. once T is in sync, F leaves the replicas: a replica just leaves;
 *      the primary leaves in a new epoch, T its primary, after the in-sync
 *      replicas are fenced at that epoch (no write of the old one is
 *      acknowledged after that; writes that meet the fence wait for the
 *      new map and go to the new primary). F's copy is deleted by its
 *      node once it holds no shard of the collection.
 * A move that does not finish (T never catches up within MOVE_TIMEOUT_NS,
 * a step refused) takes T out again and leaves the placement as it was.
 */
#include <inttypes.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cluster/member.h"
#include "cluster/placement.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"
#include "node/replica/replica_internal.h"

#define MOVE_TIMEOUT_NS (300ull * 1000000000ull)

/* drift_shard_moves_in_progress (the moves running now, on the leader) and
 * drift_shard_moves_total{result="done"|"failed"}: made on first use. */
static drift_series *moving, *moves_done, *moves_failed;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
	drift_metrics *reg = drift_metrics_default();
	drift_metric_family *g = NULL, *t = NULL;
	const char *l[] = {"result"};
	const char *done[] = {"done"}, *failed[] = {"failed"};
	if (drift_metrics_family(reg, DRIFT_METRIC_GAUGE,
				 "drift_shard_moves_in_progress",
				 "Shard replicas being moved between nodes now "
				 "(on the metadata leader).",
				 NULL, 0, NULL, 0, &g) != 0 ||
	    drift_metrics_series(g, NULL, &moving) != 0)
		moving = NULL;
	if (drift_metrics_family(reg, DRIFT_METRIC_COUNTER,
				 "drift_shard_moves_total",
				 "Moves of shard replicas between nodes, by "
				 "result.",
				 l, 1, NULL, 0, &t) != 0 ||
	    drift_metrics_series(t, done, &moves_done) != 0 ||
	    drift_metrics_series(t, failed, &moves_failed) != 0)
		moves_done = moves_failed = NULL;
}

struct move {
	char name[DRIFT_META_NAME_MAX + 1];
	uint64_t created;
	uint32_t shard;
	char from[DRIFT_NODE_ID_MAX + 1]; /* "": none (a missing replica) */
	char to[DRIFT_NODE_ID_MAX + 1];	  /* "": none (a surplus one) */
};

/* The shard of a move in the current state (NULL: gone); *st is the
 * caller's reference. */
static const drift_meta_shard *shard_now(drift_replica *r,
					 const struct move *mv, drift_meta **st)
{
	*st = drift_member_state(drift_node_cluster_member(r->nc));
	const drift_meta_collection *mc = drift_meta_col_find(*st, mv->name);
	if (mc == NULL || mc->created_version != mv->created ||
	    mv->shard >= mc->shards)
		return NULL;
	return &mc->shard[mv->shard];
}

static int index_of(const drift_meta_shard *sh, const char *id)
{
	for (uint32_t i = 0; i < sh->n; i++)
		if (strcmp(sh->nodes[i], id) == 0)
			return (int)i;
	return -1;
}

static void request_of(const struct move *mv, uint64_t epoch,
		       Drift__Cluster__V1__SetReplicas *sr)
{
	drift__cluster__v1__set_replicas__init(sr);
	sr->collection = (char *)mv->name;
	sr->created_version = mv->created;
	sr->shard = mv->shard;
	sr->epoch = epoch;
}

/* Leaves `gone` out of the shard's replicas: a replica just leaves; the
 * primary leaves in a new epoch, after its in-sync replicas are fenced,
 * and `prefer` (may be "") becomes the primary if it is in sync. */
static int leave_out(drift_replica *r, const struct move *mv, const char *gone,
		     const char *prefer, drift_err *err)
{
	int rv = DRIFT_ECONFLICT;
	for (int attempt = 0; attempt < 5 && rv == DRIFT_ECONFLICT; attempt++) {
		drift_meta *st;
		const drift_meta_shard *sh = shard_now(r, mv, &st);
		if (sh == NULL || index_of(sh, gone) < 0) {
			drift_meta_unref(st);
			return 0; /* dropped, or already left out */
		}
		if (strcmp(sh->nodes[0], gone) != 0) {
			/* Not the primary: it just leaves (writes in flight
			 * to it fail there and drop nothing else). */
			char *drop[] = {(char *)gone};
			Drift__Cluster__V1__SetReplicas sr;
			request_of(mv, sh->epoch, &sr);
			sr.drop_nodes = drop;
			sr.n_drop_nodes = 1;
			rv = repl_set_replicas(r, &sr, err);
			drift_meta_unref(st);
			continue;
		}
		/* The primary leaves in a new epoch, `prefer` its
		 * successor when it is one of the longest. */
		const drift_meta_collection *mc =
			drift_meta_col_find(st, mv->name);
		uint64_t version;
		rv = repl_hand_over(r, st, mc, mv->shard, gone, prefer, false,
				    &version, err);
		drift_meta_unref(st);
	}
	return rv;
}

static int move_steps(drift_replica *r, const struct move *mv, drift_err *err);
static bool holds_any(const drift_meta *st, const char *id, char *what,
		      size_t cap);

/* One move, counted in the metrics. */
static int run_move(drift_replica *r, const struct move *mv, drift_err *err)
{
	pthread_once(&metrics_once, metrics_init);
	if (moving != NULL)
		drift_metrics_gauge_add(moving, 1);
	int rv = move_steps(r, mv, err);
	if (moving != NULL)
		drift_metrics_gauge_add(moving, -1);
	drift_series *m = rv == 0 ? moves_done : moves_failed;
	if (m != NULL)
		drift_metrics_inc(m);
	return rv;
}

static int move_steps(drift_replica *r, const struct move *mv, drift_err *err)
{
	uint64_t t0 = drift_now_ns();
	drift_meta *st;
	const drift_meta_shard *sh = shard_now(r, mv, &st);
	if (sh == NULL) {
		drift_meta_unref(st);
		return 0; /* the collection went meanwhile */
	}
	int rv = 0;
	if (mv->to[0] != '\0' && index_of(sh, mv->to) < 0) {
		/* Marked in the map: Status and ShardMap show it, and a
		 * leader that takes over finishes it (resume_moves). */
		char *add[] = {(char *)mv->to};
		Drift__Cluster__V1__SetReplicas sr;
		request_of(mv, sh->epoch, &sr);
		sr.add_nodes = add;
		sr.n_add_nodes = 1;
		sr.move_from = (char *)mv->from;
		sr.move_to = (char *)mv->to;
		rv = repl_set_replicas(r, &sr, err);
	}
	drift_meta_unref(st);
	if (rv != 0)
		return rv;
	/* The primary's catch-up copies the shard to it. */
	bool in_sync = mv->to[0] == '\0';
	while (!in_sync && drift_now_ns() - t0 < MOVE_TIMEOUT_NS) {
		pthread_mutex_lock(&r->mu);
		bool stop = r->stop;
		pthread_mutex_unlock(&r->mu);
		if (stop)
			break;
		sh = shard_now(r, mv, &st);
		int at = sh != NULL ? index_of(sh, mv->to) : -1;
		in_sync = sh == NULL || (at >= 0 && (sh->in_sync & (1u << at)));
		bool gone = sh == NULL || at < 0;
		drift_meta_unref(st);
		if (gone && sh == NULL)
			return 0;
		if (gone)
			return drift_err_set(err, DRIFT_ECONFLICT,
					     "%s/%u: %s was taken out",
					     mv->name, mv->shard, mv->to);
		if (!in_sync)
			drift_clock_sleep(drift_clock_system(), 100000000);
	}
	if (!in_sync) {
		drift_err uerr;
		leave_out(r, mv, mv->to, "", &uerr);
		return drift_err_set(
			err, DRIFT_ETIMEDOUT,
			"%s/%u: %s did not catch up in %llu s", mv->name,
			mv->shard, mv->to,
			(unsigned long long)(MOVE_TIMEOUT_NS / 1000000000ull));
	}
	if (mv->from[0] != '\0' &&
	    (rv = leave_out(r, mv, mv->from, mv->to, err)) != 0)
		return rv;
	DRIFT_INFO("rebalance: %s/%u moved from %s to %s in %.2f s", mv->name,
		   mv->shard, mv->from[0] ? mv->from : "(none)",
		   mv->to[0] ? mv->to : "(none)",
		   (double)(drift_now_ns() - t0) / 1e9);
	return 0;
}

/* The moves the planner gives for the current state. */
static int plan(drift_replica *r, bool rebalance, struct move **out,
		size_t *n_out, drift_err *err)
{
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	size_t ns = 0;
	for (size_t c = 0; c < st->n_cols; c++)
		ns += st->cols[c].shards;
	struct drift_placement_node *nodes =
		drift_calloc(st->n_nodes + 1, sizeof(*nodes));
	struct drift_placement_shard *shards =
		drift_calloc(ns + 1, sizeof(*shards));
	struct drift_placement_move *moves = NULL;
	size_t n_moves = 0;
	int rv = nodes != NULL && shards != NULL
			 ? 0
			 : drift_err_set(err, DRIFT_ENOMEM, "rebalance");
	for (size_t i = 0; rv == 0 && i < st->n_nodes; i++) {
		nodes[i].id = st->nodes[i].id;
		nodes[i].accepts = st->nodes[i].state == DRIFT_NODE_UP;
	}
	size_t k = 0;
	for (size_t c = 0; rv == 0 && c < st->n_cols; c++)
		for (uint32_t s = 0; s < st->cols[c].shards; s++, k++) {
			const drift_meta_shard *sh = &st->cols[c].shard[s];
			/* A move's extra target (the last added) is not
			 * planned with: the plan is of the placement. */
			shards[k].rf = st->cols[c].replication_factor;
			shards[k].n = sh->n < DRIFT_PLACEMENT_MAX_RF
					      ? sh->n
					      : DRIFT_PLACEMENT_MAX_RF;
			for (uint32_t i = 0; i < shards[k].n; i++)
				shards[k].nodes[i] = sh->nodes[i];
		}
	if (rv == 0 && drift_placement_plan(nodes, st->n_nodes, shards, ns,
					    rebalance, &moves, &n_moves) != 0)
		rv = drift_err_set(err, DRIFT_EINVAL,
				   "no valid placement over the nodes that are "
				   "up");
	struct move *mv = NULL;
	if (rv == 0 && n_moves > 0 &&
	    (mv = drift_calloc(n_moves, sizeof(*mv))) == NULL)
		rv = drift_err_set(err, DRIFT_ENOMEM, "rebalance");
	for (size_t i = 0; rv == 0 && i < n_moves; i++) {
		/* shards[] is in the order built above. */
		size_t idx = moves[i].shard, c = 0;
		while (idx >= st->cols[c].shards)
			idx -= st->cols[c++].shards;
		snprintf(mv[i].name, sizeof(mv[i].name), "%s",
			 st->cols[c].name);
		mv[i].created = st->cols[c].created_version;
		mv[i].shard = (uint32_t)idx;
		snprintf(mv[i].from, sizeof(mv[i].from), "%s",
			 moves[i].from ? moves[i].from : "");
		snprintf(mv[i].to, sizeof(mv[i].to), "%s",
			 moves[i].to ? moves[i].to : "");
	}
	drift_free(moves);
	drift_free(nodes);
	drift_free(shards);
	drift_meta_unref(st);
	if (rv != 0) {
		drift_free(mv);
		return rv;
	}
	*out = mv;
	*n_out = rv == 0 ? n_moves : 0;
	return 0;
}

struct run {
	drift_replica *r;
	struct move *mv;
	size_t n;
	bool retry; /* failed moves are planned again */
};

/* Whether the leader is stopping. */
static bool stopping(drift_replica *r)
{
	pthread_mutex_lock(&r->mu);
	bool stop = r->stop;
	pthread_mutex_unlock(&r->mu);
	return stop;
}

/* Runs the moves one after another; *failed gets the count that failed. */
static size_t run_list(drift_replica *r, const struct move *mv, size_t n,
		       size_t *failed)
{
	size_t done = 0;
	*failed = 0;
	for (size_t i = 0; i < n && !stopping(r); i++) {
		drift_err err;
		drift_err_clear(&err);
		if (run_move(r, &mv[i], &err) == 0) {
			done++;
		} else {
			(*failed)++;
			DRIFT_WARN("rebalance: %s/%u from %s to %s: %s",
				   mv[i].name, mv[i].shard, mv[i].from,
				   mv[i].to, err.msg);
		}
	}
	return done;
}

/* A Rebalance's moves, then (when some failed: a node died, a copy timed
 * out) up to MOVE_ROUNDS - 1 more rounds planned afresh from the state
 * they left: a failed move leaves the old placement, so a new plan makes
 * it again, or makes another one if the nodes changed. */
#define MOVE_ROUNDS 3
#define MOVE_RETRY_NS (2ull * 1000000000ull)

static void run_all(struct run *run)
{
	size_t failed, done = run_list(run->r, run->mv, run->n, &failed);
	for (int round = 1; round < MOVE_ROUNDS && failed > 0 && run->retry;
	     round++) {
		drift_clock_sleep(drift_clock_system(), MOVE_RETRY_NS);
		if (stopping(run->r))
			break;
		struct move *mv = NULL;
		size_t n = 0;
		drift_err err;
		drift_err_clear(&err);
		if (plan(run->r, true, &mv, &n, &err) != 0) {
			DRIFT_WARN("rebalance: planning round %d: %s",
				   round + 1, err.msg);
			break;
		}
		DRIFT_INFO("rebalance: %zu moves failed; round %d plans %zu",
			   failed, round + 1, n);
		done += run_list(run->r, mv, n, &failed);
		drift_free(mv);
	}
	DRIFT_INFO("rebalance: %zu moves done, %zu failed", done, failed);
	pthread_mutex_lock(&run->r->mu);
	run->r->rebalancing = false;
	pthread_cond_broadcast(&run->r->cond);
	pthread_mutex_unlock(&run->r->mu);
	drift_free(run->mv);
	drift_free(run);
}

static void *run_main(void *arg)
{
	run_all(arg);
	return NULL;
}

/* Runs run_all on a thread of its own: 0, or -1 (run is the caller's). */
static int start_run(struct run *run)
{
	pthread_attr_t at;
	pthread_attr_init(&at);
	pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
	pthread_t t;
	int rv = pthread_create(&t, &at, run_main, run) == 0 ? 0 : -1;
	pthread_attr_destroy(&at);
	return rv;
}

static _Atomic uint64_t replace_after = 300ull * 1000000000ull;

void drift_replica_replace_after(uint64_t ns)
{
	atomic_store(&replace_after, ns);
}

/* Notes when each node went DOWN (the leader's view; forgotten when it is
 * not DOWN any more) and gives the ones DOWN for `after` or longer that
 * still hold replicas, into ids (at most REPL_MAX_DOWN). */
static size_t long_down(drift_replica *r, const drift_meta *st, uint64_t after,
			const char **ids)
{
	uint64_t now = drift_now_ns();
	size_t k = 0, n = 0;
	for (size_t i = 0; i < r->n_down; i++) {
		const drift_meta_node *nd =
			drift_meta_node_find(st, r->down[i].id);
		if (nd != NULL && nd->state == DRIFT_NODE_DOWN)
			r->down[k++] = r->down[i];
	}
	r->n_down = k;
	for (size_t i = 0; i < st->n_nodes; i++) {
		const drift_meta_node *nd = &st->nodes[i];
		if (nd->state != DRIFT_NODE_DOWN)
			continue;
		size_t j = 0;
		while (j < r->n_down && strcmp(r->down[j].id, nd->id) != 0)
			j++;
		if (j == r->n_down) {
			if (r->n_down == REPL_MAX_DOWN)
				continue;
			snprintf(r->down[j].id, sizeof(r->down[j].id), "%s",
				 nd->id);
			r->down[j].since = now;
			r->n_down++;
		}
		char what[DRIFT_META_NAME_MAX + 16];
		if (now - r->down[j].since >= after &&
		    holds_any(st, nd->id, what, sizeof(what)))
			ids[n++] = nd->id;
	}
	return n;
}

void repl_replace_down(drift_replica *r)
{
	uint64_t after = atomic_load(&replace_after);
	if (after == 0)
		return;
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	const char *gone[REPL_MAX_DOWN];
	size_t ng = long_down(r, st, after, gone);
	pthread_mutex_lock(&r->mu);
	bool busy = ng == 0 || r->rebalancing || r->stop;
	if (!busy)
		r->rebalancing = true;
	pthread_mutex_unlock(&r->mu);
	if (busy) {
		drift_meta_unref(st);
		return;
	}
	/* The planner's repairs move every replica off the nodes that do not
	 * accept new ones (all the DOWN ones): only those off the nodes down
	 * that long are made. */
	struct move *mv = NULL;
	size_t n = 0, k = 0;
	drift_err err;
	drift_err_clear(&err);
	if (plan(r, false, &mv, &n, &err) != 0)
		DRIFT_WARN("replacing node %s, down for %.0f s: %s", gone[0],
			   (double)after / 1e9, err.msg);
	for (size_t i = 0; i < n; i++) {
		bool off = false;
		for (size_t g = 0; g < ng && !off; g++)
			off = strcmp(mv[i].from, gone[g]) == 0;
		if (off && mv[i].to[0] != '\0')
			mv[k++] = mv[i];
	}
	struct run *run = k > 0 ? drift_calloc(1, sizeof(*run)) : NULL;
	if (run != NULL) {
		DRIFT_WARN(
			"replacing %zu node%s down for %.0f s or more (%s%s): "
			"%zu replicas copied to the nodes up",
			ng, ng == 1 ? "" : "s", (double)after / 1e9, gone[0],
			ng > 1 ? ", ..." : "", k);
		run->r = r;
		run->mv = mv;
		run->n = k;
		if (start_run(run) == 0) {
			drift_meta_unref(st);
			return;
		}
	}
	drift_meta_unref(st);
	drift_free(mv);
	drift_free(run);
	pthread_mutex_lock(&r->mu);
	r->rebalancing = false;
	pthread_mutex_unlock(&r->mu);
}

static atomic_bool rebalance_on_join = false;

void drift_replica_rebalance_on_join(bool on)
{
	atomic_store(&rebalance_on_join, on);
}

void repl_join_rebalance(drift_replica *r)
{
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	bool fresh = false;
	for (size_t i = 0; i < st->n_nodes; i++) {
		const drift_meta_node *nd = &st->nodes[i];
		if (nd->state != DRIFT_NODE_UP)
			continue;
		size_t j = 0;
		while (j < r->n_seen && strcmp(r->seen[j], nd->id) != 0)
			j++;
		if (j < r->n_seen || r->n_seen == REPL_MAX_DOWN)
			continue;
		snprintf(r->seen[j], sizeof(r->seen[j]), "%s", nd->id);
		r->n_seen++;
		/* A leader's first pass learns the nodes it starts with; a
		 * node back from DOWN holds its replicas: only one that holds
		 * none is new. */
		char what[DRIFT_META_NAME_MAX + 16];
		fresh |= r->seen_init &&
			 !holds_any(st, nd->id, what, sizeof(what));
	}
	r->seen_init = true;
	drift_meta_unref(st);
	if (!fresh || !atomic_load(&rebalance_on_join))
		return;
	uint32_t planned = 0;
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_replica_rebalance(r, false, &planned, &err);
	if (rv == 0)
		DRIFT_INFO("rebalance: a node joined: %u moves planned",
			   planned);
	else
		DRIFT_WARN("rebalance: a node joined: %s", err.msg);
}

void repl_resume_moves(drift_replica *r)
{
	pthread_mutex_lock(&r->mu);
	bool busy = r->rebalancing || r->stop;
	if (!busy)
		r->rebalancing = true;
	pthread_mutex_unlock(&r->mu);
	if (busy)
		return;
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	size_t n = 0;
	for (size_t c = 0; c < st->n_cols; c++)
		for (uint32_t s = 0; s < st->cols[c].shards; s++)
			n += st->cols[c].shard[s].move_to[0] != '\0';
	struct run *run = n > 0 ? drift_calloc(1, sizeof(*run)) : NULL;
	struct move *mv = run != NULL ? drift_calloc(n, sizeof(*mv)) : NULL;
	size_t k = 0;
	for (size_t c = 0; mv != NULL && c < st->n_cols; c++)
		for (uint32_t s = 0; s < st->cols[c].shards; s++) {
			const drift_meta_shard *sh = &st->cols[c].shard[s];
			if (sh->move_to[0] == '\0')
				continue;
			snprintf(mv[k].name, sizeof(mv[k].name), "%s",
				 st->cols[c].name);
			mv[k].created = st->cols[c].created_version;
			mv[k].shard = s;
			snprintf(mv[k].from, sizeof(mv[k].from), "%s",
				 sh->move_from);
			snprintf(mv[k].to, sizeof(mv[k].to), "%s", sh->move_to);
			DRIFT_INFO("rebalance: resuming the move of %s/%u from "
				   "%s to %s (begun under another leader)",
				   mv[k].name, s,
				   mv[k].from[0] ? mv[k].from : "(none)",
				   mv[k].to);
			k++;
		}
	drift_meta_unref(st);
	if (mv != NULL) {
		run->r = r;
		run->mv = mv;
		run->n = k;
		if (start_run(run) == 0)
			return;
	}
	drift_free(mv);
	drift_free(run);
	pthread_mutex_lock(&r->mu);
	r->rebalancing = false;
	pthread_mutex_unlock(&r->mu);
}

int drift_replica_rebalance(drift_replica *r, bool wait, uint32_t *planned,
			    drift_err *err)
{
	*planned = 0;
	pthread_mutex_lock(&r->mu);
	if (r->rebalancing) {
		pthread_mutex_unlock(&r->mu);
		return drift_err_set(err, DRIFT_EBUSY,
				     "a rebalance is running already");
	}
	r->rebalancing = true;
	pthread_mutex_unlock(&r->mu);
	struct run *run = drift_calloc(1, sizeof(*run));
	int rv = run != NULL ? plan(r, true, &run->mv, &run->n, err)
			     : drift_err_set(err, DRIFT_ENOMEM, "rebalance");
	if (rv == 0) {
		run->r = r;
		run->retry = true;
		*planned = (uint32_t)run->n;
		DRIFT_INFO("rebalance: %zu moves planned", run->n);
		if (wait) {
			run_all(run);
			return 0;
		}
		if (start_run(run) == 0)
			return 0;
		rv = drift_err_set(err, DRIFT_ENOMEM, "starting the rebalance");
	}
	if (run != NULL)
		drift_free(run->mv);
	drift_free(run);
	pthread_mutex_lock(&r->mu);
	r->rebalancing = false;
	pthread_mutex_unlock(&r->mu);
	return rv;
}

void drift_replica_move_progress(drift_replica *r, const char *name,
				 uint64_t created, uint32_t shard,
				 const char *to, uint64_t *done,
				 uint64_t *total)
{
	*done = *total = 0;
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	const drift_meta_collection *mc = drift_meta_col_find(st, name);
	const char *self = drift_node_cluster_node_id(r->nc);
	if (mc == NULL || mc->created_version != created ||
	    shard >= mc->shards) {
		drift_meta_unref(st);
		return;
	}
	const char *primary = mc->shard[shard].nodes[0];
	if (strcmp(primary, self) == 0) {
		repl_job_progress(r, name, created, shard, to, done, total);
		drift_meta_unref(st);
		return;
	}
	Drift__Peer__V1__ProgressRequest req =
		DRIFT__PEER__V1__PROGRESS_REQUEST__INIT;
	req.collection = (char *)name;
	req.created_version = created;
	req.shard = shard;
	req.node = (char *)to;
	ProtobufCMessage *out = NULL;
	drift_err err;
	if (repl_call(r, repl_address(st, primary),
		      "/drift.peer.v1.Replica/Progress", &req.base,
		      &drift__peer__v1__progress_response__descriptor,
		      1000000000ull, &out, &err) == 0) {
		const Drift__Peer__V1__ProgressResponse *p =
			(const Drift__Peer__V1__ProgressResponse *)out;
		*done = p->bytes_done;
		*total = p->bytes_total;
		protobuf_c_message_free_unpacked(out, NULL);
	}
	drift_meta_unref(st);
}

/* Sets node id's state (through Raft, as the leader). */
static int set_state(drift_replica *r, const drift_meta_node *n, int state,
		     drift_err *err)
{
	Drift__Cluster__V1__SetNode sn = DRIFT__CLUSTER__V1__SET_NODE__INIT;
	sn.id = (char *)n->id;
	sn.state = state;
	sn.role = n->role;
	Drift__Cluster__V1__Command cmd = DRIFT__CLUSTER__V1__COMMAND__INIT;
	cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_NODE;
	cmd.set_node = &sn;
	return drift_member_propose(drift_node_cluster_member(r->nc), &cmd,
				    REPL_TIMEOUT_NS, err);
}

/* Whether node id still holds a replica (its name into what). */
static bool holds_any(const drift_meta *st, const char *id, char *what,
		      size_t cap)
{
	for (size_t c = 0; c < st->n_cols; c++)
		for (uint32_t s = 0; s < st->cols[c].shards; s++)
			if (index_of(&st->cols[c].shard[s], id) >= 0) {
				snprintf(what, cap, "%s/%u", st->cols[c].name,
					 s);
				return true;
			}
	return false;
}

int drift_replica_evacuate(drift_replica *r, const char *id, drift_err *err)
{
	drift_meta *st = drift_member_state(drift_node_cluster_member(r->nc));
	const drift_meta_node *n = drift_meta_node_find(st, id);
	char what[DRIFT_META_NAME_MAX + 16];
	if (n == NULL || !holds_any(st, id, what, sizeof(what))) {
		drift_meta_unref(st);
		return 0;
	}
	/* A shard whose only replica is on a node that is down cannot be
	 * copied anywhere. */
	for (size_t c = 0; n->state == DRIFT_NODE_DOWN && c < st->n_cols; c++)
		for (uint32_t s = 0; s < st->cols[c].shards; s++) {
			const drift_meta_shard *sh = &st->cols[c].shard[s];
			if (sh->n == 1 && strcmp(sh->nodes[0], id) == 0) {
				int rv = drift_err_set(
					err, DRIFT_ESTALE,
					"shard %s/%u has its only replica on "
					"node %s, which is down: start it "
					"again to move the shard away",
					st->cols[c].name, s, id);
				drift_meta_unref(st);
				return rv;
			}
		}
	pthread_mutex_lock(&r->mu);
	bool busy = r->rebalancing;
	if (!busy)
		r->rebalancing = true;
	pthread_mutex_unlock(&r->mu);
	if (busy) {
		drift_meta_unref(st);
		return drift_err_set(err, DRIFT_EBUSY,
				     "a rebalance is running: remove node %s "
				     "after it",
				     id);
	}
	int was = n->state;
	int rv = was == DRIFT_NODE_LEAVING
			 ? 0
			 : set_state(r, n, DRIFT_NODE_LEAVING, err);
	drift_meta_unref(st);
	struct move *mv = NULL;
	size_t nm = 0;
	if (rv == 0 && (rv = plan(r, false, &mv, &nm, err)) == DRIFT_EINVAL)
		rv = drift_err_set(err, DRIFT_ESTALE,
				   "without node %s, the nodes up cannot hold "
				   "every collection's replication factor: "
				   "add a node first",
				   id);
	size_t done = 0;
	for (size_t i = 0; rv == 0 && i < nm; i++) {
		drift_err merr;
		drift_err_clear(&merr);
		if (run_move(r, &mv[i], &merr) == 0)
			done++;
		else
			rv = drift_err_set(err, DRIFT_EUNAVAIL,
					   "moving %s/%u off node %s: %s",
					   mv[i].name, mv[i].shard, id,
					   merr.msg);
	}
	drift_free(mv);
	st = drift_member_state(drift_node_cluster_member(r->nc));
	if (rv == 0 && holds_any(st, id, what, sizeof(what)))
		rv = drift_err_set(err, DRIFT_EBUSY,
				   "node %s still holds %s after %zu moves", id,
				   what, done);
	n = drift_meta_node_find(st, id);
	if (rv != 0 && n != NULL && was != DRIFT_NODE_LEAVING) {
		drift_err serr;
		set_state(r, n, was, &serr); /* it stays */
	}
	drift_meta_unref(st);
	pthread_mutex_lock(&r->mu);
	r->rebalancing = false;
	pthread_cond_broadcast(&r->cond);
	pthread_mutex_unlock(&r->mu);
	if (rv == 0)
		DRIFT_INFO("rebalance: node %s holds no replica any more (%zu "
			   "moves)",
			   id, done);
	return rv;
}
