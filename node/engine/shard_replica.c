/*
 * A shard's part in replication (node/replica/): a replica applies the
 * primary's WAL records under the primary's sequence numbers, and a
 * primary reads the tail of its log for a replica that missed it. See
 * shard.h.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "node/engine/shard_internal.h"

int drift_shard_apply(drift_shard *s, uint64_t seq, uint32_t type,
		      const void *payload, size_t len, uint64_t deadline_ns,
		      drift_err *err)
{
	uint32_t dim = s->o.dim;
	shard_record rec;
	if (seq == 0 || shard_record_parse(type, payload, len, dim,
					   s->o.memtable_rows, &rec) != 0)
		return drift_err_set(err, DRIFT_EINVAL,
				     "record %llu (type %u, %zu bytes) is not "
				     "a valid batch for shard %s",
				     (unsigned long long)seq, type, len,
				     s->dir);
	/* In the primary's order: wait for the record before this one, so
	 * that the writes of one id land as the primary ordered them. */
	int rv = drift_wal_wait_next(s->wal, seq, deadline_ns);
	if (rv == DRIFT_EEXIST)
		return drift_err_set(err, DRIFT_EEXIST,
				     "record %llu is already in shard %s",
				     (unsigned long long)seq, s->dir);
	if (rv != 0)
		return drift_err_set(
			err, DRIFT_ESTALE,
			"record %llu: shard %s has records up "
			"to %llu only, the ones between did not "
			"arrive",
			(unsigned long long)seq, s->dir,
			(unsigned long long)drift_wal_last_seq(s->wal));
	float *v = NULL;
	if (type == OP_UPSERT &&
	    (v = drift_mallocarray(dim, sizeof(float))) == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "apply");
	drift_hnsw *act;
	rv = shard_reserve(s, rec.n, &act, err);
	if (rv != 0) {
		drift_free(v);
		return rv;
	}
	rv = drift_wal_append_at(s->wal, seq, type, payload, len, err);
	if (rv != 0) {
		atomic_fetch_sub(&s->reserved, rec.n);
	} else {
		for (uint32_t i = 0; i < rec.n; i++) {
			uint64_t id = shard_record_row(&rec, i, v);
			int r = type == OP_UPSERT
					? drift_hnsw_insert(act, id, v, seq,
							    NULL)
					: drift_hnsw_delete(act, id, seq);
			if (r != 0 && r != DRIFT_ESTALE)
				DRIFT_ERROR("shard %s: applying record %llu "
					    "to the memtable (id %llu): %s",
					    s->dir, (unsigned long long)seq,
					    (unsigned long long)id,
					    drift_strerror(r));
		}
	}
	pthread_rwlock_unlock(&s->wlock);
	drift_free(v);
	return rv;
}

uint64_t drift_shard_last_seq(drift_shard *s)
{
	return drift_wal_last_seq(s->wal);
}

int drift_shard_wait_applied(drift_shard *s, uint64_t seq, uint64_t deadline_ns)
{
	while (drift_wal_last_seq(s->wal) < seq) {
		if (drift_now_ns() >= deadline_ns)
			return DRIFT_ETIMEDOUT;
		drift_clock_sleep(drift_clock_system(), 200000);
	}
	/* An apply holds wlock shared from its log record to its memtable
	 * rows: taking it alone waits for the ones under way. */
	pthread_rwlock_wrlock(&s->wlock);
	pthread_rwlock_unlock(&s->wlock);
	return 0;
}

int drift_shard_read_log(drift_shard *s, uint64_t after, size_t max_bytes,
			 drift_wal_replay_fn fn, void *ctx, drift_err *err)
{
	return drift_wal_read(s->wal, after, max_bytes, fn, ctx, err);
}

void drift_shard_hold_log(drift_shard *s, uint64_t after)
{
	drift_wal_hold(s->wal, after);
}

/* Hard-links src as dst. */
static int link_file(const char *src, const char *dst, drift_err *err)
{
	if (link(src, dst) != 0)
		return drift_err_errno(err, errno, "linking %s to %s", src,
				       dst);
	return 0;
}

int drift_shard_checkpoint(drift_shard *s, const char *out, uint64_t *seq,
			   drift_err *err)
{
	char path[PATH_MAX_ + 16], dst[PATH_MAX_ + 64];
	if (mkdir(out, 0755) != 0 && errno != EEXIST)
		return drift_err_errno(err, errno, "creating %s", out);
	snprintf(dst, sizeof(dst), "%s/seg", out);
	if (mkdir(dst, 0755) != 0 && errno != EEXIST)
		return drift_err_errno(err, errno, "creating %s", dst);
	/* Under l1mu no persist switches the manifest or deletes the
	 * segments it names; the log after it is held from retirement. */
	pthread_mutex_lock(&s->l1mu);
	uint64_t at = s->man.wal_seq;
	drift_wal_hold(s->wal, at);
	int rv = 0;
	if (s->man.generation > 0) {
		snprintf(path, sizeof(path), "%s/MANIFEST", s->dir);
		snprintf(dst, sizeof(dst), "%s/MANIFEST", out);
		rv = link_file(path, dst, err);
	}
	for (uint32_t i = 0; rv == 0 && i < s->man.nsegments; i++) {
		shard_seg_path(s, s->man.segments[i], path);
		snprintf(dst, sizeof(dst), "%s/seg/%020llu.drift", out,
			 (unsigned long long)s->man.segments[i]);
		rv = link_file(path, dst, err);
	}
	pthread_mutex_unlock(&s->l1mu);
	if (rv == 0)
		*seq = at;
	return rv;
}
