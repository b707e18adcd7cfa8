/*
 * One HTTP/2 connection over a libuv TCP handle: the glue between a socket
 * and an nghttp2 session, shared by the gRPC server and client. Internal to
 * common/grpc; every function runs on the loop thread that owns the handle.
 *
 * Reading feeds nghttp2_session_mem_recv; flushing drains
 * nghttp2_session_mem_send into uv_write requests of up to 64 KiB, and
 * stops while more than DRIFT_H2IO_WRITE_HIGH bytes wait for the socket (a
 * peer that does not read cannot make us buffer without bound; the write
 * callback resumes). The connection closes when nghttp2 wants neither to
 * read nor to write, on a protocol error, on EOF once everything is
 * written, or on drift_h2io_close; `on_close` runs after the handle is
 * closed, and only then may the owner free the memory.
 */
#ifndef DRIFT_COMMON_GRPC_H2IO_H
#define DRIFT_COMMON_GRPC_H2IO_H

#include <nghttp2/nghttp2.h>
#include <stdbool.h>
#include <stddef.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "common/err.h"

#define DRIFT_H2IO_WRITE_HIGH (1u << 20)

typedef struct drift_h2io drift_h2io;

struct drift_h2io {
	uv_tcp_t tcp;
	nghttp2_session *session;
	size_t write_pending; /* bytes handed to uv_write, not yet done */
	bool reading, closing, eof;
	/* Called after each batch of input was processed (may be NULL). */
	void (*after_recv)(drift_h2io *io);
	/* Called once the handle is closed; the owner frees io there. */
	void (*on_close)(drift_h2io *io);
	const char *close_reason; /* static string, for logs */
	char rbuf[64 * 1024];
};

/* Initialises the handle on loop; tcp.data is io. 0 or a UV error. */
int drift_h2io_init(uv_loop_t *loop, drift_h2io *io);
/* Starts reading (the session must be set). 0 or a UV error. */
int drift_h2io_start(drift_h2io *io);
/* Sends what the session has queued, within the write limit. */
void drift_h2io_flush(drift_h2io *io);
/* Closes now (pending output is dropped); idempotent. */
void drift_h2io_close(drift_h2io *io, const char *reason);

/* An nghttp2 header from NUL-terminated strings (copied by nghttp2). */
static inline void drift_h2_nv(nghttp2_nv *nv, const char *name,
			       const char *value)
{
	nv->name = (uint8_t *)name;
	nv->namelen = strlen(name);
	nv->value = (uint8_t *)value;
	nv->valuelen = strlen(value);
	nv->flags = NGHTTP2_NV_FLAG_NONE;
}

/* Whether the header bytes a[0..alen) equal the string b. */
static inline bool drift_h2_is(const uint8_t *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	return alen == blen && memcmp(a, b, blen) == 0;
}

/* Splits "host:port" or "[v6]:port" into host (brackets removed) and
 * port: 0 or DRIFT_EINVAL. */
int drift_grpc_split_addr(const char *addr, char *host, size_t hcap, int *port);

/* Resolves "host:port" or "[v6]:port" (getaddrinfo: names allowed) into
 * ss. 0 or DRIFT_EINVAL with a message naming the address. */
int drift_grpc_resolve(const char *addr, struct sockaddr_storage *ss,
		       drift_err *err);

#endif /* DRIFT_COMMON_GRPC_H2IO_H */
