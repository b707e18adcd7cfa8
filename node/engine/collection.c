/*
 * The CollectionManager (see collection.h).
 *
 * collection.conf is a few "key=value" lines (name, dim, metric, shards,
 * replication_factor, wal_sync, memtable_rows, default_recall, and
 * memory_limit, which files of older versions lack: 0 then), written
 * atomically; an unknown key, a missing key or a bad value makes the
 * collection broken, with the file and line in the message.
 */
#include "node/engine/collection.h"

#include <assert.h>
#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "cluster/placement.h"
#include "common/alloc.h"
#include "common/merge.h"
#include "common/clock.h"
#include "common/fs.h"
#include "common/hash.h"
#include "common/log.h"

#define PATHLEN 4096

/* Paths are built from the data directory (at most PATHLEN - 256 bytes,
 * checked at open) and validated names (at most 64 bytes), so they fit;
 * gcc cannot see those bounds through the structs. */
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wformat-truncation"
#endif
/* Seeds of the shards' own hashes (the id -> shard hash is
 * drift_shard_of_id). */
#define SHARD_SEED 0x5eedc011ec7105ull
#define RETRY_NS 1000000000ull

struct drift_collection {
	drift_collection_config cfg;
	char dir[PATHLEN];
	drift_shard **shards;
	/* One per shard: its users hold it shared, drift_collection_install_
	 * shard alone while it swaps the shard's files. */
	pthread_rwlock_t *gates;
	char *broken;	   /* why it cannot serve, or NULL */
	int broken_rv;	   /* its code: DRIFT_ECORRUPT, or DRIFT_ENOSPC */
	uint64_t retry_ns; /* DRIFT_ENOSPC: when the open is tried again */
	uint64_t avail_at; /* DRIFT_ENOSPC: bytes free when it failed */
	atomic_int refs;
	bool dropped;
	struct drift_collection *hnext; /* its chain in the name index */
	drift_cm *cm;
	uint64_t max_vectors;
};

struct drift_cm {
	char dir[PATHLEN]; /* <data_dir>/collections */
	drift_cm_opts o;
	pthread_mutex_t mu;
	pthread_cond_t cv; /* a release happened */
	/* The listed collections, sorted by name (n of them, room for cap,
	 * which never shrinks): found by binary search for a create or a
	 * drop, walked in order by drift_cm_list. A sorted linked list cost
	 * a create 10,000 name comparisons with 10,000 collections. */
	drift_collection **all;
	size_t n, cap;
	/* Of the listed collections: the bytes their memory_limits reserve
	 * and how many have none, and the part of the budget each of those
	 * gets now (share_all; 0: no budget). Kept as they are listed and
	 * unlisted, so a create or a drop does not visit every collection. */
	uint64_t reserved, open;
	_Atomic uint64_t part;
	/* The listed collections by name hash, chained (tcap a power of two,
	 * or 0); every listed one is in it unless growing it once failed
	 * (unindexed: find scans the list). Each request finds its
	 * collection, and a node's map watcher finds every one at each map
	 * change: with 10,000 collections a list scan per lookup made a
	 * create take 350 ms at 3,600 (strcmp, 90% of the node's time). */
	drift_collection **tbl;
	size_t tcap, tn;
	bool unindexed;
	drift_janitor *janitor; /* every shard's Janitor (o.janitor) */
	/* On the Janitor: malloc_trim after drops (drift_cm_drop). */
	drift_janitor_task trim;
	drift_janitor *syncer; /* the WALs' BATCH syncs: short, on a thread
				* of their own so that no flush delays
				* them */
};

static const char *const metric_names[] = {"l2", "ip", "cosine", NULL};
static const char *const sync_names[] = {"always", "batch", "none", NULL};

bool drift_collection_name_ok(const char *name)
{
	size_t n = strlen(name);
	if (n == 0 || n > DRIFT_COLLECTION_NAME_MAX)
		return false;
	for (size_t i = 0; i < n; i++) {
		char ch = name[i];
		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') ||
		      (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
			return false;
	}
	return true;
}

/* ---- Files ---- */

/* Bytes an unprivileged writer may still add to the filesystem of path
 * (UINT64_MAX when statvfs fails: no figure). */
static uint64_t avail_bytes(const char *path)
{
	struct statvfs sv;
	if (statvfs(path, &sv) != 0)
		return UINT64_MAX;
	return (uint64_t)sv.f_bavail * sv.f_frsize;
}

static int rm_entry(const char *path, const struct stat *sb, int flag,
		    struct FTW *ftw)
{
	(void)sb;
	(void)flag;
	(void)ftw;
	return remove(path);
}

static int rmtree(const char *path)
{
	return nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static int write_conf(const char *dir, const drift_collection_config *c,
		      drift_err *err)
{
	char text[1024], path[PATHLEN];
	int n = snprintf(text, sizeof(text),
			 "name=%s\ndim=%u\nmetric=%s\nshards=%u\n"
			 "replication_factor=%u\nwal_sync=%s\n"
			 "memtable_rows=%u\ndefault_recall=%.9g\n"
			 "memory_limit=%llu\ncluster_version=%llu\n",
			 c->name, c->dim, metric_names[c->metric], c->shards,
			 c->replication_factor, sync_names[c->sync],
			 c->memtable_rows, (double)c->default_recall,
			 (unsigned long long)c->memory_limit,
			 (unsigned long long)c->cluster_version);
	if (snprintf(path, sizeof(path), "%s/collection.conf", dir) >=
	    (int)sizeof(path))
		return drift_err_set(err, DRIFT_ERANGE, "path too long");
	return drift_fs_write_file_atomic(drift_fs_posix(), path, text,
					  (size_t)n, err);
}

static int pick(const char *const *names, const char *v)
{
	for (int i = 0; names[i] != NULL; i++)
		if (strcmp(names[i], v) == 0)
			return i;
	return -1;
}

static int read_conf(const char *dir, drift_collection_config *c,
		     drift_err *err)
{
	char path[PATHLEN];
	snprintf(path, sizeof(path), "%s/collection.conf", dir);
	uint8_t *data;
	size_t len;
	int rv = drift_fs_read_file(drift_fs_posix(), path, 65536, &data, &len,
				    err);
	if (rv != 0)
		return rv;
	memset(c, 0, sizeof(*c));
	unsigned seen = 0;
	int line = 0;
	char *save = NULL;
	for (char *l = strtok_r((char *)data, "\n", &save); l != NULL;
	     l = strtok_r(NULL, "\n", &save)) {
		line++;
		char *eq = strchr(l, '=');
		if (eq == NULL) {
			rv = drift_err_set(err, DRIFT_ECORRUPT,
					   "%s:%d: expected key=value", path,
					   line);
			break;
		}
		*eq = '\0';
		const char *k = l, *v = eq + 1;
		char *end = NULL;
		unsigned long long u = strtoull(v, &end, 10);
		bool num = *v != '\0' && *end == '\0';
		int bit = -1;
		if (strcmp(k, "name") == 0 && drift_collection_name_ok(v)) {
			snprintf(c->name, sizeof(c->name), "%s", v);
			bit = 0;
		} else if (strcmp(k, "dim") == 0 && num && u >= 1 &&
			   u <= DRIFT_COLLECTION_MAX_DIM) {
			c->dim = (uint32_t)u;
			bit = 1;
		} else if (strcmp(k, "metric") == 0 &&
			   pick(metric_names, v) >= 0) {
			c->metric = (enum drift_metric)pick(metric_names, v);
			bit = 2;
		} else if (strcmp(k, "shards") == 0 && num && u >= 1 &&
			   u <= DRIFT_COLLECTION_MAX_SHARDS) {
			c->shards = (uint32_t)u;
			bit = 3;
		} else if (strcmp(k, "replication_factor") == 0 && num &&
			   u >= 1) {
			c->replication_factor = (uint32_t)u;
			bit = 4;
		} else if (strcmp(k, "wal_sync") == 0 &&
			   pick(sync_names, v) >= 0) {
			c->sync = (enum drift_wal_sync)pick(sync_names, v);
			bit = 5;
		} else if (strcmp(k, "memtable_rows") == 0 && num && u >= 16 &&
			   u <= (1u << 24)) {
			c->memtable_rows = (uint32_t)u;
			bit = 6;
		} else if (strcmp(k, "memory_limit") == 0 && num) {
			c->memory_limit = u;
			bit = 8;
		} else if (strcmp(k, "cluster_version") == 0 && num) {
			c->cluster_version = u; /* optional: 0 before it */
			bit = 9;
		} else if (strcmp(k, "default_recall") == 0) {
			float f = strtof(v, &end);
			if (*end == '\0' && f > 0 && f <= 1) {
				c->default_recall = f;
				bit = 7;
			}
		}
		if (bit < 0) {
			rv = drift_err_set(err, DRIFT_ECORRUPT,
					   "%s:%d: bad setting \"%s=%s\"", path,
					   line, k, v);
			break;
		}
		seen |= 1u << bit;
	}
	if (rv == 0 && (seen & 0xff) != 0xff)
		rv = drift_err_set(err, DRIFT_ECORRUPT,
				   "%s: settings missing (have mask %#x)", path,
				   seen);
	drift_free(data);
	return rv;
}

/* ---- Collections ---- */

static void close_shards(drift_collection *c)
{
	if (c->shards == NULL)
		return;
	for (uint32_t i = 0; i < c->cfg.shards; i++)
		drift_shard_close(c->shards[i]);
	drift_free(c->shards);
	c->shards = NULL;
	if (c->gates != NULL)
		for (uint32_t i = 0; i < c->cfg.shards; i++)
			pthread_rwlock_destroy(&c->gates[i]);
	drift_free(c->gates);
	c->gates = NULL;
}

/* Shard i, held (shared) until gate_out. */
static drift_shard *gate_in(drift_collection *c, uint32_t i)
{
	pthread_rwlock_rdlock(&c->gates[i]);
	return c->shards[i];
}

static void gate_out(drift_collection *c, uint32_t i)
{
	pthread_rwlock_unlock(&c->gates[i]);
}

static void free_collection(drift_collection *c)
{
	close_shards(c);
	drift_free(c->broken);
	drift_free(c);
}

/* Opens shard i of c from its directory. */
static int open_shard(drift_cm *cm, drift_collection *c, uint32_t i,
		      drift_err *err)
{
	char sd[PATHLEN];
	snprintf(sd, sizeof(sd), "%s/shard-%u", c->dir, i);
	drift_shard_opts so = {
		.dir = sd,
		.dim = c->cfg.dim,
		.metric = c->cfg.metric,
		.sync = c->cfg.sync,
		.memtable_rows = c->cfg.memtable_rows,
		.default_recall = c->cfg.default_recall,
		.janitor = cm->o.janitor,
		.pool = cm->janitor,
		.wal_pool = cm->syncer,
		.seed = SHARD_SEED + i,
	};
	return drift_shard_open(&so, &c->shards[i], err);
}

static int open_shards(drift_cm *cm, drift_collection *c, drift_err *err)
{
	c->shards = drift_calloc(c->cfg.shards, sizeof(*c->shards));
	c->gates = drift_calloc(c->cfg.shards, sizeof(*c->gates));
	if (c->shards == NULL || c->gates == NULL) {
		drift_free(c->shards);
		drift_free(c->gates);
		c->shards = NULL;
		c->gates = NULL;
		return drift_err_set(err, DRIFT_ENOMEM, "collection %s",
				     c->cfg.name);
	}
	for (uint32_t i = 0; i < c->cfg.shards; i++)
		pthread_rwlock_init(&c->gates[i], NULL);
	for (uint32_t i = 0; i < c->cfg.shards; i++) {
		int rv = open_shard(cm, c, i, err);
		if (rv != 0) {
			drift_err_wrap(err, rv, "collection %s", c->cfg.name);
			close_shards(c);
			return rv;
		}
	}
	return 0;
}

/* ---- Memory shares ---- */

/* Sets every collection's share (collection.h, "Memory"): an explicit
 * memory_limit, or an equal part of what those leave of the budget. The
 * caller holds cm->mu (or is the open). */
static void share_all(drift_cm *cm)
{
	uint64_t budget = cm->o.memory_budget, reserved = cm->reserved,
		 open = cm->open;
	uint64_t part = 0;
	if (budget > 0 && open > 0) {
		part = budget > reserved ? (budget - reserved) / open : 0;
		if (part == 0)
			part = 1; /* all reserved: nothing left to write */
	}
	if (budget > 0 && reserved > budget)
		DRIFT_WARN("collections: memory limits reserve %llu bytes, "
			   "more than the budget of %llu",
			   (unsigned long long)reserved,
			   (unsigned long long)budget);
	atomic_store(&cm->part, part);
}

/* Collection c's share of the budget now: its memory_limit, or the part
 * of those without one (0: none). */
static uint64_t share_of(const drift_collection *c)
{
	return c->cfg.memory_limit > 0 ? c->cfg.memory_limit
				       : atomic_load(&c->cm->part);
}

/* The share a new collection with cfg would get, or DRIFT_ELIMIT when the
 * budget has no room for it. Under cm->mu. */
static int share_of_new(drift_cm *cm, const drift_collection_config *cfg,
			uint64_t *share, drift_err *err)
{
	uint64_t budget = cm->o.memory_budget, reserved = cm->reserved,
		 open = cm->open;
	uint64_t left = budget > reserved ? budget - reserved : 0;
	if (cfg->memory_limit > 0) {
		if (budget > 0 && cfg->memory_limit > left)
			return drift_err_set(
				err, DRIFT_ELIMIT,
				"collection %s: memory_limit of %llu bytes is "
				"more than the node's memory budget has left "
				"(%llu of %llu bytes; memory_limits of other "
				"collections reserve %llu)",
				cfg->name,
				(unsigned long long)cfg->memory_limit,
				(unsigned long long)left,
				(unsigned long long)budget,
				(unsigned long long)reserved);
		*share = cfg->memory_limit;
		return 0;
	}
	if (budget == 0) {
		*share = 0;
		return 0;
	}
	if (left == 0)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "collection %s: the node's memory budget "
				     "of %llu bytes is reserved whole by the "
				     "memory_limits of other collections",
				     cfg->name, (unsigned long long)budget);
	*share = left / (open + 1);
	return 0;
}

/* The index in cm->all of the first collection whose name is >= name. */
static size_t lower(const drift_cm *cm, const char *name)
{
	size_t lo = 0, hi = cm->n;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (strcmp(cm->all[mid]->cfg.name, name) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Room in cm->all for n collections: 0 or DRIFT_ENOMEM. */
static int reserve(drift_cm *cm, size_t n)
{
	if (n <= cm->cap)
		return 0;
	size_t cap = cm->cap ? cm->cap * 2 : 64;
	while (cap < n)
		cap *= 2;
	drift_collection **a = drift_realloc(cm->all, cap * sizeof(*a));
	if (a == NULL)
		return DRIFT_ENOMEM;
	cm->all = a;
	cm->cap = cap;
	return 0;
}

static size_t name_slot(const drift_cm *cm, const char *name)
{
	return (size_t)drift_hash64_seeded(name, strlen(name), 0x6e616d65) &
	       (cm->tcap - 1);
}

static drift_collection *find(drift_cm *cm, const char *name)
{
	if (cm->unindexed || cm->tcap == 0) {
		size_t i = lower(cm, name);
		return i < cm->n && strcmp(cm->all[i]->cfg.name, name) == 0
			       ? cm->all[i]
			       : NULL;
	}
	for (drift_collection *c = cm->tbl[name_slot(cm, name)]; c != NULL;
	     c = c->hnext)
		if (strcmp(c->cfg.name, name) == 0)
			return c;
	return NULL;
}

/* Puts c in the name index, growing it to twice the collections. */
static void index_add(drift_cm *cm, drift_collection *c)
{
	if (cm->unindexed)
		return;
	if (cm->tn + 1 > cm->tcap) {
		size_t cap = cm->tcap ? cm->tcap * 2 : 64;
		drift_collection **t = drift_calloc(cap, sizeof(*t));
		if (t == NULL) {
			cm->unindexed = true; /* find scans the list */
			return;
		}
		drift_collection **old = cm->tbl;
		size_t ocap = cm->tcap;
		cm->tbl = t;
		cm->tcap = cap;
		for (size_t i = 0; i < ocap; i++)
			for (drift_collection *x = old[i], *nx; x != NULL;
			     x = nx) {
				nx = x->hnext;
				size_t k = name_slot(cm, x->cfg.name);
				x->hnext = t[k];
				t[k] = x;
			}
		drift_free(old);
	}
	size_t k = name_slot(cm, c->cfg.name);
	c->hnext = cm->tbl[k];
	cm->tbl[k] = c;
	cm->tn++;
}

static void index_del(drift_cm *cm, drift_collection *c)
{
	if (cm->unindexed || cm->tcap == 0)
		return;
	drift_collection **pp = &cm->tbl[name_slot(cm, c->cfg.name)];
	while (*pp != NULL && *pp != c)
		pp = &(*pp)->hnext;
	if (*pp == c) {
		*pp = c->hnext;
		cm->tn--;
	}
}

/* Lists c (the caller made room: reserve). */
static void link_sorted(drift_cm *cm, drift_collection *c)
{
	assert(cm->n < cm->cap);
	size_t at = lower(cm, c->cfg.name);
	memmove(&cm->all[at + 1], &cm->all[at],
		(cm->n - at) * sizeof(cm->all[0]));
	cm->all[at] = c;
	cm->n++;
	if (c->cfg.memory_limit > 0)
		cm->reserved += c->cfg.memory_limit;
	else
		cm->open++;
	index_add(cm, c);
}

static void unlink_sorted(drift_cm *cm, drift_collection *c)
{
	size_t at = lower(cm, c->cfg.name);
	assert(at < cm->n && cm->all[at] == c);
	memmove(&cm->all[at], &cm->all[at + 1],
		(cm->n - at - 1) * sizeof(cm->all[0]));
	cm->n--;
	if (c->cfg.memory_limit > 0)
		cm->reserved -= c->cfg.memory_limit;
	else
		cm->open--;
	index_del(cm, c);
}

/* After a drop, the pages the allocator's heaps hold free go back to the
 * system (malloc only gives back the top of a heap by itself). Drops
 * within TRIM_DELAY_NS of the first share one trim. */
#define TRIM_DELAY_NS (50ull * 1000000ull)

static void trim_fn(drift_janitor_task *t)
{
	(void)t;
	malloc_trim(0);
}

static drift_collection *new_collection(drift_cm *cm, const char *name)
{
	drift_collection *c = drift_calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	snprintf(c->cfg.name, sizeof(c->cfg.name), "%s", name);
	snprintf(c->dir, sizeof(c->dir), "%s/%s", cm->dir, name);
	atomic_init(&c->refs, 0);
	c->cm = cm;
	c->max_vectors = cm->o.max_vectors;
	return c;
}

/* The node's allocator (glibc malloc) keeps to memory that follows
 * content. Its mmap threshold starts at 128 KiB but grows to the largest
 * block freed (up to 32 MiB); past that, large blocks (a row cache's tag
 * table, a segment's buffers) come from its heaps, where calloc writes
 * every byte (resident at once, used or not) and a freed block stays
 * with the process. Fixed at 128 KiB, every larger block is a mapping of
 * its own: untouched pages cost nothing and free gives it all back. */
static void tune_allocator_once(void)
{
	mallopt(M_MMAP_THRESHOLD, 128 << 10);
}

static void tune_allocator(void)
{
	static pthread_once_t once = PTHREAD_ONCE_INIT;
	pthread_once(&once, tune_allocator_once);
}

int drift_cm_open(const char *data_dir, const drift_cm_opts *opts,
		  drift_cm **out, drift_err *err)
{
	drift_cm *cm = drift_calloc(1, sizeof(*cm));
	if (cm == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "collections");
	if (opts != NULL)
		cm->o = *opts;
	if (cm->o.memtable_rows == 0)
		cm->o.memtable_rows = 65536;
	if (cm->o.max_dim == 0 || cm->o.max_dim > DRIFT_COLLECTION_MAX_DIM)
		cm->o.max_dim = DRIFT_COLLECTION_MAX_DIM;
	if (strlen(data_dir) > PATHLEN - 256) {
		drift_free(cm);
		return drift_err_set(err, DRIFT_EINVAL, "data dir too long");
	}
	snprintf(cm->dir, sizeof(cm->dir), "%s/collections", data_dir);
	pthread_mutex_init(&cm->mu, NULL);
	pthread_cond_init(&cm->cv, NULL);
	tune_allocator();
	drift_janitor_task_init(&cm->trim, trim_fn);
	int rv = drift_fs_mkdir_p(drift_fs_posix(), cm->dir, err);
	if (rv == 0 && cm->o.janitor)
		rv = drift_janitor_new(cm->o.janitor_threads, &cm->janitor,
				       err);
	if (rv == 0)
		rv = drift_janitor_new(1, &cm->syncer, err);
	if (rv != 0) {
		drift_cm_close(cm);
		return rv;
	}
	DIR *d = opendir(cm->dir);
	if (d == NULL) {
		rv = drift_err_errno(err, errno, "opening %s", cm->dir);
		drift_cm_close(cm);
		return rv;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		const char *nm = de->d_name;
		if (strcmp(nm, ".") == 0 || strcmp(nm, "..") == 0)
			continue;
		char path[PATHLEN];
		snprintf(path, sizeof(path), "%s/%s", cm->dir, nm);
		if (nm[0] == '.') {
			/* A create or drop that a crash interrupted. */
			DRIFT_INFO("collections: removing leftover %s", path);
			rmtree(path);
			continue;
		}
		if (!drift_collection_name_ok(nm))
			continue;
		drift_collection *c = reserve(cm, cm->n + 1) == 0
					      ? new_collection(cm, nm)
					      : NULL;
		if (c == NULL) {
			DRIFT_ERROR("collection %s: out of memory at open", nm);
			continue;
		}
		drift_err cerr;
		drift_err_clear(&cerr);
		rv = read_conf(path, &c->cfg, &cerr);
		if (rv == 0 && strcmp(c->cfg.name, nm) != 0)
			rv = drift_err_set(&cerr, DRIFT_ECORRUPT,
					   "%s/collection.conf names \"%s\"",
					   path, c->cfg.name);
		bool conf_ok = rv == 0;
		if (rv == 0)
			rv = open_shards(cm, c, &cerr);
		snprintf(c->cfg.name, sizeof(c->cfg.name), "%s", nm);
		if (rv != 0) {
			DRIFT_ERROR("collection %s cannot be opened: %s", nm,
				    cerr.msg);
			c->broken =
				drift_strdup(cerr.msg[0] ? cerr.msg : "broken");
			/* A full disk (a shard's new WAL file) is no damage:
			 * the open is tried again once space is freed. */
			c->broken_rv = conf_ok && rv == DRIFT_ENOSPC
					       ? DRIFT_ENOSPC
					       : DRIFT_ECORRUPT;
			c->retry_ns = drift_now_ns() + RETRY_NS;
			c->avail_at = avail_bytes(c->dir);
		} else {
			DRIFT_INFO("collection %s: opened (%u shards, dim %u)",
				   nm, c->cfg.shards, c->cfg.dim);
		}
		link_sorted(cm, c);
	}
	closedir(d);
	drift_fs_fsync_dir(drift_fs_posix(), cm->dir, NULL);
	share_all(cm);
	*out = cm;
	return 0;
}

void drift_cm_close(drift_cm *cm)
{
	if (cm == NULL)
		return;
	for (size_t i = 0; i < cm->n; i++)
		free_collection(cm->all[i]);
	drift_free(cm->all);
	drift_free(cm->tbl);
	if (cm->janitor != NULL)
		drift_janitor_detach(cm->janitor, &cm->trim);
	drift_janitor_free(cm->janitor);
	drift_janitor_free(cm->syncer);
	pthread_mutex_destroy(&cm->mu);
	pthread_cond_destroy(&cm->cv);
	drift_free(cm);
}

int drift_cm_check(const drift_cm *cm, const drift_collection_config *in,
		   drift_collection_config *out, drift_err *err)
{
	drift_collection_config cfg = *in;
	if (!drift_collection_name_ok(cfg.name))
		return drift_err_set(err, DRIFT_EINVAL,
				     "collection name \"%s\" must match "
				     "[A-Za-z0-9_-]{1,64}",
				     cfg.name);
	if (cfg.dim < 1 || cfg.dim > cm->o.max_dim)
		return drift_err_set(err, DRIFT_EINVAL,
				     "dimension %u out of range 1..%u%s",
				     cfg.dim, cm->o.max_dim,
				     cm->o.max_dim < DRIFT_COLLECTION_MAX_DIM
					     ? " (this node's "
					       "limits.max_dimension)"
					     : "");
	if ((unsigned)cfg.metric > DRIFT_METRIC_COSINE)
		return drift_err_set(err, DRIFT_EINVAL, "unknown metric %d",
				     (int)cfg.metric);
	if ((unsigned)cfg.sync > DRIFT_WAL_NONE)
		return drift_err_set(err, DRIFT_EINVAL, "unknown wal_sync %d",
				     (int)cfg.sync);
	if (cfg.shards == 0)
		cfg.shards = 1;
	if (cfg.shards > DRIFT_COLLECTION_MAX_SHARDS)
		return drift_err_set(err, DRIFT_EINVAL,
				     "shards %u out of range 1..%u", cfg.shards,
				     DRIFT_COLLECTION_MAX_SHARDS);
	if (cfg.replication_factor == 0)
		cfg.replication_factor = 1;
	if (cfg.replication_factor > DRIFT_COLLECTION_MAX_RF)
		return drift_err_set(err, DRIFT_EINVAL,
				     "replication_factor %u out of range 1..%u",
				     cfg.replication_factor,
				     DRIFT_COLLECTION_MAX_RF);
	if (cfg.memtable_rows == 0)
		cfg.memtable_rows = cm->o.memtable_rows;
	if (cfg.memtable_rows < 16 || cfg.memtable_rows > (1u << 24))
		return drift_err_set(err, DRIFT_EINVAL,
				     "memtable_rows %u out of range 16..%u",
				     cfg.memtable_rows, 1u << 24);
	if (cfg.default_recall == 0)
		cfg.default_recall = 0.95f;
	if (!(cfg.default_recall > 0 && cfg.default_recall <= 1))
		return drift_err_set(err, DRIFT_EINVAL,
				     "default_recall %g out of range (0, 1]",
				     (double)cfg.default_recall);
	*out = cfg;
	return 0;
}

/* The shards of a new collection with cfg, laid out in dir
 * (drift_shard_prepare). */
static int prepare_shards(const char *dir, const drift_collection_config *cfg,
			  drift_err *err)
{
	for (uint32_t i = 0; i < cfg->shards; i++) {
		char sd[PATHLEN];
		snprintf(sd, sizeof(sd), "%s/shard-%u", dir, i);
		drift_shard_opts so = {
			.dir = sd, .dim = cfg->dim, .metric = cfg->metric};
		int rv = drift_shard_prepare(&so, err);
		if (rv != 0) {
			drift_err_wrap(err, rv, "collection %s", cfg->name);
			return rv;
		}
	}
	return 0;
}

/* Takes back a create that failed after its rename (its shards closed):
 * hidden again under tmp first, so that a crash midway leaves what the next
 * open removes, then removed. */
static void unmake(drift_cm *cm, const char *dir, const char *tmp)
{
	if (rename(dir, tmp) == 0) {
		drift_fs_fsync_dir(drift_fs_posix(), cm->dir, NULL);
		rmtree(tmp);
	} else {
		rmtree(dir);
	}
}

int drift_cm_create(drift_cm *cm, const drift_collection_config *in,
		    drift_err *err)
{
	drift_collection_config cfg;
	int rv = drift_cm_check(cm, in, &cfg, err);
	if (rv != 0)
		return rv;
	pthread_mutex_lock(&cm->mu);
	if (find(cm, cfg.name) != NULL) {
		rv = drift_err_set(err, DRIFT_EEXIST,
				   "collection \"%s\" already exists",
				   cfg.name);
		goto out;
	}
	uint64_t share = 0;
	if ((rv = share_of_new(cm, &cfg, &share, err)) != 0)
		goto out;
	if (reserve(cm, cm->n + 1) != 0) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "create");
		goto out;
	}
	char tmp[PATHLEN];
	snprintf(tmp, sizeof(tmp), "%s/.new-%s", cm->dir, cfg.name);
	rmtree(tmp);
	drift_collection *c = new_collection(cm, cfg.name);
	if (c == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "create");
		goto out;
	}
	c->cfg = cfg;
	/* Laid out in the hidden directory (the shards' directories and
	 * manifests, then the configuration, whose directory sync covers
	 * the shards' entries too), renamed into place, and only then
	 * opened: a crash before the rename leaves a hidden directory that
	 * the next open removes; after it, a complete collection. Opening
	 * once, where it stays, spares the WAL a file created and synced in
	 * the hidden directory and then re-created at the final path (a
	 * create took 9 fsyncs, 7 now). */
	if ((rv = drift_fs_mkdir_p(drift_fs_posix(), tmp, err)) != 0 ||
	    (rv = prepare_shards(tmp, &cfg, err)) != 0 ||
	    (rv = write_conf(tmp, &cfg, err)) != 0) {
		free_collection(c);
		rmtree(tmp);
		goto out;
	}
	char dir[PATHLEN];
	snprintf(dir, sizeof(dir), "%s/%s", cm->dir, cfg.name);
	snprintf(c->dir, sizeof(c->dir), "%s", dir);
	if (rename(tmp, dir) != 0) {
		rv = drift_err_errno(err, errno, "creating %s", dir);
		free_collection(c);
		rmtree(tmp);
		goto out;
	}
	if ((rv = drift_fs_fsync_dir(drift_fs_posix(), cm->dir, err)) != 0 ||
	    (rv = open_shards(cm, c, err)) != 0) {
		free_collection(c);
		unmake(cm, dir, tmp);
		goto out;
	}
	/* The memtables' arenas are taken whole at open: measured here. */
	uint64_t fixed = drift_collection_memory(c, NULL);
	if (share > 0 && fixed > share) {
		rv = drift_err_set(
			err, DRIFT_ELIMIT,
			"collection %s: its memtables alone take "
			"%llu bytes (%u shard%s of %u rows), more than "
			"its memory share of %llu bytes",
			cfg.name, (unsigned long long)fixed, cfg.shards,
			cfg.shards == 1 ? "" : "s", cfg.memtable_rows,
			(unsigned long long)share);
		free_collection(c);
		unmake(cm, dir, tmp);
		goto out;
	}
	link_sorted(cm, c);
	share_all(cm);
	drift_log_scope_target(cfg.name, -1);
	DRIFT_INFO("collection %s: created (dim %u, %s, %u shards)", cfg.name,
		   cfg.dim, metric_names[cfg.metric], cfg.shards);
	drift_log_scope_target(NULL, -1);
out:
	pthread_mutex_unlock(&cm->mu);
	return rv;
}

int drift_cm_drop(drift_cm *cm, const char *name, drift_err *err)
{
	pthread_mutex_lock(&cm->mu);
	drift_collection *c = find(cm, name);
	if (c == NULL) {
		pthread_mutex_unlock(&cm->mu);
		return drift_err_set(err, DRIFT_ENOENT,
				     "collection \"%s\" not found", name);
	}
	/* Unlinked: new requests no longer find it. */
	unlink_sorted(cm, c);
	c->dropped = true;
	share_all(cm);
	char gone[PATHLEN];
	snprintf(gone, sizeof(gone), "%s/.drop-%s", cm->dir, name);
	rmtree(gone);
	int rv = 0;
	if (rename(c->dir, gone) != 0 ||
	    drift_fs_fsync_dir(drift_fs_posix(), cm->dir, err) != 0) {
		rv = drift_err_errno(err, errno, "dropping %s", c->dir);
		link_sorted(cm, c);
		c->dropped = false;
		share_all(cm);
		pthread_mutex_unlock(&cm->mu);
		return rv;
	}
	while (atomic_load(&c->refs) > 0)
		pthread_cond_wait(&cm->cv, &cm->mu);
	pthread_mutex_unlock(&cm->mu);
	free_collection(c);
	rmtree(gone);
	/* The heaps' pages its small blocks left free go back: soon, on the
	 * Janitor, once for a run of drops (malloc_trim walks every heap: a
	 * drop among 10,000 loaded collections spent ~1.5 ms in it). */
	if (cm->janitor != NULL)
		drift_janitor_post(cm->janitor, &cm->trim, DRIFT_JANITOR_MAINT,
				   TRIM_DELAY_NS);
	else
		malloc_trim(0);
	DRIFT_INFO("collection %s: dropped", name);
	return 0;
}

/* A collection that a full disk kept from opening (a shard starts a new
 * WAL file when it opens) is opened again by the next request for it once
 * the filesystem has more room than when it failed, or RETRY_NS later.
 * Under cm->mu: other collections' requests wait for that open. */
static void retry_open(drift_cm *cm, drift_collection *c)
{
	if (c->broken_rv != DRIFT_ENOSPC)
		return;
	uint64_t avail = avail_bytes(c->dir);
	if (drift_now_ns() < c->retry_ns && avail <= c->avail_at)
		return;
	drift_err e;
	drift_err_clear(&e);
	if (open_shards(cm, c, &e) == 0) {
		DRIFT_INFO("collection %s: opened (space was freed)",
			   c->cfg.name);
		drift_free(c->broken);
		c->broken = NULL;
		c->broken_rv = 0;
		return;
	}
	char *m = drift_strdup(e.msg[0] ? e.msg : "cannot be opened");
	if (m != NULL) {
		drift_free(c->broken);
		c->broken = m;
	}
	if (e.code != DRIFT_ENOSPC)
		c->broken_rv = DRIFT_ECORRUPT;
	c->retry_ns = drift_now_ns() + RETRY_NS;
	c->avail_at = avail_bytes(c->dir);
}

int drift_cm_acquire(drift_cm *cm, const char *name, drift_collection **out,
		     drift_err *err)
{
	pthread_mutex_lock(&cm->mu);
	drift_collection *c = find(cm, name);
	int rv = 0;
	if (c != NULL && c->broken != NULL)
		retry_open(cm, c);
	if (c == NULL)
		rv = drift_err_set(err, DRIFT_ENOENT,
				   "collection \"%s\" not found", name);
	else if (c->broken != NULL && c->broken_rv == DRIFT_ENOSPC)
		rv = drift_err_set(err, DRIFT_ENOSPC,
				   "collection %s cannot be opened until space "
				   "is freed (no restart needed): %s",
				   name, c->broken);
	else if (c->broken != NULL)
		rv = drift_err_set(err, DRIFT_ECORRUPT, "%s", c->broken);
	else {
		atomic_fetch_add(&c->refs, 1);
		*out = c;
	}
	pthread_mutex_unlock(&cm->mu);
	/* The thread's log lines name the collection until the release (the
	 * name lives as long as the collection, which the reference keeps). */
	if (rv == 0)
		drift_log_scope_target(c->cfg.name, -1);
	return rv;
}

void drift_cm_release(drift_cm *cm, drift_collection *c)
{
	drift_log_scope_target(NULL, -1);
	pthread_mutex_lock(&cm->mu);
	atomic_fetch_sub(&c->refs, 1);
	pthread_cond_broadcast(&cm->cv);
	pthread_mutex_unlock(&cm->mu);
}

int drift_cm_list(drift_cm *cm, char ***names, size_t *n)
{
	pthread_mutex_lock(&cm->mu);
	size_t count = cm->n;
	char **a = drift_calloc(count ? count : 1, sizeof(char *));
	int rv = a == NULL ? DRIFT_ENOMEM : 0;
	for (size_t i = 0; i < count && rv == 0; i++)
		if ((a[i] = drift_strdup(cm->all[i]->cfg.name)) == NULL)
			rv = DRIFT_ENOMEM;
	pthread_mutex_unlock(&cm->mu);
	if (rv != 0) {
		for (size_t j = 0; a != NULL && j < count; j++)
			drift_free(a[j]);
		drift_free(a);
		return rv;
	}
	*names = a;
	*n = count;
	return 0;
}

/* ---- Data operations ---- */

const drift_collection_config *drift_collection_cfg(const drift_collection *c)
{
	return &c->cfg;
}

const char *drift_collection_dir(const drift_collection *c)
{
	return c->dir;
}

size_t drift_collection_max_batch(const drift_collection *c)
{
	/* A batch may land on one shard entirely. */
	return c->cfg.memtable_rows;
}

static uint32_t shard_of(const drift_collection *c, uint64_t id)
{
	return drift_shard_of_id(id, c->cfg.shards);
}

/* A batch over several shards is written shard by shard; each part is all
 * or nothing (its WAL record), but a full disk met by a later part would
 * leave the earlier parts applied. So such a batch first checks that the
 * filesystem has room for every part (payload plus a record header of 24
 * bytes and padding to 8, per shard) and is refused, nothing written, when
 * it has not. What this cannot close: space taken by another writer (or
 * process) between the check and the writes; the batch is then reported
 * failed with its earlier parts applied, and retrying it is safe (upserts
 * and deletes are idempotent). */
static int check_room(const drift_collection *c, size_t payload, drift_err *err)
{
	uint32_t ns = c->cfg.shards;
	if (ns <= 1)
		return 0;
	uint64_t need = payload + (uint64_t)ns * (24 + 8 + 8);
	uint64_t avail = avail_bytes(c->dir);
	if (avail >= need) /* UINT64_MAX, no figure: the writes say */
		return 0;
	return drift_err_set(err, DRIFT_ENOSPC,
			     "collection %s: %llu bytes free on the "
			     "filesystem of %s, the batch needs %llu for the "
			     "WAL records of its shards; nothing was written",
			     c->cfg.name, (unsigned long long)avail, c->dir,
			     (unsigned long long)need);
}

/* The checks of an upsert before anything is written: 0, or the error. */
static int upsert_checks(drift_collection *c, const uint64_t *ids,
			 const float *vecs, size_t n, drift_err *err)
{
	uint32_t dim = c->cfg.dim;
	if (n > drift_collection_max_batch(c))
		return drift_err_set(err, DRIFT_ELIMIT,
				     "batch of %zu points is over the limit of "
				     "%zu",
				     n, drift_collection_max_batch(c));
	/* Validation of every point before anything is written. */
	bool cosine = c->cfg.metric == DRIFT_METRIC_COSINE;
	for (size_t i = 0; i < n; i++) {
		const float *v = vecs + i * dim;
		double norm = 0;
		for (uint32_t j = 0; j < dim; j++) {
			if (!(v[j] >= -3.4028235e38f && v[j] <= 3.4028235e38f))
				return drift_err_set(
					err, DRIFT_EINVAL,
					"point %zu (id %llu): component %u is "
					"NaN or infinite",
					i, (unsigned long long)ids[i], j);
			norm += (double)v[j] * v[j];
		}
		if (cosine && norm == 0)
			return drift_err_set(err, DRIFT_EINVAL,
					     "point %zu (id %llu): a zero "
					     "vector has no direction (COSINE)",
					     i, (unsigned long long)ids[i]);
	}
	if (c->max_vectors > 0) {
		uint64_t live = drift_collection_stats(c, NULL);
		if (live + n > c->max_vectors)
			return drift_err_set(
				err, DRIFT_ELIMIT,
				"collection %s would exceed its "
				"limit of %llu vectors",
				c->cfg.name,
				(unsigned long long)c->max_vectors);
	}
	uint64_t limit = share_of(c);
	if (limit > 0) {
		uint64_t used = drift_collection_memory(c, NULL);
		uint64_t add = n * drift_shard_vec_bytes(dim);
		if (used + add > limit) {
			char why[128];
			if (c->cfg.memory_limit > 0)
				snprintf(why, sizeof(why), "its memory_limit");
			else
				snprintf(why, sizeof(why),
					 "its equal share of the node's "
					 "memory budget of %llu bytes",
					 (unsigned long long)
						 c->cm->o.memory_budget);
			return drift_err_set(
				err, DRIFT_ELIMIT,
				"collection %s: memory limit: it uses %llu "
				"bytes, these %zu points need %llu more, "
				"%s is %llu bytes (delete vectors, or create "
				"it with a larger memory_limit)",
				c->cfg.name, (unsigned long long)used, n,
				(unsigned long long)add, why,
				(unsigned long long)limit);
		}
	}
	return 0;
}

int drift_collection_upsert(drift_collection *c, const uint64_t *ids,
			    const float *vecs, size_t n, drift_err *err)
{
	uint32_t dim = c->cfg.dim, ns = c->cfg.shards;
	if (n == 0)
		return 0;
	int rv = upsert_checks(c, ids, vecs, n, err);
	if (rv != 0)
		return rv;
	if (ns == 1) {
		rv = drift_shard_upsert(gate_in(c, 0), ids, vecs, n, err);
		gate_out(c, 0);
		return rv;
	}
	rv = check_room(c, n * (8 + 4 * (size_t)dim) + ns * 8, err);
	if (rv != 0)
		return rv;
	uint64_t *pid = drift_mallocarray(n, 8);
	float *pv = drift_mallocarray(n * dim, sizeof(float));
	if (pid == NULL || pv == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "upsert");
		goto out;
	}
	for (uint32_t s = 0; s < ns && rv == 0; s++) {
		size_t m = 0;
		for (size_t i = 0; i < n; i++) {
			if (shard_of(c, ids[i]) != s)
				continue;
			pid[m] = ids[i];
			memcpy(pv + m * dim, vecs + i * dim,
			       dim * sizeof(float));
			m++;
		}
		if (m > 0) {
			rv = drift_shard_upsert(gate_in(c, s), pid, pv, m, err);
			gate_out(c, s);
		}
	}
out:
	drift_free(pid);
	drift_free(pv);
	return rv;
}

int drift_collection_delete(drift_collection *c, const uint64_t *ids, size_t n,
			    size_t *deleted, drift_err *err)
{
	uint32_t ns = c->cfg.shards;
	if (n > drift_collection_max_batch(c))
		return drift_err_set(
			err, DRIFT_ELIMIT,
			"batch of %zu ids is over the limit of %zu", n,
			drift_collection_max_batch(c));
	*deleted = 0;
	if (n == 0)
		return 0;
	int rv = check_room(c, n * 8 + ns * 4, err);
	if (rv != 0)
		return rv;
	uint64_t *part = drift_mallocarray(n, 8);
	if (part == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "delete");
	for (uint32_t s = 0; s < ns && rv == 0; s++) {
		size_t m = 0, d = 0;
		for (size_t i = 0; i < n; i++)
			if (shard_of(c, ids[i]) == s)
				part[m++] = ids[i];
		if (m > 0) {
			rv = drift_shard_delete(gate_in(c, s), part, m, &d,
						err);
			gate_out(c, s);
		}
		*deleted += d;
	}
	drift_free(part);
	return rv;
}

/* Whether every id belongs to shard (else err says which does not). */
static int ids_in_shard(const drift_collection *c, uint32_t shard,
			const uint64_t *ids, size_t n, drift_err *err)
{
	if (shard >= c->cfg.shards)
		return drift_err_set(err, DRIFT_EINVAL,
				     "collection %s has shards 0..%u, not %u",
				     c->cfg.name, c->cfg.shards - 1, shard);
	for (size_t i = 0; i < n; i++)
		if (shard_of(c, ids[i]) != shard)
			return drift_err_set(err, DRIFT_EINVAL,
					     "id %llu belongs to shard %u of "
					     "collection %s, not to shard %u",
					     (unsigned long long)ids[i],
					     shard_of(c, ids[i]), c->cfg.name,
					     shard);
	return 0;
}

int drift_collection_upsert_rec(drift_collection *c, uint32_t shard,
				const uint64_t *ids, const float *vecs,
				size_t n, drift_shard_record *rec,
				drift_err *err)
{
	memset(rec, 0, sizeof(*rec));
	int rv = ids_in_shard(c, shard, ids, n, err);
	if (rv == 0 && n > 0)
		rv = upsert_checks(c, ids, vecs, n, err);
	if (rv == 0 && n > 0) {
		rv = drift_shard_upsert_rec(gate_in(c, shard), ids, vecs, n,
					    rec, err);
		gate_out(c, shard);
	}
	return rv;
}

int drift_collection_delete_rec(drift_collection *c, uint32_t shard,
				const uint64_t *ids, size_t n, size_t *deleted,
				drift_shard_record *rec, drift_err *err)
{
	memset(rec, 0, sizeof(*rec));
	*deleted = 0;
	if (n > drift_collection_max_batch(c))
		return drift_err_set(
			err, DRIFT_ELIMIT,
			"batch of %zu ids is over the limit of %zu", n,
			drift_collection_max_batch(c));
	int rv = ids_in_shard(c, shard, ids, n, err);
	if (rv == 0 && n > 0) {
		rv = drift_shard_delete_rec(gate_in(c, shard), ids, n, deleted,
					    rec, err);
		gate_out(c, shard);
	}
	return rv;
}

int drift_collection_check_upsert(drift_collection *c, const uint64_t *ids,
				  const float *vecs, size_t n, drift_err *err)
{
	return n > 0 ? upsert_checks(c, ids, vecs, n, err) : 0;
}

int drift_collection_check_room(drift_collection *c, size_t n, bool del,
				drift_err *err)
{
	uint32_t ns = c->cfg.shards;
	return del ? check_room(c, n * 8 + ns * 4, err)
		   : check_room(c, n * (8 + 4 * (size_t)c->cfg.dim) + ns * 8,
				err);
}

drift_shard *drift_collection_shard_enter(drift_collection *c, uint32_t shard)
{
	return shard < c->cfg.shards ? gate_in(c, shard) : NULL;
}

void drift_collection_shard_leave(drift_collection *c, uint32_t shard)
{
	if (shard < c->cfg.shards)
		gate_out(c, shard);
}

int drift_collection_install_shard(drift_collection *c, uint32_t shard,
				   const char *staged, drift_err *err)
{
	if (shard >= c->cfg.shards)
		return drift_err_set(err, DRIFT_EINVAL,
				     "collection %s has no shard %u",
				     c->cfg.name, shard);
	char cur[PATHLEN], old[PATHLEN];
	snprintf(cur, sizeof(cur), "%s/shard-%u", c->dir, shard);
	snprintf(old, sizeof(old), "%s/.old-shard-%u", c->dir, shard);
	pthread_rwlock_wrlock(&c->gates[shard]);
	drift_shard_close(c->shards[shard]);
	c->shards[shard] = NULL;
	rmtree(old);
	int rv = 0;
	if (rename(cur, old) != 0)
		rv = drift_err_errno(err, errno, "moving %s aside", cur);
	else if (rename(staged, cur) != 0) {
		rv = drift_err_errno(err, errno, "moving %s to %s", staged,
				     cur);
		if (rename(old, cur) != 0)
			DRIFT_ERROR("collection %s: putting %s back: %s",
				    c->cfg.name, cur, strerror(errno));
	}
	if (rv == 0)
		rv = drift_fs_fsync_dir(drift_fs_posix(), c->dir, err);
	drift_err oerr;
	drift_err_clear(&oerr);
	int orv = open_shard(c->cm, c, shard, &oerr);
	if (orv != 0 && rv == 0) {
		/* The copy does not open: back to the shard it had. */
		rv = drift_err_set(err, orv, "the installed shard %s: %s", cur,
				   oerr.msg);
		char bad[PATHLEN + 8];
		snprintf(bad, sizeof(bad), "%s.bad", staged);
		if (rename(cur, bad) == 0 && rename(old, cur) == 0)
			orv = open_shard(c->cm, c, shard, &oerr);
		rmtree(bad);
	}
	if (orv != 0) {
		/* Neither opens: the collection cannot serve this shard. */
		DRIFT_ERROR("collection %s: shard %u does not open: %s",
			    c->cfg.name, shard, oerr.msg);
		pthread_mutex_lock(&c->cm->mu);
		if (c->broken == NULL) {
			c->broken = drift_strdup(oerr.msg);
			c->broken_rv = DRIFT_ECORRUPT;
		}
		pthread_mutex_unlock(&c->cm->mu);
		if (rv == 0)
			rv = drift_err_set(err, orv, "%s", oerr.msg);
	}
	pthread_rwlock_unlock(&c->gates[shard]);
	if (rv == 0)
		rmtree(old);
	return rv;
}

int drift_collection_get(drift_collection *c, uint64_t id, float *out)
{
	uint32_t s = shard_of(c, id);
	int rv = drift_shard_get(gate_in(c, s), id, out);
	gate_out(c, s);
	return rv;
}

int drift_collection_search(drift_collection *c, const float *q,
			    const drift_shard_search_opts *so, drift_hit *out,
			    size_t *n_out)
{
	uint32_t ns = c->cfg.shards;
	if (ns == 1) {
		int rv = drift_shard_search(gate_in(c, 0), q, so, out, n_out);
		gate_out(c, 0);
		return rv;
	}
	size_t k = so->k;
	drift_hit *all = drift_mallocarray(k * ns, sizeof(drift_hit));
	const drift_hit **lists = drift_calloc(ns, sizeof(*lists));
	size_t *lens = drift_calloc(ns, sizeof(*lens));
	int rv =
		all != NULL && lists != NULL && lens != NULL ? 0 : DRIFT_ENOMEM;
	for (uint32_t s = 0; s < ns && rv == 0; s++) {
		lists[s] = all + (size_t)s * k;
		rv = drift_shard_search(gate_in(c, s), q, so,
					all + (size_t)s * k, &lens[s]);
		gate_out(c, s);
	}
	if (rv == 0)
		rv = drift_merge_topk(lists, lens, ns, k, out, n_out);
	drift_free(lens);
	drift_free(lists);
	drift_free(all);
	return rv;
}

int drift_collection_search_shard(drift_collection *c, uint32_t shard,
				  const float *q,
				  const drift_shard_search_opts *so,
				  drift_hit *out, size_t *n_out)
{
	if (shard >= c->cfg.shards)
		return DRIFT_EINVAL;
	int rv = drift_shard_search(gate_in(c, shard), q, so, out, n_out);
	gate_out(c, shard);
	return rv;
}

int drift_collection_flush(drift_collection *c, drift_err *err)
{
	for (uint32_t s = 0; s < c->cfg.shards; s++) {
		int rv = drift_shard_flush(gate_in(c, s), err);
		gate_out(c, s);
		if (rv != 0)
			return drift_err_wrap(err, rv, "flushing shard %u", s);
	}
	return 0;
}

int drift_collection_flush_shard(drift_collection *c, uint32_t shard,
				 drift_err *err)
{
	if (shard >= c->cfg.shards)
		return drift_err_set(err, DRIFT_EINVAL,
				     "shard %u out of range (%u shards)", shard,
				     c->cfg.shards);
	int rv = drift_shard_flush(c->shards[shard], err);
	return rv != 0 ? drift_err_wrap(err, rv, "flushing shard %u", shard)
		       : 0;
}

uint64_t drift_collection_stats(drift_collection *c, drift_shard_stats *st)
{
	uint64_t live = 0;
	for (uint32_t s = 0; s < c->cfg.shards; s++) {
		drift_shard_stats one;
		drift_shard_stats_get(gate_in(c, s), &one);
		gate_out(c, s);
		live += one.live;
		if (st != NULL)
			st[s] = one;
	}
	return live;
}

uint64_t drift_collection_memory(drift_collection *c, uint64_t *limit)
{
	uint64_t used = 0;
	for (uint32_t s = 0; s < c->cfg.shards; s++) {
		used += drift_shard_memory(gate_in(c, s));
		gate_out(c, s);
	}
	if (limit != NULL)
		*limit = share_of(c);
	return used;
}
