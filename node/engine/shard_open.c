/*
 * Opening a shard (hydration: manifest -> segments -> L1 buckets -> WAL
 * replay after the covered position) and closing it; see shard.h.
 */
#include <dirent.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "node/storage/segment.h"
#include "node/engine/shard_internal.h"

struct replay {
	drift_shard *s;
	drift_err *err;
	uint64_t l1_seq;  /* records <= this were applied to L1 in replay */
	uint64_t act_seq; /* the last record in the active memtable */
};

/* A replayed batch that does not fit the memtable sends the memtable to L1
 * (in memory; open persists it at the end). */
static int replay_room(struct replay *r, unsigned n)
{
	drift_shard *s = r->s;
	if (atomic_load(&s->reserved) + n <= s->o.memtable_rows)
		return 0;
	drift_hnsw *act = atomic_load(&s->act);
	int rv = shard_apply_memtable(s, act, r->act_seq, r->err);
	if (rv != 0)
		return rv;
	r->l1_seq = r->act_seq;
	drift_hnsw *fresh;
	if ((rv = shard_new_memtable(s, &fresh, r->err)) != 0)
		return rv;
	drift_hnsw_free(act);
	atomic_store(&s->act, fresh);
	atomic_store(&s->reserved, 0);
	return 0;
}

static int replay_fn(void *ctx, uint64_t seq, uint32_t type,
		     const void *payload, size_t len)
{
	struct replay *r = ctx;
	drift_shard *s = r->s;
	uint32_t dim = s->o.dim;
	shard_record rec;
	if (shard_record_parse(type, payload, len, dim, s->o.memtable_rows,
			       &rec) != 0)
		return drift_err_set(r->err, DRIFT_ECORRUPT,
				     "WAL record %llu (type %u, %zu bytes) is "
				     "not a valid batch for this shard",
				     (unsigned long long)seq, type, len);
	int rv = replay_room(r, rec.n);
	if (rv != 0)
		return rv;
	float *v = NULL;
	if (type == OP_UPSERT &&
	    (v = drift_mallocarray(dim, sizeof(float))) == NULL)
		return DRIFT_ENOMEM;
	drift_hnsw *act = atomic_load(&s->act);
	for (uint32_t i = 0; i < rec.n; i++) {
		uint64_t id = shard_record_row(&rec, i, v);
		rv = type == OP_UPSERT
			     ? drift_hnsw_insert(act, id, v, seq, NULL)
			     : drift_hnsw_delete(act, id, seq);
		if (rv != 0 && rv != DRIFT_ESTALE) {
			drift_free(v);
			return drift_err_set(
				r->err, rv, "replaying record %llu: %s",
				(unsigned long long)seq, drift_strerror(rv));
		}
	}
	drift_free(v);
	atomic_fetch_add(&s->reserved, rec.n);
	r->act_seq = seq;
	return 0;
}

/* The configuration recorded in the manifest: "dim=<d> metric=<m>". */
static void meta_string(uint32_t dim, enum drift_metric metric, char *out,
			size_t cap)
{
	snprintf(out, cap, "dim=%u metric=%d", dim, (int)metric);
}

int drift_shard_prepare(const drift_shard_opts *opts, drift_err *err)
{
	drift_fs *fs = opts->fs != NULL ? opts->fs : drift_fs_posix();
	char waldir[PATH_MAX_], segdir[PATH_MAX_], meta[64];
	if (strlen(opts->dir) >= PATH_MAX_ - 64 ||
	    shard_path_join(waldir, opts->dir, "wal") != 0 ||
	    shard_path_join(segdir, opts->dir, "seg") != 0)
		return drift_err_set(err, DRIFT_EINVAL, "shard: path too long");
	int rv;
	if ((rv = drift_fs_mkdir_p(fs, waldir, err)) != 0 ||
	    (rv = drift_fs_mkdir_p(fs, segdir, err)) != 0)
		return rv;
	drift_manifest man;
	drift_manifest_init(&man);
	rv = drift_manifest_load(fs, opts->dir, &man, err);
	if (rv != DRIFT_ENOENT) {
		drift_manifest_free(&man);
		return rv != 0 ? rv
			       : drift_err_set(err, DRIFT_EEXIST,
					       "shard %s exists", opts->dir);
	}
	drift_manifest_init(&man);
	meta_string(opts->dim, opts->metric, meta, sizeof(meta));
	man.meta_len = strlen(meta);
	man.meta = (uint8_t *)drift_strdup(meta);
	if (man.meta == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "shard");
	/* The manifest's store syncs the shard's directory too: its entries
	 * for wal/ and seg/ are durable with it. */
	rv = drift_manifest_store(fs, opts->dir, &man, err);
	drift_manifest_free(&man);
	return rv;
}

/* Deletes segment files the manifest does not name, and .tmp leftovers. */
static void collect_garbage(drift_shard *s)
{
	DIR *d = opendir(s->segdir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		if (nm[0] == '.')
			continue;
		char *end;
		unsigned long long id = strtoull(nm, &end, 10);
		bool keep = strcmp(end, ".drift") == 0 &&
			    bsearch(&(uint64_t){id}, s->man.segments,
				    s->man.nsegments, 8, shard_cmp_u64) != NULL;
		if (!keep) {
			char path[PATH_MAX_];
			if (shard_path_join(path, s->segdir, nm) == 0) {
				DRIFT_INFO("shard %s: removing unreferenced "
					   "%s",
					   s->dir, nm);
				s->fs->unlink(s->fs, path);
			}
		}
	}
	closedir(d);
}

static int load_l1(drift_shard *s, drift_err *err)
{
	int rv = 0;
	s->space = drift_mallocarray(s->man.nsegments + 1, sizeof(*s->space));
	for (uint32_t i = 0; i < s->man.nsegments && rv == 0; i++) {
		char path[PATH_MAX_];
		shard_seg_path(s, s->man.segments[i], path);
		drift_segment_reader *r;
		rv = drift_segr_open(s->fs, path, &r, err);
		if (rv != 0)
			return drift_err_wrap(err, rv, "shard %s", s->dir);
		uint64_t total = 0;
		for (uint32_t j = 0; j < drift_segr_block_count(r); j++)
			total += drift_segr_block(r, j)->length;
		if (s->space != NULL)
			s->space[i] = (struct seg_space){
				.id = s->man.segments[i], .total = total};
		for (uint32_t j = 0; j < s->man.nbuckets && rv == 0; j++) {
			const drift_manifest_bucket *b = &s->man.buckets[j];
			if (b->segment != s->man.segments[i])
				continue;
			if (b->block >= drift_segr_block_count(r)) {
				rv = drift_err_set(err, DRIFT_ECORRUPT,
						   "%s: the manifest names "
						   "block %u, the file has %u",
						   path, b->block,
						   drift_segr_block_count(r));
				break;
			}
			const drift_block_info *bi =
				drift_segr_block(r, b->block);
			void *buf = drift_malloc(bi->length ? bi->length : 1);
			if (buf == NULL) {
				rv = drift_err_set(err, DRIFT_ENOMEM, "%s",
						   path);
				break;
			}
			rv = drift_segr_read_block(r, b->block, buf, err);
			if (rv == 0)
				rv = drift_l1_load_block(s->l1, b->slot, buf,
							 bi->length, err);
			if (rv == 0 && shard_slot_room(s, b->slot))
				s->slot_len[b->slot] = bi->length;
			drift_free(buf);
			if (rv != 0)
				drift_err_wrap(err, rv, "%s", path);
		}
		drift_segr_close(r);
	}
	if (rv == 0)
		rv = drift_l1_load_finish(s->l1, err);
	if (rv == 0)
		shard_space_rebuild(s, 0, 0);
	return rv;
}

int drift_shard_open(const drift_shard_opts *opts, drift_shard **out,
		     drift_err *err)
{
	if (opts->dim == 0 || opts->dim > 65536)
		return drift_err_set(err, DRIFT_EINVAL,
				     "shard: dimension %u out of range",
				     opts->dim);
	drift_shard *s = drift_calloc(1, sizeof(*s));
	if (s == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "shard");
	s->o = *opts;
	if (s->o.memtable_rows == 0)
		s->o.memtable_rows = 65536;
	if (s->o.memtable_ef_construction == 0)
		s->o.memtable_ef_construction = DRIFT_SHARD_MEMTABLE_EFC;
	if (s->o.maint_per_tick == 0)
		s->o.maint_per_tick = 4;
	if (s->o.janitor_period_ns == 0)
		s->o.janitor_period_ns = 50000000ull;
	s->fs = opts->fs != NULL ? opts->fs : drift_fs_posix();
	pthread_mutex_init(&s->mu, NULL);
	/* The rotation must not starve behind a stream of writers. */
	pthread_rwlockattr_t ra;
	pthread_rwlockattr_init(&ra);
	pthread_rwlockattr_setkind_np(
		&ra, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&s->wlock, &ra);
	pthread_rwlockattr_destroy(&ra);
	pthread_mutex_init(&s->l1mu, NULL);
	drift_manifest_init(&s->man);
	atomic_init(&s->act, NULL);
	atomic_init(&s->imm, NULL);
	int rv;
	if (strlen(opts->dir) >= PATH_MAX_ - 64 ||
	    (size_t)snprintf(s->dir, PATH_MAX_, "%s", opts->dir) >= PATH_MAX_ ||
	    shard_path_join(s->waldir, s->dir, "wal") != 0 ||
	    shard_path_join(s->segdir, s->dir, "seg") != 0) {
		rv = drift_err_set(err, DRIFT_EINVAL, "shard: path too long");
		goto fail;
	}
	s->o.dir = s->dir;
	if ((rv = drift_fs_mkdir_p(s->fs, s->waldir, err)) != 0 ||
	    (rv = drift_fs_mkdir_p(s->fs, s->segdir, err)) != 0)
		goto fail;
	if ((rv = drift_epoch_new(&s->epoch)) != 0) {
		drift_err_set(err, rv, "shard");
		goto fail;
	}
	char meta[64];
	meta_string(s->o.dim, s->o.metric, meta, sizeof(meta));
	rv = drift_manifest_load(s->fs, s->dir, &s->man, err);
	if (rv == DRIFT_ENOENT) {
		drift_manifest_init(&s->man);
		s->man.meta_len = strlen(meta);
		s->man.meta = (uint8_t *)drift_strdup(meta);
		if (s->man.meta == NULL) {
			rv = drift_err_set(err, DRIFT_ENOMEM, "shard");
			goto fail;
		}
		/* The shard's identity is durable before its first write. */
		if ((rv = drift_manifest_store(s->fs, s->dir, &s->man, err)) !=
		    0)
			goto fail;
	} else if (rv != 0) {
		goto fail;
	} else if (s->man.meta_len != strlen(meta) ||
		   memcmp(s->man.meta, meta, s->man.meta_len) != 0) {
		rv = drift_err_set(err, DRIFT_EINVAL,
				   "shard %s holds \"%.*s\", not \"%s\"",
				   s->dir, (int)s->man.meta_len,
				   (const char *)s->man.meta, meta);
		goto fail;
	}
	atomic_store(&s->flushed_seq, s->man.wal_seq);
	/* L1's full vectors go to a scratch file in the shard's directory
	 * (node/storage/vstore.h: rebuilt from the segments by load_l1), behind
	 * a row cache of L1_VEC_CACHE_BYTES. */
	drift_l1_opts lo = {.dim = s->o.dim,
			    .metric = s->o.metric,
			    .bucket_target = s->o.bucket_target,
			    .default_recall = s->o.default_recall,
			    .seed = s->o.seed,
			    .vec_dir = s->dir,
			    .vec_cache_bytes = L1_VEC_CACHE_BYTES};
	if ((rv = drift_l1_new(&lo, &s->l1, err)) != 0 ||
	    (rv = load_l1(s, err)) != 0)
		goto fail;
	drift_l1_set_action_hook(s->l1, shard_on_l1_action, s);
	collect_garbage(s);
	drift_hnsw *act;
	if ((rv = shard_new_memtable(s, &act, err)) != 0)
		goto fail;
	atomic_store(&s->act, act);
	struct replay r = {.s = s,
			   .err = err,
			   .l1_seq = s->man.wal_seq,
			   .act_seq = s->man.wal_seq};
	drift_wal_opts wo = {.fs = s->fs,
			     .dir = s->waldir,
			     .sync = opts->sync,
			     .pool = opts->wal_pool};
	rv = drift_wal_open(&wo, s->man.wal_seq, replay_fn, &r, &s->wal, err);
	if (rv != 0) {
		drift_err_wrap(err, rv, "shard %s", s->dir);
		goto fail;
	}
	/* Batches that replay sent to L1 become durable there now. */
	if (r.l1_seq > s->man.wal_seq || drift_l1_dirty_count(s->l1) > 0) {
		pthread_mutex_lock(&s->l1mu);
		rv = shard_persist(s, r.l1_seq, err);
		pthread_mutex_unlock(&s->l1mu);
		if (rv != 0)
			goto fail;
	}
	s->last_persist_ns = drift_now_ns();
	if (s->o.janitor) {
		s->pool = opts->pool;
		if (s->pool == NULL) {
			if ((rv = drift_janitor_new(1, &s->pool, err)) != 0)
				goto fail;
			s->own_pool = true;
		}
		drift_janitor_task_init(&s->task, shard_janitor_run);
		/* What hydration left to maintain. */
		drift_janitor_post(s->pool, &s->task, DRIFT_JANITOR_MAINT, 0);
	}
	*out = s;
	return 0;
fail:
	drift_shard_close(s);
	return rv;
}

void drift_shard_close(drift_shard *s)
{
	if (s == NULL)
		return;
	if (s->pool != NULL) {
		drift_janitor_detach(s->pool, &s->task);
		if (s->own_pool)
			drift_janitor_free(s->pool);
	}
	drift_wal_close(s->wal);
	if (s->epoch != NULL)
		drift_epoch_barrier(s->epoch);
	drift_hnsw_free(atomic_load(&s->act));
	drift_hnsw_free(atomic_load(&s->imm));
	drift_l1_free(s->l1);
	drift_epoch_free(s->epoch);
	drift_manifest_free(&s->man);
	drift_free(s->slot_len);
	drift_free(s->space);
	pthread_mutex_destroy(&s->mu);
	pthread_rwlock_destroy(&s->wlock);
	pthread_mutex_destroy(&s->l1mu);
	drift_free(s);
}
