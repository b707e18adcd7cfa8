/*
 * node-search-bench: the same searches in-process and through gRPC, for
 * the node scenario (tests/bench/node_bench.py): what the server adds.
 *
 *   node-search-bench local DATA_DIR COLLECTION QUERY GT [--threads N]
 *                     [--queries Q] [--seconds S] [--k K]
 *   node-search-bench grpc HOST:PORT COLLECTION QUERY GT [--inflight M]
 *                     [--connections C] [--queries Q] [--seconds S] [--k K]
 *
 * Both modes run the first Q queries of QUERY (default 1000) round after
 * round for S seconds (default 5; at least one whole round), k = K (default
 * 10), with neither nprobe nor recall_target: the collection's default, as
 * the node's Search does for a request that sets neither. A warm-up of 200
 * untimed calls comes first.
 *
 * local opens DATA_DIR with the node's own CollectionManager
 * (node/engine/collection.h, no Janitor; the node must have stopped) and calls
 * drift_collection_search from N threads, each taking the next query.
 * grpc is one client process: SearchRequests serialized before the clock
 * starts, sent over C HTTP/2 connections of the gRPC client of
 * common/grpc/client.h, M calls kept in flight; each response is unpacked.
 *
 * --server-pid PID (grpc): the node's process, whose CPU time over the
 * timed window (utime + stime of /proc/PID/stat) is added to the client's.
 *
 * One JSON line on stdout: calls, qps, p50_us and p99_us (per call, from
 * its start to its result), recall (recall@K of the first round against
 * GT), cpu_us_per_call (this process's user + system CPU time over the
 * timed window, plus the server's with --server-pid, per call: unlike
 * QPS it does not depend on how much of the machine others take),
 * server_cpu_us_per_call (the server's part alone; 0 without
 * --server-pid), errors.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "cli/vecfile.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/grpc/client.h"
#include "common/log.h"
#include "drift/v1/drift.pb-c.h"
#include "node/engine/collection.h"

#define WARMUP 200
#define MAX_THREADS 64

typedef struct bench {
	const char *target, *collection;
	float *q;
	size_t nq;
	uint32_t dim;
	int32_t *gt;
	uint32_t gt_dim;
	uint32_t k;
	double seconds;
	int threads, inflight, connections;
	long server_pid;
	double cpu0, cpu1; /* CPU seconds at t0 and t_end */
	double srv0, srv1; /* of them, the server's (--server-pid) */
	/* Results. */
	uint64_t *lat; /* ns per call, in completion order */
	size_t nlat, cap;
	uint32_t *found; /* per query of the first round: true hits */
	atomic_size_t next;
	atomic_long errors;
	uint64_t t0, t_end;
	pthread_mutex_t mu;
} bench;

static void die(const char *what, const drift_err *err, int rv)
{
	fprintf(stderr, "node-search-bench: %s: %s\n", what,
		drift_err_msg(err, rv));
	exit(1);
}

static float *load_f(const char *path, size_t *rows, uint32_t *dim)
{
	drift_vecfile *f;
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_vecfile_open(path, &f, &err);
	if (rv != 0)
		die(path, &err, rv);
	*rows = drift_vecfile_rows(f);
	*dim = drift_vecfile_dim(f);
	float *v = malloc(*rows * *dim * sizeof(float) + 1);
	size_t n;
	rv = drift_vecfile_read(f, v, *rows, &n, &err);
	if (rv != 0 || n != *rows)
		die(path, &err, rv);
	drift_vecfile_close(f);
	return v;
}

static int32_t *load_i(const char *path, size_t *rows, uint32_t *dim)
{
	drift_vecfile *f;
	drift_err err;
	drift_err_clear(&err);
	int rv = drift_vecfile_open(path, &f, &err);
	if (rv != 0)
		die(path, &err, rv);
	*rows = drift_vecfile_rows(f);
	*dim = drift_vecfile_dim(f);
	int32_t *v = malloc(*rows * *dim * sizeof(int32_t) + 1);
	size_t n;
	rv = drift_vecfile_read_i32(f, v, *rows, &n, &err);
	if (rv != 0 || n != *rows)
		die(path, &err, rv);
	drift_vecfile_close(f);
	return v;
}

/* User + system CPU seconds of process pid (fields 14 and 15 of
 * /proc/PID/stat, in clock ticks); 0 when it cannot be read. */
static double proc_cpu_seconds(long pid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%ld/stat", pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	size_t n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* After the ")" that ends the command name: fields 3, 4, ... */
	char *p = strrchr(buf, ')');
	unsigned long ut = 0, st = 0;
	if (p == NULL ||
	    sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu",
		   &ut, &st) != 2)
		return 0;
	return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

/* User + system CPU seconds of this process, plus those of server_pid
 * (*srv gets that part, 0 without one). */
static double cpu_seconds(const bench *b, double *srv)
{
	struct rusage ru;
	getrusage(RUSAGE_SELF, &ru);
	double s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
		   (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
	*srv = b->server_pid > 0 ? proc_cpu_seconds(b->server_pid) : 0;
	return s + *srv;
}

/* The next query to run (index into the Q queries, round after round), or
 * SIZE_MAX when the time is up and a whole round is done. *first: whether
 * this is its first round (recall counts it). */
static size_t take(bench *b, bool *first)
{
	size_t i = atomic_fetch_add(&b->next, 1);
	if (i >= b->nq && drift_now_ns() >= b->t_end)
		return SIZE_MAX;
	*first = i < b->nq;
	return i % b->nq;
}

static uint32_t true_hits(const bench *b, size_t qi, const uint64_t *ids,
			  size_t n)
{
	uint32_t hits = 0;
	const int32_t *g = b->gt + qi * b->gt_dim;
	for (size_t i = 0; i < n; i++)
		for (uint32_t j = 0; j < b->k && j < b->gt_dim; j++)
			if (ids[i] == (uint64_t)g[j]) {
				hits++;
				break;
			}
	return hits;
}

/* Under b->mu. */
static void record(bench *b, uint64_t ns)
{
	if (b->nlat == b->cap) {
		b->cap = b->cap ? 2 * b->cap : 65536;
		b->lat = realloc(b->lat, b->cap * sizeof(uint64_t));
		if (b->lat == NULL) {
			fprintf(stderr, "node-search-bench: out of memory\n");
			exit(1);
		}
	}
	b->lat[b->nlat++] = ns;
}

/* ---- In-process ---- */

typedef struct local_arg {
	bench *b;
	drift_collection *col;
} local_arg;

static void *local_main(void *arg)
{
	local_arg *a = arg;
	bench *b = a->b;
	drift_hit *hits = drift_mallocarray(b->k, sizeof(*hits));
	uint64_t *ids = drift_mallocarray(b->k, sizeof(*ids));
	drift_shard_search_opts so = {.k = b->k};
	bool first;
	size_t qi;
	while ((qi = take(b, &first)) != SIZE_MAX) {
		size_t n = 0;
		uint64_t t = drift_now_ns();
		int rv = drift_collection_search(a->col, b->q + qi * b->dim,
						 &so, hits, &n);
		uint64_t el = drift_now_ns() - t;
		if (rv != 0) {
			atomic_fetch_add(&b->errors, 1);
			continue;
		}
		for (size_t i = 0; i < n; i++)
			ids[i] = hits[i].id;
		pthread_mutex_lock(&b->mu);
		record(b, el);
		if (first)
			b->found[qi] = true_hits(b, qi, ids, n);
		pthread_mutex_unlock(&b->mu);
	}
	drift_free(hits);
	drift_free(ids);
	return NULL;
}

static void run_local(bench *b)
{
	drift_cm *cm;
	drift_err err;
	drift_err_clear(&err);
	drift_cm_opts o = {.janitor = false};
	int rv = drift_cm_open(b->target, &o, &cm, &err);
	if (rv != 0)
		die("opening the data directory", &err, rv);
	drift_collection *col;
	if ((rv = drift_cm_acquire(cm, b->collection, &col, &err)) != 0)
		die(b->collection, &err, rv);
	drift_hit *hits = drift_mallocarray(b->k, sizeof(*hits));
	drift_shard_search_opts so = {.k = b->k};
	for (size_t i = 0; i < WARMUP; i++) {
		size_t n;
		drift_collection_search(col, b->q + (i % b->nq) * b->dim, &so,
					hits, &n);
	}
	drift_free(hits);
	pthread_t th[MAX_THREADS];
	local_arg a = {b, col};
	b->cpu0 = cpu_seconds(b, &b->srv0);
	b->t0 = drift_now_ns();
	b->t_end = b->t0 + (uint64_t)(b->seconds * 1e9);
	for (int i = 0; i < b->threads; i++)
		pthread_create(&th[i], NULL, local_main, &a);
	for (int i = 0; i < b->threads; i++)
		pthread_join(th[i], NULL);
	b->t_end = drift_now_ns();
	b->cpu1 = cpu_seconds(b, &b->srv1);
	drift_cm_release(cm, col);
	drift_cm_close(cm);
}

/* ---- Through gRPC ---- */

typedef struct grpc_call {
	bench *b;
	size_t qi;
	bool first;
	uint64_t t;
} grpc_call;

static pthread_cond_t slot_cv = PTHREAD_COND_INITIALIZER;
static int in_flight;

static void on_search(void *arg, const drift_grpc_status *st,
		      drift_grpc_msg *resp)
{
	grpc_call *c = arg;
	bench *b = c->b;
	uint64_t el = drift_now_ns() - c->t;
	Drift__V1__SearchResponse *r = NULL;
	if (st->code == DRIFT_GRPC_OK && resp != NULL)
		r = drift__v1__search_response__unpack(NULL, resp->len,
						       resp->data);
	uint64_t ids[64];
	size_t n = 0;
	for (size_t i = 0; r != NULL && i < r->n_hits && i < 64; i++)
		ids[n++] = r->hits[i]->id;
	pthread_mutex_lock(&b->mu);
	if (r == NULL) {
		atomic_fetch_add(&b->errors, 1);
		if (atomic_load(&b->errors) <= 3)
			fprintf(stderr, "node-search-bench: status %d: %s\n",
				st->code, st->msg);
	} else {
		record(b, el);
		if (c->first)
			b->found[c->qi] = true_hits(b, c->qi, ids, n);
	}
	in_flight--;
	pthread_cond_signal(&slot_cv);
	pthread_mutex_unlock(&b->mu);
	if (r != NULL)
		drift__v1__search_response__free_unpacked(r, NULL);
	drift_grpc_msg_free(resp);
	drift_free(c);
}

static void run_grpc(bench *b)
{
	drift_grpc_client *cl;
	drift_err err;
	drift_err_clear(&err);
	drift_grpc_client_opts o = {.connections = (unsigned)b->connections};
	int rv = drift_grpc_client_new(b->target, &o, &cl, &err);
	if (rv != 0)
		die(b->target, &err, rv);
	/* Every request serialized before the clock starts. */
	uint8_t **reqs = drift_mallocarray(b->nq, sizeof(*reqs));
	size_t *lens = drift_mallocarray(b->nq, sizeof(*lens));
	for (size_t i = 0; i < b->nq; i++) {
		Drift__V1__SearchRequest r = DRIFT__V1__SEARCH_REQUEST__INIT;
		r.collection = (char *)b->collection;
		r.n_vector = b->dim;
		r.vector = b->q + i * b->dim;
		r.k = b->k;
		lens[i] = drift__v1__search_request__get_packed_size(&r);
		reqs[i] = drift_malloc(lens[i] + 1);
		drift__v1__search_request__pack(&r, reqs[i]);
	}
	const char *path = "/drift.v1.Drift/Search";
	for (size_t i = 0; i < WARMUP; i++) {
		drift_grpc_msg *m = NULL;
		drift_grpc_status st;
		rv = drift_grpc_client_unary(cl, path, reqs[i % b->nq],
					     lens[i % b->nq],
					     30 * DRIFT_NS_PER_S, &m, &st);
		if (rv != 0) {
			fprintf(stderr, "node-search-bench: warm-up: %s\n",
				st.msg);
			exit(1);
		}
		drift_grpc_msg_free(m);
	}
	b->cpu0 = cpu_seconds(b, &b->srv0);
	b->t0 = drift_now_ns();
	b->t_end = b->t0 + (uint64_t)(b->seconds * 1e9);
	for (;;) {
		pthread_mutex_lock(&b->mu);
		while (in_flight >= b->inflight)
			pthread_cond_wait(&slot_cv, &b->mu);
		pthread_mutex_unlock(&b->mu);
		bool first;
		size_t qi = take(b, &first);
		if (qi == SIZE_MAX)
			break;
		grpc_call *c = drift_malloc(sizeof(*c));
		*c = (grpc_call){b, qi, first, drift_now_ns()};
		pthread_mutex_lock(&b->mu);
		in_flight++;
		pthread_mutex_unlock(&b->mu);
		if (drift_grpc_client_unary_async(cl, path, reqs[qi], lens[qi],
						  30 * DRIFT_NS_PER_S,
						  on_search, c) != 0) {
			pthread_mutex_lock(&b->mu);
			in_flight--;
			pthread_mutex_unlock(&b->mu);
			atomic_fetch_add(&b->errors, 1);
			drift_free(c);
		}
	}
	pthread_mutex_lock(&b->mu);
	while (in_flight > 0)
		pthread_cond_wait(&slot_cv, &b->mu);
	pthread_mutex_unlock(&b->mu);
	b->t_end = drift_now_ns();
	b->cpu1 = cpu_seconds(b, &b->srv1);
	drift_grpc_client_free(cl);
	for (size_t i = 0; i < b->nq; i++)
		drift_free(reqs[i]);
	drift_free(reqs);
	drift_free(lens);
}

/* ---- Main ---- */

static int cmp_u64(const void *x, const void *y)
{
	uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
	return a < b ? -1 : a > b;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: node-search-bench local DATA_DIR COLLECTION QUERY GT "
		"[--threads N]\n"
		"       node-search-bench grpc HOST:PORT COLLECTION QUERY GT "
		"[--inflight M] [--connections C]\n"
		"       [--server-pid PID]\n"
		"       common: [--queries Q] [--seconds S] [--k K]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	if (argc < 6)
		usage();
	bool local = strcmp(argv[1], "local") == 0;
	if (!local && strcmp(argv[1], "grpc") != 0)
		usage();
	bench b = {.target = argv[2],
		   .collection = argv[3],
		   .k = 10,
		   .seconds = 5,
		   .threads = 1,
		   .inflight = 32,
		   .connections = 1};
	size_t want = 1000;
	for (int i = 6; i < argc; i++) {
		if (i + 1 >= argc)
			usage();
		const char *v = argv[++i];
		if (strcmp(argv[i - 1], "--threads") == 0)
			b.threads = atoi(v);
		else if (strcmp(argv[i - 1], "--inflight") == 0)
			b.inflight = atoi(v);
		else if (strcmp(argv[i - 1], "--connections") == 0)
			b.connections = atoi(v);
		else if (strcmp(argv[i - 1], "--queries") == 0)
			want = (size_t)atol(v);
		else if (strcmp(argv[i - 1], "--seconds") == 0)
			b.seconds = atof(v);
		else if (strcmp(argv[i - 1], "--server-pid") == 0)
			b.server_pid = atol(v);
		else if (strcmp(argv[i - 1], "--k") == 0)
			b.k = (uint32_t)atoi(v);
		else
			usage();
	}
	if (b.threads < 1 || b.threads > MAX_THREADS || b.inflight < 1 ||
	    b.connections < 1 || b.k < 1 || b.k > 64 || want < 1)
		usage();
	drift_log_set_level(DRIFT_LOG_WARN);
	size_t gt_rows;
	b.q = load_f(argv[4], &b.nq, &b.dim);
	b.gt = load_i(argv[5], &gt_rows, &b.gt_dim);
	if (want < b.nq)
		b.nq = want;
	if (gt_rows < b.nq) {
		fprintf(stderr,
			"node-search-bench: %s has %zu rows, fewer "
			"than the queries\n",
			argv[5], gt_rows);
		return 1;
	}
	b.found = calloc(b.nq, sizeof(uint32_t));
	pthread_mutex_init(&b.mu, NULL);
	atomic_init(&b.next, 0);
	atomic_init(&b.errors, 0);
	if (local)
		run_local(&b);
	else
		run_grpc(&b);
	qsort(b.lat, b.nlat, sizeof(uint64_t), cmp_u64);
	double el = (double)(b.t_end - b.t0) / 1e9;
	uint64_t found = 0;
	for (size_t i = 0; i < b.nq; i++)
		found += b.found[i];
	double p50 = b.nlat ? (double)b.lat[b.nlat / 2] / 1e3 : 0;
	double p99 = b.nlat ? (double)b.lat[(b.nlat * 99) / 100] / 1e3 : 0;
	printf("{\"mode\": \"%s\", \"threads\": %d, \"inflight\": %d, "
	       "\"connections\": %d, \"calls\": %zu, \"seconds\": %.3f, "
	       "\"qps\": %.1f, \"p50_us\": %.1f, \"p99_us\": %.1f, "
	       "\"recall\": %.4f, \"queries\": %zu, \"k\": %u, "
	       "\"cpu_us_per_call\": %.1f, \"server_cpu_us_per_call\": %.1f, "
	       "\"errors\": %ld}\n",
	       argv[1], local ? b.threads : 0, local ? 0 : b.inflight,
	       local ? 0 : b.connections, b.nlat, el, (double)b.nlat / el, p50,
	       p99, (double)found / ((double)b.nq * b.k), b.nq, b.k,
	       b.nlat ? (b.cpu1 - b.cpu0) * 1e6 / (double)b.nlat : 0,
	       b.nlat ? (b.srv1 - b.srv0) * 1e6 / (double)b.nlat : 0,
	       atomic_load(&b.errors));
	free(b.lat);
	free(b.found);
	free(b.q);
	free(b.gt);
	return atomic_load(&b.errors) > 0 ? 1 : 0;
}
