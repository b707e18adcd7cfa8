/*
 * A replica's epochs (see epochs.h).
 */
#include "node/replica/epochs.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/fs.h"

#define FILE_NAME "EPOCHS"

static int path_of(const char *dir, char *out, size_t cap)
{
	int n = snprintf(out, cap, "%s/" FILE_NAME, dir);
	return n > 0 && (size_t)n < cap ? 0 : DRIFT_ERANGE;
}

int drift_epochs_load(const char *shard_dir, drift_epochs *e, drift_err *err)
{
	memset(e, 0, sizeof(*e));
	char path[4096];
	if (path_of(shard_dir, path, sizeof(path)) != 0)
		return drift_err_set(err, DRIFT_ERANGE, "path too long");
	uint8_t *data;
	size_t len;
	drift_err rerr;
	int rv = drift_fs_read_file(drift_fs_posix(), path, 1 << 16, &data,
				    &len, &rerr);
	if (rv == DRIFT_ENOENT)
		return 0;
	if (rv != 0)
		return drift_err_set(err, rv, "%s", rerr.msg);
	const char *p = (const char *)data;
	while (*p != '\0') {
		uint64_t a, b;
		int used = 0;
		if (sscanf(p, "fence %" SCNu64 "\n%n", &a, &used) == 1 &&
		    used > 0) {
			e->fence = a;
		} else if (sscanf(p, "epoch %" SCNu64 " %" SCNu64 "\n%n", &a,
				  &b, &used) == 2 &&
			   used > 0 && e->n < DRIFT_EPOCHS_MAX &&
			   (e->n == 0 || (a > e->h[e->n - 1].epoch &&
					  b >= e->h[e->n - 1].first_seq))) {
			e->h[e->n].epoch = a;
			e->h[e->n].first_seq = b;
			e->n++;
		} else {
			drift_free(data);
			return drift_err_set(err, DRIFT_ECORRUPT,
					     "%s: line \"%.40s\" is not an "
					     "epoch",
					     path, p);
		}
		p += used;
	}
	drift_free(data);
	return 0;
}

int drift_epochs_save(const char *shard_dir, const drift_epochs *e,
		      drift_err *err)
{
	char path[4096];
	if (path_of(shard_dir, path, sizeof(path)) != 0)
		return drift_err_set(err, DRIFT_ERANGE, "path too long");
	char buf[64 * (DRIFT_EPOCHS_MAX + 1)];
	size_t o = (size_t)snprintf(buf, sizeof(buf), "fence %" PRIu64 "\n",
				    e->fence);
	for (size_t i = 0; i < e->n; i++)
		o += (size_t)snprintf(buf + o, sizeof(buf) - o,
				      "epoch %" PRIu64 " %" PRIu64 "\n",
				      e->h[i].epoch, e->h[i].first_seq);
	return drift_fs_write_file_atomic(drift_fs_posix(), path, buf, o, err);
}

uint64_t drift_epochs_last(const drift_epochs *e)
{
	return e->n > 0 ? e->h[e->n - 1].epoch : 0;
}

int drift_epochs_begin(drift_epochs *e, uint64_t epoch, uint64_t first_seq)
{
	if (e->n > 0 && e->h[e->n - 1].epoch >= epoch)
		return 0;
	if (e->n == DRIFT_EPOCHS_MAX) {
		memmove(e->h, e->h + 1, (e->n - 1) * sizeof(e->h[0]));
		e->n--;
	}
	e->h[e->n].epoch = epoch;
	e->h[e->n].first_seq = first_seq;
	e->n++;
	if (e->fence < epoch)
		e->fence = epoch;
	return 1;
}

int drift_epochs_prefix(const drift_epochs *e, uint64_t own_last,
			uint64_t epoch, uint64_t last_seq)
{
	if (epoch == 0)
		return last_seq == 0; /* an empty log is everyone's prefix */
	for (size_t i = 0; i < e->n; i++) {
		if (e->h[i].epoch != epoch)
			continue;
		uint64_t end =
			i + 1 < e->n ? e->h[i + 1].first_seq - 1 : own_last;
		return last_seq <= end;
	}
	return 0;
}
