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

struct wait {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	size_t left;
};

struct slot {
	struct wait *w;
	drift_fanout_part *part;
	uint64_t t0;
};

/* drift_router_fanout_seconds{node}: each node's part of a fan-out, from
 * the call started to its answer; drift_router_fanout_failures_total{node}
 * the parts that did not answer OK. Made on first use. */
static drift_metric_family *fanout_seconds, *fanout_failures;
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
	pthread_mutex_lock(&s->w->mu);
	if (--s->w->left == 0)
		pthread_cond_broadcast(&s->w->cond);
	pthread_mutex_unlock(&s->w->mu);
}

void drift_fanout_run(drift_rmap_follower *f, drift_fanout_part *parts,
		      size_t n, uint64_t timeout_ns)
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
			rv = drift_grpc_client_unary_async(cl, p->path, p->req,
							   p->len, timeout_ns,
							   done, &slots[i]);
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
	pthread_mutex_lock(&w.mu);
	while (w.left > 0)
		pthread_cond_wait(&w.cond, &w.mu);
	pthread_mutex_unlock(&w.mu);
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.mu);
	drift_free(slots);
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
