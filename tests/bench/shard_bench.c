/*
 * shard-bench: the shard engine (node/engine/shard.h: WAL, HNSW memtable,
 * flush, L1, Janitor) for the harness's ingest scenario (tests/bench/README.md
 * describes the protocol). One JSON line per measurement on stdout.
 *
 *   shard-bench ingest BASE QUERY GT --dir DIR [--sync always|batch]
 *               [--threads N] [--batch B] [--memtable R] [--queries Q]
 *               [--rows N]
 *   shard-bench mixed BASE QUERY GT --dir DIR --rate VPS [--sync ...]
 *               [--threads N] [--batch B] [--memtable R] [--queries Q]
 *               [--idle-seconds S]
 *   shard-bench recover BASE --dir DIR [--sync ...] [--l1-rows N]
 *               [--threads N] [--batch B] [--memtable R]
 *   shard-bench churn BASE QUERY TRACE --dir DIR --results PREFIX
 *               [--seconds S] [--settle-seconds S] [--sync ...]
 *               [--threads N] [--batch B] [--memtable R] [--queries Q]
 *
 * --rows N uses the first N rows of BASE (GT must then be their exact
 * top-k); defaults: batch sync, a writer (or searcher) per core, batches of
 * 1000, the shard's memtable size, 1000 queries.
 *
 * ingest: N writer threads take batches of B base rows in order (ids are
 * row numbers) and upsert them, Janitor on; the clock runs from the first
 * upsert until drift_shard_flush has made everything durable in L1. Then
 * the state is checked (every row live and in L1, nothing left in L0, the
 * manifest covering the whole WAL) and recall@10 of Q queries measured
 * against GT (exact for the whole base).
 * mixed: one writer thread upserts the whole base at VPS vectors/s (batches
 * of B on a fixed schedule) while N search threads run the queries in a
 * loop; QPS and latency of the searches during the writes, then recall@10
 * of Q queries on the final state (the whole base is inserted, so GT is
 * exact), then S seconds of the same searches with no writer.
 * recover: a child process loads --l1-rows rows and flushes them (the L1
 * that recovery must read), then fills the memtable exactly (no rotation,
 * no flush) and reports the rows acknowledged; it is killed with SIGKILL.
 * The shard's files are then synced and dropped from the page cache
 * (posix_fadvise) and drift_shard_open timed (cold), the state checked
 * against what the child acknowledged, and a second open timed (warm).
 *
 * churn: loads the trace's first L rows (ids = rows) with N writers and
 * flushes; then one writer replays the trace's rounds (upserts of new ids
 * and of live ones, then deletes; the format is above cmd_churn) for S
 * seconds while N - 1 searchers (at least 1) run the queries in a loop;
 * flush; the first Q queries' top-10 ids go to PREFIX.end.i64 (raw int64,
 * Q x 10, -1 padded). Then every live id with id % 100 below the trace's
 * percentage is deleted, the shard flushed and left to its Janitor for up
 * to --settle-seconds (until its files and counters stop changing for
 * 2 s), and the queries' ids go to PREFIX.settled.i64. "space" lines give
 * live vectors, resident memory and the shard's bytes on disk after each
 * phase; a "churn" line the rates and search latency. The harness
 * computes recall from the trace (tests/bench/churn.py).
 *
 * DIR must not hold a shard; the harness removes it afterwards.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli/vecfile.h"
#include "common/clock.h"
#include "common/log.h"
#include "node/engine/shard.h"

#define MAX_THREADS 64

typedef struct matrix {
	float *v;
	size_t rows;
	uint32_t dim;
} matrix;

typedef struct config {
	const char *base, *query, *gt, *dir;
	enum drift_wal_sync sync;
	int threads;
	size_t batch;
	uint32_t memtable;
	size_t queries;
	double rate;
	double idle_seconds;
	size_t rows; /* use the first rows of BASE; 0: all */
	size_t l1_rows;
	bool l1_rows_set;
	const char *trace, *results; /* churn */
	double seconds, settle_seconds;
} config;

/* ---- Helpers ---- */

static void die(const char *what, const drift_err *err, int rv)
{
	fprintf(stderr, "shard-bench: %s: %s\n", what, drift_err_msg(err, rv));
	exit(1);
}

static void fail(const char *msg)
{
	fprintf(stderr, "shard-bench: %s\n", msg);
	exit(1);
}

static double since(uint64_t t0)
{
	return (double)(drift_now_ns() - t0) / 1e9;
}

static double cpu_seconds(void)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
	       (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static matrix load_f(const char *path, size_t max_rows)
{
	drift_vecfile *f;
	drift_err err;
	int rv = drift_vecfile_open(path, &f, &err);
	if (rv != 0)
		die("open", &err, rv);
	matrix m = {.rows = drift_vecfile_rows(f), .dim = drift_vecfile_dim(f)};
	m.v = malloc(m.rows * m.dim * sizeof(float) + 1);
	size_t n;
	rv = drift_vecfile_read(f, m.v, m.rows, &n, &err);
	if (rv != 0 || n != m.rows)
		die("read", &err, rv);
	drift_vecfile_close(f);
	if (max_rows > 0 && max_rows < m.rows)
		m.rows = max_rows;
	return m;
}

static int32_t *load_i(const char *path, size_t *rows, uint32_t *dim)
{
	drift_vecfile *f;
	drift_err err;
	int rv = drift_vecfile_open(path, &f, &err);
	if (rv != 0)
		die("open", &err, rv);
	*rows = drift_vecfile_rows(f);
	*dim = drift_vecfile_dim(f);
	int32_t *v = malloc(*rows * *dim * sizeof(int32_t) + 1);
	size_t n;
	rv = drift_vecfile_read_i32(f, v, *rows, &n, &err);
	if (rv != 0 || n != *rows)
		die("read", &err, rv);
	drift_vecfile_close(f);
	return v;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

/* The p-quantile of v (sorted in place); 0 for no samples. */
static double percentile(double *v, size_t n, double p)
{
	if (n == 0)
		return 0;
	qsort(v, n, sizeof(double), cmp_double);
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i];
}

static const char *sync_name(enum drift_wal_sync s)
{
	return s == DRIFT_WAL_ALWAYS  ? "always"
	       : s == DRIFT_WAL_BATCH ? "batch"
				      : "none";
}

static drift_shard *open_shard(const config *c, uint32_t dim, bool janitor)
{
	drift_shard_opts o = {.dir = c->dir,
			      .dim = dim,
			      .metric = DRIFT_METRIC_L2,
			      .sync = c->sync,
			      .memtable_rows = c->memtable,
			      .janitor = janitor,
			      .seed = 42};
	drift_shard *s;
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_shard_open(&o, &s, &err);
	if (rv != 0)
		die("open shard", &err, rv);
	return s;
}

/* Measurements start from an empty directory, never a previous shard. */
static void require_fresh(const char *dir)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/MANIFEST", dir);
	if (access(path, F_OK) == 0) {
		fprintf(stderr, "shard-bench: %s already holds a shard\n", dir);
		exit(1);
	}
}

/* ---- Writers ---- */

typedef struct writers {
	drift_shard *s;
	const matrix *base;
	size_t from, to, batch;
	atomic_size_t next;
	uint64_t *ids; /* ids[i] = i for the whole base */
	double *lat;   /* per batch: upsert seconds */
	atomic_size_t nlat;
} writers;

static void *writer_main(void *arg)
{
	writers *w = arg;
	for (;;) {
		size_t at = atomic_fetch_add(&w->next, w->batch);
		if (at >= w->to)
			return NULL;
		size_t n = w->to - at < w->batch ? w->to - at : w->batch;
		drift_err err;
		drift_err_clear(&err);
		uint64_t t0 = drift_now_ns();
		int rv = drift_shard_upsert(w->s, w->ids + at,
					    w->base->v + at * w->base->dim, n,
					    &err);
		if (rv != 0)
			die("upsert", &err, rv);
		w->lat[atomic_fetch_add(&w->nlat, 1)] = since(t0);
	}
}

/* Upserts base rows [from, to) with `threads` writers in batches; the
 * per-batch latencies go to w->lat. */
static void write_rows(writers *w, int threads)
{
	pthread_t t[MAX_THREADS];
	atomic_store(&w->next, w->from);
	for (int i = 0; i < threads; i++)
		if (pthread_create(&t[i], NULL, writer_main, w) != 0)
			fail("pthread_create");
	for (int i = 0; i < threads; i++)
		pthread_join(t[i], NULL);
}

static uint64_t *row_ids(size_t n)
{
	uint64_t *ids = malloc(n * sizeof(uint64_t) + 1);
	for (size_t i = 0; i < n; i++)
		ids[i] = i;
	return ids;
}

/* ---- Searching ---- */

static const drift_shard_search_opts search_opts = {.k = 10};

/* recall@10 of the first nq queries on s's current state against gt (the
 * exact top-gtdim of the whole base). */
static double recall10(drift_shard *s, const matrix *q, size_t nq,
		       const int32_t *gt, uint32_t gtdim)
{
	double sum = 0;
	for (size_t i = 0; i < nq; i++) {
		drift_hit hits[10];
		size_t n = 0;
		if (drift_shard_search(s, q->v + i * q->dim, &search_opts, hits,
				       &n) != 0)
			fail("search failed");
		int found = 0;
		for (size_t a = 0; a < 10 && a < gtdim; a++)
			for (size_t b = 0; b < n; b++)
				if (hits[b].id == (uint64_t)gt[i * gtdim + a]) {
					found++;
					break;
				}
		sum += found / 10.0;
	}
	return nq ? sum / (double)nq : 0;
}

/* Checks that s holds exactly base rows [0, rows), all in L1 and durable. */
static void check_flushed(drift_shard *s, size_t rows)
{
	drift_shard_stats st;
	drift_shard_stats_get(s, &st);
	if (st.live != rows || st.l1_vectors != rows || st.l0_rows != 0 ||
	    st.flushed_seq != st.wal_seq) {
		fprintf(stderr,
			"shard-bench: after the flush: live %llu, L1 %llu, "
			"L0 rows %u, flushed seq %llu of %llu (expected %zu "
			"rows, all in L1)\n",
			(unsigned long long)st.live,
			(unsigned long long)st.l1_vectors, st.l0_rows,
			(unsigned long long)st.flushed_seq,
			(unsigned long long)st.wal_seq, rows);
		exit(1);
	}
}

/* ---- ingest ---- */

static uint64_t rss_bytes(void);

static int cmd_ingest(const config *c)
{
	matrix base = load_f(c->base, c->rows), q = load_f(c->query, 0);
	size_t gtn;
	uint32_t gtd;
	int32_t *gt = load_i(c->gt, &gtn, &gtd);
	size_t nq = c->queries < q.rows ? c->queries : q.rows;
	nq = nq < gtn ? nq : gtn;
	require_fresh(c->dir);
	uint64_t rss_start = rss_bytes();
	drift_shard *s = open_shard(c, base.dim, true);
	size_t nbatches = (base.rows + c->batch - 1) / c->batch;
	writers w = {.s = s,
		     .base = &base,
		     .from = 0,
		     .to = base.rows,
		     .batch = c->batch,
		     .ids = row_ids(base.rows),
		     .lat = malloc(nbatches * sizeof(double) + 1)};
	double cpu0 = cpu_seconds();
	uint64_t t0 = drift_now_ns();
	write_rows(&w, c->threads);
	double acked = since(t0);
	uint64_t t1 = drift_now_ns();
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_shard_flush(s, &err);
	if (rv != 0)
		die("flush", &err, rv);
	double flush_s = since(t1), total = since(t0);
	double cpu = cpu_seconds() - cpu0;
	/* Resident memory of the flushed shard, once its Janitor has had
	 * two seconds (the memory bench compares it with drift-node's). */
	sleep(2);
	uint64_t rss_flushed = rss_bytes();
	drift_shard_stats st;
	drift_shard_stats_get(s, &st);
	check_flushed(s, base.rows);
	double r = recall10(s, &q, nq, gt, gtd);
	size_t nl = atomic_load(&w.nlat);
	printf("{\"event\": \"ingest\", \"system\": \"drift-shard\", "
	       "\"sync\": \"%s\", \"n\": %zu, \"threads\": %d, "
	       "\"batch\": %zu, \"memtable_rows\": %u, "
	       "\"upserts_s\": %.3f, \"flush_s\": %.3f, \"build_s\": %.3f, "
	       "\"vectors_per_s\": %.1f, \"cpu_s\": %.2f, "
	       "\"batch_p50_ms\": %.3f, \"batch_p99_ms\": %.3f, "
	       "\"flushes\": %llu, \"splits\": %llu, \"merges\": %llu, "
	       "\"recenters\": %llu, \"l1_buckets\": %u, \"segments\": %u, "
	       "\"recall10\": %.4f, \"queries\": %zu, "
	       "\"rss_start_bytes\": %llu, \"rss_flushed_bytes\": %llu}\n",
	       sync_name(c->sync), base.rows, c->threads, c->batch,
	       c->memtable ? c->memtable : 65536, acked, flush_s, total,
	       (double)base.rows / total, cpu, 1e3 * percentile(w.lat, nl, 0.5),
	       1e3 * percentile(w.lat, nl, 0.99),
	       (unsigned long long)st.flushes, (unsigned long long)st.splits,
	       (unsigned long long)st.merges, (unsigned long long)st.recenters,
	       st.l1_buckets, st.segments, r, nq, (unsigned long long)rss_start,
	       (unsigned long long)rss_flushed);
	fflush(stdout);
	drift_shard_close(s);
	free(w.ids);
	free(w.lat);
	free(base.v);
	free(q.v);
	free(gt);
	return 0;
}

/* ---- mixed ---- */

typedef struct searcher {
	drift_shard *s;
	const matrix *q;
	atomic_bool *stop;
	size_t first; /* query to start from (threads start apart) */
	double *lat;
	size_t n, cap;
} searcher;

static void *searcher_main(void *arg)
{
	searcher *t = arg;
	size_t i = t->first;
	while (!atomic_load(t->stop)) {
		drift_hit hits[10];
		size_t n;
		uint64_t t0 = drift_now_ns();
		if (drift_shard_search(t->s, t->q->v + i * t->q->dim,
				       &search_opts, hits, &n) != 0)
			fail("search failed");
		if (t->n == t->cap) {
			t->cap = t->cap ? 2 * t->cap : 4096;
			t->lat = realloc(t->lat, t->cap * sizeof(double));
			if (t->lat == NULL)
				fail("out of memory");
		}
		t->lat[t->n++] = since(t0);
		i = (i + 1) % t->q->rows;
	}
	return NULL;
}

typedef struct paced {
	drift_shard *s;
	const matrix *base;
	uint64_t *ids;
	size_t batch;
	double rate; /* vectors per second */
	double seconds, behind_s;
} paced;

/* Upserts the whole base, batch i at start + i * batch / rate (open loop:
 * a late batch is sent at once, and how late is summed in behind_s). */
static void *paced_main(void *arg)
{
	paced *p = arg;
	uint64_t t0 = drift_now_ns();
	for (size_t at = 0, i = 0; at < p->base->rows; at += p->batch, i++) {
		uint64_t due = t0 + (uint64_t)((double)at / p->rate * 1e9);
		uint64_t now = drift_now_ns();
		if (now < due) {
			struct timespec ts = {
				.tv_sec = (time_t)((due - now) / 1000000000u),
				.tv_nsec = (long)((due - now) % 1000000000u)};
			nanosleep(&ts, NULL);
		} else {
			p->behind_s += (double)(now - due) / 1e9;
		}
		size_t n = p->base->rows - at < p->batch ? p->base->rows - at
							 : p->batch;
		drift_err err;
		drift_err_clear(&err);
		int rv = drift_shard_upsert(p->s, p->ids + at,
					    p->base->v + at * p->base->dim, n,
					    &err);
		if (rv != 0)
			die("upsert", &err, rv);
	}
	p->seconds = since(t0);
	return NULL;
}

/* Runs `threads` searchers until *stop (set by the caller); returns their
 * latencies merged (caller frees) and the count. */
typedef struct search_run {
	searcher t[MAX_THREADS];
	pthread_t th[MAX_THREADS];
	atomic_bool stop;
	int threads;
} search_run;

static void searches_start(search_run *r, drift_shard *s, const matrix *q,
			   int threads)
{
	memset(r, 0, sizeof(*r));
	atomic_init(&r->stop, false);
	r->threads = threads;
	for (int i = 0; i < threads; i++) {
		r->t[i] = (searcher){.s = s,
				     .q = q,
				     .stop = &r->stop,
				     .first = q->rows * (size_t)i /
					      (size_t)threads};
		if (pthread_create(&r->th[i], NULL, searcher_main, &r->t[i]) !=
		    0)
			fail("pthread_create");
	}
}

static double *searches_stop(search_run *r, size_t *n)
{
	atomic_store(&r->stop, true);
	size_t total = 0;
	for (int i = 0; i < r->threads; i++) {
		pthread_join(r->th[i], NULL);
		total += r->t[i].n;
	}
	double *all = malloc(total * sizeof(double) + 1);
	size_t at = 0;
	for (int i = 0; i < r->threads; i++) {
		memcpy(all + at, r->t[i].lat, r->t[i].n * sizeof(double));
		at += r->t[i].n;
		free(r->t[i].lat);
	}
	*n = total;
	return all;
}

static int cmd_mixed(const config *c)
{
	if (!(c->rate > 0))
		fail("mixed needs --rate VPS");
	matrix base = load_f(c->base, c->rows), q = load_f(c->query, 0);
	size_t gtn;
	uint32_t gtd;
	int32_t *gt = load_i(c->gt, &gtn, &gtd);
	size_t nq = c->queries < q.rows ? c->queries : q.rows;
	nq = nq < gtn ? nq : gtn;
	require_fresh(c->dir);
	drift_shard *s = open_shard(c, base.dim, true);
	paced p = {.s = s,
		   .base = &base,
		   .ids = row_ids(base.rows),
		   .batch = c->batch,
		   .rate = c->rate};
	search_run sr;
	uint64_t t0 = drift_now_ns();
	searches_start(&sr, s, &q, c->threads);
	pthread_t wt;
	if (pthread_create(&wt, NULL, paced_main, &p) != 0)
		fail("pthread_create");
	pthread_join(wt, NULL);
	size_t n;
	double *lat = searches_stop(&sr, &n);
	double window = since(t0);
	double qps = (double)n / window;
	double p50 = percentile(lat, n, 0.5), p99 = percentile(lat, n, 0.99);
	free(lat);
	drift_shard_stats st;
	drift_shard_stats_get(s, &st);
	if (st.live != base.rows) {
		fprintf(stderr,
			"shard-bench: %llu live after the writes, "
			"expected %zu\n",
			(unsigned long long)st.live, base.rows);
		exit(1);
	}
	double r = recall10(s, &q, nq, gt, gtd);
	/* The same searches on the same state with no writer. */
	uint64_t t1 = drift_now_ns();
	searches_start(&sr, s, &q, c->threads);
	while (since(t1) < c->idle_seconds) {
		struct timespec ts = {.tv_nsec = 50000000};
		nanosleep(&ts, NULL);
	}
	size_t ni;
	double *ilat = searches_stop(&sr, &ni);
	double iwin = since(t1);
	printf("{\"event\": \"mixed\", \"system\": \"drift-shard\", "
	       "\"sync\": \"%s\", \"n\": %zu, \"search_threads\": %d, "
	       "\"writer_threads\": 1, \"batch\": %zu, "
	       "\"target_vps\": %.1f, \"write_vps\": %.1f, "
	       "\"behind_s\": %.3f, \"seconds\": %.3f, \"searches\": %zu, "
	       "\"qps\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
	       "\"recall10\": %.4f, \"queries\": %zu, \"l0_rows\": %u, "
	       "\"flushes\": %llu, \"idle_qps\": %.1f, "
	       "\"idle_p50_ms\": %.3f, \"idle_p99_ms\": %.3f}\n",
	       sync_name(c->sync), base.rows, c->threads, c->batch, c->rate,
	       (double)base.rows / p.seconds, p.behind_s, window, n, qps,
	       1e3 * p50, 1e3 * p99, r, nq, st.l0_rows,
	       (unsigned long long)st.flushes, (double)ni / iwin,
	       1e3 * percentile(ilat, ni, 0.5),
	       1e3 * percentile(ilat, ni, 0.99));
	fflush(stdout);
	free(ilat);
	drift_shard_close(s);
	free(p.ids);
	free(base.v);
	free(q.v);
	free(gt);
	return 0;
}

/* ---- recover ---- */

/* Syncs every file under dir and drops its pages from the page cache, so
 * that the open reads them from the disk. */
static void drop_cache(const char *dir)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct stat sb;
		if (stat(path, &sb) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			drop_cache(path);
			continue;
		}
		int fd = open(path, O_RDONLY);
		if (fd < 0)
			continue;
		fdatasync(fd);
		posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED);
		close(fd);
	}
	closedir(d);
}

/* The child: L1 of rows [0, l1_rows) flushed, then the memtable filled
 * exactly with the rows after; writes the acknowledged row count to fd and
 * waits to be killed. */
static void recover_child(const config *c, const matrix *base, size_t l1_rows,
			  uint32_t mem, int fd)
{
	drift_shard *s = open_shard(c, base->dim, true);
	size_t end = l1_rows + mem;
	writers w = {.s = s,
		     .base = base,
		     .from = 0,
		     .to = l1_rows,
		     .batch = c->batch,
		     .ids = row_ids(end),
		     .lat = malloc((end / c->batch + 2) * sizeof(double))};
	if (l1_rows > 0) {
		write_rows(&w, c->threads);
		drift_err err;
		drift_err_clear(&err);
		int rv = drift_shard_flush(s, &err);
		if (rv != 0)
			die("flush", &err, rv);
	}
	/* Batches that add up to the memtable exactly: no rotation. */
	atomic_store(&w.nlat, 0);
	w.from = l1_rows;
	w.to = end;
	write_rows(&w, c->threads);
	uint64_t acked = end;
	if (write(fd, &acked, sizeof(acked)) != (ssize_t)sizeof(acked))
		_exit(1);
	for (;;)
		pause();
}

static int cmd_recover(const config *c)
{
	matrix base = load_f(c->base, c->rows);
	uint32_t mem = c->memtable ? c->memtable : 65536;
	if (mem > base.rows)
		fail("the base set is smaller than the memtable");
	size_t l1_rows = c->l1_rows_set ? c->l1_rows : base.rows - mem;
	if (l1_rows + mem > base.rows)
		fail("--l1-rows plus the memtable is more than the base set");
	require_fresh(c->dir);
	int fds[2];
	if (pipe(fds) != 0)
		fail("pipe");
	fflush(stdout);
	pid_t pid = fork();
	if (pid < 0)
		fail("fork");
	if (pid == 0) {
		close(fds[0]);
		recover_child(c, &base, l1_rows, mem, fds[1]);
	}
	close(fds[1]);
	uint64_t acked = 0;
	ssize_t got = read(fds[0], &acked, sizeof(acked));
	close(fds[0]);
	kill(pid, SIGKILL);
	int status;
	waitpid(pid, &status, 0);
	if (got != (ssize_t)sizeof(acked))
		fail("the child died before filling the memtable");
	if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL)
		fail("the child did not die of SIGKILL");
	drop_cache(c->dir);
	uint64_t t0 = drift_now_ns();
	drift_shard *s = open_shard(c, base.dim, false);
	double cold = since(t0);
	drift_shard_stats st;
	drift_shard_stats_get(s, &st);
	if (st.live != acked) {
		fprintf(stderr,
			"shard-bench: %llu rows acknowledged before the kill, "
			"%llu live after recovery\n",
			(unsigned long long)acked, (unsigned long long)st.live);
		exit(1);
	}
	/* Every replayed row reads back as written. */
	float *v = malloc(base.dim * sizeof(float));
	for (size_t i = l1_rows; i < acked; i++)
		if (drift_shard_get(s, i, v) != 0 ||
		    memcmp(v, base.v + i * base.dim,
			   base.dim * sizeof(float)) != 0)
			fail("a replayed row reads back different");
	free(v);
	drift_shard_close(s);
	/* A second open replays the same WAL from the page cache. */
	t0 = drift_now_ns();
	s = open_shard(c, base.dim, false);
	double warm = since(t0);
	drift_shard_stats st2;
	drift_shard_stats_get(s, &st2);
	drift_shard_close(s);
	if (st2.live != acked)
		fail("the second open lost rows");
	printf("{\"event\": \"recover\", \"system\": \"drift-shard\", "
	       "\"sync\": \"%s\", \"l1_vectors\": %llu, "
	       "\"rows_replayed\": %u, \"acked\": %llu, \"wal_bytes\": %llu, "
	       "\"open_cold_s\": %.3f, \"open_warm_s\": %.3f, "
	       "\"replay_rows_per_s\": %.1f}\n",
	       sync_name(c->sync), (unsigned long long)st.l1_vectors,
	       st.l0_rows, (unsigned long long)acked,
	       (unsigned long long)st.wal_bytes, cold, warm,
	       (double)st.l0_rows / cold);
	fflush(stdout);
	free(base.v);
	return 0;
}

/* ---- churn ---- */

/*
 * The churn trace (written by tests/bench/churn.py, replayed the same way
 * by every system): little-endian int64 throughout. Header of 8 values:
 * magic CHURN_MAGIC, version 1, load_rows L, rounds R, upserts per round
 * B, deletes per round D, pool rows N (rows of BASE it draws from),
 * final delete percentage P. Then R rounds, each B upsert ids, B row
 * numbers (the vector of an upsert is BASE row `row`), D delete ids. The
 * load is ids 0..L-1 with rows 0..L-1. A round's upserts come before its
 * deletes; its delete ids are distinct from its upsert ids.
 */
#define CHURN_MAGIC 0x4e52554843544644LL /* "DFTCHURN" */

typedef struct trace {
	int64_t load, rounds, b, d, pool, pct;
	int64_t *data; /* rounds * (2b + d) */
} trace;

static trace load_trace(const char *path)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail("cannot open the churn trace");
	int64_t h[8];
	if (fread(h, sizeof(int64_t), 8, f) != 8 || h[0] != CHURN_MAGIC ||
	    h[1] != 1)
		fail("not a churn trace (version 1)");
	trace t = {.load = h[2],
		   .rounds = h[3],
		   .b = h[4],
		   .d = h[5],
		   .pool = h[6],
		   .pct = h[7]};
	size_t n = (size_t)(t.rounds * (2 * t.b + t.d));
	t.data = malloc(n * sizeof(int64_t) + 1);
	if (t.data == NULL || fread(t.data, sizeof(int64_t), n, f) != n)
		fail("short churn trace");
	fclose(f);
	return t;
}

static int64_t *round_at(const trace *t, int64_t r)
{
	return t->data + r * (2 * t->b + t->d);
}

/* Resident bytes now (/proc/self/statm). */
static uint64_t rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "r");
	unsigned long size = 0, res = 0;
	if (f != NULL) {
		if (fscanf(f, "%lu %lu", &size, &res) != 2)
			res = 0;
		fclose(f);
	}
	return (uint64_t)res * (uint64_t)sysconf(_SC_PAGESIZE);
}

typedef struct disk_use {
	uint64_t bytes, wal, seg;
	unsigned files, nseg;
	uint64_t seg_size[32]; /* the first segment files' sizes */
} disk_use;

/* Apparent bytes of every file under dir; wal/ and seg/ also apart. */
static void disk_walk(const char *dir, int part, disk_use *u)
{
	DIR *d = opendir(dir);
	if (d == NULL)
		return;
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		char path[4096];
		snprintf(path, sizeof(path), "%s/%s", dir, de->d_name);
		struct stat sb;
		if (stat(path, &sb) != 0)
			continue;
		if (S_ISDIR(sb.st_mode)) {
			int sub = strcmp(de->d_name, "wal") == 0   ? 1
				  : strcmp(de->d_name, "seg") == 0 ? 2
								   : part;
			disk_walk(path, sub, u);
			continue;
		}
		u->bytes += (uint64_t)sb.st_size;
		u->files++;
		if (part == 1)
			u->wal += (uint64_t)sb.st_size;
		else if (part == 2) {
			u->seg += (uint64_t)sb.st_size;
			if (u->nseg < 32)
				u->seg_size[u->nseg++] = (uint64_t)sb.st_size;
		}
	}
	closedir(d);
}

/* One "space" line: live vectors, resident memory (as is, and after
 * malloc_trim gave freed heap back) and disk of the shard. */
static void report_space(drift_shard *s, const char *dir, const char *phase,
			 uint64_t live_expected)
{
	drift_shard_stats st = {0};
	if (s != NULL)
		drift_shard_stats_get(s, &st);
	uint64_t rss = rss_bytes();
	malloc_trim(0);
	uint64_t trimmed = rss_bytes();
	disk_use u = {0};
	disk_walk(dir, 0, &u);
	char segs[32 * 24] = "";
	for (unsigned i = 0, at = 0; i < u.nseg && at < sizeof(segs) - 24; i++)
		at += (unsigned)snprintf(segs + at, sizeof(segs) - at, "%s%llu",
					 i ? ", " : "",
					 (unsigned long long)u.seg_size[i]);
	printf("{\"event\": \"space\", \"system\": \"drift-shard\", "
	       "\"phase\": \"%s\", \"live\": %llu, \"live_expected\": %llu, "
	       "\"rss_bytes\": %llu, \"rss_trimmed_bytes\": %llu, "
	       "\"disk_bytes\": %llu, \"wal_bytes\": %llu, "
	       "\"seg_bytes\": %llu, \"files\": %u, \"segments\": %u, "
	       "\"l0_rows\": %u, \"l1_vectors\": %llu, \"l1_buckets\": %u, "
	       "\"flushes\": %llu, \"splits\": %llu, \"merges\": %llu, "
	       "\"recenters\": %llu, \"seg_file_bytes\": [%s]}\n",
	       phase, (unsigned long long)st.live,
	       (unsigned long long)live_expected, (unsigned long long)rss,
	       (unsigned long long)trimmed, (unsigned long long)u.bytes,
	       (unsigned long long)u.wal, (unsigned long long)u.seg, u.files,
	       st.segments, st.l0_rows, (unsigned long long)st.l1_vectors,
	       st.l1_buckets, (unsigned long long)st.flushes,
	       (unsigned long long)st.splits, (unsigned long long)st.merges,
	       (unsigned long long)st.recenters, segs);
	fflush(stdout);
}

typedef struct churner {
	drift_shard *s;
	const matrix *base;
	const trace *t;
	int64_t *row_of; /* id -> base row, -1: not live */
	uint64_t live;
	double seconds; /* time bound */
	int64_t rounds; /* done */
	double up_s, del_s, window;
} churner;

static void *churn_main(void *arg)
{
	churner *c = arg;
	const trace *t = c->t;
	uint32_t dim = c->base->dim;
	float *vecs = malloc((size_t)t->b * dim * sizeof(float) + 1);
	uint64_t *ids = malloc((size_t)(t->b + t->d) * sizeof(uint64_t) + 1);
	uint64_t t0 = drift_now_ns();
	for (int64_t r = 0; r < t->rounds && since(t0) < c->seconds; r++) {
		const int64_t *up = round_at(t, r), *rows = up + t->b,
			      *del = rows + t->b;
		for (int64_t i = 0; i < t->b; i++) {
			ids[i] = (uint64_t)up[i];
			memcpy(vecs + (size_t)i * dim,
			       c->base->v + (size_t)rows[i] * dim,
			       dim * sizeof(float));
		}
		drift_err err;
		drift_err_clear(&err);
		uint64_t a = drift_now_ns();
		int rv =
			drift_shard_upsert(c->s, ids, vecs, (size_t)t->b, &err);
		if (rv != 0)
			die("upsert", &err, rv);
		uint64_t b = drift_now_ns();
		for (int64_t i = 0; i < t->b; i++) {
			if (c->row_of[up[i]] < 0)
				c->live++;
			c->row_of[up[i]] = rows[i];
		}
		for (int64_t i = 0; i < t->d; i++)
			ids[i] = (uint64_t)del[i];
		size_t gone = 0;
		rv = drift_shard_delete(c->s, ids, (size_t)t->d, &gone, &err);
		if (rv != 0)
			die("delete", &err, rv);
		for (int64_t i = 0; i < t->d; i++) {
			if (c->row_of[del[i]] >= 0)
				c->live--;
			c->row_of[del[i]] = -1;
		}
		c->up_s += (double)(b - a) / 1e9;
		c->del_s += since(b);
		c->rounds = r + 1;
	}
	c->window = since(t0);
	free(vecs);
	free(ids);
	return NULL;
}

/* The first nq queries, k=10, one thread: ids into out (nq x 10, -1 for
 * fewer hits), written raw to path. */
static void dump_results(drift_shard *s, const matrix *q, size_t nq,
			 const char *path)
{
	int64_t *out = malloc(nq * 10 * sizeof(int64_t) + 1);
	for (size_t i = 0; i < nq; i++) {
		drift_hit hits[10];
		size_t n = 0;
		if (drift_shard_search(s, q->v + i * q->dim, &search_opts, hits,
				       &n) != 0)
			fail("search failed");
		for (size_t j = 0; j < 10; j++)
			out[i * 10 + j] = j < n ? (int64_t)hits[j].id : -1;
	}
	FILE *f = fopen(path, "wb");
	if (f == NULL || fwrite(out, sizeof(int64_t), nq * 10, f) != nq * 10 ||
	    fclose(f) != 0)
		fail("cannot write the results");
	free(out);
}

/* Waits up to `seconds` for the Janitor to finish what the deletes left
 * (merges, segment deletion): until the shard's files and stats have not
 * changed for 2 s. Returns the seconds waited. */
static double settle(drift_shard *s, const char *dir, double seconds)
{
	uint64_t t0 = drift_now_ns(), stable_since = t0;
	disk_use last = {0};
	disk_walk(dir, 0, &last);
	drift_shard_stats lst;
	drift_shard_stats_get(s, &lst);
	while (since(t0) < seconds) {
		struct timespec ts = {.tv_nsec = 250000000};
		nanosleep(&ts, NULL);
		disk_use u = {0};
		disk_walk(dir, 0, &u);
		drift_shard_stats st;
		drift_shard_stats_get(s, &st);
		if (u.bytes != last.bytes || u.files != last.files ||
		    st.merges != lst.merges || st.splits != lst.splits ||
		    st.recenters != lst.recenters ||
		    st.segments != lst.segments) {
			stable_since = drift_now_ns();
			last = u;
			lst = st;
		} else if (since(stable_since) >= 2.0) {
			break;
		}
	}
	return since(t0);
}

static int cmd_churn(const config *c)
{
	if (c->trace == NULL || c->results == NULL)
		fail("churn needs TRACE and --results PREFIX");
	uint64_t rss0 = rss_bytes();
	trace t = load_trace(c->trace);
	matrix base = load_f(c->base, 0), q = load_f(c->query, 0);
	if (t.pool > (int64_t)base.rows || t.load > t.pool)
		fail("the trace needs more base rows");
	size_t nq = c->queries < q.rows ? c->queries : q.rows;
	int64_t max_id = t.load + t.rounds * t.b;
	int64_t *row_of = malloc((size_t)max_id * sizeof(int64_t) + 1);
	for (int64_t i = 0; i < max_id; i++)
		row_of[i] = i < t.load ? i : -1;
	/* The mass delete's id list, allocated and touched now so that the
	 * "data" line counts all of the bench's own memory. */
	uint64_t *ids = malloc((size_t)max_id * sizeof(uint64_t) + 1);
	memset(ids, 0, (size_t)max_id * sizeof(uint64_t));
	require_fresh(c->dir);
	printf("{\"event\": \"space\", \"system\": \"drift-shard\", "
	       "\"phase\": \"data\", \"live\": 0, \"rss_bytes\": %llu, "
	       "\"rss_trimmed_bytes\": %llu, \"rss_start_bytes\": %llu}\n",
	       (unsigned long long)rss_bytes(), (unsigned long long)rss_bytes(),
	       (unsigned long long)rss0);
	drift_shard *s = open_shard(c, base.dim, true);
	writers w = {.s = s,
		     .base = &base,
		     .from = 0,
		     .to = (size_t)t.load,
		     .batch = c->batch,
		     .ids = row_ids((size_t)t.load),
		     .lat = malloc(((size_t)t.load / c->batch + 2) *
				   sizeof(double))};
	uint64_t t0 = drift_now_ns();
	write_rows(&w, c->threads);
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_shard_flush(s, &err);
	if (rv != 0)
		die("flush", &err, rv);
	double load_s = since(t0);
	free(w.ids);
	free(w.lat);
	report_space(s, c->dir, "loaded", (uint64_t)t.load);

	/* The churn: one writer replaying the trace, searchers alongside. */
	churner ch = {.s = s,
		      .base = &base,
		      .t = &t,
		      .row_of = row_of,
		      .live = (uint64_t)t.load,
		      .seconds = c->seconds};
	search_run sr;
	int searchers = c->threads > 1 ? c->threads - 1 : 1;
	searches_start(&sr, s, &q, searchers);
	pthread_t wt;
	if (pthread_create(&wt, NULL, churn_main, &ch) != 0)
		fail("pthread_create");
	pthread_join(wt, NULL);
	size_t ns;
	double *lat = searches_stop(&sr, &ns);
	double p50 = percentile(lat, ns, 0.5), p99 = percentile(lat, ns, 0.99);
	free(lat);
	uint64_t t1 = drift_now_ns();
	rv = drift_shard_flush(s, &err);
	if (rv != 0)
		die("flush", &err, rv);
	double flush_s = since(t1);
	report_space(s, c->dir, "churned", ch.live);
	char path[4096];
	snprintf(path, sizeof(path), "%s.end.i64", c->results);
	dump_results(s, &q, nq, path);

	/* Delete a large share of what is live, then let the engine settle. */
	size_t nd = 0;
	for (int64_t id = 0; id < max_id; id++)
		if (row_of[id] >= 0 && id % 100 < t.pct) {
			ids[nd++] = (uint64_t)id;
			row_of[id] = -1;
		}
	uint64_t live_after = ch.live - nd;
	size_t maxb = drift_shard_max_batch(s);
	size_t step = c->batch < maxb ? c->batch : maxb;
	uint64_t t2 = drift_now_ns();
	for (size_t at = 0; at < nd; at += step) {
		size_t n = nd - at < step ? nd - at : step;
		rv = drift_shard_delete(s, ids + at, n, NULL, &err);
		if (rv != 0)
			die("delete", &err, rv);
	}
	double mass_s = since(t2);
	report_space(s, c->dir, "deleted", live_after);
	uint64_t t3 = drift_now_ns();
	rv = drift_shard_flush(s, &err);
	if (rv != 0)
		die("flush", &err, rv);
	double settle_s = since(t3);
	settle_s += settle(s, c->dir, c->settle_seconds);
	report_space(s, c->dir, "settled", live_after);
	snprintf(path, sizeof(path), "%s.settled.i64", c->results);
	dump_results(s, &q, nq, path);
	drift_shard_close(s);
	/* What a restart finds: the files alone. */
	report_space(NULL, c->dir, "closed", live_after);

	printf("{\"event\": \"churn\", \"system\": \"drift-shard\", "
	       "\"load_rows\": %lld, \"load_s\": %.3f, \"seconds\": %.3f, "
	       "\"rounds\": %lld, \"trace_rounds\": %lld, "
	       "\"upserts\": %lld, \"deletes\": %lld, "
	       "\"upserts_per_s\": %.1f, \"deletes_per_s\": %.1f, "
	       "\"upsert_busy_s\": %.3f, \"delete_busy_s\": %.3f, "
	       "\"searchers\": %d, \"searches\": %zu, "
	       "\"searches_per_s\": %.1f, \"p50_ms\": %.3f, \"p99_ms\": %.3f, "
	       "\"flush_s\": %.3f, \"live_end\": %llu, \"mass_deleted\": %zu, "
	       "\"mass_delete_s\": %.3f, \"live_settled\": %llu, "
	       "\"settle_s\": %.3f, \"queries\": %zu}\n",
	       (long long)t.load, load_s, ch.window, (long long)ch.rounds,
	       (long long)t.rounds, (long long)(ch.rounds * t.b),
	       (long long)(ch.rounds * t.d),
	       (double)(ch.rounds * t.b) / ch.window,
	       (double)(ch.rounds * t.d) / ch.window, ch.up_s, ch.del_s,
	       searchers, ns, (double)ns / ch.window, 1e3 * p50, 1e3 * p99,
	       flush_s, (unsigned long long)ch.live, nd, mass_s,
	       (unsigned long long)live_after, settle_s, nq);
	fflush(stdout);
	free(row_of);
	free(ids);
	free(t.data);
	free(base.v);
	free(q.v);
	return 0;
}

/* ---- Command line ---- */

static int usage(void)
{
	fprintf(stderr,
		"usage: shard-bench ingest BASE QUERY GT --dir DIR "
		"[--sync always|batch|none] [--threads N] [--batch B] "
		"[--memtable R] [--queries Q] [--rows N]\n"
		"       shard-bench mixed BASE QUERY GT --dir DIR --rate VPS "
		"[options] [--idle-seconds S]\n"
		"       shard-bench recover BASE --dir DIR [--l1-rows N] "
		"[options]\n"
		"       shard-bench churn BASE QUERY TRACE --dir DIR "
		"--results PREFIX [--seconds S] [--settle-seconds S] "
		"[options]\n");
	return 2;
}

int main(int argc, char **argv)
{
	drift_log_set_level(DRIFT_LOG_WARN);
	if (argc < 3)
		return usage();
	const char *cmd = argv[1];
	int files = strcmp(cmd, "recover") == 0 ? 1 : 3;
	if (argc < 2 + files)
		return usage();
	long cores = sysconf(_SC_NPROCESSORS_ONLN);
	config c = {.base = argv[2],
		    .query = files > 1 ? argv[3] : NULL,
		    .gt = files > 1 ? argv[4] : NULL,
		    .sync = DRIFT_WAL_BATCH,
		    .threads = cores > 0 ? (int)cores : 1,
		    .batch = 1000,
		    .queries = 1000,
		    .idle_seconds = 5,
		    .seconds = 60,
		    .settle_seconds = 30};
	for (int i = 2 + files; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
		if (v == NULL)
			return usage();
		i++;
		if (strcmp(a, "--dir") == 0) {
			c.dir = v;
		} else if (strcmp(a, "--sync") == 0) {
			if (strcmp(v, "always") == 0)
				c.sync = DRIFT_WAL_ALWAYS;
			else if (strcmp(v, "batch") == 0)
				c.sync = DRIFT_WAL_BATCH;
			else if (strcmp(v, "none") == 0)
				c.sync = DRIFT_WAL_NONE;
			else
				return usage();
		} else if (strcmp(a, "--threads") == 0) {
			c.threads = atoi(v);
		} else if (strcmp(a, "--batch") == 0) {
			c.batch = (size_t)atol(v);
		} else if (strcmp(a, "--memtable") == 0) {
			c.memtable = (uint32_t)atol(v);
		} else if (strcmp(a, "--queries") == 0) {
			c.queries = (size_t)atol(v);
		} else if (strcmp(a, "--rate") == 0) {
			c.rate = atof(v);
		} else if (strcmp(a, "--idle-seconds") == 0) {
			c.idle_seconds = atof(v);
		} else if (strcmp(a, "--rows") == 0) {
			c.rows = (size_t)atol(v);
		} else if (strcmp(a, "--trace") == 0) {
			c.trace = v;
		} else if (strcmp(a, "--results") == 0) {
			c.results = v;
		} else if (strcmp(a, "--seconds") == 0) {
			c.seconds = atof(v);
		} else if (strcmp(a, "--settle-seconds") == 0) {
			c.settle_seconds = atof(v);
		} else if (strcmp(a, "--l1-rows") == 0) {
			c.l1_rows = (size_t)atol(v);
			c.l1_rows_set = true;
		} else {
			return usage();
		}
	}
	if (strcmp(cmd, "churn") == 0) {
		c.trace = c.gt;
		c.gt = NULL;
	}
	if (c.dir == NULL || c.threads < 1 || c.threads > MAX_THREADS ||
	    c.batch == 0)
		return usage();
	if (strcmp(cmd, "ingest") == 0)
		return cmd_ingest(&c);
	if (strcmp(cmd, "mixed") == 0)
		return cmd_mixed(&c);
	if (strcmp(cmd, "recover") == 0)
		return cmd_recover(&c);
	if (strcmp(cmd, "churn") == 0)
		return cmd_churn(&c);
	return usage();
}
