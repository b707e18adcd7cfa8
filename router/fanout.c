/*
 * Parallel unary calls (see fanout.h).
 */
#include "router/fanout.h"

#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"

struct wait {
	pthread_mutex_t mu;
	pthread_cond_t cond;
	size_t left;
};

struct slot {
	struct wait *w;
	drift_fanout_part *part;
};

static void done(void *arg, const drift_grpc_status *st, drift_grpc_msg *resp)
{
	struct slot *s = arg;
	s->part->st = *st;
	s->part->resp = resp;
	pthread_mutex_lock(&s->w->mu);
	if (--s->w->left == 0)
		pthread_cond_broadcast(&s->w->cond);
	pthread_mutex_unlock(&s->w->mu);
}

void drift_fanout_run(drift_rmap_follower *f, drift_fanout_part *parts,
		      size_t n, uint64_t timeout_ns)
{
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
			rv = drift_grpc_client_unary_async(cl, p->path, p->req,
							   p->len, timeout_ns,
							   done, &slots[i]);
		}
		if (rv != 0) {
			p->st.code = DRIFT_GRPC_UNAVAILABLE;
			snprintf(p->st.msg, sizeof(p->st.msg),
				 "node at %.200s: %.290s", p->address,
				 err.msg[0] ? err.msg : drift_strerror(rv));
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
