/* Tests of node/segment: round trips, damage of every kind detected, and no
 * fault during writing leaves a file a reader accepts. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/hash.h"
#include "common/rand.h"
#include "node/storage/segment.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static char dir[256];
static char path[320];
static drift_fault_fs ff;

static void setup(void)
{
	drift_test_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/000001.drift", dir);
	drift_fault_fs_init(&ff, drift_fs_posix());
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_test_rmtree(dir);
}

TestSuite(segment, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

enum { NBLOCKS = 5 };
static const size_t sizes[NBLOCKS] = {0, 1, 4095, 4096, 10000};
static uint8_t payload[NBLOCKS][10000];
static const char bloom[] = "bloom filter bytes";
static const char meta[] = "metadata";

static void make_payloads(void)
{
	drift_rand r;
	drift_rand_seed(&r, 11);
	for (int b = 0; b < NBLOCKS; b++)
		for (size_t i = 0; i < sizes[b]; i++)
			payload[b][i] = (uint8_t)drift_rand_next(&r);
}

/* Writes the test segment through fs; returns the first failure. */
static int write_segment(drift_fs *fs, drift_err *err)
{
	make_payloads();
	drift_segment_writer *w;
	int rv = drift_segw_create(fs, path, 77, &w, err);
	if (rv != 0)
		return rv;
	for (int b = 0; b < NBLOCKS; b++) {
		drift_block_desc d = {.kind = 1 + (uint32_t)b,
				      .flags = 9,
				      .key = 1000 + (uint64_t)b,
				      .aux = sizes[b]};
		uint32_t idx;
		rv = drift_segw_add_block(w, &d, payload[b], sizes[b], &idx,
					  err);
		if (rv != 0) {
			drift_segw_abort(w);
			return rv;
		}
		cr_assert_eq(idx, (uint32_t)b);
	}
	rv = drift_segw_add_section(w, 1, bloom, sizeof(bloom), err);
	if (rv == 0)
		rv = drift_segw_add_section(w, 2, meta, sizeof(meta), err);
	if (rv != 0) {
		drift_segw_abort(w);
		return rv;
	}
	return drift_segw_finish(w, err);
}

static bool exists(const char *p)
{
	struct stat st;
	return stat(p, &st) == 0;
}

static bool tmp_exists(void)
{
	char tmp[400];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	return exists(tmp);
}

/* Opens the segment and checks everything it returns is the original, or
 * that what fails fails as corruption. Returns whether open succeeded. */
static bool check_reads(int *open_rv)
{
	drift_segment_reader *r;
	drift_err err;
	int rv = drift_segr_open(drift_fs_posix(), path, &r, &err);
	*open_rv = rv;
	if (rv != 0)
		return false;
	cr_assert_eq(drift_segr_block_count(r), NBLOCKS);
	static uint8_t buf[10000];
	for (uint32_t b = 0; b < NBLOCKS; b++) {
		const drift_block_info *bi = drift_segr_block(r, b);
		cr_assert_eq(bi->length, sizes[b]);
		cr_assert_eq(bi->desc.key, 1000 + b);
		rv = drift_segr_read_block(r, b, buf, &err);
		if (rv == 0)
			cr_assert_eq(memcmp(buf, payload[b], sizes[b]), 0,
				     "block %u read back wrong data", b);
		else
			cr_assert_eq(rv, DRIFT_ECORRUPT, "%s", err.msg);
	}
	const void *data;
	size_t len;
	cr_assert_eq(drift_segr_section(r, 1, &data, &len), 0);
	cr_assert_eq(len, sizeof(bloom));
	cr_assert_eq(memcmp(data, bloom, len), 0);
	drift_segr_close(r);
	return true;
}

static uint8_t *read_all(size_t *len)
{
	uint8_t *data;
	drift_err err;
	cr_assert_eq(drift_fs_read_file(drift_fs_posix(), path, 1 << 24, &data,
					len, &err),
		     0);
	return data;
}

static void write_all(const uint8_t *data, size_t len)
{
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(segment, round_trip)
{
	drift_err err;
	cr_assert_eq(write_segment(&ff.fs, &err), 0, "%s", err.msg);
	cr_assert_not(tmp_exists());
	size_t len;
	uint8_t *data = read_all(&len);
	cr_assert_eq(len % DRIFT_SEGMENT_PAGE, 0);
	drift_free(data);

	drift_segment_reader *r;
	cr_assert_eq(drift_segr_open(drift_fs_posix(), path, &r, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(drift_segr_id(r), 77);
	static uint8_t buf[10000];
	for (uint32_t b = 0; b < NBLOCKS; b++) {
		const drift_block_info *bi = drift_segr_block(r, b);
		cr_assert_eq(bi->desc.kind, 1 + b);
		cr_assert_eq(bi->desc.flags, 9);
		cr_assert_eq(bi->desc.aux, sizes[b]);
		cr_assert_eq(bi->offset % DRIFT_SEGMENT_PAGE, 0);
		cr_assert_eq(drift_segr_read_block(r, b, buf, &err), 0, "%s",
			     err.msg);
		cr_assert_eq(memcmp(buf, payload[b], sizes[b]), 0);
		cr_assert_eq(drift_segr_verify_block(r, b, buf, &err), 0);
	}
	cr_assert_null(drift_segr_block(r, NBLOCKS));
	cr_assert_eq(drift_segr_read_block(r, NBLOCKS, buf, &err),
		     DRIFT_EINVAL);
	const void *sec;
	size_t slen;
	cr_assert_eq(drift_segr_section(r, 2, &sec, &slen), 0);
	cr_assert_eq(memcmp(sec, meta, sizeof(meta)), 0);
	cr_assert_eq(drift_segr_section(r, 3, &sec, &slen), DRIFT_ENOENT);
	cr_assert_geq(drift_segr_fd(r), 0);
	drift_segr_close(r);
	/* write: file data sync, footer sync, directory sync */
	cr_assert_eq(drift_fault_fs_calls(&ff, DRIFT_FS_FDATASYNC), 1);
	cr_assert_eq(drift_fault_fs_calls(&ff, DRIFT_FS_FSYNC), 2);
}

DRIFT_TEST(segment, empty_segment)
{
	drift_segment_writer *w;
	drift_err err;
	cr_assert_eq(drift_segw_create(&ff.fs, path, 5, &w, &err), 0);
	cr_assert_eq(drift_segw_finish(w, &err), 0, "%s", err.msg);
	drift_segment_reader *r;
	cr_assert_eq(drift_segr_open(drift_fs_posix(), path, &r, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(drift_segr_block_count(r), 0);
	drift_segr_close(r);
}

/* Every byte of the structures, and a dense sample of the rest, flipped in
 * turn: the reader refuses the file as corrupt or returns only true data. */
DRIFT_TEST(segment, every_flipped_byte_is_caught_or_harmless)
{
	drift_err err;
	cr_assert_eq(write_segment(&ff.fs, &err), 0, "%s", err.msg);
	size_t len;
	uint8_t *orig = read_all(&len);
	uint8_t *copy = malloc(len);
	size_t last_block_end = 4096 + 4096 * 6; /* header + block pages */
	int caught = 0, opened = 0;
	for (size_t off = 0; off < len; off++) {
		bool structural = off < 64 || off >= last_block_end;
		if (!structural && off % 13 != 0)
			continue;
		memcpy(copy, orig, len);
		copy[off] ^= (uint8_t)(1u << (off % 8));
		write_all(copy, len);
		int rv;
		if (check_reads(&rv))
			opened++;
		else {
			cr_assert_eq(rv, DRIFT_ECORRUPT, "offset %zu: got %s",
				     off, drift_errname(rv));
			caught++;
		}
	}
	cr_log_info("flips: %d refused at open, %d opened", caught, opened);
	cr_assert_gt(caught, 100);
	free(copy);
	drift_free(orig);
}

DRIFT_TEST(segment, every_truncation_is_refused)
{
	drift_err err;
	cr_assert_eq(write_segment(&ff.fs, &err), 0, "%s", err.msg);
	size_t len;
	uint8_t *orig = read_all(&len);
	for (size_t cut = 0; cut < len; cut += (cut % 4096 == 0) ? 1 : 509) {
		write_all(orig, cut);
		int rv;
		cr_assert_not(check_reads(&rv), "cut at %zu accepted", cut);
		cr_assert_eq(rv, DRIFT_ECORRUPT, "cut at %zu: %s", cut,
			     drift_errname(rv));
	}
	drift_free(orig);
}

DRIFT_TEST(segment, newer_version_is_not_supported)
{
	drift_err err;
	cr_assert_eq(write_segment(&ff.fs, &err), 0, "%s", err.msg);
	size_t len;
	uint8_t *data = read_all(&len);
	drift_store_le32(data + 8, DRIFT_SEGMENT_VERSION + 1);
	drift_store_le64(data + 56, drift_checksum64(data, 56));
	write_all(data, len);
	drift_segment_reader *r;
	cr_assert_eq(drift_segr_open(drift_fs_posix(), path, &r, &err),
		     DRIFT_ENOTSUP);
	cr_assert_not_null(strstr(err.msg, "newer"), "%s", err.msg);
	drift_free(data);
}

DRIFT_TEST(segment, bad_blocks_fail_only_their_reads)
{
	drift_err err;
	cr_assert_eq(write_segment(&ff.fs, &err), 0, "%s", err.msg);
	size_t len;
	uint8_t *data = read_all(&len);
	data[4096 * 2 + 100] ^= 1; /* inside block 2 (4095 bytes at page 2) */
	write_all(data, len);
	drift_segment_reader *r;
	cr_assert_eq(drift_segr_open(drift_fs_posix(), path, &r, &err), 0);
	static uint8_t buf[10000];
	cr_assert_eq(drift_segr_read_block(r, 2, buf, &err), DRIFT_ECORRUPT);
	cr_assert_not_null(strstr(err.msg, "block 2 checksum mismatch"), "%s",
			   err.msg);
	cr_assert_not_null(strstr(err.msg, path));
	cr_assert_eq(drift_segr_read_block(r, 4, buf, &err), 0);
	drift_segr_close(r);
	drift_free(data);
}

/* A full disk, at every point of the write, fails the writer and leaves no
 * file behind: neither at path nor a temporary one. */
DRIFT_TEST(segment, disk_full_anywhere_leaves_nothing)
{
	drift_err err;
	cr_assert_eq(write_segment(drift_fs_posix(), &err), 0);
	size_t total;
	uint8_t *data = read_all(&total);
	drift_free(data);
	unlink(path);
	for (long long space = 0; space < (long long)total; space += 1531) {
		drift_fault_fs_init(&ff, drift_fs_posix());
		drift_fault_fs_set_space(&ff, space);
		drift_fault_fs_set_max_chunk(&ff, 3000);
		int rv = write_segment(&ff.fs, &err);
		cr_assert_eq(rv, DRIFT_ENOSPC, "space %lld: %s", space,
			     drift_errname(rv));
		cr_assert_not(exists(path), "space %lld", space);
		cr_assert_not(tmp_exists(), "space %lld", space);
	}
	drift_fault_fs_init(&ff, drift_fs_posix());
	drift_fault_fs_set_max_chunk(&ff, 3000);
	cr_assert_eq(write_segment(&ff.fs, &err), 0, "short writes complete");
	int rv;
	cr_assert(check_reads(&rv));
}

DRIFT_TEST(segment, sync_and_rename_failures_leave_nothing)
{
	const struct {
		enum drift_fs_op op;
		long nth;
	} faults[] = {
		{DRIFT_FS_FDATASYNC, 1}, {DRIFT_FS_FSYNC, 1},
		{DRIFT_FS_RENAME, 1},	 {DRIFT_FS_OPEN, 1},
		{DRIFT_FS_CLOSE, 1},
	};
	for (size_t i = 0; i < sizeof(faults) / sizeof(faults[0]); i++) {
		drift_fault_fs_init(&ff, drift_fs_posix());
		drift_fault_fs_arm(&ff, faults[i].op, faults[i].nth, EIO, 0);
		drift_err err;
		cr_assert_eq(write_segment(&ff.fs, &err), DRIFT_EIO,
			     "fault %zu", i);
		cr_assert_not(exists(path), "fault %zu", i);
		cr_assert_not(tmp_exists(), "fault %zu", i);
	}
}

DRIFT_TEST(segment, abandoned_writer_is_not_a_segment)
{
	drift_segment_writer *w;
	drift_err err;
	cr_assert_eq(drift_segw_create(&ff.fs, path, 1, &w, &err), 0);
	drift_block_desc d = {0};
	cr_assert_eq(drift_segw_add_block(w, &d, "abc", 3, NULL, &err), 0);
	/* A crash now: the file is only "<path>.tmp". */
	cr_assert(tmp_exists());
	drift_segment_reader *r;
	cr_assert_eq(drift_segr_open(drift_fs_posix(), path, &r, &err),
		     DRIFT_ENOENT);
	char tmp[400];
	snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	cr_assert_eq(drift_segr_open(drift_fs_posix(), tmp, &r, &err),
		     DRIFT_ECORRUPT, "an unfinished file is refused");
	drift_segw_abort(w);
	cr_assert_not(tmp_exists());
}

DRIFT_TEST(segment, failed_allocations_are_clean)
{
	drift_err err;
	for (long n = 1;; n++) {
		drift_failalloc_arm(n, 0);
		int rv = write_segment(&ff.fs, &err);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM, "allocation %ld", n);
		cr_assert_not(exists(path));
		cr_assert_not(tmp_exists());
	}
	for (long n = 1;; n++) {
		drift_segment_reader *r = NULL;
		drift_failalloc_arm(n, 0);
		int rv = drift_segr_open(&ff.fs, path, &r, &err);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			drift_segr_close(r);
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM);
		cr_assert_null(r);
	}
}

DRIFT_TEST(segment, writer_refuses_bad_input)
{
	drift_segment_writer *w;
	drift_err err;
	cr_assert_eq(drift_segw_create(&ff.fs, path, 1, &w, &err), 0);
	cr_assert_eq(drift_segw_add_section(w, 4, "x", 1, &err), 0);
	cr_assert_eq(drift_segw_add_section(w, 4, "y", 1, &err), DRIFT_EEXIST);
	drift_block_desc d = {0};
	cr_assert_eq(drift_segw_add_block(w, &d, "abc",
					  DRIFT_SEGMENT_MAX_BLOCK + 1, NULL,
					  &err),
		     DRIFT_ELIMIT);
	drift_segw_abort(w);
	drift_segw_abort(NULL);
}
