/* Tests of common/fs: durable whole-file replacement and the helpers, under
 * every fault the fault fs can inject: a failed or interrupted replacement
 * leaves the old file exactly as it was, no temporary file, and no open
 * descriptor. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/fs.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static char dir[256];
static char path[300];
static drift_fault_fs ff;

static void setup(void)
{
	drift_test_tmpdir(dir, sizeof(dir));
	snprintf(path, sizeof(path), "%s/manifest", dir);
	drift_fault_fs_init(&ff, drift_fs_posix());
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_test_rmtree(dir);
}

TestSuite(fs, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static int count_open_fds(void)
{
	int n = 0;
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	while ((e = readdir(d)) != NULL)
		n++;
	closedir(d);
	return n;
}

static int count_entries(const char *d)
{
	int n = 0;
	DIR *h = opendir(d);
	struct dirent *e;
	while ((e = readdir(h)) != NULL)
		if (e->d_name[0] != '.')
			n++;
	closedir(h);
	return n;
}

/* The file holds exactly want. */
static void assert_contents(const char *p, const char *want)
{
	uint8_t *data;
	size_t len;
	drift_err err;
	int rv = drift_fs_read_file(drift_fs_posix(), p, 1 << 20, &data, &len,
				    &err);
	cr_assert_eq(rv, 0, "%s", err.msg);
	cr_assert_eq(len, strlen(want));
	cr_assert_eq(memcmp(data, want, len), 0);
	drift_free(data);
}

static const char old_text[] = "version 1";
static const char new_text[] = "version 2, which is longer than the first";

/* Writes old_text through the plain fs, then tries new_text through the fault
 * fs, expecting code; checks that nothing changed and nothing leaked. */
static void replace_fails_cleanly(int code)
{
	drift_err err;
	cr_assert_eq(drift_fs_write_file_atomic(drift_fs_posix(), path,
						old_text, strlen(old_text),
						&err),
		     0);
	int fds = count_open_fds();
	drift_err_clear(&err);
	int rv = drift_fs_write_file_atomic(&ff.fs, path, new_text,
					    strlen(new_text), &err);
	cr_assert_eq(rv, code, "got %s (%s)", drift_errname(rv), err.msg);
	cr_assert_eq(err.code, code);
	cr_assert_neq(err.msg[0], '\0');
	assert_contents(path, old_text);
	cr_assert_eq(count_entries(dir), 1, "no temporary file is left");
	cr_assert_eq(count_open_fds(), fds, "no descriptor is leaked");
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(fs, atomic_write_creates_and_replaces)
{
	drift_err err;
	cr_assert_eq(drift_fs_write_file_atomic(&ff.fs, path, old_text,
						strlen(old_text), &err),
		     0);
	assert_contents(path, old_text);
	cr_assert_eq(drift_fs_write_file_atomic(&ff.fs, path, new_text,
						strlen(new_text), &err),
		     0);
	assert_contents(path, new_text);
	cr_assert_eq(count_entries(dir), 1);
	/* write, fsync of the file, fsync of the directory. */
	cr_assert_eq(drift_fault_fs_calls(&ff, DRIFT_FS_FSYNC), 4);
	cr_assert_eq(drift_fault_fs_calls(&ff, DRIFT_FS_RENAME), 2);
}

DRIFT_TEST(fs, disk_full_during_write)
{
	drift_fault_fs_set_space(&ff, 10);
	replace_fails_cleanly(DRIFT_ENOSPC);
}

DRIFT_TEST(fs, write_error)
{
	drift_fault_fs_arm(&ff, DRIFT_FS_WRITE, 1, EIO, 0);
	replace_fails_cleanly(DRIFT_EIO);
}

DRIFT_TEST(fs, fsync_error_is_not_success)
{
	drift_fault_fs_arm(&ff, DRIFT_FS_FSYNC, 1, EIO, 0);
	replace_fails_cleanly(DRIFT_EIO);
}

DRIFT_TEST(fs, create_error)
{
	drift_fault_fs_arm(&ff, DRIFT_FS_OPEN, 1, EACCES, 0);
	replace_fails_cleanly(DRIFT_EPERM);
}

DRIFT_TEST(fs, close_error)
{
	drift_fault_fs_arm(&ff, DRIFT_FS_CLOSE, 1, EIO, 0);
	replace_fails_cleanly(DRIFT_EIO);
}

DRIFT_TEST(fs, rename_error)
{
	drift_fault_fs_arm(&ff, DRIFT_FS_RENAME, 1, ENOSPC, 0);
	replace_fails_cleanly(DRIFT_ENOSPC);
}

DRIFT_TEST(fs, directory_sync_error_is_reported)
{
	/* The new contents are in place, but the caller must hear that the
	 * rename may not be durable. */
	drift_fault_fs_arm(&ff, DRIFT_FS_FSYNC, 2, EIO, 0);
	drift_err err;
	int rv = drift_fs_write_file_atomic(&ff.fs, path, new_text,
					    strlen(new_text), &err);
	cr_assert_eq(rv, DRIFT_EIO);
	cr_assert_not_null(strstr(err.msg, "syncing directory"), "%s", err.msg);
}

DRIFT_TEST(fs, short_writes_are_completed)
{
	drift_fault_fs_set_max_chunk(&ff, 3);
	drift_err err;
	cr_assert_eq(drift_fs_write_file_atomic(&ff.fs, path, new_text,
						strlen(new_text), &err),
		     0, "%s", err.msg);
	assert_contents(path, new_text);
	cr_assert_geq(drift_fault_fs_calls(&ff, DRIFT_FS_WRITE),
		      (long)(strlen(new_text) / 3));
}

DRIFT_TEST(fs, pwrite_and_exact_reads)
{
	drift_err err;
	drift_fs *fs = &ff.fs;
	int fd = fs->open(fs, path, O_RDWR | O_CREAT, 0644);
	cr_assert_geq(fd, 0);
	drift_fault_fs_set_max_chunk(&ff, 2);
	cr_assert_eq(drift_fs_pwrite_all(fs, fd, "abcdef", 6, 4, "f", &err), 0);
	char buf[16];
	cr_assert_eq(drift_fs_pread_exact(fs, fd, buf, 6, 4, "f", &err), 0);
	cr_assert_eq(memcmp(buf, "abcdef", 6), 0);
	cr_assert_eq(fs->size(fs, fd), 10);
	int rv = drift_fs_pread_exact(fs, fd, buf, 8, 4, "f", &err);
	cr_assert_eq(rv, DRIFT_ECORRUPT);
	cr_assert_not_null(strstr(err.msg, "unexpected end of file"));
	drift_fault_fs_set_space(&ff, 1);
	rv = drift_fs_pwrite_all(fs, fd, "xyz", 3, 0, "f", &err);
	cr_assert_eq(rv, DRIFT_ENOSPC, "%s", err.msg);
	drift_fault_fs_arm(&ff, DRIFT_FS_PREAD, 1, EIO, 0);
	cr_assert_eq(drift_fs_pread_exact(fs, fd, buf, 1, 0, "f", &err),
		     DRIFT_EIO);
	cr_assert_eq(fs->close(fs, fd), 0);
}

DRIFT_TEST(fs, read_file_limits_and_failures)
{
	drift_err err;
	uint8_t *data = NULL;
	size_t len;
	int rv = drift_fs_read_file(&ff.fs, path, 100, &data, &len, &err);
	cr_assert_eq(rv, DRIFT_ENOENT);
	cr_assert_not_null(strstr(err.msg, path));
	cr_assert_eq(drift_fs_write_file_atomic(&ff.fs, path, new_text,
						strlen(new_text), &err),
		     0);
	rv = drift_fs_read_file(&ff.fs, path, 5, &data, &len, &err);
	cr_assert_eq(rv, DRIFT_ELIMIT);
	cr_assert_null(data, "no output on failure");

	int fds = count_open_fds();
	drift_failalloc_arm(1, 0);
	rv = drift_fs_read_file(&ff.fs, path, 1000, &data, &len, &err);
	cr_assert_eq(rv, DRIFT_ENOMEM);
	cr_assert_eq(count_open_fds(), fds);

	drift_fault_fs_arm(&ff, DRIFT_FS_SIZE, 1, EIO, 0);
	cr_assert_eq(drift_fs_read_file(&ff.fs, path, 1000, &data, &len, &err),
		     DRIFT_EIO);
	cr_assert_eq(count_open_fds(), fds);
}

DRIFT_TEST(fs, mkdir_p_and_dirname)
{
	char deep[400], out[64];
	drift_err err;
	snprintf(deep, sizeof(deep), "%s/a/b/c", dir);
	cr_assert_eq(drift_fs_mkdir_p(&ff.fs, deep, &err), 0, "%s", err.msg);
	cr_assert_eq(drift_fs_mkdir_p(&ff.fs, deep, &err), 0, "existing");
	struct stat st;
	cr_assert_eq(stat(deep, &st), 0);
	cr_assert(S_ISDIR(st.st_mode));

	snprintf(deep, sizeof(deep), "%s/x/y", dir);
	drift_fault_fs_arm(&ff, DRIFT_FS_MKDIR, 1, EACCES, 1);
	cr_assert_eq(drift_fs_mkdir_p(&ff.fs, deep, &err), DRIFT_EPERM);
	cr_assert_eq(drift_fs_mkdir_p(&ff.fs, "", &err), DRIFT_EINVAL);

	cr_assert_eq(drift_fs_dirname("/a/b/c", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/a/b");
	cr_assert_eq(drift_fs_dirname("file", out, sizeof(out)), 0);
	cr_assert_str_eq(out, ".");
	cr_assert_eq(drift_fs_dirname("/file", out, sizeof(out)), 0);
	cr_assert_str_eq(out, "/");
	cr_assert_eq(drift_fs_dirname("/abc/d", out, 3), DRIFT_ERANGE);
}

DRIFT_TEST(fs, sticky_faults_and_counters)
{
	drift_fs *fs = &ff.fs;
	drift_fault_fs_arm(&ff, DRIFT_FS_UNLINK, 2, EBUSY, 1);
	cr_assert_eq(fs->unlink(fs, path), -ENOENT, "first passes through");
	cr_assert_eq(fs->unlink(fs, path), -EBUSY);
	cr_assert_eq(fs->unlink(fs, path), -EBUSY, "sticky");
	cr_assert_eq(drift_fault_fs_calls(&ff, DRIFT_FS_UNLINK), 3);
	drift_fault_fs_arm(&ff, DRIFT_FS_UNLINK, 0, 0, 0);
	cr_assert_eq(fs->unlink(fs, path), -ENOENT, "disarmed");
}
