#include "common/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *drift_strerror(int code)
{
	switch (code) {
	case 0:
		return "success";
#define DRIFT__ERR_DESC(name, value, desc)                                     \
	case DRIFT_##name:                                                     \
		return desc;
		DRIFT_ERRNO_MAP(DRIFT__ERR_DESC)
#undef DRIFT__ERR_DESC
	default:
		return "unknown error";
	}
}

const char *drift_errname(int code)
{
	switch (code) {
	case 0:
		return "OK";
#define DRIFT__ERR_NAME(name, value, desc)                                     \
	case DRIFT_##name:                                                     \
		return #name;
		DRIFT_ERRNO_MAP(DRIFT__ERR_NAME)
#undef DRIFT__ERR_NAME
	default:
		return "UNKNOWN";
	}
}

int drift_err_from_errno(int errnum)
{
	switch (errnum) {
	case ENOMEM:
		return DRIFT_ENOMEM;
	case EINVAL:
		return DRIFT_EINVAL;
	case ENOSPC:
	case EDQUOT:
	case EFBIG:
		return DRIFT_ENOSPC;
	case ENOENT:
	case ENOTDIR:
		return DRIFT_ENOENT;
	case EEXIST:
		return DRIFT_EEXIST;
	case ERANGE:
	case EOVERFLOW:
		return DRIFT_ERANGE;
	case ETIMEDOUT:
		return DRIFT_ETIMEDOUT;
	case ECANCELED:
		return DRIFT_ECANCELED;
	case EAGAIN:
	case ECONNREFUSED:
	case ECONNRESET:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return DRIFT_EUNAVAIL;
	case ENOSYS:
	case EOPNOTSUPP:
		return DRIFT_ENOTSUP;
	case EBUSY:
		return DRIFT_EBUSY;
	case EACCES:
	case EPERM:
	case EROFS:
		return DRIFT_EPERM;
	case EPIPE:
	case EBADF:
		return DRIFT_ECLOSED;
	case EPROTO:
		return DRIFT_EPROTO;
	default:
		return DRIFT_EIO;
	}
}

void drift_err_clear(drift_err *err)
{
	if (err == NULL)
		return;
	err->code = 0;
	err->msg[0] = '\0';
}

/* Marks a message that vsnprintf cut short, so a reader knows it is partial. */
static void mark_truncated(drift_err *err, int wanted)
{
	if (wanted >= (int)sizeof(err->msg))
		memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
}

__attribute__((format(printf, 3, 0))) static void
set_va(drift_err *err, int code, const char *fmt, va_list ap)
{
	err->code = code;
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	if (n < 0)
		err->msg[0] = '\0';
	else
		mark_truncated(err, n);
}

int drift_err_set(drift_err *err, int code, const char *fmt, ...)
{
	if (err == NULL)
		return code;
	va_list ap;
	va_start(ap, fmt);
	set_va(err, code, fmt, ap);
	va_end(ap);
	return code;
}

int drift_err_errno(drift_err *err, int errnum, const char *fmt, ...)
{
	int code = drift_err_from_errno(errnum);
	if (err == NULL)
		return code;
	va_list ap;
	va_start(ap, fmt);
	set_va(err, code, fmt, ap);
	va_end(ap);
	size_t len = strlen(err->msg);
	int n = snprintf(err->msg + len, sizeof(err->msg) - len, ": %s",
			 strerror(errnum));
	mark_truncated(err, (int)len + n);
	return code;
}

int drift_err_wrap(drift_err *err, int code, const char *fmt, ...)
{
	if (err == NULL)
		return code;
	char old[DRIFT_ERR_MSG_MAX];
	if (err->msg[0] != '\0')
		memcpy(old, err->msg, sizeof(old));
	else
		snprintf(old, sizeof(old), "%s", drift_strerror(code));
	if (err->code == 0)
		err->code = code;

	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
	va_end(ap);
	if (n < 0)
		n = 0;
	if ((size_t)n >= sizeof(err->msg)) {
		mark_truncated(err, n);
		return code;
	}
	int m = snprintf(err->msg + n, sizeof(err->msg) - (size_t)n, ": %s",
			 old);
	mark_truncated(err, n + m);
	return code;
}

const char *drift_err_msg(const drift_err *err, int code)
{
	if (err == NULL || err->msg[0] == '\0')
		return drift_strerror(code);
	return err->msg;
}
