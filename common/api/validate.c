/*
 * The public API's request validation (see validate.h).
 */
#include "common/api/validate.h"

#include <math.h>
#include <string.h>

int drift_api_check_search(const Drift__V1__SearchRequest *r,
			   const drift_api_collection *c, drift_err *err)
{
	if (r->k < 1 || r->k > DRIFT_API_MAX_K)
		return drift_err_set(err, DRIFT_EINVAL,
				     "k = %u is out of range 1..%d", r->k,
				     DRIFT_API_MAX_K);
	if (r->n_vector != c->dim)
		return drift_err_set(err, DRIFT_EINVAL,
				     "query vector has %zu components, "
				     "collection %s has dimension %u",
				     r->n_vector, c->name, c->dim);
	double norm = 0;
	for (size_t j = 0; j < r->n_vector; j++) {
		if (!isfinite(r->vector[j]))
			return drift_err_set(err, DRIFT_EINVAL,
					     "query component %zu is NaN or "
					     "infinite",
					     j);
		norm += (double)r->vector[j] * r->vector[j];
	}
	if (c->cosine && norm == 0)
		return drift_err_set(err, DRIFT_EINVAL,
				     "a zero query has no direction (COSINE)");
	if (r->nprobe > 0 && r->recall_target != 0)
		return drift_err_set(err, DRIFT_EINVAL,
				     "give nprobe or recall_target, not both");
	if (r->recall_target != 0 &&
	    !(r->recall_target > 0 && r->recall_target <= 1))
		return drift_err_set(err, DRIFT_EINVAL,
				     "recall_target %g is out of range (0, 1]",
				     (double)r->recall_target);
	return 0;
}

int drift_api_check_search_batch(const Drift__V1__SearchBatchRequest *r,
				 const drift_api_collection *c, drift_err *err)
{
	if (r->n_queries > DRIFT_API_MAX_BATCH_QUERIES)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "%zu queries are over the limit of %d",
				     r->n_queries, DRIFT_API_MAX_BATCH_QUERIES);
	for (size_t i = 0; i < r->n_queries; i++) {
		const char *inner = r->queries[i]->collection;
		if (inner[0] != '\0' && strcmp(inner, r->collection) != 0)
			return drift_err_set(err, DRIFT_EINVAL,
					     "query %zu names collection "
					     "\"%.64s\", the batch is for "
					     "\"%.64s\"",
					     i, inner, r->collection);
		drift_err e;
		drift_err_clear(&e);
		int rv = drift_api_check_search(r->queries[i], c, &e);
		if (rv != 0)
			return drift_err_set(err, rv, "query %zu: %s", i,
					     e.msg);
	}
	return 0;
}

int drift_api_check_upsert(const Drift__V1__UpsertRequest *r,
			   const drift_api_collection *c, const char *prefix,
			   drift_err *err)
{
	size_t n = r->n_points;
	if (c->max_batch > 0 && n > c->max_batch)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "%sbatch of %zu points is over the limit "
				     "of %zu",
				     prefix, n, c->max_batch);
	for (size_t i = 0; i < n; i++) {
		const Drift__V1__Point *p = r->points[i];
		if (p->n_vector != c->dim)
			return drift_err_set(
				err, DRIFT_EINVAL,
				"%spoint %zu (id %llu): vector has "
				"%zu components, collection %s "
				"has dimension %u",
				prefix, i, (unsigned long long)p->id,
				p->n_vector, c->name, c->dim);
	}
	for (size_t i = 0; i < n; i++) {
		const Drift__V1__Point *p = r->points[i];
		double norm = 0;
		for (size_t j = 0; j < p->n_vector; j++) {
			if (!isfinite(p->vector[j]))
				return drift_err_set(
					err, DRIFT_EINVAL,
					"%spoint %zu (id %llu): component %zu "
					"is NaN or infinite",
					prefix, i, (unsigned long long)p->id,
					j);
			norm += (double)p->vector[j] * p->vector[j];
		}
		if (c->cosine && norm == 0)
			return drift_err_set(err, DRIFT_EINVAL,
					     "%spoint %zu (id %llu): a zero "
					     "vector has no direction (COSINE)",
					     prefix, i,
					     (unsigned long long)p->id);
	}
	return 0;
}

int drift_api_check_get(const Drift__V1__GetRequest *r, drift_err *err)
{
	if (r->n_ids > DRIFT_API_MAX_GET)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "get of %zu ids is over the limit of %d",
				     r->n_ids, DRIFT_API_MAX_GET);
	return 0;
}

int drift_api_check_list(const Drift__V1__ListCollectionsRequest *r,
			 drift_err *err)
{
	const char *t = r->page_token;
	size_t n = strlen(t);
	bool ok = n <= 64;
	for (size_t i = 0; ok && i < n; i++)
		ok = (t[i] >= 'a' && t[i] <= 'z') ||
		     (t[i] >= 'A' && t[i] <= 'Z') ||
		     (t[i] >= '0' && t[i] <= '9') || t[i] == '_' || t[i] == '-';
	if (!ok)
		return drift_err_set(err, DRIFT_EINVAL,
				     "page_token is not one this server gave "
				     "(a collection name)");
	return 0;
}
