/*
 * The shard engine (see shard.h for the contract): writes, reads,
 * rotation, flush and persistence. The WAL records are in shard_record.c,
 * the Janitor's turn in shard_janitor.c, open and close in shard_open.c;
 * the locks and their order in shard_internal.h.
 *
 * Memtable pointers (act, imm) are read under an epoch guard; the rotation
 * stores imm before act and readers load act before imm, so a reader that
 * sees the new active memtable also sees the old one as immutable (or, once
 * it is flushed, its rows in L1: the flush publishes L1 before clearing
 * imm). A flushed memtable is retired to the epoch domain.
 *
 * Crash safety: a write is acknowledged after its WAL record is appended
 * (durable as the policy says). The manifest names only finished segments
 * and a WAL position all of whose records are in them; WAL files are
 * deleted only after that manifest is durable. So after a crash, manifest
 * + segments + WAL tail hold every acknowledged write.
 */
#include "node/engine/shard.h"
#include "node/engine/shard_internal.h"

#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/endian.h"
#include "common/epoch.h"
#include "common/log.h"
#include "node/codec/bloom.h"
#include "node/engine/janitor_metrics.h"
#include "node/l0/hnsw.h"
#include "node/storage/manifest.h"
#include "node/storage/segment.h"

/* ---- Helpers ---- */

/* A segment whose live blocks are under this share of its blocks has them
 * written again into the next segment (then it is named by nothing and
 * deleted): the space of deleted and moved data comes back, and no file
 * is rewritten for less than half of it being garbage. */
#define COMPACT_LIVE_SHARE 0.5

int shard_path_join(char *out, const char *a, const char *b)
{
	return (size_t)snprintf(out, PATH_MAX_, "%s/%s", a, b) >= PATH_MAX_
		       ? DRIFT_ERANGE
		       : 0;
}

void shard_seg_path(const drift_shard *s, uint64_t id, char *out)
{
	/* open keeps the directory short enough for this to fit. */
	if (snprintf(out, PATH_MAX_, "%s/%020llu.drift", s->segdir,
		     (unsigned long long)id) >= PATH_MAX_)
		out[0] = '\0';
}

int shard_new_memtable(drift_shard *s, drift_hnsw **out, drift_err *err)
{
	drift_hnsw_opts ho = {.dim = s->o.dim,
			      .metric = s->o.metric,
			      .capacity = s->o.memtable_rows,
			      .ef_construction = s->o.memtable_ef_construction,
			      .max_tombstones = s->o.memtable_rows,
			      .seed = s->o.seed ^ ++s->mem_seed};
	return drift_hnsw_new(&ho, out, err);
}

static void free_memtable(void *h)
{
	drift_hnsw_free(h);
}

static bool finite_row(const float *v, uint32_t dim, bool cosine)
{
	double norm = 0;
	for (uint32_t j = 0; j < dim; j++) {
		if (!isfinite(v[j]))
			return false;
		norm += (double)v[j] * v[j];
	}
	return !cosine || norm > 0;
}

/* ---- Persistence (l1mu held) ---- */

/* Footer section kind of the ids' bloom filter (node/codec/bloom.h). */
#define SECTION_BLOOM 1
#define BLOOM_FP 0.01

struct persist_ctx {
	drift_segment_writer *w;
	uint64_t *ids; /* every id written, for the bloom filter */
	size_t nids, capids;
	drift_manifest_bucket *changed; /* slot -> new place; segment 0:
					 * the slot is now empty */
	uint64_t *lens;			/* the block bytes of each change */
	size_t n, cap;
	uint64_t segid;
	uint32_t blocks;
	drift_err *err;
};

static int persist_sink(void *arg, uint32_t slot, const void *block, size_t len,
			const uint64_t *ids, size_t nids)
{
	struct persist_ctx *p = arg;
	if (p->nids + nids > p->capids) {
		size_t cap = p->capids ? 2 * p->capids : 1024;
		while (cap < p->nids + nids)
			cap *= 2;
		uint64_t *n = drift_realloc(p->ids, cap * 8);
		if (n == NULL)
			return drift_err_set(p->err, DRIFT_ENOMEM, "flush");
		p->ids = n;
		p->capids = cap;
	}
	if (nids > 0)
		memcpy(p->ids + p->nids, ids, nids * 8);
	p->nids += nids;
	if (p->n == p->cap) {
		size_t cap = p->cap ? 2 * p->cap : 64;
		drift_manifest_bucket *c =
			drift_realloc(p->changed, cap * sizeof(*c));
		if (c != NULL)
			p->changed = c;
		uint64_t *l = c ? drift_realloc(p->lens, cap * 8) : NULL;
		if (l != NULL)
			p->lens = l;
		if (c == NULL || l == NULL)
			return drift_err_set(p->err, DRIFT_ENOMEM, "flush");
		p->cap = cap;
	}
	drift_manifest_bucket b = {.slot = slot};
	if (block != NULL) {
		drift_block_desc d = {.kind = DRIFT_BLOCK_BUCKET, .key = slot};
		int rv = drift_segw_add_block(p->w, &d, block, len, &b.block,
					      p->err);
		if (rv != 0)
			return rv;
		b.segment = p->segid;
		p->blocks++;
	}
	p->lens[p->n] = block != NULL ? len : 0;
	p->changed[p->n++] = b;
	return 0;
}

/* The footer's bloom filter of every id in the segment: "id not here"
 * costs no block read. */
static int add_bloom(struct persist_ctx *p, drift_err *err)
{
	drift_bloom bl;
	int rv = drift_bloom_new(&bl, p->nids ? p->nids : 1, BLOOM_FP);
	if (rv != 0)
		return drift_err_set(err, rv, "flush: bloom filter");
	for (size_t i = 0; i < p->nids; i++)
		drift_bloom_add(&bl, p->ids[i]);
	size_t len = drift_bloom_size(&bl);
	uint8_t *buf = drift_malloc(len);
	if (buf == NULL) {
		drift_bloom_free(&bl);
		return drift_err_set(err, DRIFT_ENOMEM, "flush: bloom filter");
	}
	drift_bloom_write(&bl, buf);
	drift_bloom_free(&bl);
	rv = drift_segw_add_section(p->w, SECTION_BLOOM, buf, len, err);
	drift_free(buf);
	return rv;
}

int shard_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static int cmp_bucket_slot(const void *a, const void *b)
{
	uint32_t x = ((const drift_manifest_bucket *)a)->slot;
	uint32_t y = ((const drift_manifest_bucket *)b)->slot;
	return x < y ? -1 : x > y;
}

/* Writes L1's dirty buckets into a new segment and switches the manifest
 * to it with wal_seq; deletes the segments no longer named. */
bool shard_slot_room(drift_shard *s, uint32_t slot)
{
	if (slot < s->slot_cap)
		return true;
	uint32_t cap = s->slot_cap ? s->slot_cap : 64;
	while (cap <= slot)
		cap *= 2;
	uint64_t *l = drift_realloc(s->slot_len, (size_t)cap * 8);
	if (l == NULL)
		return false;
	memset(l + s->slot_cap, 0, (size_t)(cap - s->slot_cap) * 8);
	s->slot_len = l;
	s->slot_cap = cap;
	return true;
}

/* s->space for the manifest s->man from s->slot_len; a segment not known
 * before gets new_total (the one just written). Bookkeeping only: without
 * memory for it, no segment is compacted. */
void shard_space_rebuild(drift_shard *s, uint64_t new_id, uint64_t new_total)
{
	struct seg_space *sp =
		drift_mallocarray(s->man.nsegments + 1, sizeof(*sp));
	if (sp != NULL)
		for (uint32_t i = 0; i < s->man.nsegments; i++) {
			uint64_t id = s->man.segments[i], total = new_total;
			for (uint32_t j = 0; s->space && j < s->man.nsegments;
			     j++)
				if (s->space[j].id == id && id != new_id)
					total = s->space[j].total;
			sp[i] = (struct seg_space){.id = id, .total = total};
		}
	for (uint32_t j = 0; sp != NULL && j < s->man.nbuckets; j++) {
		const drift_manifest_bucket *b = &s->man.buckets[j];
		for (uint32_t i = 0; i < s->man.nsegments; i++)
			if (sp[i].id == b->segment && b->slot < s->slot_cap)
				sp[i].live += s->slot_len[b->slot];
	}
	drift_free(s->space);
	s->space = sp;
}

/* Marks the buckets of every segment that is mostly garbage dirty (the
 * next persist moves them into its new segment); returns how many such
 * segments there are. Under l1mu. */
uint32_t shard_compact_segments(drift_shard *s)
{
	uint32_t n = 0;
	for (uint32_t i = 0; s->space != NULL && i < s->man.nsegments; i++) {
		const struct seg_space *sp = &s->space[i];
		if (sp->total == 0 ||
		    (double)sp->live >= COMPACT_LIVE_SHARE * (double)sp->total)
			continue;
		n++;
		for (uint32_t j = 0; j < s->man.nbuckets; j++)
			if (s->man.buckets[j].segment == sp->id)
				drift_l1_mark_dirty(s->l1,
						    s->man.buckets[j].slot);
	}
	return n;
}

int shard_persist(drift_shard *s, uint64_t wal_seq, drift_err *err)
{
	if (drift_l1_dirty_count(s->l1) == 0 && wal_seq == s->man.wal_seq)
		return 0;
	struct persist_ctx p = {.segid = s->man.next_segment_id, .err = err};
	char path[PATH_MAX_];
	shard_seg_path(s, p.segid, path);
	int rv = 0;
	bool wrote_segment = false;
	if (drift_l1_dirty_count(s->l1) > 0) {
		rv = drift_segw_create(s->fs, path, p.segid, &p.w, err);
		if (rv != 0)
			return rv;
		rv = drift_l1_encode_dirty(s->l1, persist_sink, &p, err);
		if (rv == 0 && p.blocks > 0)
			rv = add_bloom(&p, err);
		drift_free(p.ids);
		if (rv != 0) {
			drift_segw_abort(p.w);
			drift_free(p.changed);
			drift_free(p.lens);
			return rv;
		}
		if (p.blocks > 0) {
			rv = drift_segw_finish(p.w, err);
			if (rv != 0) {
				drift_free(p.changed);
				drift_free(p.lens);
				return rv;
			}
			wrote_segment = true;
		} else {
			drift_segw_abort(p.w);
		}
	}
	/* The new bucket table: the old one with the changed slots replaced
	 * (or dropped), then sorted by slot. */
	drift_manifest nm;
	drift_manifest_init(&nm);
	nm.generation = s->man.generation + 1;
	nm.wal_seq = wal_seq;
	nm.next_segment_id = p.segid + 1;
	size_t cap = s->man.nbuckets + p.n;
	nm.buckets = drift_mallocarray(cap ? cap : 1, sizeof(*nm.buckets));
	nm.segments = drift_mallocarray(s->man.nsegments + 1, 8);
	if (nm.buckets == NULL || nm.segments == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "flush: manifest");
		goto fail;
	}
	qsort(p.changed, p.n, sizeof(*p.changed), cmp_bucket_slot);
	for (uint32_t i = 0; i < s->man.nbuckets; i++) {
		drift_manifest_bucket key = {.slot = s->man.buckets[i].slot};
		if (p.n > 0 && bsearch(&key, p.changed, p.n, sizeof(key),
				       cmp_bucket_slot) != NULL)
			continue;
		nm.buckets[nm.nbuckets++] = s->man.buckets[i];
	}
	for (size_t i = 0; i < p.n; i++)
		if (p.changed[i].segment != 0)
			nm.buckets[nm.nbuckets++] = p.changed[i];
	qsort(nm.buckets, nm.nbuckets, sizeof(*nm.buckets), cmp_bucket_slot);
	/* Live segments: those some bucket still names. */
	for (uint32_t i = 0; i < s->man.nsegments; i++) {
		uint64_t id = s->man.segments[i];
		for (uint32_t j = 0; j < nm.nbuckets; j++)
			if (nm.buckets[j].segment == id) {
				nm.segments[nm.nsegments++] = id;
				break;
			}
	}
	if (wrote_segment)
		nm.segments[nm.nsegments++] = p.segid;
	qsort(nm.segments, nm.nsegments, 8, shard_cmp_u64);
	nm.meta_len = s->man.meta_len;
	nm.meta = drift_malloc(nm.meta_len ? nm.meta_len : 1);
	if (nm.meta == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "flush: manifest");
		goto fail;
	}
	memcpy(nm.meta, s->man.meta, nm.meta_len);
	rv = drift_manifest_store(s->fs, s->dir, &nm, err);
	if (rv != 0)
		goto fail;
	/* Durable: the dirty set is written, old segments may go. */
	drift_l1_clear_dirty(s->l1);
	for (uint32_t i = 0; i < s->man.nsegments; i++) {
		uint64_t id = s->man.segments[i];
		if (bsearch(&id, nm.segments, nm.nsegments, 8, shard_cmp_u64) ==
		    NULL) {
			char old[PATH_MAX_];
			shard_seg_path(s, id, old);
			s->fs->unlink(s->fs, old);
		}
	}
	drift_manifest_free(&s->man);
	s->man = nm;
	uint64_t written = 0;
	for (size_t i = 0; i < p.n; i++)
		if (shard_slot_room(s, p.changed[i].slot)) {
			s->slot_len[p.changed[i].slot] = p.lens[i];
			written += p.lens[i];
		}
	shard_space_rebuild(s, wrote_segment ? p.segid : 0, written);
	drift_free(p.changed);
	drift_free(p.lens);
	atomic_store(&s->flushed_seq, wal_seq);
	s->last_persist_ns = drift_now_ns();
	return 0;
fail:
	drift_manifest_free(&nm);
	drift_free(p.changed);
	drift_free(p.lens);
	if (wrote_segment)
		s->fs->unlink(s->fs, path);
	return rv;
}

/* Applies the newest entries of memtable h to L1 (l1mu held). */
int shard_apply_memtable(drift_shard *s, drift_hnsw *h, uint64_t version,
			 drift_err *err)
{
	/* Count with the iterator itself (the flush must not depend on the
	 * memtable's counters), then fill. */
	size_t nl = 0, nt = 0;
	drift_hnsw_iter it;
	drift_hnsw_entry e;
	drift_hnsw_iter_init(&it, h);
	while (drift_hnsw_iter_next(&it, &e)) {
		if (e.kind == DRIFT_HNSW_LIVE)
			nl++;
		else
			nt++;
	}
	drift_hnsw_stats st;
	drift_hnsw_stats_get(h, &st);
	if (st.live != nl || st.tombstones != nt)
		DRIFT_WARN("shard %s: memtable counters say %u live, %u "
			   "tombstones; its entries are %zu and %zu",
			   s->dir, st.live, st.tombstones, nl, nt);
	uint32_t dim = s->o.dim;
	uint64_t *ids = drift_mallocarray(nl ? nl : 1, 8);
	float *vecs = drift_mallocarray(nl ? nl * dim : 1, sizeof(float));
	uint64_t *dels = drift_mallocarray(nt ? nt : 1, 8);
	int rv = DRIFT_ENOMEM;
	if (ids == NULL || vecs == NULL || dels == NULL) {
		drift_err_set(err, rv, "flush: out of memory");
		goto out;
	}
	size_t nu = 0, nd = 0;
	drift_hnsw_iter_init(&it, h);
	while (drift_hnsw_iter_next(&it, &e)) {
		if (e.kind == DRIFT_HNSW_LIVE && nu < nl) {
			ids[nu] = e.id;
			memcpy(vecs + nu * dim, e.vec, dim * sizeof(float));
			nu++;
		} else if (e.kind == DRIFT_HNSW_TOMBSTONE && nd < nt) {
			dels[nd++] = e.id;
		}
	}
	drift_l1_stats ls;
	drift_l1_stats_get(s->l1, &ls);
	if (ls.vectors == 0 && nu > 0)
		/* The first flush builds the buckets by k-means; deletes of
		 * ids L1 never had are nothing to do. */
		rv = drift_l1_build(s->l1, ids, vecs, nu, version, err);
	else if (nu > 0 || nd > 0)
		rv = drift_l1_apply(s->l1, ids, vecs, nu, dels, nd, version,
				    NULL, err);
	else
		rv = 0;
out:
	drift_free(ids);
	drift_free(vecs);
	drift_free(dels);
	return rv;
}

/* Flushes the immutable memtable, if any, into durable L1. */
int shard_flush_imm(drift_shard *s, drift_err *err)
{
	pthread_mutex_lock(&s->l1mu);
	uint64_t t0 = drift_now_ns();
	drift_hnsw *imm = atomic_load(&s->imm);
	int rv = 0;
	if (imm == NULL)
		goto out;
	/* Read once: a rotation may start a new imm as soon as this one is
	 * cleared below. */
	uint64_t last = atomic_load(&s->imm_last_seq);
	if (!s->imm_applied) {
		rv = shard_apply_memtable(s, imm, last, err);
		if (rv != 0)
			goto out;
		s->imm_applied = true;
	}
	rv = shard_persist(s, last, err);
	if (rv != 0)
		goto out;
	atomic_store(&s->imm, NULL);
	s->imm_applied = false;
	drift_epoch_retire(s->epoch, imm, free_memtable);
	drift_epoch_reclaim(s->epoch);
	drift_err werr;
	if (drift_wal_retire(s->wal, last, &werr) != 0)
		DRIFT_WARN("shard %s: retiring WAL files: %s", s->dir,
			   werr.msg);
	atomic_fetch_add(&s->flushes, 1);
	drift_janitor_metrics_observe(DRIFT_JANITOR_ACT_FLUSH,
				      drift_now_ns() - t0);
	atomic_store(&s->trim_due, true);
out:
	pthread_mutex_unlock(&s->l1mu);
	/* What the flush changed in L1 may want maintenance. */
	if (rv == 0 && s->pool != NULL)
		drift_janitor_post(s->pool, &s->task, DRIFT_JANITOR_MAINT, 0);
	return rv;
}

/* Swaps in an empty memtable and a new WAL file. force: even when the
 * active memtable has room (an explicit flush); otherwise only when full.
 * need: the room a waiting writer wants. The previous immutable memtable
 * is flushed first if still there. */
static int rotate(drift_shard *s, unsigned need, bool force, drift_err *err)
{
	for (;;) {
		if (atomic_load(&s->imm) == NULL)
			break;
		int rv = shard_flush_imm(s, err);
		if (rv != 0)
			return rv;
	}
	pthread_mutex_lock(&s->mu);
	pthread_rwlock_wrlock(&s->wlock);
	int rv = 0;
	drift_hnsw *act = atomic_load(&s->act);
	unsigned used = atomic_load(&s->reserved);
	bool needed = force ? drift_hnsw_count(act) > 0 || used > 0
			    : used + need > s->o.memtable_rows;
	if (!needed || atomic_load(&s->imm) != NULL)
		goto out;
	drift_hnsw *fresh;
	rv = shard_new_memtable(s, &fresh, err);
	if (rv != 0)
		goto out;
	uint64_t first;
	rv = drift_wal_rotate(s->wal, &first, err);
	if (rv != 0) {
		drift_hnsw_free(fresh);
		goto out;
	}
	/* No l1mu here: the rotation must not wait for the Janitor's
	 * maintenance (writers would stall behind it). */
	atomic_store(&s->imm_last_seq, first - 1);
	atomic_store(&s->imm, act);
	atomic_store(&s->act, fresh);
	atomic_store(&s->reserved, 0);
	if (s->pool != NULL)
		drift_janitor_post(s->pool, &s->task, DRIFT_JANITOR_FLUSH, 0);
out:
	pthread_rwlock_unlock(&s->wlock);
	pthread_mutex_unlock(&s->mu);
	return rv;
}

/* Holds wlock (shared) with n units reserved in the active memtable, or
 * fails. */
int shard_reserve(drift_shard *s, unsigned n, drift_hnsw **act, drift_err *err)
{
	for (;;) {
		pthread_rwlock_rdlock(&s->wlock);
		unsigned before = atomic_fetch_add(&s->reserved, n);
		if (before + n <= s->o.memtable_rows) {
			*act = atomic_load(&s->act);
			return 0;
		}
		atomic_fetch_sub(&s->reserved, n);
		pthread_rwlock_unlock(&s->wlock);
		/* Full: rotate (the previous memtable is flushed first if
		 * it is still there: back-pressure), and flush now when no
		 * Janitor will. */
		int rv = rotate(s, n, false, err);
		if (rv != 0)
			return rv;
		if (!s->o.janitor && (rv = shard_flush_imm(s, err)) != 0)
			return rv;
	}
}

uint32_t drift_shard_max_batch(const drift_shard *s)
{
	return s->o.memtable_rows;
}

/* ---- Writes ---- */

int drift_shard_upsert(drift_shard *s, const uint64_t *ids, const float *vecs,
		       size_t n, drift_err *err)
{
	return drift_shard_upsert_rec(s, ids, vecs, n, NULL, err);
}

/* Hands the encoded record to the caller (out) or frees it. */
static void keep_record(uint8_t *rec, size_t len, uint32_t type, uint64_t seq,
			drift_shard_record *out)
{
	if (out == NULL) {
		drift_free(rec);
		return;
	}
	out->seq = seq;
	out->type = type;
	out->payload = rec;
	out->len = len;
}

void drift_shard_record_free(drift_shard_record *r)
{
	if (r == NULL)
		return;
	drift_free(r->payload);
	memset(r, 0, sizeof(*r));
}

int drift_shard_upsert_rec(drift_shard *s, const uint64_t *ids,
			   const float *vecs, size_t n, drift_shard_record *out,
			   drift_err *err)
{
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	uint32_t dim = s->o.dim;
	if (n == 0)
		return 0;
	if (n > s->o.memtable_rows)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "batch of %zu vectors is over the limit "
				     "of %u",
				     n, s->o.memtable_rows);
	bool cosine = s->o.metric == DRIFT_METRIC_COSINE;
	for (size_t i = 0; i < n; i++)
		if (!finite_row(vecs + i * dim, dim, cosine))
			return drift_err_set(
				err, DRIFT_EINVAL, "vector %zu (id %llu) %s", i,
				(unsigned long long)ids[i],
				cosine ? "is zero or has a NaN or infinite "
					 "component"
				       : "has a NaN or infinite component");
	uint8_t *rec;
	size_t len;
	if (shard_record_upsert(ids, vecs, n, dim, &rec, &len) != 0)
		return drift_err_set(err, DRIFT_ENOMEM, "upsert");
	drift_hnsw *act;
	int rv = shard_reserve(s, (unsigned)n, &act, err);
	if (rv != 0) {
		drift_free(rec);
		return rv;
	}
	uint64_t seq;
	rv = drift_wal_append(s->wal, OP_UPSERT, rec, len, &seq, err);
	keep_record(rec, len, OP_UPSERT, rv == 0 ? seq : 0,
		    rv == 0 ? out : NULL);
	if (rv != 0) /* not written: the room goes back (a full disk) */
		atomic_fetch_sub(&s->reserved, (unsigned)n);
	if (rv == 0) {
		for (size_t i = 0; i < n; i++) {
			int r = drift_hnsw_insert(act, ids[i], vecs + i * dim,
						  seq, NULL);
			if (r != 0 && r != DRIFT_ESTALE)
				/* Durable in the WAL, so a restart has it;
				 * this process cannot show it. */
				DRIFT_ERROR("shard %s: memtable insert of "
					    "id %llu failed: %s",
					    s->dir, (unsigned long long)ids[i],
					    drift_strerror(r));
		}
	}
	pthread_rwlock_unlock(&s->wlock);
	return rv;
}

int drift_shard_delete(drift_shard *s, const uint64_t *ids, size_t n,
		       size_t *deleted, drift_err *err)
{
	return drift_shard_delete_rec(s, ids, n, deleted, NULL, err);
}

int drift_shard_delete_rec(drift_shard *s, const uint64_t *ids, size_t n,
			   size_t *deleted, drift_shard_record *out,
			   drift_err *err)
{
	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (n > s->o.memtable_rows)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "batch of %zu ids is over the limit of %u",
				     n, s->o.memtable_rows);
	size_t existed = 0;
	float *tmp = drift_mallocarray(s->o.dim, sizeof(float));
	if (tmp == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "delete");
	for (size_t i = 0; i < n; i++)
		existed += drift_shard_get(s, ids[i], tmp) == 0;
	drift_free(tmp);
	if (n == 0) {
		if (deleted)
			*deleted = 0;
		return 0;
	}
	uint8_t *rec;
	size_t len;
	if (shard_record_delete(ids, n, &rec, &len) != 0)
		return drift_err_set(err, DRIFT_ENOMEM, "delete");
	drift_hnsw *act;
	int rv = shard_reserve(s, (unsigned)n, &act, err);
	if (rv != 0) {
		drift_free(rec);
		return rv;
	}
	uint64_t seq;
	rv = drift_wal_append(s->wal, OP_DELETE, rec, len, &seq, err);
	keep_record(rec, len, OP_DELETE, rv == 0 ? seq : 0,
		    rv == 0 ? out : NULL);
	if (rv != 0)
		atomic_fetch_sub(&s->reserved, (unsigned)n);
	if (rv == 0)
		for (size_t i = 0; i < n; i++) {
			int r = drift_hnsw_delete(act, ids[i], seq);
			if (r != 0 && r != DRIFT_ESTALE)
				DRIFT_ERROR("shard %s: tombstone of id %llu "
					    "failed: %s",
					    s->dir, (unsigned long long)ids[i],
					    drift_strerror(r));
		}
	pthread_rwlock_unlock(&s->wlock);
	if (rv == 0 && deleted != NULL)
		*deleted = existed;
	return rv;
}

/* ---- Reads ---- */

int drift_shard_get(drift_shard *s, uint64_t id, float *out)
{
	drift_epoch_guard g;
	drift_epoch_enter(s->epoch, &g);
	drift_hnsw *mts[2] = {atomic_load(&s->act), atomic_load(&s->imm)};
	int rv = DRIFT_ENOENT;
	bool decided = false;
	for (int i = 0; i < 2 && !decided; i++) {
		drift_hnsw_entry e;
		if (mts[i] == NULL || drift_hnsw_lookup(mts[i], id, &e) != 0)
			continue;
		decided = true;
		if (e.kind == DRIFT_HNSW_LIVE) {
			memcpy(out, e.vec, s->o.dim * sizeof(float));
			rv = 0;
		}
	}
	if (!decided)
		rv = drift_l1_get(s->l1, id, out, NULL);
	drift_epoch_exit(s->epoch, &g);
	return rv;
}

/* Whether a memtable newer than `from` (index in mts) has an entry of id:
 * then the hit from `from` is superseded or deleted. */
static bool shadowed(drift_hnsw *const *mts, int from, uint64_t id)
{
	for (int i = 0; i < from; i++) {
		drift_hnsw_entry e;
		if (mts[i] != NULL && drift_hnsw_lookup(mts[i], id, &e) == 0)
			return true;
	}
	return false;
}

static int cmp_hit(const void *a, const void *b)
{
	drift_hit x = *(const drift_hit *)a, y = *(const drift_hit *)b;
	return drift_hit_less(x, y) ? -1 : drift_hit_less(y, x) ? 1 : 0;
}

int drift_shard_search(drift_shard *s, const float *q,
		       const drift_shard_search_opts *so, drift_hit *out,
		       size_t *n_out)
{
	uint32_t k = so->k;
	if (k == 0)
		return DRIFT_EINVAL;
	if (!finite_row(q, s->o.dim, s->o.metric == DRIFT_METRIC_COSINE))
		return DRIFT_EINVAL;
	uint32_t ef = so->ef ? so->ef : (2 * k > 64 ? 2 * k : 64);
	drift_epoch_guard g;
	drift_epoch_enter(s->epoch, &g);
	/* act before imm: see the top of this file. */
	drift_hnsw *mts[2];
	mts[0] = atomic_load(&s->act);
	mts[1] = atomic_load(&s->imm);
	if (mts[1] == mts[0])
		mts[1] = NULL;
	size_t cap = 3 * (size_t)k;
	drift_hit *all = drift_mallocarray(cap, sizeof(drift_hit));
	drift_hit *part = drift_mallocarray(k, sizeof(drift_hit));
	int rv = DRIFT_ENOMEM;
	size_t na = 0;
	if (all == NULL || part == NULL)
		goto out;
	for (int i = 0; i < 2; i++) {
		if (mts[i] == NULL)
			continue;
		size_t np = 0;
		rv = drift_hnsw_search(mts[i], q, k, ef, part, &np);
		if (rv != 0)
			goto out;
		for (size_t j = 0; j < np; j++)
			if (!shadowed(mts, i, part[j].id))
				all[na++] = part[j];
	}
	/* L1, asking for more when memtables shadow some of its hits. */
	drift_l1_search_opts lo = {.k = k,
				   .nprobe = so->nprobe,
				   .recall_target = so->recall_target};
	if (lo.nprobe > 0)
		lo.recall_target = 0;
	for (uint32_t want = k;; want *= 2) {
		drift_hit *l1h = drift_mallocarray(want, sizeof(drift_hit));
		if (l1h == NULL) {
			rv = DRIFT_ENOMEM;
			goto out;
		}
		lo.k = want;
		size_t nl = 0;
		rv = drift_l1_search(s->l1, q, &lo, l1h, &nl, NULL);
		if (rv != 0) {
			drift_free(l1h);
			goto out;
		}
		size_t kept = 0, base = na;
		for (size_t j = 0; j < nl && kept < k; j++) {
			if (shadowed(mts, 2, l1h[j].id))
				continue;
			all[base + kept++] = l1h[j];
		}
		drift_free(l1h);
		if (kept == k || nl < want || want >= (1u << 16)) {
			na = base + kept;
			break;
		}
	}
	/* Best first; an id once (a memtable being flushed and L1 may both
	 * hold it for a moment, with the same vector). */
	qsort(all, na, sizeof(drift_hit), cmp_hit);
	size_t n = 0;
	for (size_t i = 0; i < na && n < k; i++) {
		bool dup = false;
		for (size_t j = 0; j < n && !dup; j++)
			dup = out[j].id == all[i].id;
		if (!dup)
			out[n++] = all[i];
	}
	*n_out = n;
	rv = 0;
out:
	drift_epoch_exit(s->epoch, &g);
	drift_free(all);
	drift_free(part);
	return rv;
}

/* ---- Flush, stats ---- */

int drift_shard_flush(drift_shard *s, drift_err *err)
{
	int rv = rotate(s, 0, true, err);
	if (rv == 0)
		rv = shard_flush_imm(s, err);
	if (rv == 0) {
		pthread_mutex_lock(&s->l1mu);
		rv = shard_persist(s, s->man.wal_seq, err);
		pthread_mutex_unlock(&s->l1mu);
	}
	return rv;
}

void drift_shard_stats_get(drift_shard *s, drift_shard_stats *st)
{
	memset(st, 0, sizeof(*st));
	drift_epoch_guard g;
	drift_epoch_enter(s->epoch, &g);
	drift_hnsw *mts[2] = {atomic_load(&s->act), atomic_load(&s->imm)};
	drift_l1_stats ls;
	drift_l1_stats_get(s->l1, &ls);
	st->l1_vectors = ls.vectors;
	st->l1_buckets = ls.buckets;
	int64_t live = (int64_t)ls.vectors;
	float *tmp = drift_mallocarray(s->o.dim, sizeof(float));
	for (int i = 0; i < 2; i++) {
		if (mts[i] == NULL || (i == 1 && mts[1] == mts[0]))
			continue;
		drift_hnsw_stats hs;
		drift_hnsw_stats_get(mts[i], &hs);
		st->l0_rows += hs.rows;
		st->l0_bytes += hs.bytes;
		st->l0_tombstones += hs.tombstones;
		drift_hnsw_iter it;
		drift_hnsw_entry e;
		drift_hnsw_iter_init(&it, mts[i]);
		while (tmp != NULL && drift_hnsw_iter_next(&it, &e)) {
			if (shadowed(mts, i, e.id))
				continue;
			bool in_l1 = drift_l1_get(s->l1, e.id, tmp, NULL) == 0;
			live += (e.kind == DRIFT_HNSW_LIVE) - (int64_t)in_l1;
		}
	}
	drift_free(tmp);
	drift_epoch_exit(s->epoch, &g);
	st->live = live > 0 ? (uint64_t)live : 0;
	pthread_mutex_lock(&s->l1mu);
	st->segments = s->man.nsegments;
	pthread_mutex_unlock(&s->l1mu);
	st->wal_bytes = drift_wal_bytes(s->wal);
	st->wal_seq = drift_wal_last_seq(s->wal);
	st->flushed_seq = atomic_load(&s->flushed_seq);
	st->flushes = atomic_load(&s->flushes);
	st->splits = atomic_load(&s->splits);
	st->merges = atomic_load(&s->merges);
	st->recenters = atomic_load(&s->recenters);
	st->compactions = atomic_load(&s->compactions);
	st->memory_bytes = drift_shard_memory(s);
}

uint64_t drift_shard_memory(drift_shard *s)
{
	drift_epoch_guard g;
	drift_epoch_enter(s->epoch, &g);
	drift_hnsw *act = atomic_load(&s->act), *imm = atomic_load(&s->imm);
	bool applied = atomic_load(&s->imm_applied);
	drift_hnsw_stats hs;
	drift_hnsw_stats_get(act, &hs);
	uint64_t arenas = 2 * hs.bytes, rows = hs.rows;
	if (imm != NULL && imm != act && !applied) {
		drift_hnsw_stats_get(imm, &hs);
		rows += hs.rows;
	}
	drift_epoch_exit(s->epoch, &g);
	uint64_t vectors;
	uint32_t buckets;
	drift_l1_size(s->l1, &vectors, &buckets);
	return arenas + (vectors + rows) * drift_shard_vec_bytes(s->o.dim);
}
