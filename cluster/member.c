/*
 * This node's Raft member (see member.h).
 *
 * Threads. The loop thread owns the struct raft, its I/O and transport,
 * and every request once queued. Callers queue a request (mutex + uv_async)
 * and wait on its condition variable; the loop hands it to the library and
 * completes it from the library's callback. A request carries two
 * references, the caller's and the loop's: whoever drops the last frees
 * it, so a caller that timed out simply leaves.
 *
 * raft_close is called from the async handler of the stop request, never
 * from a Raft callback (the library forbids it).
 */
#include "cluster/member.h"

#include <pthread.h>
#include <raft/uv.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"

/* Bytes of a Raft log segment (see drift_member_start). */
#define SEGMENT_SIZE (1024 * 1024)

enum req_kind { REQ_APPLY, REQ_STOP };

struct mreq {
	enum req_kind kind;
	struct drift_member *m;
	struct raft_apply apply;
	struct raft_buffer buf;
	int rv;
	drift_err err;
	bool done;
	int refs; /* under the member's mutex */
	struct mreq *next;
};

struct drift_member {
	uv_loop_t loop;
	uv_async_t wake;
	uv_timer_t tick;
	pthread_t thread;
	bool thread_started;
	struct raft_uv_transport transport;
	struct raft_io io;
	struct raft raft;
	drift_fsm *fsm;
	char node_id[DRIFT_NODE_ID_MAX + 1];
	char raft_address[DRIFT_ADDR_MAX + 1];
	unsigned election_ms;

	pthread_mutex_t mu;
	pthread_cond_t cond;	/* a request completed, or the loop ended */
	struct mreq *queue;	/* under mu */
	bool stopping;		/* under mu: no new requests */
	bool closed;		/* under mu: the loop thread ended */
	drift_member_info info; /* under mu: refreshed by the loop */

	/* Loop thread only. */
	struct raft_change change; /* one configuration change at a time */
	bool change_busy;
	struct raft_barrier barrier; /* see notify_commit */
	bool barrier_busy, barrier_again;
	struct raft_transfer transfer;
	bool transfer_busy;
	bool closing;
	bool raft_closing;
	uint64_t stop_deadline;
};

/* ---- Helpers ---- */

static int raft_to_drift(int rv)
{
	switch (rv) {
	case 0:
		return 0;
	case RAFT_NOMEM:
		return DRIFT_ENOMEM;
	case RAFT_NOTLEADER:
		return DRIFT_ESTALE;
	case RAFT_LEADERSHIPLOST:
	case RAFT_SHUTDOWN:
	case RAFT_NOCONNECTION:
		return DRIFT_EUNAVAIL;
	case RAFT_CORRUPT:
		return DRIFT_ECORRUPT;
	case RAFT_NOSPACE:
		return DRIFT_ENOSPC;
	default:
		return DRIFT_EIO;
	}
}

static void req_unref(drift_member *m, struct mreq *q)
{
	pthread_mutex_lock(&m->mu);
	bool last = --q->refs == 0;
	pthread_mutex_unlock(&m->mu);
	if (last) {
		if (q->buf.base != NULL)
			raft_free(q->buf.base);
		drift_free(q);
	}
}

static void req_complete(drift_member *m, struct mreq *q, int rv,
			 const drift_err *err)
{
	pthread_mutex_lock(&m->mu);
	q->rv = rv;
	if (err != NULL)
		q->err = *err;
	q->done = true;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mu);
	req_unref(m, q);
}

static void refresh_info(drift_member *m)
{
	struct raft *r = &m->raft;
	drift_member_info in;
	memset(&in, 0, sizeof(in));
	in.raft_state = raft_state(r);
	in.leader = in.raft_state == RAFT_LEADER;
	in.term = raft_current_term(r);
	in.commit_index = raft_commit_index(r);
	in.applied_index = raft_last_applied(r);
	in.last_index = raft_last_index(r);
	raft_id lid = 0;
	const char *laddr = NULL;
	raft_leader(r, &lid, &laddr);
	in.leader_raft_id = lid;
	for (unsigned i = 0; i < r->configuration.n; i++)
		in.voters += r->configuration.servers[i].role == RAFT_VOTER;
	pthread_mutex_lock(&m->mu);
	drift_member_info was = m->info;
	m->info = in;
	pthread_mutex_unlock(&m->mu);
	/* One line per change of role, term or leader: what an operator
	 * reads to see how long an election took and how many rounds. */
	if (was.raft_state != in.raft_state || was.term != in.term ||
	    was.leader_raft_id != in.leader_raft_id)
		DRIFT_INFO("cluster: term %llu, %s, leader %s",
			   (unsigned long long)in.term,
			   raft_state_name(in.raft_state),
			   lid == 0 || laddr == NULL ? "unknown" : laddr);
}

/* ---- Loop: requests ---- */

static void notify_commit(drift_member *m);

static void barrier_cb(struct raft_barrier *b, int status)
{
	(void)status;
	drift_member *m = b->data;
	m->barrier_busy = false;
	if (m->barrier_again) {
		m->barrier_again = false;
		notify_commit(m);
	}
}

/* The library tells followers a new commit index only with its next
 * message to them: a heartbeat, up to heartbeat_ms later. A barrier right
 * after a change commits is such a message at once, so the followers
 * apply the change (and open a new collection's shards) about a round
 * trip after the leader, not a heartbeat. One at a time. */
static void notify_commit(drift_member *m)
{
	if (raft_state(&m->raft) != RAFT_LEADER || m->closing)
		return;
	if (m->barrier_busy) {
		m->barrier_again = true;
		return;
	}
	m->barrier.data = m;
	if (raft_barrier(&m->raft, &m->barrier, barrier_cb) == 0)
		m->barrier_busy = true;
}

static void apply_cb(struct raft_apply *a, int status, void *result)
{
	struct mreq *q = a->data;
	drift_member *mem = q->m;
	q->buf.base = NULL; /* the library owns and frees it */
	drift_err err;
	drift_err_clear(&err);
	int rv;
	if (status != 0) {
		rv = raft_to_drift(status);
		drift_err_set(&err, rv == DRIFT_ESTALE ? DRIFT_ESTALE : rv,
			      "metadata change: %s%s", raft_strerror(status),
			      status == RAFT_LEADERSHIPLOST
				      ? " (the change may or may not have "
					"been applied)"
				      : "");
	} else {
		/* This command's own result: one commit can apply several
		 * proposals before their callbacks run. */
		rv = drift_fsm_result(mem->fsm, result, &err);
		notify_commit(mem);
	}
	refresh_info(mem);
	req_complete(mem, q, rv, &err);
}

static void start_close(drift_member *m);

static void on_wake(uv_async_t *h)
{
	drift_member *m = h->data;
	pthread_mutex_lock(&m->mu);
	struct mreq *q = m->queue;
	m->queue = NULL;
	pthread_mutex_unlock(&m->mu);
	/* The queue is LIFO; reverse it to keep the callers' order. */
	struct mreq *rev = NULL;
	while (q != NULL) {
		struct mreq *n = q->next;
		q->next = rev;
		rev = q;
		q = n;
	}
	for (q = rev; q != NULL;) {
		struct mreq *n = q->next;
		if (q->kind == REQ_STOP) {
			req_complete(m, q, 0, NULL);
			start_close(m);
		} else if (m->closing) {
			drift_err e;
			drift_err_set(&e, DRIFT_EUNAVAIL,
				      "the node is shutting down");
			req_complete(m, q, DRIFT_EUNAVAIL, &e);
		} else {
			q->apply.data = q;
			q->m = m;
			struct raft_buffer bufs[1] = {q->buf};
			int rv = raft_apply(&m->raft, &q->apply, bufs, 1,
					    apply_cb);
			if (rv != 0) {
				drift_err e;
				int code = raft_to_drift(rv);
				drift_err_set(&e, code, "metadata change: %s",
					      raft_strerror(rv));
				req_complete(m, q, code, &e);
			}
		}
		q = n;
	}
}

/* ---- Loop: membership reconcile (leader only) ---- */

static void change_cb(struct raft_change *c, int status)
{
	drift_member *m = c->data;
	m->change_busy = false;
	if (status != 0)
		DRIFT_WARN("cluster: configuration change failed: %s",
			   raft_strerror(status));
}

static void transfer_cb(struct raft_transfer *t)
{
	drift_member *m = t->data;
	m->transfer_busy = false;
}

static const struct raft_server *conf_find(const struct raft *r, raft_id id)
{
	for (unsigned i = 0; i < r->configuration.n; i++)
		if (r->configuration.servers[i].id == id)
			return &r->configuration.servers[i];
	return NULL;
}

/* Proposes a JOINING node's move to UP once its configuration entry has the
 * role the state gives it. Not waited for: the next tick looks again. */
static void propose_up(drift_member *m, const drift_meta_node *n)
{
	Drift__Cluster__V1__SetNode sn = DRIFT__CLUSTER__V1__SET_NODE__INIT;
	sn.id = (char *)n->id;
	sn.state = DRIFT_NODE_UP;
	sn.role = n->role;
	Drift__Cluster__V1__Command cmd = DRIFT__CLUSTER__V1__COMMAND__INIT;
	cmd.cmd_case = DRIFT__CLUSTER__V1__COMMAND__CMD_SET_NODE;
	cmd.set_node = &sn;
	struct mreq *q = drift_calloc(1, sizeof(*q));
	if (q == NULL)
		return;
	if (drift_meta_cmd_encode(&cmd, true, &q->buf.base, &q->buf.len) != 0) {
		drift_free(q);
		return;
	}
	q->kind = REQ_APPLY;
	q->refs = 1; /* the loop's only */
	q->apply.data = q;
	q->m = m;
	struct raft_buffer bufs[1] = {q->buf};
	if (raft_apply(&m->raft, &q->apply, bufs, 1, apply_cb) != 0) {
		raft_free(q->buf.base);
		drift_free(q);
	}
}

static void reconcile(drift_member *m)
{
	struct raft *r = &m->raft;
	if (raft_state(r) != RAFT_LEADER || m->closing)
		return;
	drift_meta *st = drift_fsm_state(m->fsm);
	if (st->cluster_id[0] == '\0')
		goto out;
	/* One configuration change at a time, and only once the last one
	 * is committed. */
	if (m->change_busy || r->configuration_uncommitted_index >
				      r->configuration_committed_index)
		goto out;
	m->change.data = m;
	/* A server in the configuration that the state no longer has. */
	for (unsigned i = 0; i < r->configuration.n; i++) {
		const struct raft_server *s = &r->configuration.servers[i];
		if (drift_meta_node_by_raft(st, s->id) != NULL)
			continue;
		if (s->id == r->id) {
			/* Removing the leader itself: hand over first. */
			if (!m->transfer_busy) {
				m->transfer.data = m;
				if (raft_transfer(r, &m->transfer, 0,
						  transfer_cb) == 0)
					m->transfer_busy = true;
			}
			goto out;
		}
		if (raft_remove(r, &m->change, s->id, change_cb) == 0)
			m->change_busy = true;
		goto out;
	}
	unsigned voters = 0;
	for (unsigned i = 0; i < r->configuration.n; i++)
		voters += r->configuration.servers[i].role == RAFT_VOTER;
	for (size_t i = 0; i < st->n_nodes; i++) {
		const drift_meta_node *n = &st->nodes[i];
		const struct raft_server *s = conf_find(r, n->raft_id);
		if (s == NULL) {
			if (raft_add(r, &m->change, n->raft_id, n->raft_address,
				     change_cb) == 0)
				m->change_busy = true;
			goto out;
		}
		/* The role: voters up to max_voters (standbys promoted when
		 * a voter went), the rest standbys. */
		int want = s->role == RAFT_VOTER ? RAFT_VOTER : RAFT_STANDBY;
		if (s->role != RAFT_VOTER && voters < st->max_voters)
			want = RAFT_VOTER;
		if (s->role != want) {
			if (raft_assign(r, &m->change, n->raft_id, want,
					change_cb) == 0)
				m->change_busy = true;
			goto out;
		}
		int role = want == RAFT_VOTER ? DRIFT_ROLE_VOTER
					      : DRIFT_ROLE_STANDBY;
		if (n->state == DRIFT_NODE_JOINING || n->role != role) {
			drift_meta_node up = *n;
			up.role = role;
			propose_up(m, &up);
			goto out;
		}
	}
out:
	drift_meta_unref(st);
}

static void on_tick(uv_timer_t *t)
{
	drift_member *m = t->data;
	refresh_info(m);
	if (m->closing) {
		/* Waiting for a hand-over before closing. */
		if (!m->transfer_busy || drift_now_ns() >= m->stop_deadline) {
			uv_timer_stop(&m->tick);
			start_close(m);
		}
		return;
	}
	reconcile(m);
}

/* ---- Loop: close ---- */

static void on_handle_closed(uv_handle_t *h)
{
	(void)h;
}

static void transport_closed(struct raft_uv_transport *t)
{
	(void)t;
}

static void raft_closed(struct raft *r)
{
	drift_member *m = r->data;
	raft_uv_close(&m->io);
	raft_uv_tcp_close(&m->transport);
	uv_close((uv_handle_t *)&m->wake, on_handle_closed);
	uv_close((uv_handle_t *)&m->tick, on_handle_closed);
}

static void start_close(drift_member *m)
{
	if (!m->closing) {
		m->closing = true;
		m->stop_deadline =
			drift_now_ns() + (uint64_t)m->election_ms * 2000000u;
		struct raft *r = &m->raft;
		unsigned voters = 0;
		for (unsigned i = 0; i < r->configuration.n; i++)
			voters +=
				r->configuration.servers[i].role == RAFT_VOTER;
		if (raft_state(r) == RAFT_LEADER && voters > 1) {
			m->transfer.data = m;
			if (raft_transfer(r, &m->transfer, 0, transfer_cb) ==
			    0) {
				m->transfer_busy = true;
				DRIFT_INFO("cluster: handing leadership over "
					   "before stopping");
				return; /* on_tick closes once it is done */
			}
		}
	}
	if (m->transfer_busy && drift_now_ns() < m->stop_deadline)
		return;
	if (m->raft_closing)
		return;
	m->raft_closing = true;
	uv_timer_stop(&m->tick);
	raft_close(&m->raft, raft_closed);
}

static void *loop_main(void *arg)
{
	drift_member *m = arg;
	uv_run(&m->loop, UV_RUN_DEFAULT);
	pthread_mutex_lock(&m->mu);
	m->closed = true;
	/* Fail whatever is still queued. */
	struct mreq *q = m->queue;
	m->queue = NULL;
	pthread_cond_broadcast(&m->cond);
	pthread_mutex_unlock(&m->mu);
	while (q != NULL) {
		struct mreq *n = q->next;
		drift_err e;
		drift_err_set(&e, DRIFT_EUNAVAIL, "the node is shutting down");
		req_complete(m, q, DRIFT_EUNAVAIL, &e);
		q = n;
	}
	return NULL;
}

/* ---- Public ---- */

static bool dir_is_empty(const char *dir)
{
	char p[4096];
	snprintf(p, sizeof(p), "%s/metadata1", dir);
	struct stat sb;
	if (stat(p, &sb) == 0)
		return false;
	snprintf(p, sizeof(p), "%s/metadata2", dir);
	return stat(p, &sb) != 0;
}

int drift_member_start(const drift_member_opts *o, drift_member **out,
		       drift_err *err)
{
	if (!drift_meta_node_id_ok(o->node_id))
		return drift_err_set(
			err, DRIFT_EINVAL,
			"node id \"%s\" is not [A-Za-z0-9_.-]{1,64}",
			o->node_id);
	drift_member *m = drift_calloc(1, sizeof(*m));
	if (m == NULL)
		return DRIFT_ENOMEM;
	int rv;
	snprintf(m->node_id, sizeof(m->node_id), "%s", o->node_id);
	snprintf(m->raft_address, sizeof(m->raft_address), "%s",
		 o->raft_address);
	m->election_ms = o->election_ms ? o->election_ms : 300;
	pthread_mutex_init(&m->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&m->cond, &ca);
	pthread_condattr_destroy(&ca);
	if ((rv = drift_fsm_new(o->on_change, o->arg, &m->fsm)) != 0)
		goto fail_mem;
	if (mkdir(o->dir, 0755) != 0 && errno != EEXIST) {
		rv = drift_err_set(err, drift_err_from_errno(errno),
				   "creating %s: %s", o->dir, strerror(errno));
		goto fail_fsm;
	}
	bool empty = dir_is_empty(o->dir);
	uv_loop_init(&m->loop);
	m->transport.version = 1; /* the struct layout this code fills */
	if ((rv = raft_uv_tcp_init(&m->transport, &m->loop)) != 0) {
		rv = drift_err_set(err, DRIFT_EIO, "raft transport: %s",
				   raft_strerror(rv));
		goto fail_loop;
	}
	if (o->raft_bind != NULL && o->raft_bind[0] != '\0' &&
	    (rv = raft_uv_tcp_set_bind_address(&m->transport, o->raft_bind)) !=
		    0) {
		rv = drift_err_set(err, DRIFT_EINVAL,
				   "--raft-listen %s: %s (an IPv4 "
				   "HOST:PORT whose port is the advertised "
				   "one's)",
				   o->raft_bind, raft_strerror(rv));
		goto fail_transport;
	}
	if ((rv = raft_uv_init(&m->io, &m->loop, o->dir, &m->transport)) != 0) {
		rv = drift_err_set(err, DRIFT_EIO, "raft storage in %s: %s",
				   o->dir, raft_strerror(rv));
		goto fail_transport;
	}
	/* Segments of 1 MiB, not the library's 8: the metadata log is small
	 * (the largest command, a collection of 256 shards with 5 replicas,
	 * is under 100 KiB) and the library preallocates a few segments, which
	 * would otherwise take 24 MiB of the data disk. */
	raft_uv_set_segment_size(&m->io, SEGMENT_SIZE);
	uint64_t raft_id = drift_meta_raft_id(o->node_id);
	if ((rv = raft_init(&m->raft, &m->io, drift_fsm_raft(m->fsm), raft_id,
			    o->raft_address)) != 0) {
		rv = drift_err_set(err, DRIFT_EIO, "raft: %s",
				   raft_errmsg(&m->raft));
		goto fail_io;
	}
	m->raft.data = m;
	/* The library refuses new entries while the disk space it has
	 * reserved is under this many KiB (default 4 MiB, sized for its own
	 * 8 MiB segments): a quarter of a segment here. */
	raft_set_capacity_threshold(&m->raft, SEGMENT_SIZE / 1024 / 4);
	raft_set_election_timeout(&m->raft, m->election_ms);
	/* A fifth of the election timeout: a follower misses four
	 * heartbeats in a row before it campaigns. */
	raft_set_heartbeat_timeout(&m->raft,
				   o->heartbeat_ms ? o->heartbeat_ms
						   : (m->election_ms + 4) / 5);
	raft_set_pre_vote(&m->raft, true);
	raft_set_snapshot_threshold(
		&m->raft, o->snapshot_threshold ? o->snapshot_threshold : 1024);
	raft_set_snapshot_trailing(
		&m->raft, o->snapshot_trailing ? o->snapshot_trailing : 128);
	if (o->bootstrap && empty) {
		struct raft_configuration conf;
		raft_configuration_init(&conf);
		rv = raft_configuration_add(&conf, raft_id, o->raft_address,
					    RAFT_VOTER);
		if (rv == 0)
			rv = raft_bootstrap(&m->raft, &conf);
		raft_configuration_close(&conf);
		if (rv != 0) {
			rv = drift_err_set(err, DRIFT_EIO, "raft bootstrap: %s",
					   raft_strerror(rv));
			goto fail_raft;
		}
	}
	if ((rv = raft_start(&m->raft)) != 0) {
		rv = drift_err_set(err, raft_to_drift(rv),
				   "raft start in %s: %s", o->dir,
				   raft_errmsg(&m->raft));
		goto fail_raft;
	}
	uv_async_init(&m->loop, &m->wake, on_wake);
	m->wake.data = m;
	uv_timer_init(&m->loop, &m->tick);
	m->tick.data = m;
	uv_timer_start(&m->tick, on_tick, 50, 200);
	refresh_info(m);
	if (pthread_create(&m->thread, NULL, loop_main, m) != 0) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "no thread for raft");
		goto fail_started;
	}
	m->thread_started = true;
	*out = m;
	return 0;

fail_started:
	/* Close everything on this thread instead. */
	raft_close(&m->raft, raft_closed);
	uv_run(&m->loop, UV_RUN_DEFAULT);
	goto fail_loop_closed;
fail_raft:
	raft_close(&m->raft, NULL);
fail_io:
	raft_uv_close(&m->io);
fail_transport:
	raft_uv_tcp_close(&m->transport);
	(void)transport_closed;
fail_loop:
	uv_run(&m->loop, UV_RUN_DEFAULT);
fail_loop_closed:
	uv_loop_close(&m->loop);
fail_fsm:
	drift_fsm_free(m->fsm);
fail_mem:
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->mu);
	drift_free(m);
	return rv != 0 ? rv : DRIFT_ENOMEM;
}

void drift_member_stop(drift_member *m)
{
	if (m == NULL || !m->thread_started)
		return;
	pthread_mutex_lock(&m->mu);
	bool first = !m->stopping;
	m->stopping = true;
	pthread_mutex_unlock(&m->mu);
	if (first) {
		struct mreq *q = drift_calloc(1, sizeof(*q));
		if (q != NULL) {
			q->kind = REQ_STOP;
			q->refs = 1;
			pthread_mutex_lock(&m->mu);
			q->next = m->queue;
			m->queue = q;
			pthread_mutex_unlock(&m->mu);
			uv_async_send(&m->wake);
		}
	}
	drift_fsm_wake(m->fsm);
	pthread_join(m->thread, NULL);
	m->thread_started = false;
	uv_loop_close(&m->loop);
}

void drift_member_free(drift_member *m)
{
	if (m == NULL)
		return;
	drift_member_stop(m);
	drift_fsm_free(m->fsm);
	pthread_cond_destroy(&m->cond);
	pthread_mutex_destroy(&m->mu);
	drift_free(m);
}

drift_meta *drift_member_state(drift_member *m)
{
	return drift_fsm_state(m->fsm);
}

int drift_member_wait(drift_member *m, uint64_t known, uint64_t deadline_ns,
		      drift_meta **out)
{
	return drift_fsm_wait(m->fsm, known, deadline_ns, out);
}

void drift_member_info_get(drift_member *m, drift_member_info *info)
{
	pthread_mutex_lock(&m->mu);
	*info = m->info;
	pthread_mutex_unlock(&m->mu);
}

bool drift_member_leader(drift_member *m, char *id, char *address)
{
	id[0] = address[0] = '\0';
	drift_member_info in;
	drift_member_info_get(m, &in);
	if (in.leader_raft_id == 0)
		return false;
	drift_meta *st = drift_fsm_state(m->fsm);
	const drift_meta_node *n =
		drift_meta_node_by_raft(st, in.leader_raft_id);
	if (n != NULL) {
		snprintf(id, DRIFT_NODE_ID_MAX + 1, "%s", n->id);
		snprintf(address, DRIFT_ADDR_MAX + 1, "%s", n->address);
	}
	drift_meta_unref(st);
	return n != NULL;
}

int drift_member_propose(drift_member *m,
			 const Drift__Cluster__V1__Command *cmd,
			 uint64_t timeout_ns, drift_err *err)
{
	struct mreq *q = drift_calloc(1, sizeof(*q));
	if (q == NULL)
		return DRIFT_ENOMEM;
	int rv = drift_meta_cmd_encode(cmd, true, &q->buf.base, &q->buf.len);
	if (rv != 0) {
		drift_free(q);
		return rv;
	}
	q->kind = REQ_APPLY;
	q->refs = 2;
	uint64_t deadline =
		timeout_ns ? drift_now_ns() + timeout_ns : UINT64_MAX;
	pthread_mutex_lock(&m->mu);
	if (m->stopping || m->closed) {
		pthread_mutex_unlock(&m->mu);
		raft_free(q->buf.base);
		drift_free(q);
		return drift_err_set(err, DRIFT_EUNAVAIL,
				     "the node is shutting down");
	}
	q->next = m->queue;
	m->queue = q;
	pthread_mutex_unlock(&m->mu);
	uv_async_send(&m->wake);
	pthread_mutex_lock(&m->mu);
	while (!q->done && !m->closed) {
		if (deadline == UINT64_MAX) {
			pthread_cond_wait(&m->cond, &m->mu);
			continue;
		}
		if (drift_now_ns() >= deadline)
			break;
		struct timespec ts = {
			.tv_sec = (time_t)(deadline / 1000000000u),
			.tv_nsec = (long)(deadline % 1000000000u)};
		pthread_cond_timedwait(&m->cond, &m->mu, &ts);
	}
	bool done = q->done;
	if (done) {
		rv = q->rv;
		if (rv != 0 && err != NULL)
			*err = q->err;
	}
	pthread_mutex_unlock(&m->mu);
	if (!done)
		rv = drift_err_set(err, DRIFT_ETIMEDOUT,
				   "metadata change: no answer from the Raft "
				   "group in time (the change may still "
				   "happen)");
	req_unref(m, q);
	return rv;
}
