/*
 * The gRPC server (see server.h for the contract).
 *
 * Who touches what:
 *   loop thread    the listener, every struct conn and nghttp2 session,
 *                  the loop-only fields of each call (marked below);
 *   worker thread  a call's handler, through the stream (stream.h) and the
 *                  status fields under the stream's mutex;
 *   any thread     the wake list and the shutdown flags (s->mu), the
 *                  health registry, the counters (atomics).
 * A worker that changes a call puts it on the wake list and wakes the loop
 * (uv_async_send); the loop then gives back flow-control window, submits
 * response headers or resumes the deferred data provider, and flushes.
 */
#include "common/grpc/server.h"

#include <assert.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/grpc/h2io.h"
#include "common/grpc/health.h"
#include "common/grpc/server_metrics.h"
#include "common/grpc/stream.h"
#include "common/log.h"
#include "common/pool.h"

#define MiB (1024u * 1024u)
#define HEADER_BYTES_MAX (16 * 1024)
#define OUT_LIMIT (4 * MiB)

struct method {
	char *path;
	enum drift_grpc_kind kind;
	drift_grpc_handler fn;
	void *ctx;
	bool cpu;		      /* runs on the fixed CPU pool */
	drift_grpc_fast_handler fast; /* tried on the loop first, or NULL */
	drift_grpc_method_metrics *metrics;
};

struct hdr {
	struct hdr *next;
	const char *value;
	char name[];
};

struct conn;

struct drift_grpc_call {
	drift_grpc_stream st; /* first: a stream pointer is a call pointer */
	drift_grpc_server *srv;

	/* Loop only. */
	struct conn *conn; /* NULL once the connection is gone */
	struct drift_grpc_call *cprev, *cnext;
	int32_t id;
	const struct method *m;
	char *path;
	bool post, ct_ok, te_bad, timeout_bad, encoding_bad;
	bool has_timeout;
	uint64_t timeout_ns;
	uint64_t t_start; /* request headers complete (metrics); 0: not yet */
	size_t hdr_bytes;
	drift_grpc_deframer df;
	unsigned in_msgs;
	bool dispatched, headers_sent, trailers_sent, rejected;
	bool remote_closed, deferred, closed;
	uv_timer_t *timer;

	/* Set before dispatch, read-only after. */
	struct hdr *hdrs;
	uint64_t deadline;

	/* Under st.mu. */
	bool finished;
	int code;
	char *msg;
	void (*on_cancel)(void *); /* drift_grpc_call_on_cancel */
	void *on_cancel_arg;
	bool taken;    /* by a fast handler (drift_grpc_call_release) */
	bool released; /* its owner's thread only */
	unsigned sent; /* handler thread only */
};

/* The call is over for its handler (st.mu held): tell the one waiting. */
static void cancel_hook_locked(drift_grpc_call *c)
{
	void (*fn)(void *) = c->on_cancel;
	c->on_cancel = NULL;
	if (fn != NULL)
		fn(c->on_cancel_arg);
}

struct conn {
	drift_h2io io; /* first */
	drift_grpc_server *srv;
	struct conn *prev, *next;
	drift_grpc_call *calls;
	uv_timer_t ka;
	int handles; /* open libuv handles: io.tcp and ka */
	bool ping_out;
	struct conn *flush_next; /* on_async's list of connections to flush */
	bool to_flush;
};

struct drift_grpc_server {
	drift_grpc_server_opts o;
	struct method *methods;
	size_t nmethods, capmethods;
	drift_grpc_health *health;
	drift_pool *pool;     /* elastic: handlers that may wait */
	drift_pool *cpu_pool; /* fixed: unary handlers that only compute */

	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t async;
	pthread_t thread;
	bool listening, started, stopped;
	int port;

	/* Loop only. */
	struct conn *conns;
	size_t nconns;
	bool going_away;

	pthread_mutex_t mu; /* wake list, flags, idle_cv */
	pthread_cond_t idle_cv;
	drift_grpc_stream *wake_head;
	bool want_goaway, want_force, want_stop, shutting_down;

	atomic_ullong n_conns, calls_active, calls_total, calls_refused;
};

/* ---- Helpers ---- */

static void server_wake(drift_grpc_server *s)
{
	uv_async_send(&s->async);
}

static void call_wake(drift_grpc_stream *st)
{
	drift_grpc_call *c = (drift_grpc_call *)st;
	drift_grpc_server *s = c->srv;
	pthread_mutex_lock(&s->mu);
	if (!st->queued) {
		st->queued = true;
		drift_grpc_stream_ref(st);
		st->wake_next = s->wake_head;
		s->wake_head = st;
	}
	pthread_mutex_unlock(&s->mu);
	server_wake(s);
}

static void call_destroy(drift_grpc_stream *st)
{
	drift_grpc_call *c = (drift_grpc_call *)st;
	drift_grpc_stream_fini(st);
	drift_grpc_deframer_free(&c->df);
	while (c->hdrs != NULL) {
		struct hdr *h = c->hdrs;
		c->hdrs = h->next;
		drift_free(h);
	}
	drift_free(c->path);
	drift_free(c->msg);
	drift_free(c);
}

/* grpc-status and grpc-message, appended to nv from index n. code and msg
 * are read under the stream's mutex. */
struct status_nv {
	char code[12];
	char msg[3 * DRIFT_ERR_MSG_MAX];
};

static size_t add_status(drift_grpc_call *c, nghttp2_nv *nv, size_t n,
			 struct status_nv *buf)
{
	pthread_mutex_lock(&c->st.mu);
	int code = c->code;
	snprintf(buf->code, sizeof(buf->code), "%d", c->code);
	buf->msg[0] = '\0';
	if (c->msg != NULL)
		drift_grpc_pct_encode(c->msg, strlen(c->msg), buf->msg,
				      sizeof(buf->msg));
	pthread_mutex_unlock(&c->st.mu);
	/* Every gRPC status goes out here once: the place to count it. */
	drift_grpc_metrics_record(c->m != NULL ? c->m->metrics : NULL, code,
				  c->t_start ? drift_now_ns() - c->t_start : 0);
	drift_h2_nv(&nv[n++], "grpc-status", buf->code);
	if (buf->msg[0] != '\0')
		drift_h2_nv(&nv[n++], "grpc-message", buf->msg);
	return n;
}

static void stop_timer(drift_grpc_call *c);

/* ---- Sending (loop) ---- */

static ssize_t read_out(nghttp2_session *session, int32_t id, uint8_t *buf,
			size_t len, uint32_t *flags, nghttp2_data_source *src,
			void *user)
{
	(void)user;
	drift_grpc_call *c = src->ptr;
	bool drained;
	size_t n = drift_grpc_stream_read_out(&c->st, buf, len, &drained);
	if (drained) {
		nghttp2_nv nv[2];
		struct status_nv sb;
		size_t k = add_status(c, nv, 0, &sb);
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (nghttp2_submit_trailer(session, id, nv, k) == 0)
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		c->trailers_sent = true;
		return (ssize_t)n;
	}
	if (n == 0) {
		c->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

static void submit_trailers_only(drift_grpc_call *c)
{
	nghttp2_nv nv[4];
	struct status_nv sb;
	drift_h2_nv(&nv[0], ":status", "200");
	drift_h2_nv(&nv[1], "content-type", "application/grpc");
	size_t n = add_status(c, nv, 2, &sb);
	nghttp2_submit_response(c->conn->io.session, c->id, nv, n, NULL);
	c->headers_sent = c->trailers_sent = true;
}

static void submit_headers(drift_grpc_call *c)
{
	nghttp2_nv nv[2];
	drift_h2_nv(&nv[0], ":status", "200");
	drift_h2_nv(&nv[1], "content-type", "application/grpc");
	nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_out};
	nghttp2_submit_response(c->conn->io.session, c->id, nv, 2, &dp);
	c->headers_sent = true;
}

/* Answers an HTTP-level error (no gRPC status) and refuses the rest. */
static void http_error(drift_grpc_call *c, const char *status)
{
	nghttp2_nv nv[1];
	drift_h2_nv(&nv[0], ":status", status);
	nghttp2_submit_response(c->conn->io.session, c->id, nv, 1, NULL);
	c->headers_sent = c->trailers_sent = c->rejected = true;
	atomic_fetch_add(&c->srv->calls_refused, 1);
	drift_grpc_metrics_http_refused();
}

/* Brings the wire up to date with the call's queues (loop). */
static void call_sync(drift_grpc_call *c)
{
	if (c->conn == NULL || c->closed)
		return;
	nghttp2_session *session = c->conn->io.session;
	size_t give = drift_grpc_stream_take_consumed(&c->st);
	if (give > 0)
		nghttp2_session_consume(session, c->id, give);
	if (c->trailers_sent)
		return;
	pthread_mutex_lock(&c->st.mu);
	bool has = c->st.out_head != NULL;
	bool end = c->st.out_end;
	pthread_mutex_unlock(&c->st.mu);
	if (!c->headers_sent) {
		if (end && !has)
			submit_trailers_only(c);
		else if (has || end)
			submit_headers(c);
	} else if (c->deferred && (has || end)) {
		c->deferred = false;
		nghttp2_session_resume_data(session, c->id);
	}
}

/* The loop ends the call with a status of its own (a refused message, a
 * passed deadline, shutdown): the handler's later sends fail with
 * user_err and its status is ignored. */
static void call_abort(drift_grpc_call *c, int code, int user_err,
		       const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void call_abort(drift_grpc_call *c, int code, int user_err,
		       const char *fmt, ...)
{
	char msg[DRIFT_ERR_MSG_MAX];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	c->rejected = true;
	bool midway = false;
	pthread_mutex_lock(&c->st.mu);
	if (!c->trailers_sent) {
		c->finished = true;
		c->code = code;
		drift_free(c->msg);
		c->msg = drift_strdup(msg);
		/* Queued messages are dropped, unless one is half sent. */
		midway = c->st.out_off > 0;
		drift_grpc_msg *m =
			midway ? c->st.out_head->next : c->st.out_head;
		if (midway)
			c->st.out_head->next = NULL;
		else
			c->st.out_head = NULL;
		while (m != NULL) {
			drift_grpc_msg *next = m->next;
			c->st.out_bytes -= m->len;
			drift_grpc_msg_free(m);
			m = next;
		}
		c->st.out_tail = c->st.out_head;
		c->st.out_end = true;
	}
	if (c->st.err == 0)
		c->st.err = user_err;
	pthread_cond_broadcast(&c->st.cv);
	cancel_hook_locked(c);
	pthread_mutex_unlock(&c->st.mu);
	if (!c->dispatched)
		atomic_fetch_add(&c->srv->calls_refused, 1);
	if (c->conn == NULL || c->closed)
		return;
	if (midway && c->headers_sent)
		nghttp2_submit_rst_stream(c->conn->io.session,
					  NGHTTP2_FLAG_NONE, c->id,
					  NGHTTP2_CANCEL);
	else
		call_sync(c);
}

/* The handler sends exactly one message. */
static bool unary_output(const struct method *m)
{
	return m->kind == DRIFT_GRPC_UNARY ||
	       m->kind == DRIFT_GRPC_CLIENT_STREAM;
}

/* ---- Dispatch ---- */

/* Request ids for log lines: the client's x-request-id, else one of ours,
 * unique within the process. */
static atomic_ullong next_request_id;

/* One line per call, under the call's request id: a server-side failure
 * (INTERNAL, UNKNOWN, DATA_LOSS) as a warning, every other at debug. */
static void log_call(drift_grpc_call *c)
{
	if (!drift_log_enabled(DRIFT_LOG_WARN))
		return;
	char msg[256];
	pthread_mutex_lock(&c->st.mu);
	int code = c->code;
	snprintf(msg, sizeof(msg), "%s", c->msg != NULL ? c->msg : "");
	pthread_mutex_unlock(&c->st.mu);
	double ms =
		c->t_start ? (double)(drift_now_ns() - c->t_start) / 1e6 : 0;
	if (code == DRIFT_GRPC_INTERNAL || code == DRIFT_GRPC_UNKNOWN ||
	    code == DRIFT_GRPC_DATA_LOSS)
		DRIFT_WARN("grpc: %s: %s after %.3f ms: %s", c->path,
			   drift_grpc_code_name(code), ms, msg);
	else
		DRIFT_DEBUG("grpc: %s: %s after %.3f ms%s%s", c->path,
			    drift_grpc_code_name(code), ms, msg[0] ? ": " : "",
			    msg);
}

/* The handler is done with the call (it returned, or a fast handler's
 * call was finished): its reference and its place in calls_active go. */
static void handling_over(drift_grpc_call *c)
{
	drift_grpc_server *s = c->srv;
	drift_grpc_stream_unref(&c->st);
	pthread_mutex_lock(&s->mu);
	atomic_fetch_sub(&s->calls_active, 1);
	drift_grpc_metrics_in_flight(-1);
	pthread_cond_broadcast(&s->idle_cv);
	pthread_mutex_unlock(&s->mu);
}

static void run_handler(void *arg)
{
	drift_grpc_call *c = arg;
	char rid[32];
	const char *id = drift_grpc_call_header(c, "x-request-id");
	if (id == NULL) {
		snprintf(rid, sizeof(rid), "%x-%llx", (unsigned)getpid(),
			 atomic_fetch_add(&next_request_id, 1) + 1);
		id = rid;
	}
	drift_log_scope_set(NULL, -1, id);
	/* A deadline that passed while the call waited for a worker: the
	 * handler does not start (the loop's timer may not have fired yet). */
	if (c->deadline != UINT64_MAX && drift_now_ns() >= c->deadline)
		drift_grpc_call_finish(c, DRIFT_GRPC_DEADLINE_EXCEEDED,
				       "deadline exceeded before the handler "
				       "started");
	else
		c->m->fn(c, c->m->ctx);
	pthread_mutex_lock(&c->st.mu);
	bool fin = c->finished;
	pthread_mutex_unlock(&c->st.mu);
	if (!fin) {
		if (!drift_grpc_call_done(c))
			DRIFT_WARN("grpc: handler of %s returned without a "
				   "status",
				   c->path);
		drift_grpc_call_finish(c, DRIFT_GRPC_INTERNAL,
				       "handler returned without a status");
	}
	log_call(c);
	drift_log_scope_clear();
	handling_over(c);
}

static void dispatch(drift_grpc_call *c)
{
	drift_grpc_server *s = c->srv;
	c->dispatched = true;
	/* A unary or client-streaming call sends one message: it goes out
	 * when the handler finishes, headers, message and trailers in one
	 * write, and the loop is woken once. */
	c->st.out_hold = unary_output(c->m);
	drift_grpc_stream_ref(&c->st);
	atomic_fetch_add(&s->calls_active, 1);
	atomic_fetch_add(&s->calls_total, 1);
	drift_grpc_metrics_in_flight(1);
	if (c->m->fast != NULL && c->st.in_head != NULL) {
		/* Loop thread: the request is complete and nobody else has the
		 * call yet. Taken, it is finished later from any thread. */
		c->taken = true;
		if (c->m->fast(c, c->st.in_head, c->m->ctx))
			return;
		c->taken = false;
	}
	drift_pool *p = c->m->cpu ? s->cpu_pool : s->pool;
	if (drift_pool_submit(p, run_handler, c) != 0) {
		atomic_fetch_sub(&s->calls_active, 1);
		drift_grpc_metrics_in_flight(-1);
		drift_grpc_stream_unref(&c->st);
		call_abort(c, DRIFT_GRPC_UNAVAILABLE, DRIFT_ECLOSED,
			   "server cannot start the handler");
	}
}

static void on_timer_closed(uv_handle_t *h)
{
	drift_grpc_call *c = h->data;
	drift_free(h);
	drift_grpc_stream_unref(&c->st);
}

static void stop_timer(drift_grpc_call *c)
{
	if (c->timer == NULL)
		return;
	uv_close((uv_handle_t *)c->timer, on_timer_closed);
	c->timer = NULL;
}

static void on_deadline(uv_timer_t *t)
{
	drift_grpc_call *c = t->data;
	struct conn *conn = c->conn;
	stop_timer(c);
	call_abort(c, DRIFT_GRPC_DEADLINE_EXCEEDED, DRIFT_ETIMEDOUT,
		   "deadline exceeded");
	if (conn != NULL)
		drift_h2io_flush(&conn->io);
}

static void start_timer(drift_grpc_call *c, uint64_t ns)
{
	uv_timer_t *t = drift_malloc(sizeof(*t));
	if (t == NULL)
		return; /* the handler still sees its deadline */
	uv_timer_init(&c->srv->loop, t);
	t->data = c;
	drift_grpc_stream_ref(&c->st);
	c->timer = t;
	uint64_t ms = ns / 1000000 + (ns % 1000000 != 0);
	uv_timer_start(t, on_deadline, ms, 0);
}

static const struct method *find_method(drift_grpc_server *s, const char *p)
{
	for (size_t i = 0; i < s->nmethods; i++)
		if (strcmp(s->methods[i].path, p) == 0)
			return &s->methods[i];
	return NULL;
}

static bool unary_input(const struct method *m)
{
	return m->kind == DRIFT_GRPC_UNARY ||
	       m->kind == DRIFT_GRPC_SERVER_STREAM;
}

/* The request headers are complete (loop). */
static void on_request(drift_grpc_call *c)
{
	drift_grpc_server *s = c->srv;
	c->t_start = drift_now_ns();
	if (!c->post) {
		http_error(c, "405");
		return;
	}
	if (!c->ct_ok) {
		http_error(c, "415");
		return;
	}
	if (c->te_bad) {
		http_error(c, "400");
		return;
	}
	if (c->path == NULL || (c->m = find_method(s, c->path)) == NULL) {
		call_abort(c, DRIFT_GRPC_UNIMPLEMENTED, DRIFT_ECANCELED,
			   "unknown method %s", c->path ? c->path : "(none)");
		return;
	}
	if (c->encoding_bad) {
		call_abort(c, DRIFT_GRPC_UNIMPLEMENTED, DRIFT_ECANCELED,
			   "grpc-encoding not supported: only identity");
		return;
	}
	if (c->timeout_bad) {
		call_abort(c, DRIFT_GRPC_INTERNAL, DRIFT_ECANCELED,
			   "malformed grpc-timeout");
		return;
	}
	if (c->conn->srv->going_away) {
		call_abort(c, DRIFT_GRPC_UNAVAILABLE, DRIFT_ECLOSED,
			   "server is shutting down");
		return;
	}
	c->deadline = UINT64_MAX;
	if (c->has_timeout) {
		if (c->timeout_ns == 0) {
			call_abort(c, DRIFT_GRPC_DEADLINE_EXCEEDED,
				   DRIFT_ETIMEDOUT, "deadline exceeded");
			return;
		}
		uint64_t now = drift_now_ns();
		c->deadline = c->timeout_ns > UINT64_MAX - now
				      ? UINT64_MAX - 1
				      : now + c->timeout_ns;
		start_timer(c, c->timeout_ns);
	}
	if (!unary_input(c->m))
		dispatch(c);
}

/* The client sent END_STREAM (loop). */
static void on_request_end(drift_grpc_call *c)
{
	c->remote_closed = true;
	if (c->rejected)
		return;
	if (!drift_grpc_deframer_idle(&c->df)) {
		call_abort(c, DRIFT_GRPC_INTERNAL, DRIFT_ECANCELED,
			   "stream ended inside a message");
		return;
	}
	drift_grpc_stream_end_in(&c->st);
	if (c->m != NULL && unary_input(c->m) && !c->dispatched) {
		if (c->in_msgs != 1)
			call_abort(c, DRIFT_GRPC_INTERNAL, DRIFT_ECANCELED,
				   "expected one request message, got %u",
				   c->in_msgs);
		else
			dispatch(c);
	}
}

/* ---- nghttp2 callbacks (loop) ---- */

static int on_begin_headers(nghttp2_session *session,
			    const nghttp2_frame *frame, void *user)
{
	struct conn *conn = user;
	if (frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	drift_grpc_call *c = drift_calloc(1, sizeof(*c));
	if (c == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	drift_grpc_stream_init(&c->st, OUT_LIMIT, OUT_LIMIT);
	c->st.wake = call_wake;
	c->st.destroy = call_destroy;
	c->srv = conn->srv;
	c->conn = conn;
	c->id = frame->hd.stream_id;
	drift_grpc_deframer_init(&c->df, conn->srv->o.max_recv_msg);
	c->cnext = conn->calls;
	if (conn->calls != NULL)
		conn->calls->cprev = c;
	conn->calls = c;
	nghttp2_session_set_stream_user_data(session, c->id, c);
	return 0;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *user)
{
	(void)flags;
	(void)user;
	drift_grpc_call *c = nghttp2_session_get_stream_user_data(
		session, frame->hd.stream_id);
	if (c == NULL || frame->hd.type != NGHTTP2_HEADERS ||
	    frame->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	if (drift_h2_is(name, namelen, ":method")) {
		c->post = drift_h2_is(value, valuelen, "POST");
	} else if (drift_h2_is(name, namelen, ":path")) {
		drift_free(c->path);
		c->path = drift_strndup((const char *)value, valuelen);
		if (c->path == NULL)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	} else if (drift_h2_is(name, namelen, "content-type")) {
		const char *g = "application/grpc";
		size_t gl = strlen(g);
		c->ct_ok = valuelen >= gl && memcmp(value, g, gl) == 0 &&
			   (valuelen == gl || value[gl] == '+' ||
			    value[gl] == ';');
	} else if (drift_h2_is(name, namelen, "te")) {
		c->te_bad = !drift_h2_is(value, valuelen, "trailers");
	} else if (drift_h2_is(name, namelen, "grpc-timeout")) {
		c->has_timeout = true;
		c->timeout_bad =
			drift_grpc_timeout_parse((const char *)value, valuelen,
						 &c->timeout_ns) != 0;
	} else if (drift_h2_is(name, namelen, "grpc-encoding")) {
		c->encoding_bad = !drift_h2_is(value, valuelen, "identity");
	} else if (namelen > 0 && name[0] != ':') {
		/* Metadata for the handler, within a budget. */
		if (c->hdr_bytes + namelen + valuelen > HEADER_BYTES_MAX)
			return 0;
		struct hdr *h =
			drift_malloc(sizeof(*h) + namelen + valuelen + 2);
		if (h == NULL)
			return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
		memcpy(h->name, name, namelen);
		h->name[namelen] = '\0';
		char *v = h->name + namelen + 1;
		memcpy(v, value, valuelen);
		v[valuelen] = '\0';
		h->value = v;
		h->next = c->hdrs;
		c->hdrs = h;
		c->hdr_bytes += namelen + valuelen;
	}
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
			 void *user)
{
	struct conn *conn = user;
	if (frame->hd.type == NGHTTP2_PING &&
	    (frame->hd.flags & NGHTTP2_FLAG_ACK)) {
		conn->ping_out = false;
		return 0;
	}
	if (frame->hd.type != NGHTTP2_HEADERS && frame->hd.type != NGHTTP2_DATA)
		return 0;
	drift_grpc_call *c = nghttp2_session_get_stream_user_data(
		session, frame->hd.stream_id);
	if (c == NULL)
		return 0;
	if (frame->hd.type == NGHTTP2_HEADERS &&
	    frame->headers.cat == NGHTTP2_HCAT_REQUEST)
		on_request(c);
	if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM)
		on_request_end(c);
	return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id,
		   const uint8_t *data, size_t len, void *user)
{
	(void)flags;
	(void)user;
	drift_grpc_call *c = nghttp2_session_get_stream_user_data(session, id);
	if (c == NULL || c->rejected || c->m == NULL) {
		nghttp2_session_consume(session, id, len);
		return 0;
	}
	size_t now = drift_grpc_stream_arrived(&c->st, len);
	if (now > 0)
		nghttp2_session_consume(session, id, now);
	size_t pos = 0;
	while (pos < len && !c->rejected) {
		size_t used = 0;
		drift_grpc_msg *m = NULL;
		int rv = drift_grpc_deframer_feed(&c->df, data + pos, len - pos,
						  &used, &m);
		pos += used;
		if (rv == 0)
			break;
		if (rv == 1) {
			c->in_msgs++;
			if (unary_input(c->m) && c->in_msgs > 1) {
				drift_grpc_msg_free(m);
				call_abort(c, DRIFT_GRPC_INTERNAL,
					   DRIFT_ECANCELED,
					   "more than one request message");
				break;
			}
			drift_grpc_stream_push_in(&c->st, m);
			continue;
		}
		if (rv == DRIFT_ELIMIT)
			call_abort(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				   DRIFT_ECANCELED,
				   "received message larger than max "
				   "(%zu vs. %zu)",
				   c->df.announced, c->df.max);
		else if (rv == DRIFT_ENOTSUP)
			call_abort(c, DRIFT_GRPC_INTERNAL, DRIFT_ECANCELED,
				   "compressed message without grpc-encoding");
		else if (rv == DRIFT_ENOMEM)
			call_abort(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				   DRIFT_ECANCELED,
				   "out of memory for a message of %zu bytes",
				   c->df.announced);
		else
			call_abort(c, DRIFT_GRPC_INTERNAL, DRIFT_ECANCELED,
				   "bad message prefix");
	}
	/* Whatever a rejected call held back is given back now. */
	if (c->rejected) {
		size_t give = drift_grpc_stream_take_consumed(&c->st);
		if (give > 0)
			nghttp2_session_consume(session, id, give);
	}
	return 0;
}

static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame,
			 void *user)
{
	(void)user;
	if (frame->hd.type == NGHTTP2_GOAWAY &&
	    frame->goaway.error_code != NGHTTP2_NO_ERROR)
		DRIFT_WARN("grpc: closing a connection: %.*s (GOAWAY %s)",
			   (int)(frame->goaway.opaque_data_len < 200
					 ? frame->goaway.opaque_data_len
					 : 200),
			   (const char *)frame->goaway.opaque_data,
			   nghttp2_http2_strerror(frame->goaway.error_code));
	if (!(frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	drift_grpc_call *c = nghttp2_session_get_stream_user_data(
		session, frame->hd.stream_id);
	/* Our response is complete while the client still sends: tell it to
	 * stop (RFC 9113 section 8.1). */
	if (c != NULL && !c->remote_closed)
		nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE,
					  frame->hd.stream_id,
					  NGHTTP2_NO_ERROR);
	return 0;
}

static void call_detach(drift_grpc_call *c)
{
	struct conn *conn = c->conn;
	if (c->cprev != NULL)
		c->cprev->cnext = c->cnext;
	else
		conn->calls = c->cnext;
	if (c->cnext != NULL)
		c->cnext->cprev = c->cprev;
	c->cprev = c->cnext = NULL;
	c->conn = NULL;
	c->closed = true;
	stop_timer(c);
	/* A call whose stream went before its status (the client reset it:
	 * a cancel, or its connection died) is counted as CANCELLED, as gRPC
	 * servers report it; no latency. */
	if (c->m != NULL && c->t_start != 0 && !c->trailers_sent)
		drift_grpc_metrics_record(c->m->metrics, DRIFT_GRPC_CANCELLED,
					  0);
	/* The stream is gone: a handler still running is cancelled (one that
	 * finished is not affected). */
	drift_grpc_stream_fail(&c->st, DRIFT_ECANCELED);
	pthread_mutex_lock(&c->st.mu);
	cancel_hook_locked(c);
	pthread_mutex_unlock(&c->st.mu);
	drift_grpc_stream_unref(&c->st);
}

static int on_stream_close(nghttp2_session *session, int32_t id,
			   uint32_t error_code, void *user)
{
	(void)error_code;
	(void)user;
	drift_grpc_call *c = nghttp2_session_get_stream_user_data(session, id);
	if (c != NULL) {
		nghttp2_session_set_stream_user_data(session, id, NULL);
		call_detach(c);
	}
	return 0;
}

/* ---- Connections (loop) ---- */

static void conn_handle_closed(struct conn *conn)
{
	if (--conn->handles > 0)
		return;
	drift_grpc_server *s = conn->srv;
	while (conn->calls != NULL)
		call_detach(conn->calls);
	nghttp2_session_del(conn->io.session);
	if (conn->prev != NULL)
		conn->prev->next = conn->next;
	else
		s->conns = conn->next;
	if (conn->next != NULL)
		conn->next->prev = conn->prev;
	s->nconns--;
	atomic_fetch_sub(&s->n_conns, 1);
	drift_grpc_metrics_connections(-1);
	drift_free(conn);
}

static void on_io_close(drift_h2io *io)
{
	struct conn *conn = (struct conn *)io;
	DRIFT_DEBUG("grpc: connection closed (%s)", io->close_reason);
	conn_handle_closed(conn);
}

static void on_ka_closed(uv_handle_t *h)
{
	conn_handle_closed(h->data);
}

static void conn_close(struct conn *conn, const char *why)
{
	if (conn->io.closing)
		return;
	drift_h2io_close(&conn->io, why);
	uv_close((uv_handle_t *)&conn->ka, on_ka_closed);
}

static void on_io_close_both(drift_h2io *io)
{
	struct conn *conn = (struct conn *)io;
	if (!uv_is_closing((uv_handle_t *)&conn->ka))
		uv_close((uv_handle_t *)&conn->ka, on_ka_closed);
	on_io_close(io);
}

static void on_keepalive(uv_timer_t *t)
{
	struct conn *conn = t->data;
	if (conn->ping_out) {
		DRIFT_INFO("grpc: peer did not answer a keepalive ping");
		conn_close(conn, "keepalive timeout");
		return;
	}
	/* Pings only while calls are open: that is when a dead peer holds
	 * handlers and buffers (and some clients, Python grpcio among them,
	 * read nothing while they have no call, so they would miss pings).
	 * Idle connections are watched by TCP keepalive. */
	if (conn->calls == NULL) {
		uv_timer_start(t, on_keepalive,
			       conn->srv->o.keepalive_ns / 1000000, 0);
		return;
	}
	if (nghttp2_submit_ping(conn->io.session, NGHTTP2_FLAG_NONE, NULL) ==
	    0) {
		conn->ping_out = true;
		drift_h2io_flush(&conn->io);
		/* The next tick comes after the ack timeout. */
		uv_timer_start(t, on_keepalive,
			       conn->srv->o.keepalive_timeout_ns / 1000000, 0);
		return;
	}
}

static void conn_after_recv(drift_h2io *io)
{
	struct conn *conn = (struct conn *)io;
	/* Any frame from the peer proves it alive: restart the period. */
	if (!conn->ping_out && !uv_is_closing((uv_handle_t *)&conn->ka))
		uv_timer_start(&conn->ka, on_keepalive,
			       conn->srv->o.keepalive_ns / 1000000, 0);
}

static int conn_session(struct conn *conn)
{
	drift_grpc_server *s = conn->srv;
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	if (nghttp2_session_callbacks_new(&cb) != 0)
		return DRIFT_ENOMEM;
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cb);
		return DRIFT_ENOMEM;
	}
	nghttp2_session_callbacks_set_on_begin_headers_callback(
		cb, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_frame_send_callback(cb, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
							       on_stream_close);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	nghttp2_option_set_max_deflate_dynamic_table_size(opt, 4096);
	int rv = nghttp2_session_server_new2(&conn->io.session, cb, conn, opt);
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (rv != 0)
		return DRIFT_ENOMEM;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
		 s->o.max_concurrent_streams},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, s->o.stream_window},
		{NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
	};
	rv = nghttp2_submit_settings(conn->io.session, NGHTTP2_FLAG_NONE, iv,
				     sizeof(iv) / sizeof(iv[0]));
	if (rv == 0)
		rv = nghttp2_session_set_local_window_size(
			conn->io.session, NGHTTP2_FLAG_NONE, 0,
			(int32_t)s->o.conn_window);
	return rv == 0 ? 0 : DRIFT_ENOMEM;
}

static void on_connection(uv_stream_t *listener, int status)
{
	drift_grpc_server *s = listener->data;
	if (status < 0) {
		DRIFT_WARN("grpc: accept failed: %s", uv_strerror(status));
		return;
	}
	struct conn *conn = drift_calloc(1, sizeof(*conn));
	if (conn == NULL)
		return;
	drift_h2io_init(&s->loop, &conn->io);
	conn->srv = s;
	conn->io.on_close = on_io_close_both;
	conn->io.after_recv = conn_after_recv;
	uv_timer_init(&s->loop, &conn->ka);
	conn->ka.data = conn;
	conn->handles = 2;
	conn->next = s->conns;
	if (s->conns != NULL)
		s->conns->prev = conn;
	s->conns = conn;
	s->nconns++;
	atomic_fetch_add(&s->n_conns, 1);
	drift_grpc_metrics_connections(1);
	if (uv_accept(listener, (uv_stream_t *)&conn->io.tcp) != 0) {
		conn_close(conn, "accept failed");
		return;
	}
	if (s->nconns > s->o.max_connections || s->going_away) {
		conn_close(conn, "too many connections");
		return;
	}
	if (conn_session(conn) != 0 || drift_h2io_start(&conn->io) != 0) {
		conn_close(conn, "session setup failed");
		return;
	}
	uv_tcp_keepalive(&conn->io.tcp, 1, 60);
	uv_timer_start(&conn->ka, on_keepalive, s->o.keepalive_ns / 1000000, 0);
	drift_h2io_flush(&conn->io);
}

/* ---- Loop control ---- */

static void goaway_all(drift_grpc_server *s)
{
	if (s->going_away)
		return;
	s->going_away = true;
	if (s->listening) {
		uv_close((uv_handle_t *)&s->listener, NULL);
		s->listening = false;
	}
	for (struct conn *c = s->conns; c != NULL; c = c->next) {
		if (c->io.closing || c->io.session == NULL)
			continue;
		nghttp2_submit_goaway(
			c->io.session, NGHTTP2_FLAG_NONE,
			nghttp2_session_get_last_proc_stream_id(c->io.session),
			NGHTTP2_NO_ERROR, NULL, 0);
		drift_h2io_flush(&c->io);
	}
}

static void force_all(drift_grpc_server *s)
{
	for (struct conn *conn = s->conns; conn != NULL; conn = conn->next) {
		for (drift_grpc_call *c = conn->calls; c != NULL; c = c->cnext)
			call_abort(c, DRIFT_GRPC_UNAVAILABLE, DRIFT_ECLOSED,
				   "server is shutting down");
		if (!conn->io.closing)
			drift_h2io_flush(&conn->io);
		conn_close(conn, "shutdown");
	}
}

static void on_close_walk(uv_handle_t *h, void *arg)
{
	(void)arg;
	if (!uv_is_closing(h))
		uv_close(h, NULL);
}

static void on_async(uv_async_t *a)
{
	drift_grpc_server *s = a->data;
	pthread_mutex_lock(&s->mu);
	drift_grpc_stream *list = s->wake_head;
	s->wake_head = NULL;
	bool goaway = s->want_goaway, force = s->want_force,
	     stop = s->want_stop;
	pthread_mutex_unlock(&s->mu);
	/* An element stays marked queued until it is taken from the local
	 * list, so a concurrent wake cannot relink it while the rest of
	 * the list is still to be walked. Each connection is flushed once,
	 * after all its calls are synced: the responses that finished
	 * together go out in one write. Nothing here closes a connection,
	 * so the flush list stays valid. */
	struct conn *flush = NULL;
	while (list != NULL) {
		pthread_mutex_lock(&s->mu);
		drift_grpc_stream *next = list->wake_next;
		list->queued = false;
		pthread_mutex_unlock(&s->mu);
		drift_grpc_call *c = (drift_grpc_call *)list;
		struct conn *conn = c->conn;
		call_sync(c);
		if (conn != NULL && !conn->to_flush) {
			conn->to_flush = true;
			conn->flush_next = flush;
			flush = conn;
		}
		drift_grpc_stream_unref(list);
		list = next;
	}
	while (flush != NULL) {
		struct conn *conn = flush;
		flush = conn->flush_next;
		conn->to_flush = false;
		drift_h2io_flush(&conn->io);
	}
	if (goaway)
		goaway_all(s);
	if (force)
		force_all(s);
	if (stop) {
		/* Everything else is closed or closing: the loop ends when
		 * the last close callback has run. */
		for (struct conn *c = s->conns; c != NULL; c = c->next)
			conn_close(c, "stop");
		if (!uv_is_closing((uv_handle_t *)&s->async))
			uv_close((uv_handle_t *)&s->async, NULL);
	}
}

static void *loop_main(void *arg)
{
	drift_grpc_server *s = arg;
	uv_run(&s->loop, UV_RUN_DEFAULT);
	return NULL;
}

/* ---- Public API ---- */

int drift_grpc_server_new(const drift_grpc_server_opts *opts,
			  drift_grpc_server **out, drift_err *err)
{
	drift_grpc_server *s = drift_calloc(1, sizeof(*s));
	if (s == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "grpc server: %s",
				     drift_strerror(DRIFT_ENOMEM));
	if (opts != NULL)
		s->o = *opts;
	drift_grpc_server_opts *o = &s->o;
	if (o->max_recv_msg == 0)
		o->max_recv_msg = 64 * MiB;
	if (o->max_send_msg == 0)
		o->max_send_msg = 64 * MiB;
	if (o->workers == 0)
		o->workers = 4;
	if (o->max_workers == 0)
		o->max_workers = 512;
	if (o->max_workers < o->workers)
		o->max_workers = o->workers;
	if (o->cpu_workers == 0) {
		long n = sysconf(_SC_NPROCESSORS_ONLN);
		o->cpu_workers = n > 0 ? (unsigned)n : 1;
	}
	if (o->max_concurrent_streams == 0)
		o->max_concurrent_streams = 1000;
	if (o->max_connections == 0)
		o->max_connections = 4096;
	if (o->keepalive_ns == 0)
		o->keepalive_ns = 2ull * 3600 * 1000000000ull;
	if (o->keepalive_timeout_ns == 0)
		o->keepalive_timeout_ns = 20ull * 1000000000ull;
	if (o->stream_window == 0)
		o->stream_window = 4 * MiB;
	if (o->conn_window == 0)
		o->conn_window = 16 * MiB;
	if (o->stream_window > NGHTTP2_MAX_WINDOW_SIZE ||
	    o->conn_window > NGHTTP2_MAX_WINDOW_SIZE) {
		drift_free(s);
		return drift_err_set(err, DRIFT_EINVAL,
				     "grpc server: window over 2^31-1");
	}
	pthread_mutex_init(&s->mu, NULL);
	pthread_cond_init(&s->idle_cv, NULL);
	int rv = uv_loop_init(&s->loop);
	if (rv != 0) {
		pthread_mutex_destroy(&s->mu);
		pthread_cond_destroy(&s->idle_cv);
		drift_free(s);
		return drift_err_set(err, DRIFT_EIO, "grpc server: loop: %s",
				     uv_strerror(rv));
	}
	uv_async_init(&s->loop, &s->async, on_async);
	s->async.data = s;
	if ((rv = drift_grpc_health_new(&s->health)) != 0 ||
	    (rv = drift_grpc_health_register(s->health, s)) != 0) {
		drift_grpc_server_free(s);
		return drift_err_set(err, rv, "grpc server: health: %s",
				     drift_strerror(rv));
	}
	*out = s;
	return 0;
}

static int add_method(drift_grpc_server *s, const char *path,
		      enum drift_grpc_kind kind, bool cpu,
		      drift_grpc_fast_handler fast, drift_grpc_handler fn,
		      void *ctx)
{
	if (s->started || path == NULL || path[0] != '/' || fn == NULL)
		return DRIFT_EINVAL;
	if (find_method(s, path) != NULL)
		return DRIFT_EEXIST;
	if (s->nmethods == s->capmethods) {
		size_t cap = s->capmethods ? 2 * s->capmethods : 16;
		struct method *m = drift_realloc(s->methods, cap * sizeof(*m));
		if (m == NULL)
			return DRIFT_ENOMEM;
		s->methods = m;
		s->capmethods = cap;
	}
	char *p = drift_strdup(path);
	if (p == NULL)
		return DRIFT_ENOMEM;
	s->methods[s->nmethods++] =
		(struct method){.path = p,
				.kind = kind,
				.fn = fn,
				.ctx = ctx,
				.cpu = cpu,
				.fast = fast,
				.metrics = drift_grpc_method_metrics_get(p)};
	return 0;
}

int drift_grpc_server_add(drift_grpc_server *s, const char *path,
			  enum drift_grpc_kind kind, drift_grpc_handler fn,
			  void *ctx)
{
	return add_method(s, path, kind, false, NULL, fn, ctx);
}

int drift_grpc_server_add_fast(drift_grpc_server *s, const char *path,
			       drift_grpc_fast_handler fast,
			       drift_grpc_handler fn, void *ctx)
{
	if (fast == NULL)
		return DRIFT_EINVAL;
	return add_method(s, path, DRIFT_GRPC_UNARY, false, fast, fn, ctx);
}

int drift_grpc_server_add_cpu(drift_grpc_server *s, const char *path,
			      drift_grpc_handler fn, void *ctx)
{
	return add_method(s, path, DRIFT_GRPC_UNARY, true, NULL, fn, ctx);
}

int drift_grpc_server_listen(drift_grpc_server *s, const char *addr,
			     drift_err *err)
{
	struct sockaddr_storage ss;
	int rv = drift_grpc_resolve(addr, &ss, err);
	if (rv != 0)
		return drift_err_wrap(err, rv, "grpc server: listen");
	if (s->listening || s->started)
		return drift_err_set(err, DRIFT_EINVAL,
				     "grpc server: already listening");
	uv_tcp_init(&s->loop, &s->listener);
	s->listener.data = s;
	int rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&s->listener, 511, on_connection);
	if (rc != 0) {
		uv_close((uv_handle_t *)&s->listener, NULL);
		uv_run(&s->loop, UV_RUN_NOWAIT);
		return drift_err_set(
			err, rc == UV_EADDRINUSE ? DRIFT_EBUSY : DRIFT_EIO,
			"grpc server: listen on %s: %s", addr, uv_strerror(rc));
	}
	struct sockaddr_storage bound;
	int len = sizeof(bound);
	uv_tcp_getsockname(&s->listener, (struct sockaddr *)&bound, &len);
	s->port = bound.ss_family == AF_INET6
			  ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
			  : ntohs(((struct sockaddr_in *)&bound)->sin_port);
	s->listening = true;
	return 0;
}

int drift_grpc_server_port(const drift_grpc_server *s)
{
	return s->port;
}

int drift_grpc_server_start(drift_grpc_server *s, drift_err *err)
{
	if (s->started)
		return drift_err_set(err, DRIFT_EINVAL,
				     "grpc server: already started");
	int rv = drift_pool_new(s->o.workers, s->o.max_workers, &s->pool);
	if (rv != 0)
		return drift_err_set(err, rv, "grpc server: worker pool: %s",
				     drift_strerror(rv));
	rv = drift_pool_new(s->o.cpu_workers, s->o.cpu_workers, &s->cpu_pool);
	if (rv != 0) {
		drift_pool_free(s->pool);
		s->pool = NULL;
		return drift_err_set(err, rv, "grpc server: CPU pool: %s",
				     drift_strerror(rv));
	}
	drift_grpc_health_set(s->health, "", 1);
	rv = pthread_create(&s->thread, NULL, loop_main, s);
	if (rv != 0) {
		drift_pool_free(s->cpu_pool);
		drift_pool_free(s->pool);
		s->cpu_pool = s->pool = NULL;
		return drift_err_errno(err, rv, "grpc server: loop thread");
	}
	s->started = true;
	return 0;
}

int drift_grpc_server_set_health(drift_grpc_server *s, const char *service,
				 int status)
{
	return drift_grpc_health_set(s->health, service, status);
}

void drift_grpc_server_shutdown(drift_grpc_server *s, uint64_t grace_ns)
{
	pthread_mutex_lock(&s->mu);
	if (s->shutting_down || !s->started) {
		pthread_mutex_unlock(&s->mu);
		return;
	}
	s->shutting_down = true;
	s->want_goaway = true;
	pthread_mutex_unlock(&s->mu);
	drift_grpc_health_close(s->health);
	server_wake(s);

	uint64_t until = drift_now_ns() + grace_ns;
	struct timespec ts;
	pthread_mutex_lock(&s->mu);
	while (atomic_load(&s->calls_active) > 0) {
		uint64_t now = drift_now_ns();
		if (now >= until)
			break;
		/* idle_cv waits on the realtime clock: wait in short slices. */
		clock_gettime(CLOCK_REALTIME, &ts);
		uint64_t slice =
			until - now < 10000000 ? until - now : 10000000;
		ts.tv_nsec += (long)slice;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->idle_cv, &s->mu, &ts);
	}
	s->want_force = true;
	pthread_mutex_unlock(&s->mu);
	server_wake(s);
	/* Handlers see their calls cancelled and return; queued ones start,
	 * see theirs cancelled too, and return. */
	drift_pool_free(s->cpu_pool);
	drift_pool_free(s->pool);
	s->cpu_pool = s->pool = NULL;
	/* Calls taken by fast handlers, cancelled now, are finished by their
	 * owners (the calls they wait for end at once): the loop runs until
	 * then, 10 s at most. */
	until = drift_now_ns() + 10000000000ull;
	pthread_mutex_lock(&s->mu);
	while (atomic_load(&s->calls_active) > 0 && drift_now_ns() < until) {
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 10000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&s->idle_cv, &s->mu, &ts);
	}
	pthread_mutex_unlock(&s->mu);
	pthread_mutex_lock(&s->mu);
	s->want_stop = true;
	pthread_mutex_unlock(&s->mu);
	server_wake(s);
	pthread_join(s->thread, NULL);
	s->stopped = true;
}

void drift_grpc_server_free(drift_grpc_server *s)
{
	if (s == NULL)
		return;
	if (s->started)
		drift_grpc_server_shutdown(s, 0);
	else {
		uv_walk(&s->loop, on_close_walk, NULL);
		uv_run(&s->loop, UV_RUN_DEFAULT);
	}
	uv_loop_close(&s->loop);
	for (size_t i = 0; i < s->nmethods; i++)
		drift_free(s->methods[i].path);
	drift_free(s->methods);
	drift_grpc_health_free(s->health);
	pthread_mutex_destroy(&s->mu);
	pthread_cond_destroy(&s->idle_cv);
	drift_free(s);
}

void drift_grpc_server_stats_get(drift_grpc_server *s,
				 drift_grpc_server_stats *st)
{
	st->connections = atomic_load(&s->n_conns);
	st->calls_active = atomic_load(&s->calls_active);
	st->calls_total = atomic_load(&s->calls_total);
	st->calls_refused = atomic_load(&s->calls_refused);
}

/* ---- Handler side ---- */

const char *drift_grpc_call_path(const drift_grpc_call *c)
{
	return c->path;
}

uint64_t drift_grpc_call_deadline(const drift_grpc_call *c)
{
	return c->deadline;
}

const char *drift_grpc_call_header(const drift_grpc_call *c, const char *name)
{
	for (const struct hdr *h = c->hdrs; h != NULL; h = h->next)
		if (strcmp(h->name, name) == 0)
			return h->value;
	return NULL;
}

int drift_grpc_call_recv(drift_grpc_call *c, drift_grpc_msg **m)
{
	return drift_grpc_stream_pop_in(&c->st, c->deadline, m);
}

int drift_grpc_call_recv_pb(drift_grpc_call *c,
			    const ProtobufCMessageDescriptor *desc,
			    ProtobufCMessage **out)
{
	drift_grpc_msg *m = NULL;
	int rv = drift_grpc_call_recv(c, &m);
	if (rv != 1)
		return rv;
	ProtobufCMessage *pb =
		protobuf_c_message_unpack(desc, NULL, m->len, m->data);
	drift_grpc_msg_free(m);
	if (pb == NULL) {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "request is not a valid %s message",
				       desc->name);
		return DRIFT_EINVAL;
	}
	*out = pb;
	return 1;
}

int drift_grpc_call_send(drift_grpc_call *c, const void *data, size_t len)
{
	if (len > c->srv->o.max_send_msg)
		return DRIFT_ELIMIT;
	pthread_mutex_lock(&c->st.mu);
	bool fin = c->finished;
	pthread_mutex_unlock(&c->st.mu);
	if (fin)
		return DRIFT_EINVAL;
	if (c->m != NULL && unary_output(c->m) && c->sent > 0)
		return DRIFT_EINVAL;
	int rv = drift_grpc_stream_push_out(&c->st, data, len, c->deadline);
	if (rv == 0)
		c->sent++;
	return rv;
}

int drift_grpc_call_send_pb(drift_grpc_call *c, const ProtobufCMessage *m)
{
	size_t n = protobuf_c_message_get_packed_size(m);
	if (n > c->srv->o.max_send_msg)
		return DRIFT_ELIMIT;
	uint8_t small[512];
	uint8_t *buf = n <= sizeof(small) ? small : drift_malloc(n);
	if (buf == NULL)
		return DRIFT_ENOMEM;
	protobuf_c_message_pack(m, buf);
	int rv = drift_grpc_call_send(c, buf, n);
	if (buf != small)
		drift_free(buf);
	return rv;
}

void *drift_grpc_call_recv_req(drift_grpc_call *c,
			       const ProtobufCMessageDescriptor *desc)
{
	ProtobufCMessage *m = NULL;
	int rv = drift_grpc_call_recv_pb(c, desc, &m);
	if (rv == 1)
		return m;
	if (rv == 0)
		drift_grpc_call_finish(c, DRIFT_GRPC_INTERNAL,
				       "no request message");
	return NULL;
}

void drift_grpc_call_reply(drift_grpc_call *c, const ProtobufCMessage *m)
{
	int rv = drift_grpc_call_send_pb(c, m);
	if (rv == 0)
		drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
	else if (rv == DRIFT_ELIMIT)
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "response is larger than the maximum "
				       "message size");
}

void drift_grpc_call_finish(drift_grpc_call *c, int code, const char *fmt, ...)
{
	char msg[DRIFT_ERR_MSG_MAX];
	msg[0] = '\0';
	if (fmt != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
	}
	if (code == DRIFT_GRPC_OK && c->m != NULL && unary_output(c->m) &&
	    c->sent != 1) {
		code = DRIFT_GRPC_INTERNAL;
		snprintf(msg, sizeof(msg), "handler sent no response message");
	}
	char *copy = msg[0] != '\0' ? drift_strdup(msg) : NULL;
	pthread_mutex_lock(&c->st.mu);
	if (c->finished) {
		pthread_mutex_unlock(&c->st.mu);
		drift_free(copy);
		return;
	}
	c->finished = true;
	c->code = code;
	c->msg = copy;
	c->st.out_end = true;
	pthread_mutex_unlock(&c->st.mu);
	c->st.wake(&c->st);
}

void drift_grpc_call_release(drift_grpc_call *c)
{
	assert(c->taken && !c->released);
	c->released = true;
	/* An answer that could not be sent (the client went away) left it
	 * unfinished. */
	drift_grpc_call_finish(c, DRIFT_GRPC_CANCELLED,
			       "the call ended before its answer was sent");
	log_call(c);
	handling_over(c);
}

bool drift_grpc_call_on_cancel(drift_grpc_call *c, void (*fn)(void *),
			       void *arg)
{
	pthread_mutex_lock(&c->st.mu);
	bool over = c->st.err != 0;
	c->on_cancel = over ? NULL : fn;
	c->on_cancel_arg = arg;
	pthread_mutex_unlock(&c->st.mu);
	return !over;
}

bool drift_grpc_call_done(drift_grpc_call *c)
{
	pthread_mutex_lock(&c->st.mu);
	bool done = c->st.err != 0 || (c->deadline != UINT64_MAX &&
				       drift_now_ns() >= c->deadline);
	pthread_mutex_unlock(&c->st.mu);
	return done;
}
