#include "node/engine/engine_metrics.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/metrics.h"
#include "node/engine/janitor_metrics.h"

/* Bytes of the .drift files in dir (the shard's segments); a file the
 * Janitor removes meanwhile is skipped. -1 when dir cannot be read. */
static double segment_bytes(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return -1;
	double total = 0;
	struct dirent *e;
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		struct stat sb;
		if (n > 6 && strcmp(e->d_name + n - 6, ".drift") == 0 &&
		    fstatat(dirfd(d), e->d_name, &sb, 0) == 0)
			total += (double)sb.st_size;
	}
	closedir(d);
	return total;
}

static void emit_shard(drift_metrics_out *o, const char *coll,
		       const char *shard, const drift_shard_stats *st,
		       const char *cdir)
{
	const char *l[] = {"collection", "shard", "action"};
	const char *v[] = {coll, shard, NULL};
	const struct {
		const char *name, *help;
		double v;
	} g[] = {
		{"drift_shard_live_vectors",
		 "Live vectors of the shard (deletes subtracted).",
		 (double)st->live},
		{"drift_shard_l0_rows",
		 "Rows in the shard's memtables (active and immutable).",
		 st->l0_rows},
		{"drift_shard_l0_tombstones",
		 "Tombstones in the shard's memtables.", st->l0_tombstones},
		{"drift_shard_l1_vectors", "Vectors in the shard's L1 buckets.",
		 (double)st->l1_vectors},
		{"drift_shard_l1_buckets", "L1 buckets of the shard.",
		 st->l1_buckets},
		{"drift_shard_segments", "Live segment files of the shard.",
		 st->segments},
		{"drift_shard_wal_bytes", "Bytes of the shard's WAL files.",
		 (double)st->wal_bytes},
		{"drift_shard_wal_unflushed_ops",
		 "WAL records not yet durable in L1.",
		 st->wal_seq > st->flushed_seq
			 ? (double)(st->wal_seq - st->flushed_seq)
			 : 0},
		{"drift_shard_memory_bytes",
		 "The shard's memory estimate (memtables, L1, pending rows).",
		 (double)st->memory_bytes},
	};
	for (size_t i = 0; i < sizeof(g) / sizeof(g[0]); i++)
		drift_metrics_emit(o, DRIFT_METRIC_GAUGE, g[i].name, g[i].help,
				   l, v, 2, g[i].v);
	char dir[4096];
	double bytes = -1;
	if ((size_t)snprintf(dir, sizeof(dir), "%s/shard-%s/seg", cdir, shard) <
	    sizeof(dir))
		bytes = segment_bytes(dir);
	if (bytes >= 0)
		drift_metrics_emit(o, DRIFT_METRIC_GAUGE,
				   "drift_shard_l1_bytes",
				   "Bytes of the shard's L1 segment files on "
				   "disk.",
				   l, v, 2, bytes);
	const struct {
		const char *action;
		uint64_t n;
	} a[] = {{"flush", st->flushes},
		 {"split", st->splits},
		 {"merge", st->merges},
		 {"recenter", st->recenters},
		 {"compaction", st->compactions}};
	for (size_t i = 0; i < sizeof(a) / sizeof(a[0]); i++) {
		v[2] = a[i].action;
		drift_metrics_emit(o, DRIFT_METRIC_COUNTER,
				   "drift_janitor_actions_total",
				   "Janitor actions done, by kind.", l, v, 3,
				   (double)a[i].n);
	}
}

static void collect(drift_metrics_out *o, void *ctx)
{
	drift_cm *cm = ctx;
	char **names = NULL;
	size_t n = 0;
	if (drift_cm_list(cm, &names, &n) != 0)
		return;
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "drift_collections",
			   "Collections open on this node.", NULL, NULL, 0,
			   (double)n);
	for (size_t i = 0; i < n; i++) {
		drift_collection *c;
		drift_err err;
		const char *l[] = {"collection"};
		const char *v[] = {names[i]};
		int rv = drift_cm_acquire(cm, names[i], &c, &err);
		drift_metrics_emit(o, DRIFT_METRIC_GAUGE,
				   "drift_collection_broken",
				   "1 for a collection whose files are corrupt "
				   "(its requests fail with DATA_LOSS).",
				   l, v, 1, rv == DRIFT_ECORRUPT);
		if (rv != 0)
			continue;
		uint32_t shards = drift_collection_cfg(c)->shards;
		drift_shard_stats *st = drift_calloc(shards, sizeof(*st));
		if (st != NULL) {
			drift_collection_stats(c, st);
			for (uint32_t s = 0; s < shards; s++) {
				char sh[12];
				snprintf(sh, sizeof(sh), "%u", s);
				emit_shard(o, names[i], sh, &st[s],
					   drift_collection_dir(c));
			}
		}
		drift_free(st);
		uint64_t limit;
		uint64_t used = drift_collection_memory(c, &limit);
		drift_metrics_emit(o, DRIFT_METRIC_GAUGE,
				   "drift_collection_memory_bytes",
				   "Memory the collection uses (estimate).", l,
				   v, 1, (double)used);
		drift_metrics_emit(o, DRIFT_METRIC_GAUGE,
				   "drift_collection_memory_limit_bytes",
				   "The collection's memory share (0: none).",
				   l, v, 1, (double)limit);
		drift_cm_release(cm, c);
	}
	for (size_t i = 0; i < n; i++)
		drift_free(names[i]);
	drift_free(names);
}

int drift_engine_metrics_start(drift_cm *cm)
{
	drift_janitor_metrics_init();
	return drift_metrics_add_collector(drift_metrics_default(), collect,
					   cm);
}

void drift_engine_metrics_stop(drift_cm *cm)
{
	drift_metrics_remove_collector(drift_metrics_default(), collect, cm);
}
