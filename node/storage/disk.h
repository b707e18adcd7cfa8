/*
 * The disk manager: asynchronous, batched reads and writes of segment
 * blocks.
 *
 * Two backends pass the same tests:
 * - io_uring (liburing): one ring per disk manager; many requests go to the
 *   kernel in one submission, and a completion thread finishes them;
 * - a thread pool doing pread/pwrite, for kernels or containers that forbid
 *   io_uring (seccomp profiles often do) or when configuration asks for it.
 * DRIFT_DISK_AUTO tries io_uring and falls back to the pool, logging why.
 *
 * A request reads or writes len bytes at off. The manager retries short
 * transfers until the request is complete; a read that reaches the end of
 * the file stops there (transferred < len, result 0: the caller knows what
 * size it expected). Files opened with O_DIRECT (drift_disk_open_file) need
 * buffers, offsets and lengths aligned to 4 KiB, which segment blocks are.
 *
 * Callbacks run on a disk thread, once per request, after its result is
 * set; they must be short (post the result to whoever waits). "When a
 * function that takes a callback returns an error, the callback is never
 * called" (libuv's rule, and ours).
 */
#ifndef DRIFT_NODE_DISK_H
#define DRIFT_NODE_DISK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct drift_disk drift_disk;

enum drift_disk_backend {
	DRIFT_DISK_AUTO = 0,
	DRIFT_DISK_URING,
	DRIFT_DISK_THREADS,
};

typedef struct drift_disk_opts {
	enum drift_disk_backend backend;
	unsigned queue_depth; /* io_uring entries; 0: 256 */
	unsigned threads;     /* pool threads; 0: 4 */
} drift_disk_opts;

enum drift_disk_op { DRIFT_DISK_READ, DRIFT_DISK_WRITE };

typedef struct drift_disk_req drift_disk_req;
typedef void (*drift_disk_cb)(drift_disk_req *req);

struct drift_disk_req {
	/* In: set by the caller. */
	enum drift_disk_op op;
	int fd;
	void *buf;
	size_t len;
	uint64_t off;
	drift_disk_cb done; /* may be NULL */
	void *data;	    /* the caller's */
	/* Out: valid when done runs (or drift_disk_run returns). */
	int result;	    /* 0 or a DRIFT_E* code */
	size_t transferred; /* bytes read or written */
	/* Private to the disk manager. */
	struct drift_disk_req *next;
	struct drift_disk_wait *wait;
};

/* Starts a disk manager. 0, DRIFT_ENOTSUP (DRIFT_DISK_URING asked for and
 * unavailable), DRIFT_ENOMEM, DRIFT_EIO. *out only on success. */
int drift_disk_open(const drift_disk_opts *opts, drift_disk **out,
		    drift_err *err);

/* Waits for every request in flight, then stops the threads and frees. */
void drift_disk_close(drift_disk *d);

/* "io_uring" or "threads". */
const char *drift_disk_backend_name(const drift_disk *d);

/* Queues n requests; each one's callback runs when it completes. 0, or
 * DRIFT_ECLOSED when the manager is closing (then no callback runs). Never
 * fails for some requests and not others. Blocks while the queue is full. */
int drift_disk_submit(drift_disk *d, drift_disk_req *const reqs[], size_t n);

/* Submits n requests and waits for all of them (for blocking callers). Each
 * request's done (if any) still runs first. Returns 0 or the first failed
 * request's result. */
int drift_disk_run(drift_disk *d, drift_disk_req *const reqs[], size_t n);

/* Opens path with flags, with O_DIRECT when direct is set and the file
 * system allows it (tmpfs does not: then without, and *is_direct says
 * which). 0 or a DRIFT_E* code. */
int drift_disk_open_file(const char *path, int flags, int mode, bool direct,
			 int *fd, bool *is_direct, drift_err *err);

#endif /* DRIFT_NODE_DISK_H */
