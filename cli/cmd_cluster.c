/* drift-cli's cluster commands: status, node add/remove, shard-map,
 * rebalance (drift.v1.Cluster). */
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#include "cli/cli.h"
#include "cli/json.h"
#include "cli/progress.h"
#include "common/clock.h"
#include "common/grpc/client.h"
#include "drift/v1/drift.pb-c.h"

#define NOPTS(a) (sizeof(a) / sizeof((a)[0]))
#define DRIFT_CLI_MOVE_KEY 400

/* ---- Helpers ------------------------------------------------------------ */

static void json_node(drift_json *j, const Drift__V1__NodeInfo *n)
{
	drift_json_obj_begin(j);
	drift_json_key(j, "id");
	drift_json_str(j, n->id);
	drift_json_key(j, "address");
	drift_json_str(j, n->address);
	drift_json_key(j, "raft_address");
	drift_json_str(j, n->raft_address);
	drift_json_key(j, "state");
	drift_json_str(j, drift_cli_node_state_name(n->state));
	drift_json_key(j, "role");
	drift_json_str(j, drift_cli_node_role_name(n->role));
	drift_json_key(j, "shards");
	drift_json_u64(j, n->shards);
	drift_json_key(j, "primaries");
	drift_json_u64(j, n->primaries);
	drift_json_obj_end(j);
}

static void json_move(drift_json *j, const Drift__V1__ShardMove *m)
{
	if (m == NULL) {
		drift_json_null(j);
		return;
	}
	drift_json_obj_begin(j);
	drift_json_key(j, "collection");
	drift_json_str(j, m->collection);
	drift_json_key(j, "shard");
	drift_json_u64(j, m->shard);
	drift_json_key(j, "from");
	drift_json_str(j, m->from);
	drift_json_key(j, "to");
	drift_json_str(j, m->to);
	drift_json_key(j, "bytes_done");
	drift_json_u64(j, m->bytes_done);
	drift_json_key(j, "bytes_total");
	drift_json_u64(j, m->bytes_total);
	drift_json_obj_end(j);
}

static void text_nodes(Drift__V1__NodeInfo **nodes, size_t n)
{
	printf("%-24s %-22s %-8s %-8s %7s %9s\n", "NODE", "ADDRESS", "STATE",
	       "ROLE", "SHARDS", "PRIMARIES");
	for (size_t i = 0; i < n; i++)
		printf("%-24s %-22s %-8s %-8s %7u %9u\n", nodes[i]->id,
		       nodes[i]->address,
		       drift_cli_node_state_name(nodes[i]->state),
		       drift_cli_node_role_name(nodes[i]->role),
		       nodes[i]->shards, nodes[i]->primaries);
}

static void text_move(const Drift__V1__ShardMove *m)
{
	printf("  %s/%u: %s -> %s, %" PRIu64 " of %" PRIu64 " bytes\n",
	       m->collection, m->shard, m->from, m->to, m->bytes_done,
	       m->bytes_total);
}

/* ---- status ------------------------------------------------------------- */

int drift_cli_cmd_status(drift_cli *cli, int argc, char **argv)
{
	int np;
	int rv = drift_cli_parse(cli, "status", NULL, 0, argc, argv, NULL, 0, 0,
				 &np);
	if (rv != 0)
		return rv;
	Drift__V1__StatusRequest req = DRIFT__V1__STATUS_REQUEST__INIT;
	Drift__V1__StatusResponse *r = NULL;
	rv = drift_cli_call(cli, "/drift.v1.Cluster/Status", &req.base,
			    &drift__v1__status_response__descriptor,
			    (ProtobufCMessage **)&r);
	if (rv != 0)
		return rv;
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "cluster_id");
		drift_json_str(&j, r->cluster_id);
		drift_json_key(&j, "leader");
		drift_json_str(&j, r->leader);
		drift_json_key(&j, "map_version");
		drift_json_u64(&j, r->map_version);
		drift_json_key(&j, "term");
		drift_json_u64(&j, r->term);
		drift_json_key(&j, "answered_by");
		drift_json_str(&j, r->node_id);
		drift_json_key(&j, "version");
		drift_json_str(&j, r->version);
		drift_json_key(&j, "nodes");
		drift_json_arr_begin(&j);
		for (size_t i = 0; i < r->n_nodes; i++)
			json_node(&j, r->nodes[i]);
		drift_json_arr_end(&j);
		drift_json_key(&j, "collections");
		drift_json_arr_begin(&j);
		for (size_t i = 0; i < r->n_collections; i++)
			drift_json_str(&j, r->collections[i]);
		drift_json_arr_end(&j);
		drift_json_key(&j, "moves");
		drift_json_arr_begin(&j);
		for (size_t i = 0; i < r->n_moves; i++)
			json_move(&j, r->moves[i]);
		drift_json_arr_end(&j);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("cluster %s, leader %s, map version %" PRIu64
		       ", term %" PRIu64 "\n",
		       r->cluster_id[0] ? r->cluster_id : "-",
		       r->leader[0] ? r->leader : "(none)", r->map_version,
		       r->term);
		printf("answered by %s (drift %s); %zu collection%s\n",
		       r->node_id, r->version, r->n_collections,
		       r->n_collections == 1 ? "" : "s");
		text_nodes(r->nodes, r->n_nodes);
		if (r->n_moves > 0) {
			printf("moves in progress:\n");
			for (size_t i = 0; i < r->n_moves; i++)
				text_move(r->moves[i]);
		}
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* ---- node add / remove -------------------------------------------------- */

int drift_cli_cmd_node_add(drift_cli *cli, int argc, char **argv)
{
	drift_cli_opt opts[] = {
		{"id", "ID", NULL, false},
		{"raft-address", "HOST:PORT", NULL, false},
	};
	char *pos[1];
	int np;
	int rv = drift_cli_parse(cli,
				 "node add ADDRESS [--id ID] [--raft-address "
				 "HOST:PORT]",
				 opts, NOPTS(opts), argc, argv, pos, 1, 1, &np);
	if (rv != 0)
		return rv;
	Drift__V1__AddNodeRequest req = DRIFT__V1__ADD_NODE_REQUEST__INIT;
	req.address = pos[0];
	if (opts[0].set)
		req.id = (char *)opts[0].value;
	if (opts[1].set)
		req.raft_address = (char *)opts[1].value;
	Drift__V1__AddNodeResponse *r = NULL;
	rv = drift_cli_call(cli, "/drift.v1.Cluster/AddNode", &req.base,
			    &drift__v1__add_node_response__descriptor,
			    (ProtobufCMessage **)&r);
	if (rv != 0)
		return rv;
	Drift__V1__NodeInfo none = DRIFT__V1__NODE_INFO__INIT;
	const Drift__V1__NodeInfo *n = r->node != NULL ? r->node : &none;
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "node");
		json_node(&j, n);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("added node %s at %s (%s, %s)\n", n->id, n->address,
		       drift_cli_node_state_name(n->state),
		       drift_cli_node_role_name(n->role));
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

int drift_cli_cmd_node_remove(drift_cli *cli, int argc, char **argv)
{
	char *pos[1];
	int np;
	int rv = drift_cli_parse(cli, "node remove NODE_ID", NULL, 0, argc,
				 argv, pos, 1, 1, &np);
	if (rv != 0)
		return rv;
	Drift__V1__RemoveNodeRequest req = DRIFT__V1__REMOVE_NODE_REQUEST__INIT;
	req.id = pos[0];
	ProtobufCMessage *r = NULL;
	rv = drift_cli_call(cli, "/drift.v1.Cluster/RemoveNode", &req.base,
			    &drift__v1__remove_node_response__descriptor, &r);
	if (rv != 0)
		return rv;
	protobuf_c_message_free_unpacked(r, NULL);
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "removed");
		drift_json_str(&j, pos[0]);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("removed node %s\n", pos[0]);
	}
	return 0;
}

/* ---- shard-map ---------------------------------------------------------- */

static void text_ids(char **ids, size_t n)
{
	if (n == 0)
		fputs("-", stdout);
	for (size_t i = 0; i < n; i++)
		printf("%s%s", i ? "," : "", ids[i]);
}

int drift_cli_cmd_shard_map(drift_cli *cli, int argc, char **argv)
{
	char *pos[1];
	int np;
	int rv = drift_cli_parse(cli, "shard-map [NAME]", NULL, 0, argc, argv,
				 pos, 0, 1, &np);
	if (rv != 0)
		return rv;
	Drift__V1__ShardMapRequest req = DRIFT__V1__SHARD_MAP_REQUEST__INIT;
	if (np == 1)
		req.collection = pos[0];
	Drift__V1__ShardMapResponse *r = NULL;
	rv = drift_cli_call(cli, "/drift.v1.Cluster/ShardMap", &req.base,
			    &drift__v1__shard_map_response__descriptor,
			    (ProtobufCMessage **)&r);
	if (rv != 0)
		return rv;
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "version");
		drift_json_u64(&j, r->version);
		drift_json_key(&j, "leader");
		drift_json_str(&j, r->leader);
		drift_json_key(&j, "shards");
		drift_json_arr_begin(&j);
		for (size_t i = 0; i < r->n_shards; i++) {
			const Drift__V1__ShardAssignment *a = r->shards[i];
			drift_json_obj_begin(&j);
			drift_json_key(&j, "collection");
			drift_json_str(&j, a->collection);
			drift_json_key(&j, "shard");
			drift_json_u64(&j, a->shard);
			drift_json_key(&j, "nodes");
			drift_json_arr_begin(&j);
			for (size_t k = 0; k < a->n_nodes; k++)
				drift_json_str(&j, a->nodes[k]);
			drift_json_arr_end(&j);
			drift_json_key(&j, "in_sync");
			drift_json_arr_begin(&j);
			for (size_t k = 0; k < a->n_in_sync; k++)
				drift_json_str(&j, a->in_sync[k]);
			drift_json_arr_end(&j);
			drift_json_key(&j, "move");
			json_move(&j, a->move);
			drift_json_obj_end(&j);
		}
		drift_json_arr_end(&j);
		drift_json_key(&j, "nodes");
		drift_json_arr_begin(&j);
		for (size_t i = 0; i < r->n_nodes; i++)
			json_node(&j, r->nodes[i]);
		drift_json_arr_end(&j);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("shard map version %" PRIu64 ", leader %s\n", r->version,
		       r->leader[0] ? r->leader : "(none)");
		printf("%-24s %6s  %-40s %s\n", "COLLECTION", "SHARD",
		       "NODES (primary first)", "IN SYNC");
		for (size_t i = 0; i < r->n_shards; i++) {
			const Drift__V1__ShardAssignment *a = r->shards[i];
			printf("%-24s %6u  ", a->collection, a->shard);
			int w = 0;
			for (size_t k = 0; k < a->n_nodes; k++)
				w += (int)strlen(a->nodes[k]) + (k ? 1 : 0);
			text_ids(a->nodes, a->n_nodes);
			printf("%*s ", w < 40 ? 40 - w : 0, "");
			text_ids(a->in_sync, a->n_in_sync);
			printf("\n");
			if (a->move != NULL)
				text_move(a->move);
		}
		printf("shards per node:\n");
		text_nodes(r->nodes, r->n_nodes);
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* ---- rebalance ---------------------------------------------------------- */

/* Rebalance(wait) on a thread of its own, while the command shows the
 * moves' progress from Status. */
struct rebalance_call {
	drift_grpc_client *c;
	Drift__V1__RebalanceRequest req;
	Drift__V1__RebalanceResponse *resp;
	drift_grpc_status st;
	int rv;
	atomic_bool done;
};

static void *rebalance_main(void *arg)
{
	struct rebalance_call *rc = arg;
	/* The call lasts as long as the moves: no deadline. */
	rc->rv = drift_grpc_client_unary_pb(
		rc->c, "/drift.v1.Cluster/Rebalance", &rc->req.base,
		&drift__v1__rebalance_response__descriptor, 0,
		(ProtobufCMessage **)&rc->resp, &rc->st);
	atomic_store(&rc->done, true);
	return NULL;
}

/* The moves' progress while rc runs: on a terminal, a line per move and
 * a bar of its bytes; *moves_seen gets how many moves Status showed. */
static void show_moves(drift_cli *cli, struct rebalance_call *rc,
		       unsigned *moves_seen)
{
	char cur[DRIFT_CLI_MOVE_KEY] = "";
	drift_progress bar;
	drift_progress_init(&bar, "bytes", 0);
	bool drawing = false;
	uint64_t done = 0;
	*moves_seen = 0;
	while (!atomic_load(&rc->done)) {
		Drift__V1__StatusRequest req = DRIFT__V1__STATUS_REQUEST__INIT;
		Drift__V1__StatusResponse *r = NULL;
		drift_grpc_status st;
		if (drift_grpc_client_unary_pb(
			    rc->c, "/drift.v1.Cluster/Status", &req.base,
			    &drift__v1__status_response__descriptor,
			    cli->timeout_ns, (ProtobufCMessage **)&r,
			    &st) == 0) {
			for (size_t i = 0; i < r->n_moves; i++) {
				const Drift__V1__ShardMove *m = r->moves[i];
				char key[DRIFT_CLI_MOVE_KEY];
				snprintf(key, sizeof(key), "%s/%u %s %s",
					 m->collection, m->shard, m->from,
					 m->to);
				if (strcmp(key, cur) != 0) {
					if (drawing)
						drift_progress_end(&bar, done);
					snprintf(cur, sizeof(cur), "%s", key);
					(*moves_seen)++;
					if (bar.on)
						fprintf(stderr,
							"moving %s/%u: %s -> "
							"%s\n",
							m->collection, m->shard,
							m->from[0] ? m->from
								   : "(new)",
							m->to);
					drift_progress_init(&bar, "bytes", 0);
					bar.base = m->bytes_done;
					drawing = true;
				}
				bar.total = m->bytes_total;
				done = m->bytes_done;
				drift_progress_update(&bar, done);
				break; /* one at a time */
			}
			protobuf_c_message_free_unpacked(&r->base, NULL);
		}
		for (int k = 0; k < 5 && !atomic_load(&rc->done); k++)
			drift_clock_sleep(drift_clock_system(), 100000000ull);
	}
	if (drawing)
		drift_progress_end(&bar, bar.total > done ? bar.total : done);
}

int drift_cli_cmd_rebalance(drift_cli *cli, int argc, char **argv)
{
	drift_cli_opt opts[] = {{"wait", NULL, NULL, false}};
	int np;
	int rv = drift_cli_parse(cli, "rebalance [--wait]", opts, NOPTS(opts),
				 argc, argv, NULL, 0, 0, &np);
	if (rv != 0)
		return rv;
	struct rebalance_call rc;
	memset(&rc, 0, sizeof(rc));
	drift__v1__rebalance_request__init(&rc.req);
	rc.req.wait = opts[0].set;
	atomic_init(&rc.done, false);
	if ((rv = drift_cli_client(cli, &rc.c)) != 0)
		return rv;
	unsigned seen = 0;
	pthread_t t;
	if (!rc.req.wait) {
		rc.rv = drift_grpc_client_unary_pb(
			rc.c, "/drift.v1.Cluster/Rebalance", &rc.req.base,
			&drift__v1__rebalance_response__descriptor,
			cli->timeout_ns, (ProtobufCMessage **)&rc.resp, &rc.st);
	} else if (pthread_create(&t, NULL, rebalance_main, &rc) == 0) {
		show_moves(cli, &rc, &seen);
		pthread_join(t, NULL);
	} else {
		rebalance_main(&rc);
	}
	if (rc.rv != 0)
		return drift_cli_fail_status(cli, &rc.st);
	Drift__V1__RebalanceResponse *r = rc.resp;
	if (cli->json) {
		drift_json j;
		drift_json_init(&j, stdout);
		drift_json_obj_begin(&j);
		drift_json_key(&j, "moves");
		drift_json_u64(&j, r->moves);
		drift_json_key(&j, "waited");
		drift_json_bool(&j, rc.req.wait);
		drift_json_obj_end(&j);
		drift_json_done(&j);
	} else {
		printf("%u shard move%s %s\n", r->moves,
		       r->moves == 1 ? "" : "s",
		       rc.req.wait ? "done" : "started");
	}
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}
