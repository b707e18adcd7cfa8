/* Fuzz target: arbitrary bytes as a WAL file. Recovery must replay valid
 * records, cut a torn tail or report corruption, never crash. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/log.h"
#include "node/storage/wal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int count(void *ctx, uint64_t seq, uint32_t type, const void *p,
		 size_t len)
{
	(void)seq;
	(void)type;
	(void)p;
	*(size_t *)ctx += len;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	drift_log_set_level(DRIFT_LOG_OFF);
	char dir[64], path[128];
	snprintf(dir, sizeof(dir), "/tmp/drift-fuzz-wal-%d", (int)getpid());
	mkdir(dir, 0755);
	snprintf(path, sizeof(path), "%s/wal-0000000000000001.log", dir);
	FILE *fp = fopen(path, "wb");
	if (fp == NULL)
		return 0;
	fwrite(data, 1, size, fp);
	fclose(fp);
	drift_wal_opts o = {.dir = dir, .sync = DRIFT_WAL_NONE};
	drift_wal *w;
	size_t total = 0;
	if (drift_wal_open(&o, 0, count, &total, &w, NULL) == 0)
		drift_wal_close(w);
	char cmd[160];
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		abort();
	return 0;
}
