/*
 * The public API's limits and request validation, in one place: drift-node
 * and drift-router both link it, so a router refuses a bad request exactly
 * as a node does (status and message), before any network hop.
 *
 * Each check returns 0, or the DRIFT_E* code of the failure (DRIFT_EINVAL:
 * INVALID_ARGUMENT; DRIFT_ELIMIT: RESOURCE_EXHAUSTED) with the message the
 * client gets in err. A message names the point or query by its index in
 * the request the client sent.
 */
#ifndef DRIFT_COMMON_API_VALIDATE_H
#define DRIFT_COMMON_API_VALIDATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "drift/v1/drift.pb-c.h"

/* k of a search: 1..DRIFT_API_MAX_K. */
#define DRIFT_API_MAX_K 10000
/* Ids of one Get. */
#define DRIFT_API_MAX_GET 100000
/* Queries of one SearchBatch. */
#define DRIFT_API_MAX_BATCH_QUERIES 10000
/* Collections per ListCollections page at most. */
#define DRIFT_API_MAX_PAGE 10000

/* What a check needs to know of the collection. */
typedef struct drift_api_collection {
	const char *name;
	uint32_t dim;
	bool cosine;	  /* METRIC_COSINE: a zero vector is refused */
	size_t max_batch; /* points of one upsert (its memtable size) */
} drift_api_collection;

/* One search: k, the query's dimension and components, nprobe together
 * with recall_target, recall_target's range. */
int drift_api_check_search(const Drift__V1__SearchRequest *r,
			   const drift_api_collection *c, drift_err *err);

/* A SearchBatch: the number of queries, each query's collection (empty or
 * the batch's), each query as drift_api_check_search ("query I: ..."). */
int drift_api_check_search_batch(const Drift__V1__SearchBatchRequest *r,
				 const drift_api_collection *c, drift_err *err);

/* A whole Upsert batch before anything is written: its size, then every
 * point's dimension, then every component finite and (COSINE) every
 * vector non-zero. prefix ("" or a stream's position) goes first. */
int drift_api_check_upsert(const Drift__V1__UpsertRequest *r,
			   const drift_api_collection *c, const char *prefix,
			   drift_err *err);

/* A Get: the number of ids. */
int drift_api_check_get(const Drift__V1__GetRequest *r, drift_err *err);

/* A ListCollections page_token: empty, or one this API gave (the last
 * name of the previous page, [A-Za-z0-9_-]{1,64}). */
int drift_api_check_list(const Drift__V1__ListCollectionsRequest *r,
			 drift_err *err);

#endif /* DRIFT_COMMON_API_VALIDATE_H */
