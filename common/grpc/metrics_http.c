#include "common/grpc/metrics_http.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "common/alloc.h"
#include "common/grpc/h2io.h"
#include "common/log.h"

#define REQ_MAX 8192
#define REQ_TIMEOUT_MS 10000
#define CONNS_MAX 64

struct drift_metrics_http {
	drift_metrics *reg;
	uv_loop_t loop;
	uv_tcp_t listener;
	uv_async_t stop;
	pthread_t thread;
	int port;
	int nconns;
	atomic_ullong scrapes;
};

struct hconn {
	uv_tcp_t tcp;
	uv_timer_t timer;
	uv_write_t wr;
	drift_metrics_http *h;
	int handles; /* open: tcp and timer */
	bool responding;
	size_t len;
	char *resp;
	char req[REQ_MAX];
};

static void on_conn_handle_closed(uv_handle_t *hd)
{
	struct hconn *c = hd->data;
	if (--c->handles > 0)
		return;
	c->h->nconns--;
	drift_free(c->resp);
	drift_free(c);
}

static void conn_close(struct hconn *c)
{
	if (!uv_is_closing((uv_handle_t *)&c->tcp))
		uv_close((uv_handle_t *)&c->tcp, on_conn_handle_closed);
	if (!uv_is_closing((uv_handle_t *)&c->timer))
		uv_close((uv_handle_t *)&c->timer, on_conn_handle_closed);
}

static void on_written(uv_write_t *w, int status)
{
	(void)status;
	conn_close(w->data);
}

/* Sends status line, headers and body (body may be NULL), then closes. */
static void respond(struct hconn *c, const char *status, const char *ctype,
		    const char *body, size_t blen, bool head)
{
	char hdr[256];
	int n = snprintf(hdr, sizeof(hdr),
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\n"
			 "Content-Length: %zu\r\nConnection: close\r\n\r\n",
			 status, ctype, blen);
	size_t total = (size_t)n + (head ? 0 : blen);
	c->resp = drift_malloc(total);
	if (c->resp == NULL) {
		conn_close(c);
		return;
	}
	memcpy(c->resp, hdr, (size_t)n);
	if (!head && blen > 0)
		memcpy(c->resp + n, body, blen);
	c->responding = true;
	uv_read_stop((uv_stream_t *)&c->tcp);
	uv_timer_stop(&c->timer);
	uv_buf_t b = uv_buf_init(c->resp, (unsigned)total);
	c->wr.data = c;
	if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_written) != 0)
		conn_close(c);
}

static void respond_text(struct hconn *c, const char *status, const char *msg,
			 bool head)
{
	respond(c, status, "text/plain; charset=utf-8", msg, strlen(msg), head);
}

/* The request line and headers are in c->req[0..end). Only the request
 * line matters: METHOD SP TARGET SP HTTP/1.x. */
static void handle(struct hconn *c)
{
	char method[16], target[1024], version[16];
	char line[sizeof(target) + 64];
	const char *eol = memchr(c->req, '\r', c->len);
	size_t ll = eol != NULL ? (size_t)(eol - c->req) : 0;
	if (ll == 0 || ll >= sizeof(line)) {
		respond_text(c, "400 Bad Request", "bad request line\n", false);
		return;
	}
	memcpy(line, c->req, ll);
	line[ll] = '\0';
	if (sscanf(line, "%15s %1023s %15s", method, target, version) != 3 ||
	    strncmp(version, "HTTP/1.", 7) != 0) {
		respond_text(c, "400 Bad Request", "bad request line\n", false);
		return;
	}
	bool head = strcmp(method, "HEAD") == 0;
	if (!head && strcmp(method, "GET") != 0) {
		respond_text(c, "405 Method Not Allowed", "only GET and HEAD\n",
			     false);
		return;
	}
	char *q = strchr(target, '?');
	if (q != NULL)
		*q = '\0';
	if (strcmp(target, "/") == 0) {
		respond_text(c, "200 OK", "drift metrics: GET /metrics\n",
			     head);
		return;
	}
	if (strcmp(target, "/metrics") != 0) {
		respond_text(c, "404 Not Found", "not found: try /metrics\n",
			     head);
		return;
	}
	char *text;
	size_t len;
	if (drift_metrics_render(c->h->reg, &text, &len) != 0) {
		respond_text(c, "500 Internal Server Error", "out of memory\n",
			     head);
		return;
	}
	atomic_fetch_add(&c->h->scrapes, 1);
	respond(c, "200 OK", DRIFT_METRICS_CONTENT_TYPE, text, len, head);
	drift_free(text);
}

static void on_alloc(uv_handle_t *hd, size_t suggested, uv_buf_t *buf)
{
	(void)suggested;
	struct hconn *c = hd->data;
	*buf = uv_buf_init(c->req + c->len, (unsigned)(REQ_MAX - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
	(void)buf;
	struct hconn *c = s->data;
	if (c->responding)
		return;
	if (n < 0) {
		conn_close(c);
		return;
	}
	c->len += (size_t)n;
	/* The headers end at the first empty line; a body is not read. */
	for (size_t i = 0; i + 3 < c->len; i++) {
		if (memcmp(c->req + i, "\r\n\r\n", 4) == 0) {
			handle(c);
			return;
		}
	}
	if (c->len == REQ_MAX)
		respond_text(c, "431 Request Header Fields Too Large",
			     "request headers too large\n", false);
}

static void on_timeout(uv_timer_t *t)
{
	conn_close(t->data);
}

static void on_connection(uv_stream_t *listener, int status)
{
	drift_metrics_http *h = listener->data;
	if (status != 0)
		return;
	struct hconn *c = drift_calloc(1, sizeof(*c));
	if (c == NULL)
		return;
	c->h = h;
	uv_tcp_init(&h->loop, &c->tcp);
	uv_timer_init(&h->loop, &c->timer);
	c->tcp.data = c->timer.data = c;
	c->handles = 2;
	h->nconns++;
	if (uv_accept(listener, (uv_stream_t *)&c->tcp) != 0 ||
	    h->nconns > CONNS_MAX) {
		conn_close(c);
		return;
	}
	uv_timer_start(&c->timer, on_timeout, REQ_TIMEOUT_MS, 0);
	if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0)
		conn_close(c);
}

static void on_walk_close(uv_handle_t *hd, void *arg)
{
	drift_metrics_http *h = arg;
	if (uv_is_closing(hd))
		return;
	if (hd == (uv_handle_t *)&h->listener || hd == (uv_handle_t *)&h->stop)
		uv_close(hd, NULL);
	else
		conn_close(hd->data); /* a connection's socket or timer */
}

static void on_stop(uv_async_t *a)
{
	drift_metrics_http *h = a->data;
	uv_walk(&h->loop, on_walk_close, h);
}

static void *loop_main(void *arg)
{
	drift_metrics_http *h = arg;
	uv_run(&h->loop, UV_RUN_DEFAULT);
	return NULL;
}

int drift_metrics_http_start(drift_metrics *reg, const char *addr,
			     drift_metrics_http **out, drift_err *err)
{
	struct sockaddr_storage ss;
	int rv = drift_grpc_resolve(addr, &ss, err);
	if (rv != 0)
		return drift_err_wrap(err, rv, "metrics: listen");
	drift_metrics_http *h = drift_calloc(1, sizeof(*h));
	if (h == NULL)
		return drift_err_set(err, DRIFT_ENOMEM,
				     "metrics: out of memory");
	h->reg = reg;
	int rc = uv_loop_init(&h->loop);
	if (rc != 0) {
		drift_free(h);
		return drift_err_set(err, DRIFT_EIO, "metrics: loop: %s",
				     uv_strerror(rc));
	}
	uv_tcp_init(&h->loop, &h->listener);
	h->listener.data = h;
	uv_async_init(&h->loop, &h->stop, on_stop);
	h->stop.data = h;
	rc = uv_tcp_bind(&h->listener, (struct sockaddr *)&ss, 0);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&h->listener, 128, on_connection);
	if (rc == 0) {
		struct sockaddr_storage bound;
		int len = sizeof(bound);
		uv_tcp_getsockname(&h->listener, (struct sockaddr *)&bound,
				   &len);
		h->port = bound.ss_family == AF_INET6
				  ? ntohs(((struct sockaddr_in6 *)&bound)
						  ->sin6_port)
				  : ntohs(((struct sockaddr_in *)&bound)
						  ->sin_port);
		rc = pthread_create(&h->thread, NULL, loop_main, h) == 0
			     ? 0
			     : UV_ENOMEM;
	}
	if (rc != 0) {
		uv_close((uv_handle_t *)&h->listener, NULL);
		uv_close((uv_handle_t *)&h->stop, NULL);
		uv_run(&h->loop, UV_RUN_DEFAULT);
		uv_loop_close(&h->loop);
		drift_free(h);
		return drift_err_set(
			err, rc == UV_EADDRINUSE ? DRIFT_EBUSY : DRIFT_EIO,
			"metrics: listen on %s: %s", addr, uv_strerror(rc));
	}
	*out = h;
	return 0;
}

int drift_metrics_http_port(const drift_metrics_http *h)
{
	return h->port;
}

unsigned long long drift_metrics_http_scrapes(const drift_metrics_http *h)
{
	return atomic_load(&h->scrapes);
}

void drift_metrics_http_stop(drift_metrics_http *h)
{
	if (h == NULL)
		return;
	uv_async_send(&h->stop);
	pthread_join(h->thread, NULL);
	uv_loop_close(&h->loop);
	drift_free(h);
}
