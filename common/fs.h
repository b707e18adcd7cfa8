/*
 * File I/O behind a small interface, with a fault-injecting implementation.
 *
 * Modules that touch disk take a `drift_fs *` (drift_fs_posix() in
 * production). The operations of the table mirror the system calls and
 * return 0 (or a byte count) on success and a negative errno value on
 * failure, without touching errno. The drift_fs_* helpers below build the
 * patterns every durable format needs on top of the table and turn failures
 * into DRIFT_E* codes with the path in the message.
 *
 * drift_fault_fs wraps another drift_fs and injects the failures a disk can
 * give: the N-th call of an operation fails with a chosen errno, writes stop
 * with ENOSPC once a byte budget is spent (the write that crosses it is
 * short), and every write can be made short. Tests use it to prove that a
 * failed write is never acknowledged and that no half-written file is
 * mistaken for a complete one.
 */
#ifndef DRIFT_COMMON_FS_H
#define DRIFT_COMMON_FS_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/err.h"

typedef struct drift_fs drift_fs;

enum drift_fs_op {
	DRIFT_FS_OPEN = 0,
	DRIFT_FS_CLOSE,
	DRIFT_FS_PREAD,
	DRIFT_FS_PWRITE,
	DRIFT_FS_WRITE,
	DRIFT_FS_FSYNC,
	DRIFT_FS_FDATASYNC,
	DRIFT_FS_FTRUNCATE,
	DRIFT_FS_FALLOCATE,
	DRIFT_FS_SIZE,
	DRIFT_FS_RENAME,
	DRIFT_FS_UNLINK,
	DRIFT_FS_MKDIR,
	DRIFT_FS_RMDIR,
	DRIFT_FS_OP_COUNT,
};

struct drift_fs {
	/* Returns a file descriptor (>= 0) or -errno. */
	int (*open)(drift_fs *fs, const char *path, int flags, int mode);
	int (*close)(drift_fs *fs, int fd);
	/* Bytes transferred (possibly fewer than len) or -errno. */
	ssize_t (*pread)(drift_fs *fs, int fd, void *buf, size_t len,
			 uint64_t off);
	ssize_t (*pwrite)(drift_fs *fs, int fd, const void *buf, size_t len,
			  uint64_t off);
	ssize_t (*write)(drift_fs *fs, int fd, const void *buf, size_t len);
	int (*fsync)(drift_fs *fs, int fd);
	int (*fdatasync)(drift_fs *fs, int fd);
	int (*ftruncate)(drift_fs *fs, int fd, uint64_t len);
	/* Reserves [off, off+len) (posix_fallocate semantics). */
	int (*fallocate)(drift_fs *fs, int fd, uint64_t off, uint64_t len);
	/* File size in bytes, or -errno. */
	int64_t (*size)(drift_fs *fs, int fd);
	int (*rename)(drift_fs *fs, const char *from, const char *to);
	int (*unlink)(drift_fs *fs, const char *path);
	int (*mkdir)(drift_fs *fs, const char *path, int mode);
	int (*rmdir)(drift_fs *fs, const char *path);
};

/* The operating system's file system. Static; never NULL. */
drift_fs *drift_fs_posix(void);

/* Writes all len bytes at the current offset, retrying short writes and
 * EINTR. 0 or a DRIFT_E* code (DRIFT_ENOSPC when the disk is full). what
 * names the file in the message. */
int drift_fs_write_all(drift_fs *fs, int fd, const void *buf, size_t len,
		       const char *what, drift_err *err);

/* The same at offset off. */
int drift_fs_pwrite_all(drift_fs *fs, int fd, const void *buf, size_t len,
			uint64_t off, const char *what, drift_err *err);

/* Reads exactly len bytes at off. A file that ends first gives
 * DRIFT_ECORRUPT ("unexpected end of file"). */
int drift_fs_pread_exact(drift_fs *fs, int fd, void *buf, size_t len,
			 uint64_t off, const char *what, drift_err *err);

/* fsync of a directory, which makes names created or renamed in it durable. */
int drift_fs_fsync_dir(drift_fs *fs, const char *dir, drift_err *err);

/* Replaces path with data atomically and durably: writes "<path>.tmp",
 * fsyncs it, renames it over path, fsyncs the directory. On failure the
 * temporary file is removed and path keeps its old contents (or stays
 * absent). */
int drift_fs_write_file_atomic(drift_fs *fs, const char *path, const void *data,
			       size_t len, drift_err *err);

/* Reads a whole file of at most max bytes into a new buffer (freed with
 * drift_free) with a NUL after the data. Larger files: DRIFT_ELIMIT. */
int drift_fs_read_file(drift_fs *fs, const char *path, size_t max,
		       uint8_t **data, size_t *len, drift_err *err);

/* Creates a directory and its missing parents (mode 0755), like mkdir -p. */
int drift_fs_mkdir_p(drift_fs *fs, const char *path, drift_err *err);

/* The directory part of path ("." when there is none) into out. */
int drift_fs_dirname(const char *path, char *out, size_t cap);

/* ---- Fault injection -------------------------------------------------- */

typedef struct drift_fault_fs {
	drift_fs fs;	 /* first member: pass &ff->fs */
	drift_fs *inner; /* where operations that do not fail go */
	/* Per operation: the call number (1-based, counted since the last
	 * arm) that fails, 0 for none, and the errno it fails with. */
	atomic_long fail_at[DRIFT_FS_OP_COUNT];
	atomic_int fail_errno[DRIFT_FS_OP_COUNT];
	atomic_int sticky[DRIFT_FS_OP_COUNT]; /* later calls fail too */
	atomic_long calls[DRIFT_FS_OP_COUNT];
	/* Bytes writes may still add (pwrite and write); < 0: unlimited. A
	 * write that crosses the budget is short, the next fails ENOSPC. */
	atomic_llong space_left;
	/* When > 0, each write transfers at most this many bytes. */
	atomic_long max_chunk;
} drift_fault_fs;

/* A fault fs over inner with no fault armed (everything passes through). */
void drift_fault_fs_init(drift_fault_fs *ff, drift_fs *inner);

/* The nth call (1 = the next) of op fails with errnum (positive errno);
 * with sticky, every later call of op fails too. Resets op's counter. */
void drift_fault_fs_arm(drift_fault_fs *ff, enum drift_fs_op op, long nth,
			int errnum, int sticky);

/* Limits the bytes later writes may add; -1 lifts the limit. */
void drift_fault_fs_set_space(drift_fault_fs *ff, long long bytes);

/* Makes every write transfer at most chunk bytes (0: no limit). */
void drift_fault_fs_set_max_chunk(drift_fault_fs *ff, long chunk);

/* Calls of op seen since the last arm (or init). */
long drift_fault_fs_calls(drift_fault_fs *ff, enum drift_fs_op op);

#endif /* DRIFT_COMMON_FS_H */
