/* Tests of common/err: the code list, messages and context wrapping. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "common/err.h"
#include "drift_test.h"

/* ---- Helpers ---------------------------------------------------------- */

static const int all_codes[] = {
#define X(name, value, desc) DRIFT_##name,
	DRIFT_ERRNO_MAP(X)
#undef X
};
#define NCODES (sizeof(all_codes) / sizeof(all_codes[0]))

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(err, codes_are_negative_distinct_and_described)
{
	for (size_t i = 0; i < NCODES; i++) {
		cr_assert_lt(all_codes[i], 0);
		for (size_t j = i + 1; j < NCODES; j++)
			cr_assert_neq(all_codes[i], all_codes[j]);
		cr_assert_str_neq(drift_strerror(all_codes[i]),
				  "unknown error");
		cr_assert_str_neq(drift_errname(all_codes[i]), "UNKNOWN");
	}
	cr_assert_str_eq(drift_errname(DRIFT_ECORRUPT), "ECORRUPT");
	cr_assert_str_eq(drift_strerror(DRIFT_ENOSPC),
			 "no space left on device");
	cr_assert_str_eq(drift_strerror(0), "success");
	cr_assert_str_eq(drift_errname(0), "OK");
	cr_assert_str_eq(drift_strerror(-9999), "unknown error");
	cr_assert_str_eq(drift_errname(42), "UNKNOWN");
}

DRIFT_TEST(err, set_formats_and_returns_code)
{
	drift_err e;
	drift_err_clear(&e);
	int rv = drift_err_set(&e, DRIFT_EINVAL, "dimension %d != %d", 3, 4);
	cr_assert_eq(rv, DRIFT_EINVAL);
	cr_assert_eq(e.code, DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "dimension 3 != 4");
	cr_assert_eq(drift_err_set(NULL, DRIFT_EIO, "x"), DRIFT_EIO);
	drift_err_clear(&e);
	cr_assert_eq(e.code, 0);
	cr_assert_str_eq(e.msg, "");
	drift_err_clear(NULL);
}

DRIFT_TEST(err, wrap_adds_context_outermost_first)
{
	drift_err e;
	drift_err_clear(&e);
	drift_err_set(&e, DRIFT_ECORRUPT, "checksum mismatch");
	drift_err_wrap(&e, DRIFT_ECORRUPT, "reading footer of %s", "a.drift");
	int rv = drift_err_wrap(&e, DRIFT_ECORRUPT, "opening shard %d", 3);
	cr_assert_eq(rv, DRIFT_ECORRUPT);
	cr_assert_str_eq(e.msg, "opening shard 3: reading footer of a.drift: "
				"checksum mismatch");

	/* Without a message, the code's description is the root cause. */
	drift_err_clear(&e);
	drift_err_wrap(&e, DRIFT_ENOMEM, "building bucket");
	cr_assert_str_eq(e.msg, "building bucket: out of memory");
	cr_assert_eq(e.code, DRIFT_ENOMEM);
	cr_assert_eq(drift_err_wrap(NULL, DRIFT_EIO, "x"), DRIFT_EIO);
}

DRIFT_TEST(err, long_messages_are_truncated_not_overflowed)
{
	drift_err e;
	char big[3 * DRIFT_ERR_MSG_MAX];
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	drift_err_set(&e, DRIFT_EINVAL, "%s", big);
	size_t len = strlen(e.msg);
	cr_assert_eq(len, DRIFT_ERR_MSG_MAX - 1);
	cr_assert_str_eq(e.msg + len - 3, "...");

	drift_err_set(&e, DRIFT_EINVAL, "root");
	drift_err_wrap(&e, DRIFT_EINVAL, "%s", big);
	cr_assert_eq(strlen(e.msg), DRIFT_ERR_MSG_MAX - 1);
	cr_assert_str_eq(e.msg + DRIFT_ERR_MSG_MAX - 4, "...");

	/* A context that fits but pushes the old message out. */
	drift_err_set(&e, DRIFT_EINVAL, "%.*s", DRIFT_ERR_MSG_MAX - 10, big);
	drift_err_wrap(&e, DRIFT_EINVAL, "ctx");
	cr_assert_eq(strncmp(e.msg, "ctx: aaa", 8), 0);
	cr_assert_str_eq(e.msg + DRIFT_ERR_MSG_MAX - 4, "...");
}

DRIFT_TEST(err, errno_mapping_and_message)
{
	cr_assert_eq(drift_err_from_errno(ENOSPC), DRIFT_ENOSPC);
	cr_assert_eq(drift_err_from_errno(EDQUOT), DRIFT_ENOSPC);
	cr_assert_eq(drift_err_from_errno(ENOMEM), DRIFT_ENOMEM);
	cr_assert_eq(drift_err_from_errno(ENOENT), DRIFT_ENOENT);
	cr_assert_eq(drift_err_from_errno(EEXIST), DRIFT_EEXIST);
	cr_assert_eq(drift_err_from_errno(EACCES), DRIFT_EPERM);
	cr_assert_eq(drift_err_from_errno(EIO), DRIFT_EIO);
	cr_assert_eq(drift_err_from_errno(12345), DRIFT_EIO);

	drift_err e;
	int rv = drift_err_errno(&e, ENOSPC, "writing %s", "wal.log");
	cr_assert_eq(rv, DRIFT_ENOSPC);
	cr_assert_eq(e.code, DRIFT_ENOSPC);
	char want[256];
	snprintf(want, sizeof(want), "writing wal.log: %s", strerror(ENOSPC));
	cr_assert_str_eq(e.msg, want);
	cr_assert_eq(drift_err_errno(NULL, ENOENT, "x"), DRIFT_ENOENT);
}

DRIFT_TEST(err, msg_falls_back_to_description)
{
	drift_err e;
	drift_err_clear(&e);
	cr_assert_str_eq(drift_err_msg(&e, DRIFT_EIO), "input/output error");
	cr_assert_str_eq(drift_err_msg(NULL, DRIFT_ENOMEM), "out of memory");
	drift_err_set(&e, DRIFT_EIO, "disk on fire");
	cr_assert_str_eq(drift_err_msg(&e, DRIFT_EIO), "disk on fire");
}
