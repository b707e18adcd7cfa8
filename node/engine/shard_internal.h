/*
 * The shard engine's parts (shard.h is the contract), shared by its files:
 *
 *   shard.c          writes, reads, rotation, flush and persistence
 *   shard_record.c   the WAL records of upserts and deletes
 *   shard_janitor.c  the Janitor's turn (node/engine/janitor.h)
 *   shard_open.c     open (hydration: manifest, segments, WAL replay) and
 *                    close
 *   shard_replica.c  a replica's writes (the primary's records) and the
 *                    log tail a replica catches up from
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
 */
#ifndef DRIFT_NODE_SHARD_INTERNAL_H
#define DRIFT_NODE_SHARD_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/epoch.h"
#include "node/l0/hnsw.h"
#include "node/engine/janitor.h"
#include "node/storage/manifest.h"
#include "node/engine/shard.h"

#define OP_UPSERT 1
#define OP_DELETE 2
#define PATH_MAX_ 4096
/* Row cache of L1's full vectors (re-ranking reads; node/storage/vstore.h). */
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

	atomic_ullong flushes, splits, merges, recenters, compactions,
		flushed_seq;
};

/* A live segment's bytes: all it was written with, and those still
 * named. */
struct seg_space {
	uint64_t id, total, live;
};

/* ---- shard.c ---- */

/* out = a/b: 0 or DRIFT_ERANGE. */
int shard_path_join(char *out, const char *a, const char *b);
/* The path of segment id (open keeps the directory short enough). */
void shard_seg_path(const drift_shard *s, uint64_t id, char *out);
/* Holds wlock (shared) with n rows reserved in the active memtable (a
 * full one rotates first), or fails. */
int shard_reserve(drift_shard *s, unsigned n, drift_hnsw **act, drift_err *err);
/* A fresh memtable with the shard's options. */
int shard_new_memtable(drift_shard *s, drift_hnsw **out, drift_err *err);
int shard_cmp_u64(const void *a, const void *b);
/* Room in s->slot_len for slot (false: out of memory). l1mu held. */
bool shard_slot_room(drift_shard *s, uint32_t slot);
/* s->space for the manifest s->man (see shard.c). l1mu held. */
void shard_space_rebuild(drift_shard *s, uint64_t new_id, uint64_t new_total);
/* Marks the buckets of mostly-garbage segments dirty. l1mu held. */
uint32_t shard_compact_segments(drift_shard *s);
/* The L1 index's action hook (drift_l1_set_action_hook): the Janitor's
 * duration histograms (node/engine/janitor_metrics.h). */
void shard_on_l1_action(void *ctx, enum drift_l1_action a, uint64_t ns);
/* Writes L1's dirty buckets into a new segment and switches the manifest
 * to it with wal_seq. l1mu held. */
int shard_persist(drift_shard *s, uint64_t wal_seq, drift_err *err);
/* Applies the newest entries of memtable h to L1. l1mu held. */
int shard_apply_memtable(drift_shard *s, drift_hnsw *h, uint64_t version,
			 drift_err *err);
/* Flushes the immutable memtable, if any, into durable L1. */
int shard_flush_imm(drift_shard *s, drift_err *err);

/* ---- shard_record.c ---- */

/* An upsert record of n rows (ids, n * dim floats) or a delete record of
 * n ids, into *out (drift_malloc'd, *len bytes). 0 or DRIFT_ENOMEM. */
int shard_record_upsert(const uint64_t *ids, const float *vecs, size_t n,
			uint32_t dim, uint8_t **out, size_t *len);
int shard_record_delete(const uint64_t *ids, size_t n, uint8_t **out,
			size_t *len);

/* A record read back: n rows; shard_record_row gives row i. */
typedef struct shard_record {
	uint32_t type; /* OP_UPSERT or OP_DELETE */
	uint32_t n;
	const uint8_t *p;
	uint32_t dim;
} shard_record;

/* Checks a replayed payload against the shard (its type, dim, at most
 * max_rows rows, a length that fits exactly): 0 or DRIFT_ECORRUPT. */
int shard_record_parse(uint32_t type, const void *payload, size_t len,
		       uint32_t dim, uint32_t max_rows, shard_record *out);
/* Row i's id and (upserts) its vector into vec (dim floats; may be NULL
 * for a delete). */
uint64_t shard_record_row(const shard_record *r, uint32_t i, float *vec);

/* ---- shard_janitor.c ---- */

/* One turn of the Janitor (a drift_janitor_fn of s->task). */
void shard_janitor_run(drift_janitor_task *t);

#endif /* DRIFT_NODE_SHARD_INTERNAL_H */
