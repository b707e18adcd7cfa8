/* Tests of node/disk: both backends read and write exactly what pread and
 * pwrite would, in batches, with callbacks, at the end of files and on bad
 * descriptors. */
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/abuf.h"
#include "common/alloc.h"
#include "common/rand.h"
#include "node/storage/disk.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

enum { FILE_PAGES = 256, PAGE = 4096, BATCH = 200 };

static char dir[256];
static char path[320];
static uint8_t *content; /* what the file holds */

static void setup(void)
{
	drift_test_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/data", dir);
	content = malloc(FILE_PAGES * PAGE);
	drift_rand r;
	drift_rand_seed(&r, 5);
	for (size_t i = 0; i < FILE_PAGES * PAGE; i++)
		content[i] = (uint8_t)drift_rand_next(&r);
	FILE *f = fopen(path, "wb");
	fwrite(content, 1, FILE_PAGES * PAGE, f);
	fclose(f);
}

static void teardown(void)
{
	free(content);
	drift_test_rmtree(dir);
}

TestSuite(disk, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static atomic_int callbacks;

static void count_cb(drift_disk_req *req)
{
	(void)req;
	atomic_fetch_add(&callbacks, 1);
}

/* Opens a disk manager of the backend, or returns NULL (with a note) when
 * this kernel lacks io_uring. */
static drift_disk *open_backend(enum drift_disk_backend b)
{
	drift_disk_opts o = {.backend = b, .queue_depth = 32, .threads = 3};
	drift_disk *d = NULL;
	drift_err err;
	int rv = drift_disk_open(&o, &d, &err);
	if (rv == DRIFT_ENOTSUP && b == DRIFT_DISK_URING) {
		cr_log_info("io_uring is not available here: %s", err.msg);
		return NULL;
	}
	cr_assert_eq(rv, 0, "%s", err.msg);
	return d;
}

/* A batch of random page reads (more than the queue depth) against the
 * file's known content. */
static void random_reads(drift_disk *d, int fd)
{
	static drift_disk_req reqs[BATCH];
	drift_disk_req *ptrs[BATCH];
	uint8_t *bufs = drift_aligned_alloc(PAGE, (size_t)BATCH * PAGE);
	drift_rand r;
	drift_rand_seed(&r, 9);
	atomic_store(&callbacks, 0);
	for (int i = 0; i < BATCH; i++) {
		reqs[i] = (drift_disk_req){
			.op = DRIFT_DISK_READ,
			.fd = fd,
			.buf = bufs + (size_t)i * PAGE,
			.len = PAGE,
			.off = drift_rand_below(&r, FILE_PAGES) * PAGE,
			.done = count_cb,
		};
		ptrs[i] = &reqs[i];
	}
	cr_assert_eq(drift_disk_run(d, ptrs, BATCH), 0);
	cr_assert_eq(atomic_load(&callbacks), BATCH);
	for (int i = 0; i < BATCH; i++) {
		cr_assert_eq(reqs[i].result, 0);
		cr_assert_eq(reqs[i].transferred, PAGE);
		cr_assert_eq(memcmp(reqs[i].buf, content + reqs[i].off, PAGE),
			     0, "read %d at %llu", i,
			     (unsigned long long)reqs[i].off);
	}
	drift_free(bufs);
}

static void exercise(enum drift_disk_backend b)
{
	drift_disk *d = open_backend(b);
	if (d == NULL)
		return;
	cr_log_info("backend %s", drift_disk_backend_name(d));
	int fd;
	bool direct;
	drift_err err;
	cr_assert_eq(
		drift_disk_open_file(path, O_RDWR, 0, true, &fd, &direct, &err),
		0, "%s", err.msg);
	random_reads(d, fd);

	/* Write two pages, read them back. */
	uint8_t *w = drift_aligned_alloc(PAGE, 2 * PAGE);
	uint8_t *rb = drift_aligned_alloc(PAGE, 2 * PAGE);
	memset(w, 0xab, 2 * PAGE);
	drift_disk_req wr = {.op = DRIFT_DISK_WRITE,
			     .fd = fd,
			     .buf = w,
			     .len = 2 * PAGE,
			     .off = 10 * PAGE};
	drift_disk_req *p = &wr;
	cr_assert_eq(drift_disk_run(d, &p, 1), 0);
	cr_assert_eq(wr.transferred, 2 * PAGE);
	drift_disk_req rd = {.op = DRIFT_DISK_READ,
			     .fd = fd,
			     .buf = rb,
			     .len = 2 * PAGE,
			     .off = 10 * PAGE};
	p = &rd;
	cr_assert_eq(drift_disk_run(d, &p, 1), 0);
	cr_assert_eq(memcmp(rb, w, 2 * PAGE), 0);

	/* Past the end: a short read, not an error. */
	rd.off = (FILE_PAGES - 1) * PAGE;
	cr_assert_eq(drift_disk_run(d, &p, 1), 0);
	cr_assert_eq(rd.transferred, PAGE);
	rd.off = FILE_PAGES * PAGE;
	cr_assert_eq(drift_disk_run(d, &p, 1), 0);
	cr_assert_eq(rd.transferred, 0);

	/* Zero length completes; a bad descriptor fails its request only. */
	rd.len = 0;
	rd.done = count_cb;
	atomic_store(&callbacks, 0);
	cr_assert_eq(drift_disk_run(d, &p, 1), 0);
	cr_assert_eq(atomic_load(&callbacks), 1);
	rd.len = PAGE;
	rd.fd = 12345;
	cr_assert_eq(drift_disk_run(d, &p, 1), DRIFT_ECLOSED);
	cr_assert_eq(rd.result, DRIFT_ECLOSED);

	close(fd);
	drift_free(w);
	drift_free(rb);
	drift_disk_close(d);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(disk, thread_pool_backend)
{
	exercise(DRIFT_DISK_THREADS);
}

DRIFT_TEST(disk, io_uring_backend)
{
	exercise(DRIFT_DISK_URING);
}

DRIFT_TEST(disk, auto_backend_always_works)
{
	exercise(DRIFT_DISK_AUTO);
}

/* Asynchronous submission from many requests, closing while they run. */
DRIFT_TEST(disk, close_waits_for_requests_in_flight)
{
	for (int b = DRIFT_DISK_URING; b <= DRIFT_DISK_THREADS; b++) {
		drift_disk *d = open_backend((enum drift_disk_backend)b);
		if (d == NULL)
			continue;
		int fd = open(path, O_RDONLY);
		static drift_disk_req reqs[BATCH];
		drift_disk_req *ptrs[BATCH];
		uint8_t *bufs = malloc((size_t)BATCH * PAGE);
		atomic_store(&callbacks, 0);
		for (int i = 0; i < BATCH; i++) {
			reqs[i] = (drift_disk_req){.op = DRIFT_DISK_READ,
						   .fd = fd,
						   .buf = bufs + i * PAGE,
						   .len = PAGE,
						   .off = (uint64_t)i * PAGE,
						   .done = count_cb};
			ptrs[i] = &reqs[i];
		}
		cr_assert_eq(drift_disk_submit(d, ptrs, BATCH), 0);
		drift_disk_close(d);
		cr_assert_eq(atomic_load(&callbacks), BATCH);
		for (int i = 0; i < BATCH; i++)
			cr_assert_eq(
				memcmp(reqs[i].buf, content + i * PAGE, PAGE),
				0);
		free(bufs);
		close(fd);
	}
}
