/*
 * The CollectionManager: the collections (tenants) of one node.
 *
 * Every collection has its own directory under <data_dir>/collections/,
 * its own shards (node/engine/shard.h, each with its own WAL, memtable, L1 and
 * Janitor) and its own limits. An id goes to shard hash(id) mod shards,
 * fixed when the collection is created.
 *
 *   <data_dir>/collections/<name>/collection.conf   the configuration
 *   <data_dir>/collections/<name>/shard-<i>/         one shard each
 *
 * Create is crash-safe: everything is made in a hidden directory
 * ".new-<name>" that is renamed into place (and the parent directory
 * synced) only when complete; drop renames the collection to
 * ".drop-<name>" (synced) before deleting it. Hidden leftovers of a crash
 * are removed when the manager opens, so a crash leaves either the old
 * state or the new one.
 *
 * A collection whose files cannot be opened is kept as "broken" with the
 * reason: its requests fail (drift_cm_acquire returns DRIFT_ECORRUPT and
 * the message names the file) while the other collections keep serving.
 * One that a full disk kept from opening (a shard starts a new WAL file)
 * is not damaged: its requests fail with DRIFT_ENOSPC, and it is opened by
 * the first request after space was freed (or a second after the last
 * try), without a restart.
 *
 * Memory. A node may have a memory budget (drift_cm_opts.memory_budget,
 * drift-node --memory-budget) and a collection a memory limit of its own
 * (CreateCollection's memory_limit). A collection's share is:
 *   - its memory_limit, when it has one: a reservation out of the budget
 *     (the explicit limits together may not exceed the budget: a create
 *     asking for more than is left is DRIFT_ELIMIT);
 *   - otherwise an equal part of what the reservations leave of the
 *     budget, split over the collections without a limit (so it shrinks
 *     when such a collection is created and grows when one is dropped);
 *   - no limit when the node has no budget and it has no memory_limit.
 * The shares never add up to more than the budget, so one tenant cannot
 * take another's memory. The usage is drift_shard_memory summed over the
 * shards (an estimate: the memtables' arenas, L1 and the rows waiting for
 * the flush). An upsert that would take the usage over the share is
 * DRIFT_ELIMIT naming the collection, its usage and its share, and writes
 * nothing; deletes are always accepted (they give memory back at the next
 * flush). A create whose memtables alone would not fit its share is
 * refused. Concurrent upserts check the same figure, so the share can be
 * passed by the batches in flight at once (at most a few memtables' worth).
 *
 * Threads: every function is thread-safe. A collection acquired stays
 * usable until released, even if it is dropped meanwhile (drop waits for
 * the last release before it closes the shards).
 */
#ifndef DRIFT_NODE_COLLECTION_H
#define DRIFT_NODE_COLLECTION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/hit.h"
#include "node/l1/l1.h"
#include "node/engine/shard.h"
#include "node/storage/wal.h"

#define DRIFT_COLLECTION_NAME_MAX 64
#define DRIFT_COLLECTION_MAX_DIM 65536
#define DRIFT_COLLECTION_MAX_SHARDS 256
#define DRIFT_COLLECTION_MAX_RF 5 /* replicas of a shard */

typedef struct drift_collection_config {
	char name[DRIFT_COLLECTION_NAME_MAX + 1];
	uint32_t dim;
	enum drift_metric metric;
	uint32_t shards;
	uint32_t replication_factor;
	enum drift_wal_sync sync;
	uint32_t memtable_rows;
	float default_recall;
	uint64_t memory_limit; /* bytes; 0: a share of the node's budget */
	/* The cluster map version that created it (node/cluster_sync.h):
	 * 0 for a collection made before the node was in a cluster. */
	uint64_t cluster_version;
} drift_collection_config;

typedef struct drift_cm drift_cm;
typedef struct drift_collection drift_collection;

typedef struct drift_cm_opts {
	uint32_t memtable_rows; /* default per shard; 0: 65536 */
	uint64_t max_vectors;	/* per collection; 0: no limit */
	uint64_t memory_budget; /* bytes for all collections; 0: none */
	uint32_t max_dim;	/* largest dimension of a new collection;
				 * 0: DRIFT_COLLECTION_MAX_DIM */
	bool janitor;		/* background Janitor of every shard */
	/* Threads of the Janitor pool every shard shares
	 * (node/engine/janitor.h); 0: one per online CPU. */
	unsigned janitor_threads;
} drift_cm_opts;

/* Whether name matches [A-Za-z0-9_-]{1,64}. */
bool drift_collection_name_ok(const char *name);

/* Opens every collection under data_dir (created when missing). Broken
 * collections do not fail the open: they are listed with their error. */
int drift_cm_open(const char *data_dir, const drift_cm_opts *opts,
		  drift_cm **out, drift_err *err);
/* Closes every collection (each shard syncs its WAL). */
void drift_cm_close(drift_cm *cm);

/* Creates a collection. The config's zero fields take defaults (1 shard,
 * replication 1, ALWAYS, the node's memtable size, recall 0.95, a share of
 * the budget). 0, DRIFT_EEXIST, DRIFT_EINVAL (bad name or value, or a
 * dimension over the node's max_dim: the message says which), DRIFT_ELIMIT
 * (the memory budget has no room for it), or an I/O error (nothing is left
 * behind). */
int drift_cm_create(drift_cm *cm, const drift_collection_config *cfg,
		    drift_err *err);

/* The checks and defaults of drift_cm_create without creating anything:
 * *out is in with its zero fields defaulted. 0 or DRIFT_EINVAL naming the
 * bad field (the cluster validates a CreateCollection with it before the
 * Raft group agrees on it). */
int drift_cm_check(const drift_cm *cm, const drift_collection_config *in,
		   drift_collection_config *out, drift_err *err);

/* Drops a collection and deletes its files: 0 or DRIFT_ENOENT. */
int drift_cm_drop(drift_cm *cm, const char *name, drift_err *err);

/* The collection called name, held until drift_cm_release: DRIFT_ENOENT,
 * or DRIFT_ECORRUPT for a broken collection (err says why). */
int drift_cm_acquire(drift_cm *cm, const char *name, drift_collection **out,
		     drift_err *err);
void drift_cm_release(drift_cm *cm, drift_collection *c);

/* The names of all collections (broken ones included), sorted; free the
 * array and each name with drift_free. */
int drift_cm_list(drift_cm *cm, char ***names, size_t *n);

const drift_collection_config *drift_collection_cfg(const drift_collection *c);

/* The collection's directory (DATA_DIR/collections/NAME, shard i in
 * shard-i/), valid while the collection is acquired. */
const char *drift_collection_dir(const drift_collection *c);

/* The most points of one upsert (or ids of one delete). */
size_t drift_collection_max_batch(const drift_collection *c);

/* Upserts n points: ids and n * dim floats. Everything is validated before
 * anything is written (DRIFT_EINVAL naming the point; DRIFT_ELIMIT over
 * the batch, vector or memory limit). Each shard's part is all or nothing;
 * a batch over several shards is refused with DRIFT_ENOSPC, nothing
 * written, when the filesystem lacks room for all its parts. An I/O
 * failure of one shard after that check (another writer took the space, a
 * failing disk) may leave other shards' parts written (an upsert is
 * idempotent: retrying the batch is safe). The same holds for delete. */
int drift_collection_upsert(drift_collection *c, const uint64_t *ids,
			    const float *vecs, size_t n, drift_err *err);
int drift_collection_delete(drift_collection *c, const uint64_t *ids, size_t n,
			    size_t *deleted, drift_err *err);
/* Replication (node/replica/). The writes of a primary: ids all of shard
 * `shard` (else DRIFT_EINVAL), the checks and limits of upsert and delete,
 * and on success *rec holds the WAL record to ship to the replicas
 * (drift_shard_record_free). drift_collection_shard_enter gives shard i
 * (NULL when out of range), usable until drift_collection_shard_leave. */
int drift_collection_upsert_rec(drift_collection *c, uint32_t shard,
				const uint64_t *ids, const float *vecs,
				size_t n, drift_shard_record *rec,
				drift_err *err);
int drift_collection_delete_rec(drift_collection *c, uint32_t shard,
				const uint64_t *ids, size_t n, size_t *deleted,
				drift_shard_record *rec, drift_err *err);
drift_shard *drift_collection_shard_enter(drift_collection *c, uint32_t shard);
/* drift_collection_upsert's checks of a batch (values, limits, memory)
 * without writing: 0 or the error. */
int drift_collection_check_upsert(drift_collection *c, const uint64_t *ids,
				  const float *vecs, size_t n, drift_err *err);
/* Whether the filesystem has room for every shard's part of a write of n
 * points (del: ids), as drift_collection_upsert checks before it writes
 * any: 0 or DRIFT_ENOSPC. */
int drift_collection_check_room(drift_collection *c, size_t n, bool del,
				drift_err *err);
void drift_collection_shard_leave(drift_collection *c, uint32_t shard);

/* Replaces shard `shard` with the shard files in directory `staged` (a
 * full copy from another replica; renamed into place, so on the same
 * filesystem), waiting for the shard's users to leave and holding new
 * ones back meanwhile. A copy that does not open leaves the old shard in
 * place (and the error). */
int drift_collection_install_shard(drift_collection *c, uint32_t shard,
				   const char *staged, drift_err *err);

/* 0 and the vector, or DRIFT_ENOENT. */
int drift_collection_get(drift_collection *c, uint64_t id, float *out);
/* The k best over every shard, best first. */
int drift_collection_search(drift_collection *c, const float *q,
			    const drift_shard_search_opts *so, drift_hit *out,
			    size_t *n_out);
/* The k best of shard `shard` alone (the peer API: the caller merges the
 * shards' answers). DRIFT_EINVAL for a shard out of range. */
int drift_collection_search_shard(drift_collection *c, uint32_t shard,
				  const float *q,
				  const drift_shard_search_opts *so,
				  drift_hit *out, size_t *n_out);
int drift_collection_flush(drift_collection *c, drift_err *err);
/* The flush of shard `shard` alone (the peer API's Flush).
 * DRIFT_EINVAL for a shard out of range. */
int drift_collection_flush_shard(drift_collection *c, uint32_t shard,
				 drift_err *err);

/* Live vectors and per-shard statistics (st: room for cfg->shards). */
uint64_t drift_collection_stats(drift_collection *c, drift_shard_stats *st);

/* The memory the collection uses (estimate, see above) and, in *limit,
 * its share now (0: no limit). */
uint64_t drift_collection_memory(drift_collection *c, uint64_t *limit);

#endif /* DRIFT_NODE_COLLECTION_H */
