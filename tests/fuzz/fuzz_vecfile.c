/* Fuzz target: arbitrary bytes as each kind of vector file. Opening and
 * reading must fail cleanly or return rows of the announced shape. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "cli/vecfile.h"
#include "common/alloc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void try_read(const char *path)
{
	drift_vecfile *f;
	if (drift_vecfile_open(path, &f, NULL) != 0)
		return;
	size_t dim = drift_vecfile_dim(f), n;
	float *rows = malloc(4 * dim * sizeof(float) + 1);
	int32_t *ids = malloc(4 * dim * sizeof(int32_t) + 1);
	if (rows != NULL && ids != NULL) {
		while (drift_vecfile_read(f, rows, 4, &n, NULL) == 0 && n > 0)
			;
		drift_vecfile_read_i32(f, ids, 4, &n, NULL);
	}
	free(rows);
	free(ids);
	drift_vecfile_close(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const ext[] = {"fvecs", "bvecs", "ivecs", "npy"};
	char path[64];
	for (int i = 0; i < 4; i++) {
		snprintf(path, sizeof(path), "/tmp/drift-fuzz-%d.%s",
			 (int)getpid(), ext[i]);
		FILE *fp = fopen(path, "wb");
		if (fp == NULL)
			return 0;
		fwrite(data, 1, size, fp);
		fclose(fp);
		try_read(path);
		unlink(path);
	}
	return 0;
}
