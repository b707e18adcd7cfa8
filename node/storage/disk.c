#include "node/storage/disk.h"

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"

/* A group of requests someone waits for (drift_disk_run). */
typedef struct drift_disk_wait {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	size_t left;
} drift_disk_wait;

struct drift_disk {
	enum drift_disk_backend backend;
	pthread_mutex_t lock;
	pthread_cond_t cond; /* inflight fell, or the queue grew */
	bool closing;
	size_t inflight;

	/* io_uring */
	struct io_uring ring;
	unsigned depth;
	pthread_t reaper;

	/* thread pool */
	pthread_t *workers;
	unsigned nworkers;
	drift_disk_req *head, *tail; /* FIFO of queued requests */
};

/* Finishes a request: callback, waiter, in-flight count. */
static void complete(drift_disk *d, drift_disk_req *req)
{
	drift_disk_wait *w = req->wait;
	if (req->done != NULL)
		req->done(req);
	if (w != NULL) {
		pthread_mutex_lock(&w->lock);
		if (--w->left == 0)
			pthread_cond_signal(&w->cond);
		pthread_mutex_unlock(&w->lock);
	}
	pthread_mutex_lock(&d->lock);
	d->inflight--;
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
}

/* Records one transfer of n bytes (or -errno) and says whether the request
 * is finished. */
static bool advance(drift_disk_req *req, long n)
{
	if (n < 0) {
		if (n == -EINTR || n == -EAGAIN)
			return false;
		req->result = drift_err_from_errno((int)-n);
		return true;
	}
	req->transferred += (size_t)n;
	/* 0 bytes: end of file for a read; a write that makes no progress
	 * is a full disk. */
	if (n == 0) {
		if (req->op == DRIFT_DISK_WRITE)
			req->result = DRIFT_ENOSPC;
		return true;
	}
	return req->transferred == req->len;
}

/* ---- Thread pool ----------------------------------------------------------
 */

static void *worker_main(void *arg)
{
	drift_disk *d = arg;
	for (;;) {
		pthread_mutex_lock(&d->lock);
		while (d->head == NULL && !d->closing)
			pthread_cond_wait(&d->cond, &d->lock);
		drift_disk_req *req = d->head;
		if (req == NULL) {
			pthread_mutex_unlock(&d->lock);
			return NULL;
		}
		d->head = req->next;
		if (d->head == NULL)
			d->tail = NULL;
		pthread_mutex_unlock(&d->lock);

		bool finished = req->len == 0;
		while (!finished) {
			uint8_t *p = (uint8_t *)req->buf + req->transferred;
			size_t left = req->len - req->transferred;
			off_t off = (off_t)(req->off + req->transferred);
			ssize_t n = req->op == DRIFT_DISK_READ
					    ? pread(req->fd, p, left, off)
					    : pwrite(req->fd, p, left, off);
			finished = advance(req, n < 0 ? -errno : (long)n);
		}
		complete(d, req);
	}
}

static int pool_start(drift_disk *d, unsigned threads, drift_err *err)
{
	d->workers = drift_calloc(threads, sizeof(pthread_t));
	if (d->workers == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "disk thread pool");
	for (unsigned i = 0; i < threads; i++) {
		int rv = pthread_create(&d->workers[i], NULL, worker_main, d);
		if (rv != 0)
			return drift_err_errno(err, rv, "starting disk thread");
		d->nworkers++;
	}
	return 0;
}

/* ---- io_uring --------------------------------------------------------- */

/* A free submission entry; when all are prepared but not yet handed over,
 * handing them to the kernel frees them. The caller holds d->lock. */
static struct io_uring_sqe *get_sqe(drift_disk *d)
{
	struct io_uring_sqe *sqe;
	while ((sqe = io_uring_get_sqe(&d->ring)) == NULL)
		io_uring_submit(&d->ring);
	return sqe;
}

/* Puts the rest of req on the ring. The caller holds d->lock and has made
 * sure the ring has room (inflight <= depth). */
static void uring_prep(drift_disk *d, drift_disk_req *req)
{
	struct io_uring_sqe *sqe = get_sqe(d);
	uint8_t *p = (uint8_t *)req->buf + req->transferred;
	unsigned left = (unsigned)(req->len - req->transferred);
	uint64_t off = req->off + req->transferred;
	if (req->op == DRIFT_DISK_READ)
		io_uring_prep_read(sqe, req->fd, p, left, off);
	else
		io_uring_prep_write(sqe, req->fd, p, left, off);
	io_uring_sqe_set_data(sqe, req);
}

static void *reaper_main(void *arg)
{
	drift_disk *d = arg;
	for (;;) {
		struct io_uring_cqe *cqe;
		int rv = io_uring_wait_cqe(&d->ring, &cqe);
		if (rv == -EINTR)
			continue;
		if (rv < 0) {
			DRIFT_ERROR("disk: io_uring_wait_cqe: %s",
				    strerror(-rv));
			return NULL;
		}
		drift_disk_req *req = io_uring_cqe_get_data(cqe);
		int res = cqe->res;
		io_uring_cqe_seen(&d->ring, cqe);
		if (req == NULL)
			return NULL; /* the wake-up of drift_disk_close */
		if (advance(req, res)) {
			complete(d, req);
		} else {
			pthread_mutex_lock(&d->lock);
			uring_prep(d, req);
			io_uring_submit(&d->ring);
			pthread_mutex_unlock(&d->lock);
		}
	}
}

static int uring_start(drift_disk *d, unsigned depth, drift_err *err)
{
	int rv = io_uring_queue_init(depth, &d->ring, 0);
	if (rv < 0)
		return drift_err_errno(err, -rv, "io_uring_queue_init");
	d->depth = depth;
	rv = pthread_create(&d->reaper, NULL, reaper_main, d);
	if (rv != 0) {
		io_uring_queue_exit(&d->ring);
		return drift_err_errno(err, rv,
				       "starting disk completion "
				       "thread");
	}
	return 0;
}

/* ---- Public ------------------------------------------------------------- */

int drift_disk_open(const drift_disk_opts *opts, drift_disk **out,
		    drift_err *err)
{
	drift_disk_opts o = opts != NULL ? *opts : (drift_disk_opts){0};
	if (o.queue_depth == 0)
		o.queue_depth = 256;
	if (o.threads == 0)
		o.threads = 4;
	drift_disk *d = drift_calloc(1, sizeof(*d));
	if (d == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "disk manager");
	pthread_mutex_init(&d->lock, NULL);
	pthread_cond_init(&d->cond, NULL);

	int rv = DRIFT_ENOTSUP;
	if (o.backend != DRIFT_DISK_THREADS) {
		drift_err uerr;
		drift_err_clear(&uerr);
		rv = uring_start(d, o.queue_depth, &uerr);
		if (rv == 0) {
			d->backend = DRIFT_DISK_URING;
		} else if (o.backend == DRIFT_DISK_URING) {
			drift_err_set(err, DRIFT_ENOTSUP,
				      "io_uring unavailable: %s", uerr.msg);
			goto fail;
		} else {
			DRIFT_WARN("disk: io_uring unavailable (%s); using a "
				   "pool of %u threads",
				   uerr.msg, o.threads);
		}
	}
	if (rv != 0) {
		d->backend = DRIFT_DISK_THREADS;
		rv = pool_start(d, o.threads, err);
		if (rv != 0)
			goto fail;
	}
	*out = d;
	return 0;
fail:
	drift_disk_close(d);
	return rv;
}

void drift_disk_close(drift_disk *d)
{
	if (d == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	d->closing = true;
	while (d->inflight > 0)
		pthread_cond_wait(&d->cond, &d->lock);
	pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);

	if (d->backend == DRIFT_DISK_URING) {
		/* Nothing is in flight: a NOP without a request wakes the
		 * completion thread, which then exits. */
		pthread_mutex_lock(&d->lock);
		struct io_uring_sqe *sqe = get_sqe(d);
		io_uring_prep_nop(sqe);
		io_uring_sqe_set_data(sqe, NULL);
		io_uring_submit(&d->ring);
		pthread_mutex_unlock(&d->lock);
		pthread_join(d->reaper, NULL);
		io_uring_queue_exit(&d->ring);
	}
	for (unsigned i = 0; i < d->nworkers; i++)
		pthread_join(d->workers[i], NULL);
	drift_free(d->workers);
	pthread_cond_destroy(&d->cond);
	pthread_mutex_destroy(&d->lock);
	drift_free(d);
}

const char *drift_disk_backend_name(const drift_disk *d)
{
	return d->backend == DRIFT_DISK_URING ? "io_uring" : "threads";
}

int drift_disk_submit(drift_disk *d, drift_disk_req *const reqs[], size_t n)
{
	drift_disk_req *empty = NULL; /* zero-length: complete at once */
	pthread_mutex_lock(&d->lock);
	if (d->closing) {
		pthread_mutex_unlock(&d->lock);
		return DRIFT_ECLOSED;
	}
	for (size_t i = 0; i < n; i++) {
		drift_disk_req *req = reqs[i];
		req->result = 0;
		req->transferred = 0;
		req->next = NULL;
		if (req->len == 0) {
			d->inflight++;
			req->next = empty;
			empty = req;
		} else if (d->backend == DRIFT_DISK_URING) {
			/* Keep at most depth requests in the kernel, so the
			 * completion queue never overflows. */
			while (d->inflight >= d->depth) {
				io_uring_submit(&d->ring);
				pthread_cond_wait(&d->cond, &d->lock);
			}
			d->inflight++;
			uring_prep(d, req);
		} else {
			d->inflight++;
			if (d->tail != NULL)
				d->tail->next = req;
			else
				d->head = req;
			d->tail = req;
		}
	}
	if (d->backend == DRIFT_DISK_URING)
		io_uring_submit(&d->ring);
	else
		pthread_cond_broadcast(&d->cond);
	pthread_mutex_unlock(&d->lock);
	while (empty != NULL) {
		drift_disk_req *next = empty->next;
		complete(d, empty);
		empty = next;
	}
	return 0;
}

int drift_disk_run(drift_disk *d, drift_disk_req *const reqs[], size_t n)
{
	drift_disk_wait w = {.left = n};
	pthread_mutex_init(&w.lock, NULL);
	pthread_cond_init(&w.cond, NULL);
	for (size_t i = 0; i < n; i++)
		reqs[i]->wait = &w;
	int rv = drift_disk_submit(d, reqs, n);
	if (rv == 0) {
		pthread_mutex_lock(&w.lock);
		while (w.left > 0)
			pthread_cond_wait(&w.cond, &w.lock);
		pthread_mutex_unlock(&w.lock);
		for (size_t i = 0; i < n && rv == 0; i++)
			rv = reqs[i]->result;
	}
	for (size_t i = 0; i < n; i++)
		reqs[i]->wait = NULL;
	pthread_cond_destroy(&w.cond);
	pthread_mutex_destroy(&w.lock);
	return rv;
}

int drift_disk_open_file(const char *path, int flags, int mode, bool direct,
			 int *fd, bool *is_direct, drift_err *err)
{
	int f = -1;
	bool used = false;
	if (direct) {
		f = open(path, flags | O_DIRECT | O_CLOEXEC, mode);
		used = f >= 0;
		if (f < 0 && errno != EINVAL)
			return drift_err_errno(err, errno, "opening %s", path);
	}
	if (f < 0) {
		f = open(path, flags | O_CLOEXEC, mode);
		if (f < 0)
			return drift_err_errno(err, errno, "opening %s", path);
	}
	*fd = f;
	if (is_direct != NULL)
		*is_direct = used;
	return 0;
}
