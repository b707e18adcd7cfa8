/*
 * The metadata state machine (see fsm.h).
 */
#include "cluster/fsm.h"

#include <pthread.h>
#include <stdbool.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"

struct drift_fsm {
	struct raft_fsm raft;
	pthread_mutex_t mu;
	pthread_cond_t cond;
	drift_meta *state; /* under mu */
	bool closing;	   /* under mu: drift_fsm_wake was called */
	drift_fsm_change_cb cb;
	void *arg;
	int last_rv; /* Raft thread only */
	drift_err last_err;
	/* The messages of the last commands, for their apply callbacks: the
	 * result argument carries a command's sequence number and code. */
	uint64_t seq; /* commands applied */
	struct {
		uint64_t seq;
		drift_err err;
	} results[DRIFT_FSM_RESULTS];
};

/* The result argument of the command just applied (rv in f->last_rv, its
 * message in f->last_err): its sequence number above the low 8 bits, -rv
 * in them (the DRIFT_E* codes are -1..-20, far from -255). */
static void *keep_result(drift_fsm *f)
{
	uint64_t seq = ++f->seq;
	f->results[seq % DRIFT_FSM_RESULTS].seq = seq;
	f->results[seq % DRIFT_FSM_RESULTS].err = f->last_err;
	return (void *)(uintptr_t)((seq << 8) | (uint8_t)-f->last_rv);
}

static void set_state(drift_fsm *f, drift_meta *m)
{
	pthread_mutex_lock(&f->mu);
	drift_meta *old = f->state;
	f->state = m;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
	drift_meta_unref(old);
	if (f->cb != NULL)
		f->cb(f->arg, m);
}

static int fsm_apply(struct raft_fsm *rf, const struct raft_buffer *buf,
		     void **result)
{
	drift_fsm *f = rf->data;
	*result = NULL;
	drift_err_clear(&f->last_err);
	Drift__Cluster__V1__Command *cmd = NULL;
	if (drift_meta_cmd_decode(buf->base, buf->len, &cmd) != 0) {
		/* Every member refuses the same bytes alike: skipping them
		 * keeps the members identical. */
		f->last_rv = drift_err_set(&f->last_err, DRIFT_ECORRUPT,
					   "a metadata command that does not "
					   "decode (%zu bytes)",
					   buf->len);
		DRIFT_WARN("cluster: %s", f->last_err.msg);
		*result = keep_result(f);
		return 0;
	}
	drift_meta *cur = drift_fsm_state(f), *next = NULL;
	int rv = drift_meta_clone(cur, &next);
	if (rv == 0)
		rv = drift_meta_apply(next, cmd, &f->last_err);
	drift_meta_unref(cur);
	drift__cluster__v1__command__free_unpacked(cmd, NULL);
	f->last_rv = rv;
	if (rv == DRIFT_ENOMEM) {
		drift_meta_unref(next);
		return RAFT_NOMEM; /* not applied: the member stops */
	}
	*result = keep_result(f);
	if (rv != 0) {
		drift_meta_unref(next);
		return 0;
	}
	set_state(f, next);
	return 0;
}

static int fsm_snapshot(struct raft_fsm *rf, struct raft_buffer *bufs[],
			unsigned *n_bufs)
{
	drift_fsm *f = rf->data;
	drift_meta *cur = drift_fsm_state(f);
	void *enc = NULL;
	size_t len = 0;
	int rv = drift_meta_encode(cur, &enc, &len);
	drift_meta_unref(cur);
	if (rv != 0)
		return RAFT_NOMEM;
	struct raft_buffer *b = raft_malloc(sizeof(*b));
	void *copy = raft_malloc(len ? len : 1);
	if (b == NULL || copy == NULL) {
		raft_free(b);
		raft_free(copy);
		drift_free(enc);
		return RAFT_NOMEM;
	}
	memcpy(copy, enc, len);
	drift_free(enc);
	b->base = copy;
	b->len = len;
	*bufs = b;
	*n_bufs = 1;
	return 0;
}

static int fsm_restore(struct raft_fsm *rf, struct raft_buffer *buf)
{
	drift_fsm *f = rf->data;
	drift_meta *m = NULL;
	drift_err err;
	drift_err_clear(&err);
	uint64_t t0 = drift_now_ns();
	if (drift_meta_decode(buf->base, buf->len, &m, &err) != 0) {
		DRIFT_ERROR("cluster: %s", err.msg);
		return RAFT_CORRUPT;
	}
	/* An operator's figure (and tests/bench/cluster_bench.py's). */
	DRIFT_INFO("cluster: snapshot of %zu bytes restored in %.3f ms (map "
		   "version %llu, %zu nodes, %zu collections)",
		   buf->len, (double)(drift_now_ns() - t0) / 1e6,
		   (unsigned long long)m->version, m->n_nodes, m->n_cols);
	set_state(f, m);
	raft_free(buf->base); /* restore owns the snapshot's data */
	return 0;
}

int drift_fsm_new(drift_fsm_change_cb cb, void *arg, drift_fsm **out)
{
	drift_fsm *f = drift_calloc(1, sizeof(*f));
	if (f == NULL)
		return DRIFT_ENOMEM;
	if (drift_meta_new(&f->state) != 0) {
		drift_free(f);
		return DRIFT_ENOMEM;
	}
	pthread_mutex_init(&f->mu, NULL);
	pthread_condattr_t ca;
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&f->cond, &ca);
	pthread_condattr_destroy(&ca);
	f->cb = cb;
	f->arg = arg;
	f->raft.version = 1;
	f->raft.data = f;
	f->raft.apply = fsm_apply;
	f->raft.snapshot = fsm_snapshot;
	f->raft.restore = fsm_restore;
	*out = f;
	return 0;
}

void drift_fsm_free(drift_fsm *f)
{
	if (f == NULL)
		return;
	drift_meta_unref(f->state);
	pthread_cond_destroy(&f->cond);
	pthread_mutex_destroy(&f->mu);
	drift_free(f);
}

struct raft_fsm *drift_fsm_raft(drift_fsm *f)
{
	return &f->raft;
}

drift_meta *drift_fsm_state(drift_fsm *f)
{
	pthread_mutex_lock(&f->mu);
	drift_meta *m = drift_meta_ref(f->state);
	pthread_mutex_unlock(&f->mu);
	return m;
}

int drift_fsm_wait(drift_fsm *f, uint64_t known, uint64_t deadline_ns,
		   drift_meta **out)
{
	pthread_mutex_lock(&f->mu);
	while (f->state->version <= known && !f->closing) {
		uint64_t now = drift_now_ns();
		if (now >= deadline_ns)
			break;
		if (deadline_ns == UINT64_MAX) {
			pthread_cond_wait(&f->cond, &f->mu);
		} else {
			struct timespec ts = {
				.tv_sec = (time_t)(deadline_ns / 1000000000u),
				.tv_nsec = (long)(deadline_ns % 1000000000u)};
			pthread_cond_timedwait(&f->cond, &f->mu, &ts);
		}
	}
	drift_meta *m = drift_meta_ref(f->state);
	pthread_mutex_unlock(&f->mu);
	*out = m;
	return m->version > known ? 0 : DRIFT_ETIMEDOUT;
}

void drift_fsm_wake(drift_fsm *f)
{
	pthread_mutex_lock(&f->mu);
	f->closing = true;
	pthread_cond_broadcast(&f->cond);
	pthread_mutex_unlock(&f->mu);
}

int drift_fsm_result(drift_fsm *f, const void *result, drift_err *err)
{
	uintptr_t v = (uintptr_t)result;
	int rv = -(int)(v & 0xff);
	uint64_t seq = (uint64_t)(v >> 8);
	if (err == NULL)
		return rv;
	if (seq != 0 && f->results[seq % DRIFT_FSM_RESULTS].seq == seq)
		*err = f->results[seq % DRIFT_FSM_RESULTS].err;
	else if (rv != 0)
		drift_err_set(err, rv, "metadata change: %s",
			      drift_strerror(rv));
	else
		drift_err_clear(err);
	return rv;
}

int drift_fsm_last(drift_fsm *f, drift_err *err)
{
	if (err != NULL)
		*err = f->last_err;
	return f->last_rv;
}
