/*
 * drift.v1 served by drift-router (see service.h): data calls split by
 * shard and sent to the shards' primaries through the peer API
 * (drift.peer.v1), answers merged; everything else forwarded to a node.
 */
#include "router/service.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cluster/placement.h"
#include "common/alloc.h"
#include "common/api/validate.h"
#include "common/clock.h"
#include "common/log.h"
#include "common/merge.h"
#include "drift/peer/v1/peer.pb-c.h"
#include "drift/v1/drift.pb-c.h"
#include "router/fanout.h"

/* A call without a deadline: 30 s, a Flush (it writes every shard's
 * memtables to L1) 10 minutes. */
#define DEFAULT_TIMEOUT_NS 30000000000ull
#define FLUSH_TIMEOUT_NS 600000000000ull

static drift_rmap_follower *follower;

/* ---- Helpers ---- */

/* A read sent to replicas waits at most this for them before its retry
 * goes to the primaries (a replica stopped, not yet DOWN in the map). */
#define REPLICA_READ_NS 2000000000ull

static uint64_t remaining(drift_grpc_call *c)
{
	uint64_t dl = drift_grpc_call_deadline(c);
	if (dl == UINT64_MAX)
		return strcmp(drift_grpc_call_path(c),
			      "/drift.v1.Drift/Flush") == 0
			       ? FLUSH_TIMEOUT_NS
			       : DEFAULT_TIMEOUT_NS;
	uint64_t now = drift_now_ns();
	return dl > now ? dl - now : 1;
}

static uint8_t *pack(const ProtobufCMessage *m, size_t *len)
{
	*len = protobuf_c_message_get_packed_size(m);
	uint8_t *b = drift_malloc(*len ? *len : 1);
	if (b != NULL)
		protobuf_c_message_pack(m, b);
	return b;
}

/* The collection in the current map (*map referenced), or the call is
 * finished NOT_FOUND as a node would. */
static const drift_rmap_collection *lookup(drift_grpc_call *c, const char *name,
					   drift_rmap **map)
{
	*map = drift_rmap_get(follower);
	if (name == NULL || name[0] == '\0') {
		drift_grpc_call_finish(c, DRIFT_GRPC_INVALID_ARGUMENT,
				       "collection name is empty");
		return NULL;
	}
	const drift_rmap_collection *col =
		*map != NULL ? drift_rmap_find(*map, name) : NULL;
	if (col == NULL) {
		/* Perhaps created a moment ago: look again once. */
		uint64_t v = *map != NULL ? drift_rmap_version(*map) : 0;
		drift_rmap_unref(*map);
		drift_rmap_refresh(follower, v, 2000000000ull);
		*map = drift_rmap_get(follower);
		col = *map != NULL ? drift_rmap_find(*map, name) : NULL;
	}
	if (col == NULL)
		drift_grpc_call_finish(c, DRIFT_GRPC_NOT_FOUND,
				       "collection \"%s\" not found", name);
	return col;
}

/* Whether a failed part says the map moved on (the node no longer holds
 * the shard under a newer map): refresh and retry once. */
static bool stale(const drift_fanout_part *p)
{
	return p != NULL && p->st.code == DRIFT_GRPC_FAILED_PRECONDITION &&
	       strstr(p->st.msg, "map version") != NULL;
}

static void finish_part(drift_grpc_call *c, const drift_fanout_part *p)
{
	drift_grpc_call_finish(c, p->st.code, "%s", p->st.msg);
}

/* Forwards the call's request unchanged to a node and relays its answer
 * (metadata calls: the node forwards to the Raft leader). */
static void forward(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	drift_grpc_msg *m = NULL;
	int rv = drift_grpc_call_recv(c, &m);
	if (rv != 1) {
		if (rv == 0)
			drift_grpc_call_finish(c, DRIFT_GRPC_INTERNAL,
					       "no request message");
		return;
	}
	char addr[256];
	drift_rmap_any_node(follower, addr, sizeof(addr));
	drift_grpc_client *cl;
	drift_err err;
	drift_err_clear(&err);
	if (drift_rmap_client(follower, addr, &cl, &err) != 0) {
		drift_grpc_call_finish(c, DRIFT_GRPC_UNAVAILABLE,
				       "node at %s: %s", addr, err.msg);
		drift_grpc_msg_free(m);
		return;
	}
	drift_grpc_msg *resp = NULL;
	drift_grpc_status st;
	rv = drift_grpc_client_unary(cl, drift_grpc_call_path(c), m->data,
				     m->len, remaining(c), &resp, &st);
	drift_grpc_msg_free(m);
	if (rv == 0) {
		if (drift_grpc_call_send(c, resp->data, resp->len) == 0)
			drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
	} else {
		drift_grpc_call_finish(c, st.code, "%s", st.msg);
	}
	drift_grpc_msg_free(resp);
	/* A change of the map: the next calls see it. */
	const char *path = drift_grpc_call_path(c);
	if (rv == 0 && (strstr(path, "CreateCollection") != NULL ||
			strstr(path, "DropCollection") != NULL))
		drift_rmap_refresh(follower, 0, 2000000000ull);
}

/* What common/api/validate.h checks a request against, from the map. */
static drift_api_collection api_of(const Drift__V1__CollectionInfo *info)
{
	drift_api_collection a = {.name = info->name,
				  .dim = info->dimension,
				  .cosine = info->metric ==
					    DRIFT__V1__METRIC__METRIC_COSINE,
				  .max_batch = info->memtable_rows};
	return a;
}

/* Finishes the call with a failed check's status; returns rv. */
static int refuse(drift_grpc_call *c, int rv, const drift_err *err)
{
	if (rv != 0)
		drift_grpc_call_finish(c, drift_grpc_code_from_err(rv), "%s",
				       err->msg);
	return rv;
}

/* ---- Search ---- */

/* Validates a Search (one) or SearchBatch (batch) against the map's
 * collection before any part is sent: 0, or the call is finished. */
static int check(drift_grpc_call *c, const char *name,
		 const Drift__V1__SearchRequest *one,
		 const Drift__V1__SearchBatchRequest *batch)
{
	drift_rmap *map;
	const drift_rmap_collection *col = lookup(c, name, &map);
	int rv = -1;
	if (col != NULL) {
		drift_api_collection api = api_of(col->info);
		drift_err verr;
		drift_err_clear(&verr);
		rv = refuse(c,
			    one != NULL
				    ? drift_api_check_search(one, &api, &verr)
				    : drift_api_check_search_batch(batch, &api,
								   &verr),
			    &verr);
	}
	drift_rmap_unref(map);
	return rv;
}

/* The merged top k of the shards' answers (parts, SearchResponse each)
 * into resp (hit pointers into the unpacked answers: keep them until the
 * reply). 0 or DRIFT_ENOMEM / DRIFT_EINVAL. */
static int merge_hits(Drift__V1__SearchResponse **answers, size_t n, uint32_t k,
		      Drift__V1__SearchResponse *resp,
		      Drift__V1__Hit ***hits_out)
{
	size_t total = 0;
	for (size_t i = 0; i < n; i++)
		total += answers[i]->n_hits;
	drift_hit *all = drift_mallocarray(total ? total : 1, sizeof(*all));
	const drift_hit **lists = drift_calloc(n ? n : 1, sizeof(*lists));
	size_t *lens = drift_calloc(n ? n : 1, sizeof(*lens));
	drift_hit *best = drift_mallocarray(k, sizeof(*best));
	Drift__V1__Hit **out = drift_calloc(k, sizeof(*out));
	int rv = DRIFT_ENOMEM;
	if (all == NULL || lists == NULL || lens == NULL || best == NULL ||
	    out == NULL)
		goto done;
	size_t at = 0;
	for (size_t i = 0; i < n; i++) {
		lists[i] = all + at;
		lens[i] = answers[i]->n_hits;
		for (size_t j = 0; j < answers[i]->n_hits; j++) {
			all[at].id = answers[i]->hits[j]->id;
			all[at].distance = answers[i]->hits[j]->distance;
			at++;
		}
	}
	size_t nb = 0;
	if ((rv = drift_merge_topk(lists, lens, n, k, best, &nb)) != 0)
		goto done;
	/* Back to the answers' hits (an id is in one shard only). */
	for (size_t b = 0; b < nb; b++)
		for (size_t i = 0; i < n && out[b] == NULL; i++)
			for (size_t j = 0; j < answers[i]->n_hits; j++)
				if (answers[i]->hits[j]->id == best[b].id) {
					out[b] = answers[i]->hits[j];
					break;
				}
	drift__v1__search_response__init(resp);
	resp->n_hits = nb;
	resp->hits = out;
	*hits_out = out;
	out = NULL;
done:
	drift_free(all);
	drift_free(lists);
	drift_free(lens);
	drift_free(best);
	drift_free(out);
	return rv;
}

/* Sends one packed shard request per shard (build(s) packs shard s's) and
 * runs them, again on a stale map (at most STALE_TRIES in all: during a
 * move's flip the map fetched for the retry may be one version short).
 * With `reads` (searches), each
 * shard's request goes to one of its in-sync replicas in turn
 * (drift_rmap_reader); when one of those fails, the retry sends them all
 * to the primaries. *parts is the caller's (drift_fanout_free +
 * drift_free of reqs); NULL when the call has been answered. */
static atomic_uint reads_turn;
#define STALE_TRIES 3

typedef uint8_t *(*build_fn)(void *arg, uint32_t shard, uint64_t version,
			     bool replica, size_t *len);

static drift_fanout_part *run_shards(drift_grpc_call *c, const char *name,
				     const char *path, build_fn build,
				     void *arg, const uint32_t *only,
				     bool reads, size_t *n_out)
{
	unsigned turn = reads ? atomic_fetch_add(&reads_turn, 1) : 0;
	for (int attempt = 0; attempt < STALE_TRIES; attempt++) {
		drift_rmap *map;
		const drift_rmap_collection *col = lookup(c, name, &map);
		if (col == NULL) {
			drift_rmap_unref(map);
			return NULL;
		}
		uint32_t ns = col->info->shards;
		drift_fanout_part *parts = drift_calloc(ns, sizeof(*parts));
		size_t n = 0;
		bool oom = parts == NULL, any_replica = false;
		for (uint32_t s = 0; !oom && s < ns; s++) {
			if (only != NULL && only[s] == 0)
				continue;
			drift_fanout_part *p = &parts[n++];
			bool replica = false;
			p->address =
				reads && attempt == 0
					? drift_rmap_reader(map, col, s,
							    turn + s, &replica)
					: col->primary[s];
			p->path = path;
			p->req = build(arg, s, drift_rmap_version(map), replica,
				       &p->len);
			any_replica |= replica;
			oom |= p->req == NULL;
		}
		uint64_t budget = remaining(c);
		if (any_replica && budget > REPLICA_READ_NS)
			budget = REPLICA_READ_NS;
		if (!oom)
			drift_fanout_run_for(follower, c, parts, n, budget);
		const drift_fanout_part *bad =
			oom ? NULL : drift_fanout_failed(parts, n);
		uint64_t v = drift_rmap_version(map);
		/* A replica's refusal (or failure): the primaries, at once. */
		bool refresh = stale(bad);
		bool again = bad != NULL && attempt + 1 < STALE_TRIES &&
			     (refresh || any_replica);
		if (oom || (bad != NULL && !again)) {
			if (oom)
				drift_grpc_call_finish(
					c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
					"out of memory");
			else
				finish_part(c, bad);
		}
		if (oom || bad != NULL) {
			bool retry = !oom && again;
			for (size_t i = 0; parts != NULL && i < n; i++)
				drift_free(parts[i].req);
			drift_fanout_free(parts, n);
			drift_free(parts);
			drift_rmap_unref(map);
			if (!retry)
				return NULL;
			if (refresh)
				drift_rmap_refresh(follower, v, 2000000000ull);
			continue;
		}
		drift_rmap_unref(map);
		*n_out = n;
		return parts;
	}
	return NULL;
}

static void free_parts(drift_fanout_part *parts, size_t n)
{
	for (size_t i = 0; i < n; i++)
		drift_free(parts[i].req);
	drift_fanout_free(parts, n);
	drift_free(parts);
}

static uint8_t *build_search(void *arg, uint32_t shard, uint64_t version,
			     bool replica, size_t *len)
{
	Drift__Peer__V1__ShardSearchRequest r =
		DRIFT__PEER__V1__SHARD_SEARCH_REQUEST__INIT;
	r.shard = shard;
	r.map_version = version;
	r.replica = replica;
	r.request = arg;
	return pack(&r.base, len);
}

/* Answers a Search from its shards' answers (every part OK). */
static void reply_search(drift_grpc_call *c,
			 const Drift__V1__SearchRequest *req,
			 drift_fanout_part *parts, size_t n)
{
	if (n == 1) {
		/* One shard: its answer is the answer. */
		int rv = drift_grpc_call_send(c, parts[0].resp->data,
					      parts[0].resp->len);
		if (rv == 0)
			drift_grpc_call_finish(c, DRIFT_GRPC_OK, NULL);
		else if (rv == DRIFT_ELIMIT)
			drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
					       "response is larger than the "
					       "maximum message size");
		return;
	}
	Drift__V1__SearchResponse **ans = drift_calloc(n, sizeof(*ans));
	bool ok = ans != NULL;
	for (size_t i = 0; ok && i < n; i++) {
		ans[i] = drift__v1__search_response__unpack(
			NULL, parts[i].resp->len, parts[i].resp->data);
		ok = ans[i] != NULL;
	}
	Drift__V1__SearchResponse resp;
	Drift__V1__Hit **hits = NULL;
	if (ok && merge_hits(ans, n, req->k, &resp, &hits) == 0) {
		drift_grpc_call_reply(c, &resp.base);
	} else {
		drift_grpc_call_finish(c, DRIFT_GRPC_INTERNAL,
				       "merging the shards' answers failed");
	}
	drift_free(hits);
	for (size_t i = 0; ans != NULL && i < n; i++)
		if (ans[i] != NULL)
			protobuf_c_message_free_unpacked(&ans[i]->base, NULL);
	drift_free(ans);
}

/* Search over the shards: with `reads`, spread over their replicas. */
static void search_shards(drift_grpc_call *c, Drift__V1__SearchRequest *req,
			  bool reads)
{
	if (check(c, req->collection, req, NULL) != 0)
		return;
	size_t n = 0;
	drift_fanout_part *parts =
		run_shards(c, req->collection, "/drift.peer.v1.Shard/Search",
			   build_search, req, NULL, reads, &n);
	if (parts == NULL)
		return;
	reply_search(c, req, parts, n);
	free_parts(parts, n);
}

void drift_router_search(drift_grpc_call *c, Drift__V1__SearchRequest *req)
{
	search_shards(c, req, true);
}

/* ---- Search without a worker thread ----
 *
 * The common Search (a collection in the map, a valid request) starts on
 * the server's loop thread and is answered from the client loop that
 * receives the last shard's answer: no worker thread waits for it, and a
 * call costs two thread wake-ups instead of four (most of the router's
 * CPU at 32 calls in flight went to waking threads). Reads spread over
 * the in-sync replicas as on the blocking path. Anything else (an unknown
 * collection: the map may have to be refreshed; a bad request; a stale
 * map answered by a shard, a replica's failure) takes the blocking
 * path. */

struct fast_search {
	drift_grpc_call *c;
	Drift__V1__SearchRequest *req;
	drift_rmap *map; /* the parts' addresses point into it */
	drift_fanout_part *parts;
	size_t n;
	bool any_replica; /* a part went to a replica, not the primary */
};

static void fast_search_free(struct fast_search *fs)
{
	if (fs->parts != NULL)
		free_parts(fs->parts, fs->n);
	drift_rmap_unref(fs->map);
	if (fs->req != NULL)
		protobuf_c_message_free_unpacked(&fs->req->base, NULL);
	drift_free(fs);
}

/* A shard answered with a newer map, or a replica failed: the blocking
 * path (it refreshes the map, or goes to the primaries, and retries once)
 * on a thread of its own. */
static void *search_again(void *arg)
{
	struct fast_search *fs = arg;
	/* After a replica's failure, the primaries only. */
	search_shards(fs->c, fs->req, !fs->any_replica);
	drift_grpc_call_release(fs->c);
	fast_search_free(fs);
	return NULL;
}

static void fast_search_done(void *arg)
{
	struct fast_search *fs = arg;
	const drift_fanout_part *bad = drift_fanout_failed(fs->parts, fs->n);
	if (bad != NULL && (stale(bad) || fs->any_replica)) {
		free_parts(fs->parts, fs->n);
		fs->parts = NULL;
		pthread_t t;
		pthread_attr_t at;
		pthread_attr_init(&at);
		pthread_attr_setdetachstate(&at, PTHREAD_CREATE_DETACHED);
		int rv = pthread_create(&t, &at, search_again, fs);
		pthread_attr_destroy(&at);
		if (rv == 0)
			return;
		drift_grpc_call_finish(fs->c, DRIFT_GRPC_UNAVAILABLE,
				       "the shard map moved on and no thread "
				       "is left to retry: retry");
	} else if (bad != NULL) {
		finish_part(fs->c, bad);
	} else {
		reply_search(fs->c, fs->req, fs->parts, fs->n);
	}
	drift_grpc_call_release(fs->c);
	fast_search_free(fs);
}

static bool search_fast(drift_grpc_call *c, const drift_grpc_msg *m, void *ctx)
{
	(void)ctx;
	struct fast_search *fs = drift_calloc(1, sizeof(*fs));
	if (fs == NULL)
		return false;
	fs->c = c;
	fs->req = drift__v1__search_request__unpack(NULL, m->len, m->data);
	fs->map = drift_rmap_get(follower);
	const drift_rmap_collection *col =
		fs->req != NULL && fs->map != NULL &&
				fs->req->collection[0] != '\0'
			? drift_rmap_find(fs->map, fs->req->collection)
			: NULL;
	if (col == NULL)
		goto slow;
	drift_api_collection api = api_of(col->info);
	drift_err verr;
	drift_err_clear(&verr);
	if (drift_api_check_search(fs->req, &api, &verr) != 0)
		goto slow;
	uint32_t ns = col->info->shards;
	unsigned turn = atomic_fetch_add(&reads_turn, 1);
	fs->parts = drift_calloc(ns ? ns : 1, sizeof(*fs->parts));
	if (fs->parts == NULL)
		goto slow;
	for (uint32_t s = 0; s < ns; s++) {
		drift_fanout_part *p = &fs->parts[fs->n];
		bool replica = false;
		p->address =
			drift_rmap_reader(fs->map, col, s, turn + s, &replica);
		p->path = "/drift.peer.v1.Shard/Search";
		p->req = build_search(fs->req, s, drift_rmap_version(fs->map),
				      replica, &p->len);
		fs->any_replica |= replica;
		if (p->req == NULL)
			goto slow;
		fs->n++;
	}
	uint64_t budget = remaining(c);
	if (fs->any_replica && budget > REPLICA_READ_NS)
		budget = REPLICA_READ_NS;
	if (drift_fanout_start(follower, c, fs->parts, fs->n, budget,
			       fast_search_done, fs) != 0)
		goto slow;
	return true;
slow:
	fast_search_free(fs);
	return false;
}

static void search(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__SearchRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__search_request__descriptor);
	if (req == NULL)
		return;
	drift_router_search(c, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static uint8_t *build_search_batch(void *arg, uint32_t shard, uint64_t version,
				   bool replica, size_t *len)
{
	Drift__Peer__V1__ShardSearchBatchRequest r =
		DRIFT__PEER__V1__SHARD_SEARCH_BATCH_REQUEST__INIT;
	r.shard = shard;
	r.map_version = version;
	r.replica = replica;
	r.request = arg;
	return pack(&r.base, len);
}

void drift_router_search_batch(drift_grpc_call *c,
			       Drift__V1__SearchBatchRequest *req)
{
	if (check(c, req->collection, NULL, req) != 0)
		goto out;
	size_t n = 0;
	drift_fanout_part *parts = run_shards(
		c, req->collection, "/drift.peer.v1.Shard/SearchBatch",
		build_search_batch, req, NULL, false, &n);
	if (parts == NULL)
		goto out;
	size_t nq = req->n_queries;
	Drift__V1__SearchBatchResponse **ans = drift_calloc(n, sizeof(*ans));
	Drift__V1__SearchResponse *rs = drift_calloc(nq ? nq : 1, sizeof(*rs));
	Drift__V1__SearchResponse **prs =
		drift_calloc(nq ? nq : 1, sizeof(*prs));
	Drift__V1__Hit ***hits = drift_calloc(nq ? nq : 1, sizeof(*hits));
	Drift__V1__SearchResponse **one = drift_calloc(n, sizeof(*one));
	bool ok = ans && rs && prs && hits && one;
	for (size_t i = 0; ok && i < n; i++) {
		ans[i] = drift__v1__search_batch_response__unpack(
			NULL, parts[i].resp->len, parts[i].resp->data);
		ok = ans[i] != NULL && ans[i]->n_results == nq;
	}
	for (size_t q = 0; ok && q < nq; q++) {
		for (size_t i = 0; i < n; i++)
			one[i] = ans[i]->results[q];
		ok = merge_hits(one, n, req->queries[q]->k, &rs[q], &hits[q]) ==
		     0;
		prs[q] = &rs[q];
	}
	if (ok) {
		Drift__V1__SearchBatchResponse resp =
			DRIFT__V1__SEARCH_BATCH_RESPONSE__INIT;
		resp.n_results = nq;
		resp.results = prs;
		drift_grpc_call_reply(c, &resp.base);
	} else {
		drift_grpc_call_finish(c, DRIFT_GRPC_INTERNAL,
				       "merging the shards' answers failed");
	}
	for (size_t q = 0; hits != NULL && q < nq; q++)
		drift_free(hits[q]);
	for (size_t i = 0; ans != NULL && i < n; i++)
		if (ans[i] != NULL)
			protobuf_c_message_free_unpacked(&ans[i]->base, NULL);
	drift_free(ans);
	drift_free(rs);
	drift_free(prs);
	drift_free(hits);
	drift_free(one);
	free_parts(parts, n);
out:;
}

static void search_batch(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__SearchBatchRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__search_batch_request__descriptor);
	if (req == NULL)
		return;
	drift_router_search_batch(c, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- Get, Upsert, Delete: split by shard ---- */

struct split {
	uint32_t shards;
	uint32_t *count;     /* per shard */
	uint32_t *shard_of;  /* per item */
	const void *request; /* the public request */
};

static int split_new(struct split *sp, uint32_t shards, const uint64_t *ids,
		     size_t n)
{
	sp->shards = shards;
	sp->count = drift_calloc(shards, sizeof(*sp->count));
	sp->shard_of = drift_calloc(n ? n : 1, sizeof(*sp->shard_of));
	if (sp->count == NULL || sp->shard_of == NULL)
		return DRIFT_ENOMEM;
	for (size_t i = 0; i < n; i++) {
		sp->shard_of[i] = drift_shard_of_id(ids[i], shards);
		sp->count[sp->shard_of[i]]++;
	}
	return 0;
}

static void split_free(struct split *sp)
{
	drift_free(sp->count);
	drift_free(sp->shard_of);
}

static uint8_t *build_get(void *arg, uint32_t shard, uint64_t version,
			  bool replica, size_t *len)
{
	(void)replica;
	struct split *sp = arg;
	const Drift__V1__GetRequest *g = sp->request;
	uint64_t *ids = drift_mallocarray(sp->count[shard] + 1, 8);
	if (ids == NULL)
		return NULL;
	size_t m = 0;
	for (size_t i = 0; i < g->n_ids; i++)
		if (sp->shard_of[i] == shard)
			ids[m++] = g->ids[i];
	Drift__V1__GetRequest in = DRIFT__V1__GET_REQUEST__INIT;
	in.collection = g->collection;
	in.ids = ids;
	in.n_ids = m;
	in.with_vectors = g->with_vectors;
	Drift__Peer__V1__ShardGetRequest r =
		DRIFT__PEER__V1__SHARD_GET_REQUEST__INIT;
	r.shard = shard;
	r.map_version = version;
	r.request = &in;
	uint8_t *b = pack(&r.base, len);
	drift_free(ids);
	return b;
}

/* The split of a request's ids over the collection's shards, from the
 * current map; -1 when the call has been answered. */
static int split_for(drift_grpc_call *c, const char *name, const uint64_t *ids,
		     size_t n, struct split *sp)
{
	drift_rmap *map;
	const drift_rmap_collection *col = lookup(c, name, &map);
	int rv = -1;
	if (col != NULL) {
		if (split_new(sp, col->info->shards, ids, n) == 0)
			rv = 0;
		else
			drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
					       "out of memory");
	}
	drift_rmap_unref(map);
	return rv;
}

void drift_router_get(drift_grpc_call *c, Drift__V1__GetRequest *req)
{
	struct split sp = {.request = req};
	drift_err verr;
	drift_err_clear(&verr);
	if (refuse(c, drift_api_check_get(req, &verr), &verr) != 0)
		goto out;
	if (split_for(c, req->collection, req->ids, req->n_ids, &sp) != 0)
		goto out;
	size_t n = 0;
	drift_fanout_part *parts =
		run_shards(c, req->collection, "/drift.peer.v1.Shard/Get",
			   build_get, &sp, sp.count, false, &n);
	if (parts == NULL)
		goto out;
	/* parts are in shard order over the shards with ids. */
	Drift__V1__GetResponse **ans = drift_calloc(sp.shards, sizeof(*ans));
	size_t *cur = drift_calloc(sp.shards, sizeof(*cur));
	Drift__V1__Point **pts =
		drift_calloc(req->n_ids ? req->n_ids : 1, sizeof(*pts));
	bool ok = ans && cur && pts;
	for (uint32_t s = 0, i = 0; ok && s < sp.shards; s++) {
		if (sp.count[s] == 0)
			continue;
		ans[s] = drift__v1__get_response__unpack(
			NULL, parts[i].resp->len, parts[i].resp->data);
		ok = ans[s] != NULL;
		i++;
	}
	size_t found = 0;
	for (size_t i = 0; ok && i < req->n_ids; i++) {
		uint32_t s = sp.shard_of[i];
		if (cur[s] < ans[s]->n_points &&
		    ans[s]->points[cur[s]]->id == req->ids[i])
			pts[found++] = ans[s]->points[cur[s]++];
	}
	if (ok) {
		Drift__V1__GetResponse resp = DRIFT__V1__GET_RESPONSE__INIT;
		resp.n_points = found;
		resp.points = pts;
		drift_grpc_call_reply(c, &resp.base);
	} else {
		drift_grpc_call_finish(c, DRIFT_GRPC_INTERNAL,
				       "assembling the shards' answers failed");
	}
	for (uint32_t s = 0; ans != NULL && s < sp.shards; s++)
		if (ans[s] != NULL)
			protobuf_c_message_free_unpacked(&ans[s]->base, NULL);
	drift_free(ans);
	drift_free(cur);
	drift_free(pts);
	free_parts(parts, n);
out:
	split_free(&sp);
}

static void get(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__GetRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__get_request__descriptor);
	if (req == NULL)
		return;
	drift_router_get(c, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static uint8_t *build_upsert(void *arg, uint32_t shard, uint64_t version,
			     bool replica, size_t *len)
{
	(void)replica;
	struct split *sp = arg;
	const Drift__V1__UpsertRequest *u = sp->request;
	Drift__V1__Point **pts =
		drift_calloc(sp->count[shard] + 1, sizeof(*pts));
	if (pts == NULL)
		return NULL;
	size_t m = 0;
	for (size_t i = 0; i < u->n_points; i++)
		if (sp->shard_of[i] == shard)
			pts[m++] = u->points[i];
	Drift__V1__UpsertRequest in = DRIFT__V1__UPSERT_REQUEST__INIT;
	in.collection = u->collection;
	in.points = pts;
	in.n_points = m;
	Drift__Peer__V1__ShardUpsertRequest r =
		DRIFT__PEER__V1__SHARD_UPSERT_REQUEST__INIT;
	r.shard = shard;
	r.map_version = version;
	r.request = &in;
	uint8_t *b = pack(&r.base, len);
	drift_free(pts);
	return b;
}

/* Validates, splits and writes one UpsertRequest: 0 and *written, or the
 * call is finished. */
int drift_router_upsert_one(drift_grpc_call *c, Drift__V1__UpsertRequest *req,
			    uint64_t *written, const char *prefix)
{
	drift_rmap *map;
	const drift_rmap_collection *col = lookup(c, req->collection, &map);
	drift_err verr;
	drift_err_clear(&verr);
	if (col == NULL) {
		drift_rmap_unref(map);
		return -1;
	}
	drift_api_collection api = api_of(col->info);
	if (refuse(c, drift_api_check_upsert(req, &api, prefix, &verr),
		   &verr) != 0) {
		drift_rmap_unref(map);
		return -1;
	}
	drift_rmap_unref(map);
	uint64_t *ids = drift_mallocarray(req->n_points + 1, 8);
	struct split sp = {.request = req};
	int rv = -1;
	if (ids == NULL) {
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "out of memory");
		goto out;
	}
	for (size_t i = 0; i < req->n_points; i++)
		ids[i] = req->points[i]->id;
	if (split_for(c, req->collection, ids, req->n_points, &sp) != 0)
		goto out;
	size_t n = 0;
	drift_fanout_part *parts =
		run_shards(c, req->collection, "/drift.peer.v1.Shard/Upsert",
			   build_upsert, &sp, sp.count, false, &n);
	if (parts == NULL)
		goto out;
	for (size_t i = 0; i < n; i++) {
		Drift__V1__UpsertResponse *r =
			drift__v1__upsert_response__unpack(
				NULL, parts[i].resp->len, parts[i].resp->data);
		if (r != NULL) {
			*written += r->written;
			protobuf_c_message_free_unpacked(&r->base, NULL);
		}
	}
	free_parts(parts, n);
	rv = 0;
out:
	split_free(&sp);
	drift_free(ids);
	return rv;
}

static void upsert(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__UpsertRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__upsert_request__descriptor);
	if (req == NULL)
		return;
	uint64_t written = 0;
	if (drift_router_upsert_one(c, req, &written, "") == 0) {
		Drift__V1__UpsertResponse resp =
			DRIFT__V1__UPSERT_RESPONSE__INIT;
		resp.written = written;
		drift_grpc_call_reply(c, &resp.base);
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

static void upsert_stream(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	uint64_t written = 0;
	for (unsigned batch = 0;; batch++) {
		ProtobufCMessage *m = NULL;
		int rv = drift_grpc_call_recv_pb(
			c, &drift__v1__upsert_request__descriptor, &m);
		if (rv == 0)
			break;
		if (rv < 0)
			return;
		char prefix[96];
		snprintf(prefix, sizeof(prefix),
			 "message %u (after %llu points written): ", batch,
			 (unsigned long long)written);
		int r = drift_router_upsert_one(
			c, (Drift__V1__UpsertRequest *)m, &written, prefix);
		protobuf_c_message_free_unpacked(m, NULL);
		if (r != 0)
			return;
	}
	Drift__V1__UpsertResponse resp = DRIFT__V1__UPSERT_RESPONSE__INIT;
	resp.written = written;
	drift_grpc_call_reply(c, &resp.base);
}

static uint8_t *build_delete(void *arg, uint32_t shard, uint64_t version,
			     bool replica, size_t *len)
{
	(void)replica;
	struct split *sp = arg;
	const Drift__V1__DeleteRequest *d = sp->request;
	uint64_t *ids = drift_mallocarray(sp->count[shard] + 1, 8);
	if (ids == NULL)
		return NULL;
	size_t m = 0;
	for (size_t i = 0; i < d->n_ids; i++)
		if (sp->shard_of[i] == shard)
			ids[m++] = d->ids[i];
	Drift__V1__DeleteRequest in = DRIFT__V1__DELETE_REQUEST__INIT;
	in.collection = d->collection;
	in.ids = ids;
	in.n_ids = m;
	Drift__Peer__V1__ShardDeleteRequest r =
		DRIFT__PEER__V1__SHARD_DELETE_REQUEST__INIT;
	r.shard = shard;
	r.map_version = version;
	r.request = &in;
	uint8_t *b = pack(&r.base, len);
	drift_free(ids);
	return b;
}

void drift_router_delete(drift_grpc_call *c, Drift__V1__DeleteRequest *req)
{
	struct split sp = {.request = req};
	if (split_for(c, req->collection, req->ids, req->n_ids, &sp) != 0)
		goto out;
	size_t n = 0;
	drift_fanout_part *parts =
		run_shards(c, req->collection, "/drift.peer.v1.Shard/Delete",
			   build_delete, &sp, sp.count, false, &n);
	if (parts == NULL)
		goto out;
	uint64_t deleted = 0;
	for (size_t i = 0; i < n; i++) {
		Drift__V1__DeleteResponse *r =
			drift__v1__delete_response__unpack(
				NULL, parts[i].resp->len, parts[i].resp->data);
		if (r != NULL) {
			deleted += r->deleted;
			protobuf_c_message_free_unpacked(&r->base, NULL);
		}
	}
	free_parts(parts, n);
	Drift__V1__DeleteResponse resp = DRIFT__V1__DELETE_RESPONSE__INIT;
	resp.deleted = deleted;
	drift_grpc_call_reply(c, &resp.base);
out:
	split_free(&sp);
}

static void delete_(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__DeleteRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__delete_request__descriptor);
	if (req == NULL)
		return;
	drift_router_delete(c, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- Flush: every shard ---- */

static uint8_t *build_flush(void *arg, uint32_t shard, uint64_t version,
			    bool replica, size_t *len)
{
	(void)replica;
	Drift__Peer__V1__ShardFlushRequest r =
		DRIFT__PEER__V1__SHARD_FLUSH_REQUEST__INIT;
	r.shard = shard;
	r.map_version = version;
	r.collection = arg;
	return pack(&r.base, len);
}

void drift_router_flush(drift_grpc_call *c, Drift__V1__FlushRequest *req)
{
	size_t n = 0;
	drift_fanout_part *parts =
		run_shards(c, req->collection, "/drift.peer.v1.Shard/Flush",
			   build_flush, req->collection, NULL, false, &n);
	if (parts == NULL)
		return; /* answered: the first failed shard's status */
	Drift__V1__FlushResponse resp = DRIFT__V1__FLUSH_RESPONSE__INIT;
	drift_grpc_call_reply(c, &resp.base);
	free_parts(parts, n);
}

static void flush(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__FlushRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__flush_request__descriptor);
	if (req == NULL)
		return;
	drift_router_flush(c, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- Collections from the map ---- */

static uint8_t *build_describe(void *arg, uint32_t shard, uint64_t version,
			       bool replica, size_t *len)
{
	(void)replica;
	Drift__Peer__V1__ShardDescribeRequest r =
		DRIFT__PEER__V1__SHARD_DESCRIBE_REQUEST__INIT;
	r.shard = shard;
	r.map_version = version;
	r.collection = arg;
	return pack(&r.base, len);
}

void drift_router_describe(drift_grpc_call *c,
			   Drift__V1__DescribeCollectionRequest *req)
{
	drift_rmap *map;
	const drift_rmap_collection *col = lookup(c, req->name, &map);
	size_t n = 0;
	drift_fanout_part *parts =
		col == NULL ? NULL
			    : run_shards(c, req->name,
					 "/drift.peer.v1.Shard/Describe",
					 build_describe, req->name, NULL, false,
					 &n);
	if (parts == NULL)
		goto out;
	Drift__Peer__V1__ShardDescribeResponse **ans =
		drift_calloc(n, sizeof(*ans));
	Drift__V1__ShardStats **ps = drift_calloc(n, sizeof(*ps));
	bool ok = ans && ps;
	Drift__V1__CollectionInfo info = *col->info;
	info.vector_count = 0;
	info.memory_bytes = 0;
	info.memory_limit = 0;
	bool unlimited = false;
	for (size_t i = 0; ok && i < n; i++) {
		ans[i] = drift__peer__v1__shard_describe_response__unpack(
			NULL, parts[i].resp->len, parts[i].resp->data);
		ok = ans[i] != NULL;
		if (!ok)
			break;
		info.vector_count += ans[i]->vector_count;
		info.memory_bytes += ans[i]->memory_bytes;
		ps[i] = ans[i]->stats;
		/* Each node's share once (part i is shard i: every shard). */
		bool seen = false;
		for (size_t j = 0; j < i && !seen; j++)
			seen = strcmp(parts[j].address, parts[i].address) == 0;
		if (!seen) {
			unlimited |= ans[i]->memory_limit == 0;
			info.memory_limit += ans[i]->memory_limit;
		}
	}
	if (unlimited)
		info.memory_limit = 0;
	if (ok) {
		info.n_shard_stats = n;
		info.shard_stats = ps;
		Drift__V1__DescribeCollectionResponse resp =
			DRIFT__V1__DESCRIBE_COLLECTION_RESPONSE__INIT;
		resp.collection = &info;
		drift_grpc_call_reply(c, &resp.base);
	} else {
		drift_grpc_call_finish(c, DRIFT_GRPC_INTERNAL,
				       "assembling the shards' answers failed");
	}
	for (size_t i = 0; ans != NULL && i < n; i++)
		if (ans[i] != NULL)
			protobuf_c_message_free_unpacked(&ans[i]->base, NULL);
	drift_free(ans);
	drift_free(ps);
	free_parts(parts, n);
out:
	drift_rmap_unref(map);
}

static void describe(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__DescribeCollectionRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__describe_collection_request__descriptor);
	if (req == NULL)
		return;
	drift_router_describe(c, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* The map's collections, paged as a node pages its own (the token is the
 * last name of the previous page). */
void drift_router_list(drift_grpc_call *c,
		       Drift__V1__ListCollectionsRequest *req)
{
	drift_err verr;
	drift_err_clear(&verr);
	if (refuse(c, drift_api_check_list(req, &verr), &verr) != 0)
		return;
	drift_rmap_refresh(follower, 0, 2000000000ull);
	drift_rmap *map = drift_rmap_get(follower);
	const Drift__V1__ShardMapResponse *pb =
		map != NULL ? drift_rmap_pb(map) : NULL;
	size_t total = pb != NULL ? pb->n_collections : 0;
	size_t page = req->page_size == 0 || req->page_size > 10000
			      ? 10000
			      : req->page_size;
	const Drift__V1__CollectionInfo **sorted =
		drift_calloc(total + 1, sizeof(*sorted));
	if (sorted == NULL) {
		drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
				       "out of memory");
		goto out;
	}
	size_t m = 0;
	for (size_t i = 0; i < total; i++)
		if (req->page_token[0] == '\0' ||
		    strcmp(pb->collections[i]->name, req->page_token) > 0)
			sorted[m++] = pb->collections[i];
	for (size_t i = 1; i < m; i++)
		for (size_t j = i;
		     j > 0 && strcmp(sorted[j - 1]->name, sorted[j]->name) > 0;
		     j--) {
			const Drift__V1__CollectionInfo *t = sorted[j];
			sorted[j] = sorted[j - 1];
			sorted[j - 1] = t;
		}
	size_t n = m < page ? m : page;
	Drift__V1__ListCollectionsResponse resp =
		DRIFT__V1__LIST_COLLECTIONS_RESPONSE__INIT;
	resp.n_collections = n;
	resp.collections = (Drift__V1__CollectionInfo **)sorted;
	if (n < m)
		resp.next_page_token = sorted[n - 1]->name;
	drift_grpc_call_reply(c, &resp.base);
out:
	drift_free(sorted);
	drift_rmap_unref(map);
}

static void list(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__ListCollectionsRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__list_collections_request__descriptor);
	if (req == NULL)
		return;
	drift_router_list(c, req);
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

/* ---- WatchShardMap: from the map this router follows ---- */

static atomic_bool closing;

void drift_router_service_closing(void)
{
	atomic_store(&closing, true);
}

/* Sends m (only collection `only`'s shards and configuration when not
 * empty, as a node filters): 0 or the send's error. */
static int send_map(drift_grpc_call *c, const drift_rmap *m, const char *only)
{
	const Drift__V1__ShardMapResponse *pb = drift_rmap_pb(m);
	if (only[0] == '\0')
		return drift_grpc_call_send_pb(c, &pb->base);
	Drift__V1__ShardMapResponse f = *pb;
	Drift__V1__ShardAssignment **sa =
		drift_calloc(pb->n_shards + 1, sizeof(*sa));
	Drift__V1__CollectionInfo **ci =
		drift_calloc(pb->n_collections + 1, sizeof(*ci));
	int rv = DRIFT_ENOMEM;
	if (sa != NULL && ci != NULL) {
		f.n_shards = f.n_collections = 0;
		for (size_t i = 0; i < pb->n_shards; i++)
			if (strcmp(pb->shards[i]->collection, only) == 0)
				sa[f.n_shards++] = pb->shards[i];
		for (size_t i = 0; i < pb->n_collections; i++)
			if (strcmp(pb->collections[i]->name, only) == 0)
				ci[f.n_collections++] = pb->collections[i];
		f.shards = sa;
		f.collections = ci;
		rv = drift_grpc_call_send_pb(c, &f.base);
	}
	drift_free(sa);
	drift_free(ci);
	return rv;
}

/* The map now when it is newer than known_version, then every newer
 * version, until the client goes (or the router stops: UNAVAILABLE, so a
 * watcher moves to another router or node). */
static void watch_shard_map(drift_grpc_call *c, void *ctx)
{
	(void)ctx;
	Drift__V1__WatchShardMapRequest *req = drift_grpc_call_recv_req(
		c, &drift__v1__watch_shard_map_request__descriptor);
	if (req == NULL)
		return;
	uint64_t known = req->known_version;
	while (!drift_grpc_call_done(c)) {
		if (atomic_load(&closing)) {
			drift_grpc_call_finish(c, DRIFT_GRPC_UNAVAILABLE,
					       "the router is shutting down");
			break;
		}
		drift_rmap *m =
			drift_rmap_wait_newer(follower, known, 200000000ull);
		if (m == NULL)
			continue;
		known = drift_rmap_version(m);
		int rv = send_map(c, m, req->collection);
		drift_rmap_unref(m);
		if (rv == DRIFT_ENOMEM)
			drift_grpc_call_finish(c, DRIFT_GRPC_RESOURCE_EXHAUSTED,
					       "out of memory");
		if (rv != 0)
			break; /* the call is over */
	}
	protobuf_c_message_free_unpacked(&req->base, NULL);
}

void drift_router_use(drift_rmap_follower *f)
{
	follower = f;
}

int drift_router_service_register(drift_grpc_server *srv,
				  drift_rmap_follower *f)
{
	follower = f;
	static const struct {
		const char *path;
		enum drift_grpc_kind kind;
		drift_grpc_handler fn;
	} m[] = {
		{"/drift.v1.Drift/CreateCollection", DRIFT_GRPC_UNARY, forward},
		{"/drift.v1.Drift/DropCollection", DRIFT_GRPC_UNARY, forward},
		{"/drift.v1.Drift/ListCollections", DRIFT_GRPC_UNARY, list},
		{"/drift.v1.Drift/DescribeCollection", DRIFT_GRPC_UNARY,
		 describe},
		{"/drift.v1.Drift/Upsert", DRIFT_GRPC_UNARY, upsert},
		{"/drift.v1.Drift/UpsertStream", DRIFT_GRPC_CLIENT_STREAM,
		 upsert_stream},
		{"/drift.v1.Drift/Delete", DRIFT_GRPC_UNARY, delete_},
		{"/drift.v1.Drift/Get", DRIFT_GRPC_UNARY, get},
		{"/drift.v1.Drift/Search", DRIFT_GRPC_UNARY, search},
		{"/drift.v1.Drift/SearchBatch", DRIFT_GRPC_UNARY, search_batch},
		{"/drift.v1.Drift/Flush", DRIFT_GRPC_UNARY, flush},
		{"/drift.v1.Cluster/Status", DRIFT_GRPC_UNARY, forward},
		{"/drift.v1.Cluster/AddNode", DRIFT_GRPC_UNARY, forward},
		{"/drift.v1.Cluster/RemoveNode", DRIFT_GRPC_UNARY, forward},
		{"/drift.v1.Cluster/ShardMap", DRIFT_GRPC_UNARY, forward},
		{"/drift.v1.Cluster/Rebalance", DRIFT_GRPC_UNARY, forward},
		{"/drift.v1.Cluster/WatchShardMap", DRIFT_GRPC_SERVER_STREAM,
		 watch_shard_map},
	};
	for (size_t i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		int rv = m[i].fn == search
				 ? drift_grpc_server_add_fast(srv, m[i].path,
							      search_fast,
							      search, NULL)
				 : drift_grpc_server_add(srv, m[i].path,
							 m[i].kind, m[i].fn,
							 NULL);
		if (rv != 0)
			return rv;
	}
	return 0;
}
