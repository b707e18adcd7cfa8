#include "common/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"

/* ---- POSIX ------------------------------------------------------------ */

static int posix_open(drift_fs *fs, const char *path, int flags, int mode)
{
	(void)fs;
	int fd;
	do
		fd = open(path, flags | O_CLOEXEC, mode);
	while (fd < 0 && errno == EINTR);
	return fd < 0 ? -errno : fd;
}

static int posix_close(drift_fs *fs, int fd)
{
	(void)fs;
	/* Linux releases the descriptor even when close reports EINTR, so it
	 * must not be retried. */
	return close(fd) != 0 && errno != EINTR ? -errno : 0;
}

static ssize_t posix_pread(drift_fs *fs, int fd, void *buf, size_t len,
			   uint64_t off)
{
	(void)fs;
	ssize_t n = pread(fd, buf, len, (off_t)off);
	return n < 0 ? -errno : n;
}

static ssize_t posix_pwrite(drift_fs *fs, int fd, const void *buf, size_t len,
			    uint64_t off)
{
	(void)fs;
	ssize_t n = pwrite(fd, buf, len, (off_t)off);
	return n < 0 ? -errno : n;
}

static ssize_t posix_write(drift_fs *fs, int fd, const void *buf, size_t len)
{
	(void)fs;
	ssize_t n = write(fd, buf, len);
	return n < 0 ? -errno : n;
}

static int posix_fsync(drift_fs *fs, int fd)
{
	(void)fs;
	return fsync(fd) != 0 ? -errno : 0;
}

static int posix_fdatasync(drift_fs *fs, int fd)
{
	(void)fs;
	return fdatasync(fd) != 0 ? -errno : 0;
}

static int posix_ftruncate(drift_fs *fs, int fd, uint64_t len)
{
	(void)fs;
	return ftruncate(fd, (off_t)len) != 0 ? -errno : 0;
}

static int posix_fallocate_op(drift_fs *fs, int fd, uint64_t off, uint64_t len)
{
	(void)fs;
	int rv = posix_fallocate(fd, (off_t)off, (off_t)len);
	return rv != 0 ? -rv : 0;
}

static int64_t posix_size(drift_fs *fs, int fd)
{
	(void)fs;
	struct stat st;
	if (fstat(fd, &st) != 0)
		return -errno;
	return (int64_t)st.st_size;
}

static int posix_rename(drift_fs *fs, const char *from, const char *to)
{
	(void)fs;
	return rename(from, to) != 0 ? -errno : 0;
}

static int posix_unlink(drift_fs *fs, const char *path)
{
	(void)fs;
	return unlink(path) != 0 ? -errno : 0;
}

static int posix_mkdir(drift_fs *fs, const char *path, int mode)
{
	(void)fs;
	return mkdir(path, (mode_t)mode) != 0 ? -errno : 0;
}

static int posix_rmdir(drift_fs *fs, const char *path)
{
	(void)fs;
	return rmdir(path) != 0 ? -errno : 0;
}

static drift_fs posix_fs = {
	.open = posix_open,
	.close = posix_close,
	.pread = posix_pread,
	.pwrite = posix_pwrite,
	.write = posix_write,
	.fsync = posix_fsync,
	.fdatasync = posix_fdatasync,
	.ftruncate = posix_ftruncate,
	.fallocate = posix_fallocate_op,
	.size = posix_size,
	.rename = posix_rename,
	.unlink = posix_unlink,
	.mkdir = posix_mkdir,
	.rmdir = posix_rmdir,
};

drift_fs *drift_fs_posix(void)
{
	return &posix_fs;
}

/* ---- Helpers ---------------------------------------------------------- */

int drift_fs_write_all(drift_fs *fs, int fd, const void *buf, size_t len,
		       const char *what, drift_err *err)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = fs->write(fs, fd, p, len);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return drift_err_errno(err, (int)-n, "writing %s",
					       what);
		if (n == 0)
			return drift_err_errno(err, ENOSPC, "writing %s", what);
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int drift_fs_pwrite_all(drift_fs *fs, int fd, const void *buf, size_t len,
			uint64_t off, const char *what, drift_err *err)
{
	const uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = fs->pwrite(fs, fd, p, len, off);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return drift_err_errno(err, (int)-n,
					       "writing %s at offset %llu",
					       what, (unsigned long long)off);
		if (n == 0)
			return drift_err_errno(err, ENOSPC,
					       "writing %s at offset %llu",
					       what, (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int drift_fs_pread_exact(drift_fs *fs, int fd, void *buf, size_t len,
			 uint64_t off, const char *what, drift_err *err)
{
	uint8_t *p = buf;
	while (len > 0) {
		ssize_t n = fs->pread(fs, fd, p, len, off);
		if (n == -EINTR)
			continue;
		if (n < 0)
			return drift_err_errno(err, (int)-n,
					       "reading %s at offset %llu",
					       what, (unsigned long long)off);
		if (n == 0)
			return drift_err_set(err, DRIFT_ECORRUPT,
					     "reading %s at offset %llu: "
					     "unexpected end of file",
					     what, (unsigned long long)off);
		p += n;
		off += (uint64_t)n;
		len -= (size_t)n;
	}
	return 0;
}

int drift_fs_dirname(const char *path, char *out, size_t cap)
{
	const char *slash = strrchr(path, '/');
	int n;
	if (slash == NULL)
		n = snprintf(out, cap, ".");
	else if (slash == path)
		n = snprintf(out, cap, "/");
	else
		n = snprintf(out, cap, "%.*s", (int)(slash - path), path);
	return n < 0 || (size_t)n >= cap ? DRIFT_ERANGE : 0;
}

int drift_fs_fsync_dir(drift_fs *fs, const char *dir, drift_err *err)
{
	int fd = fs->open(fs, dir, O_RDONLY | O_DIRECTORY, 0);
	if (fd < 0)
		return drift_err_errno(err, -fd, "opening directory %s", dir);
	int rv = fs->fsync(fs, fd);
	fs->close(fs, fd);
	if (rv < 0)
		return drift_err_errno(err, -rv, "syncing directory %s", dir);
	return 0;
}

int drift_fs_write_file_atomic(drift_fs *fs, const char *path, const void *data,
			       size_t len, drift_err *err)
{
	char tmp[4096];
	char dir[4096];
	int n = snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	if (n < 0 || (size_t)n >= sizeof(tmp) ||
	    drift_fs_dirname(path, dir, sizeof(dir)) != 0)
		return drift_err_set(err, DRIFT_ERANGE, "path too long: %s",
				     path);

	int rv;
	int fd = fs->open(fs, tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0)
		return drift_err_errno(err, -fd, "creating %s", tmp);
	rv = drift_fs_write_all(fs, fd, data, len, tmp, err);
	if (rv != 0)
		goto err_close;
	rv = fs->fsync(fs, fd);
	if (rv < 0) {
		rv = drift_err_errno(err, -rv, "syncing %s", tmp);
		goto err_close;
	}
	rv = fs->close(fs, fd);
	if (rv < 0) {
		rv = drift_err_errno(err, -rv, "closing %s", tmp);
		goto err_unlink;
	}
	rv = fs->rename(fs, tmp, path);
	if (rv < 0) {
		rv = drift_err_errno(err, -rv, "renaming %s to %s", tmp, path);
		goto err_unlink;
	}
	/* The rename is done; if the directory sync fails, the new name may
	 * not survive a crash, so the caller must not rely on it. */
	return drift_fs_fsync_dir(fs, dir, err);

err_close:
	fs->close(fs, fd);
err_unlink:
	fs->unlink(fs, tmp);
	return rv;
}

int drift_fs_read_file(drift_fs *fs, const char *path, size_t max,
		       uint8_t **data, size_t *len, drift_err *err)
{
	int rv;
	int fd = fs->open(fs, path, O_RDONLY, 0);
	if (fd < 0)
		return drift_err_errno(err, -fd, "opening %s", path);
	int64_t size = fs->size(fs, fd);
	if (size < 0) {
		rv = drift_err_errno(err, (int)-size, "reading size of %s",
				     path);
		goto out_close;
	}
	if ((uint64_t)size > max) {
		rv = drift_err_set(
			err, DRIFT_ELIMIT,
			"%s is %lld bytes, more than the %zu allowed", path,
			(long long)size, max);
		goto out_close;
	}
	uint8_t *buf = drift_malloc((size_t)size + 1);
	if (buf == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "reading %s", path);
		goto out_close;
	}
	rv = drift_fs_pread_exact(fs, fd, buf, (size_t)size, 0, path, err);
	if (rv != 0) {
		drift_free(buf);
		goto out_close;
	}
	buf[size] = '\0';
	*data = buf;
	*len = (size_t)size;
out_close:
	fs->close(fs, fd);
	return rv;
}

int drift_fs_mkdir_p(drift_fs *fs, const char *path, drift_err *err)
{
	char buf[4096];
	size_t len = strlen(path);
	if (len == 0 || len >= sizeof(buf))
		return drift_err_set(err, DRIFT_EINVAL,
				     "bad directory path '%s'", path);
	memcpy(buf, path, len + 1);
	/* Create each prefix in turn; existing ones are fine. */
	for (size_t i = 1; i <= len; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char saved = buf[i];
		buf[i] = '\0';
		int rv = fs->mkdir(fs, buf, 0755);
		buf[i] = saved;
		if (rv < 0 && rv != -EEXIST)
			return drift_err_errno(err, -rv,
					       "creating directory %.*s",
					       (int)i, buf);
	}
	return 0;
}

/* ---- Fault injection -------------------------------------------------- */

static drift_fault_fs *as_fault(drift_fs *fs)
{
	return (drift_fault_fs *)fs;
}

/* 0 to pass the call on, or the -errno it must fail with. */
static int fault_check(drift_fault_fs *ff, enum drift_fs_op op)
{
	long n = atomic_fetch_add(&ff->calls[op], 1) + 1;
	long at = atomic_load(&ff->fail_at[op]);
	if (at > 0 && (n == at || (n > at && atomic_load(&ff->sticky[op]))))
		return -atomic_load(&ff->fail_errno[op]);
	return 0;
}

/* Applies the chunk limit and the space budget to a write of len bytes:
 * returns the bytes to pass on, or -ENOSPC. */
static ssize_t fault_write_len(drift_fault_fs *ff, size_t len)
{
	long chunk = atomic_load(&ff->max_chunk);
	if (chunk > 0 && len > (size_t)chunk)
		len = (size_t)chunk;
	long long left = atomic_load(&ff->space_left);
	if (left < 0 || len == 0)
		return (ssize_t)len;
	if (left == 0)
		return -ENOSPC;
	return (ssize_t)((long long)len > left ? (size_t)left : len);
}

static void fault_spend(drift_fault_fs *ff, ssize_t n)
{
	if (n > 0 && atomic_load(&ff->space_left) >= 0)
		atomic_fetch_sub(&ff->space_left, (long long)n);
}

static int fault_open(drift_fs *fs, const char *path, int flags, int mode)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_OPEN);
	return rv != 0 ? rv : ff->inner->open(ff->inner, path, flags, mode);
}

static int fault_close(drift_fs *fs, int fd)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_CLOSE);
	/* A failing close still releases the descriptor, as on Linux. */
	int inner = ff->inner->close(ff->inner, fd);
	return rv != 0 ? rv : inner;
}

static ssize_t fault_pread(drift_fs *fs, int fd, void *buf, size_t len,
			   uint64_t off)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_PREAD);
	return rv != 0 ? rv : ff->inner->pread(ff->inner, fd, buf, len, off);
}

static ssize_t fault_pwrite(drift_fs *fs, int fd, const void *buf, size_t len,
			    uint64_t off)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_PWRITE);
	if (rv != 0)
		return rv;
	ssize_t allowed = fault_write_len(ff, len);
	if (allowed < 0)
		return allowed;
	ssize_t n = ff->inner->pwrite(ff->inner, fd, buf, (size_t)allowed, off);
	fault_spend(ff, n);
	return n;
}

static ssize_t fault_write(drift_fs *fs, int fd, const void *buf, size_t len)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_WRITE);
	if (rv != 0)
		return rv;
	ssize_t allowed = fault_write_len(ff, len);
	if (allowed < 0)
		return allowed;
	ssize_t n = ff->inner->write(ff->inner, fd, buf, (size_t)allowed);
	fault_spend(ff, n);
	return n;
}

#define DRIFT__FAULT_FD_OP(fn, op, call)                                       \
	static int fn(drift_fs *fs, int fd)                                    \
	{                                                                      \
		drift_fault_fs *ff = as_fault(fs);                             \
		int rv = fault_check(ff, op);                                  \
		return rv != 0 ? rv : ff->inner->call(ff->inner, fd);          \
	}
DRIFT__FAULT_FD_OP(fault_fsync, DRIFT_FS_FSYNC, fsync)
DRIFT__FAULT_FD_OP(fault_fdatasync, DRIFT_FS_FDATASYNC, fdatasync)
#undef DRIFT__FAULT_FD_OP

static int fault_ftruncate(drift_fs *fs, int fd, uint64_t len)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_FTRUNCATE);
	return rv != 0 ? rv : ff->inner->ftruncate(ff->inner, fd, len);
}

static int fault_fallocate(drift_fs *fs, int fd, uint64_t off, uint64_t len)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_FALLOCATE);
	return rv != 0 ? rv : ff->inner->fallocate(ff->inner, fd, off, len);
}

static int64_t fault_size(drift_fs *fs, int fd)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_SIZE);
	return rv != 0 ? rv : ff->inner->size(ff->inner, fd);
}

static int fault_rename(drift_fs *fs, const char *from, const char *to)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_RENAME);
	return rv != 0 ? rv : ff->inner->rename(ff->inner, from, to);
}

#define DRIFT__FAULT_PATH_OP(fn, op, call)                                     \
	static int fn(drift_fs *fs, const char *path)                          \
	{                                                                      \
		drift_fault_fs *ff = as_fault(fs);                             \
		int rv = fault_check(ff, op);                                  \
		return rv != 0 ? rv : ff->inner->call(ff->inner, path);        \
	}
DRIFT__FAULT_PATH_OP(fault_unlink, DRIFT_FS_UNLINK, unlink)
DRIFT__FAULT_PATH_OP(fault_rmdir, DRIFT_FS_RMDIR, rmdir)
#undef DRIFT__FAULT_PATH_OP

static int fault_mkdir(drift_fs *fs, const char *path, int mode)
{
	drift_fault_fs *ff = as_fault(fs);
	int rv = fault_check(ff, DRIFT_FS_MKDIR);
	return rv != 0 ? rv : ff->inner->mkdir(ff->inner, path, mode);
}

void drift_fault_fs_init(drift_fault_fs *ff, drift_fs *inner)
{
	ff->fs = (drift_fs){
		.open = fault_open,
		.close = fault_close,
		.pread = fault_pread,
		.pwrite = fault_pwrite,
		.write = fault_write,
		.fsync = fault_fsync,
		.fdatasync = fault_fdatasync,
		.ftruncate = fault_ftruncate,
		.fallocate = fault_fallocate,
		.size = fault_size,
		.rename = fault_rename,
		.unlink = fault_unlink,
		.mkdir = fault_mkdir,
		.rmdir = fault_rmdir,
	};
	ff->inner = inner;
	for (int op = 0; op < DRIFT_FS_OP_COUNT; op++) {
		atomic_init(&ff->fail_at[op], 0);
		atomic_init(&ff->fail_errno[op], 0);
		atomic_init(&ff->sticky[op], 0);
		atomic_init(&ff->calls[op], 0);
	}
	atomic_init(&ff->space_left, -1);
	atomic_init(&ff->max_chunk, 0);
}

void drift_fault_fs_arm(drift_fault_fs *ff, enum drift_fs_op op, long nth,
			int errnum, int sticky)
{
	atomic_store(&ff->calls[op], 0);
	atomic_store(&ff->fail_errno[op], errnum);
	atomic_store(&ff->sticky[op], sticky != 0);
	atomic_store(&ff->fail_at[op], nth);
}

void drift_fault_fs_set_space(drift_fault_fs *ff, long long bytes)
{
	atomic_store(&ff->space_left, bytes < 0 ? -1 : bytes);
}

void drift_fault_fs_set_max_chunk(drift_fault_fs *ff, long chunk)
{
	atomic_store(&ff->max_chunk, chunk);
}

long drift_fault_fs_calls(drift_fault_fs *ff, enum drift_fs_op op)
{
	return atomic_load(&ff->calls[op]);
}
