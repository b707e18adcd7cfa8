/*
 * Parallel unary calls (see fanout.h).
 */
#include "router/fanout.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/metrics.h"

struct slot;

struct wait {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	size_t left;
	struct slot *slots; /* n of them */
	size_t n;
};

struct slot {
	struct wait *w;
	drift_fanout_part *part;
	uint64_t t0;
	drift_grpc_ccall *call; /* the handle, NULL when never started */
	bool answered;		/* under w->mu */
};

/* drift_router_fanout_seconds{node}: each node's part of a fan-out, from
 * the call started to its answer; drift_router_fanout_failures_total{node}
 * the parts that did not answer OK. Made on first use. */
static drift_metric_family *fanout_seconds, *fanout_failures;
/* drift_router_fanout_in_flight: parts started and not answered yet;
 * drift_router_fanout_cancelled_total: parts cancelled because their
 * caller went away (cancelled, or past its deadline). */
static drift_series *fanout_in_flight, *fanout_cancelled;
static pthread_once_t metrics_once = PTHREAD_ONCE_INIT;

static void metrics_init(void)
{
	const char *l[] = {"node"};
	drift_metrics *r = drift_metrics_default();
	if (drift_metrics_family(
		    r, DRIFT_METRIC_HISTOGRAM, "drift_router_fanout_seconds",
		    "A node's part of a router fan-out, from the "
		    "call to its answer.",
		    l, 1, drift_metrics_latency_bounds,
		    drift_metrics_latency_nbounds, &fanout_seconds) != 0)
		fanout_seconds = NULL;
	if (drift_metrics_family(r, DRIFT_METRIC_COUNTER,
				 "drift_router_fanout_failures_total",
				 "Parts of router fan-outs a node did not "
				 "answer with OK.",
				 l, 1, NULL, 0, &fanout_failures) != 0)
		fanout_failures = NULL;
	fanout_in_flight = drift_metrics_simple(
		r, DRIFT_METRIC_GAUGE, "drift_router_fanout_in_flight",
		"Parts of router fan-outs sent to a node and not answered "
		"yet.",
		NULL, 0);
	fanout_cancelled = drift_metrics_simple(
		r, DRIFT_METRIC_COUNTER, "drift_router_fanout_cancelled_total",
		"Parts of router fan-outs cancelled (RST_STREAM to the node) "
		"because their caller cancelled or its deadline passed.",
		NULL, 0);
}

static void record(const drift_fanout_part *p, uint64_t t0)
{
	const char *v[] = {p->address};
	drift_series *m;
	if (t0 != 0 && fanout_seconds != NULL &&
	    drift_metrics_series(fanout_seconds, v, &m) == 0)
		drift_metrics_observe(m, (double)(drift_now_ns() - t0) / 1e9);
	if (p->st.code != DRIFT_GRPC_OK && fanout_failures != NULL &&
	    drift_metrics_series(fanout_failures, v, &m) == 0)
		drift_metrics_inc(m);
}

static void done(void *arg, const drift_grpc_status *st, drift_grpc_msg *resp)
{
	struct slot *s = arg;
	s->part->st = *st;
	s->part->resp = resp;
	record(s->part, s->t0);
	drift_metrics_gauge_add(fanout_in_flight, -1);
	pthread_mutex_lock(&s->w->mu);
	s->answered = true;
	if (--s->w->left == 0)
		pthread_cond_broadcast(&s->w->cond);
	pthread_mutex_unlock(&s->w->mu);
}

/* The caller is over (on the server's loop thread, or the handler's):
 * cancel the parts not answered yet. Under w.mu: a callback takes it only
 * after its call's own mutex is released, and cancel takes that one. */
static void caller_gone(void *arg)
{
	struct wait *w = arg;
	pthread_mutex_lock(&w->mu);
	for (size_t i = 0; i < w->n; i++)
		if (w->slots[i].call != NULL && !w->slots[i].answered) {
			drift_grpc_ccall_cancel(w->slots[i].call);
			drift_metrics_inc(fanout_cancelled);
		}
	pthread_mutex_unlock(&w->mu);
}

void drift_fanout_run_for(drift_rmap_follower *f, drift_grpc_call *caller,
			  drift_fanout_part *parts, size_t n,
			  uint64_t timeout_ns)
{
	pthread_once(&metrics_once, metrics_init);
	struct wait w = {.left = n};
	pthread_mutex_init(&w.mu, NULL);
	pthread_cond_init(&w.cond, NULL);
	struct slot *slots = drift_calloc(n ? n : 1, sizeof(*slots));
	for (size_t i = 0; i < n; i++) {
		drift_fanout_part *p = &parts[i];
		p->resp = NULL;
		memset(&p->st, 0, sizeof(p->st));
		drift_grpc_client *cl = NULL;
		drift_err err;
		drift_err_clear(&err);
		int rv = slots == NULL ? DRIFT_ENOMEM
			 : p->address[0] == '\0'
				 ? drift_err_set(&err, DRIFT_EUNAVAIL,
						 "the map names no node for it")
				 : drift_rmap_client(f, p->address, &cl, &err);
		if (rv == 0) {
			slots[i].w = &w;
			slots[i].part = p;
			slots[i].t0 = drift_now_ns();
			drift_metrics_gauge_add(fanout_in_flight, 1);
			rv = drift_grpc_client_unary_start(
				cl, p->path, p->req, p->len, timeout_ns, done,
				&slots[i], &slots[i].call);
			if (rv != 0)
				drift_metrics_gauge_add(fanout_in_flight, -1);
		}
		if (rv != 0) {
			p->st.code = DRIFT_GRPC_UNAVAILABLE;
			snprintf(p->st.msg, sizeof(p->st.msg),
				 "node at %.200s: %.290s", p->address,
				 err.msg[0] ? err.msg : drift_strerror(rv));
			record(p, 0); /* never started: no latency */
			pthread_mutex_lock(&w.mu);
			w.left--;
			pthread_mutex_unlock(&w.mu);
		}
	}
	/* Wait for every answer; a caller that goes away meanwhile (its
	 * client cancelled, or its deadline passed) has its parts cancelled
	 * at once instead (caller_gone): the nodes stop, and the handler
	 * returns. */
	w.slots = slots;
	w.n = slots != NULL ? n : 0;
	bool watching = caller != NULL &&
			drift_grpc_call_on_cancel(caller, caller_gone, &w);
	if (caller != NULL && !watching)
		caller_gone(&w);
	pthread_mutex_lock(&w.mu);
	while (w.left > 0)
		pthread_cond_wait(&w.cond, &w.mu);
	pthread_mutex_unlock(&w.mu);
	if (watching)
		drift_grpc_call_on_cancel(caller, NULL, NULL);
	for (size_t i = 0; slots != NULL && i < n; i++)
		if (slots[i].call != NULL)
			drift_grpc_ccall_release(slots[i].call);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.mu);
	drift_free(slots);
}

/* ---- Asynchronous ---- */

struct async {
	pthread_mutex_t mu;
	size_t left; /* parts not answered, + 1 for the starter */
	struct aslot *slots;
	size_t n;
	drift_grpc_call *caller;
	bool watching;
	drift_fanout_done done;
	void *arg;
};

struct aslot {
	struct async *a;
	drift_fanout_part *part;
	uint64_t t0;
	drift_grpc_ccall *call;
	bool answered; /* under a->mu */
};

/* The last of the parts and the starter: the caller is let go, the
 * handles released, the owner told. */
static void async_end(struct async *a)
{
	if (a->watching)
		drift_grpc_call_on_cancel(a->caller, NULL, NULL);
	for (size_t i = 0; i < a->n; i++)
		if (a->slots[i].call != NULL)
			drift_grpc_ccall_release(a->slots[i].call);
	drift_fanout_done fin = a->done;
	void *arg = a->arg;
	pthread_mutex_destroy(&a->mu);
	drift_free(a->slots);
	drift_free(a);
	fin(arg);
}

static void async_put(struct async *a)
{
	pthread_mutex_lock(&a->mu);
	bool last = --a->left == 0;
	pthread_mutex_unlock(&a->mu);
	if (last)
		async_end(a);
}

static void async_part_done(void *arg, const drift_grpc_status *st,
			    drift_grpc_msg *resp)
{
	struct aslot *s = arg;
	s->part->st = *st;
	s->part->resp = resp;
	record(s->part, s->t0);
	drift_metrics_gauge_add(fanout_in_flight, -1);
	pthread_mutex_lock(&s->a->mu);
	s->answered = true;
	pthread_mutex_unlock(&s->a->mu);
	async_put(s->a);
}

/* As caller_gone, for an asynchronous fan-out. */
static void async_gone(void *arg)
{
	struct async *a = arg;
	pthread_mutex_lock(&a->mu);
	for (size_t i = 0; i < a->n; i++)
		if (a->slots[i].call != NULL && !a->slots[i].answered) {
			drift_grpc_ccall_cancel(a->slots[i].call);
			drift_metrics_inc(fanout_cancelled);
		}
	pthread_mutex_unlock(&a->mu);
}

int drift_fanout_start(drift_rmap_follower *f, drift_grpc_call *caller,
		       drift_fanout_part *parts, size_t n, uint64_t timeout_ns,
		       drift_fanout_done on_done, void *arg)
{
	pthread_once(&metrics_once, metrics_init);
	struct async *a = drift_calloc(1, sizeof(*a));
	struct aslot *slots = drift_calloc(n ? n : 1, sizeof(*slots));
	if (a == NULL || slots == NULL) {
		drift_free(a);
		drift_free(slots);
		return DRIFT_ENOMEM;
	}
	pthread_mutex_init(&a->mu, NULL);
	a->left = n + 1;
	a->slots = slots;
	a->n = n;
	a->caller = caller;
	a->done = on_done;
	a->arg = arg;
	for (size_t i = 0; i < n; i++) {
		drift_fanout_part *p = &parts[i];
		p->resp = NULL;
		memset(&p->st, 0, sizeof(p->st));
		slots[i].a = a;
		slots[i].part = p;
		drift_grpc_client *cl = NULL;
		drift_err err;
		drift_err_clear(&err);
		int rv = p->address[0] == '\0'
				 ? drift_err_set(&err, DRIFT_EUNAVAIL,
						 "the map names no node for it")
				 : drift_rmap_client(f, p->address, &cl, &err);
		if (rv == 0) {
			slots[i].t0 = drift_now_ns();
			drift_metrics_gauge_add(fanout_in_flight, 1);
			rv = drift_grpc_client_unary_start(
				cl, p->path, p->req, p->len, timeout_ns,
				async_part_done, &slots[i], &slots[i].call);
			if (rv != 0)
				drift_metrics_gauge_add(fanout_in_flight, -1);
		}
		if (rv != 0) {
			p->st.code = DRIFT_GRPC_UNAVAILABLE;
			snprintf(p->st.msg, sizeof(p->st.msg),
				 "node at %.200s: %.290s", p->address,
				 err.msg[0] ? err.msg : drift_strerror(rv));
			record(p, 0);
			pthread_mutex_lock(&a->mu);
			a->left--;
			pthread_mutex_unlock(&a->mu);
		}
	}
	if (caller != NULL) {
		a->watching = drift_grpc_call_on_cancel(caller, async_gone, a);
		if (!a->watching)
			async_gone(a);
	}
	async_put(a); /* the starter's count */
	return 0;
}

void drift_fanout_run(drift_rmap_follower *f, drift_fanout_part *parts,
		      size_t n, uint64_t timeout_ns)
{
	drift_fanout_run_for(f, NULL, parts, n, timeout_ns);
}

void drift_fanout_free(drift_fanout_part *parts, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		drift_grpc_msg_free(parts[i].resp);
		parts[i].resp = NULL;
	}
}

const drift_fanout_part *drift_fanout_failed(const drift_fanout_part *parts,
					     size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (parts[i].st.code != DRIFT_GRPC_OK)
			return &parts[i];
	return NULL;
}
