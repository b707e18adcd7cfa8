#include "drift_test.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

void drift_test_tmpdir(char *path, size_t cap)
{
	const char *base = getenv("TMPDIR");
	snprintf(path, cap, "%s/drift-test-XXXXXX",
		 base != NULL && base[0] != '\0' ? base : "/tmp");
	cr_assert_not_null(mkdtemp(path), "mkdtemp %s", path);
}

static int remove_entry(const char *path, const struct stat *st, int flag,
			struct FTW *ftw)
{
	(void)st;
	(void)flag;
	(void)ftw;
	return remove(path);
}

void drift_test_rmtree(const char *path)
{
	nftw(path, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
}
