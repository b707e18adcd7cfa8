#include "drift_test.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
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

/* IDX format (LeCun et al.): big-endian magic 0x00000803 for 3-d unsigned
 * bytes, then the three sizes, then the bytes. The files are gzipped; gzip
 * is on every Debian system, so no zlib dependency is needed. */
float *drift_test_fmnist(const char *set, size_t max_rows, size_t *rows)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd),
		 "gzip -dc /usr/share/datasets/fashion-mnist/"
		 "%s-images-idx3-ubyte.gz",
		 set);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p, "%s", cmd);
	unsigned char head[16];
	cr_assert_eq(fread(head, 1, 16, p), 16,
		     "cannot read Fashion-MNIST (is dataset-fashion-mnist "
		     "installed? make deps installs it)");
	uint32_t v[4];
	for (int i = 0; i < 4; i++)
		v[i] = (uint32_t)head[4 * i] << 24 |
		       (uint32_t)head[4 * i + 1] << 16 |
		       (uint32_t)head[4 * i + 2] << 8 | head[4 * i + 3];
	cr_assert_eq(v[0], 0x803u, "not an IDX image file");
	cr_assert_eq(v[2] * v[3], DRIFT_TEST_FMNIST_DIM);
	size_t n = v[1] < max_rows ? v[1] : max_rows;
	float *out = malloc(n * DRIFT_TEST_FMNIST_DIM * sizeof(float));
	unsigned char *row = malloc(DRIFT_TEST_FMNIST_DIM);
	cr_assert(out != NULL && row != NULL);
	for (size_t r = 0; r < n; r++) {
		cr_assert_eq(fread(row, 1, DRIFT_TEST_FMNIST_DIM, p),
			     DRIFT_TEST_FMNIST_DIM);
		for (size_t i = 0; i < DRIFT_TEST_FMNIST_DIM; i++)
			out[r * DRIFT_TEST_FMNIST_DIM + i] = row[i];
	}
	free(row);
	pclose(p);
	*rows = n;
	return out;
}
