/* Tests of the L1 index (node/l1*.c): exactness against brute force, the
 * quality floors, each maintenance step on crafted cases, drift_kv
 * consistency under random churn, and recall under a drifting stream of
 * real data. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/rand.h"
#include "common/topk.h"
#include "common/vec.h"
#include "node/codec/sq8.h"
#include "node/l1/l1.h"
#include "node/l1/l1_internal.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static drift_l1 *l1;

/* DRIFT_TEST_VSTORE=file (a second meson test) runs every case with the
 * full vectors in a scratch file behind a 32 KiB row cache, so re-ranking,
 * maintenance and persistence read them from disk. */
static char store_dir[4096];

static drift_l1_opts *with_store(drift_l1_opts *o)
{
	const char *m = getenv("DRIFT_TEST_VSTORE");
	if (m == NULL || strcmp(m, "file") != 0)
		return o;
	if (store_dir[0] == 0)
		drift_test_tmpdir(store_dir, sizeof(store_dir));
	o->vec_dir = store_dir;
	o->vec_cache_bytes = 32 << 10;
	return o;
}

static void store_cleanup(void)
{
	if (store_dir[0] != 0)
		drift_test_rmtree(store_dir);
	store_dir[0] = 0;
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_l1_free(l1);
	l1 = NULL;
	store_cleanup();
}

TestSuite(l1, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static void make_index(uint32_t dim, enum drift_metric m, uint32_t target)
{
	drift_l1_opts o = {
		.dim = dim, .metric = m, .bucket_target = target, .seed = 1};
	drift_err err;
	cr_assert_eq(drift_l1_new(with_store(&o), &l1, &err), 0, "%s", err.msg);
}

/* n points in `blobs` Gaussian blobs of spread 1 around centres of spread
 * 10 (seeded). */
static float *blob_data(size_t n, uint32_t dim, unsigned blobs, uint64_t seed)
{
	drift_rand r;
	drift_rand_seed(&r, seed);
	float *c = malloc(blobs * dim * sizeof(float));
	for (size_t i = 0; i < (size_t)blobs * dim; i++)
		c[i] = (float)(drift_rand_normal(&r) * 10);
	float *x = malloc(n * dim * sizeof(float));
	for (size_t i = 0; i < n; i++) {
		unsigned b = (unsigned)drift_rand_below(&r, blobs);
		for (uint32_t j = 0; j < dim; j++)
			x[i * dim + j] =
				c[b * dim + j] + (float)drift_rand_normal(&r);
	}
	free(c);
	return x;
}

static float dist(enum drift_metric m, const float *a, const float *b,
		  uint32_t dim)
{
	const drift_vec_kernels *k = drift_vec();
	if (m == DRIFT_METRIC_L2)
		return k->l2sq(a, b, dim);
	if (m == DRIFT_METRIC_IP)
		return -k->dot(a, b, dim);
	float na = sqrtf(k->dot(a, a, dim)), nb = sqrtf(k->dot(b, b, dim));
	return 1.0f - k->dot(a, b, dim) / (na * nb);
}

/* Exact top-k of q among the n rows (ids[i] = i unless ids given). */
static size_t brute(enum drift_metric m, const float *x, const uint64_t *ids,
		    const bool *live, size_t n, uint32_t dim, const float *q,
		    uint32_t k, drift_hit *out)
{
	drift_topk t;
	drift_topk_init(&t, out, k);
	for (size_t i = 0; i < n; i++)
		if (live == NULL || live[i])
			drift_topk_push(
				&t, (drift_hit){ids ? ids[i] : i,
						dist(m, q, x + i * dim, dim)});
	return drift_topk_sort(&t);
}

static double recall_of(const drift_hit *got, size_t ng, const drift_hit *want,
			size_t nw)
{
	size_t hit = 0;
	for (size_t i = 0; i < nw; i++)
		for (size_t j = 0; j < ng; j++)
			if (got[j].id == want[i].id) {
				hit++;
				break;
			}
	return nw ? (double)hit / nw : 1.0;
}

static uint64_t *seq_ids(size_t n, uint64_t first)
{
	uint64_t *ids = malloc(n * sizeof(uint64_t));
	for (size_t i = 0; i < n; i++)
		ids[i] = first + i;
	return ids;
}

/* Mean recall@10 of queries q (nq rows) with search options so, against
 * brute force over the n rows of x. */
static double mean_recall(const float *x, size_t n, const float *q, size_t nq,
			  uint32_t dim, drift_l1_search_opts so,
			  double *mean_probed)
{
	drift_hit got[10], want[10];
	double sum = 0, probed = 0;
	for (size_t i = 0; i < nq; i++) {
		size_t ng, nw;
		drift_l1_search_stats st;
		cr_assert_eq(
			drift_l1_search(l1, q + i * dim, &so, got, &ng, &st),
			0);
		nw = brute(DRIFT_METRIC_L2, x, NULL, NULL, n, dim, q + i * dim,
			   10, want);
		sum += recall_of(got, ng, want, nw);
		probed += st.probed;
	}
	if (mean_probed != NULL)
		*mean_probed = probed / nq;
	return sum / nq;
}

/* Every id the model holds is found with its vector; nothing else is. */
static void assert_consistent(const float *model, const bool *live, size_t n,
			      uint32_t dim)
{
	float *v = malloc(dim * sizeof(float));
	size_t count = 0;
	for (size_t i = 0; i < n; i++) {
		int rv = drift_l1_get(l1, i, v, NULL);
		if (live[i]) {
			count++;
			cr_assert_eq(rv, 0, "id %zu lost", i);
			cr_assert_eq(
				memcmp(v, model + i * dim, dim * sizeof(float)),
				0, "id %zu has a wrong vector", i);
		} else {
			cr_assert_eq(rv, DRIFT_ENOENT, "id %zu is back", i);
		}
	}
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	cr_assert_eq(st.vectors, count);
	free(v);
}

/* ---- Cases: search ---------------------------------------------------- */

DRIFT_TEST(l1, exact_searches_match_brute_force_for_every_metric)
{
	enum { N = 3000, DIM = 24, NQ = 20 };
	enum drift_metric metrics[] = {DRIFT_METRIC_L2, DRIFT_METRIC_IP,
				       DRIFT_METRIC_COSINE};
	float *x = blob_data(N, DIM, 20, 5);
	float *q = blob_data(NQ, DIM, 20, 6);
	uint64_t *ids = seq_ids(N, 0);
	for (int mi = 0; mi < 3; mi++) {
		make_index(DIM, metrics[mi], 64);
		drift_err err;
		cr_assert_eq(drift_l1_build(l1, ids, x, N, 1, &err), 0, "%s",
			     err.msg);
		for (int qi = 0; qi < NQ; qi++) {
			drift_hit want[10], got[10];
			size_t nw = brute(metrics[mi], x, NULL, NULL, N, DIM,
					  q + qi * DIM, 10, want);
			const drift_l1_search_opts modes[] = {
				{.k = 10, .exhaustive = true},
				{.k = 10, .recall_target = 1.0f},
			};
			for (int m = 0; m < 2; m++) {
				size_t ng;
				drift_l1_search_stats st;
				cr_assert_eq(drift_l1_search(l1, q + qi * DIM,
							     &modes[m], got,
							     &ng, &st),
					     0);
				cr_assert_eq(ng, nw);
				for (size_t i = 0; i < ng; i++) {
					cr_assert_eq(got[i].id, want[i].id,
						     "metric %d mode %d q %d "
						     "rank %zu",
						     mi, m, qi, i);
					cr_assert_float_eq(got[i].distance,
							   want[i].distance,
							   1e-3f);
				}
			}
		}
		drift_l1_free(l1);
		l1 = NULL;
	}
	free(x);
	free(q);
	free(ids);
}

/* Every calibration query that apply kept (not stale) lists exactly its
 * true nearest neighbours among the live vectors (l1_calib_note): ids and
 * distances. Returns how many were checked. */
static size_t check_calib_sample(const float *ref, bool *live, size_t n,
				 uint32_t dim)
{
	const l1_sample *sm = &l1->sample;
	drift_hit want[100], got[100];
	size_t checked = 0;
	for (size_t i = 0; i < sm->nq; i++) {
		if (sm->stale[i])
			continue;
		uint64_t self = sm->self[i];
		cr_assert(self < n && live[self]);
		live[self] = false;
		size_t nw = brute(DRIFT_METRIC_L2, ref, NULL, live, n, dim,
				  sm->q + i * dim, 100, want);
		live[self] = true;
		size_t ng = sm->top[i].n;
		memcpy(got, sm->top[i].h, ng * sizeof(drift_hit));
		drift_topk t = {.h = got, .k = ng, .n = ng};
		ng = drift_topk_sort(&t);
		/* A list that lost members holds the nearest that many. */
		cr_assert(ng <= nw && ng >= 50, "query %zu: %zu of %zu", i, ng,
			  nw);
		for (size_t h = 0; h < ng; h++) {
			cr_assert_float_eq(got[h].distance, want[h].distance,
					   1e-3f * (want[h].distance + 1),
					   "query %zu rank %zu", i, h);
			if (h + 1 < ng &&
			    want[h].distance < want[h + 1].distance &&
			    (h == 0 || want[h - 1].distance < want[h].distance))
				cr_assert_eq(got[h].id, want[h].id,
					     "query %zu rank %zu", i, h);
		}
		checked++;
	}
	return checked;
}

/* Flushes change buckets in place of a full rebuild (l1_bucket_finish_update:
 * old members keep their SQ8 codes and ranges, the running sum and rms are
 * updated with the new and the departed vectors only). Whatever path each
 * version took, every bucket must describe its members exactly: its sum is
 * theirs, its rms theirs, its radius at least their largest distance, and
 * each member's code is its vector's code under the bucket's ranges, within
 * the bucket's error bound (which the exact search prunes by). */
DRIFT_TEST(l1, bucket_statistics_stay_exact_under_updates)
{
	enum { N0 = 2000, ROUNDS = 30, NEW = 150, UPD = 60, DEL = 40 };
	enum { DIM = 16, CAP = N0 + ROUNDS * NEW };
	float *pool = blob_data(CAP + ROUNDS * UPD, DIM, 12, 21);
	float *ref = malloc((size_t)CAP * DIM * sizeof(float));
	bool *live = calloc(CAP, sizeof(bool));
	uint64_t *ids = seq_ids(CAP, 0);
	memcpy(ref, pool, (size_t)N0 * DIM * sizeof(float));
	for (size_t i = 0; i < N0; i++)
		live[i] = true;
	make_index(DIM, DRIFT_METRIC_L2, 64);
	cr_assert_eq(drift_l1_build(l1, ids, ref, N0, 1, NULL), 0);
	drift_rand r;
	drift_rand_seed(&r, 3);
	size_t next = N0, fresh = CAP;
	uint64_t up[NEW + UPD], del[DEL];
	float *uv = malloc((NEW + UPD) * DIM * sizeof(float));
	for (int round = 0; round < ROUNDS; round++) {
		size_t nu = 0, nd = 0;
		for (int i = 0; i < NEW; i++, nu++, next++) {
			up[nu] = next;
			memcpy(uv + nu * DIM, pool + next * DIM,
			       DIM * sizeof(float));
		}
		for (int i = 0; i < UPD + DEL; i++) {
			uint64_t id = drift_rand_below(&r, next - NEW);
			if (!live[id])
				continue;
			bool dup = false;
			for (size_t j = 0; j < nu; j++)
				dup |= up[j] == id;
			for (size_t j = 0; j < nd; j++)
				dup |= del[j] == id;
			if (dup)
				continue;
			if (i < UPD) {
				up[nu] = id;
				memcpy(uv + nu++ * DIM, pool + fresh++ * DIM,
				       DIM * sizeof(float));
			} else {
				del[nd++] = id;
			}
		}
		cr_assert_eq(drift_l1_apply(l1, up, uv, nu, del, nd,
					    (uint64_t)round + 2, NULL, NULL),
			     0);
		for (size_t j = 0; j < nu; j++) {
			memcpy(ref + up[j] * DIM, uv + j * DIM,
			       DIM * sizeof(float));
			live[up[j]] = true;
		}
		for (size_t j = 0; j < nd; j++)
			live[del[j]] = false;
		/* Some rounds split and merge too (full rebuilds); the last
		 * five only apply. */
		if (round % 10 == 4)
			cr_assert_eq(drift_l1_maintain(l1, 3, NULL, NULL), 0);
	}
	const drift_vec_kernels *k = drift_vec();
	size_t members = 0, kept_ranges = 0;
	float v[DIM], dec[DIM], fmin[DIM], fscale[DIM];
	uint8_t code[DIM];
	for (uint32_t sl = 0; sl < l1->nslots; sl++) {
		const l1_bucket *b = l1->b[sl];
		if (b == NULL)
			continue;
		double sum[DIM] = {0}, sq = 0, maxd = 0;
		float *mv = malloc((size_t)b->n * DIM * sizeof(float));
		for (uint32_t m = 0; m < b->n; m++) {
			uint64_t id = b->ids[m];
			cr_assert(id < CAP && live[id], "id %llu",
				  (unsigned long long)id);
			cr_assert_eq(l1_bucket_vectors(l1, b, m, 1, v), 0);
			cr_assert_eq(memcmp(v, ref + id * DIM, sizeof(v)), 0,
				     "id %llu: stored vector",
				     (unsigned long long)id);
			memcpy(mv + (size_t)m * DIM, v, sizeof(v));
			for (int j = 0; j < DIM; j++)
				sum[j] += v[j];
			double d = k->l2sq(v, b->centroid, DIM);
			sq += d;
			maxd = d > maxd ? d : maxd;
			cr_assert_eq(drift_sq8_encode(b->qmin, b->qscale, DIM,
						      v, 1, code),
				     0);
			cr_assert_eq(
				memcmp(code, b->codes + (size_t)m * DIM, DIM),
				0, "id %llu: code", (unsigned long long)id);
			drift_sq8_decode(b->qmin, b->qscale, DIM, code, 1, dec);
			cr_assert_leq(sqrtf(k->l2sq(v, dec, DIM)), b->qerr);
			members++;
		}
		for (int j = 0; j < DIM; j++)
			cr_assert_float_eq(b->sum[j], sum[j],
					   1e-6 * (fabs(sum[j]) + b->n),
					   "slot %u dim %d", sl, j);
		cr_assert_float_eq(b->rms, sqrt(sq / b->n),
				   1e-4 * sqrt(sq / b->n) + 1e-6);
		cr_assert_geq(b->radius, sqrt(maxd) * (1 - 1e-5));
		drift_sq8_train(mv, b->n, DIM, fmin, fscale);
		kept_ranges += memcmp(fmin, b->qmin, sizeof(fmin)) != 0 ||
			       memcmp(fscale, b->qscale, sizeof(fscale)) != 0;
		free(mv);
	}
	size_t nlive = 0;
	for (size_t i = 0; i < CAP; i++)
		nlive += live[i];
	cr_assert_eq(members, nlive);
	/* The update path ran: some buckets kept older, wider ranges. */
	cr_assert_gt(kept_ranges, 0);
	/* Most of the calibration sample lived through the updates. */
	size_t checked = check_calib_sample(ref, live, CAP, DIM);
	cr_log_info("calibration sample: %zu of %zu queries kept", checked,
		    l1->sample.nq);
	cr_assert_geq(checked, l1->sample.nq / 4, "%zu of %zu", checked,
		      l1->sample.nq);
	cr_assert_eq(drift_l1_maintain(l1, 0, NULL, NULL), 0);
	cr_assert_eq(l1_calib_refresh(l1, NULL), 0);
	cr_assert_eq(check_calib_sample(ref, live, CAP, DIM), l1->sample.nq);
	free(pool);
	free(ref);
	free(live);
	free(ids);
	free(uv);
}

DRIFT_TEST(l1, search_arguments)
{
	make_index(4, DRIFT_METRIC_COSINE, 8);
	float v[4] = {0};
	drift_hit out[4];
	size_t n = 99;
	drift_l1_search_opts so = {.k = 3};
	cr_assert_eq(drift_l1_search(l1, v, &so, out, &n, NULL), DRIFT_EINVAL,
		     "a zero query has no cosine");
	v[0] = 1;
	cr_assert_eq(drift_l1_search(l1, v, &so, out, &n, NULL), 0);
	cr_assert_eq(n, 0, "empty index");
	so.k = 0;
	cr_assert_eq(drift_l1_search(l1, v, &so, out, &n, NULL), DRIFT_EINVAL);
	so = (drift_l1_search_opts){.k = 1, .nprobe = 2, .recall_target = 0.5f};
	cr_assert_eq(drift_l1_search(l1, v, &so, out, &n, NULL), DRIFT_EINVAL);
	uint64_t id = 7;
	float zero[4] = {0};
	drift_err err;
	cr_assert_eq(drift_l1_apply(l1, &id, zero, 1, NULL, 0, 1, NULL, &err),
		     DRIFT_EINVAL);
	cr_assert_not_null(strstr(err.msg, "zero norm"));
	float nan4[4] = {1, NAN, 0, 0};
	cr_assert_eq(drift_l1_apply(l1, &id, nan4, 1, NULL, 0, 1, NULL, &err),
		     DRIFT_EINVAL);
	cr_assert_not_null(strstr(err.msg, "NaN or infinite"), "%s", err.msg);
	nan4[1] = INFINITY;
	cr_assert_eq(drift_l1_build(l1, &id, nan4, 1, 1, &err), DRIFT_EINVAL);
	float w[4] = {3, 4, 0, 0};
	cr_assert_eq(drift_l1_apply(l1, &id, w, 1, NULL, 0, 1, NULL, &err), 0);
	float got[4];
	cr_assert_eq(drift_l1_get(l1, 7, got, NULL), 0);
	cr_assert_float_eq(got[0], 0.6f, 1e-6f, "COSINE stores normalised");
}

DRIFT_TEST(l1, recall_floor_on_clustered_data_at_a_fixed_budget)
{
	enum { N = 20000, DIM = 32, NQ = 100 };
	float *x = blob_data(N, DIM, 100, 7);
	float *q = blob_data(NQ, DIM, 100, 8);
	uint64_t *ids = seq_ids(N, 0);
	make_index(DIM, DRIFT_METRIC_L2, 256);
	cr_assert_eq(drift_l1_build(l1, ids, x, N, 1, NULL), 0);
	double probed;
	double r = mean_recall(x, N, q, NQ, DIM,
			       (drift_l1_search_opts){.k = 10, .nprobe = 8},
			       &probed);
	cr_log_info("clustered: recall@10 %.3f with nprobe 8", r);
	cr_assert_geq(r, 0.90);
	free(x);
	free(q);
	free(ids);
}

/* The recall target holds on real data (Fashion-MNIST: 20,000 training
 * images as the base, 200 test images as queries) without probing
 * everything, and without overshooting: the mean recall@10 lies within
 * [t - 0.01, t + 0.03] (issue 23 asks [t - 0.005, t + 0.02] of the whole
 * sets; 200 queries leave about 0.005 of sampling noise either way). */
DRIFT_TEST(l1, recall_target_holds_on_fashion_mnist)
{
	enum { DIM = DRIFT_TEST_FMNIST_DIM };
	size_t n, nq;
	float *x = drift_test_fmnist("train", 20000, &n);
	float *q = drift_test_fmnist("t10k", 200, &nq);
	uint64_t *ids = seq_ids(n, 0);
	make_index(DIM, DRIFT_METRIC_L2, 256);
	cr_assert_eq(drift_l1_build(l1, ids, x, n, 1, NULL), 0);
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	const float targets[] = {0.9f, 0.95f, 0.99f};
	for (int t = 0; t < 3; t++) {
		double probed;
		double r = mean_recall(
			x, n, q, nq, DIM,
			(drift_l1_search_opts){.k = 10,
					       .recall_target = targets[t]},
			&probed);
		cr_log_info("fashion-mnist: target %.2f -> recall@10 %.4f, "
			    "%.1f of %u buckets probed",
			    targets[t], r, probed, st.buckets);
		cr_assert_geq(r, targets[t] - 0.01, "target %.2f gave %.4f",
			      targets[t], r);
		cr_assert_leq(r, targets[t] + 0.03, "target %.2f gave %.4f",
			      targets[t], r);
		cr_assert_lt(probed, st.buckets * 0.8, "not exhaustive");
	}
	free(x);
	free(q);
	free(ids);
}

/* The RaBitQ first pass (node/codec/rabitq.h) gives the answers of the
 * SQ8 scan alone, for L2 and inner products, while it lets only a small
 * part of the scanned rows through to SQ8 (Fashion-MNIST: 20,000 training
 * images, 200 test images as queries, a budget of 4 buckets). */
DRIFT_TEST(l1, rabitq_pass_answers_as_the_sq8_scan)
{
	enum { DIM = DRIFT_TEST_FMNIST_DIM };
	size_t n, nq;
	float *x = drift_test_fmnist("train", 20000, &n);
	float *q = drift_test_fmnist("t10k", 200, &nq);
	uint64_t *ids = seq_ids(n, 0);
	for (int m = 0; m < 2; m++) {
		enum drift_metric metric =
			m ? DRIFT_METRIC_IP : DRIFT_METRIC_L2;
		make_index(DIM, metric, 256);
		cr_assert_eq(drift_l1_build(l1, ids, x, n, 1, NULL), 0);
		double same = 0;
		uint64_t scanned = 0, refined = 0;
		for (size_t i = 0; i < nq; i++) {
			drift_hit a[10], b[10];
			size_t na, nb;
			drift_l1_search_stats st;
			drift_l1_search_opts so = {.k = 10, .nprobe = 4};
			cr_assert_eq(drift_l1_search(l1, q + i * DIM, &so, a,
						     &na, &st),
				     0);
			scanned += st.scanned;
			refined += st.refined;
			so.sq8_scan = true;
			cr_assert_eq(drift_l1_search(l1, q + i * DIM, &so, b,
						     &nb, NULL),
				     0);
			cr_assert_eq(na, nb);
			same += recall_of(a, na, b, nb);
		}
		same /= (double)nq;
		cr_log_info("metric %d: %.4f of the SQ8 scan's hits, %llu of "
			    "%llu rows refined",
			    m, same, (unsigned long long)refined,
			    (unsigned long long)scanned);
		cr_assert_geq(same, 0.995, "metric %d: %.4f", m, same);
		cr_assert_gt(refined, 0);
		cr_assert_lt(refined, scanned / 4, "metric %d", m);
		drift_l1_free(l1);
		l1 = NULL;
	}
	free(x);
	free(q);
	free(ids);
}

/* Past 2 * 64 buckets, calibration looks for each query's neighbours in its
 * 64 nearest buckets first (l1_calib.c): that path must calibrate as well
 * as the scan of everything. */
DRIFT_TEST(l1, recall_target_holds_with_many_buckets)
{
	enum { DIM = 24, N = 30000, NQ = 200 };
	float *x = blob_data(N + NQ, DIM, 60, 11);
	const float *q = x + (size_t)N * DIM;
	uint64_t *ids = seq_ids(N, 0);
	make_index(DIM, DRIFT_METRIC_L2, 64);
	drift_err err;
	cr_assert_eq(drift_l1_build(l1, ids, x, N, 1, &err), 0, "%s", err.msg);
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	cr_assert_gt(st.buckets, 2 * 64);
	const float targets[] = {0.9f, 0.95f, 0.99f};
	for (int t = 0; t < 3; t++) {
		double probed;
		double r = mean_recall(
			x, N, q, NQ, DIM,
			(drift_l1_search_opts){.k = 10,
					       .recall_target = targets[t]},
			&probed);
		cr_log_info("blobs: target %.2f -> recall@10 %.4f, %.1f of %u "
			    "buckets probed",
			    targets[t], r, probed, st.buckets);
		cr_assert_geq(r, targets[t], "target %.2f gave %.4f",
			      targets[t], r);
		cr_assert_lt(probed, st.buckets * 0.5, "calibrated");
	}
	free(x);
	free(ids);
}

/* ---- Cases: apply ----------------------------------------------------- */

DRIFT_TEST(l1, upserts_move_and_deletes_hide)
{
	enum { N = 2000, DIM = 8 };
	float *x = blob_data(N, DIM, 10, 9);
	uint64_t *ids = seq_ids(N, 0);
	make_index(DIM, DRIFT_METRIC_L2, 64);
	cr_assert_eq(drift_l1_build(l1, ids, x, N, 1, NULL), 0);

	/* Move id 5 onto id 1000's spot; delete 1000 and a few unknowns. */
	uint64_t mv = 5;
	uint64_t del[] = {1000, 1000, 999999, UINT64_MAX};
	size_t deleted;
	drift_err err;
	cr_assert_eq(drift_l1_apply(l1, &mv, x + 1000 * DIM, 1, del, 4, 2,
				    &deleted, &err),
		     0, "%s", err.msg);
	cr_assert_eq(deleted, 1);
	float v[DIM];
	uint64_t version;
	cr_assert_eq(drift_l1_get(l1, 5, v, &version), 0);
	cr_assert_eq(memcmp(v, x + 1000 * DIM, sizeof(v)), 0);
	cr_assert_eq(version, 2);
	cr_assert_eq(drift_l1_get(l1, 1000, v, NULL), DRIFT_ENOENT);
	drift_hit out[5];
	size_t n;
	drift_l1_search_opts so = {.k = 5, .exhaustive = true};
	cr_assert_eq(drift_l1_search(l1, x + 1000 * DIM, &so, out, &n, NULL),
		     0);
	cr_assert_eq(out[0].id, 5);
	cr_assert_float_eq(out[0].distance, 0.0f, 0);
	for (size_t i = 0; i < n; i++)
		cr_assert_neq(out[i].id, 1000);

	/* Upserted and deleted in one batch: refused, nothing changes. */
	uint64_t both = 7;
	cr_assert_eq(drift_l1_apply(l1, &both, x, 1, &both, 1, 3, NULL, &err),
		     DRIFT_EINVAL);
	cr_assert_eq(drift_l1_get(l1, 7, v, &version), 0);
	cr_assert_eq(version, 1);

	/* Ids 0 and 2^64-1 are ids like any other. */
	uint64_t edge[2] = {0, UINT64_MAX};
	cr_assert_eq(drift_l1_apply(l1, edge, x, 2, NULL, 0, 4, NULL, &err), 0);
	cr_assert_eq(drift_l1_get(l1, UINT64_MAX, v, NULL), 0);
	free(x);
	free(ids);
}

DRIFT_TEST(l1, failed_apply_changes_nothing)
{
	enum { N = 500, DIM = 8 };
	float *x = blob_data(N, DIM, 5, 10);
	uint64_t *ids = seq_ids(N, 0);
	make_index(DIM, DRIFT_METRIC_L2, 32);
	cr_assert_eq(drift_l1_build(l1, ids, x, N, 1, NULL), 0);
	float *y = blob_data(50, DIM, 5, 11);
	uint64_t *nid = seq_ids(50, 480); /* 20 replace, 30 new */
	uint64_t del[] = {3, 4};
	bool live[530];
	for (size_t n = 1;; n++) {
		drift_failalloc_arm((long)n, 0);
		int rv = drift_l1_apply(l1, nid, y, 50, del, 2, 2, NULL, NULL);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM);
		for (size_t i = 0; i < 530; i++)
			live[i] = i < N;
		assert_consistent(x, live, 530, DIM);
	}
	float *model = malloc(530 * DIM * sizeof(float));
	memcpy(model, x, N * DIM * sizeof(float));
	memcpy(model + 480 * DIM, y, 50 * DIM * sizeof(float));
	for (size_t i = 0; i < 530; i++)
		live[i] = i != 3 && i != 4;
	assert_consistent(model, live, 530, DIM);
	free(model);
	free(x);
	free(y);
	free(ids);
	free(nid);
}

/* ---- Cases: maintenance ----------------------------------------------- */

/* An index of small buckets (target 40, bounds 5..60) whose one bucket
 * holds the n rows of x, over the size bound: the first n0 build it (one
 * bucket), the others are applied into it. */
static void one_oversized_bucket(const float *x, const uint64_t *ids, size_t n0,
				 size_t n, uint32_t dim)
{
	drift_l1_opts o = {.dim = dim,
			   .bucket_target = 40,
			   .bucket_max = 60,
			   .bucket_min = 5,
			   .seed = 2};
	cr_assert_eq(drift_l1_new(with_store(&o), &l1, NULL), 0);
	cr_assert_eq(drift_l1_build(l1, ids, x, n0, 1, NULL), 0);
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	cr_assert_eq(st.buckets, 1);
	cr_assert_eq(drift_l1_apply(l1, ids + n0, x + n0 * dim, n - n0, NULL, 0,
				    2, NULL, NULL),
		     0);
	drift_l1_stats_get(l1, &st);
	cr_assert_eq(st.buckets, 1);
	cr_assert_eq(st.max_size, n);
}

DRIFT_TEST(l1, split_separates_two_clusters)
{
	enum { DIM = 4, PER = 40 };
	/* One bucket holding two far-apart clusters, over the size bound. */
	static float x[2 * PER * DIM];
	drift_rand r;
	drift_rand_seed(&r, 4);
	for (int i = 0; i < 2 * PER; i++)
		for (int j = 0; j < DIM; j++)
			x[i * DIM + j] = (i < PER ? -50.0f : 50.0f) +
					 (float)drift_rand_normal(&r);
	uint64_t *ids = seq_ids(2 * PER, 0);
	/* target 40 over 80 points would build two buckets: build from one
	 * cluster, then add the other so that it lands in the same bucket. */
	one_oversized_bucket(x, ids, PER, 2 * PER, DIM);

	drift_l1_stats st;
	drift_l1_maint_stats ms;
	cr_assert_eq(drift_l1_maintain(l1, 1, &ms, NULL), 0);
	cr_assert_eq(ms.splits, 1);
	drift_l1_stats_get(l1, &st);
	cr_assert_eq(st.buckets, 2);
	uint32_t b0, bi;
	cr_assert_eq(drift_l1_locate(l1, 0, &b0), 0);
	for (uint64_t i = 0; i < 2 * PER; i++) {
		cr_assert_eq(drift_l1_locate(l1, i, &bi), 0);
		cr_assert_eq(bi == b0, i < PER, "id %llu on the wrong side",
			     (unsigned long long)i);
	}
	cr_assert_eq(ms.moved, PER, "one cluster moved to the new bucket");
	free(ids);
}

/* A bucket far over the bound (a backlog of large flushes) is split into
 * as many pieces as it needs in one action, not halved again and again. */
DRIFT_TEST(l1, split_of_a_backlog_takes_one_action)
{
	enum { DIM = 4, N0 = 40, ADD = 440 };
	float *x = blob_data(N0 + ADD, DIM, 1, 12);
	uint64_t *ids = seq_ids(N0 + ADD, 0);
	one_oversized_bucket(x, ids, N0, N0 + ADD, DIM);
	drift_l1_stats st;
	drift_l1_maint_stats ms;
	cr_assert_eq(drift_l1_maintain(l1, 1, &ms, NULL), 0);
	cr_assert_eq(ms.splits, 1);
	drift_l1_stats_get(l1, &st);
	/* 480 rows, bound 60: 2 * 480 / 60 = 16 pieces. */
	cr_assert_geq(st.buckets, 12, "%u buckets", st.buckets);
	cr_assert_leq(st.max_size, (N0 + ADD) / 4, "largest %u", st.max_size);
	cr_assert_eq(st.vectors, N0 + ADD);
	for (uint64_t i = 0; i < N0 + ADD; i++) {
		uint32_t b;
		cr_assert_eq(drift_l1_locate(l1, i, &b), 0);
	}
	free(x);
	free(ids);
}

/* After a split, a neighbour's members that are now closer to a new
 * centroid move there (neighbour stealing); the others stay. */
DRIFT_TEST(l1, split_steals_from_neighbours)
{
	enum { DIM = 2 };
	drift_l1_opts o = {.dim = DIM,
			   .bucket_target = 40,
			   .bucket_max = 60,
			   .bucket_min = 2,
			   .seed = 2};
	cr_assert_eq(drift_l1_new(with_store(&o), &l1, NULL), 0);
	/* Bucket A around x = 0 and bucket B around x = 30 (built first). */
	float base[80 * DIM];
	uint64_t ids[80];
	for (int i = 0; i < 80; i++) {
		ids[i] = (uint64_t)i;
		base[i * DIM] = i < 40 ? (float)(i % 5) * 0.1f
				       : 30.0f + (float)(i % 5) * 0.1f;
		base[i * DIM + 1] = (float)(i % 7) * 0.1f;
	}
	cr_assert_eq(drift_l1_build(l1, ids, base, 80, 1, NULL), 0);
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	cr_assert_eq(st.buckets, 2);
	uint32_t a, b;
	drift_l1_locate(l1, 0, &a);
	drift_l1_locate(l1, 40, &b);
	cr_assert_neq(a, b);
	/* 40 points at x = 13 join A (nearer 0 than 30); A now holds two
	 * groups and splits into x ~ 0 and x ~ 13. Then B's members at
	 * x = 20 (added to B: nearer 30 than 0) are nearer 13: stolen. */
	float more[50 * DIM];
	uint64_t mids[50];
	for (int i = 0; i < 50; i++) {
		mids[i] = 100 + (uint64_t)i;
		more[i * DIM] = i < 40 ? 13.0f + (float)(i % 3) * 0.1f : 20.5f;
		more[i * DIM + 1] = 0;
	}
	cr_assert_eq(drift_l1_apply(l1, mids, more, 50, NULL, 0, 2, NULL, NULL),
		     0);
	uint32_t loc;
	drift_l1_locate(l1, 145, &loc);
	cr_assert_eq(loc, b, "x = 20.5 starts in B");
	drift_l1_maint_stats ms;
	cr_assert_eq(drift_l1_maintain(l1, 1, &ms, NULL), 0);
	cr_assert_eq(ms.splits, 1);
	uint32_t c13, c0;
	drift_l1_locate(l1, 100, &c13);
	drift_l1_locate(l1, 0, &c0);
	cr_assert_neq(c13, c0);
	for (uint64_t i = 140; i < 150; i++) {
		drift_l1_locate(l1, i, &loc);
		cr_assert_eq(loc, c13, "id %llu stolen by the new bucket",
			     (unsigned long long)i);
	}
	for (uint64_t i = 40; i < 80; i++) {
		drift_l1_locate(l1, i, &loc);
		cr_assert_eq(loc, b, "B's own members stay");
	}
}

DRIFT_TEST(l1, merge_scatters_an_undersized_bucket)
{
	enum { DIM = 2 };
	drift_l1_opts o = {.dim = DIM,
			   .bucket_target = 20,
			   .bucket_max = 100,
			   .bucket_min = 10,
			   .seed = 3};
	cr_assert_eq(drift_l1_new(with_store(&o), &l1, NULL), 0);
	/* Three groups at x = 0, 10, 20 of 20 points each. */
	float x[60 * DIM];
	uint64_t ids[60];
	for (int i = 0; i < 60; i++) {
		ids[i] = (uint64_t)i;
		x[i * DIM] = (float)(i / 20) * 10.0f + (float)(i % 4) * 0.1f;
		x[i * DIM + 1] = (float)(i % 5) * 0.1f;
	}
	cr_assert_eq(drift_l1_build(l1, ids, x, 60, 1, NULL), 0);
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	cr_assert_eq(st.buckets, 3);
	/* Delete most of the middle group: 5 members left, under min. */
	uint64_t del[15];
	for (int i = 0; i < 15; i++)
		del[i] = 20 + (uint64_t)i;
	cr_assert_eq(drift_l1_apply(l1, NULL, NULL, 0, del, 15, 2, NULL, NULL),
		     0);
	uint32_t left, right, mid;
	drift_l1_locate(l1, 0, &left);
	drift_l1_locate(l1, 40, &right);
	drift_l1_locate(l1, 35, &mid);
	drift_l1_maint_stats ms;
	cr_assert_eq(drift_l1_maintain(l1, 1, &ms, NULL), 0);
	cr_assert_eq(ms.merges, 1);
	cr_assert_eq(ms.moved, 5);
	drift_l1_stats_get(l1, &st);
	cr_assert_eq(st.buckets, 2);
	cr_assert_eq(st.vectors, 45);
	uint32_t loc;
	for (uint64_t i = 35; i < 40; i++) {
		cr_assert_eq(drift_l1_locate(l1, i, &loc), 0);
		cr_assert(loc == left || loc == right);
		cr_assert_neq(loc, mid);
	}
}

DRIFT_TEST(l1, recenter_follows_the_members)
{
	enum { DIM = 3, N = 30 };
	drift_l1_opts o = {.dim = DIM,
			   .bucket_target = 30,
			   .bucket_max = 100,
			   .bucket_min = 2,
			   .seed = 4};
	cr_assert_eq(drift_l1_new(with_store(&o), &l1, NULL), 0);
	float x[N * DIM];
	uint64_t ids[N];
	drift_rand r;
	drift_rand_seed(&r, 8);
	for (int i = 0; i < N; i++) {
		ids[i] = (uint64_t)i;
		for (int j = 0; j < DIM; j++)
			x[i * DIM + j] = (float)drift_rand_normal(&r);
	}
	cr_assert_eq(drift_l1_build(l1, ids, x, N, 1, NULL), 0);
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	cr_assert_lt(st.mean_drift, 0.01);
	/* Every member moves by +3 on the first axis: the bucket drifts. */
	for (int i = 0; i < N; i++)
		x[i * DIM] += 3.0f;
	cr_assert_eq(drift_l1_apply(l1, ids, x, N, NULL, 0, 2, NULL, NULL), 0);
	drift_l1_stats_get(l1, &st);
	cr_assert_gt(st.mean_drift, 0.5);
	drift_l1_maint_stats ms;
	cr_assert_eq(drift_l1_maintain(l1, 4, &ms, NULL), 0);
	cr_assert_geq(ms.recenters, 1);
	drift_l1_stats_get(l1, &st);
	cr_assert_lt(st.mean_drift, 0.01, "centroid is the mean again");
}

/* Random upserts, deletes and maintenance against a model: drift_kv and
 * the buckets always agree with it, and sizes end within bounds. */
DRIFT_TEST(l1, random_churn_keeps_the_id_index_consistent)
{
	enum { SPACE = 3000, DIM = 6, ROUNDS = 40 };
	drift_l1_opts o = {.dim = DIM, .bucket_target = 32, .seed = 5};
	cr_assert_eq(drift_l1_new(with_store(&o), &l1, NULL), 0);
	static float model[SPACE * DIM];
	static bool live[SPACE];
	memset(live, 0, sizeof(live));
	drift_rand r;
	drift_rand_seed(&r, 6);
	uint64_t ids[200], del[50];
	float vecs[200 * DIM];
	for (int round = 0; round < ROUNDS; round++) {
		size_t n = 1 + drift_rand_below(&r, 200), nd = 0;
		/* Distinct ids per batch; deletes disjoint from upserts. */
		for (size_t i = 0; i < n; i++) {
			ids[i] = drift_rand_below(&r, SPACE);
			for (size_t j = 0; j < i; j++)
				if (ids[j] == ids[i])
					ids[i] = SPACE; /* skipped below */
		}
		size_t m = 0;
		for (size_t i = 0; i < n; i++)
			if (ids[i] < SPACE)
				ids[m++] = ids[i];
		n = m;
		for (size_t i = 0; i < n; i++) {
			/* Drift: the mean moves with the rounds. */
			for (int j = 0; j < DIM; j++)
				vecs[i * DIM + j] =
					(float)(drift_rand_normal(&r) +
						0.2 * round);
		}
		size_t want_del = drift_rand_below(&r, 50);
		for (size_t t = 0; t < want_del; t++) {
			uint64_t d = drift_rand_below(&r, SPACE);
			bool clash = false;
			for (size_t i = 0; i < n && !clash; i++)
				clash = ids[i] == d;
			if (!clash)
				del[nd++] = d;
		}
		size_t deleted;
		drift_err err;
		cr_assert_eq(drift_l1_apply(l1, ids, vecs, n, del, nd,
					    (uint64_t)round, &deleted, &err),
			     0, "%s", err.msg);
		size_t expect_del = 0;
		for (size_t t = 0; t < nd; t++) {
			bool seen = false;
			for (size_t u = 0; u < t && !seen; u++)
				seen = del[u] == del[t];
			if (!seen && live[del[t]]) {
				live[del[t]] = false;
				expect_del++;
			}
		}
		cr_assert_eq(deleted, expect_del);
		for (size_t i = 0; i < n; i++) {
			memcpy(model + ids[i] * DIM, vecs + i * DIM,
			       DIM * sizeof(float));
			live[ids[i]] = true;
		}
		cr_assert_eq(drift_l1_maintain(l1, 3, NULL, &err), 0, "%s",
			     err.msg);
		assert_consistent(model, live, SPACE, DIM);
	}
	drift_l1_maint_stats ms;
	cr_assert_eq(drift_l1_maintain(l1, 1000, &ms, NULL), 0);
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	cr_log_info("churn: %u buckets, sizes %u..%u", st.buckets, st.min_size,
		    st.max_size);
	cr_assert_leq(st.max_size, 3 * 32, "no bucket over the split bound");
	cr_assert_geq(st.min_size, 32 / 4, "no bucket under the merge bound");
	assert_consistent(model, live, SPACE, DIM);
}

/* Deleting 95% leaves the survivors scattered over the vector store;
 * maintenance packs them into its lowest rows (so the store's memory
 * follows them), and every survivor keeps its vector, searches included. */
DRIFT_TEST(l1, maintenance_packs_the_store_after_a_mass_delete)
{
	enum { N = 20000, DIM = 8 };
	drift_l1_opts o = {.dim = DIM, .bucket_target = 64, .seed = 9};
	cr_assert_eq(drift_l1_new(with_store(&o), &l1, NULL), 0);
	float *x = blob_data(N, DIM, 20, 4);
	uint64_t *ids = seq_ids(N, 0);
	static bool live[N];
	cr_assert_eq(drift_l1_build(l1, ids, x, N, 1, NULL), 0);
	uint64_t *del = malloc(N * sizeof(uint64_t));
	size_t nd = 0;
	for (size_t i = 0; i < N; i++) {
		live[i] = i % 20 == 0;
		if (!live[i])
			del[nd++] = i;
	}
	drift_l1_stats st;
	drift_l1_stats_get(l1, &st);
	cr_assert_eq(st.vec_store_rows, N);
	uint64_t full = st.vec_resident_bytes;
	drift_err err;
	cr_assert_eq(drift_l1_apply(l1, NULL, NULL, 0, del, nd, 2, NULL, &err),
		     0, "%s", err.msg);
	drift_l1_stats_get(l1, &st);
	cr_assert_gt(st.vec_store_rows, N / 2, "the survivors span the store");
	drift_l1_maint_stats ms, total = {0};
	for (int i = 0; i < 1000; i++) {
		cr_assert_eq(drift_l1_maintain(l1, 16, &ms, &err), 0, "%s",
			     err.msg);
		total.packs += ms.packs;
		total.packed += ms.packed;
		if (ms.splits + ms.merges + ms.recenters + ms.packs == 0)
			break;
	}
	drift_l1_stats_get(l1, &st);
	cr_log_info("pack: %u actions moved %llu rows; store %llu rows for "
		    "%llu vectors, %llu of %llu bytes resident",
		    total.packs, (unsigned long long)total.packed,
		    (unsigned long long)st.vec_store_rows,
		    (unsigned long long)st.vectors,
		    (unsigned long long)st.vec_resident_bytes,
		    (unsigned long long)full);
	cr_assert_gt(total.packs, 0);
	cr_assert_eq(st.vectors, N / 20);
	cr_assert_eq(st.vec_store_rows, N / 20, "the store is dense");
	if (getenv("DRIFT_TEST_VSTORE") == NULL)
		cr_assert_leq(st.vec_resident_bytes,
			      (uint64_t)(N / 20 + 256) * DIM * sizeof(float));
	assert_consistent(x, live, N, DIM);
	/* Exhaustive searches agree with brute force over the survivors. */
	for (int q = 0; q < 20; q++) {
		const float *qv = x + (size_t)(q * 997 + 13) * DIM;
		drift_hit got[10], want[10];
		size_t ng = 0;
		drift_l1_search_opts so = {.k = 10, .exhaustive = true};
		cr_assert_eq(drift_l1_search(l1, qv, &so, got, &ng, NULL), 0);
		size_t nw = brute(DRIFT_METRIC_L2, x, ids, live, N, DIM, qv, 10,
				  want);
		cr_assert_eq(ng, nw);
		for (size_t i = 0; i < ng; i++)
			cr_assert_eq(got[i].id, want[i].id, "query %d hit %zu",
				     q, i);
	}
	free(del);
	free(ids);
	free(x);
}

/* ---- Cases: drift ----------------------------------------------------- */

/* Reads Fashion-MNIST labels (IDX 0x801) through gzip. */
static unsigned char *fmnist_labels(const char *set, size_t n)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd),
		 "gzip -dc /usr/share/datasets/fashion-mnist/"
		 "%s-labels-idx1-ubyte.gz",
		 set);
	FILE *p = popen(cmd, "r");
	cr_assert_not_null(p);
	unsigned char head[8];
	cr_assert_eq(fread(head, 1, 8, p), 8);
	unsigned char *l = malloc(n);
	cr_assert_eq(fread(l, 1, n, p), n);
	pclose(p);
	return l;
}

/* Fashion-MNIST inserted class by class (the distribution moves with every
 * class): with maintenance, recall@10 at a fixed probe budget on queries of
 * the classes seen so far stays within 2 points of its first value and
 * buckets stay within bounds; without it, buckets grow without bound (a
 * static IVF: every search scans ever more). */
DRIFT_TEST(l1, recall_stays_flat_under_drift_with_maintenance)
{
	enum { DIM = DRIFT_TEST_FMNIST_DIM, PER_CLASS = 600, NQ = 30 };
	size_t n, nq;
	float *all = drift_test_fmnist("train", 12000, &n);
	float *qall = drift_test_fmnist("t10k", 2000, &nq);
	unsigned char *lab = fmnist_labels("train", n);
	unsigned char *qlab = fmnist_labels("t10k", nq);
	/* Order the stream by class. */
	float *x = malloc(10 * PER_CLASS * DIM * sizeof(float));
	float *q = malloc(10 * NQ * DIM * sizeof(float));
	size_t per[10] = {0}, qper[10] = {0};
	for (size_t i = 0; i < n; i++)
		if (per[lab[i]] < PER_CLASS)
			memcpy(x + (lab[i] * PER_CLASS + per[lab[i]]++) * DIM,
			       all + i * DIM, DIM * sizeof(float));
	for (size_t i = 0; i < nq; i++)
		if (qper[qlab[i]] < NQ)
			memcpy(q + (qlab[i] * NQ + qper[qlab[i]]++) * DIM,
			       qall + i * DIM, DIM * sizeof(float));
	for (int c = 0; c < 10; c++)
		cr_assert(per[c] == PER_CLASS && qper[c] == NQ);
	uint64_t *ids = seq_ids(10 * PER_CLASS, 0);

	double first = -1;
	uint32_t maxsize_off = 0;
	for (int maint = 1; maint >= 0; maint--) {
		drift_l1_opts o = {.dim = DIM, .bucket_target = 64, .seed = 7};
		cr_assert_eq(drift_l1_new(with_store(&o), &l1, NULL), 0);
		for (int c = 0; c < 10; c++) {
			cr_assert_eq(drift_l1_apply(l1, ids + c * PER_CLASS,
						    x + c * PER_CLASS * DIM,
						    PER_CLASS, NULL, 0, 1, NULL,
						    NULL),
				     0);
			if (maint)
				cr_assert_eq(
					drift_l1_maintain(l1, 1000, NULL, NULL),
					0);
			size_t seen = (size_t)(c + 1) * PER_CLASS;
			double r = mean_recall(
				x, seen, q, (size_t)(c + 1) * NQ, DIM,
				(drift_l1_search_opts){.k = 10, .nprobe = 6},
				NULL);
			drift_l1_stats st;
			drift_l1_stats_get(l1, &st);
			cr_log_info("drift maint=%d step %d: recall %.3f, %u "
				    "buckets, sizes %u..%u",
				    maint, c, r, st.buckets, st.min_size,
				    st.max_size);
			if (maint) {
				if (first < 0)
					first = r;
				cr_assert_geq(r, first - 0.02,
					      "step %d: %.3f vs first %.3f", c,
					      r, first);
				cr_assert_leq(st.max_size, 3 * 64);
			} else {
				maxsize_off = st.max_size;
			}
		}
		drift_l1_free(l1);
		l1 = NULL;
	}
	cr_assert_gt(maxsize_off, 3 * 3 * 64,
		     "without maintenance buckets grow unbounded");
	free(all);
	free(qall);
	free(lab);
	free(qlab);
	free(x);
	free(q);
	free(ids);
}

/* The SIFT descriptor set of the benchmarks (tests/bench/datasets.py, built
 * from Debian wallpaper packages with OpenCV), when its cache exists: every
 * STRIDE-th row of base.fvecs in source order (image by image, package by
 * package: the distribution moves along the stream). NULL when absent. */
static float *sift_stream(size_t stride, size_t *rows)
{
	const char *dir = getenv("DRIFT_BENCH_CACHE");
	char path[4096];
	snprintf(path, sizeof(path), "%s/sift/base.fvecs",
		 dir != NULL ? dir : "/var/tmp/drift-bench");
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return NULL;
	size_t cap = 1 << 16, n = 0, i = 0;
	float *x = malloc(cap * 128 * sizeof(float));
	int32_t d;
	float row[128];
	while (fread(&d, 4, 1, f) == 1) {
		cr_assert_eq(d, 128, "%s: rows of dimension %d", path, d);
		cr_assert_eq(fread(row, sizeof(row), 1, f), 1);
		if (i++ % stride != 0)
			continue;
		if (n == cap)
			x = realloc(x, (cap *= 2) * 128 * sizeof(float));
		memcpy(x + n++ * 128, row, sizeof(row));
	}
	fclose(f);
	*rows = n;
	return x;
}

/* Issue #7's drift test: SIFT descriptors inserted in source order (every
 * 10th of the 1M rows: 95,000 inserted, every 20th held out as a query at
 * its place in the stream), in ten steps; the first step is a bulk build
 * (followed by maintenance when it is on, as the Janitor does after a
 * first flush). After each step, recall@10 of 480 held-out rows seen so
 * far, probing 10% of the buckets (a fixed budget: with a fixed count, the
 * probed share of a growing index shrinks, and recall falls with or
 * without drift). With maintenance, recall stays within the 2
 * points of its first value and buckets within bounds. Measured on this
 * stream (bucket target 100): 0.957 at the first step, then 0.957..0.987.
 * (With every 25th row and 200 queries, the first step had about 190
 * queries and the curve dipped 2.8 points at the second step, with and
 * without maintenance: sampling noise of too few queries.) Without
 * maintenance the first step's 95 buckets stay and grow without bound, so
 * the same budget scans 1.6x as many vectors at the last step, for no
 * better recall (0.970 vs 0.987). Skipped (not passed) when the
 * benchmark's SIFT cache is absent: building it needs python3-opencv and
 * the wallpaper packages of tests/bench/packages.txt, which make deps does
 * not install. About 40 s of CPU. */
DRIFT_TEST(l1, sift_recall_stays_flat_under_source_order_drift)
{
	enum { DIM = 128, STRIDE = 10, QEVERY = 20, STEPS = 10, NQ = 480 };
	enum { TARGET = 100 };
#ifdef DRIFT_TEST_LSAN
	cr_skip_test("a quality test: the release build runs it (CPU)");
#endif
	size_t n;
	float *all = sift_stream(STRIDE, &n);
	if (all == NULL)
		cr_skip_test("no SIFT cache in /var/tmp/drift-bench/sift (make "
			     "bench builds it)");
	/* Every QEVERY-th row is held out as a query at its place in the
	 * stream; the others are inserted. */
	float *x = malloc(n * DIM * sizeof(float));
	float *pool = malloc((n / QEVERY + 1) * DIM * sizeof(float));
	size_t *qat = malloc((n / QEVERY + 1) * sizeof(size_t));
	size_t nx = 0, npool = 0;
	for (size_t i = 0; i < n; i++) {
		if (i % QEVERY == QEVERY - 1) {
			memcpy(pool + npool * DIM, all + i * DIM,
			       DIM * sizeof(float));
			qat[npool++] = nx; /* rows inserted before it */
		} else {
			memcpy(x + nx++ * DIM, all + i * DIM,
			       DIM * sizeof(float));
		}
	}
	free(all);
	uint64_t *ids = seq_ids(nx, 0);
	float *q = malloc(NQ * DIM * sizeof(float));
	double rec[2][STEPS];
	uint64_t scanned[2][STEPS];
	uint32_t maxsize[2] = {0, 0};
	for (int maint = 1; maint >= 0; maint--) {
		drift_l1_opts o = {
			.dim = DIM, .bucket_target = TARGET, .seed = 11};
		cr_assert_eq(drift_l1_new(with_store(&o), &l1, NULL), 0);
		size_t done = 0;
		for (int s = 0; s < STEPS; s++) {
			size_t end = nx * (size_t)(s + 1) / STEPS;
			/* The first step is a bulk build for both. */
			if (s == 0) {
				cr_assert_eq(drift_l1_build(l1, ids, x, end, 1,
							    NULL),
					     0);
				if (maint)
					cr_assert_eq(
						drift_l1_maintain(l1, 100000,
								  NULL, NULL),
						0);
			}
			for (size_t at = s == 0 ? end : done; at < end;
			     at += 1000) {
				size_t m = end - at < 1000 ? end - at : 1000;
				cr_assert_eq(drift_l1_apply(
						     l1, ids + at, x + at * DIM,
						     m, NULL, 0, 1, NULL, NULL),
					     0);
				if (maint)
					cr_assert_eq(drift_l1_maintain(l1, 1000,
								       NULL,
								       NULL),
						     0);
			}
			done = end;
			/* NQ held-out rows spread over the stream so far. */
			size_t avail = 0;
			while (avail < npool && qat[avail] <= end)
				avail++;
			cr_assert_geq(avail, NQ);
			for (size_t i = 0; i < NQ; i++)
				memcpy(q + i * DIM,
				       pool + (i * avail / NQ) * DIM,
				       DIM * sizeof(float));
			double probed;
			drift_l1_stats bst;
			drift_l1_stats_get(l1, &bst);
			uint32_t np = (bst.buckets + 5) / 10; /* 10%, rounded */
			drift_l1_search_opts so = {.k = 10,
						   .nprobe = np > 0 ? np : 1};
			rec[maint][s] =
				mean_recall(x, end, q, NQ, DIM, so, &probed);
			scanned[maint][s] = 0;
			for (size_t i = 0; i < NQ; i++) {
				drift_hit h[10];
				size_t nh;
				drift_l1_search_stats st;
				drift_l1_search(l1, q + i * DIM, &so, h, &nh,
						&st);
				scanned[maint][s] += st.scanned;
			}
			drift_l1_stats st;
			drift_l1_stats_get(l1, &st);
			if (st.max_size > maxsize[maint])
				maxsize[maint] = st.max_size;
			cr_log_info("sift drift maint=%d step %d: %zu rows, "
				    "recall %.3f, %.0f vectors scanned per "
				    "query, %u buckets, sizes %u..%u",
				    maint, s, end, rec[maint][s],
				    (double)scanned[maint][s] / NQ, st.buckets,
				    st.min_size, st.max_size);
		}
		drift_l1_free(l1);
		l1 = NULL;
	}
	for (int s = 0; s < STEPS; s++)
		cr_assert_geq(rec[1][s], rec[1][0] - 0.02,
			      "maintenance on, step %d: recall %.3f vs first "
			      "%.3f",
			      s, rec[1][s], rec[1][0]);
	cr_assert_leq(maxsize[1], 3 * TARGET);
	cr_assert_gt(maxsize[0], 3 * 3 * TARGET,
		     "without maintenance buckets grow unbounded");
	/* Without maintenance the same budget ends up scanning far more,
	 * and finding no more. */
	cr_assert_geq(rec[1][STEPS - 1], rec[0][STEPS - 1],
		      "last step: recall %.3f with maintenance, %.3f without",
		      rec[1][STEPS - 1], rec[0][STEPS - 1]);
	cr_assert_geq((double)scanned[0][STEPS - 1],
		      1.5 * (double)scanned[1][STEPS - 1],
		      "last step: %llu vectors scanned without maintenance, "
		      "%llu with",
		      (unsigned long long)scanned[0][STEPS - 1],
		      (unsigned long long)scanned[1][STEPS - 1]);
	free(x);
	free(pool);
	free(qat);
	free(q);
	free(ids);
}

/* With many buckets the centroid graph (l1_graph.c) picks the buckets to
 * probe. Two indexes built alike, one with the graph and one with the flat
 * scan, hold the same buckets (the graph plays no part in building,
 * assignment or maintenance), so any difference in their answers comes from
 * the probe order: recall at probe budgets and at a recall target must
 * agree within a point, also after maintenance moved centroids (graph
 * inserts and tombstones). */
DRIFT_TEST(l1, centroid_graph_probes_like_the_flat_scan)
{
#ifdef DRIFT_TEST_LSAN
	/* Sanitizers (an unoptimised build): the same checks on fewer
	 * buckets, with the graph from 64 of them. */
	enum { NQ = 100, N = 4000, TARGET = 16, MORE = 1200, GMIN = 64 };
	enum { MINB = 150 };
#else
	enum { NQ = 300, N = 10000, TARGET = 8, MORE = 3000, GMIN = 256 };
	enum { MINB = 1000 };
#endif
	enum { DIM = 16 };
	float *x = blob_data(N + MORE, DIM, 300, 5);
	float *q = blob_data(NQ, DIM, 300, 5); /* the same blobs */
	uint64_t *ids = seq_ids(N + MORE, 0);
	bool *live = malloc(N + MORE);
	memset(live, 1, N + MORE);
	drift_l1 *idx[2];
	for (int g = 0; g < 2; g++) {
		drift_l1_opts o = {.dim = DIM,
				   .bucket_target = TARGET,
				   .seed = 3,
				   .graph_min_buckets = g ? GMIN : UINT32_MAX};
		cr_assert_eq(drift_l1_new(with_store(&o), &idx[g], NULL), 0);
		cr_assert_eq(drift_l1_build(idx[g], ids, x, N, 1, NULL), 0);
	}
	const drift_l1_search_opts sos[] = {
		{.k = 10, .nprobe = 4},
		{.k = 10, .nprobe = 16},
		{.k = 10, .recall_target = 0.9f},
	};
	for (int round = 0; round < 2; round++) {
		size_t n = round == 0 ? N : N + MORE;
		if (round == 1) {
			/* New rows, then maintenance: splits and merges
			 * change centroids under the graph. */
			for (int g = 0; g < 2; g++) {
				cr_assert_eq(drift_l1_apply(idx[g], ids + N,
							    x + N * DIM, MORE,
							    ids, MORE / 2, 2,
							    NULL, NULL),
					     0);
				drift_l1_maint_stats ms;
				cr_assert_eq(drift_l1_maintain(idx[g], 1000,
							       &ms, NULL),
					     0);
				cr_assert_gt(ms.splits + ms.merges, 0);
			}
			memset(live, 0, MORE / 2); /* deleted */
		}
		drift_l1_stats st[2];
		for (int g = 0; g < 2; g++)
			drift_l1_stats_get(idx[g], &st[g]);
		cr_assert(!st[0].centroid_graph && st[1].centroid_graph);
		cr_assert_eq(st[0].buckets, st[1].buckets);
		cr_assert_gt(st[1].buckets, MINB);
		for (size_t i = 0; i < sizeof(sos) / sizeof(sos[0]); i++) {
			double r[2], probed[2];
			for (int g = 0; g < 2; g++) {
				r[g] = probed[g] = 0;
				for (size_t j = 0; j < NQ; j++) {
					drift_hit got[10], want[10];
					size_t ng, nw;
					drift_l1_search_stats ss;
					cr_assert_eq(
						drift_l1_search(
							idx[g], q + j * DIM,
							&sos[i], got, &ng, &ss),
						0);
					nw = brute(DRIFT_METRIC_L2, x, ids,
						   live, n, DIM, q + j * DIM,
						   10, want);
					r[g] += recall_of(got, ng, want, nw);
					probed[g] += ss.probed;
				}
				r[g] /= NQ;
				probed[g] /= NQ;
			}
			cr_log_info("round %d, search %zu: recall %.4f flat, "
				    "%.4f graph; %.1f / %.1f probed",
				    round, i, r[0], r[1], probed[0], probed[1]);
			cr_assert_geq(r[1], r[0] - 0.01,
				      "round %d, search %zu: recall %.4f by "
				      "the graph, %.4f flat",
				      round, i, r[1], r[0]);
			cr_assert_leq(probed[1], probed[0] * 1.1 + 0.5);
		}
	}
	drift_l1_free(idx[0]);
	drift_l1_free(idx[1]);
	free(x);
	free(q);
	free(ids);
	free(live);
}
