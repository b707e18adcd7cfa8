#include "common/grpc/h2io.h"

#include <string.h>

#include "common/alloc.h"
#include "common/log.h"

#define WRITE_CHUNK (64 * 1024)

struct wreq {
	uv_write_t req;
	drift_h2io *io;
	size_t len;
	char data[];
};

static void on_handle_closed(uv_handle_t *h)
{
	drift_h2io *io = h->data;
	io->on_close(io);
}

void drift_h2io_close(drift_h2io *io, const char *reason)
{
	if (io->closing)
		return;
	io->closing = true;
	io->close_reason = reason;
	uv_close((uv_handle_t *)&io->tcp, on_handle_closed);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	(void)hint;
	drift_h2io *io = h->data;
	buf->base = io->rbuf;
	buf->len = sizeof(io->rbuf);
}

static void maybe_done(drift_h2io *io)
{
	if (io->closing)
		return;
	bool wr = nghttp2_session_want_write(io->session);
	bool rd = nghttp2_session_want_read(io->session);
	if (!wr && !rd && io->write_pending == 0)
		drift_h2io_close(io, "session finished");
	else if (io->eof && !wr && io->write_pending == 0)
		drift_h2io_close(io, "peer closed");
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	drift_h2io *io = s->data;
	if (io->closing)
		return;
	if (nread < 0) {
		if (nread != UV_EOF) {
			drift_h2io_close(io, "read error");
			return;
		}
		io->eof = true;
		uv_read_stop(s);
		io->reading = false;
		drift_h2io_flush(io);
		maybe_done(io);
		return;
	}
	if (nread == 0)
		return;
	ssize_t rv = nghttp2_session_mem_recv(
		io->session, (const uint8_t *)buf->base, (size_t)nread);
	if (rv < 0) {
		DRIFT_DEBUG("h2: closing connection: %s",
			    nghttp2_strerror((int)rv));
		/* nghttp2 may have queued a GOAWAY: try to send it. */
		drift_h2io_flush(io);
		drift_h2io_close(io, "protocol error");
		return;
	}
	if (io->after_recv != NULL)
		io->after_recv(io);
	drift_h2io_flush(io);
}

int drift_h2io_init(uv_loop_t *loop, drift_h2io *io)
{
	memset(io, 0, sizeof(*io));
	int rc = uv_tcp_init(loop, &io->tcp);
	if (rc == 0)
		io->tcp.data = io;
	return rc;
}

int drift_h2io_start(drift_h2io *io)
{
	uv_tcp_nodelay(&io->tcp, 1);
	int rc = uv_read_start((uv_stream_t *)&io->tcp, on_alloc, on_read);
	if (rc == 0)
		io->reading = true;
	return rc;
}

static void on_written(uv_write_t *req, int status)
{
	struct wreq *w = (struct wreq *)req;
	drift_h2io *io = w->io;
	io->write_pending -= w->len;
	drift_free(w);
	if (io->closing)
		return;
	if (status < 0) {
		drift_h2io_close(io, "write error");
		return;
	}
	drift_h2io_flush(io);
}

void drift_h2io_flush(drift_h2io *io)
{
	if (io->closing)
		return;
	while (io->write_pending < DRIFT_H2IO_WRITE_HIGH) {
		struct wreq *w = NULL;
		size_t cap = 0;
		/* Coalesce the session's small frames into one write. */
		for (;;) {
			const uint8_t *data;
			ssize_t n =
				nghttp2_session_mem_send(io->session, &data);
			if (n < 0) {
				drift_free(w);
				drift_h2io_close(io, "send error");
				return;
			}
			if (n == 0)
				break;
			if (w == NULL || w->len + (size_t)n > cap) {
				size_t want =
					(w != NULL ? w->len : 0) + (size_t)n;
				if (want < WRITE_CHUNK)
					want = WRITE_CHUNK;
				struct wreq *nw =
					drift_realloc(w, sizeof(*nw) + want);
				if (nw == NULL) {
					drift_free(w);
					drift_h2io_close(io, "out of memory");
					return;
				}
				if (w == NULL)
					nw->len = 0;
				nw->io = io;
				w = nw;
				cap = want;
			}
			memcpy(w->data + w->len, data, (size_t)n);
			w->len += (size_t)n;
			if (w->len >= WRITE_CHUNK)
				break;
		}
		if (w == NULL)
			break;
		uv_buf_t b = uv_buf_init(w->data, (unsigned)w->len);
		int rc = uv_write(&w->req, (uv_stream_t *)&io->tcp, &b, 1,
				  on_written);
		if (rc < 0) {
			drift_free(w);
			drift_h2io_close(io, "write error");
			return;
		}
		io->write_pending += w->len;
	}
	maybe_done(io);
}
