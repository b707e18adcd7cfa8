/*
 * Error codes and error messages with context.
 *
 * Every fallible function in Drift returns an int: 0 on success or one of the
 * negative DRIFT_E* codes below. The codes come from one X-macro list,
 * DRIFT_ERRNO_MAP, which also generates drift_strerror() and drift_errname(),
 * so a new code is added in exactly one place.
 *
 * A code says what kind of failure happened; a drift_err says which one. A
 * caller that wants a message passes a drift_err down; each layer that
 * returns the failure may prefix its own context ("opening shard 3: "), so the
 * final message reads from the outermost operation to the root cause:
 *
 *     segment open: reading footer of /d/000042.drift: checksum mismatch
 *
 * A drift_err pointer may always be NULL: the functions then only return the
 * code. A drift_err is a plain value (no heap memory), so it needs no cleanup.
 */
#ifndef DRIFT_COMMON_ERR_H
#define DRIFT_COMMON_ERR_H

#include <stddef.h>

/* X(name, value, description). Values are stable: they may be logged and
 * compared across versions, so never renumber an existing code. */
#define DRIFT_ERRNO_MAP(X)                                                     \
	X(ENOMEM, -1, "out of memory")                                         \
	X(EINVAL, -2, "invalid argument")                                      \
	X(EIO, -3, "input/output error")                                       \
	X(ECORRUPT, -4, "data is corrupt")                                     \
	X(ENOSPC, -5, "no space left on device")                               \
	X(ENOENT, -6, "not found")                                             \
	X(EEXIST, -7, "already exists")                                        \
	X(ERANGE, -8, "value out of range")                                    \
	X(ETIMEDOUT, -9, "deadline exceeded")                                  \
	X(ECANCELED, -10, "operation canceled")                                \
	X(EUNAVAIL, -11, "temporarily unavailable")                            \
	X(ENOTSUP, -12, "not supported")                                       \
	X(EBUSY, -13, "resource busy")                                         \
	X(ESTALE, -14, "stale view")                                           \
	X(ELIMIT, -15, "limit exceeded")                                       \
	X(EPROTO, -16, "protocol error")                                       \
	X(ECLOSED, -17, "closed")                                              \
	X(EPERM, -18, "permission denied")                                     \
	X(ESYNTAX, -19, "syntax error")                                        \
	X(EINTERNAL, -20, "internal error")                                    \
	X(ECONFLICT, -21, "changed meanwhile")

enum drift_errno {
#define DRIFT__ERR_ENUM(name, value, desc) DRIFT_##name = (value),
	DRIFT_ERRNO_MAP(DRIFT__ERR_ENUM)
#undef DRIFT__ERR_ENUM
};

/* Size of the message buffer of a drift_err, terminating NUL included. Longer
 * messages are truncated (ending in "..."), never overflowed. */
#define DRIFT_ERR_MSG_MAX 512

typedef struct drift_err {
	int code;		     /* 0 or a DRIFT_E* code */
	char msg[DRIFT_ERR_MSG_MAX]; /* NUL-terminated; "" when none */
} drift_err;

/* Returns a static description of code ("unknown error" for codes not in
 * the map, including 0 which gives "success"). Never NULL. */
const char *drift_strerror(int code);

/* Returns the static name of code without the DRIFT_ prefix ("ECORRUPT"),
 * "OK" for 0 and "UNKNOWN" otherwise. Never NULL. */
const char *drift_errname(int code);

/* Maps a POSIX errno value (positive) to the closest DRIFT_E* code. */
int drift_err_from_errno(int errnum);

/* Resets err to "no error". err may be NULL. */
void drift_err_clear(drift_err *err);

/* Records code and a printf-style message in err (which may be NULL) and
 * returns code, so a failure path reads `return drift_err_set(err, ...);`.
 * code must be negative. */
int drift_err_set(drift_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Like drift_err_set, with ": <strerror(errnum)>" appended and the code
 * derived from errnum by drift_err_from_errno. Returns that code. */
int drift_err_errno(drift_err *err, int errnum, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Prefixes err's message with a printf-style context and ": ", keeping its
 * code; when err has no message yet, the message becomes the context followed
 * by ": " and drift_strerror(code). Sets err->code to code if it was 0.
 * Returns code. err may be NULL. */
int drift_err_wrap(drift_err *err, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* The message of err, or drift_strerror(code) when err is NULL or has none.
 * Never NULL. */
const char *drift_err_msg(const drift_err *err, int code);

#endif /* DRIFT_COMMON_ERR_H */
