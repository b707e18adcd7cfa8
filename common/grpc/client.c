/*
 * The gRPC client (see client.h for the contract).
 *
 * Threads as in the server: the loop thread owns slots, connections,
 * sessions and the loop-only fields of each call; callers talk to a call
 * through its stream (stream.h) and wake the loop through the wake list.
 *
 * A slot is one place in the connection pool: it has at most one live
 * connection, the count of consecutive failed attempts and, after a
 * failure, the time before which no new attempt is made.
 */
#include "common/grpc/client.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/grpc/h2io.h"
#include "common/grpc/stream.h"
#include "common/log.h"
#include "common/rand.h"

#define MiB (1024u * 1024u)
#define OUT_LIMIT (4 * MiB)

struct cconn;
struct slot;

struct drift_grpc_ccall {
	drift_grpc_stream st; /* first */
	drift_grpc_client *cl;

	/* Set at creation, read-only after. */
	char *path;
	char **hdrs; /* name, value, ..., NULL */
	uint64_t deadline;
	drift_grpc_unary_cb cb;
	void *cb_arg;

	/* Loop only. */
	bool begun; /* the loop has seen the call */
	struct cconn *conn;
	struct drift_grpc_ccall *prev,
		*next; /* on conn->calls or a wait list */
	int32_t id;
	bool deferred, cancel_sent;
	uv_timer_t *timer;
	drift_grpc_deframer df;
	int http_status;
	bool got_status;
	int wire_code;
	char wire_msg[DRIFT_ERR_MSG_MAX];

	/* Under st.mu. */
	bool done, want_cancel;
	int code;
	char msg[DRIFT_ERR_MSG_MAX];
};

struct cconn {
	drift_h2io io; /* first */
	drift_grpc_client *cl;
	struct slot *slot; /* NULL once detached (failed or draining) */
	uv_getaddrinfo_t gai;
	bool resolving; /* gai under way: counted in handles */
	uv_connect_t creq;
	uv_timer_t ctimer; /* connect timeout (resolution included) */
	uv_timer_t ka;	   /* keepalive tick */
	uint64_t last_recv, ping_sent; /* ping_sent 0: none out */
	char why[192];		       /* a close reason made here */
	int handles;
	bool connected;
	drift_grpc_ccall *calls;   /* submitted */
	drift_grpc_ccall *pending; /* waiting for the connection */
};

struct slot {
	drift_grpc_client *cl;
	struct cconn *conn;
	unsigned fails;
	uint64_t retry_at;
	char why[128]; /* the last failure */
	uv_timer_t retry;
	drift_grpc_ccall *waiting; /* wait_for_ready calls during backoff */
};

struct drift_grpc_client {
	drift_grpc_client_opts o;
	char addr[300];
	char host[256], port[8]; /* addr split: resolved at each attempt */
	uv_loop_t loop;
	uv_async_t async;
	pthread_t thread;
	struct slot *slots;
	unsigned next_slot;
	drift_rand rng;

	pthread_mutex_t mu;
	drift_grpc_stream *wake_head;
	bool want_stop, stopping;
};

/* ---- Lists (loop) ---- */

static void list_add(drift_grpc_ccall **head, drift_grpc_ccall *c)
{
	c->prev = NULL;
	c->next = *head;
	if (*head != NULL)
		(*head)->prev = c;
	*head = c;
}

static void list_del(drift_grpc_ccall **head, drift_grpc_ccall *c)
{
	if (c->prev != NULL)
		c->prev->next = c->next;
	else if (*head == c)
		*head = c->next;
	if (c->next != NULL)
		c->next->prev = c->prev;
	c->prev = c->next = NULL;
}

/* ---- Call core ---- */

static void call_wake(drift_grpc_stream *st)
{
	drift_grpc_ccall *c = (drift_grpc_ccall *)st;
	drift_grpc_client *cl = c->cl;
	pthread_mutex_lock(&cl->mu);
	if (!st->queued) {
		st->queued = true;
		drift_grpc_stream_ref(st);
		st->wake_next = cl->wake_head;
		cl->wake_head = st;
	}
	pthread_mutex_unlock(&cl->mu);
	uv_async_send(&cl->async);
}

static void call_destroy(drift_grpc_stream *st)
{
	drift_grpc_ccall *c = (drift_grpc_ccall *)st;
	drift_grpc_stream_fini(st);
	drift_grpc_deframer_free(&c->df);
	if (c->hdrs != NULL)
		for (char **h = c->hdrs; *h != NULL; h++)
			drift_free(*h);
	drift_free(c->hdrs);
	drift_free(c->path);
	drift_free(c);
}

static void on_timer_closed(uv_handle_t *h)
{
	drift_grpc_ccall *c = h->data;
	drift_free(h);
	drift_grpc_stream_unref(&c->st);
}

static void stop_timer(drift_grpc_ccall *c)
{
	if (c->timer != NULL) {
		uv_close((uv_handle_t *)c->timer, on_timer_closed);
		c->timer = NULL;
	}
}

/* Records the final status once and tells the caller (loop). The loop's
 * reference is dropped by the caller of complete when the call leaves its
 * list. */
static void complete(drift_grpc_ccall *c, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void complete(drift_grpc_ccall *c, int code, const char *fmt, ...)
{
	pthread_mutex_lock(&c->st.mu);
	if (c->done) {
		pthread_mutex_unlock(&c->st.mu);
		return;
	}
	c->done = true;
	c->code = code;
	c->msg[0] = '\0';
	if (fmt != NULL) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(c->msg, sizeof(c->msg), fmt, ap);
		va_end(ap);
	}
	/* Responses already queued stay readable; then recv reports the
	 * end (OK) or the failure. Sends fail from now on. */
	c->st.in_end = true;
	if (c->st.err == 0)
		c->st.err = code == DRIFT_GRPC_OK
				    ? DRIFT_ECLOSED
				    : drift_grpc_err_from_code(code);
	drift_grpc_unary_cb cb = c->cb;
	c->cb = NULL;
	pthread_cond_broadcast(&c->st.cv);
	pthread_mutex_unlock(&c->st.mu);
	stop_timer(c);
	if (cb != NULL) {
		drift_grpc_status st = {.code = code};
		snprintf(st.msg, sizeof(st.msg), "%s", c->msg);
		drift_grpc_msg *resp = NULL;
		if (code == DRIFT_GRPC_OK &&
		    drift_grpc_stream_pop_in(&c->st, 0, &resp) != 1) {
			resp = NULL;
			st.code = DRIFT_GRPC_INTERNAL;
			snprintf(st.msg, sizeof(st.msg), "no response message");
		}
		cb(c->cb_arg, &st, resp);
	}
}

/* ---- Sending (loop) ---- */

static ssize_t read_out(nghttp2_session *session, int32_t id, uint8_t *buf,
			size_t len, uint32_t *flags, nghttp2_data_source *src,
			void *user)
{
	(void)session;
	(void)id;
	(void)user;
	drift_grpc_ccall *c = src->ptr;
	bool drained;
	size_t n = drift_grpc_stream_read_out(&c->st, buf, len, &drained);
	if (drained) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		return (ssize_t)n;
	}
	if (n == 0) {
		c->deferred = true;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
}

static void on_deadline(uv_timer_t *t)
{
	drift_grpc_ccall *c = t->data;
	/* The status first: sending the reset closes the stream, and its
	 * close callback would report CANCELLED. */
	complete(c, DRIFT_GRPC_DEADLINE_EXCEEDED, "deadline exceeded");
	if (c->conn != NULL && c->id > 0 && !c->cancel_sent) {
		c->cancel_sent = true;
		nghttp2_submit_rst_stream(c->conn->io.session,
					  NGHTTP2_FLAG_NONE, c->id,
					  NGHTTP2_CANCEL);
		drift_h2io_flush(&c->conn->io);
	}
}

static void submit(drift_grpc_ccall *c, struct cconn *conn)
{
	drift_grpc_client *cl = c->cl;
	pthread_mutex_lock(&c->st.mu);
	bool done = c->done;
	pthread_mutex_unlock(&c->st.mu);
	if (done) {
		/* Its deadline passed or it was cancelled while waiting. */
		drift_grpc_stream_unref(&c->st);
		return;
	}
	size_t extra = 0;
	if (c->hdrs != NULL)
		while (c->hdrs[extra] != NULL)
			extra++;
	nghttp2_nv nv[8 + 64];
	size_t n = 0;
	char tmo[16];
	drift_h2_nv(&nv[n++], ":method", "POST");
	drift_h2_nv(&nv[n++], ":scheme", "http");
	drift_h2_nv(&nv[n++], ":path", c->path);
	drift_h2_nv(&nv[n++], ":authority", cl->addr);
	drift_h2_nv(&nv[n++], "content-type", "application/grpc");
	drift_h2_nv(&nv[n++], "te", "trailers");
	drift_h2_nv(&nv[n++], "user-agent", "drift-grpc/0.1");
	if (c->deadline != UINT64_MAX) {
		uint64_t now = drift_now_ns();
		uint64_t left = c->deadline > now ? c->deadline - now : 1;
		drift_grpc_timeout_format(left, tmo);
		drift_h2_nv(&nv[n++], "grpc-timeout", tmo);
	}
	for (size_t i = 0; i + 1 < extra && n < sizeof(nv) / sizeof(nv[0]);
	     i += 2)
		drift_h2_nv(&nv[n++], c->hdrs[i], c->hdrs[i + 1]);
	nghttp2_data_provider dp = {.source.ptr = c, .read_callback = read_out};
	int32_t id =
		nghttp2_submit_request(conn->io.session, NULL, nv, n, &dp, c);
	if (id < 0) {
		complete(c, DRIFT_GRPC_UNAVAILABLE, "cannot start a stream: %s",
			 nghttp2_strerror(id));
		drift_grpc_stream_unref(&c->st);
		return;
	}
	c->id = id;
	c->conn = conn;
	list_add(&conn->calls, c);
}

/* ---- Connections (loop) ---- */

static void begin(drift_grpc_ccall *c);
static void on_retry(uv_timer_t *t);

static uint64_t backoff_ns(drift_grpc_client *cl, unsigned fails)
{
	uint64_t d = cl->o.backoff_min_ns;
	for (unsigned i = 1; i < fails && d < cl->o.backoff_max_ns; i++)
		d *= 2;
	if (d > cl->o.backoff_max_ns)
		d = cl->o.backoff_max_ns;
	/* +-20 % jitter, so that many clients do not retry in step. */
	double j = 0.8 + 0.4 * drift_rand_unit(&cl->rng);
	return (uint64_t)((double)d * j);
}

static void conn_handle_closed(struct cconn *conn)
{
	if (--conn->handles > 0)
		return;
	if (conn->io.session != NULL)
		nghttp2_session_del(conn->io.session);
	drift_free(conn);
}

static void on_ctimer_closed(uv_handle_t *h)
{
	conn_handle_closed(h->data);
}

/* The connection is over: every call on it fails; the slot backs off when
 * the connection never came up. */
static void conn_fail(struct cconn *conn, const char *why)
{
	struct slot *sl = conn->slot;
	if (sl != NULL) {
		sl->conn = NULL;
		snprintf(sl->why, sizeof(sl->why), "%s", why);
		if (!conn->connected) {
			sl->fails++;
			sl->retry_at = drift_now_ns() +
				       backoff_ns(conn->cl, sl->fails);
		} else {
			sl->fails = 0;
			sl->retry_at = 0;
		}
		conn->slot = NULL;
	}
	while (conn->pending != NULL) {
		drift_grpc_ccall *c = conn->pending;
		list_del(&conn->pending, c);
		complete(c, DRIFT_GRPC_UNAVAILABLE, "connecting to %s: %s",
			 conn->cl->addr, why);
		drift_grpc_stream_unref(&c->st);
	}
	while (conn->calls != NULL) {
		drift_grpc_ccall *c = conn->calls;
		list_del(&conn->calls, c);
		c->conn = NULL;
		complete(c, DRIFT_GRPC_UNAVAILABLE, "connection to %s lost: %s",
			 conn->cl->addr, why);
		drift_grpc_stream_unref(&c->st);
	}
	/* Calls that waited for this slot try again later. */
	if (sl != NULL && sl->waiting != NULL && sl->retry_at > 0) {
		uint64_t now = drift_now_ns();
		uint64_t ms = sl->retry_at > now
				      ? (sl->retry_at - now) / 1000000 + 1
				      : 0;
		uv_timer_start(&sl->retry, on_retry, ms, 0);
	}
}

static void on_io_close(drift_h2io *io)
{
	struct cconn *conn = (struct cconn *)io;
	conn_fail(conn, io->close_reason ? io->close_reason : "closed");
	if (!uv_is_closing((uv_handle_t *)&conn->ctimer))
		uv_close((uv_handle_t *)&conn->ctimer, on_ctimer_closed);
	if (!uv_is_closing((uv_handle_t *)&conn->ka))
		uv_close((uv_handle_t *)&conn->ka, on_ctimer_closed);
	if (conn->resolving) /* its callback comes (ECANCELED or not) */
		uv_cancel((uv_req_t *)&conn->gai);
	conn_handle_closed(conn);
}

static void conn_close(struct cconn *conn, const char *why)
{
	drift_h2io_close(&conn->io, why);
}

static void conn_ready(struct cconn *conn);

static void on_connect_timeout(uv_timer_t *t)
{
	struct cconn *conn = t->data;
	if (!conn->connected)
		conn_close(conn, "connect timeout");
}

/* ---- nghttp2 callbacks (loop) ---- */

static int on_header(nghttp2_session *session, const nghttp2_frame *frame,
		     const uint8_t *name, size_t namelen, const uint8_t *value,
		     size_t valuelen, uint8_t flags, void *user)
{
	(void)flags;
	(void)user;
	if (frame->hd.type != NGHTTP2_HEADERS)
		return 0;
	drift_grpc_ccall *c = nghttp2_session_get_stream_user_data(
		session, frame->hd.stream_id);
	if (c == NULL)
		return 0;
	if (drift_h2_is(name, namelen, ":status")) {
		char b[8];
		size_t l = valuelen < 7 ? valuelen : 7;
		memcpy(b, value, l);
		b[l] = '\0';
		c->http_status = atoi(b);
	} else if (drift_h2_is(name, namelen, "grpc-status")) {
		char b[12];
		size_t l = valuelen < 11 ? valuelen : 11;
		memcpy(b, value, l);
		b[l] = '\0';
		c->got_status = true;
		c->wire_code = atoi(b);
	} else if (drift_h2_is(name, namelen, "grpc-message")) {
		drift_grpc_pct_decode((const char *)value, valuelen,
				      c->wire_msg, sizeof(c->wire_msg));
	}
	return 0;
}

static void rst(drift_grpc_ccall *c, uint32_t code)
{
	if (c->conn != NULL && c->id > 0 && !c->cancel_sent) {
		c->cancel_sent = true;
		nghttp2_submit_rst_stream(c->conn->io.session,
					  NGHTTP2_FLAG_NONE, c->id, code);
	}
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t id,
		   const uint8_t *data, size_t len, void *user)
{
	(void)flags;
	(void)user;
	drift_grpc_ccall *c = nghttp2_session_get_stream_user_data(session, id);
	if (c == NULL || c->cancel_sent) {
		nghttp2_session_consume(session, id, len);
		return 0;
	}
	size_t now = drift_grpc_stream_arrived(&c->st, len);
	if (now > 0)
		nghttp2_session_consume(session, id, now);
	size_t pos = 0;
	while (pos < len) {
		size_t used = 0;
		drift_grpc_msg *m = NULL;
		int rv = drift_grpc_deframer_feed(&c->df, data + pos, len - pos,
						  &used, &m);
		pos += used;
		if (rv == 0)
			break;
		if (rv == 1) {
			drift_grpc_stream_push_in(&c->st, m);
			continue;
		}
		if (rv == DRIFT_ELIMIT)
			complete(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				 "received message larger than max (%zu vs. "
				 "%zu)",
				 c->df.announced, c->df.max);
		else
			complete(c, DRIFT_GRPC_INTERNAL,
				 "bad response message (%s)",
				 drift_strerror(rv));
		rst(c, NGHTTP2_CANCEL);
		break;
	}
	if (c->cancel_sent) {
		size_t give = drift_grpc_stream_take_consumed(&c->st);
		if (give > 0)
			nghttp2_session_consume(session, id, give);
	}
	return 0;
}

static int http_to_grpc(int http)
{
	switch (http) {
	case 400:
		return DRIFT_GRPC_INTERNAL;
	case 401:
		return DRIFT_GRPC_UNAUTHENTICATED;
	case 403:
		return DRIFT_GRPC_PERMISSION_DENIED;
	case 404:
		return DRIFT_GRPC_UNIMPLEMENTED;
	case 429:
	case 502:
	case 503:
	case 504:
		return DRIFT_GRPC_UNAVAILABLE;
	default:
		return DRIFT_GRPC_UNKNOWN;
	}
}

static int on_stream_close(nghttp2_session *session, int32_t id,
			   uint32_t error_code, void *user)
{
	(void)user;
	drift_grpc_ccall *c = nghttp2_session_get_stream_user_data(session, id);
	if (c == NULL)
		return 0;
	nghttp2_session_set_stream_user_data(session, id, NULL);
	if (c->got_status && drift_grpc_deframer_idle(&c->df))
		complete(c, c->wire_code, "%s", c->wire_msg);
	else if (c->got_status)
		complete(c, DRIFT_GRPC_INTERNAL,
			 "stream ended inside a message");
	else if (error_code == NGHTTP2_REFUSED_STREAM)
		complete(c, DRIFT_GRPC_UNAVAILABLE, "stream refused by %s",
			 c->cl->addr);
	else if (error_code == NGHTTP2_CANCEL)
		complete(c, DRIFT_GRPC_CANCELLED, "stream cancelled");
	else if (error_code != NGHTTP2_NO_ERROR)
		complete(c, DRIFT_GRPC_INTERNAL, "stream reset: %s",
			 nghttp2_http2_strerror(error_code));
	else if (c->http_status != 200 && c->http_status != 0)
		complete(c, http_to_grpc(c->http_status),
			 "HTTP status %d without grpc-status", c->http_status);
	else
		complete(c, DRIFT_GRPC_INTERNAL,
			 "server closed the stream without a status");
	if (c->conn != NULL) {
		list_del(&c->conn->calls, c);
		c->conn = NULL;
	}
	drift_grpc_stream_unref(&c->st);
	return 0;
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame,
			 void *user)
{
	(void)session;
	struct cconn *conn = user;
	/* Any frame proves the peer alive (keepalive). */
	conn->last_recv = drift_now_ns();
	if (frame->hd.type == NGHTTP2_PING &&
	    (frame->hd.flags & NGHTTP2_FLAG_ACK) != 0)
		conn->ping_sent = 0;
	if (frame->hd.type == NGHTTP2_GOAWAY && conn->slot != NULL) {
		/* No new calls here: the next ones get a new connection. */
		conn->slot->conn = NULL;
		conn->slot = NULL;
	}
	return 0;
}

static int conn_session(struct cconn *conn)
{
	drift_grpc_client *cl = conn->cl;
	nghttp2_session_callbacks *cb;
	nghttp2_option *opt;
	if (nghttp2_session_callbacks_new(&cb) != 0)
		return DRIFT_ENOMEM;
	if (nghttp2_option_new(&opt) != 0) {
		nghttp2_session_callbacks_del(cb);
		return DRIFT_ENOMEM;
	}
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb,
							       on_stream_close);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame_recv);
	nghttp2_option_set_no_auto_window_update(opt, 1);
	int rv = nghttp2_session_client_new2(&conn->io.session, cb, conn, opt);
	nghttp2_session_callbacks_del(cb);
	nghttp2_option_del(opt);
	if (rv != 0)
		return DRIFT_ENOMEM;
	nghttp2_settings_entry iv[] = {
		{NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
		{NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, cl->o.stream_window},
	};
	rv = nghttp2_submit_settings(conn->io.session, NGHTTP2_FLAG_NONE, iv,
				     2);
	if (rv == 0)
		rv = nghttp2_session_set_local_window_size(
			conn->io.session, NGHTTP2_FLAG_NONE, 0,
			(int32_t)cl->o.conn_window);
	return rv == 0 ? 0 : DRIFT_ENOMEM;
}

/* Keepalive tick (see client.h): a PING after keepalive_ns without a
 * frame from the peer, the connection closed when its ack is late. */
static void on_keepalive(uv_timer_t *t)
{
	struct cconn *conn = t->data;
	drift_grpc_client *cl = conn->cl;
	if (conn->io.closing)
		return;
	uint64_t now = drift_now_ns();
	if (conn->ping_sent != 0) {
		if (now - conn->ping_sent >= cl->o.keepalive_timeout_ns) {
			snprintf(conn->why, sizeof(conn->why),
				 "no answer to a keepalive PING in %llu ms",
				 (unsigned long long)(now - conn->ping_sent) /
					 1000000);
			conn_close(conn, conn->why);
		}
		return;
	}
	if (now - conn->last_recv >= cl->o.keepalive_ns &&
	    nghttp2_submit_ping(conn->io.session, NGHTTP2_FLAG_NONE, NULL) ==
		    0) {
		conn->ping_sent = now;
		drift_h2io_flush(&conn->io);
	}
}

static void conn_ready(struct cconn *conn)
{
	conn->connected = true;
	uv_timer_stop(&conn->ctimer);
	conn->last_recv = drift_now_ns();
	drift_grpc_client *cl = conn->cl;
	if (cl->o.keepalive_ns != UINT64_MAX) {
		/* Ticks at half the shorter of the two periods: a ping goes
		 * out at most half a period late, a late ack is noticed
		 * within keepalive_timeout * 1.5. */
		uint64_t p = cl->o.keepalive_ns < cl->o.keepalive_timeout_ns
				     ? cl->o.keepalive_ns
				     : cl->o.keepalive_timeout_ns;
		uint64_t ms = p / 2000000;
		uv_timer_start(&conn->ka, on_keepalive, ms ? ms : 1,
			       ms ? ms : 1);
	}
	if (conn->slot != NULL) {
		conn->slot->fails = 0;
		conn->slot->retry_at = 0;
	}
	while (conn->pending != NULL) {
		drift_grpc_ccall *c = conn->pending;
		list_del(&conn->pending, c);
		submit(c, conn);
	}
	drift_h2io_flush(&conn->io);
}

static void on_connected(uv_connect_t *req, int status)
{
	struct cconn *conn = req->data;
	if (conn->io.closing)
		return;
	if (status < 0) {
		conn_close(conn, uv_strerror(status));
		return;
	}
	if (conn_session(conn) != 0 || drift_h2io_start(&conn->io) != 0) {
		conn_close(conn, "session setup failed");
		return;
	}
	conn_ready(conn);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct cconn *conn = req->data;
	conn->resolving = false;
	if (!conn->io.closing) {
		int rc = status < 0 || res == NULL
				 ? (status < 0 ? status : UV_EAI_NONAME)
				 : uv_tcp_connect(&conn->creq, &conn->io.tcp,
						  res->ai_addr, on_connected);
		if (rc != 0 && (status < 0 || res == NULL)) {
			snprintf(conn->why, sizeof(conn->why),
				 "resolving %.90s: %s", conn->cl->host,
				 uv_strerror(rc));
			conn_close(conn, conn->why);
		} else if (rc != 0) {
			conn_close(conn, uv_strerror(rc));
		}
	}
	uv_freeaddrinfo(res);
	conn_handle_closed(conn);
}

static struct cconn *conn_open(struct slot *sl)
{
	drift_grpc_client *cl = sl->cl;
	struct cconn *conn = drift_calloc(1, sizeof(*conn));
	if (conn == NULL)
		return NULL;
	drift_h2io_init(&cl->loop, &conn->io);
	conn->cl = cl;
	conn->slot = sl;
	conn->io.on_close = on_io_close;
	uv_timer_init(&cl->loop, &conn->ctimer);
	conn->ctimer.data = conn;
	uv_timer_init(&cl->loop, &conn->ka);
	conn->ka.data = conn;
	conn->handles = 3;
	conn->creq.data = conn;
	conn->gai.data = conn;
	sl->conn = conn;
	uv_timer_start(&conn->ctimer, on_connect_timeout,
		       cl->o.connect_timeout_ns / 1000000 + 1, 0);
	/* The name again at every attempt: its address may have changed. */
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM};
	int rc = uv_getaddrinfo(&cl->loop, &conn->gai, on_resolved, cl->host,
				cl->port, &hints);
	if (rc != 0) {
		snprintf(conn->why, sizeof(conn->why), "resolving %.90s: %s",
			 cl->host, uv_strerror(rc));
		conn_close(conn, conn->why);
		return conn;
	}
	conn->resolving = true;
	conn->handles++;
	return conn;
}

static void on_retry(uv_timer_t *t)
{
	struct slot *sl = t->data;
	if (sl->conn == NULL && sl->waiting != NULL)
		conn_open(sl);
	while (sl->waiting != NULL) {
		drift_grpc_ccall *c = sl->waiting;
		list_del(&sl->waiting, c);
		if (sl->conn == NULL) {
			complete(c, DRIFT_GRPC_UNAVAILABLE,
				 "cannot connect to %s", c->cl->addr);
			drift_grpc_stream_unref(&c->st);
		} else if (sl->conn->connected) {
			submit(c, sl->conn);
		} else {
			list_add(&sl->conn->pending, c);
		}
	}
	if (sl->conn != NULL && !sl->conn->io.closing)
		drift_h2io_flush(&sl->conn->io);
}

/* The loop sees a new call: pick a slot, connect if needed (loop). The
 * loop's reference was taken by the starter. */
static void begin(drift_grpc_ccall *c)
{
	drift_grpc_client *cl = c->cl;
	c->begun = true;
	pthread_mutex_lock(&c->st.mu);
	bool dead = c->done || c->want_cancel;
	pthread_mutex_unlock(&c->st.mu);
	if (dead) {
		complete(c, DRIFT_GRPC_CANCELLED, "cancelled before start");
		drift_grpc_stream_unref(&c->st);
		return;
	}
	if (cl->stopping) {
		complete(c, DRIFT_GRPC_CANCELLED, "client is closing");
		drift_grpc_stream_unref(&c->st);
		return;
	}
	if (c->deadline != UINT64_MAX) {
		uint64_t now = drift_now_ns();
		if (c->deadline <= now) {
			complete(c, DRIFT_GRPC_DEADLINE_EXCEEDED,
				 "deadline exceeded before start");
			drift_grpc_stream_unref(&c->st);
			return;
		}
		uv_timer_t *t = drift_malloc(sizeof(*t));
		if (t != NULL) {
			uv_timer_init(&cl->loop, t);
			t->data = c;
			drift_grpc_stream_ref(&c->st);
			c->timer = t;
			uv_timer_start(t, on_deadline,
				       (c->deadline - now) / 1000000 + 1, 0);
		}
	}
	struct slot *sl = &cl->slots[cl->next_slot++ % cl->o.connections];
	if (sl->conn == NULL) {
		uint64_t now = drift_now_ns();
		if (now < sl->retry_at) {
			if (cl->o.wait_for_ready) {
				list_add(&sl->waiting, c);
				uv_timer_start(
					&sl->retry, on_retry,
					(sl->retry_at - now) / 1000000 + 1, 0);
				return;
			}
			complete(c, DRIFT_GRPC_UNAVAILABLE,
				 "cannot connect to %s (%s); next attempt in "
				 "%llu ms",
				 cl->addr, sl->why,
				 (unsigned long long)((sl->retry_at - now) /
						      1000000));
			drift_grpc_stream_unref(&c->st);
			return;
		}
		if (conn_open(sl) == NULL) {
			complete(c, DRIFT_GRPC_UNAVAILABLE, "out of memory");
			drift_grpc_stream_unref(&c->st);
			return;
		}
		if (sl->conn == NULL) {
			/* Failed at once: conn_fail reported nothing for c. */
			complete(c, DRIFT_GRPC_UNAVAILABLE,
				 "cannot connect to %s: %s", cl->addr, sl->why);
			drift_grpc_stream_unref(&c->st);
			return;
		}
	}
	if (sl->conn->connected) {
		submit(c, sl->conn);
		drift_h2io_flush(&sl->conn->io);
	} else {
		list_add(&sl->conn->pending, c);
	}
}

static void sync_call(drift_grpc_ccall *c)
{
	if (!c->begun) {
		begin(c);
		return;
	}
	struct cconn *conn = c->conn;
	if (conn == NULL || c->id <= 0 || conn->io.closing) {
		/* Not on the wire yet: a cancel completes it now, and the
		 * list that holds it lets it go. */
		pthread_mutex_lock(&c->st.mu);
		bool cancel = c->want_cancel;
		pthread_mutex_unlock(&c->st.mu);
		if (cancel)
			complete(c, DRIFT_GRPC_CANCELLED,
				 "cancelled by the caller");
		return;
	}
	nghttp2_session *session = conn->io.session;
	size_t give = drift_grpc_stream_take_consumed(&c->st);
	if (give > 0)
		nghttp2_session_consume(session, c->id, give);
	pthread_mutex_lock(&c->st.mu);
	bool cancel = c->want_cancel;
	pthread_mutex_unlock(&c->st.mu);
	if (cancel && !c->cancel_sent) {
		complete(c, DRIFT_GRPC_CANCELLED, "cancelled by the caller");
		rst(c, NGHTTP2_CANCEL);
	} else if (c->deferred && drift_grpc_stream_out_ready(&c->st)) {
		c->deferred = false;
		nghttp2_session_resume_data(session, c->id);
	}
	drift_h2io_flush(&conn->io);
}

static void stop_all(drift_grpc_client *cl);
static void close_detached(uv_handle_t *h, void *arg);

static void on_async(uv_async_t *a)
{
	drift_grpc_client *cl = a->data;
	pthread_mutex_lock(&cl->mu);
	drift_grpc_stream *list = cl->wake_head;
	cl->wake_head = NULL;
	bool stop = cl->want_stop;
	pthread_mutex_unlock(&cl->mu);
	/* An element stays marked queued until it is taken from the local
	 * list, so a concurrent wake cannot relink it while the rest of
	 * the list is still to be walked. */
	while (list != NULL) {
		pthread_mutex_lock(&cl->mu);
		drift_grpc_stream *next = list->wake_next;
		list->queued = false;
		pthread_mutex_unlock(&cl->mu);
		sync_call((drift_grpc_ccall *)list);
		drift_grpc_stream_unref(list);
		list = next;
	}
	if (stop)
		stop_all(cl);
}

static void stop_all(drift_grpc_client *cl)
{
	if (cl->stopping)
		return;
	cl->stopping = true;
	for (unsigned i = 0; i < cl->o.connections; i++) {
		struct slot *sl = &cl->slots[i];
		while (sl->waiting != NULL) {
			drift_grpc_ccall *c = sl->waiting;
			list_del(&sl->waiting, c);
			complete(c, DRIFT_GRPC_CANCELLED, "client is closing");
			drift_grpc_stream_unref(&c->st);
		}
		uv_close((uv_handle_t *)&sl->retry, NULL);
		if (sl->conn != NULL)
			conn_close(sl->conn, "client is closing");
	}
	uv_walk(&cl->loop, close_detached, NULL);
	uv_close((uv_handle_t *)&cl->async, NULL);
}

static void close_detached(uv_handle_t *h, void *arg)
{
	(void)arg;
	/* Connections that left their slot (GOAWAY) close here. */
	if (h->type == UV_TCP && !uv_is_closing(h)) {
		struct cconn *conn = h->data;
		conn_close(conn, "client is closing");
	}
}

static void *loop_main(void *arg)
{
	drift_grpc_client *cl = arg;
	while (uv_run(&cl->loop, UV_RUN_DEFAULT) != 0) {
	}
	return NULL;
}

/* ---- Public API ---- */

int drift_grpc_client_new(const char *addr, const drift_grpc_client_opts *opts,
			  drift_grpc_client **out, drift_err *err)
{
	drift_grpc_client *cl = drift_calloc(1, sizeof(*cl));
	if (cl == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "grpc client: %s",
				     drift_strerror(DRIFT_ENOMEM));
	if (opts != NULL)
		cl->o = *opts;
	drift_grpc_client_opts *o = &cl->o;
	if (o->connections == 0)
		o->connections = 1;
	if (o->max_recv_msg == 0)
		o->max_recv_msg = 64 * MiB;
	if (o->connect_timeout_ns == 0)
		o->connect_timeout_ns = 5000000000ull;
	if (o->backoff_min_ns == 0)
		o->backoff_min_ns = 100000000ull;
	if (o->backoff_max_ns == 0)
		o->backoff_max_ns = 5000000000ull;
	if (o->backoff_max_ns < o->backoff_min_ns)
		o->backoff_max_ns = o->backoff_min_ns;
	if (o->stream_window == 0)
		o->stream_window = 4 * MiB;
	if (o->conn_window == 0)
		o->conn_window = 16 * MiB;
	if (o->keepalive_ns == 0)
		o->keepalive_ns = 10000000000ull;
	if (o->keepalive_timeout_ns == 0)
		o->keepalive_timeout_ns = 5000000000ull;
	if (strlen(addr) >= sizeof(cl->addr)) {
		drift_free(cl);
		return drift_err_set(err, DRIFT_EINVAL,
				     "grpc client: address too long");
	}
	snprintf(cl->addr, sizeof(cl->addr), "%s", addr);
	int port;
	int rv = drift_grpc_split_addr(addr, cl->host, sizeof(cl->host), &port);
	if (rv != 0) {
		drift_free(cl);
		return drift_err_set(err, DRIFT_EINVAL,
				     "grpc client: address \"%s\": expected "
				     "HOST:PORT",
				     addr);
	}
	snprintf(cl->port, sizeof(cl->port), "%d", port);
	cl->slots = drift_calloc(o->connections, sizeof(*cl->slots));
	if (cl->slots == NULL) {
		drift_free(cl);
		return drift_err_set(err, DRIFT_ENOMEM, "grpc client: %s",
				     drift_strerror(DRIFT_ENOMEM));
	}
	drift_rand_seed(&cl->rng, drift_now_ns() ^ (uintptr_t)cl);
	pthread_mutex_init(&cl->mu, NULL);
	uv_loop_init(&cl->loop);
	uv_async_init(&cl->loop, &cl->async, on_async);
	cl->async.data = cl;
	for (unsigned i = 0; i < o->connections; i++) {
		cl->slots[i].cl = cl;
		uv_timer_init(&cl->loop, &cl->slots[i].retry);
		cl->slots[i].retry.data = &cl->slots[i];
	}
	rv = pthread_create(&cl->thread, NULL, loop_main, cl);
	if (rv != 0) {
		uv_walk(&cl->loop, close_detached, NULL);
		uv_close((uv_handle_t *)&cl->async, NULL);
		for (unsigned i = 0; i < o->connections; i++)
			uv_close((uv_handle_t *)&cl->slots[i].retry, NULL);
		uv_run(&cl->loop, UV_RUN_DEFAULT);
		uv_loop_close(&cl->loop);
		pthread_mutex_destroy(&cl->mu);
		drift_free(cl->slots);
		drift_free(cl);
		return drift_err_errno(err, rv, "grpc client: loop thread");
	}
	*out = cl;
	return 0;
}

static void on_stop_walk(uv_handle_t *h, void *arg)
{
	close_detached(h, arg);
}

void drift_grpc_client_free(drift_grpc_client *cl)
{
	if (cl == NULL)
		return;
	pthread_mutex_lock(&cl->mu);
	cl->want_stop = true;
	pthread_mutex_unlock(&cl->mu);
	uv_async_send(&cl->async);
	pthread_join(cl->thread, NULL);
	/* Detached connections may still be open: close them here (the
	 * loop thread is gone, so this thread now owns the loop). */
	uv_walk(&cl->loop, on_stop_walk, NULL);
	uv_run(&cl->loop, UV_RUN_DEFAULT);
	uv_loop_close(&cl->loop);
	pthread_mutex_destroy(&cl->mu);
	drift_free(cl->slots);
	drift_free(cl);
}

int drift_grpc_ccall_start(drift_grpc_client *cl, const char *path,
			   uint64_t timeout_ns, const char *const *headers,
			   drift_grpc_ccall **out)
{
	drift_grpc_ccall *c = drift_calloc(1, sizeof(*c));
	if (c == NULL)
		return DRIFT_ENOMEM;
	drift_grpc_stream_init(&c->st, OUT_LIMIT, OUT_LIMIT);
	c->st.wake = call_wake;
	c->st.destroy = call_destroy;
	c->cl = cl;
	drift_grpc_deframer_init(&c->df, cl->o.max_recv_msg);
	c->path = drift_strdup(path);
	if (c->path == NULL)
		goto nomem;
	if (headers != NULL) {
		size_t n = 0;
		while (headers[n] != NULL)
			n++;
		c->hdrs = drift_calloc(n + 1, sizeof(char *));
		if (c->hdrs == NULL)
			goto nomem;
		for (size_t i = 0; i < n; i++)
			if ((c->hdrs[i] = drift_strdup(headers[i])) == NULL)
				goto nomem;
	}
	c->deadline = UINT64_MAX;
	if (timeout_ns > 0) {
		uint64_t now = drift_now_ns();
		c->deadline = timeout_ns > UINT64_MAX - 1 - now
				      ? UINT64_MAX - 1
				      : now + timeout_ns;
	}
	/* One reference for the caller, one for the loop (dropped when the
	 * stream closes or the call fails). */
	drift_grpc_stream_ref(&c->st);
	*out = c;
	call_wake(&c->st);
	return 0;
nomem:
	call_destroy(&c->st);
	return DRIFT_ENOMEM;
}

int drift_grpc_ccall_send(drift_grpc_ccall *c, const void *data, size_t len)
{
	return drift_grpc_stream_push_out(&c->st, data, len, c->deadline);
}

int drift_grpc_ccall_close_send(drift_grpc_ccall *c)
{
	return drift_grpc_stream_end_out(&c->st);
}

int drift_grpc_ccall_recv(drift_grpc_ccall *c, drift_grpc_msg **m)
{
	int rv = drift_grpc_stream_pop_in(&c->st, UINT64_MAX, m);
	if (rv < 0) {
		pthread_mutex_lock(&c->st.mu);
		bool ok = c->done && c->code == DRIFT_GRPC_OK;
		pthread_mutex_unlock(&c->st.mu);
		if (ok)
			return 0;
	}
	return rv;
}

void drift_grpc_ccall_cancel(drift_grpc_ccall *c)
{
	pthread_mutex_lock(&c->st.mu);
	c->want_cancel = true;
	pthread_mutex_unlock(&c->st.mu);
	call_wake(&c->st);
}

int drift_grpc_ccall_finish(drift_grpc_ccall *c, drift_grpc_status *st)
{
	pthread_mutex_lock(&c->st.mu);
	if (!c->done && !c->want_cancel) {
		/* Still running: the caller is not interested any more. */
		c->want_cancel = true;
		pthread_mutex_unlock(&c->st.mu);
		call_wake(&c->st);
		pthread_mutex_lock(&c->st.mu);
	}
	while (!c->done)
		pthread_cond_wait(&c->st.cv, &c->st.mu);
	int code = c->code;
	if (st != NULL) {
		st->code = code;
		snprintf(st->msg, sizeof(st->msg), "%s", c->msg);
	}
	pthread_mutex_unlock(&c->st.mu);
	drift_grpc_stream_unref(&c->st);
	return drift_grpc_err_from_code(code);
}

int drift_grpc_client_unary(drift_grpc_client *cl, const char *path,
			    const void *req, size_t len, uint64_t timeout_ns,
			    drift_grpc_msg **resp, drift_grpc_status *st)
{
	drift_grpc_ccall *c;
	int rv = drift_grpc_ccall_start(cl, path, timeout_ns, NULL, &c);
	if (rv != 0) {
		if (st != NULL) {
			st->code = DRIFT_GRPC_INTERNAL;
			snprintf(st->msg, sizeof(st->msg), "%s",
				 drift_strerror(rv));
		}
		return rv;
	}
	drift_grpc_msg *m = NULL;
	if (drift_grpc_ccall_send(c, req, len) == 0)
		drift_grpc_ccall_close_send(c);
	int got = drift_grpc_ccall_recv(c, &m);
	if (got == 1) {
		/* Drain to the status (a second message is a protocol
		 * error we report as INTERNAL below). */
		drift_grpc_msg *extra = NULL;
		if (drift_grpc_ccall_recv(c, &extra) == 1) {
			drift_grpc_msg_free(extra);
			drift_grpc_ccall_cancel(c);
			drift_grpc_ccall_finish(c, NULL);
			drift_grpc_msg_free(m);
			if (st != NULL) {
				st->code = DRIFT_GRPC_INTERNAL;
				snprintf(st->msg, sizeof(st->msg),
					 "more than one response message");
			}
			return DRIFT_EPROTO;
		}
	}
	drift_grpc_status s;
	rv = drift_grpc_ccall_finish(c, &s);
	if (rv == 0 && m == NULL) {
		s.code = DRIFT_GRPC_INTERNAL;
		snprintf(s.msg, sizeof(s.msg), "no response message");
		rv = DRIFT_EPROTO;
	}
	if (rv != 0) {
		drift_grpc_msg_free(m);
		m = NULL;
	}
	if (st != NULL)
		*st = s;
	if (rv == 0)
		*resp = m;
	return rv;
}

int drift_grpc_client_unary_pb(drift_grpc_client *cl, const char *path,
			       const ProtobufCMessage *req,
			       const ProtobufCMessageDescriptor *desc,
			       uint64_t timeout_ns, ProtobufCMessage **resp,
			       drift_grpc_status *st)
{
	size_t n = protobuf_c_message_get_packed_size(req);
	uint8_t *buf = drift_malloc(n);
	if (buf == NULL)
		return DRIFT_ENOMEM;
	protobuf_c_message_pack(req, buf);
	drift_grpc_msg *m = NULL;
	int rv = drift_grpc_client_unary(cl, path, buf, n, timeout_ns, &m, st);
	drift_free(buf);
	if (rv != 0)
		return rv;
	ProtobufCMessage *pb =
		protobuf_c_message_unpack(desc, NULL, m->len, m->data);
	drift_grpc_msg_free(m);
	if (pb == NULL) {
		if (st != NULL) {
			st->code = DRIFT_GRPC_INTERNAL;
			snprintf(st->msg, sizeof(st->msg),
				 "response is not a valid %s message",
				 desc->name);
		}
		return DRIFT_EPROTO;
	}
	*resp = pb;
	return 0;
}

int drift_grpc_client_unary_start(drift_grpc_client *cl, const char *path,
				  const void *req, size_t len,
				  uint64_t timeout_ns, drift_grpc_unary_cb cb,
				  void *arg, drift_grpc_ccall **call)
{
	drift_grpc_ccall *c;
	int rv = drift_grpc_ccall_start(cl, path, timeout_ns, NULL, &c);
	if (rv != 0)
		return rv;
	/* Set before the loop can complete the call: the loop reads cb only
	 * after taking the call from the wake list, which follows our wake
	 * below (the start's wake may run first and find cb NULL: then the
	 * loop has only begun the call, not completed it, unless it failed
	 * at once; so the callback is set under the mutex and checked). */
	pthread_mutex_lock(&c->st.mu);
	bool done = c->done;
	drift_grpc_status st = {.code = c->code};
	if (done)
		snprintf(st.msg, sizeof(st.msg), "%s", c->msg);
	else {
		c->cb = cb;
		c->cb_arg = arg;
	}
	pthread_mutex_unlock(&c->st.mu);
	*call = c;
	if (done) {
		cb(arg, &st, NULL);
		return 0;
	}
	if (drift_grpc_ccall_send(c, req, len) == 0)
		drift_grpc_ccall_close_send(c);
	return 0;
}

void drift_grpc_ccall_release(drift_grpc_ccall *c)
{
	/* The loop's own reference keeps the call alive until the callback
	 * has run. */
	drift_grpc_stream_unref(&c->st);
}

int drift_grpc_client_unary_async(drift_grpc_client *cl, const char *path,
				  const void *req, size_t len,
				  uint64_t timeout_ns, drift_grpc_unary_cb cb,
				  void *arg)
{
	drift_grpc_ccall *c;
	int rv = drift_grpc_client_unary_start(cl, path, req, len, timeout_ns,
					       cb, arg, &c);
	if (rv == 0)
		drift_grpc_ccall_release(c);
	return rv;
}
