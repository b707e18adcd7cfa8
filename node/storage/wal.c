/*
 * Write-ahead log, format version 1. All integers little endian.
 *
 * The log of a shard is a directory of files "wal-<first seq, 16 hex>.log".
 * Every open starts a new file (unless the newest holds its header and no
 * record yet, and starts at the next record: appends go on in it);
 * rotation starts another. Only the newest file is ever appended to.
 *
 * File header (32 bytes):
 *    0  8  magic "DRIFTWAL"
 *    8  4  version (1)
 *   12  4  reserved (0)
 *   16  8  sequence number of the file's first record
 *   24  8  XXH3-64 of bytes 0..23
 *
 * Records follow, each padded with zeros to a multiple of 8 bytes:
 *    0  4  payload length L (1..256 MiB allowed; 0 is never written)
 *    4  4  type (non-zero; the shard's OP_UPSERT, OP_DELETE)
 *    8  8  sequence number (strictly increasing through the log)
 *   16  8  XXH3-64 of the payload, seeded with XXH3-64 of bytes 0..15
 *   24  L  payload
 *
 * Recovery reads the files in order and replays valid records. A record is
 * valid when its length fits in the file, its type is non-zero, its
 * sequence number is above the previous one and its checksum holds. At the
 * first invalid record:
 * - in the newest file, when the bytes from there to the end hold no valid
 *   record further on, or the bad header is all zeros (a page the crash never
 *   wrote), it is a torn tail: records there were never acknowledged under
 *   ALWAYS (acknowledgement waits for the fsync that covers them), so the
 *   file is cut at that point and recovery succeeds;
 * - otherwise (an older file, or a valid record after the bad one) it is
 *   corruption: recovery fails with DRIFT_ECORRUPT naming the file and the
 *   offset, and nothing is skipped silently.
 */
#include "node/storage/wal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/abuf.h"
#include "common/alloc.h"
#include "common/endian.h"
#include "common/hash.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/metrics.h"

#define MAGIC "DRIFTWAL"
#define VERSION 1
#define FILE_HEADER 32
#define REC_HEADER 24
#define PATH_MAX_LEN 4096

typedef struct wal_file {
	uint64_t first_seq;
	uint64_t last_seq; /* 0 when it holds no record */
	char *path;
} wal_file;

/* A writer waiting for its group to be written (and synced). */
typedef struct ticket {
	struct ticket *next;
	int rv;
	bool done;
} ticket;

struct drift_wal {
	drift_wal_opts o;
	drift_fs *fs;
	char *dir;

	pthread_mutex_t lock;
	pthread_cond_t cond;

	int fd;
	uint64_t off; /* end of the last complete record in the file */
	wal_file *files;
	size_t nfiles;
	uint64_t bytes; /* in all files */

	uint64_t next_seq;
	uint64_t last_seq;
	uint64_t replayed;  /* last sequence number seen by recovery */
	drift_abuf pending; /* encoded records not yet written */
	uint64_t pending_last;
	ticket *waiters; /* tickets of the pending group */
	drift_abuf spare;
	bool leader;
	int poisoned; /* 0 or the error every append now gets */

	uint64_t written_seq, durable_seq;
	uint64_t syncs;
	uint64_t hold; /* retire keeps the records above this */

	pthread_t syncer;
	bool syncer_running, stopping;
	/* BATCH with a pool: the sync task, and whether it is posted. */
	drift_janitor_task sync_task;
	bool sync_posted;
};

/* A group larger than this is written from a buffer freed afterwards: a
 * log keeps no more than this (twice: pending and spare) for its next
 * writes, whatever the largest batch it ever took. */
#define KEEP_BUFFER (16u << 10)

/* ---- Names and headers -------------------------------------------------- */

static char *file_path(const char *dir, uint64_t first)
{
	char buf[PATH_MAX_LEN];
	int n = snprintf(buf, sizeof(buf), "%s/wal-%016" PRIx64 ".log", dir,
			 first);
	return n > 0 && (size_t)n < sizeof(buf) ? drift_strdup(buf) : NULL;
}

static void encode_header(uint8_t *h, uint64_t first)
{
	memset(h, 0, FILE_HEADER);
	memcpy(h, MAGIC, 8);
	drift_store_le32(h + 8, VERSION);
	drift_store_le64(h + 16, first);
	drift_store_le64(h + 24, drift_checksum64(h, 24));
}

static uint64_t record_checksum(const uint8_t *hdr, const void *payload,
				size_t len)
{
	return drift_checksum64_seeded(payload, len, drift_checksum64(hdr, 16));
}

static size_t record_size(size_t len)
{
	return drift_align_up(REC_HEADER + len, 8);
}

/* ---- Recovery ----------------------------------------------------------- */

static int file_cmp(const void *a, const void *b)
{
	const wal_file *x = a, *y = b;
	return x->first_seq < y->first_seq ? -1 : x->first_seq > y->first_seq;
}

/* Lists the directory's WAL files, sorted by first sequence number. */
static int list_files(drift_wal *w, drift_err *err)
{
	DIR *d = opendir(w->dir);
	if (d == NULL)
		return drift_err_errno(err, errno, "opening WAL directory %s",
				       w->dir);
	struct dirent *e;
	int rv = 0;
	size_t cap = 0;
	while ((e = readdir(d)) != NULL) {
		uint64_t first;
		char tail[8];
		if (sscanf(e->d_name, "wal-%16" SCNx64 ".lo%1s", &first,
			   tail) != 2 ||
		    strcmp(tail, "g") != 0 || strlen(e->d_name) != 24)
			continue;
		if (w->nfiles == cap) {
			cap = cap ? 2 * cap : 8;
			wal_file *f = drift_realloc(w->files, cap * sizeof(*f));
			if (f == NULL) {
				rv = drift_err_set(err, DRIFT_ENOMEM, "WAL");
				break;
			}
			w->files = f;
		}
		char *p = file_path(w->dir, first);
		if (p == NULL) {
			rv = drift_err_set(err, DRIFT_ENOMEM, "WAL");
			break;
		}
		w->files[w->nfiles++] = (wal_file){first, 0, p};
	}
	closedir(d);
	if (rv == 0 && w->nfiles > 1)
		qsort(w->files, w->nfiles, sizeof(wal_file), file_cmp);
	return rv;
}

/* Whether a valid record (sequence above after) starts at some 8-byte
 * aligned offset in data[from..len). */
static bool valid_record_after(const uint8_t *data, size_t len, size_t from,
			       uint64_t after)
{
	for (size_t o = drift_align_up(from, 8); o + REC_HEADER <= len;
	     o += 8) {
		uint32_t l = drift_load_le32(data + o);
		uint32_t type = drift_load_le32(data + o + 4);
		uint64_t seq = drift_load_le64(data + o + 8);
		if (l == 0 || type == 0 || l > DRIFT_WAL_MAX_RECORD ||
		    l > len - o - REC_HEADER || seq <= after)
			continue;
		if (record_checksum(data + o, data + o + REC_HEADER, l) ==
		    drift_load_le64(data + o + 16))
			return true;
	}
	return false;
}

static bool all_zero(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (p[i] != 0)
			return false;
	return true;
}

/* Replays one file; cuts a torn tail when it is the newest. */
static int replay_file(drift_wal *w, wal_file *f, bool newest, uint64_t after,
		       drift_wal_replay_fn fn, void *ctx, drift_err *err)
{
	uint8_t *data;
	size_t len;
	int rv = drift_fs_read_file(w->fs, f->path, SIZE_MAX / 2, &data, &len,
				    err);
	if (rv != 0)
		return rv;
	if (len < FILE_HEADER || memcmp(data, MAGIC, 8) != 0 ||
	    drift_load_le64(data + 24) != drift_checksum64(data, 24) ||
	    drift_load_le64(data + 16) != f->first_seq) {
		/* A crash between creating the newest file and writing its
		 * header leaves it short: nothing in it was acknowledged. */
		if (newest && len < FILE_HEADER) {
			drift_free(data);
			return 1; /* empty newest file: drop it */
		}
		drift_free(data);
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "WAL file %s: bad header", f->path);
	}
	if (drift_load_le32(data + 8) != VERSION) {
		drift_free(data);
		return drift_err_set(err, DRIFT_ENOTSUP,
				     "WAL file %s: unknown version %u", f->path,
				     drift_load_le32(data + 8));
	}
	size_t o = FILE_HEADER;
	uint64_t prev = w->replayed;
	while (o < len) {
		bool ok = len - o >= REC_HEADER;
		uint32_t l = 0, type = 0;
		uint64_t seq = 0;
		if (ok) {
			l = drift_load_le32(data + o);
			type = drift_load_le32(data + o + 4);
			seq = drift_load_le64(data + o + 8);
			ok = l > 0 && type != 0 && l <= DRIFT_WAL_MAX_RECORD &&
			     record_size(l) <= len - o && seq > prev &&
			     record_checksum(data + o, data + o + REC_HEADER,
					     l) ==
				     drift_load_le64(data + o + 16);
		}
		if (!ok) {
			bool zero_hdr = all_zero(
				data + o,
				len - o < REC_HEADER ? len - o : REC_HEADER);
			if (!newest ||
			    (!zero_hdr &&
			     valid_record_after(data, len, o + 8, prev))) {
				drift_free(data);
				return drift_err_set(
					err, DRIFT_ECORRUPT,
					"WAL file %s: bad record at "
					"offset %zu, with valid "
					"records after it",
					f->path, o);
			}
			DRIFT_WARN("WAL %s: torn tail at offset %zu (%zu "
				   "bytes) cut off",
				   f->path, o, len - o);
			int fd = w->fs->open(w->fs, f->path, O_WRONLY, 0);
			if (fd >= 0) {
				int t = w->fs->ftruncate(w->fs, fd, o);
				if (t == 0)
					t = w->fs->fsync(w->fs, fd);
				w->fs->close(w->fs, fd);
				fd = t;
			}
			if (fd < 0) {
				drift_free(data);
				return drift_err_errno(err, -fd,
						       "cutting torn tail of "
						       "%s",
						       f->path);
			}
			len = o;
			break;
		}
		if (seq > after && fn != NULL) {
			rv = fn(ctx, seq, type, data + o + REC_HEADER, l);
			if (rv != 0) {
				drift_free(data);
				return drift_err_wrap(
					err, rv, "replaying %s record %" PRIu64,
					f->path, seq);
			}
		}
		prev = seq;
		f->last_seq = seq;
		o += record_size(l);
	}
	w->replayed = prev;
	w->bytes += len;
	drift_free(data);
	return 0;
}

/* ---- Files -------------------------------------------------------------- */

/* Creates the file for records from first on and makes it current. */
static int start_file(drift_wal *w, uint64_t first, drift_err *err)
{
	char *path = file_path(w->dir, first);
	wal_file *f =
		drift_realloc(w->files, (w->nfiles + 1) * sizeof(wal_file));
	if (path == NULL || f == NULL) {
		drift_free(path);
		if (f != NULL)
			w->files = f;
		return drift_err_set(err, DRIFT_ENOMEM, "WAL file");
	}
	w->files = f;
	int fd = w->fs->open(w->fs, path,
			     O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
	if (fd < 0) {
		int rv = drift_err_errno(err, -fd, "creating %s", path);
		drift_free(path);
		return rv;
	}
	uint8_t h[FILE_HEADER];
	encode_header(h, first);
	int rv = drift_fs_write_all(w->fs, fd, h, sizeof(h), path, err);
	if (rv == 0) {
		rv = w->fs->fsync(w->fs, fd);
		if (rv < 0)
			rv = drift_err_errno(err, -rv, "syncing %s", path);
	}
	if (rv == 0)
		rv = drift_fs_fsync_dir(w->fs, w->dir, err);
	if (rv != 0) {
		w->fs->close(w->fs, fd);
		w->fs->unlink(w->fs, path);
		drift_free(path);
		return rv;
	}
	w->files[w->nfiles++] = (wal_file){first, 0, path};
	w->fd = fd;
	w->off = FILE_HEADER;
	w->bytes += FILE_HEADER;
	return 0;
}

/* Makes f, the newest file, which holds its header and no record (recovery
 * cut anything after it) and starts at w->next_seq, current again: a shard
 * open re-created it before (an unlink, a create and two syncs of a file
 * and a directory that had changed; 4,000 fsyncs, about 2 s, in a restart
 * of 2,000 collections). Its header and entry were synced by start_file
 * before any record could be written to it; both are synced again, which
 * costs little when nothing changed, for a process that died between the
 * write and those syncs. 0, or a negative errno (the caller re-creates
 * it). */
static int reuse_file(drift_wal *w, const wal_file *f)
{
	int fd = w->fs->open(w->fs, f->path, O_WRONLY | O_APPEND, 0);
	if (fd < 0)
		return fd;
	int rv = w->fs->fsync(w->fs, fd);
	if (rv == 0 && drift_fs_fsync_dir(w->fs, w->dir, NULL) != 0)
		rv = -EIO;
	if (rv != 0) {
		w->fs->close(w->fs, fd);
		return rv;
	}
	w->fd = fd;
	w->off = FILE_HEADER;
	return 0;
}

/* ---- Writing ------------------------------------------------------------ */

/* drift_wal_fsync_seconds: every WAL fdatasync of the process (one covers
 * a whole commit group), made on first use. */
static drift_series *fsync_seconds;
static pthread_once_t fsync_once = PTHREAD_ONCE_INIT;

static void fsync_metric_init(void)
{
	fsync_seconds = drift_metrics_simple(
		drift_metrics_default(), DRIFT_METRIC_HISTOGRAM,
		"drift_wal_fsync_seconds",
		"WAL fdatasync latency (one covers a commit group).",
		drift_metrics_latency_bounds, drift_metrics_latency_nbounds);
}

static int sync_fd(drift_wal *w, drift_err *err)
{
	pthread_once(&fsync_once, fsync_metric_init);
	uint64_t t0 = drift_now_ns();
	int rv = w->fs->fdatasync(w->fs, w->fd);
	drift_metrics_observe(fsync_seconds,
			      (double)(drift_now_ns() - t0) / 1e9);
	if (rv < 0)
		return drift_err_errno(err, -rv, "syncing WAL %s",
				       w->files[w->nfiles - 1].path);
	return 0;
}

/* Writes the pending group as leader. Called with the lock held; drops it
 * around the I/O. */
static void lead(drift_wal *w)
{
	w->leader = true;
	while (w->pending.len > 0) {
		/* Writers append to the spare buffer while this one is
		 * written. */
		drift_abuf buf = w->pending;
		w->pending = w->spare;
		drift_abuf_init(&w->spare, DRIFT_ALIGN_CACHE);
		ticket *group = w->waiters;
		w->waiters = NULL;
		uint64_t last = w->pending_last;
		bool sync = w->o.sync == DRIFT_WAL_ALWAYS;
		pthread_mutex_unlock(&w->lock);

		drift_err e;
		int rv = drift_fs_write_all(w->fs, w->fd, buf.data, buf.len,
					    "WAL", &e);
		int srv = 0;
		if (rv == 0 && sync)
			srv = sync_fd(w, &e);

		pthread_mutex_lock(&w->lock);
		if (rv != 0) {
			/* Cut the partial write so that the file ends on a
			 * complete record; if that fails, stop trusting it. */
			int t = w->fs->ftruncate(w->fs, w->fd, w->off);
			if (t < 0)
				w->poisoned = DRIFT_EIO;
		} else {
			w->off += buf.len;
			w->bytes += buf.len;
			w->written_seq = last;
			w->files[w->nfiles - 1].last_seq = last;
			if (sync) {
				w->syncs++;
				if (srv == 0)
					w->durable_seq = last;
				else
					w->poisoned = DRIFT_EIO;
			}
		}
		int result = rv != 0 ? rv : srv;
		for (ticket *t = group; t != NULL; t = t->next) {
			t->rv = result;
			t->done = true;
		}
		if (buf.cap > KEEP_BUFFER) {
			drift_abuf_free(&buf);
			drift_abuf_init(&buf, DRIFT_ALIGN_CACHE);
		}
		w->spare = buf;
		drift_abuf_clear(&w->spare);
		if (w->o.sync == DRIFT_WAL_BATCH && w->o.pool != NULL &&
		    !w->sync_posted && w->durable_seq < w->written_seq) {
			w->sync_posted = true;
			drift_janitor_post(w->o.pool, &w->sync_task,
					   DRIFT_JANITOR_FLUSH,
					   w->o.batch_interval_ns);
		}
		pthread_cond_broadcast(&w->cond);
	}
	w->leader = false;
}

static int append(drift_wal *w, uint64_t want, uint32_t type,
		  const void *payload, size_t len, uint64_t *seq,
		  drift_err *err)
{
	if (type == 0 || len == 0 || len > DRIFT_WAL_MAX_RECORD)
		return drift_err_set(err, DRIFT_EINVAL,
				     "WAL record of type %u and %zu bytes",
				     type, len);
	pthread_mutex_lock(&w->lock);
	if (want != 0 && want != w->next_seq) {
		uint64_t next = w->next_seq;
		pthread_mutex_unlock(&w->lock);
		return drift_err_set(err,
				     want < next ? DRIFT_EEXIST : DRIFT_ESTALE,
				     "WAL record %" PRIu64 " out of order: the "
				     "next is %" PRIu64,
				     want, next);
	}
	if (w->poisoned != 0) {
		pthread_mutex_unlock(&w->lock);
		return drift_err_set(err, w->poisoned,
				     "the WAL failed to sync earlier and "
				     "accepts no writes until reopened");
	}
	size_t at = w->pending.len;
	int rv = drift_abuf_append(&w->pending, NULL, record_size(len));
	if (rv != 0) {
		pthread_mutex_unlock(&w->lock);
		return drift_err_set(err, rv, "WAL append");
	}
	uint64_t s = w->next_seq++;
	uint8_t *r = w->pending.data + at;
	drift_store_le32(r, (uint32_t)len);
	drift_store_le32(r + 4, type);
	drift_store_le64(r + 8, s);
	memcpy(r + REC_HEADER, payload, len);
	drift_store_le64(r + 16, record_checksum(r, payload, len));
	w->pending_last = s;
	w->last_seq = s;
	pthread_cond_broadcast(&w->cond); /* drift_wal_wait_next */

	ticket me = {.next = w->waiters};
	w->waiters = &me;
	if (!w->leader)
		lead(w);
	while (!me.done)
		pthread_cond_wait(&w->cond, &w->lock);
	pthread_mutex_unlock(&w->lock);
	if (me.rv != 0)
		return drift_err_set(err, me.rv,
				     "WAL write of record %" PRIu64 " failed: "
				     "%s",
				     s, drift_strerror(me.rv));
	if (seq != NULL)
		*seq = s;
	return 0;
}

int drift_wal_append(drift_wal *w, uint32_t type, const void *payload,
		     size_t len, uint64_t *seq, drift_err *err)
{
	return append(w, 0, type, payload, len, seq, err);
}

int drift_wal_append_at(drift_wal *w, uint64_t seq, uint32_t type,
			const void *payload, size_t len, drift_err *err)
{
	if (seq == 0)
		return drift_err_set(err, DRIFT_EINVAL, "WAL record 0");
	return append(w, seq, type, payload, len, NULL, err);
}

int drift_wal_wait_next(drift_wal *w, uint64_t seq, uint64_t deadline_ns)
{
	pthread_mutex_lock(&w->lock);
	while (w->next_seq < seq && w->poisoned == 0 && !w->stopping) {
		uint64_t now = drift_now_ns();
		if (now >= deadline_ns)
			break;
		struct timespec ts = {
			.tv_sec = (time_t)(deadline_ns / 1000000000u),
			.tv_nsec = (long)(deadline_ns % 1000000000u)};
		pthread_cond_timedwait(&w->cond, &w->lock, &ts);
	}
	uint64_t next = w->next_seq;
	pthread_mutex_unlock(&w->lock);
	return next == seq ? 0 : next > seq ? DRIFT_EEXIST : DRIFT_ETIMEDOUT;
}

void drift_wal_hold(drift_wal *w, uint64_t after)
{
	pthread_mutex_lock(&w->lock);
	w->hold = after;
	pthread_mutex_unlock(&w->lock);
}

int drift_wal_read(drift_wal *w, uint64_t after, size_t max_bytes,
		   drift_wal_replay_fn fn, void *ctx, drift_err *err)
{
	/* The files that hold records above `after`, and how far the
	 * current one is written, as of now. */
	pthread_mutex_lock(&w->lock);
	uint64_t written = w->written_seq;
	size_t first = 0;
	while (first + 1 < w->nfiles &&
	       w->files[first + 1].first_seq <= after + 1)
		first++;
	size_t n = w->nfiles - first;
	bool gone = w->nfiles == 0 || w->files[first].first_seq > after + 1;
	char **paths = gone ? NULL : drift_calloc(n, sizeof(*paths));
	for (size_t i = 0; paths != NULL && i < n; i++)
		paths[i] = drift_strdup(w->files[first + i].path);
	pthread_mutex_unlock(&w->lock);
	if (after >= written) {
		for (size_t i = 0; paths != NULL && i < n; i++)
			drift_free(paths[i]);
		drift_free(paths);
		return 0;
	}
	if (gone)
		return drift_err_set(err, DRIFT_ENOENT,
				     "WAL %s: records after %" PRIu64 " are "
				     "no longer kept",
				     w->dir, after);
	int rv = paths == NULL ? drift_err_set(err, DRIFT_ENOMEM, "WAL read")
			       : 0;
	size_t sent = 0;
	uint64_t prev = after;
	for (size_t i = 0;
	     rv == 0 && i < n && prev < written && sent < max_bytes; i++) {
		uint8_t *data = NULL;
		size_t len = 0;
		if (paths[i] == NULL) {
			rv = drift_err_set(err, DRIFT_ENOMEM, "WAL read");
			break;
		}
		rv = drift_fs_read_file(w->fs, paths[i], SIZE_MAX / 2, &data,
					&len, err);
		if (rv == DRIFT_ENOENT)
			rv = drift_err_set(err, DRIFT_ENOENT,
					   "WAL %s: records after %" PRIu64
					   " were retired while being read",
					   w->dir, prev);
		size_t o = FILE_HEADER;
		while (rv == 0 && o + REC_HEADER <= len && prev < written &&
		       sent < max_bytes) {
			uint32_t l = drift_load_le32(data + o);
			uint32_t type = drift_load_le32(data + o + 4);
			uint64_t seq = drift_load_le64(data + o + 8);
			if (l == 0 || record_size(l) > len - o ||
			    record_checksum(data + o, data + o + REC_HEADER,
					    l) !=
				    drift_load_le64(data + o + 16))
				break; /* the end of what is written */
			if (seq > prev && seq <= written) {
				if (seq != prev + 1) {
					rv = drift_err_set(
						err, DRIFT_ECORRUPT,
						"WAL %s: record %" PRIu64
						" follows %" PRIu64,
						paths[i], seq, prev);
					break;
				}
				rv = fn(ctx, seq, type, data + o + REC_HEADER,
					l);
				prev = seq;
				sent += l;
			}
			o += record_size(l);
		}
		drift_free(data);
	}
	for (size_t i = 0; paths != NULL && i < n; i++)
		drift_free(paths[i]);
	drift_free(paths);
	return rv;
}

int drift_wal_sync(drift_wal *w, drift_err *err)
{
	pthread_mutex_lock(&w->lock);
	while (w->leader)
		pthread_cond_wait(&w->cond, &w->lock);
	int rv = w->poisoned;
	if (rv == 0 && w->durable_seq < w->written_seq) {
		uint64_t upto = w->written_seq;
		rv = sync_fd(w, err);
		w->syncs++;
		if (rv == 0)
			w->durable_seq = upto;
		else
			w->poisoned = DRIFT_EIO;
	} else if (rv != 0) {
		drift_err_set(err, rv, "the WAL is poisoned");
	}
	pthread_mutex_unlock(&w->lock);
	return rv;
}

/* BATCH: syncs what was written, every interval. The condition variable
 * is also signalled by every group, so the deadline is kept across
 * wake-ups. */
static void *syncer_main(void *arg)
{
	drift_wal *w = arg;
	pthread_mutex_lock(&w->lock);
	while (!w->stopping) {
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + w->o.batch_interval_ns;
		ts.tv_sec += (time_t)(ns / DRIFT_NS_PER_S);
		ts.tv_nsec = (long)(ns % DRIFT_NS_PER_S);
		while (!w->stopping &&
		       pthread_cond_timedwait(&w->cond, &w->lock, &ts) == 0)
			;
		if (w->stopping || w->poisoned ||
		    w->durable_seq >= w->written_seq)
			continue;
		pthread_mutex_unlock(&w->lock);
		drift_wal_sync(w, NULL);
		pthread_mutex_lock(&w->lock);
	}
	pthread_mutex_unlock(&w->lock);
	return NULL;
}

/* BATCH with a pool: one sync, batch_interval after the write that found
 * none posted. */
static void sync_task_fn(drift_janitor_task *t)
{
	drift_wal *w =
		(drift_wal *)((char *)t - offsetof(drift_wal, sync_task));
	pthread_mutex_lock(&w->lock);
	w->sync_posted = false;
	bool need = w->poisoned == 0 && w->durable_seq < w->written_seq;
	pthread_mutex_unlock(&w->lock);
	if (need)
		drift_wal_sync(w, NULL);
}

/* ---- Lifecycle ---------------------------------------------------------- */

int drift_wal_open(const drift_wal_opts *opts, uint64_t after_seq,
		   drift_wal_replay_fn replay, void *ctx, drift_wal **out,
		   drift_err *err)
{
	drift_wal *w = drift_calloc(1, sizeof(*w));
	if (w == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "WAL");
	w->o = *opts;
	w->fs = opts->fs != NULL ? opts->fs : drift_fs_posix();
	if (w->o.batch_interval_ns == 0)
		w->o.batch_interval_ns = 10 * DRIFT_NS_PER_MS;
	w->fd = -1;
	w->hold = DRIFT_WAL_NO_HOLD;
	drift_abuf_init(&w->pending, DRIFT_ALIGN_CACHE);
	drift_abuf_init(&w->spare, DRIFT_ALIGN_CACHE);
	pthread_mutex_init(&w->lock, NULL);
	pthread_condattr_t ca; /* drift_wal_wait_next's deadline */
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&w->cond, &ca);
	pthread_condattr_destroy(&ca);
	int rv;
	w->dir = drift_strdup(opts->dir);
	if (w->dir == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "WAL");
		goto fail;
	}
	rv = list_files(w, err);
	if (rv != 0)
		goto fail;
	w->last_seq = after_seq;
	for (size_t i = 0; i < w->nfiles; i++) {
		rv = replay_file(w, &w->files[i], i + 1 == w->nfiles, after_seq,
				 replay, ctx, err);
		if (rv == 1) { /* an empty newest file: remove it */
			w->fs->unlink(w->fs, w->files[i].path);
			drift_free(w->files[i].path);
			w->nfiles--;
			rv = 0;
		}
		if (rv != 0)
			goto fail;
	}
	if (w->replayed > w->last_seq)
		w->last_seq = w->replayed;
	w->next_seq = w->last_seq + 1;
	w->written_seq = w->durable_seq = w->last_seq;
	/* A newest file with a header and no record (the previous open's, or
	 * a rotation's, untouched since) that starts at the next record
	 * takes the appends (reuse_file). One that cannot would get the very
	 * name of the file started below: two entries for one path, and a
	 * later retire of the older entry would unlink the file being
	 * written. Nothing in it was acknowledged: it goes. */
	bool reused = false;
	if (w->nfiles > 0 && w->files[w->nfiles - 1].last_seq == 0) {
		wal_file *f = &w->files[w->nfiles - 1];
		reused = f->first_seq == w->next_seq && reuse_file(w, f) == 0;
		if (!reused) {
			w->bytes -= FILE_HEADER; /* counted by recovery */
			w->fs->unlink(w->fs, f->path);
			drift_free(f->path);
			w->nfiles--;
		}
	}
	if (!reused && (rv = start_file(w, w->next_seq, err)) != 0)
		goto fail;
	if (w->o.sync == DRIFT_WAL_BATCH && w->o.pool != NULL) {
		drift_janitor_task_init(&w->sync_task, sync_task_fn);
	} else if (w->o.sync == DRIFT_WAL_BATCH) {
		rv = pthread_create(&w->syncer, NULL, syncer_main, w);
		if (rv != 0) {
			rv = drift_err_errno(err, rv, "starting WAL syncer");
			goto fail;
		}
		w->syncer_running = true;
	}
	*out = w;
	return 0;
fail:
	drift_wal_close(w);
	return rv;
}

int drift_wal_rotate(drift_wal *w, uint64_t *first, drift_err *err)
{
	pthread_mutex_lock(&w->lock);
	while (w->leader)
		pthread_cond_wait(&w->cond, &w->lock);
	int rv = w->poisoned;
	if (rv == 0 && w->durable_seq < w->written_seq) {
		rv = sync_fd(w, err);
		w->syncs++;
		if (rv != 0)
			w->poisoned = DRIFT_EIO;
		else
			w->durable_seq = w->written_seq;
	}
	/* A current file that holds no record already starts at next_seq:
	 * a new one would have its very name (start_file truncates it, and
	 * a later retire would unlink the file being written). It stays. */
	bool empty = w->nfiles > 0 &&
		     w->files[w->nfiles - 1].first_seq == w->next_seq;
	if (rv == 0 && !empty) {
		int old = w->fd;
		rv = start_file(w, w->next_seq, err);
		if (rv == 0)
			w->fs->close(w->fs, old);
	}
	if (rv == 0 && first != NULL)
		*first = w->next_seq;
	pthread_mutex_unlock(&w->lock);
	return rv;
}

int drift_wal_retire(drift_wal *w, uint64_t upto, drift_err *err)
{
	pthread_mutex_lock(&w->lock);
	if (w->hold < upto)
		upto = w->hold;
	size_t keep = 0;
	int rv = 0;
	for (size_t i = 0; i < w->nfiles; i++) {
		wal_file *f = &w->files[i];
		bool current = i + 1 == w->nfiles;
		/* A file is done when the next one starts after upto. */
		uint64_t end =
			current ? UINT64_MAX : w->files[i + 1].first_seq - 1;
		if (!current && end <= upto && rv == 0) {
			int u = w->fs->unlink(w->fs, f->path);
			if (u < 0 && u != -ENOENT) {
				rv = drift_err_errno(err, -u, "removing %s",
						     f->path);
				w->files[keep++] = *f;
				continue;
			}
			drift_free(f->path);
			continue;
		}
		w->files[keep++] = *f;
	}
	w->nfiles = keep;
	pthread_mutex_unlock(&w->lock);
	if (rv == 0)
		rv = drift_fs_fsync_dir(w->fs, w->dir, err);
	return rv;
}

uint64_t drift_wal_last_seq(drift_wal *w)
{
	pthread_mutex_lock(&w->lock);
	uint64_t s = w->last_seq;
	pthread_mutex_unlock(&w->lock);
	return s;
}

uint64_t drift_wal_bytes(drift_wal *w)
{
	pthread_mutex_lock(&w->lock);
	uint64_t b = w->bytes;
	pthread_mutex_unlock(&w->lock);
	return b;
}

uint64_t drift_wal_syncs(drift_wal *w)
{
	pthread_mutex_lock(&w->lock);
	uint64_t s = w->syncs;
	pthread_mutex_unlock(&w->lock);
	return s;
}

void drift_wal_close(drift_wal *w)
{
	if (w == NULL)
		return;
	if (w->o.sync == DRIFT_WAL_BATCH && w->o.pool != NULL)
		drift_janitor_detach(w->o.pool, &w->sync_task);
	if (w->syncer_running) {
		pthread_mutex_lock(&w->lock);
		w->stopping = true;
		pthread_cond_broadcast(&w->cond);
		pthread_mutex_unlock(&w->lock);
		pthread_join(w->syncer, NULL);
	}
	if (w->fd >= 0) {
		if (w->poisoned == 0)
			drift_wal_sync(w, NULL);
		w->fs->close(w->fs, w->fd);
	}
	for (size_t i = 0; i < w->nfiles; i++)
		drift_free(w->files[i].path);
	drift_free(w->files);
	drift_abuf_free(&w->pending);
	drift_abuf_free(&w->spare);
	drift_free(w->dir);
	pthread_cond_destroy(&w->cond);
	pthread_mutex_destroy(&w->lock);
	drift_free(w);
}
