/*
 * hnsw-bench: the L0 memtable (node/l0/hnsw.c) on Fashion-MNIST (the Debian
 * package dataset-fashion-mnist): insert rate with 1 and more writer
 * threads, then recall@10 and single-thread QPS at a sweep of ef, against
 * brute-force ground truth computed here. One JSON line per measurement.
 *
 *   hnsw-bench [-n ROWS] [-q QUERIES] [-m l2|ip|cosine] [-e EF_CONSTRUCTION]
 *              [-M M] [-t MAX_THREADS] [-s EF,EF,...]
 *
 * Defaults: 60000 rows (the training set), 1000 queries (the test set), l2,
 * the memtable's default ef_construction and M, threads 1..2, ef
 * 10,20,40,80,160.
 */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/clock.h"
#include "common/topk.h"
#include "common/vec.h"
#include "node/l0/hnsw.h"

#define DIM 784

static double seconds(uint64_t t0)
{
	return (double)(drift_now_ns() - t0) / 1e9;
}

/* IDX images (big-endian header: magic 0x803, count, rows, cols). */
static float *load(const char *set, size_t max, size_t *rows)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd),
		 "gzip -dc /usr/share/datasets/fashion-mnist/"
		 "%s-images-idx3-ubyte.gz",
		 set);
	FILE *p = popen(cmd, "r");
	unsigned char head[16];
	if (p == NULL || fread(head, 1, 16, p) != 16) {
		fprintf(stderr, "cannot read Fashion-MNIST %s\n", set);
		exit(1);
	}
	size_t n = (size_t)head[4] << 24 | (size_t)head[5] << 16 |
		   (size_t)head[6] << 8 | head[7];
	if (n > max)
		n = max;
	float *x = malloc(n * DIM * sizeof(float));
	unsigned char *row = malloc(DIM);
	for (size_t i = 0; i < n; i++) {
		if (fread(row, 1, DIM, p) != DIM)
			exit(1);
		for (size_t j = 0; j < DIM; j++)
			x[i * DIM + j] = row[j];
	}
	free(row);
	pclose(p);
	*rows = n;
	return x;
}

typedef struct job {
	drift_hnsw *h;
	const float *x;
	size_t n;
	_Atomic size_t next;
	_Atomic int failed;
} job;

static void *insert_worker(void *arg)
{
	job *j = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&j->next, 1);
		if (i >= j->n)
			return NULL;
		if (drift_hnsw_insert(j->h, i, j->x + i * DIM, i + 1, NULL))
			atomic_store(&j->failed, 1);
	}
}

static float metric_dist(enum drift_metric m, const float *q, const float *v)
{
	const drift_vec_kernels *k = drift_vec();
	if (m == DRIFT_METRIC_L2)
		return k->l2sq(q, v, DIM);
	return -k->dot(q, v, DIM); /* cosine: both normalised beforehand */
}

typedef struct gt_job {
	enum drift_metric m;
	const float *x, *qs;
	size_t n, nq;
	drift_hit *truth;
	_Atomic size_t next;
} gt_job;

static void *gt_worker(void *arg)
{
	gt_job *g = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&g->next, 1);
		if (i >= g->nq)
			return NULL;
		drift_topk t;
		drift_topk_init(&t, g->truth + i * 10, 10);
		for (size_t r = 0; r < g->n; r++)
			drift_topk_push(
				&t,
				(drift_hit){r,
					    metric_dist(g->m, g->qs + i * DIM,
							g->x + r * DIM)});
		drift_topk_sort(&t);
	}
}

static void normalise_rows(float *x, size_t n)
{
	const drift_vec_kernels *k = drift_vec();
	for (size_t i = 0; i < n; i++) {
		float *v = x + i * DIM;
		float norm = sqrtf(k->dot(v, v, DIM));
		for (size_t j = 0; j < DIM; j++)
			v[j] /= norm;
	}
}

int main(int argc, char **argv)
{
	size_t rows = 60000, queries = 1000;
	const char *mname = "l2", *efs = "10,20,40,80,160";
	uint32_t efc = 0, m = 0;
	int max_threads = 2, opt;
	while ((opt = getopt(argc, argv, "n:q:m:e:M:t:s:")) != -1) {
		switch (opt) {
		case 'n':
			rows = strtoul(optarg, NULL, 10);
			break;
		case 'q':
			queries = strtoul(optarg, NULL, 10);
			break;
		case 'm':
			mname = optarg;
			break;
		case 'e':
			efc = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 'M':
			m = (uint32_t)strtoul(optarg, NULL, 10);
			break;
		case 't':
			max_threads = atoi(optarg);
			break;
		case 's':
			efs = optarg;
			break;
		default:
			fprintf(stderr, "usage: see the top of hnsw_bench.c\n");
			return 2;
		}
	}
	enum drift_metric metric = !strcmp(mname, "ip") ? DRIFT_METRIC_IP
				   : !strcmp(mname, "cosine")
					   ? DRIFT_METRIC_COSINE
					   : DRIFT_METRIC_L2;
	size_t n, nq;
	float *x = load("train", rows, &n);
	float *qs = load("t10k", queries, &nq);

	drift_hnsw *h = NULL;
	for (int threads = 1; threads <= max_threads; threads++) {
		drift_hnsw_free(h);
		drift_hnsw_opts o = {.dim = DIM,
				     .metric = metric,
				     .capacity = (uint32_t)n,
				     .m = m,
				     .ef_construction = efc,
				     .seed = 1};
		drift_err err;
		if (drift_hnsw_new(&o, &h, &err) != 0) {
			fprintf(stderr, "%s\n", err.msg);
			return 1;
		}
		job j = {.h = h, .x = x, .n = n};
		pthread_t t[64];
		uint64_t t0 = drift_now_ns();
		for (int i = 0; i < threads && i < 64; i++)
			pthread_create(&t[i], NULL, insert_worker, &j);
		for (int i = 0; i < threads && i < 64; i++)
			pthread_join(t[i], NULL);
		double s = seconds(t0);
		if (atomic_load(&j.failed)) {
			fprintf(stderr, "an insert failed\n");
			return 1;
		}
		drift_hnsw_stats st;
		drift_hnsw_stats_get(h, &st);
		printf("{\"bench\":\"hnsw_insert\",\"metric\":\"%s\","
		       "\"rows\":%zu,\"dim\":%d,\"m\":%u,\"ef_construction\":%"
		       "u,"
		       "\"threads\":%d,\"seconds\":%.3f,\"vectors_per_s\":%.0f,"
		       "\"levels\":%u,\"mib\":%.1f}\n",
		       mname, n, DIM, m ? m : DRIFT_HNSW_M,
		       efc ? efc : DRIFT_HNSW_EF_CONSTRUCTION, threads, s,
		       (double)n / s, st.levels, (double)st.bytes / 1048576.0);
		fflush(stdout);
	}

	/* Ground truth (cosine: on normalised copies, as the memtable sees
	 * them; then 1 - dot ranks like -dot). */
	float *xg = x, *qg = qs;
	if (metric == DRIFT_METRIC_COSINE) {
		xg = malloc(n * DIM * sizeof(float));
		qg = malloc(nq * DIM * sizeof(float));
		memcpy(xg, x, n * DIM * sizeof(float));
		memcpy(qg, qs, nq * DIM * sizeof(float));
		normalise_rows(xg, n);
		normalise_rows(qg, nq);
	}
	gt_job g = {.m = metric, .x = xg, .qs = qg, .n = n, .nq = nq};
	g.truth = malloc(nq * 10 * sizeof(drift_hit));
	pthread_t gt[2];
	for (int i = 0; i < 2; i++)
		pthread_create(&gt[i], NULL, gt_worker, &g);
	for (int i = 0; i < 2; i++)
		pthread_join(gt[i], NULL);

	drift_hit got[10];
	for (const char *p = efs; *p != '\0';) {
		char *end;
		uint32_t ef = (uint32_t)strtoul(p, &end, 10);
		p = *end == ',' ? end + 1 : end;
		size_t found = 0;
		uint64_t t0 = drift_now_ns();
		for (size_t i = 0; i < nq; i++) {
			size_t ng;
			if (drift_hnsw_search(h, qs + i * DIM, 10, ef, got,
					      &ng) != 0)
				return 1;
			for (size_t a = 0; a < ng; a++)
				for (size_t b = 0; b < 10; b++)
					if (got[a].id == g.truth[i * 10 + b].id)
						found++;
		}
		double s = seconds(t0);
		printf("{\"bench\":\"hnsw_search\",\"metric\":\"%s\","
		       "\"rows\":%zu,\"queries\":%zu,\"k\":10,\"ef\":%u,"
		       "\"recall\":%.4f,\"qps\":%.0f,\"threads\":1}\n",
		       mname, n, nq, ef, (double)found / (double)(nq * 10),
		       (double)nq / s);
		fflush(stdout);
	}
	if (xg != x) {
		free(xg);
		free(qg);
	}
	free(g.truth);
	drift_hnsw_free(h);
	free(x);
	free(qs);
	return 0;
}
