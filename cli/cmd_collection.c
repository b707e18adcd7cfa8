/* drift-cli's collection commands: create, list, describe, drop. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "drift/v1/drift.pb-c.h"

#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Helpers ------------------------------------------------------------ */

static void json_info(drift_json *j, const Drift__V1__CollectionInfo *c,
		      bool stats)
{
	drift_json_obj_begin(j);
	drift_json_key(j, "name");
	drift_json_str(j, c->name);
	drift_json_key(j, "dimension");
	drift_json_u64(j, c->dimension);
	drift_json_key(j, "metric");
	drift_json_str(j, drift_cli_metric_name(c->metric));
	drift_json_key(j, "vector_count");
	drift_json_u64(j, c->vector_count);
	drift_json_key(j, "shards");
	drift_json_u64(j, c->shards);
	drift_json_key(j, "replication_factor");
	drift_json_u64(j, c->replication_factor);
	drift_json_key(j, "wal_sync");
	drift_json_str(j, drift_cli_wal_sync_name(c->wal_sync));
	drift_json_key(j, "memtable_rows");
	drift_json_u64(j, c->memtable_rows);
	drift_json_key(j, "default_recall");
	drift_json_f64(j, c->default_recall);
	drift_json_key(j, "memory_bytes");
	drift_json_u64(j, c->memory_bytes);
	drift_json_key(j, "memory_limit");
	drift_json_u64(j, c->memory_limit);
	if (stats) {
		drift_json_key(j, "shard_stats");
		drift_json_arr_begin(j);
		for (size_t i = 0; i < c->n_shard_stats; i++) {
			const Drift__V1__ShardStats *s = c->shard_stats[i];
			drift_json_obj_begin(j);
			/* Every field of ShardStats under its proto name. */
			const ProtobufCMessageDescriptor *d =
				s->base.descriptor;
			for (unsigned f = 0; f < d->n_fields; f++) {
				const ProtobufCFieldDescriptor *fd =
					&d->fields[f];
				const char *p = (const char *)s + fd->offset;
				drift_json_key(j, fd->name);
				if (fd->type == PROTOBUF_C_TYPE_UINT32)
					drift_json_u64(j, *(const uint32_t *)p);
				else
					drift_json_u64(j, *(const uint64_t *)p);
			}
			drift_json_obj_end(j);
		}
		drift_json_arr_end(j);
	}
	drift_json_obj_end(j);
}

static void text_info(const Drift__V1__CollectionInfo *c)
{
	printf("collection %s\n", c->name);
	printf("  dimension       %u\n", c->dimension);
	printf("  metric          %s\n", drift_cli_metric_name(c->metric));
	printf("  vectors         %" PRIu64 "\n", c->vector_count);
	printf("  shards          %u\n", c->shards);
	printf("  replication     %u\n", c->replication_factor);
	printf("  wal sync        %s\n", drift_cli_wal_sync_name(c->wal_sync));
	printf("  memtable rows   %u\n", c->memtable_rows);
	printf("  default recall  %.3g\n", c->default_recall);
	printf("  memory          %" PRIu64 " bytes", c->memory_bytes);
	if (c->memory_limit > 0)
		printf(" of %" PRIu64, c->memory_limit);
	printf("\n");
	if (c->n_shard_stats == 0)
		return;
	printf("  %5s %10s %10s %10s %8s %8s %12s %8s\n", "SHARD", "LIVE",
	       "L0 ROWS", "L1 VECS", "BUCKETS", "SEGMENTS", "WAL BYTES",
	       "FLUSHES");
	for (size_t i = 0; i < c->n_shard_stats; i++) {
		const Drift__V1__ShardStats *s = c->shard_stats[i];
		printf("  %5u %10" PRIu64 " %10" PRIu64 " %10" PRIu64
		       " %8u %8u %12" PRIu64 " %8" PRIu64 "\n",
		       s->shard, s->live, s->l0_rows, s->l1_vectors,
		       s->l1_buckets, s->segments, s->wal_bytes, s->flushes);
	}
}

static int parse_enum(drift_cli *cli, const char *opt, const char *v,
		      const char *const *names, size_t n, int *out)
{
	for (size_t i = 0; i < n; i++) {
		if (strcmp(v, names[i]) == 0) {
			*out = (int)i;
			return 0;
		}
	}
	return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
			      "--%s: \"%s\" is not one of %s|%s|%s", opt, v,
			      names[0], names[1], names[2]);
}

/* ---- create ------------------------------------------------------------- */

int drift_cli_cmd_collection_create(drift_cli *cli, int argc, char **argv)
{
	drift_cli_opt opts[] = {
		{"dim", "N", NULL, false},
		{"metric", "l2|ip|cosine", NULL, false},
		{"shards", "N", NULL, false},
		{"replication", "N", NULL, false},
		{"wal-sync", "always|batch|none", NULL, false},
		{"memtable-rows", "N", NULL, false},
		{"default-recall", "T", NULL, false},
		{"memory-limit", "BYTES", NULL, false},
	};
	char *pos[1];
	int np;
	int rv = drift_cli_parse(
		cli,
		"collection create NAME --dim N [--metric l2|ip|cosine] "
		"[--shards N] [--replication N] [--wal-sync "
		"always|batch|none] [--memtable-rows N] [--default-recall T] "
		"[--memory-limit BYTES]",
		opts, NOPTS(opts), argc, argv, pos, 1, 1, &np);
	if (rv != 0)
		return rv;
	if (!opts[0].set)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "--dim N is required");
	Drift__V1__CreateCollectionRequest req =
		DRIFT__V1__CREATE_COLLECTION_REQUEST__INIT;
	req.name = pos[0];
	uint64_t v;
	/* Ranges are the server's too; checking here names the option. */
	if ((rv = drift_cli_u64(cli, "--dim", opts[0].value, 1, 65536, &v)))
		return rv;
	req.dimension = (uint32_t)v;
	static const char *const metrics[] = {"l2", "ip", "cosine"};
	static const char *const syncs[] = {"always", "batch", "none"};
	int e = 0;
	if (opts[1].set) {
		if ((rv = parse_enum(cli, "metric", opts[1].value, metrics, 3,
				     &e)))
			return rv;
		req.metric = (Drift__V1__Metric)e;
	}
	if (opts[2].set) {
		if ((rv = drift_cli_u64(cli, "--shards", opts[2].value, 1,
					UINT32_MAX, &v)))
			return rv;
		req.shards = (uint32_t)v;
	}
	if (opts[3].set) {
		if ((rv = drift_cli_u64(cli, "--replication", opts[3].value, 1,
					UINT32_MAX, &v)))
			return rv;
		req.replication_factor = (uint32_t)v;
	}
	if (opts[4].set) {
		if ((rv = parse_enum(cli, "wal-sync", opts[4].value, syncs, 3,
				     &e)))
			return rv;
		req.wal_sync = (Drift__V1__WalSync)e;
	}
	if (opts[5].set) {
		if ((rv = drift_cli_u64(cli, "--memtable-rows", opts[5].value,
					1, UINT32_MAX, &v)))
			return rv;
		req.memtable_rows = (uint32_t)v;
	}
	if (opts[6].set) {
		double t;
		if ((rv = drift_cli_f64(cli, "--default-recall", opts[6].value,
					1e-6, 1.0, &t)))
			return rv;
		req.default_recall = (float)t;
	}
	if (opts[7].set) {
		if ((rv = drift_cli_u64(cli, "--memory-limit", opts[7].value, 1,
					UINT64_MAX, &v)))
			return rv;
		req.memory_limit = v;
	}
	Drift__V1__CreateCollectionResponse *r = NULL;
	rv = drift_cli_call(cli, "/drift.v1.Drift/CreateCollection", &req.base,
			    &drift__v1__create_collection_response__descriptor,
			    (ProtobufCMessage **)&r);
	if (rv != 0)
		return rv;
	Drift__V1__CollectionInfo none = DRIFT__V1__COLLECTION_INFO__INIT;
	const Drift__V1__CollectionInfo *c =
		r->collection != NULL ? r->collection : &none;
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "collection");
		json_info(&j, c, false);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("created collection %s (dimension %u, %s, %u shard%s, "
		       "replication %u)\n",
		       c->name, c->dimension, drift_cli_metric_name(c->metric),
		       c->shards, c->shards == 1 ? "" : "s",
		       c->replication_factor);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* ---- list --------------------------------------------------------------- */

int drift_cli_cmd_collection_list(drift_cli *cli, int argc, char **argv)
{
	int np;
	int rv = drift_cli_parse(cli, "collection list", NULL, 0, argc, argv,
				 NULL, 0, 0, &np);
	if (rv != 0)
		return rv;
	drift_json j;
	drift_json_init(&j, stdout);
	if (cli->json) {
		drift_json_obj_begin(&j);
		drift_json_key(&j, "collections");
		drift_json_arr_begin(&j);
	} else {
		printf("%-32s %9s %-7s %12s %6s %11s\n", "NAME", "DIMENSION",
		       "METRIC", "VECTORS", "SHARDS", "REPLICATION");
	}
	/* Page by page: a list never has to fit one message. */
	char *token = NULL;
	Drift__V1__ListCollectionsResponse *r = NULL;
	for (;;) {
		Drift__V1__ListCollectionsRequest req =
			DRIFT__V1__LIST_COLLECTIONS_REQUEST__INIT;
		req.page_size = 1000;
		if (token != NULL)
			req.page_token = token;
		Drift__V1__ListCollectionsResponse *next = NULL;
		rv = drift_cli_call(
			cli, "/drift.v1.Drift/ListCollections", &req.base,
			&drift__v1__list_collections_response__descriptor,
			(ProtobufCMessage **)&next);
		if (r != NULL)
			protobuf_c_message_free_unpacked(&r->base, NULL);
		r = next;
		if (rv != 0)
			return rv; /* the text header is out: so be it */
		for (size_t i = 0; i < r->n_collections; i++) {
			const Drift__V1__CollectionInfo *c = r->collections[i];
			if (cli->json)
				json_info(&j, c, false);
			else
				printf("%-32s %9u %-7s %12" PRIu64
				       " %6u %11u\n",
				       c->name, c->dimension,
				       drift_cli_metric_name(c->metric),
				       c->vector_count, c->shards,
				       c->replication_factor);
		}
		if (r->next_page_token[0] == '\0')
			break;
		token = r->next_page_token;
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	if (cli->json) {
		drift_json_arr_end(&j);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	}
	return 0;
}

/* ---- describe / drop ---------------------------------------------------- */

int drift_cli_cmd_collection_describe(drift_cli *cli, int argc, char **argv)
{
	char *pos[1];
	int np;
	int rv = drift_cli_parse(cli, "collection describe NAME", NULL, 0, argc,
				 argv, pos, 1, 1, &np);
	if (rv != 0)
		return rv;
	Drift__V1__DescribeCollectionRequest req =
		DRIFT__V1__DESCRIBE_COLLECTION_REQUEST__INIT;
	req.name = pos[0];
	Drift__V1__DescribeCollectionResponse *r = NULL;
	rv = drift_cli_call(
		cli, "/drift.v1.Drift/DescribeCollection", &req.base,
		&drift__v1__describe_collection_response__descriptor,
		(ProtobufCMessage **)&r);
	if (rv != 0)
		return rv;
	Drift__V1__CollectionInfo none = DRIFT__V1__COLLECTION_INFO__INIT;
	const Drift__V1__CollectionInfo *c =
		r->collection != NULL ? r->collection : &none;
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "collection");
		json_info(&j, c, true);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		text_info(c);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

int drift_cli_cmd_collection_drop(drift_cli *cli, int argc, char **argv)
{
	char *pos[1];
	int np;
	int rv = drift_cli_parse(cli, "collection drop NAME", NULL, 0, argc,
				 argv, pos, 1, 1, &np);
	if (rv != 0)
		return rv;
	Drift__V1__DropCollectionRequest req =
		DRIFT__V1__DROP_COLLECTION_REQUEST__INIT;
	req.name = pos[0];
	ProtobufCMessage *r = NULL;
	rv = drift_cli_call(cli, "/drift.v1.Drift/DropCollection", &req.base,
			    &drift__v1__drop_collection_response__descriptor,
			    &r);
	if (rv != 0)
		return rv;
	protobuf_c_message_free_unpacked(r, NULL);
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "dropped");
		drift_json_str(&j, pos[0]);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("dropped collection %s\n", pos[0]);
	}
	return 0;
}
