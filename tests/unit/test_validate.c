/* Tests of common/api/validate: the checks node and router share, with
 * the messages clients get. */
#include <math.h>
#include <string.h>

#include "common/api/validate.h"
#include "common/err.h"
#include "drift_test.h"

static const drift_api_collection col = {
	.name = "c", .dim = 3, .cosine = true, .max_batch = 4};

DRIFT_TEST(validate, search)
{
	float v[3] = {1, 2, 3};
	Drift__V1__SearchRequest r = DRIFT__V1__SEARCH_REQUEST__INIT;
	r.vector = v;
	r.n_vector = 3;
	r.k = 10;
	drift_err e;
	drift_err_clear(&e);
	cr_assert_eq(drift_api_check_search(&r, &col, &e), 0);
	r.k = 0;
	cr_assert_eq(drift_api_check_search(&r, &col, &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "k = 0 is out of range 1..10000");
	r.k = 5;
	r.n_vector = 2;
	cr_assert_eq(drift_api_check_search(&r, &col, &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "query vector has 2 components, collection c "
				"has dimension 3");
	r.n_vector = 3;
	r.nprobe = 4;
	r.recall_target = 0.9f;
	cr_assert_eq(drift_api_check_search(&r, &col, &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "give nprobe or recall_target, not both");
	r.nprobe = 0;
	v[1] = NAN;
	cr_assert_eq(drift_api_check_search(&r, &col, &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "query component 1 is NaN or infinite");
	v[0] = v[1] = v[2] = 0;
	cr_assert_eq(drift_api_check_search(&r, &col, &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "a zero query has no direction (COSINE)");
}

DRIFT_TEST(validate, search_batch_names_the_query)
{
	float good[3] = {1, 2, 3}, bad[2] = {1, 2};
	Drift__V1__SearchRequest q[2] = {DRIFT__V1__SEARCH_REQUEST__INIT,
					 DRIFT__V1__SEARCH_REQUEST__INIT};
	q[0].vector = good;
	q[0].n_vector = 3;
	q[0].k = 1;
	q[1].vector = bad;
	q[1].n_vector = 2;
	q[1].k = 1;
	Drift__V1__SearchRequest *pq[2] = {&q[0], &q[1]};
	Drift__V1__SearchBatchRequest b = DRIFT__V1__SEARCH_BATCH_REQUEST__INIT;
	b.collection = "c";
	b.queries = pq;
	b.n_queries = 2;
	drift_err e;
	drift_err_clear(&e);
	cr_assert_eq(drift_api_check_search_batch(&b, &col, &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "query 1: query vector has 2 components, "
				"collection c has dimension 3");
	q[1].collection = "other";
	cr_assert_eq(drift_api_check_search_batch(&b, &col, &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "query 1 names collection \"other\", the "
				"batch is for \"c\"");
}

DRIFT_TEST(validate, upsert_whole_batch)
{
	float a[3] = {1, 2, 3}, z[3] = {0, 0, 0}, n[3] = {1, INFINITY, 3};
	Drift__V1__Point p[5];
	Drift__V1__Point *pp[5];
	for (int i = 0; i < 5; i++) {
		drift__v1__point__init(&p[i]);
		p[i].id = 100 + (uint64_t)i;
		p[i].vector = a;
		p[i].n_vector = 3;
		pp[i] = &p[i];
	}
	Drift__V1__UpsertRequest r = DRIFT__V1__UPSERT_REQUEST__INIT;
	r.points = pp;
	r.n_points = 4;
	drift_err e;
	drift_err_clear(&e);
	cr_assert_eq(drift_api_check_upsert(&r, &col, "", &e), 0);
	r.n_points = 5;
	cr_assert_eq(drift_api_check_upsert(&r, &col, "", &e), DRIFT_ELIMIT);
	cr_assert_str_eq(e.msg, "batch of 5 points is over the limit of 4");
	r.n_points = 4;
	/* Dimension first, over the whole batch, then components. */
	p[1].vector = n;
	p[3].n_vector = 2;
	cr_assert_eq(drift_api_check_upsert(&r, &col, "m: ", &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "m: point 3 (id 103): vector has 2 components, "
				"collection c has dimension 3");
	p[3].n_vector = 3;
	cr_assert_eq(drift_api_check_upsert(&r, &col, "", &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "point 1 (id 101): component 1 is NaN or "
				"infinite");
	p[1].vector = z;
	cr_assert_eq(drift_api_check_upsert(&r, &col, "", &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "point 1 (id 101): a zero vector has no "
				"direction (COSINE)");
}

DRIFT_TEST(validate, get_limit)
{
	Drift__V1__GetRequest g = DRIFT__V1__GET_REQUEST__INIT;
	drift_err e;
	drift_err_clear(&e);
	g.n_ids = DRIFT_API_MAX_GET;
	cr_assert_eq(drift_api_check_get(&g, &e), 0);
	g.n_ids = DRIFT_API_MAX_GET + 1;
	cr_assert_eq(drift_api_check_get(&g, &e), DRIFT_ELIMIT);
	cr_assert_str_eq(e.msg,
			 "get of 100001 ids is over the limit of 100000");
}

DRIFT_TEST(validate, list_page_token)
{
	Drift__V1__ListCollectionsRequest r =
		DRIFT__V1__LIST_COLLECTIONS_REQUEST__INIT;
	drift_err e;
	drift_err_clear(&e);
	cr_assert_eq(drift_api_check_list(&r, &e), 0);
	r.page_token = "alpha_2-B";
	cr_assert_eq(drift_api_check_list(&r, &e), 0);
	r.page_token = "no such/token";
	cr_assert_eq(drift_api_check_list(&r, &e), DRIFT_EINVAL);
	cr_assert_str_eq(e.msg, "page_token is not one this server gave (a "
				"collection name)");
	char long_name[66];
	memset(long_name, 'x', 65);
	long_name[65] = '\0';
	r.page_token = long_name;
	cr_assert_eq(drift_api_check_list(&r, &e), DRIFT_EINVAL);
}
