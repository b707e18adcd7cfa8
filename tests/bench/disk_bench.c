/*
 * disk-bench: random 4 KiB reads through the disk manager (node/storage/disk.h)
 * on one file, for each backend (io_uring, thread pool) and queue depth. Prints
 * one JSON line per (backend, queue depth) on stdout:
 *
 *   {"event": "disk", "backend": B, "qd": Q, "threads": T, "o_direct": D,
 *    "file_bytes": S, "reads": N, "seconds": W, "iops": I, "mib_per_s": M,
 *    "mean_us": A, "p50_us": P, "p99_us": R, "p999_us": X,
 *    "cpu_us_per_read": C}
 *
 *   disk-bench [-s SECONDS] [-m FILE_MIB] [-q QD,QD,...] PATH
 *
 * PATH is created (or re-created when its size or first block is not what
 * this program writes) as FILE_MIB MiB of 4 KiB blocks; block i starts with
 * i as a little-endian u64, then pseudo-random bytes, so each read is
 * checked against the block it asked for. The file is opened with O_DIRECT
 * when the file system allows it ("o_direct" says whether it did); without
 * O_DIRECT the pages are dropped from the page cache before each point
 * (POSIX_FADV_DONTNEED), but reads may still be served from memory.
 *
 * The load is closed-loop: Q reads are kept in flight; a completion is
 * timed in its callback (on a disk thread), handed to the main thread,
 * which records the latency (submission to callback) and submits a new
 * read at a uniformly random block. The thread pool gets Q threads, so
 * both backends can have Q reads outstanding. Each point runs a 0.5 s
 * warm-up, then SECONDS of measurement. cpu_us_per_read is the process's
 * user + system CPU time over the measurement divided by the reads: what a
 * read costs the machine, whichever thread spends it.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/err.h"
#include "common/rand.h"
#include "node/storage/disk.h"

#define BLOCK 4096
#define MAX_QD 1024

/* ---- The file ----------------------------------------------------------- */

static void fill_block(uint8_t *b, uint64_t index)
{
	drift_rand r;
	drift_rand_seed(&r, index + 1);
	for (size_t i = 0; i < BLOCK; i += 8) {
		uint64_t v = i == 0 ? index : drift_rand_next(&r);
		for (int k = 0; k < 8; k++)
			b[i + k] = (uint8_t)(v >> (8 * k));
	}
}

static uint64_t block_index(const uint8_t *b)
{
	uint64_t v = 0;
	for (int k = 7; k >= 0; k--)
		v = v << 8 | b[k];
	return v;
}

/* 0 when path already holds size bytes whose first and last blocks are
 * ours; else writes it (1 MiB at a time, then fsync). */
static int make_file(const char *path, uint64_t size)
{
	struct stat st;
	uint8_t *buf = drift_aligned_alloc(BLOCK, 1 << 20);
	if (buf == NULL)
		return -1;
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd >= 0 && fstat(fd, &st) == 0 && (uint64_t)st.st_size == size &&
	    pread(fd, buf, BLOCK, 0) == BLOCK && block_index(buf) == 0 &&
	    pread(fd, buf, BLOCK, (off_t)(size - BLOCK)) == BLOCK &&
	    block_index(buf) == size / BLOCK - 1) {
		close(fd);
		drift_free(buf);
		return 0;
	}
	if (fd >= 0)
		close(fd);
	fprintf(stderr, "disk-bench: writing %s (%llu MiB)\n", path,
		(unsigned long long)(size >> 20));
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		perror(path);
		drift_free(buf);
		return -1;
	}
	int rv = 0;
	for (uint64_t off = 0; off < size && rv == 0; off += 1 << 20) {
		size_t chunk = size - off < (1 << 20) ? (size_t)(size - off)
						      : (size_t)1 << 20;
		for (size_t b = 0; b < chunk; b += BLOCK)
			fill_block(buf + b, (off + b) / BLOCK);
		if (pwrite(fd, buf, chunk, (off_t)off) != (ssize_t)chunk) {
			perror("pwrite");
			rv = -1;
		}
	}
	if (rv == 0 && fsync(fd) != 0) {
		perror("fsync");
		rv = -1;
	}
	close(fd);
	drift_free(buf);
	return rv;
}

/* ---- The closed loop ---------------------------------------------------- */

typedef struct slot {
	drift_disk_req req;
	uint64_t block;
	uint64_t t_submit, t_done;
	struct slot *next;
} slot;

typedef struct loop {
	pthread_mutex_t lock;
	pthread_cond_t cond;
	slot *done; /* completed, not yet seen by the main thread */
} loop;

static loop the_loop = {
	PTHREAD_MUTEX_INITIALIZER,
	PTHREAD_COND_INITIALIZER,
	NULL,
};

static void on_done(drift_disk_req *req)
{
	slot *s = req->data;
	s->t_done = drift_now_ns();
	pthread_mutex_lock(&the_loop.lock);
	s->next = the_loop.done;
	the_loop.done = s;
	pthread_cond_signal(&the_loop.cond);
	pthread_mutex_unlock(&the_loop.lock);
}

static slot *wait_done(void)
{
	pthread_mutex_lock(&the_loop.lock);
	while (the_loop.done == NULL)
		pthread_cond_wait(&the_loop.cond, &the_loop.lock);
	slot *s = the_loop.done;
	the_loop.done = NULL;
	pthread_mutex_unlock(&the_loop.lock);
	return s;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static double pct_us(const uint64_t *v, size_t n, double p)
{
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return (double)v[i] / 1e3;
}

typedef struct point {
	enum drift_disk_backend backend;
	unsigned qd;
	double seconds;
	int fd;
	uint64_t blocks;
	bool direct;
	uint64_t file_bytes;
	const char *path;
} point;

/* Runs one point; 0, 1 when the backend is unavailable (reported), -1 on
 * a failed or wrong read. */
static int run_point(const point *p, slot *slots, uint8_t *bufs)
{
	drift_disk_opts o = {.backend = p->backend,
			     .queue_depth = p->qd < 64 ? 64 : p->qd,
			     .threads = p->qd};
	drift_disk *d;
	drift_err err;
	drift_err_clear(&err);
	const char *name =
		p->backend == DRIFT_DISK_URING ? "io_uring" : "threads";
	int rv = drift_disk_open(&o, &d, &err);
	if (rv != 0) {
		printf("{\"event\": \"disk\", \"backend\": \"%s\", \"qd\": %u, "
		       "\"unavailable\": \"%s\"}\n",
		       name, p->qd, drift_err_msg(&err, rv));
		fflush(stdout);
		return rv == DRIFT_ENOTSUP ? 1 : -1;
	}
	if (!p->direct)
		posix_fadvise(p->fd, 0, 0, POSIX_FADV_DONTNEED);

	drift_rand r;
	drift_rand_seed(&r, 42 + p->qd);
	size_t cap = 1 << 20, nlat = 0;
	uint64_t *lat = malloc(cap * sizeof(uint64_t));
	drift_disk_req *batch[MAX_QD];
	if (lat == NULL) {
		drift_disk_close(d);
		return -1;
	}
	uint64_t t0 = drift_now_ns();
	uint64_t warm_end = t0 + 500 * UINT64_C(1000000);
	uint64_t end = warm_end + (uint64_t)(p->seconds * 1e9);
	uint64_t first_t = 0, last_t = 0;
	double cpu0 = 0;
	bool measuring = false;
	size_t nb = 0;
	for (unsigned i = 0; i < p->qd; i++) {
		slot *s = &slots[i];
		s->block = drift_rand_below(&r, p->blocks);
		s->req = (drift_disk_req){
			.op = DRIFT_DISK_READ,
			.fd = p->fd,
			.buf = bufs + (size_t)i * BLOCK,
			.len = BLOCK,
			.off = s->block * BLOCK,
			.done = on_done,
			.data = s,
		};
		s->t_submit = drift_now_ns();
		batch[nb++] = &s->req;
	}
	rv = drift_disk_submit(d, batch, nb);
	unsigned outstanding = rv == 0 ? p->qd : 0;
	bool bad = rv != 0;
	while (outstanding > 0) {
		slot *s = wait_done();
		uint64_t now = drift_now_ns();
		if (!measuring && now >= warm_end) {
			measuring = true;
			first_t = now;
			cpu0 = cpu_seconds();
		}
		nb = 0;
		for (; s != NULL; s = s->next) {
			outstanding--;
			if (s->req.result != 0 || s->req.transferred != BLOCK ||
			    block_index(s->req.buf) != s->block) {
				fprintf(stderr,
					"disk-bench: read of block %llu: "
					"%s, %zu bytes\n",
					(unsigned long long)s->block,
					drift_strerror(s->req.result),
					s->req.transferred);
				bad = true;
			}
			if (measuring && s->t_submit >= first_t) {
				if (nlat == cap) {
					uint64_t *l = realloc(
						lat,
						2 * cap * sizeof(uint64_t));
					if (l == NULL) {
						bad = true;
						continue;
					}
					lat = l;
					cap *= 2;
				}
				lat[nlat++] = s->t_done - s->t_submit;
				if (s->t_done > last_t)
					last_t = s->t_done;
			}
			if (now < end && !bad) {
				s->block = drift_rand_below(&r, p->blocks);
				s->req.off = s->block * BLOCK;
				s->t_submit = drift_now_ns();
				batch[nb++] = &s->req;
			}
		}
		if (nb > 0) {
			if (drift_disk_submit(d, batch, nb) != 0)
				bad = true;
			else
				outstanding += (unsigned)nb;
		}
	}
	double cpu = cpu_seconds() - cpu0;
	drift_disk_close(d);
	if (bad || nlat == 0) {
		free(lat);
		return -1;
	}
	/* Reads submitted after the start and completed by the last one. */
	double wall = (double)(last_t - first_t) / 1e9;
	double sum = 0;
	for (size_t i = 0; i < nlat; i++)
		sum += (double)lat[i];
	qsort(lat, nlat, sizeof(uint64_t), cmp_u64);
	printf("{\"event\": \"disk\", \"backend\": \"%s\", \"qd\": %u, "
	       "\"threads\": %u, \"o_direct\": %s, \"file\": \"%s\", "
	       "\"file_bytes\": %llu, \"reads\": %zu, \"seconds\": %.3f, "
	       "\"iops\": %.0f, \"mib_per_s\": %.1f, \"mean_us\": %.1f, "
	       "\"p50_us\": %.1f, \"p99_us\": %.1f, \"p999_us\": %.1f, "
	       "\"cpu_us_per_read\": %.2f}\n",
	       name, p->qd, p->backend == DRIFT_DISK_THREADS ? p->qd : 1,
	       p->direct ? "true" : "false", p->path,
	       (unsigned long long)p->file_bytes, nlat, wall,
	       (double)nlat / wall, (double)nlat * BLOCK / wall / 1048576.0,
	       sum / (double)nlat / 1e3, pct_us(lat, nlat, 0.50),
	       pct_us(lat, nlat, 0.99), pct_us(lat, nlat, 0.999),
	       cpu / (double)nlat * 1e6);
	fflush(stdout);
	free(lat);
	return 0;
}

static void usage(void)
{
	fprintf(stderr, "usage: disk-bench [-s SECONDS] [-m FILE_MIB] "
			"[-q QD,QD,...] PATH\n");
	exit(2);
}

int main(int argc, char **argv)
{
	double seconds = 5;
	uint64_t mib = 4096;
	unsigned qds[16] = {1, 32};
	size_t nqd = 2;
	int c;
	while ((c = getopt(argc, argv, "s:m:q:")) != -1) {
		switch (c) {
		case 's':
			seconds = atof(optarg);
			break;
		case 'm':
			mib = strtoull(optarg, NULL, 10);
			break;
		case 'q':
			nqd = 0;
			for (char *t = strtok(optarg, ","); t && nqd < 16;
			     t = strtok(NULL, ","))
				qds[nqd++] = (unsigned)atoi(t);
			break;
		default:
			usage();
		}
	}
	if (optind + 1 != argc || seconds <= 0 || mib == 0 || nqd == 0)
		usage();
	unsigned max_qd = 0;
	for (size_t i = 0; i < nqd; i++) {
		if (qds[i] == 0 || qds[i] > MAX_QD)
			usage();
		max_qd = qds[i] > max_qd ? qds[i] : max_qd;
	}
	const char *path = argv[optind];
	uint64_t size = mib << 20;
	if (make_file(path, size) != 0)
		return 1;

	int fd;
	bool direct;
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_disk_open_file(path, O_RDONLY, 0, true, &fd, &direct,
				      &err);
	if (rv != 0) {
		fprintf(stderr, "disk-bench: %s\n", drift_err_msg(&err, rv));
		return 1;
	}
	fprintf(stderr, "disk-bench: %s, %llu MiB, O_DIRECT %s\n", path,
		(unsigned long long)mib, direct ? "yes" : "no (not allowed)");
	slot *slots = calloc(max_qd, sizeof(slot));
	uint8_t *bufs = drift_aligned_alloc(BLOCK, (size_t)max_qd * BLOCK);
	if (slots == NULL || bufs == NULL)
		return 1;

	int failed = 0;
	static const enum drift_disk_backend backends[] = {DRIFT_DISK_URING,
							   DRIFT_DISK_THREADS};
	for (size_t b = 0; b < 2; b++) {
		for (size_t i = 0; i < nqd; i++) {
			point p = {backends[b],	 qds[i], seconds, fd,
				   size / BLOCK, direct, size,	  path};
			rv = run_point(&p, slots, bufs);
			if (rv < 0)
				failed = 1;
			if (rv == 1)
				break; /* backend unavailable */
		}
	}
	close(fd);
	free(slots);
	drift_free(bufs);
	return failed;
}
