#include "common/grpc/stream.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "common/clock.h"
#include "common/err.h"

void drift_grpc_cond_init(pthread_cond_t *cv)
{
	pthread_condattr_t a;
	pthread_condattr_init(&a);
	pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
	pthread_cond_init(cv, &a);
	pthread_condattr_destroy(&a);
}

int drift_grpc_cond_wait(pthread_cond_t *cv, pthread_mutex_t *mu,
			 uint64_t deadline)
{
	if (deadline == UINT64_MAX)
		return pthread_cond_wait(cv, mu);
	struct timespec ts = {
		.tv_sec = (time_t)(deadline / 1000000000u),
		.tv_nsec = (long)(deadline % 1000000000u),
	};
	return pthread_cond_timedwait(cv, mu, &ts);
}

void drift_grpc_stream_init(drift_grpc_stream *s, size_t in_limit,
			    size_t out_limit)
{
	memset(s, 0, sizeof(*s));
	pthread_mutex_init(&s->mu, NULL);
	drift_grpc_cond_init(&s->cv);
	atomic_init(&s->refs, 1);
	s->in_limit = in_limit;
	s->out_limit = out_limit;
}

static void free_list(drift_grpc_msg *m)
{
	while (m != NULL) {
		drift_grpc_msg *next = m->next;
		drift_grpc_msg_free(m);
		m = next;
	}
}

void drift_grpc_stream_fini(drift_grpc_stream *s)
{
	free_list(s->in_head);
	free_list(s->out_head);
	s->in_head = s->out_head = NULL;
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->cv);
}

void drift_grpc_stream_ref(drift_grpc_stream *s)
{
	atomic_fetch_add_explicit(&s->refs, 1, memory_order_relaxed);
}

void drift_grpc_stream_unref(drift_grpc_stream *s)
{
	if (atomic_fetch_sub_explicit(&s->refs, 1, memory_order_acq_rel) == 1)
		s->destroy(s);
}

void drift_grpc_stream_push_in(drift_grpc_stream *s, drift_grpc_msg *m)
{
	pthread_mutex_lock(&s->mu);
	if (s->err != 0) {
		/* Nobody will read it: the window is given back at once. */
		s->to_consume += m->len + DRIFT_GRPC_PREFIX;
		pthread_mutex_unlock(&s->mu);
		drift_grpc_msg_free(m);
		return;
	}
	if (s->in_tail != NULL)
		s->in_tail->next = m;
	else
		s->in_head = m;
	s->in_tail = m;
	s->in_bytes += m->len + DRIFT_GRPC_PREFIX;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

size_t drift_grpc_stream_arrived(drift_grpc_stream *s, size_t n)
{
	size_t now;
	pthread_mutex_lock(&s->mu);
	if (s->in_bytes < s->in_limit || s->err != 0) {
		now = n;
	} else {
		s->held += n;
		now = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return now;
}

size_t drift_grpc_stream_take_consumed(drift_grpc_stream *s)
{
	size_t n = 0;
	pthread_mutex_lock(&s->mu);
	n = s->to_consume;
	s->to_consume = 0;
	if (s->held > 0 && (s->in_bytes < s->in_limit || s->err != 0)) {
		n += s->held;
		s->held = 0;
	}
	pthread_mutex_unlock(&s->mu);
	return n;
}

void drift_grpc_stream_end_in(drift_grpc_stream *s)
{
	pthread_mutex_lock(&s->mu);
	s->in_end = true;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

void drift_grpc_stream_fail(drift_grpc_stream *s, int err)
{
	pthread_mutex_lock(&s->mu);
	if (s->err == 0)
		s->err = err;
	pthread_cond_broadcast(&s->cv);
	pthread_mutex_unlock(&s->mu);
}

size_t drift_grpc_stream_read_out(drift_grpc_stream *s, uint8_t *buf,
				  size_t cap, bool *drained)
{
	size_t n = 0;
	pthread_mutex_lock(&s->mu);
	while (n < cap && s->out_head != NULL) {
		drift_grpc_msg *m = s->out_head;
		size_t take = m->len - s->out_off;
		if (take > cap - n)
			take = cap - n;
		memcpy(buf + n, m->data + s->out_off, take);
		n += take;
		s->out_off += take;
		if (s->out_off == m->len) {
			s->out_head = m->next;
			if (s->out_head == NULL)
				s->out_tail = NULL;
			s->out_off = 0;
			drift_grpc_msg_free(m);
		}
	}
	bool was_full = s->out_bytes >= s->out_limit;
	s->out_bytes -= n;
	if (was_full && s->out_bytes < s->out_limit)
		pthread_cond_broadcast(&s->cv);
	*drained = s->out_head == NULL && s->out_end;
	pthread_mutex_unlock(&s->mu);
	return n;
}

bool drift_grpc_stream_out_ready(drift_grpc_stream *s)
{
	pthread_mutex_lock(&s->mu);
	bool r = s->out_head != NULL || s->out_end;
	pthread_mutex_unlock(&s->mu);
	return r;
}

int drift_grpc_stream_pop_in(drift_grpc_stream *s, uint64_t deadline,
			     drift_grpc_msg **m)
{
	int rv;
	bool wake = false;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->in_head != NULL) {
			drift_grpc_msg *h = s->in_head;
			s->in_head = h->next;
			if (s->in_head == NULL)
				s->in_tail = NULL;
			h->next = NULL;
			size_t sz = h->len + DRIFT_GRPC_PREFIX;
			bool was_full = s->in_bytes >= s->in_limit;
			s->in_bytes -= sz;
			wake = was_full && s->in_bytes < s->in_limit &&
			       s->held > 0;
			*m = h;
			rv = 1;
			break;
		}
		if (s->err != 0) {
			rv = s->err;
			break;
		}
		if (s->in_end) {
			rv = 0;
			break;
		}
		if (drift_grpc_cond_wait(&s->cv, &s->mu, deadline) ==
		    ETIMEDOUT) {
			rv = DRIFT_ETIMEDOUT;
			break;
		}
	}
	pthread_mutex_unlock(&s->mu);
	if (wake)
		s->wake(s);
	return rv;
}

int drift_grpc_stream_push_out(drift_grpc_stream *s, const void *data,
			       size_t len, uint64_t deadline)
{
	if (len > UINT32_MAX)
		return DRIFT_ELIMIT;
	drift_grpc_msg *m = drift_grpc_msg_new(NULL, len + DRIFT_GRPC_PREFIX);
	if (m == NULL)
		return DRIFT_ENOMEM;
	drift_grpc_prefix(m->data, (uint32_t)len);
	if (len > 0)
		memcpy(m->data + DRIFT_GRPC_PREFIX, data, len);
	int rv = 0;
	bool wake;
	pthread_mutex_lock(&s->mu);
	for (;;) {
		if (s->err != 0) {
			rv = s->err;
			break;
		}
		if (s->out_end) {
			rv = DRIFT_EINVAL;
			break;
		}
		/* One message always fits, however large: the limit bounds
		 * what waits behind it. */
		if (s->out_bytes < s->out_limit)
			break;
		if (drift_grpc_cond_wait(&s->cv, &s->mu, deadline) ==
		    ETIMEDOUT) {
			rv = DRIFT_ETIMEDOUT;
			break;
		}
	}
	if (rv == 0) {
		if (s->out_tail != NULL)
			s->out_tail->next = m;
		else
			s->out_head = m;
		s->out_tail = m;
		s->out_bytes += m->len;
		m = NULL;
	}
	wake = rv == 0 && !s->out_hold;
	pthread_mutex_unlock(&s->mu);
	drift_grpc_msg_free(m);
	if (wake)
		s->wake(s);
	return rv;
}

int drift_grpc_stream_end_out(drift_grpc_stream *s)
{
	pthread_mutex_lock(&s->mu);
	int rv = s->out_end ? DRIFT_EINVAL : 0;
	s->out_end = true;
	pthread_mutex_unlock(&s->mu);
	if (rv == 0)
		s->wake(s);
	return rv;
}
