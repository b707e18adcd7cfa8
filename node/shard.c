/*
 * The shard engine (see shard.h for the contract).
 *
 * WAL records (node/wal.h payloads), little endian:
 *   OP_UPSERT (1): u32 n, u32 dim, then n x (u64 id, dim x f32)
 *   OP_DELETE (2): u32 n, then n x u64 id
 * Every row of a record carries the record's sequence number; later rows of
 * one record win over earlier ones for the same id.
 *
 * Locks, in the order they may be taken:
 *   s->mu     rotation state
 *   s->wlock  writers share it around "WAL append + memtable insert";
 *             the rotation takes it alone to swap memtables and WAL files,
 *             so no write is ever split across a rotation
 *   s->l1mu   the single writer of L1: flush, maintenance, persistence;
 *             never taken with s->mu or s->wlock held (the rotation does
 *             not wait for maintenance), and it releases before taking
 *             s->mu
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
#include "node/shard.h"

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
#include "node/hnsw.h"
#include "node/manifest.h"
#include "node/segment.h"

#define OP_UPSERT 1
#define OP_DELETE 2
#define PATH_MAX_ 4096
/* Row cache of L1's full vectors (re-ranking reads; node/vstore.h). */
#define L1_VEC_CACHE_BYTES ((size_t)64 << 20)

struct drift_shard {
	drift_shard_opts o;
	drift_fs *fs;
	char dir[PATH_MAX_], waldir[PATH_MAX_], segdir[PATH_MAX_];
	drift_wal *wal;
	drift_l1 *l1;
	drift_epoch *epoch;
	_Atomic(drift_hnsw *) act;
	_Atomic(drift_hnsw *) imm;
	atomic_uint reserved; /* rows (and tombstones) promised in act */
	uint64_t mem_seed;

	pthread_mutex_t mu;
	pthread_rwlock_t wlock;
	pthread_mutex_t l1mu;

	/* The last WAL record in imm: stored by the rotation before imm (so a
	 * flush that loads imm sees it), constant while imm is set. */
	_Atomic uint64_t imm_last_seq;
	/* Under l1mu. */
	atomic_bool imm_applied; /* imm's entries are in L1 (not yet durable;
				  * read by drift_shard_memory) */
	drift_manifest man;	 /* the durable manifest */
	uint64_t last_persist_ns;
	/* Space: the bytes of each slot's block, and of each live segment's
	 * blocks (all it was written with, and those still named). Under
	 * l1mu. */
	uint64_t *slot_len;
	uint32_t slot_cap;
	struct seg_space *space; /* man.nsegments of them, same order */
	/* The Janitor's failed flushes (a full disk): retried with a backoff
	 * and logged at most every FLUSH_WARN_NS. Janitor thread only. */
	uint64_t flush_retry_ns, flush_warn_ns;
	unsigned flush_fails;

	/* The Janitor: a task of pool (janitor.h); own_pool when the shard
	 * made the pool itself. */
	drift_janitor *pool;
	bool own_pool;
	drift_janitor_task task;
	atomic_bool trim_due; /* memory was freed since the last idle turn */

	atomic_ullong flushes, splits, merges, recenters, flushed_seq;
};

/* ---- Helpers ---- */

struct seg_space {
	uint64_t id, total, live;
};

/* A segment whose live blocks are under this share of its blocks has them
 * written again into the next segment (then it is named by nothing and
 * deleted): the space of deleted and moved data comes back, and no file
 * is rewritten for less than half of it being garbage. */
#define COMPACT_LIVE_SHARE 0.5

static int path_join(char *out, const char *a, const char *b)
{
	return (size_t)snprintf(out, PATH_MAX_, "%s/%s", a, b) >= PATH_MAX_
		       ? DRIFT_ERANGE
		       : 0;
}

static void seg_path(const drift_shard *s, uint64_t id, char *out)
{
	/* open keeps the directory short enough for this to fit. */
	if (snprintf(out, PATH_MAX_, "%s/%020llu.drift", s->segdir,
		     (unsigned long long)id) >= PATH_MAX_)
		out[0] = '\0';
}

static int new_memtable(drift_shard *s, drift_hnsw **out, drift_err *err)
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

static int cmp_u64(const void *a, const void *b)
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
static bool slot_room(drift_shard *s, uint32_t slot)
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
static void space_rebuild(drift_shard *s, uint64_t new_id, uint64_t new_total)
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
 * next persist moves them into its new segment). Under l1mu. */
static void compact_segments(drift_shard *s)
{
	for (uint32_t i = 0; s->space != NULL && i < s->man.nsegments; i++) {
		const struct seg_space *sp = &s->space[i];
		if (sp->total == 0 ||
		    (double)sp->live >= COMPACT_LIVE_SHARE * (double)sp->total)
			continue;
		for (uint32_t j = 0; j < s->man.nbuckets; j++)
			if (s->man.buckets[j].segment == sp->id)
				drift_l1_mark_dirty(s->l1,
						    s->man.buckets[j].slot);
	}
}

static int persist(drift_shard *s, uint64_t wal_seq, drift_err *err)
{
	if (drift_l1_dirty_count(s->l1) == 0 && wal_seq == s->man.wal_seq)
		return 0;
	struct persist_ctx p = {.segid = s->man.next_segment_id, .err = err};
	char path[PATH_MAX_];
	seg_path(s, p.segid, path);
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
	qsort(nm.segments, nm.nsegments, 8, cmp_u64);
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
		if (bsearch(&id, nm.segments, nm.nsegments, 8, cmp_u64) ==
		    NULL) {
			char old[PATH_MAX_];
			seg_path(s, id, old);
			s->fs->unlink(s->fs, old);
		}
	}
	drift_manifest_free(&s->man);
	s->man = nm;
	uint64_t written = 0;
	for (size_t i = 0; i < p.n; i++)
		if (slot_room(s, p.changed[i].slot)) {
			s->slot_len[p.changed[i].slot] = p.lens[i];
			written += p.lens[i];
		}
	space_rebuild(s, wrote_segment ? p.segid : 0, written);
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
static int apply_memtable(drift_shard *s, drift_hnsw *h, uint64_t version,
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
static int flush_imm(drift_shard *s, drift_err *err)
{
	pthread_mutex_lock(&s->l1mu);
	drift_hnsw *imm = atomic_load(&s->imm);
	int rv = 0;
	if (imm == NULL)
		goto out;
	/* Read once: a rotation may start a new imm as soon as this one is
	 * cleared below. */
	uint64_t last = atomic_load(&s->imm_last_seq);
	if (!s->imm_applied) {
		rv = apply_memtable(s, imm, last, err);
		if (rv != 0)
			goto out;
		s->imm_applied = true;
	}
	rv = persist(s, last, err);
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
		int rv = flush_imm(s, err);
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
	rv = new_memtable(s, &fresh, err);
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
static int reserve(drift_shard *s, unsigned n, drift_hnsw **act, drift_err *err)
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
		if (!s->o.janitor && (rv = flush_imm(s, err)) != 0)
			return rv;
	}
}

/* ---- Janitor ---- */

#define FLUSH_WARN_NS (10 * 1000000000ull)
#define MAINT_PERSIST_NS (10 * 1000000000ull)
#define FLUSH_BACKOFF_MAX_NS (5 * 1000000000ull)

/* A failed flush is tried again after 2^fails Janitor periods (at most
 * FLUSH_BACKOFF_MAX_NS; a writer that needs the room flushes at once
 * itself), and logged once per FLUSH_WARN_NS, not every period. */
static void flush_failed(drift_shard *s, const drift_err *err)
{
	uint64_t now = drift_now_ns();
	unsigned shift = s->flush_fails < 10 ? s->flush_fails : 10;
	uint64_t wait = s->o.janitor_period_ns << shift;
	if (wait > FLUSH_BACKOFF_MAX_NS)
		wait = FLUSH_BACKOFF_MAX_NS;
	s->flush_fails++;
	s->flush_retry_ns = now + wait;
	if (s->flush_warn_ns != 0 && now - s->flush_warn_ns < FLUSH_WARN_NS)
		return;
	DRIFT_WARN("shard %s: flush failed (%u times; retried in %llu ms): %s",
		   s->dir, s->flush_fails,
		   (unsigned long long)(wait / 1000000u), err->msg);
	s->flush_warn_ns = now;
}

/* One turn of the Janitor: a pending flush, then up to maint_per_tick
 * maintenance actions, then what it wants next: a turn at once when
 * maintenance used its whole budget (a backlog of splits after a large
 * flush is worked off at the pool's full speed, taking turns with the
 * other shards), a turn after the period while it still finds work, has
 * changes to persist or wrote a manifest (compaction looks at the space
 * that left), the flush retried after its backoff, or
 * nothing (an index in good shape waits for its next flush). */
/* Gives the heaps' free pages back to the system (malloc_trim): the
 * blocks a flush, a compaction or a merge freed sit in the middle of the
 * allocator's heaps, where it keeps them. At most once per TRIM_NS over
 * the process: a trim walks every heap. */
#define TRIM_NS (1000 * 1000000ull)

static void trim_heaps(void)
{
	static _Atomic uint64_t last;
	uint64_t now = drift_now_ns(), was = atomic_load(&last);
	if (now - was < TRIM_NS ||
	    !atomic_compare_exchange_strong(&last, &was, now))
		return;
	malloc_trim(0);
}

static void janitor_run(drift_janitor_task *t)
{
	drift_shard *s =
		(drift_shard *)((char *)t - offsetof(drift_shard, task));
	drift_err err;
	drift_err_clear(&err);
	if (atomic_load(&s->imm) != NULL &&
	    drift_now_ns() >= s->flush_retry_ns) {
		if (flush_imm(s, &err) != 0) {
			flush_failed(s, &err);
		} else if (s->flush_fails > 0) {
			DRIFT_INFO("shard %s: flush works again (after %u "
				   "failures)",
				   s->dir, s->flush_fails);
			s->flush_fails = 0;
			s->flush_retry_ns = 0;
		}
	}
	pthread_mutex_lock(&s->l1mu);
	uint64_t generation = s->man.generation;
	drift_l1_maint_stats ms = {0};
	if (drift_l1_maintain(s->l1, s->o.maint_per_tick, &ms, &err) != 0)
		DRIFT_WARN("shard %s: maintenance: %s", s->dir, err.msg);
	atomic_fetch_add(&s->splits, ms.splits);
	atomic_fetch_add(&s->merges, ms.merges);
	atomic_fetch_add(&s->recenters, ms.recenters);
	compact_segments(s);
	/* What maintenance (or compaction) changed becomes durable once it
	 * pauses, or MAINT_PERSIST_NS after the last persist while it goes
	 * on (a crash before that only loses the rearrangement, never data).
	 * Under a steady ingest the flushes persist it: a bucket that splits
	 * and then takes a flush is written once, not twice. */
	uint64_t actions = ms.splits + ms.merges + ms.recenters;
	if (actions > 0)
		atomic_store(&s->trim_due, true);
	if (drift_l1_dirty_count(s->l1) > 0 &&
	    (actions == 0 ||
	     drift_now_ns() - s->last_persist_ns > MAINT_PERSIST_NS) &&
	    persist(s, s->man.wal_seq, &err) != 0)
		DRIFT_WARN("shard %s: persisting maintenance: %s", s->dir,
			   err.msg);
	/* A manifest written since the turn began (here or by a flush) may
	 * leave a segment mostly garbage: one more turn checks. */
	bool dirty = drift_l1_dirty_count(s->l1) > 0 ||
		     s->man.generation != generation;
	pthread_mutex_unlock(&s->l1mu);
	if (actions >= s->o.maint_per_tick)
		drift_janitor_post(s->pool, t, DRIFT_JANITOR_MAINT, 0);
	else if (actions > 0 || dirty)
		drift_janitor_post(s->pool, t, DRIFT_JANITOR_MAINT,
				   s->o.janitor_period_ns);
	else if (atomic_exchange(&s->trim_due, false))
		trim_heaps(); /* idle after freeing */
	if (atomic_load(&s->imm) != NULL) {
		uint64_t now = drift_now_ns();
		drift_janitor_post(
			s->pool, t, DRIFT_JANITOR_FLUSH,
			s->flush_retry_ns > now ? s->flush_retry_ns - now : 0);
	}
}

/* ---- Open: hydration ---- */

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
	int rv = apply_memtable(s, act, r->act_seq, r->err);
	if (rv != 0)
		return rv;
	r->l1_seq = r->act_seq;
	drift_hnsw *fresh;
	if ((rv = new_memtable(s, &fresh, r->err)) != 0)
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
	const uint8_t *p = payload;
	uint32_t dim = s->o.dim;
	if (len < 4)
		goto bad;
	uint32_t n = drift_load_le32(p);
	if (n > s->o.memtable_rows)
		goto bad;
	int rv;
	if (type == OP_UPSERT) {
		if (len < 8 || drift_load_le32(p + 4) != dim ||
		    (len - 8) / (8 + 4 * (size_t)dim) != n ||
		    (len - 8) % (8 + 4 * (size_t)dim) != 0)
			goto bad;
		if ((rv = replay_room(r, n)) != 0)
			return rv;
		float *v = drift_mallocarray(dim, sizeof(float));
		if (v == NULL)
			return DRIFT_ENOMEM;
		drift_hnsw *act = atomic_load(&s->act);
		for (uint32_t i = 0; i < n; i++) {
			const uint8_t *row = p + 8 + i * (8 + 4 * (size_t)dim);
			uint64_t id = drift_load_le64(row);
			for (uint32_t j = 0; j < dim; j++)
				v[j] = drift_load_lef32(row + 8 + 4 * j);
			rv = drift_hnsw_insert(act, id, v, seq, NULL);
			if (rv != 0 && rv != DRIFT_ESTALE) {
				drift_free(v);
				return drift_err_set(r->err, rv,
						     "replaying record %llu: "
						     "%s",
						     (unsigned long long)seq,
						     drift_strerror(rv));
			}
		}
		drift_free(v);
		atomic_fetch_add(&s->reserved, n);
	} else if (type == OP_DELETE) {
		if (len != 4 + 8 * (size_t)n)
			goto bad;
		if ((rv = replay_room(r, n)) != 0)
			return rv;
		drift_hnsw *act = atomic_load(&s->act);
		for (uint32_t i = 0; i < n; i++) {
			rv = drift_hnsw_delete(
				act, drift_load_le64(p + 4 + 8 * i), seq);
			if (rv != 0 && rv != DRIFT_ESTALE)
				return drift_err_set(r->err, rv,
						     "replaying record %llu",
						     (unsigned long long)seq);
		}
		atomic_fetch_add(&s->reserved, n);
	} else {
		goto bad;
	}
	r->act_seq = seq;
	return 0;
bad:
	return drift_err_set(r->err, DRIFT_ECORRUPT,
			     "WAL record %llu (type %u, %zu bytes) is not a "
			     "valid batch for this shard",
			     (unsigned long long)seq, type, len);
}

/* The configuration recorded in the manifest: "dim=<d> metric=<m>". */
static void meta_string(const drift_shard *s, char *out, size_t cap)
{
	snprintf(out, cap, "dim=%u metric=%d", s->o.dim, (int)s->o.metric);
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
				    s->man.nsegments, 8, cmp_u64) != NULL;
		if (!keep) {
			char path[PATH_MAX_];
			if (path_join(path, s->segdir, nm) == 0) {
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
		seg_path(s, s->man.segments[i], path);
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
			if (rv == 0 && slot_room(s, b->slot))
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
		space_rebuild(s, 0, 0);
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
	    path_join(s->waldir, s->dir, "wal") != 0 ||
	    path_join(s->segdir, s->dir, "seg") != 0) {
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
	meta_string(s, meta, sizeof(meta));
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
	 * (node/vstore.h: rebuilt from the segments by load_l1), behind a row
	 * cache of L1_VEC_CACHE_BYTES. */
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
	collect_garbage(s);
	drift_hnsw *act;
	if ((rv = new_memtable(s, &act, err)) != 0)
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
		rv = persist(s, r.l1_seq, err);
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
		drift_janitor_task_init(&s->task, janitor_run);
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

uint32_t drift_shard_max_batch(const drift_shard *s)
{
	return s->o.memtable_rows;
}

/* ---- Writes ---- */

int drift_shard_upsert(drift_shard *s, const uint64_t *ids, const float *vecs,
		       size_t n, drift_err *err)
{
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
	size_t row = 8 + 4 * (size_t)dim;
	size_t len = 8 + n * row;
	uint8_t *rec = drift_malloc(len);
	if (rec == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "upsert");
	drift_store_le32(rec, (uint32_t)n);
	drift_store_le32(rec + 4, dim);
	for (size_t i = 0; i < n; i++) {
		uint8_t *p = rec + 8 + i * row;
		drift_store_le64(p, ids[i]);
		for (uint32_t j = 0; j < dim; j++)
			drift_store_lef32(p + 8 + 4 * j, vecs[i * dim + j]);
	}
	drift_hnsw *act;
	int rv = reserve(s, (unsigned)n, &act, err);
	if (rv != 0) {
		drift_free(rec);
		return rv;
	}
	uint64_t seq;
	rv = drift_wal_append(s->wal, OP_UPSERT, rec, len, &seq, err);
	drift_free(rec);
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
	size_t len = 4 + 8 * n;
	uint8_t *rec = drift_malloc(len);
	if (rec == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "delete");
	drift_store_le32(rec, (uint32_t)n);
	for (size_t i = 0; i < n; i++)
		drift_store_le64(rec + 4 + 8 * i, ids[i]);
	drift_hnsw *act;
	int rv = reserve(s, (unsigned)n, &act, err);
	if (rv != 0) {
		drift_free(rec);
		return rv;
	}
	uint64_t seq;
	rv = drift_wal_append(s->wal, OP_DELETE, rec, len, &seq, err);
	drift_free(rec);
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
		rv = flush_imm(s, err);
	if (rv == 0) {
		pthread_mutex_lock(&s->l1mu);
		rv = persist(s, s->man.wal_seq, err);
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
