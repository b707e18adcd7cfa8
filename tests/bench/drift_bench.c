/*
 * drift-bench: Drift's system driver for the benchmark harness
 * (tests/bench/README.md describes the protocol).
 *
 *   drift-bench static BASE.fvecs QUERY.fvecs GT.ivecs [--threads N]
 *               [--bucket N] [--load-only] [--vec-dir DIR | --vec-memory]
 *               [--cache-mb N] [--scan rabitq|sq8|both]
 *               [--point nprobe=N | --point recall_target=T] [--repeat N]
 *               [--graph-min N] [--probes N,N,...] [--targets T,T,...]
 *   drift-bench drift BASE.fvecs STEPS.tsv QUERY.fvecs
 *               [--budget NPROBE | --share FRACTION] [--no-maintenance]
 *               [--bucket N]
 *
 * static: builds the L1 index in-process (k-means bulk build), then sweeps
 * probe budgets and recall targets, printing one JSON line per point with
 * QPS and recall@10 for one thread and for --threads threads. Full vectors
 * live in a scratch file in --vec-dir (default $TMPDIR, else /var/tmp)
 * behind a row cache of --cache-mb MiB (default 0), as node/storage/vstore.h
 * describes; --vec-memory keeps them in memory instead. --scan picks the
 * first pass over the codes: RaBitQ bounds, then SQ8 where they cannot
 * rule a row out (default), SQ8 alone, or both at every point. --point
 * measures that one point instead of the sweep, --repeat times (profiles).
 * --graph-min sets the live buckets from which the centroid graph is used
 * (drift_l1_opts.graph_min_buckets; 4294967295: never). --probes and
 * --targets replace the sweep's budgets and recall targets (comma lists,
 * at most 16 each; "" for none).
 * drift: inserts the base rows in order in the steps of STEPS.tsv (lines
 * "end_row <TAB> gt.ivecs <TAB> queries.idx"), maintaining buckets after
 * each step unless told not to, and prints recall@10, p50/p99 latency and
 * the mean buckets and vectors scanned at a fixed probe budget after each
 * step: NPROBE buckets, or (--share) that fraction of the buckets the index
 * has at the time, at least one.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cli/vecfile.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/simd.h"
#include "node/l1/l1.h"

typedef struct matrix {
	float *v;
	size_t rows;
	uint32_t dim;
} matrix;

static void die(const char *what, const drift_err *err, int rv)
{
	fprintf(stderr, "drift-bench: %s: %s\n", what, drift_err_msg(err, rv));
	exit(1);
}

static matrix load_f(const char *path)
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
	if (rv != 0)
		die("read", &err, rv);
	drift_vecfile_close(f);
	return v;
}

/* ---- Searching ---------------------------------------------------------- */

typedef struct job {
	drift_l1 *l1;
	const matrix *q;
	size_t from, to;
	drift_l1_search_opts so;
	drift_hit *out; /* q->rows * 10 */
	double *lat;	/* per query, seconds */
	uint64_t probed, scanned, refined;
	uint64_t cpu_ns; /* the thread's CPU time over its queries */
} job;

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void *run_job(void *arg)
{
	job *j = arg;
	uint64_t c0 = thread_cpu_ns();
	for (size_t i = j->from; i < j->to; i++) {
		size_t n;
		drift_l1_search_stats st;
		uint64_t t0 = drift_now_ns();
		drift_l1_search(j->l1, j->q->v + i * j->q->dim, &j->so,
				j->out + i * 10, &n, &st);
		j->lat[i] = (double)(drift_now_ns() - t0) / 1e9;
		for (size_t k = n; k < 10; k++)
			j->out[i * 10 + k].id = UINT64_MAX;
		j->probed += st.probed;
		j->scanned += st.scanned;
		j->refined += st.refined;
	}
	j->cpu_ns = thread_cpu_ns() - c0;
	return NULL;
}

/* Means per query of a run: buckets probed, vectors scanned, of those
 * scored by SQ8 after the RaBitQ pass, and CPU time (on a shared machine it
 * moves less than the wall time). */
typedef struct run_stats {
	double probed, scanned, refined, cpu_us;
} run_stats;

/* Runs all queries with `threads` threads; returns wall seconds, and the
 * means into *rs. */
static double run_queries(drift_l1 *l1, const matrix *q,
			  drift_l1_search_opts so, int threads, drift_hit *out,
			  double *lat, run_stats *rs)
{
	job jobs[64];
	pthread_t t[64];
	uint64_t t0 = drift_now_ns();
	for (int i = 0; i < threads; i++) {
		jobs[i] = (job){l1,
				q,
				q->rows * (size_t)i / (size_t)threads,
				q->rows * (size_t)(i + 1) / (size_t)threads,
				so,
				out,
				lat,
				0,
				0,
				0,
				0};
		pthread_create(&t[i], NULL, run_job, &jobs[i]);
	}
	uint64_t probed = 0, scanned = 0, refined = 0, cpu = 0;
	for (int i = 0; i < threads; i++) {
		pthread_join(t[i], NULL);
		probed += jobs[i].probed;
		scanned += jobs[i].scanned;
		refined += jobs[i].refined;
		cpu += jobs[i].cpu_ns;
	}
	double nq = (double)q->rows;
	*rs = (run_stats){(double)probed / nq, (double)scanned / nq,
			  (double)refined / nq, (double)cpu / 1e3 / nq};
	return (double)(drift_now_ns() - t0) / 1e9;
}

static double recall10(const drift_hit *out, const int32_t *gt, uint32_t gtdim,
		       size_t nq, const size_t *which)
{
	double sum = 0;
	for (size_t i = 0; i < nq; i++) {
		size_t qi = which != NULL ? which[i] : i;
		int hit = 0;
		for (int a = 0; a < 10; a++)
			for (int b = 0; b < 10; b++)
				if (out[qi * 10 + b].id ==
				    (uint64_t)gt[i * gtdim + (size_t)a]) {
					hit++;
					break;
				}
		sum += hit / 10.0;
	}
	return nq ? sum / (double)nq : 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;
	return x < y ? -1 : x > y;
}

static double percentile(double *v, size_t n, double p)
{
	qsort(v, n, sizeof(double), cmp_double);
	size_t i = (size_t)(p * (double)(n - 1) + 0.5);
	return v[i];
}

static drift_l1 *build(const matrix *base, uint32_t bucket, const char *vec_dir,
		       size_t cache_bytes, uint32_t graph_min, double *secs)
{
	drift_l1_opts o = {.dim = base->dim,
			   .bucket_target = bucket,
			   .graph_min_buckets = graph_min,
			   .seed = 42,
			   .vec_dir = vec_dir,
			   .vec_cache_bytes = cache_bytes};
	drift_l1 *l1;
	drift_err err;
	int rv = drift_l1_new(&o, &l1, &err);
	if (rv != 0)
		die("index", &err, rv);
	uint64_t *ids = malloc(base->rows * sizeof(uint64_t));
	for (size_t i = 0; i < base->rows; i++)
		ids[i] = i;
	uint64_t t0 = drift_now_ns();
	rv = drift_l1_build(l1, ids, base->v, base->rows, 1, &err);
	if (rv != 0)
		die("build", &err, rv);
	*secs = (double)(drift_now_ns() - t0) / 1e9;
	free(ids);
	return l1;
}

typedef struct sweep_point {
	const char *param;
	double value;
	drift_l1_search_opts so;
} sweep_point;

/* A comma list of at most 16 numbers in [lo, hi] into u (as integers) or
 * f; "" is none. 0, or -1 with a message. */
static int parse_list(const char *list, double lo, double hi, uint32_t *u,
		      float *f, size_t *n)
{
	size_t m = 0;
	const char *p = list;
	while (*p != 0) {
		char *end;
		double v = strtod(p, &end);
		if (end == p || m == 16 || !(v >= lo && v <= hi) ||
		    (*end != ',' && *end != 0)) {
			fprintf(stderr, "drift-bench: bad list \"%s\"\n", list);
			return -1;
		}
		if (u != NULL)
			u[m++] = (uint32_t)v;
		else
			f[m++] = (float)v;
		p = *end == ',' ? end + 1 : end;
	}
	*n = m;
	return 0;
}

static int cmd_static(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	int threads = 2;
	uint32_t bucket = 0;
	int load_only = 0;
	const char *scan = "rabitq", *point = NULL;
	const char *probe_list = NULL, *target_list = NULL;
	int repeat = 1;
	uint32_t graph_min = 0;
	const char *vec_dir = getenv("TMPDIR");
	if (vec_dir == NULL || vec_dir[0] == 0)
		vec_dir = "/var/tmp";
	size_t cache_mb = 0;
	for (int i = 5; i < argc; i++) {
		if (strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (strcmp(argv[i], "--vec-dir") == 0 && i + 1 < argc)
			vec_dir = argv[++i];
		else if (strcmp(argv[i], "--vec-memory") == 0)
			vec_dir = NULL;
		else if (strcmp(argv[i], "--cache-mb") == 0 && i + 1 < argc)
			cache_mb = (size_t)atol(argv[++i]);
		else if (strcmp(argv[i], "--bucket") == 0 && i + 1 < argc)
			bucket = (uint32_t)atoi(argv[++i]);
		else if (strcmp(argv[i], "--load-only") == 0)
			load_only = 1;
		else if (strcmp(argv[i], "--scan") == 0 && i + 1 < argc)
			scan = argv[++i];
		else if (strcmp(argv[i], "--point") == 0 && i + 1 < argc)
			point = argv[++i];
		else if (strcmp(argv[i], "--repeat") == 0 && i + 1 < argc)
			repeat = atoi(argv[++i]);
		else if (strcmp(argv[i], "--graph-min") == 0 && i + 1 < argc)
			graph_min = (uint32_t)strtoul(argv[++i], NULL, 10);
		else if (strcmp(argv[i], "--probes") == 0 && i + 1 < argc)
			probe_list = argv[++i];
		else if (strcmp(argv[i], "--targets") == 0 && i + 1 < argc)
			target_list = argv[++i];
	}
	if (strcmp(scan, "rabitq") != 0 && strcmp(scan, "sq8") != 0 &&
	    strcmp(scan, "both") != 0) {
		fprintf(stderr,
			"drift-bench: --scan %s: want rabitq, sq8 or "
			"both\n",
			scan);
		return 2;
	}
	if (threads < 1 || threads > 64)
		threads = 2;
	matrix base = load_f(argv[2]), q = load_f(argv[3]);
	size_t gtn;
	uint32_t gtd;
	int32_t *gt = load_i(argv[4], &gtn, &gtd);
	if (load_only)
		return 0;
	double bsecs;
	drift_l1 *l1 = build(&base, bucket, vec_dir, cache_mb << 20, graph_min,
			     &bsecs);
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	printf("{\"event\": \"build\", \"system\": \"drift\", \"n\": %zu, "
	       "\"build_s\": %.3f, \"buckets\": %u, \"simd\": \"%s\", "
	       "\"vectors\": \"%s\", \"vec_resident_mb\": %.1f}\n",
	       base.rows, bsecs, st.buckets,
	       drift_simd_name(drift_simd_level()),
	       vec_dir != NULL ? "file" : "memory",
	       (double)st.vec_resident_bytes / (1 << 20));
	fflush(stdout);
	drift_hit *out = malloc(q.rows * 10 * sizeof(drift_hit));
	double *lat = malloc(q.rows * sizeof(double));
	sweep_point points[32];
	int np = 0;
	uint32_t probes[16] = {1, 2, 4, 8, 16, 32, 64};
	size_t nprobes = 7;
	float targets[16] = {0.8f, 0.9f, 0.95f, 0.98f, 0.99f, 0.995f};
	size_t ntargets = 6;
	/* --probes / --targets: comma lists in place of the defaults ("" for
	 * none), e.g. the budgets around a target's recall. */
	if (probe_list != NULL &&
	    parse_list(probe_list, 1, 1e6, probes, NULL, &nprobes) != 0)
		return 2;
	if (target_list != NULL &&
	    parse_list(target_list, 1e-3, 1, NULL, targets, &ntargets) != 0)
		return 2;
	for (size_t i = 0; i < nprobes; i++) {
		/* Budgets past the bucket count all scan everything: the
		 * first of them is measured, the rest would repeat it. */
		if (i > 0 && probes[i - 1] >= st.buckets)
			break;
		points[np++] = (sweep_point){
			"nprobe", probes[i], {.k = 10, .nprobe = probes[i]}};
	}
	for (size_t i = 0; i < ntargets; i++)
		points[np++] =
			(sweep_point){"recall_target",
				      targets[i],
				      {.k = 10, .recall_target = targets[i]}};
	if (point != NULL) {
		/* One point only (profiles): nprobe=N or recall_target=T. */
		const char *eq = strchr(point, '=');
		double v = eq != NULL ? atof(eq + 1) : 0;
		if (eq != NULL && strncmp(point, "nprobe=", 7) == 0 && v >= 1)
			points[0] = (sweep_point){
				"nprobe", v, {.k = 10, .nprobe = (uint32_t)v}};
		else if (eq != NULL &&
			 strncmp(point, "recall_target=", 14) == 0 && v > 0 &&
			 v <= 1)
			points[0] = (sweep_point){
				"recall_target",
				v,
				{.k = 10, .recall_target = (float)v}};
		else {
			fprintf(stderr,
				"drift-bench: --point %s: want nprobe=N "
				"or recall_target=T\n",
				point);
			return 2;
		}
		np = 1;
	}
	if (repeat < 1)
		repeat = 1;
	const int tcounts[2] = {1, threads};
	/* --scan both: each point with the RaBitQ first pass and with SQ8
	 * alone, one after the other (a side-by-side in one run). */
	int passes = strcmp(scan, "both") == 0 ? 2 : 1;
	for (int p = 0; p < np * repeat; p++) {
		for (int pass = 0; pass < passes; pass++) {
			drift_l1_search_opts so = points[p % np].so;
			so.sq8_scan = strcmp(scan, "sq8") == 0 || pass == 1;
			for (int ti = 0; ti < (threads > 1 ? 2 : 1); ti++) {
				run_stats rs;
				double secs = run_queries(
					l1, &q, so, tcounts[ti], out, lat, &rs);
				double r = recall10(out, gt, gtd, q.rows, NULL);
				printf("{\"event\": \"search\", "
				       "\"system\": \"drift\", "
				       "\"scan\": \"%s\", "
				       "\"param\": \"%s\", \"value\": %g, "
				       "\"threads\": %d, \"qps\": %.1f, "
				       "\"recall10\": %.4f, \"probed\": %.1f, "
				       "\"scanned\": %.0f, \"refined\": %.0f, "
				       "\"cpu_us\": %.1f, "
				       "\"p50_ms\": %.3f, \"p99_ms\": %.3f}\n",
				       so.sq8_scan ? "sq8" : "rabitq",
				       points[p % np].param,
				       points[p % np].value, tcounts[ti],
				       (double)q.rows / secs, r, rs.probed,
				       rs.scanned, rs.refined, rs.cpu_us,
				       1e3 * percentile(lat, q.rows, 0.5),
				       1e3 * percentile(lat, q.rows, 0.99));
				fflush(stdout);
			}
		}
	}
	drift_l1_free(l1);
	free(out);
	free(lat);
	free(base.v);
	free(q.v);
	free(gt);
	return 0;
}

static int cmd_drift(int argc, char **argv)
{
	if (argc < 5)
		return 2;
	uint32_t budget = 8, bucket = 0;
	double share = 0;
	int maint = 1;
	for (int i = 5; i < argc; i++) {
		if (strcmp(argv[i], "--budget") == 0 && i + 1 < argc)
			budget = (uint32_t)atoi(argv[++i]);
		else if (strcmp(argv[i], "--share") == 0 && i + 1 < argc)
			share = atof(argv[++i]);
		else if (strcmp(argv[i], "--bucket") == 0 && i + 1 < argc)
			bucket = (uint32_t)atoi(argv[++i]);
		else if (strcmp(argv[i], "--no-maintenance") == 0)
			maint = 0;
	}
	matrix base = load_f(argv[2]), q = load_f(argv[4]);
	FILE *steps = fopen(argv[3], "r");
	if (steps == NULL) {
		perror(argv[3]);
		return 1;
	}
	drift_l1_opts o = {
		.dim = base.dim, .bucket_target = bucket, .seed = 42};
	drift_l1 *l1;
	drift_err err;
	int rv = drift_l1_new(&o, &l1, &err);
	if (rv != 0)
		die("index", &err, rv);
	uint64_t *ids = malloc(base.rows * sizeof(uint64_t));
	for (size_t i = 0; i < base.rows; i++)
		ids[i] = i;
	drift_hit *out = malloc(q.rows * 10 * sizeof(drift_hit));
	double *lat = malloc(q.rows * sizeof(double));
	char line[8192], gtpath[4096], idxpath[4096];
	size_t done = 0;
	int step = 0;
	while (fgets(line, sizeof(line), steps) != NULL) {
		size_t end;
		if (sscanf(line, "%zu\t%4095s\t%4095s", &end, gtpath,
			   idxpath) != 3)
			continue;
		uint64_t t0 = drift_now_ns();
		/* Insert in batches of 10,000, as a flush would. */
		for (size_t at = done; at < end; at += 10000) {
			size_t n = end - at < 10000 ? end - at : 10000;
			rv = drift_l1_apply(l1, ids + at,
					    base.v + at * base.dim, n, NULL, 0,
					    1, NULL, &err);
			if (rv != 0)
				die("apply", &err, rv);
		}
		double ins = (double)(drift_now_ns() - t0) / 1e9;
		drift_l1_maint_stats ms = {0};
		t0 = drift_now_ns();
		if (maint) {
			rv = drift_l1_maintain(l1, 1u << 30, &ms, &err);
			if (rv != 0)
				die("maintain", &err, rv);
		}
		double msecs = (double)(drift_now_ns() - t0) / 1e9;
		done = end;
		/* The step's queries and their ground truth. */
		size_t gn;
		uint32_t gd;
		int32_t *gt = load_i(gtpath, &gn, &gd);
		FILE *fi = fopen(idxpath, "r");
		size_t *which = malloc(gn * sizeof(size_t) + 1), nw = 0;
		while (fi != NULL && nw < gn &&
		       fscanf(fi, "%zu", &which[nw]) == 1)
			nw++;
		if (fi != NULL)
			fclose(fi);
		matrix sub = {.v = malloc(nw * base.dim * sizeof(float) + 1),
			      .rows = nw,
			      .dim = base.dim};
		for (size_t i = 0; i < nw; i++)
			memcpy(sub.v + i * base.dim, q.v + which[i] * base.dim,
			       base.dim * sizeof(float));
		uint32_t nprobe = budget;
		if (share > 0) {
			uint64_t nv;
			uint32_t nb;
			drift_l1_size(l1, &nv, &nb);
			nprobe = (uint32_t)lround(share * (double)nb);
			nprobe = nprobe < 1 ? 1 : nprobe;
		}
		drift_l1_search_opts so = {.k = 10, .nprobe = nprobe};
		run_stats rs;
		run_queries(l1, &sub, so, 1, out, lat, &rs);
		double r = recall10(out, gt, gd, nw, NULL);
		drift_l1_stats st;
		drift_l1_stats_get(l1, &st);
		printf("{\"event\": \"drift\", \"system\": \"drift-%s\", "
		       "\"step\": %d, \"rows\": %zu, \"recall10\": %.4f, "
		       "\"p50_ms\": %.3f, \"p99_ms\": %.3f, \"buckets\": %u, "
		       "\"max_bucket\": %u, \"probed\": %.1f, "
		       "\"scanned\": %.0f, \"insert_s\": %.2f, "
		       "\"maintain_s\": %.2f, \"splits\": %u, \"merges\": %u, "
		       "\"recenters\": %u}\n",
		       maint ? "maint" : "nomaint", step, done, r,
		       1e3 * percentile(lat, nw, 0.5),
		       1e3 * percentile(lat, nw, 0.99), st.buckets, st.max_size,
		       rs.probed, rs.scanned, ins, msecs, ms.splits, ms.merges,
		       ms.recenters);
		fflush(stdout);
		free(gt);
		free(which);
		free(sub.v);
		step++;
	}
	fclose(steps);
	drift_l1_free(l1);
	free(ids);
	free(out);
	free(lat);
	free(base.v);
	free(q.v);
	return 0;
}

int main(int argc, char **argv)
{
	drift_log_set_level(DRIFT_LOG_WARN);
	int rv = 2;
	if (argc >= 2 && strcmp(argv[1], "static") == 0)
		rv = cmd_static(argc, argv);
	else if (argc >= 2 && strcmp(argv[1], "drift") == 0)
		rv = cmd_drift(argc, argv);
	if (rv == 2)
		fprintf(stderr,
			"usage: drift-bench static BASE QUERY GT [--threads N] "
			"[--bucket N] [--load-only] [--vec-dir DIR | "
			"--vec-memory] "
			"[--cache-mb N] [--scan rabitq|sq8|both] "
			"[--point P=V] [--repeat N] [--graph-min N]\n"
			"       drift-bench drift BASE STEPS.tsv QUERY "
			"[--budget N | --share F] [--bucket N] "
			"[--no-maintenance]\n");
	return rv;
}
