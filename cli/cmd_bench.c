/* drift-cli bench: the queries of a file against a collection at a given
 * concurrency, compared with a ground-truth ivecs: recall@k, QPS and
 * latency percentiles. Queries and ground truth are held whole (query
 * files are small: 10,000 x 128 floats is 5 MiB). */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "cli/progress.h"
#include "cli/vecfile.h"
#include "common/alloc.h"
#include "common/clock.h"

#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))
#define MAX_CONCURRENCY 256

typedef struct bench {
	drift_cli *cli;
	drift_grpc_client *client;
	Drift__V1__SearchRequest tmpl;
	const float *queries;
	uint32_t dim;
	size_t n;
	const int32_t *gt; /* n rows of gt_dim */
	uint32_t gt_dim;
	uint64_t *lat_ns; /* per query */
	double *recall;	  /* per query */
	atomic_size_t next;
	atomic_size_t done;
	atomic_bool failed;
	pthread_mutex_t mu;
	drift_grpc_status first_error; /* under mu */
} bench;

static void *worker(void *arg)
{
	bench *b = arg;
	unsigned k = b->tmpl.k;
	while (!atomic_load(&b->failed)) {
		size_t i = atomic_fetch_add(&b->next, 1);
		if (i >= b->n)
			break;
		Drift__V1__SearchRequest req = b->tmpl;
		req.vector = (float *)b->queries + i * b->dim;
		req.n_vector = b->dim;
		Drift__V1__SearchResponse *r = NULL;
		drift_grpc_status st;
		uint64_t t0 = drift_now_ns();
		int rv = drift_grpc_client_unary_pb(
			b->client, "/drift.v1.Drift/Search", &req.base,
			&drift__v1__search_response__descriptor,
			b->cli->timeout_ns, (ProtobufCMessage **)&r, &st);
		b->lat_ns[i] = drift_now_ns() - t0;
		if (rv != 0) {
			pthread_mutex_lock(&b->mu);
			if (!atomic_load(&b->failed))
				b->first_error = st;
			atomic_store(&b->failed, true);
			pthread_mutex_unlock(&b->mu);
			break;
		}
		/* recall@k: the share of the true k nearest found. */
		const int32_t *truth = b->gt + i * b->gt_dim;
		unsigned found = 0;
		for (size_t h = 0; h < r->n_hits && h < k; h++)
			for (unsigned t = 0; t < k; t++)
				if (truth[t] >= 0 &&
				    r->hits[h]->id == (uint64_t)truth[t]) {
					found++;
					break;
				}
		b->recall[i] = (double)found / k;
		protobuf_c_message_free_unpacked(&r->base, NULL);
		atomic_fetch_add(&b->done, 1);
	}
	return NULL;
}

static int cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of sorted values, in milliseconds. */
static double pct_ms(const uint64_t *sorted, size_t n, double p)
{
	size_t r = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (r < 1)
		r = 1;
	if (r > n)
		r = n;
	return (double)sorted[r - 1] / 1e6;
}

/* Reads a whole file: floats (queries) or ints (ground truth). */
static int read_all(drift_cli *cli, const char *path, bool ints, uint64_t limit,
		    void **out, size_t *rows, uint32_t *dim)
{
	drift_vecfile *f = NULL;
	drift_err err;
	drift_err_clear(&err);
	if (drift_vecfile_open(path, &f, &err) != 0)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s", err.msg);
	uint64_t n = drift_vecfile_rows(f);
	if (n > limit)
		n = limit;
	*dim = drift_vecfile_dim(f);
	int rv = 0;
	void *buf = drift_malloc(4 * (size_t)(n > 0 ? n : 1) * *dim);
	if (buf == NULL) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s: no memory for %" PRIu64 " rows", path,
				    n);
		goto out;
	}
	size_t got;
	int r = ints ? drift_vecfile_read_i32(f, buf, (size_t)n, &got, &err)
		     : drift_vecfile_read(f, buf, (size_t)n, &got, &err);
	if (r != 0) {
		drift_free(buf);
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s", err.msg);
		goto out;
	}
	*out = buf;
	*rows = got;
out:
	drift_vecfile_close(f);
	return rv;
}

int drift_cli_cmd_bench(drift_cli *cli, int argc, char **argv)
{
	drift_cli_opt opts[] = {
		{"queries", "FILE", NULL, false},
		{"gt", "FILE", NULL, false},
		{"k", "N", NULL, false},
		{"concurrency", "N", NULL, false},
		{"recall-target", "T", NULL, false},
		{"nprobe", "N", NULL, false},
		{"limit", "N", NULL, false},
	};
	char *pos[1];
	int np;
	int rv = drift_cli_parse(
		cli,
		"bench NAME --queries FILE --gt FILE [--k N] [--concurrency N] "
		"[--recall-target T | --nprobe N] [--limit N]",
		opts, NOPTS(opts), argc, argv, pos, 1, 1, &np);
	if (rv != 0)
		return rv;
	if (!opts[0].set || !opts[1].set)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "--queries FILE and --gt FILE are "
				      "required");
	bench b = {.cli = cli};
	drift__v1__search_request__init(&b.tmpl);
	b.tmpl.collection = pos[0];
	if ((rv = drift_cli_search_params(cli, &opts[2], &opts[5], &opts[4],
					  &b.tmpl)))
		return rv;
	uint64_t conc = 1, limit = UINT64_MAX;
	if (opts[3].set &&
	    (rv = drift_cli_u64(cli, "--concurrency", opts[3].value, 1,
				MAX_CONCURRENCY, &conc)))
		return rv;
	if (opts[6].set && (rv = drift_cli_u64(cli, "--limit", opts[6].value, 1,
					       UINT64_MAX, &limit)))
		return rv;
	void *q = NULL, *gt = NULL;
	pthread_t th[MAX_CONCURRENCY];
	size_t started = 0, gt_rows = 0;
	if ((rv = read_all(cli, opts[0].value, false, limit, &q, &b.n, &b.dim)))
		goto out;
	if ((rv = read_all(cli, opts[1].value, true, b.n, &gt, &gt_rows,
			   &b.gt_dim)))
		goto out;
	b.queries = q;
	b.gt = gt;
	if (b.n == 0) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s: no queries",
				    opts[0].value);
		goto out;
	}
	if (gt_rows < b.n || b.gt_dim < b.tmpl.k) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s: %zu rows of %u ids, need %zu rows "
				    "of at least k = %u",
				    opts[1].value, gt_rows, b.gt_dim, b.n,
				    b.tmpl.k);
		goto out;
	}
	/* The first call makes the connections: one per worker, up to 8
	 * (HTTP/2 multiplexes the rest). */
	cli->connections = conc < 8 ? (unsigned)conc : 8;
	uint32_t cdim;
	if ((rv = drift_cli_collection_dim(cli, pos[0], &cdim, NULL)))
		goto out;
	if (cdim != b.dim) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s has dimension %u, collection %s has "
				    "%u",
				    opts[0].value, b.dim, pos[0], cdim);
		goto out;
	}
	if ((rv = drift_cli_client(cli, &b.client)))
		goto out;
	b.lat_ns = drift_calloc(b.n, sizeof(*b.lat_ns));
	b.recall = drift_calloc(b.n, sizeof(*b.recall));
	if (b.lat_ns == NULL || b.recall == NULL) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "out of memory");
		goto out;
	}
	pthread_mutex_init(&b.mu, NULL);
	drift_progress bar;
	drift_progress_init(&bar, "queries", b.n);
	uint64_t t0 = drift_now_ns();
	for (; started < conc; started++)
		if (pthread_create(&th[started], NULL, worker, &b) != 0)
			break;
	if (started == 0) {
		pthread_mutex_destroy(&b.mu);
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "cannot start threads");
		goto out;
	}
	while (atomic_load(&b.done) < b.n && !atomic_load(&b.failed)) {
		drift_progress_update(&bar, atomic_load(&b.done));
		struct timespec ts = {0, 20000000};
		nanosleep(&ts, NULL);
	}
	for (size_t i = 0; i < started; i++)
		pthread_join(th[i], NULL);
	double secs = (double)(drift_now_ns() - t0) / 1e9;
	pthread_mutex_destroy(&b.mu);
	if (atomic_load(&b.failed)) {
		drift_progress_end(&bar, atomic_load(&b.done));
		rv = drift_cli_fail_status(cli, &b.first_error);
		goto out;
	}
	drift_progress_end(&bar, b.n);
	double recall = 0;
	for (size_t i = 0; i < b.n; i++)
		recall += b.recall[i];
	recall /= (double)b.n;
	qsort(b.lat_ns, b.n, sizeof(*b.lat_ns), cmp_u64);
	double qps = (double)b.n / secs;
	double p50 = pct_ms(b.lat_ns, b.n, 50), p95 = pct_ms(b.lat_ns, b.n, 95),
	       p99 = pct_ms(b.lat_ns, b.n, 99);
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "collection");
		drift_json_str(&j, pos[0]);
		drift_json_key(&j, "queries");
		drift_json_u64(&j, b.n);
		drift_json_key(&j, "k");
		drift_json_u64(&j, b.tmpl.k);
		drift_json_key(&j, "concurrency");
		drift_json_u64(&j, started);
		drift_json_key(&j, "recall");
		drift_json_f64(&j, recall);
		drift_json_key(&j, "qps");
		drift_json_f64(&j, qps);
		drift_json_key(&j, "seconds");
		drift_json_f64(&j, secs);
		drift_json_key(&j, "latency_ms");
		drift_json_obj_begin(&j);
		drift_json_key(&j, "p50");
		drift_json_f64(&j, p50);
		drift_json_key(&j, "p95");
		drift_json_f64(&j, p95);
		drift_json_key(&j, "p99");
		drift_json_f64(&j, p99);
		drift_json_key(&j, "max");
		drift_json_f64(&j, (double)b.lat_ns[b.n - 1] / 1e6);
		drift_json_obj_end(&j);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("%zu queries on %s, k %u, concurrency %zu, %.2f s\n",
		       b.n, pos[0], b.tmpl.k, started, secs);
		printf("recall@%u  %.4f\n", b.tmpl.k, recall);
		printf("QPS        %.0f\n", qps);
		printf("latency    p50 %.3f ms  p95 %.3f ms  p99 %.3f ms\n",
		       p50, p95, p99);
	}
out:
	drift_free(b.recall);
	drift_free(b.lat_ns);
	drift_free(gt);
	drift_free(q);
	return rv;
}
