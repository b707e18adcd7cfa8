/* drift-cli's point commands: get, delete, search. */
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "cli/vecfile.h"
#include "common/alloc.h"
#include "drift/v1/drift.pb-c.h"

#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))

/* Queries of a --queries file per SearchBatch call. */
#define SEARCH_BATCH 256

/* ---- Helpers ------------------------------------------------------------ */

/* Parses ids (positionals) into a new array. */
static int parse_ids(drift_cli *cli, char **pos, int n, uint64_t **out)
{
	uint64_t *ids = drift_malloc(sizeof(*ids) * (size_t)n);
	if (ids == NULL)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "out of memory");
	for (int i = 0; i < n; i++) {
		int rv = drift_cli_u64(cli, "id", pos[i], 0, UINT64_MAX,
				       &ids[i]);
		if (rv != 0) {
			drift_free(ids);
			return rv;
		}
	}
	*out = ids;
	return 0;
}

static void json_floats(drift_json *j, const float *v, size_t n)
{
	drift_json_arr_begin(j);
	for (size_t i = 0; i < n; i++)
		drift_json_f64(j, v[i]);
	drift_json_arr_end(j);
}

static void text_floats(const float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		printf("%s%.9g", i ? "," : "", v[i]);
}

/* ---- get ---------------------------------------------------------------- */

int drift_cli_cmd_get(drift_cli *cli, int argc, char **argv)
{
	drift_cli_opt opts[] = {{"no-vectors", NULL, NULL, false}};
	char **pos = drift_malloc(sizeof(char *) * (size_t)(argc + 1));
	if (pos == NULL)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "out of memory");
	uint64_t *ids = NULL;
	Drift__V1__GetResponse *r = NULL;
	int np;
	int rv = drift_cli_parse(cli, "get NAME ID... [--no-vectors]", opts,
				 NOPTS(opts), argc, argv, pos, 2, -1, &np);
	if (rv != 0)
		goto out;
	if ((rv = parse_ids(cli, pos + 1, np - 1, &ids)) != 0)
		goto out;
	Drift__V1__GetRequest req = DRIFT__V1__GET_REQUEST__INIT;
	req.collection = pos[0];
	req.ids = ids;
	req.n_ids = (size_t)(np - 1);
	req.with_vectors = !opts[0].set;
	rv = drift_cli_call(cli, "/drift.v1.Drift/Get", &req.base,
			    &drift__v1__get_response__descriptor,
			    (ProtobufCMessage **)&r);
	if (rv != 0)
		goto out;
	/* The points come in request order: the ids between them are
	 * missing. */
	drift_json j;
	drift_json_init(&j, stdout);
	if (cli->json) {
		drift_json_obj_begin(&j);
		drift_json_key(&j, "points");
		drift_json_arr_begin(&j);
	}
	for (size_t i = 0; i < r->n_points; i++) {
		const Drift__V1__Point *p = r->points[i];
		if (cli->json) {
			drift_json_obj_begin(&j);
			drift_json_key(&j, "id");
			drift_json_u64(&j, p->id);
			if (req.with_vectors) {
				drift_json_key(&j, "vector");
				json_floats(&j, p->vector, p->n_vector);
			}
			drift_json_obj_end(&j);
		} else {
			printf("%" PRIu64, p->id);
			if (req.with_vectors) {
				printf(" ");
				text_floats(p->vector, p->n_vector);
			}
			printf("\n");
		}
	}
	size_t k = 0;
	if (cli->json) {
		drift_json_arr_end(&j);
		drift_json_key(&j, "missing");
		drift_json_arr_begin(&j);
	}
	for (size_t i = 0; i < req.n_ids; i++) {
		if (k < r->n_points && r->points[k]->id == ids[i]) {
			k++;
			continue;
		}
		if (cli->json)
			drift_json_u64(&j, ids[i]);
		else
			printf("%" PRIu64 " not found\n", ids[i]);
	}
	if (cli->json) {
		drift_json_arr_end(&j);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	}
out:
	if (r != NULL)
		protobuf_c_message_free_unpacked(&r->base, NULL);
	drift_free(ids);
	drift_free(pos);
	return rv;
}

/* ---- delete ------------------------------------------------------------- */

int drift_cli_cmd_delete(drift_cli *cli, int argc, char **argv)
{
	char **pos = drift_malloc(sizeof(char *) * (size_t)(argc + 1));
	if (pos == NULL)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "out of memory");
	uint64_t *ids = NULL;
	Drift__V1__DeleteResponse *r = NULL;
	int np;
	int rv = drift_cli_parse(cli, "delete NAME ID...", NULL, 0, argc, argv,
				 pos, 2, -1, &np);
	if (rv != 0)
		goto out;
	if ((rv = parse_ids(cli, pos + 1, np - 1, &ids)) != 0)
		goto out;
	Drift__V1__DeleteRequest req = DRIFT__V1__DELETE_REQUEST__INIT;
	req.collection = pos[0];
	req.ids = ids;
	req.n_ids = (size_t)(np - 1);
	rv = drift_cli_call(cli, "/drift.v1.Drift/Delete", &req.base,
			    &drift__v1__delete_response__descriptor,
			    (ProtobufCMessage **)&r);
	if (rv != 0)
		goto out;
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "deleted");
		drift_json_u64(&j, r->deleted);
		drift_json_key(&j, "requested");
		drift_json_u64(&j, req.n_ids);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("deleted %" PRIu64 " of %zu ids\n", r->deleted,
		       req.n_ids);
	}
out:
	if (r != NULL)
		protobuf_c_message_free_unpacked(&r->base, NULL);
	drift_free(ids);
	drift_free(pos);
	return rv;
}

/* ---- search ------------------------------------------------------------- */

/* Parses "v1,v2,..." into a new array. */
static int parse_vector(drift_cli *cli, const char *s, float **out, size_t *n)
{
	size_t cap = 1;
	for (const char *p = s; *p; p++)
		cap += *p == ',';
	float *v = drift_malloc(sizeof(float) * cap);
	if (v == NULL)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "out of memory");
	size_t k = 0;
	const char *p = s;
	for (;;) {
		char *end;
		errno = 0;
		float x = strtof(p, &end);
		if (end == p || (*end != ',' && *end != '\0') || errno ||
		    !isfinite(x)) {
			drift_free(v);
			return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
					      "--vector: component %zu is not "
					      "a finite number",
					      k);
		}
		v[k++] = x;
		if (*end == '\0')
			break;
		p = end + 1;
	}
	*out = v;
	*n = k;
	return 0;
}

static void print_hits(drift_cli *cli, drift_json *j,
		       const Drift__V1__SearchResponse *r, bool vectors)
{
	if (cli->json) {
		drift_json_obj_begin(j);
		drift_json_key(j, "hits");
		drift_json_arr_begin(j);
		for (size_t i = 0; i < r->n_hits; i++) {
			drift_json_obj_begin(j);
			drift_json_key(j, "id");
			drift_json_u64(j, r->hits[i]->id);
			drift_json_key(j, "distance");
			drift_json_f64(j, r->hits[i]->distance);
			if (vectors) {
				drift_json_key(j, "vector");
				json_floats(j, r->hits[i]->vector,
					    r->hits[i]->n_vector);
			}
			drift_json_obj_end(j);
		}
		drift_json_arr_end(j);
		drift_json_obj_end(j);
		return;
	}
	for (size_t i = 0; i < r->n_hits; i++) {
		printf("%4zu %20" PRIu64 " %14.9g", i + 1, r->hits[i]->id,
		       r->hits[i]->distance);
		if (vectors) {
			printf(" ");
			text_floats(r->hits[i]->vector, r->hits[i]->n_vector);
		}
		printf("\n");
	}
}

int drift_cli_search_params(drift_cli *cli, const drift_cli_opt *k,
			    const drift_cli_opt *nprobe,
			    const drift_cli_opt *target,
			    Drift__V1__SearchRequest *req)
{
	uint64_t v;
	int rv;
	req->k = 10;
	if (k->set) {
		if ((rv = drift_cli_u64(cli, "--k", k->value, 1, 10000, &v)))
			return rv;
		req->k = (uint32_t)v;
	}
	if (nprobe->set && target->set)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "--nprobe and --recall-target exclude "
				      "each other");
	if (nprobe->set) {
		if ((rv = drift_cli_u64(cli, "--nprobe", nprobe->value, 1,
					UINT32_MAX, &v)))
			return rv;
		req->nprobe = (uint32_t)v;
	}
	if (target->set) {
		double t;
		if ((rv = drift_cli_f64(cli, "--recall-target", target->value,
					0, 1, &t)))
			return rv;
		if (t <= 0)
			return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
					      "--recall-target must be > 0");
		req->recall_target = (float)t;
	}
	return 0;
}

/* Runs the queries of f through SearchBatch, SEARCH_BATCH at a time. */
static int search_file(drift_cli *cli, drift_vecfile *f, uint64_t limit,
		       const Drift__V1__SearchRequest *tmpl)
{
	uint32_t dim = drift_vecfile_dim(f);
	float *buf = drift_malloc(sizeof(float) * dim * SEARCH_BATCH);
	Drift__V1__SearchRequest *qs = drift_calloc(SEARCH_BATCH, sizeof(*qs));
	Drift__V1__SearchRequest **qp = drift_calloc(SEARCH_BATCH, sizeof(*qp));
	int rv = 0;
	if (buf == NULL || qs == NULL || qp == NULL) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "out of memory");
		goto out;
	}
	drift_json j;
	drift_json_init(&j, stdout);
	if (cli->json) {
		drift_json_obj_begin(&j);
		drift_json_key(&j, "results");
		drift_json_arr_begin(&j);
	}
	uint64_t done = 0;
	while (done < limit) {
		size_t want = limit - done < SEARCH_BATCH
				      ? (size_t)(limit - done)
				      : SEARCH_BATCH;
		size_t n;
		drift_err err;
		drift_err_clear(&err);
		if (drift_vecfile_read(f, buf, want, &n, &err) != 0) {
			rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s",
					    err.msg);
			goto out;
		}
		if (n == 0)
			break;
		for (size_t i = 0; i < n; i++) {
			qs[i] = *tmpl;
			qs[i].vector = buf + i * dim;
			qs[i].n_vector = dim;
			qp[i] = &qs[i];
		}
		Drift__V1__SearchBatchRequest req =
			DRIFT__V1__SEARCH_BATCH_REQUEST__INIT;
		req.collection = tmpl->collection;
		req.queries = qp;
		req.n_queries = n;
		Drift__V1__SearchBatchResponse *r = NULL;
		rv = drift_cli_call(
			cli, "/drift.v1.Drift/SearchBatch", &req.base,
			&drift__v1__search_batch_response__descriptor,
			(ProtobufCMessage **)&r);
		if (rv != 0)
			goto out;
		for (size_t i = 0; i < r->n_results; i++) {
			if (!cli->json)
				printf("query %" PRIu64 "\n", done + i);
			print_hits(cli, &j, r->results[i], tmpl->with_vectors);
		}
		protobuf_c_message_free_unpacked(&r->base, NULL);
		done += n;
	}
	if (cli->json) {
		drift_json_arr_end(&j);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	}
out:
	drift_free(qp);
	drift_free(qs);
	drift_free(buf);
	return rv;
}

int drift_cli_cmd_search(drift_cli *cli, int argc, char **argv)
{
	drift_cli_opt opts[] = {
		{"vector", "V1,V2,...", NULL, false},
		{"queries", "FILE", NULL, false},
		{"k", "N", NULL, false},
		{"nprobe", "N", NULL, false},
		{"recall-target", "T", NULL, false},
		{"with-vectors", NULL, NULL, false},
		{"limit", "N", NULL, false},
	};
	char *pos[1];
	int np;
	int rv = drift_cli_parse(
		cli,
		"search NAME (--vector V1,V2,... | --queries FILE [--limit N]) "
		"[--k N] [--nprobe N | --recall-target T] [--with-vectors]",
		opts, NOPTS(opts), argc, argv, pos, 1, 1, &np);
	if (rv != 0)
		return rv;
	if (opts[0].set == opts[1].set)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "give exactly one of --vector and "
				      "--queries");
	Drift__V1__SearchRequest req = DRIFT__V1__SEARCH_REQUEST__INIT;
	req.collection = pos[0];
	req.with_vectors = opts[5].set;
	if ((rv = drift_cli_search_params(cli, &opts[2], &opts[3], &opts[4],
					  &req)))
		return rv;
	uint64_t limit = UINT64_MAX;
	if (opts[6].set && (rv = drift_cli_u64(cli, "--limit", opts[6].value, 1,
					       UINT64_MAX, &limit)))
		return rv;
	float *v = NULL;
	drift_vecfile *f = NULL;
	size_t dim = 0;
	if (opts[0].set) {
		if ((rv = parse_vector(cli, opts[0].value, &v, &dim)))
			return rv;
	} else {
		drift_err err;
		drift_err_clear(&err);
		if (drift_vecfile_open(opts[1].value, &f, &err) != 0)
			return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s",
					      err.msg);
		dim = drift_vecfile_dim(f);
	}
	/* A wrong dimension is the user's: say so before sending. */
	uint32_t cdim;
	if ((rv = drift_cli_collection_dim(cli, pos[0], &cdim, NULL)))
		goto out;
	if (dim != cdim) {
		rv = drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				    "%s has dimension %zu, collection %s has "
				    "%u",
				    opts[0].set ? "--vector" : opts[1].value,
				    dim, pos[0], cdim);
		goto out;
	}
	if (f != NULL) {
		rv = search_file(cli, f, limit, &req);
		goto out;
	}
	req.vector = v;
	req.n_vector = dim;
	Drift__V1__SearchResponse *r = NULL;
	rv = drift_cli_call(cli, "/drift.v1.Drift/Search", &req.base,
			    &drift__v1__search_response__descriptor,
			    (ProtobufCMessage **)&r);
	if (rv != 0)
		goto out;
	drift_json j;
	drift_json_init(&j, stdout);
	print_hits(cli, &j, r, req.with_vectors);
	if (cli->json)
		drift_json_done(&j);
	protobuf_c_message_free_unpacked(&r->base, NULL);
out:
	drift_vecfile_close(f);
	drift_free(v);
	return rv;
}
