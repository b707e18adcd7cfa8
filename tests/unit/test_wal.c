/* Tests of node/wal: replay, torn tails at every byte, corruption reported,
 * failed syncs and full disks never acknowledged, group commit, rotation
 * and retirement, every sync policy. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/rand.h"
#include "node/storage/wal.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static char dir[256];
static drift_fault_fs ff;
static drift_wal *w;

static void setup(void)
{
	drift_test_tmpdir(dir, sizeof(dir));
	drift_fault_fs_init(&ff, drift_fs_posix());
	w = NULL;
}

static void teardown(void)
{
	drift_log_set_level(DRIFT_LOG_INFO);
	drift_failalloc_arm(0, 0);
	drift_wal_close(w);
	drift_test_rmtree(dir);
}

TestSuite(wal, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

enum { MAXREC = 64 };

typedef struct seen {
	size_t n;
	uint64_t seq[4096];
	uint32_t type[4096];
	size_t len[4096];
	uint8_t first[4096];
} seen;

static int collect(void *ctx, uint64_t seq, uint32_t type, const void *p,
		   size_t len)
{
	seen *s = ctx;
	s->seq[s->n] = seq;
	s->type[s->n] = type;
	s->len[s->n] = len;
	s->first[s->n] = ((const uint8_t *)p)[0];
	s->n++;
	return 0;
}

static int open_wal(drift_fs *fs, enum drift_wal_sync sync, uint64_t after,
		    seen *s, drift_err *err)
{
	drift_wal_opts o = {.fs = fs, .dir = dir, .sync = sync};
	if (s != NULL)
		s->n = 0;
	return drift_wal_open(&o, after, s ? collect : NULL, s, &w, err);
}

/* Record i: type 1 + i % 2, len 1 + i % MAXREC, bytes all (uint8_t)i. */
static int append_nth(int i, drift_err *err)
{
	uint8_t buf[MAXREC];
	size_t len = 1 + (size_t)i % MAXREC;
	memset(buf, (uint8_t)i, len);
	return drift_wal_append(w, 1 + (uint32_t)i % 2, buf, len, NULL, err);
}

static void check_nth(const seen *s, size_t k, int i)
{
	cr_assert_eq(s->type[k], 1 + (uint32_t)i % 2);
	cr_assert_eq(s->len[k], 1 + (size_t)i % MAXREC);
	cr_assert_eq(s->first[k], (uint8_t)i);
}

/* The single WAL file of dir (tests that never rotate). */
static void only_file(char *path, size_t cap, int which)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char names[8][64];
	int n = 0;
	while ((e = readdir(d)) != NULL)
		if (strncmp(e->d_name, "wal-", 4) == 0 && n < 8)
			snprintf(names[n++], 64, "%.60s", e->d_name);
	closedir(d);
	cr_assert_gt(n, which);
	qsort(names, (size_t)n, 64,
	      (int (*)(const void *, const void *))strcmp);
	snprintf(path, cap, "%s/%s", dir, names[which]);
}

static uint8_t *slurp(const char *path, size_t *len)
{
	uint8_t *data;
	cr_assert_eq(drift_fs_read_file(drift_fs_posix(), path, 1 << 26, &data,
					len, NULL),
		     0);
	return data;
}

static void spit(const char *path, const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(wal, append_and_replay)
{
	drift_err err;
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(s->n, 0);
	for (int i = 0; i < 100; i++) {
		uint64_t seq;
		uint8_t b = (uint8_t)i;
		cr_assert_eq(drift_wal_append(w, 1 + (uint32_t)i % 2, &b, 1,
					      &seq, &err),
			     0);
		cr_assert_eq(seq, (uint64_t)i + 1);
	}
	cr_assert_eq(drift_wal_last_seq(w), 100);
	drift_wal_close(w);
	w = NULL;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 40, s, &err), 0);
	cr_assert_eq(s->n, 60, "records <= after_seq are skipped");
	for (size_t k = 0; k < s->n; k++) {
		cr_assert_eq(s->seq[k], 41 + k);
		cr_assert_eq(s->first[k], (uint8_t)(40 + k));
	}
	cr_assert_eq(drift_wal_last_seq(w), 100);
	uint64_t seq;
	cr_assert_eq(drift_wal_append(w, 1, "x", 1, &seq, &err), 0);
	cr_assert_eq(seq, 101, "numbering continues after a reopen");
	cr_assert_eq(drift_wal_append(w, 0, "x", 1, &seq, &err), DRIFT_EINVAL);
	cr_assert_eq(drift_wal_append(w, 1, "x", 0, &seq, &err), DRIFT_EINVAL);
	free(s);
}

/* The last record cut at every byte: every earlier record survives, the
 * cut one is dropped, and the log takes new records again. */
DRIFT_TEST(wal, torn_tail_at_every_byte_of_the_last_record)
{
	drift_err err;
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	drift_wal_close(w);
	w = NULL;
	char path[512];
	only_file(path, sizeof(path), 0);
	size_t len;
	uint8_t *full = slurp(path, &len);
	size_t last = 1 + 9 % MAXREC;
	size_t rec = (24 + last + 7) / 8 * 8;
	drift_log_set_level(DRIFT_LOG_ERROR); /* one warning per cut */
	for (size_t cut = len - rec; cut < len; cut++) {
		/* Remove the files of earlier iterations, keep the cut one. */
		drift_test_rmtree(dir);
		mkdir(dir, 0755);
		spit(path, full, cut);
		cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err), 0,
			     "cut %zu: %s", cut, err.msg);
		cr_assert_eq(s->n, 9, "cut at %zu", cut);
		for (size_t k = 0; k < 9; k++)
			check_nth(s, k, (int)k);
		cr_assert_eq(append_nth(77, &err), 0);
		drift_wal_close(w);
		w = NULL;
		cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err), 0,
			     "%s", err.msg);
		cr_assert_eq(s->n, 10);
		check_nth(s, 9, 77);
		drift_wal_close(w);
		w = NULL;
	}
	drift_free(full);
	free(s);
}

DRIFT_TEST(wal, corrupt_middle_record_is_reported)
{
	drift_err err;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	drift_wal_close(w);
	w = NULL;
	char path[512];
	only_file(path, sizeof(path), 0);
	size_t len;
	uint8_t *data = slurp(path, &len);
	data[64 + 24] ^= 0x10; /* record 1's payload (record 0 is 32 bytes) */
	spit(path, data, len);
	seen *s = calloc(1, sizeof(*s));
	int rv = open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err);
	cr_assert_eq(rv, DRIFT_ECORRUPT);
	cr_assert_not_null(strstr(err.msg, "bad record at offset 64"), "%s",
			   err.msg);
	cr_assert_not_null(strstr(err.msg, path));
	w = NULL;
	drift_free(data);
	free(s);
}

DRIFT_TEST(wal, failed_sync_is_never_acknowledged)
{
	drift_err err;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	cr_assert_eq(append_nth(0, &err), 0);
	drift_fault_fs_arm(&ff, DRIFT_FS_FDATASYNC, 1, EIO, 0);
	cr_assert_eq(append_nth(1, &err), DRIFT_EIO);
	/* The log is poisoned: the kernel may have dropped the pages. */
	cr_assert_eq(append_nth(2, &err), DRIFT_EIO);
	cr_assert_not_null(strstr(err.msg, "reopened"), "%s", err.msg);
	drift_wal_close(w);
	w = NULL;
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(open_wal(drift_fs_posix(), DRIFT_WAL_ALWAYS, 0, s, &err),
		     0);
	cr_assert_geq(s->n, 1, "the acknowledged record is there");
	check_nth(s, 0, 0);
	cr_assert_eq(append_nth(3, &err), 0, "a reopened log works");
	free(s);
}

DRIFT_TEST(wal, full_disk_fails_the_group_and_recovers)
{
	drift_err err;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	cr_assert_eq(append_nth(0, &err), 0);
	drift_fault_fs_set_space(&ff, 20); /* less than one record */
	cr_assert_eq(append_nth(1, &err), DRIFT_ENOSPC);
	drift_fault_fs_set_space(&ff, -1);
	cr_assert_eq(append_nth(2, &err), 0, "space freed: writes work");
	drift_wal_close(w);
	w = NULL;
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(s->n, 2, "the failed record is not in the log");
	check_nth(s, 0, 0);
	check_nth(s, 1, 2);
	free(s);
}

/* ---- Group commit ------------------------------------------------------ */

/* A file system whose fdatasync takes 5 ms, as on a real disk. */
static drift_fs slow_fs;

static int slow_fdatasync(drift_fs *fs, int fd)
{
	(void)fs;
	struct timespec ts = {0, 5 * 1000 * 1000};
	nanosleep(&ts, NULL);
	return drift_fs_posix()->fdatasync(drift_fs_posix(), fd);
}

enum { THREADS = 8, PER_THREAD = 40 };

static void *writer(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < PER_THREAD; i++) {
		uint8_t b[8];
		memset(b, (int)id, sizeof(b));
		cr_assert_eq(drift_wal_append(w, 1, b, sizeof(b), NULL, NULL),
			     0);
	}
	return NULL;
}

DRIFT_TEST(wal, group_commit_shares_fsyncs)
{
	slow_fs = *drift_fs_posix();
	slow_fs.fdatasync = slow_fdatasync;
	drift_err err;
	cr_assert_eq(open_wal(&slow_fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	pthread_t t[THREADS];
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, writer, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	uint64_t syncs = drift_wal_syncs(w);
	cr_log_info("%d appends, %llu fsyncs", THREADS * PER_THREAD,
		    (unsigned long long)syncs);
	/* Eight writers wait on each 5 ms sync: groups of several. */
	cr_assert_lt(syncs, THREADS * PER_THREAD / 2);
	drift_wal_close(w);
	w = NULL;
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err), 0);
	cr_assert_eq(s->n, THREADS * PER_THREAD);
	for (size_t k = 0; k < s->n; k++)
		cr_assert_eq(s->seq[k], k + 1);
	free(s);
}

DRIFT_TEST(wal, batch_and_none_policies_keep_written_records)
{
	enum drift_wal_sync pol[] = {DRIFT_WAL_BATCH, DRIFT_WAL_NONE};
	for (int p = 0; p < 2; p++) {
		drift_test_rmtree(dir);
		mkdir(dir, 0755);
		drift_err err;
		drift_fault_fs_init(&ff, drift_fs_posix());
		/* A long batch window: the syncer stays out of the way. */
		drift_wal_opts lo = {.fs = &ff.fs,
				     .dir = dir,
				     .sync = pol[p],
				     .batch_interval_ns = 60 * DRIFT_NS_PER_S};
		cr_assert_eq(drift_wal_open(&lo, 0, NULL, NULL, &w, &err), 0);
		for (int i = 0; i < 50; i++)
			cr_assert_eq(append_nth(i, &err), 0);
		cr_assert_eq(drift_fault_fs_calls(&ff, DRIFT_FS_FDATASYNC), 0,
			     "no sync in the append path");
		cr_assert_eq(drift_wal_sync(w, &err), 0);
		cr_assert_eq(drift_fault_fs_calls(&ff, DRIFT_FS_FDATASYNC), 1);
		/* Records are in the kernel's hands: a crash of the process
		 * (simulated by reading the files without closing) keeps
		 * them. */
		cr_assert_eq(append_nth(50, &err), 0);
		drift_wal *live = w;
		w = NULL;
		seen *s = calloc(1, sizeof(*s));
		drift_wal_opts o = {.dir = dir, .sync = pol[p]};
		drift_wal *other;
		cr_assert_eq(drift_wal_open(&o, 0, collect, s, &other, &err), 0,
			     "%s", err.msg);
		cr_assert_eq(s->n, 51);
		drift_wal_close(other);
		drift_wal_close(live);
		free(s);
	}
}

DRIFT_TEST(wal, batch_syncs_within_its_window)
{
	drift_err err;
	drift_wal_opts o = {.fs = &ff.fs,
			    .dir = dir,
			    .sync = DRIFT_WAL_BATCH,
			    .batch_interval_ns = 2 * DRIFT_NS_PER_MS};
	cr_assert_eq(drift_wal_open(&o, 0, NULL, NULL, &w, &err), 0);
	cr_assert_eq(append_nth(0, &err), 0);
	for (int i = 0; i < 500 && drift_wal_syncs(w) == 0; i++) {
		struct timespec ts = {0, 2 * 1000 * 1000};
		nanosleep(&ts, NULL);
	}
	cr_assert_geq(drift_wal_syncs(w), 1,
		      "synced by the background "
		      "thread");
}

/* The same with the syncs as tasks of a pool (a node's WALs share one
 * thread): each write that leaves data unsynced gets one sync. */
DRIFT_TEST(wal, batch_syncs_on_a_pool)
{
	drift_err err;
	drift_janitor *pool;
	cr_assert_eq(drift_janitor_new(1, &pool, &err), 0, "%s", err.msg);
	drift_wal_opts o = {.fs = &ff.fs,
			    .dir = dir,
			    .sync = DRIFT_WAL_BATCH,
			    .batch_interval_ns = 2 * DRIFT_NS_PER_MS,
			    .pool = pool};
	cr_assert_eq(drift_wal_open(&o, 0, NULL, NULL, &w, &err), 0);
	for (uint64_t want = 1; want <= 3; want++) {
		cr_assert_eq(append_nth((int)want, &err), 0);
		for (int i = 0; i < 500 && drift_wal_syncs(w) < want; i++) {
			struct timespec ts = {0, 2 * 1000 * 1000};
			nanosleep(&ts, NULL);
		}
		cr_assert_eq(drift_wal_syncs(w), want, "one sync per write");
	}
	struct timespec ts = {0, 20 * 1000 * 1000};
	nanosleep(&ts, NULL);
	cr_assert_eq(drift_wal_syncs(w), 3, "nothing to sync: no sync");
	drift_wal_close(w);
	w = NULL;
	drift_janitor_free(pool);
}

DRIFT_TEST(wal, rotate_and_retire)
{
	drift_err err;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	for (int i = 0; i < 10; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	uint64_t first;
	cr_assert_eq(drift_wal_rotate(w, &first, &err), 0);
	cr_assert_eq(first, 11);
	for (int i = 10; i < 20; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	cr_assert_eq(drift_wal_retire(w, 9, &err), 0);
	char path[512];
	only_file(path, sizeof(path), 0);
	cr_assert_not_null(strstr(path, "wal-0000000000000001.log"),
			   "not all of file 1 is durable elsewhere: kept");
	cr_assert_eq(drift_wal_retire(w, 10, &err), 0);
	only_file(path, sizeof(path), 0);
	cr_assert_not_null(strstr(path, "wal-000000000000000b.log"), "%s",
			   path);
	drift_wal_close(w);
	w = NULL;
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 10, s, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(s->n, 10);
	check_nth(s, 0, 10);
	free(s);
}

/* A rotation while the current file holds no record (right after open, or
 * twice in a row) must not start a second file of the same name: that
 * truncated the file being written, and a retire then unlinked it, so
 * acknowledged records vanished (found by the shard's kill -9 test). */
DRIFT_TEST(wal, rotate_of_an_empty_file_keeps_its_records)
{
	drift_err err;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	drift_wal_close(w);
	w = NULL;
	/* Reopen: appends go to a new, empty file; rotate it at once. */
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	uint64_t first;
	cr_assert_eq(drift_wal_rotate(w, &first, &err), 0);
	cr_assert_eq(first, 6);
	cr_assert_eq(drift_wal_rotate(w, &first, &err), 0, "twice");
	cr_assert_eq(first, 6);
	for (int i = 5; i < 12; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	/* Everything up to 5 is durable elsewhere. */
	cr_assert_eq(drift_wal_retire(w, 5, &err), 0);
	drift_wal_close(w);
	w = NULL;
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 5, s, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(s->n, 7, "records 6..12 survive (%zu replayed)", s->n);
	for (size_t k = 0; k < s->n; k++)
		cr_assert_eq(s->seq[k], 6 + k);
	/* Open, close without a record, open again: the second open must
	 * not take the first one's empty file as a separate older file. */
	drift_wal_close(w);
	w = NULL;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 5, NULL, &err), 0);
	drift_wal_close(w);
	w = NULL;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 5, NULL, &err), 0);
	for (int i = 12; i < 15; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	cr_assert_eq(drift_wal_retire(w, 12, &err), 0);
	drift_wal_close(w);
	w = NULL;
	memset(s, 0, sizeof(*s));
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 12, s, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(s->n, 3,
		     "records 13..15 survive a retire after an "
		     "empty open (%zu replayed)",
		     s->n);
	free(s);
}

DRIFT_TEST(wal, failed_allocations_are_clean)
{
	drift_err err;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	for (int i = 0; i < 5; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	drift_wal_close(w);
	w = NULL;
	seen *s = calloc(1, sizeof(*s));
	for (long n = 1;; n++) {
		drift_failalloc_arm(n, 0);
		int rv = open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM, "allocation %ld: %s", n,
			     drift_errname(rv));
		w = NULL;
	}
	cr_assert_eq(s->n, 5);
	free(s);
}

/* An open whose newest file holds only its header appends to that file:
 * no new file, the same inode, and its records survive the next open. */
DRIFT_TEST(wal, an_open_goes_on_in_an_empty_newest_file)
{
	drift_err err;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	drift_wal_close(w);
	w = NULL;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err), 0);
	drift_wal_close(w);
	w = NULL;
	char path[512];
	only_file(path, sizeof(path), 1);
	cr_assert(strstr(path, "wal-0000000000000004.log") != NULL, "%s", path);
	struct stat before, after;
	cr_assert_eq(stat(path, &before), 0);
	cr_assert_eq(before.st_size, 32, "header only");
	for (int round = 0; round < 2; round++) {
		cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, NULL, &err),
			     0, "%s", err.msg);
		drift_wal_close(w);
		w = NULL;
	}
	cr_assert_eq(stat(path, &after), 0);
	cr_assert_eq(after.st_ino, before.st_ino,
		     "the same file, not a new "
		     "one");
	seen *s = calloc(1, sizeof(*s));
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err), 0);
	cr_assert_eq(s->n, 3);
	for (int i = 3; i < 6; i++)
		cr_assert_eq(append_nth(i, &err), 0);
	drift_wal_close(w);
	w = NULL;
	cr_assert_eq(open_wal(&ff.fs, DRIFT_WAL_ALWAYS, 0, s, &err), 0);
	cr_assert_eq(s->n, 6, "the records appended to the reused file");
	cr_assert_eq(drift_wal_bytes(w), 32 + 32 + 6 * 24 + 8 * 6 + 32,
		     "two files with records and a new one: %llu bytes",
		     (unsigned long long)drift_wal_bytes(w));
	for (size_t k = 0; k < s->n; k++)
		check_nth(s, k, (int)k);
	free(s);
}
