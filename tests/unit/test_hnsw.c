/* Tests of the HNSW memtable (node/l0/hnsw.c): recall floors on Fashion-MNIST
 * for each metric, distances equal to those of the L1 index, updates and
 * deletes against a plain reference, the size limits, input refusal,
 * allocation failures at creation, and concurrent writers with lock-free
 * readers. */
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rand.h"
#include "common/topk.h"
#include "common/vec.h"
#include "node/l0/hnsw.h"
#include "node/l1/l1.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

#define DIM DRIFT_TEST_FMNIST_DIM

/* The ASan build is unoptimised (-O0), about 20 times slower on distance
 * kernels; it runs the same cases on fewer rows (same floors). */
#ifdef DRIFT_TEST_LSAN
#define BASE_ROWS 5000
#define QUERIES 100
#else
#define BASE_ROWS 20000
#define QUERIES 200
#endif

static drift_hnsw *h;

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_hnsw_free(h);
	h = NULL;
}

TestSuite(hnsw, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static void make(uint32_t dim, enum drift_metric m, uint32_t capacity,
		 uint32_t max_tombstones)
{
	drift_hnsw_opts o = {.dim = dim,
			     .metric = m,
			     .capacity = capacity,
			     .max_tombstones = max_tombstones,
			     .seed = 7};
	drift_err err;
	cr_assert_eq(drift_hnsw_new(&o, &h, &err), 0, "%s", err.msg);
}

/* A copy of v normalised as node/l1/l1.c and node/l0/hnsw.c do for COSINE. */
static void normalise(const float *v, float *out, uint32_t dim)
{
	const drift_vec_kernels *k = drift_vec();
	float norm = sqrtf(k->dot(v, v, dim));
	for (uint32_t j = 0; j < dim; j++)
		out[j] = v[j] / norm;
}

/* The distance the memtable must report between query q and stored
 * vector v (both as given by the caller, before any normalisation). */
static float exact(enum drift_metric m, const float *q, const float *v,
		   uint32_t dim)
{
	const drift_vec_kernels *k = drift_vec();
	if (m == DRIFT_METRIC_L2)
		return k->l2sq(q, v, dim);
	if (m == DRIFT_METRIC_IP)
		return -k->dot(q, v, dim);
	float *qn = malloc(dim * sizeof(float)), *vn = malloc(dim * 4);
	normalise(q, qn, dim);
	normalise(v, vn, dim);
	float d = 1.0f - k->dot(qn, vn, dim);
	free(qn);
	free(vn);
	return d;
}

/* Exact top-k of q among the n rows of x whose live[i] is set (all when
 * live is NULL); ids are row numbers. */
static size_t brute(enum drift_metric m, const float *x, const bool *live,
		    size_t n, uint32_t dim, const float *q, uint32_t k,
		    drift_hit *out)
{
	drift_topk t;
	drift_topk_init(&t, out, k);
	float *qn = malloc(dim * sizeof(float));
	float *vn = malloc(dim * sizeof(float));
	const drift_vec_kernels *kern = drift_vec();
	if (m == DRIFT_METRIC_COSINE)
		normalise(q, qn, dim);
	for (size_t i = 0; i < n; i++) {
		if (live != NULL && !live[i])
			continue;
		const float *v = x + i * dim;
		float d;
		if (m == DRIFT_METRIC_COSINE) {
			normalise(v, vn, dim);
			d = 1.0f - kern->dot(qn, vn, dim);
		} else {
			d = exact(m, q, v, dim);
		}
		drift_topk_push(&t, (drift_hit){i, d});
	}
	free(qn);
	free(vn);
	return drift_topk_sort(&t);
}

/* Checks a search answer: at most k hits, best first by drift_hit_less,
 * no id twice, ids below n, each distance exactly that of the id's vector
 * in x. Returns a description of the first violation, or NULL. */
static const char *malformed(enum drift_metric m, const float *x, size_t n,
			     uint32_t dim, const float *q, const drift_hit *hit,
			     size_t nh, uint32_t k)
{
	if (nh > k)
		return "more than k hits";
	for (size_t i = 0; i < nh; i++) {
		if (hit[i].id >= n)
			return "an id never inserted";
		if (hit[i].distance != exact(m, q, x + hit[i].id * dim, dim))
			return "a distance that is not the exact one";
		if (i > 0 && !drift_hit_less(hit[i - 1], hit[i]))
			return "hits out of order or an id twice";
		for (size_t j = 0; j < i; j++)
			if (hit[j].id == hit[i].id)
				return "an id twice";
	}
	return NULL;
}

/* Mean recall@k of the memtable at ef over nq queries, against brute force
 * over the n base rows (all live); also checks every answer's form. */
static double recall(enum drift_metric m, const float *x, size_t n,
		     const float *qs, size_t nq, uint32_t k, uint32_t ef,
		     const drift_hit *truth)
{
	drift_hit *got = malloc(k * sizeof(drift_hit));
	size_t found = 0;
	for (size_t i = 0; i < nq; i++) {
		const float *q = qs + i * DIM;
		size_t ng;
		cr_assert_eq(drift_hnsw_search(h, q, k, ef, got, &ng), 0);
		cr_assert_eq(ng, k);
		const char *bad = malformed(m, x, n, DIM, q, got, ng, k);
		cr_assert_null(bad, "query %zu: %s", i, bad);
		for (size_t a = 0; a < ng; a++)
			for (size_t b = 0; b < k; b++)
				if (got[a].id == truth[i * k + b].id) {
					found++;
					break;
				}
	}
	free(got);
	return (double)found / (double)(nq * k);
}

static drift_hit *ground_truth(enum drift_metric m, const float *x, size_t n,
			       const float *qs, size_t nq, uint32_t k)
{
	drift_hit *t = malloc(nq * k * sizeof(drift_hit));
	for (size_t i = 0; i < nq; i++)
		cr_assert_eq(
			brute(m, x, NULL, n, DIM, qs + i * DIM, k, t + i * k),
			k);
	return t;
}

/* Inserts the n rows of x as ids 0..n-1 (seqno = id + 1). */
static void insert_all(const float *x, size_t n, uint32_t dim)
{
	for (size_t i = 0; i < n; i++) {
		uint32_t row;
		cr_assert_eq(drift_hnsw_insert(h, i, x + i * dim, i + 1, &row),
			     0, "insert %zu", i);
		cr_assert_eq(row, i);
	}
}

/* The recall floor case of one metric: rows of the training set, QUERIES
 * queries from the test set. */
static void recall_case(enum drift_metric m, size_t rows, const uint32_t *efs,
			const double *floors, size_t nef)
{
	size_t n, nq;
	float *x = drift_test_fmnist("train", rows, &n);
	float *qs = drift_test_fmnist("t10k", QUERIES, &nq);
	make(DIM, m, (uint32_t)n, 0);
	insert_all(x, n, DIM);
	drift_hnsw_stats st;
	drift_hnsw_stats_get(h, &st);
	cr_assert_eq(st.rows, n);
	cr_assert_eq(st.live, n);
	cr_assert_geq(st.levels, 2);
	drift_hit *truth = ground_truth(m, x, n, qs, nq, 10);
	for (size_t i = 0; i < nef; i++) {
		double r = recall(m, x, n, qs, nq, 10, efs[i], truth);
		cr_log_info("hnsw metric %d: recall@10 %.4f at ef %u (%zu "
			    "rows)",
			    (int)m, r, efs[i], n);
		cr_assert_geq(r, floors[i], "metric %d ef %u: recall %.4f",
			      (int)m, efs[i], r);
	}
	free(truth);
	free(x);
	free(qs);
}

/* ---- Cases: quality --------------------------------------------------- */

/* Measured recall@10 (release, 20,000 rows, ef_construction 100): L2
 * 0.9925 at ef 20 and 1.0 at ef 100; COSINE 0.977 and 0.998; IP (on
 * 10,000 rows, to save time) 0.9895 at ef 100. The floors sit below with
 * margin; the ASan build's smaller sets measure higher. */
DRIFT_TEST(hnsw, recall_l2)
{
	uint32_t efs[] = {20, 100};
	double floors[] = {0.97, 0.99};
	recall_case(DRIFT_METRIC_L2, BASE_ROWS, efs, floors, 2);
}

DRIFT_TEST(hnsw, recall_cosine)
{
	uint32_t efs[] = {20, 100};
	double floors[] = {0.95, 0.99};
	recall_case(DRIFT_METRIC_COSINE, BASE_ROWS, efs, floors, 2);
}

DRIFT_TEST(hnsw, recall_ip)
{
	uint32_t efs[] = {100};
	double floors[] = {0.95};
	recall_case(DRIFT_METRIC_IP, BASE_ROWS / 2, efs, floors, 1);
}

/* The hybrid search merges L0 and L1 hits by distance: for the same
 * vectors and query, both must give bit-identical distances. */
DRIFT_TEST(hnsw, distances_match_l1)
{
	enum drift_metric ms[] = {DRIFT_METRIC_L2, DRIFT_METRIC_IP,
				  DRIFT_METRIC_COSINE};
	size_t n, nq;
	float *x = drift_test_fmnist("train", 500, &n);
	float *qs = drift_test_fmnist("t10k", 5, &nq);
	uint64_t *ids = malloc(n * sizeof(uint64_t));
	for (size_t i = 0; i < n; i++)
		ids[i] = i;
	for (size_t mi = 0; mi < 3; mi++) {
		make(DIM, ms[mi], (uint32_t)n, 0);
		insert_all(x, n, DIM);
		drift_l1 *l1;
		drift_l1_opts lo = {.dim = DIM, .metric = ms[mi], .seed = 1};
		drift_err err;
		cr_assert_eq(drift_l1_new(&lo, &l1, &err), 0);
		cr_assert_eq(drift_l1_build(l1, ids, x, n, 1, &err), 0, "%s",
			     err.msg);
		drift_l1_search_opts so = {.k = 10, .exhaustive = true};
		for (size_t qi = 0; qi < nq; qi++) {
			drift_hit a[10], b[10];
			size_t na, nb;
			const float *q = qs + qi * DIM;
			cr_assert_eq(drift_l1_search(l1, q, &so, a, &na, NULL),
				     0);
			cr_assert_eq(drift_hnsw_search(h, q, 10, 500, b, &nb),
				     0);
			cr_assert_eq(na, 10);
			cr_assert_eq(nb, 10);
			for (size_t i = 0; i < 10; i++) {
				cr_assert_eq(a[i].id, b[i].id,
					     "metric %zu query %zu rank %zu",
					     mi, qi, i);
				cr_assert_eq(a[i].distance, b[i].distance,
					     "metric %zu: %.9g vs %.9g", mi,
					     a[i].distance, b[i].distance);
			}
		}
		drift_l1_free(l1);
		drift_hnsw_free(h);
		h = NULL;
	}
	free(ids);
	free(x);
	free(qs);
}

/* ---- Cases: updates, deletes, lookups --------------------------------- */

#define REF_IDS 300
#define REF_DIM 8

typedef struct ref_entry {
	int kind; /* 0 absent, DRIFT_HNSW_LIVE, DRIFT_HNSW_TOMBSTONE */
	uint64_t seqno;
	float v[REF_DIM];
} ref_entry;

/* Everything the memtable says agrees with the reference: lookup of every
 * id, the iterator (each id once), the counters, and searches (only live
 * newest ids, with the distance of their newest vector, and all of the
 * true top-k when ef covers every row). */
static void check_against(const ref_entry *ref, drift_rand *r)
{
	size_t live = 0, tombs = 0;
	for (uint64_t id = 0; id < REF_IDS; id++) {
		drift_hnsw_entry e;
		int rv = drift_hnsw_lookup(h, id, &e);
		if (ref[id].kind == 0) {
			cr_assert_eq(rv, DRIFT_ENOENT, "id %lu", id);
			continue;
		}
		cr_assert_eq(rv, 0, "id %lu", id);
		cr_assert_eq(e.id, id);
		cr_assert_eq((int)e.kind, ref[id].kind, "id %lu", id);
		cr_assert_eq(e.seqno, ref[id].seqno, "id %lu", id);
		if (e.kind == DRIFT_HNSW_LIVE) {
			live++;
			cr_assert_arr_eq(e.vec, ref[id].v, sizeof(ref[id].v));
		} else {
			tombs++;
			cr_assert_null(e.vec);
		}
	}
	drift_hnsw_stats st;
	drift_hnsw_stats_get(h, &st);
	cr_assert_eq(st.live, live);
	cr_assert_eq(st.tombstones, tombs);
	cr_assert_eq(st.ids, live + tombs);

	bool seen[REF_IDS] = {false};
	drift_hnsw_iter it;
	drift_hnsw_entry e;
	size_t count = 0;
	drift_hnsw_iter_init(&it, h);
	while (drift_hnsw_iter_next(&it, &e)) {
		cr_assert_lt(e.id, REF_IDS);
		cr_assert(!seen[e.id], "id %lu twice", e.id);
		seen[e.id] = true;
		cr_assert_eq((int)e.kind, ref[e.id].kind);
		cr_assert_eq(e.seqno, ref[e.id].seqno);
		count++;
	}
	cr_assert_eq(count, live + tombs);

	float x[REF_IDS * REF_DIM];
	bool alive[REF_IDS];
	for (size_t id = 0; id < REF_IDS; id++) {
		memcpy(x + id * REF_DIM, ref[id].v, sizeof(ref[id].v));
		alive[id] = ref[id].kind == DRIFT_HNSW_LIVE;
	}
	for (int t = 0; t < 20; t++) {
		float q[REF_DIM];
		for (int j = 0; j < REF_DIM; j++)
			q[j] = (float)drift_rand_normal(r);
		drift_hit got[10], want[10];
		size_t ng;
		cr_assert_eq(drift_hnsw_search(h, q, 10, st.rows, got, &ng), 0);
		size_t nw = brute(DRIFT_METRIC_L2, x, alive, REF_IDS, REF_DIM,
				  q, 10, want);
		cr_assert_eq(ng, nw);
		const char *bad = malformed(DRIFT_METRIC_L2, x, REF_IDS,
					    REF_DIM, q, got, ng, 10);
		cr_assert_null(bad, "%s", bad);
		for (size_t i = 0; i < ng; i++) {
			cr_assert(alive[got[i].id], "dead id %lu returned",
				  got[i].id);
			cr_assert_eq(got[i].distance, want[i].distance,
				     "rank %zu", i);
		}
	}
}

DRIFT_TEST(hnsw, updates_and_deletes_match_a_reference)
{
	const size_t ops = 3000;
	make(REF_DIM, DRIFT_METRIC_L2, (uint32_t)ops, (uint32_t)ops);
	ref_entry *ref = calloc(REF_IDS, sizeof(ref_entry));
	drift_rand r;
	drift_rand_seed(&r, 11);
	uint64_t seqno = 100;
	size_t inserts = 0, stale = 0;
	for (size_t op = 0; op < ops; op++) {
		uint64_t id = drift_rand_below(&r, REF_IDS);
		unsigned what = (unsigned)drift_rand_below(&r, 10);
		/* One write in ten comes with an old seqno (a replay). */
		bool old = drift_rand_below(&r, 10) == 0 && ref[id].kind != 0;
		uint64_t s = old ? ref[id].seqno - 1 : ++seqno;
		if (what < 7) {
			float v[REF_DIM];
			for (int j = 0; j < REF_DIM; j++)
				v[j] = (float)drift_rand_normal(&r);
			int rv = drift_hnsw_insert(h, id, v, s, NULL);
			if (old) {
				cr_assert_eq(rv, DRIFT_ESTALE);
				stale++;
				continue;
			}
			cr_assert_eq(rv, 0);
			inserts++;
			ref[id].kind = DRIFT_HNSW_LIVE;
			memcpy(ref[id].v, v, sizeof(v));
		} else {
			int rv = drift_hnsw_delete(h, id, s);
			if (old) {
				cr_assert_eq(rv, DRIFT_ESTALE);
				stale++;
				continue;
			}
			cr_assert_eq(rv, 0);
			ref[id].kind = DRIFT_HNSW_TOMBSTONE;
		}
		ref[id].seqno = s;
		if (op % 500 == 499)
			check_against(ref, &r);
	}
	cr_assert_eq(drift_hnsw_count(h), inserts);
	cr_assert_gt(stale, 100);
	check_against(ref, &r);
	/* An equal seqno is a later write of the same instant: it wins. */
	for (uint64_t id = 0; id < REF_IDS; id++) {
		if (ref[id].kind != DRIFT_HNSW_LIVE)
			continue;
		cr_assert_eq(drift_hnsw_delete(h, id, ref[id].seqno), 0);
		ref[id].kind = DRIFT_HNSW_TOMBSTONE;
		break;
	}
	check_against(ref, &r);
	free(ref);
}

DRIFT_TEST(hnsw, lookup_of_cosine_gives_the_normalised_vector)
{
	make(4, DRIFT_METRIC_COSINE, 4, 0);
	float v[4] = {3, 0, 4, 0}, want[4];
	normalise(v, want, 4);
	cr_assert_eq(drift_hnsw_insert(h, 42, v, 9, NULL), 0);
	drift_hnsw_entry e;
	cr_assert_eq(drift_hnsw_lookup(h, 42, &e), 0);
	cr_assert_eq(e.kind, DRIFT_HNSW_LIVE);
	cr_assert_eq(e.seqno, 9);
	cr_assert_arr_eq(e.vec, want, sizeof(want));
	cr_assert_float_eq(e.vec[2], 0.8f, 1e-6);
	cr_assert_eq(drift_hnsw_lookup(h, 43, &e), DRIFT_ENOENT);
}

/* ---- Cases: limits and refusals --------------------------------------- */

DRIFT_TEST(hnsw, capacity_and_tombstone_limits)
{
	make(4, DRIFT_METRIC_L2, 50, 5);
	float v[4] = {1, 2, 3, 4};
	for (uint64_t i = 0; i < 50; i++) {
		v[0] = (float)i;
		cr_assert_eq(drift_hnsw_insert(h, i % 30, v, i + 1, NULL), 0);
	}
	cr_assert_eq(drift_hnsw_insert(h, 7, v, 100, NULL), DRIFT_ELIMIT);
	cr_assert_eq(drift_hnsw_insert(h, 99, v, 100, NULL), DRIFT_ELIMIT);
	cr_assert_eq(drift_hnsw_count(h), 50);
	/* Deleting an id that is here needs no room. */
	for (uint64_t i = 0; i < 30; i++)
		cr_assert_eq(drift_hnsw_delete(h, i, 200), 0);
	/* Five ids not here yet, then no more. */
	for (uint64_t i = 1000; i < 1005; i++)
		cr_assert_eq(drift_hnsw_delete(h, i, 200), 0);
	cr_assert_eq(drift_hnsw_delete(h, 1005, 200), DRIFT_ELIMIT);
	cr_assert_eq(drift_hnsw_delete(h, 1002, 201), 0, "again: no new id");
	drift_hnsw_stats st;
	drift_hnsw_stats_get(h, &st);
	cr_assert_eq(st.rows, 50);
	cr_assert_eq(st.live, 0);
	cr_assert_eq(st.tombstones, 35);
	cr_assert_eq(st.ids, 35);
	cr_assert_gt(st.bytes, 50 * 4 * sizeof(float));
	drift_hit hit[5];
	size_t n = 99;
	cr_assert_eq(drift_hnsw_search(h, v, 5, 0, hit, &n), 0);
	cr_assert_eq(n, 0, "everything is deleted");
}

DRIFT_TEST(hnsw, nan_inf_and_zero_refused)
{
	make(3, DRIFT_METRIC_COSINE, 10, 0);
	float nan3[3] = {1, NAN, 0}, inf3[3] = {INFINITY, 1, 0};
	float zero[3] = {0, 0, 0}, ok[3] = {1, 1, 1};
	cr_assert_eq(drift_hnsw_insert(h, 1, nan3, 1, NULL), DRIFT_EINVAL);
	cr_assert_eq(drift_hnsw_insert(h, 1, inf3, 1, NULL), DRIFT_EINVAL);
	cr_assert_eq(drift_hnsw_insert(h, 1, zero, 1, NULL), DRIFT_EINVAL);
	cr_assert_eq(drift_hnsw_count(h), 0, "a refusal uses no row");
	cr_assert_eq(drift_hnsw_insert(h, 1, ok, 1, NULL), 0);
	drift_hit hit[2];
	size_t n;
	cr_assert_eq(drift_hnsw_search(h, nan3, 2, 0, hit, &n), DRIFT_EINVAL);
	cr_assert_eq(drift_hnsw_search(h, zero, 2, 0, hit, &n), DRIFT_EINVAL);
	cr_assert_eq(drift_hnsw_search(h, ok, 0, 0, hit, &n), DRIFT_EINVAL);
	cr_assert_eq(drift_hnsw_search(h, ok, 2, 1, hit, &n), 0, "ef < k");
	cr_assert_eq(n, 1);
	cr_assert_eq(hit[0].id, 1);
	cr_assert_float_eq(hit[0].distance, 0.0f, 1e-6);

	drift_hnsw_free(h);
	h = NULL;
	make(3, DRIFT_METRIC_L2, 10, 0);
	cr_assert_eq(drift_hnsw_insert(h, 1, zero, 1, NULL), 0,
		     "a zero vector is fine under L2");
}

DRIFT_TEST(hnsw, options_checked)
{
	drift_hnsw_opts o = {.dim = 8, .capacity = 10};
	drift_err err;
	drift_hnsw_opts bad[] = {
		{.dim = 0, .capacity = 10},
		{.dim = 8, .capacity = 0},
		{.dim = 8, .capacity = 10, .m = 1},
		{.dim = 8, .capacity = 10, .m = DRIFT_HNSW_MAX_M + 1},
		{.dim = 8, .capacity = 10, .metric = (enum drift_metric)7},
		{.dim = DRIFT_HNSW_MAX_DIM + 1, .capacity = 10},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		drift_hnsw *x = NULL;
		cr_assert_eq(drift_hnsw_new(&bad[i], &x, &err), DRIFT_EINVAL,
			     "case %zu", i);
		cr_assert_null(x);
		cr_assert_neq(err.msg[0], '\0');
	}
	cr_assert_eq(drift_hnsw_new(&o, &h, &err), 0);
	cr_assert_eq(drift_hnsw_dim(h), 8);
	cr_assert_eq(drift_hnsw_metric(h), DRIFT_METRIC_L2);
	drift_hnsw_stats st;
	drift_hnsw_stats_get(h, &st);
	cr_assert_eq(st.capacity, 10);
	cr_assert_eq(st.rows + st.live + st.tombstones + st.ids + st.levels, 0);
	drift_hit hit[1];
	size_t n = 5;
	float q[8] = {0};
	cr_assert_eq(drift_hnsw_search(h, q, 1, 0, hit, &n), 0);
	cr_assert_eq(n, 0, "empty");
}

/* Every allocation of drift_hnsw_new fails in turn: DRIFT_ENOMEM, nothing
 * leaked (the leak check of DRIFT_TEST), nothing written to out. Then the
 * same for a search and an insert. */
DRIFT_TEST(hnsw, allocation_failures)
{
	drift_hnsw_opts o = {.dim = 16, .capacity = 200, .seed = 3};
	int fails = 0;
	for (long nth = 1;; nth++) {
		drift_hnsw *x = (drift_hnsw *)&fails;
		drift_failalloc_arm(nth, 1);
		int rv = drift_hnsw_new(&o, &x, NULL);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			h = x;
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM, "allocation %ld", nth);
		cr_assert_eq(x, (drift_hnsw *)&fails, "out written");
		fails++;
	}
	cr_assert_geq(fails, 5,
		      "the handle, arena, id map, locks and scratch pool");

	drift_rand r;
	drift_rand_seed(&r, 5);
	float v[16];
	for (int j = 0; j < 16; j++)
		v[j] = (float)drift_rand_normal(&r);
	/* The first insert allocates its scratch (later ones reuse it):
	 * each of those allocations failing fails the insert, which then
	 * leaves no trace. */
	drift_hnsw_entry e;
	int allocs = 0;
	for (long nth = 1;; nth++) {
		drift_failalloc_arm(nth, 1);
		int rv = drift_hnsw_insert(h, 500, v, 500, NULL);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM, "insert, allocation %ld", nth);
		cr_assert_eq(drift_hnsw_lookup(h, 500, &e), DRIFT_ENOENT);
		allocs++;
	}
	cr_assert_geq(allocs, 4, "the scratch's arrays are allocations");
	for (uint64_t i = 0; i < 100; i++) {
		for (int j = 0; j < 16; j++)
			v[j] = (float)drift_rand_normal(&r);
		cr_assert_eq(drift_hnsw_insert(h, i, v, i + 1, NULL), 0);
	}
	drift_hit hit[5];
	size_t n;
	/* A search allocates its hits (and nothing else with a scratch to
	 * reuse). */
	drift_failalloc_arm(1, 1);
	int rv = drift_hnsw_search(h, v, 5, 10, hit, &n);
	cr_assert(drift_failalloc_fired());
	drift_failalloc_arm(0, 0);
	cr_assert_eq(rv, DRIFT_ENOMEM);
	cr_assert_eq(drift_hnsw_search(h, v, 5, 10, hit, &n), 0);
	cr_assert_eq(n, 5);
	/* A list wider than any scratch has grows one: that can fail too. */
	drift_failalloc_arm(1, 1);
	rv = drift_hnsw_search(h, v, 5, 4000, hit, &n);
	cr_assert(drift_failalloc_fired());
	drift_failalloc_arm(0, 0);
	cr_assert_eq(rv, DRIFT_ENOMEM);
	cr_assert_eq(drift_hnsw_search(h, v, 5, 4000, hit, &n), 0);
	cr_assert_eq(n, 5);
}

/* The id map starts small and doubles (as scratch lists grow): an insert
 * or delete whose allocation fails leaves no trace, and the same write
 * then succeeds. */
DRIFT_TEST(hnsw, growth_failures_change_nothing)
{
	make(8, DRIFT_METRIC_L2, 1000, 0);
	float v[8] = {0};
	/* The first insert allocates the scratch and its marks. */
	cr_assert_eq(drift_hnsw_insert(h, 0, v, 1, NULL), 0);
	int fails = 0;
	drift_hnsw_entry e;
	for (uint64_t id = 1; id < 600; id++) {
		v[0] = (float)id;
		drift_failalloc_arm(1, 1);
		int rv = id % 2 ? drift_hnsw_insert(h, id, v, id + 1, NULL)
				: drift_hnsw_delete(h, id, id + 1);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			continue;
		}
		fails++;
		cr_assert_eq(rv, DRIFT_ENOMEM);
		cr_assert_eq(drift_hnsw_lookup(h, id, &e), DRIFT_ENOENT);
		rv = id % 2 ? drift_hnsw_insert(h, id, v, id + 1, NULL)
			    : drift_hnsw_delete(h, id, id + 1);
		cr_assert_eq(rv, 0);
	}
	/* 64 slots at first, doubled at 32, 64, 128, 256 and 512 ids. */
	cr_assert_geq(fails, 5, "the map grew %d times", fails);
	for (uint64_t id = 0; id < 600; id++) {
		cr_assert_eq(drift_hnsw_lookup(h, id, &e), 0, "id %llu",
			     (unsigned long long)id);
		cr_assert_eq(e.kind, id % 2 || id == 0 ? DRIFT_HNSW_LIVE
						       : DRIFT_HNSW_TOMBSTONE);
	}
	size_t n = 0;
	drift_hnsw_iter it;
	drift_hnsw_iter_init(&it, h);
	while (drift_hnsw_iter_next(&it, &e))
		n++;
	cr_assert_eq(n, 600, "each id once after the map doubled");
}

/* Memory follows the rows written, not the capacity: a memtable sized
 * for a shard's 65,536 rows costs little while it is empty. */
DRIFT_TEST(hnsw, memory_follows_rows)
{
	make(64, DRIFT_METRIC_COSINE, 65536, 0);
	drift_hnsw_stats st;
	drift_hnsw_stats_get(h, &st);
	cr_assert_lt(st.bytes, 32 << 10, "empty: %llu bytes",
		     (unsigned long long)st.bytes);
	uint64_t empty = st.bytes;
	drift_rand r;
	drift_rand_seed(&r, 9);
	float v[64];
	for (uint64_t i = 0; i < 1000; i++) {
		for (int j = 0; j < 64; j++)
			v[j] = (float)drift_rand_normal(&r);
		cr_assert_eq(drift_hnsw_insert(h, i, v, i + 1, NULL), 0);
	}
	drift_hnsw_stats_get(h, &st);
	/* Each row: its vector (256 bytes), its layer-0 list (196), its
	 * id, seqno and state, its id map slots. */
	uint64_t per_row = (st.bytes - empty) / 1000;
	cr_assert(per_row >= 64 * 4 + 196 && per_row < 1024,
		  "%llu bytes per row", (unsigned long long)per_row);
}

/* ---- Cases: concurrency ----------------------------------------------- */

#define WRITERS 3
#define READERS 2
#define CHURN 1000

typedef struct conc {
	const float *x, *qs;
	size_t n, nq;
	_Atomic size_t next; /* next base row to insert */
	_Atomic int writing; /* writers still running */
	_Atomic long searches;
	_Atomic long bad;     /* malformed answers */
	_Atomic long errors;  /* failed calls */
	_Atomic long churned; /* rewrites done */
	const char *_Atomic why;
	uint64_t seed;
} conc;

static void *writer(void *arg)
{
	conc *c = arg;
	for (;;) {
		size_t i = atomic_fetch_add(&c->next, 1);
		if (i >= c->n)
			break;
		if (drift_hnsw_insert(h, i, c->x + i * DIM, i + 1, NULL) != 0)
			atomic_fetch_add(&c->errors, 1);
	}
	atomic_fetch_sub(&c->writing, 1);
	return NULL;
}

/* Rewrites ids already in place, with their own vector (so a reader's
 * distance check still holds): an update, or a delete then an insert,
 * with seqnos above the writers'. A search racing it may miss the id
 * for a moment but must never return it twice. */
static void *churner(void *arg)
{
	conc *c = arg;
	drift_rand r;
	drift_rand_seed(&r, c->seed);
	uint64_t seqno = 1ull << 40;
	while (atomic_load(&c->churned) < CHURN) {
		uint64_t id = drift_rand_below(&r, c->n);
		drift_hnsw_entry e;
		if (drift_hnsw_lookup(h, id, &e) != 0)
			continue; /* not inserted yet */
		if (drift_rand_below(&r, 2) == 0 &&
		    drift_hnsw_delete(h, id, ++seqno) != 0)
			atomic_fetch_add(&c->errors, 1);
		if (drift_hnsw_insert(h, id, c->x + id * DIM, ++seqno, NULL))
			atomic_fetch_add(&c->errors, 1);
		atomic_fetch_add(&c->churned, 1);
	}
	return NULL;
}

static void *reader(void *arg)
{
	conc *c = arg;
	drift_rand r;
	drift_rand_seed(&r, atomic_fetch_add(&c->searches, 1) + c->seed);
	drift_hit hit[10];
	while (atomic_load(&c->writing) > 0) {
		const float *q = c->qs + drift_rand_below(&r, c->nq) * DIM;
		/* Rows committed before the search: all taken but the
		 * writers' current ones. */
		size_t taken = atomic_load(&c->next), n;
		if (drift_hnsw_search(h, q, 10, 40, hit, &n) != 0) {
			atomic_fetch_add(&c->errors, 1);
			continue;
		}
		const char *why = malformed(DRIFT_METRIC_L2, c->x, c->n, DIM, q,
					    hit, n, 10);
		if (why == NULL && taken > 200 + WRITERS && n < 10)
			why = "fewer than k hits from a memtable of 200+";
		if (why != NULL) {
			atomic_fetch_add(&c->bad, 1);
			atomic_store(&c->why, why);
		}
		atomic_fetch_add(&c->searches, 1);
	}
	return NULL;
}

DRIFT_TEST(hnsw, concurrent_writers_and_readers)
{
	conc c = {.seed = 17};
	size_t n, nq;
	float *x = drift_test_fmnist("train", BASE_ROWS / 2, &n);
	float *qs = drift_test_fmnist("t10k", QUERIES, &nq);
	c.x = x;
	c.qs = qs;
	c.n = n;
	c.nq = nq;
	make(DIM, DRIFT_METRIC_L2, (uint32_t)n + CHURN, 0);
	atomic_store(&c.writing, WRITERS);
	pthread_t w[WRITERS], rd[READERS], ch;
	for (int i = 0; i < READERS; i++)
		cr_assert_eq(pthread_create(&rd[i], NULL, reader, &c), 0);
	for (int i = 0; i < WRITERS; i++)
		cr_assert_eq(pthread_create(&w[i], NULL, writer, &c), 0);
	cr_assert_eq(pthread_create(&ch, NULL, churner, &c), 0);
	pthread_join(ch, NULL);
	for (int i = 0; i < WRITERS; i++)
		pthread_join(w[i], NULL);
	for (int i = 0; i < READERS; i++)
		pthread_join(rd[i], NULL);
	cr_assert_eq(atomic_load(&c.errors), 0);
	cr_assert_eq(atomic_load(&c.bad), 0, "%ld bad answers: %s",
		     atomic_load(&c.bad), atomic_load(&c.why));
	cr_assert_gt(atomic_load(&c.searches), 50, "readers ran");
	cr_log_info("hnsw concurrent: %ld searches during %zu inserts",
		    atomic_load(&c.searches), n);
	drift_hnsw_stats st;
	drift_hnsw_stats_get(h, &st);
	cr_assert_eq(st.rows, n + CHURN);
	cr_assert_eq(st.live, n);
	cr_assert_eq(st.tombstones, 0);

	drift_hit *truth = ground_truth(DRIFT_METRIC_L2, x, n, qs, nq, 10);
	double rec = recall(DRIFT_METRIC_L2, x, n, qs, nq, 10, 100, truth);
	cr_log_info("hnsw concurrent: recall@10 %.4f at ef 100", rec);
	cr_assert_geq(rec, 0.98, "recall %.4f after concurrent build", rec);
	free(truth);
	free(x);
	free(qs);
}
