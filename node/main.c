/*
 * drift-node: the storage node. Opens every collection in its data
 * directory (hydration), serves drift.v1 and grpc.health.v1 over gRPC, and
 * shuts down gracefully on SIGTERM or SIGINT (stops accepting, finishes
 * calls in flight, closes the collections: every shard syncs its WAL).
 *
 *   drift-node --data-dir DIR --listen HOST:PORT [--config FILE] ...
 *
 * `drift-node --help` lists every option; docs/configuration.md describes
 * the file. It logs a line containing "ready" once it accepts requests,
 * and prints "listening on HOST:PORT" on stdout (PORT is the real one when
 * 0 was asked for).
 */
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/grpc/server.h"
#include "common/log.h"
#include "node/collection.h"
#include "node/service.h"

struct node_cfg {
	char *data_dir;
	char *listen;
	int64_t workers;
	int64_t max_workers;
	int64_t cpu_workers;
	uint64_t max_message;
	int64_t memtable_rows;
	int64_t max_vectors;
	int64_t max_dim;
	uint64_t memory_budget;
	uint64_t grace;
	int log_level;
};

static const char *const levels[] = {"trace", "debug", "info", "warn",
				     "error", "off",   NULL};

#define OPT(k, f, t, field, d, h, lo, hi)                                      \
	{                                                                      \
		.key = (k), .flag = (f), .type = (t),                          \
		.offset = offsetof(struct node_cfg, field), .def = (d),        \
		.help = (h), .min = (lo), .max = (hi)                          \
	}

static const drift_cfg_opt opts[] = {
	OPT("node.data_dir", "data-dir", DRIFT_CFG_STRING, data_dir, NULL,
	    "directory of the node's collections (created when missing)", 0, 0),
	OPT("node.listen", "listen", DRIFT_CFG_ADDR, listen, "127.0.0.1:7400",
	    "gRPC address, HOST:PORT (port 0: any free port)", 0, 0),
	OPT("node.workers", "workers", DRIFT_CFG_INT, workers, "4",
	    "handler threads kept ready", 1, 1024),
	OPT("node.max_workers", NULL, DRIFT_CFG_INT, max_workers, "256",
	    "handlers running at once at most", 1, 65536),
	OPT("node.cpu_workers", "cpu-workers", DRIFT_CFG_INT, cpu_workers, "0",
	    "threads that run Search and Get calls, in arrival order "
	    "(0: one per online CPU)",
	    0, 1024),
	OPT("node.max_message", NULL, DRIFT_CFG_SIZE, max_message, "64MiB",
	    "largest gRPC message received", 1024, (int64_t)1 << 31),
	OPT("memory.memtable_rows", "memtable-rows", DRIFT_CFG_INT,
	    memtable_rows, "65536",
	    "rows of a shard's memtable for new collections (the L0 memory "
	    "budget: about rows * (4 * dim + 200) bytes per shard, twice "
	    "during a flush)",
	    16, 1 << 24),
	OPT("memory.budget", "memory-budget", DRIFT_CFG_SIZE, memory_budget,
	    "0",
	    "memory all collections together may use (0: no budget); each "
	    "gets its CreateCollection memory_limit, reserved out of it, or "
	    "an equal share of the rest, and an upsert over the share is "
	    "refused",
	    0, INT64_MAX),
	OPT("limits.max_vectors", "max-vectors", DRIFT_CFG_INT, max_vectors,
	    "0", "live vectors a collection may hold (0: no limit)", 0,
	    INT64_MAX),
	OPT("limits.max_dimension", "max-dimension", DRIFT_CFG_INT, max_dim,
	    "65536", "largest dimension of a new collection", 1, 65536),
	OPT("node.shutdown_grace", NULL, DRIFT_CFG_DURATION, grace, "10s",
	    "how long calls in flight may run at shutdown", 0,
	    (int64_t)3600 * 1000000000),
	{.key = "log.level",
	 .flag = "log-level",
	 .type = DRIFT_CFG_ENUM,
	 .offset = offsetof(struct node_cfg, log_level),
	 .def = "info",
	 .help = "log threshold",
	 .choices = levels},
};

static const drift_cfg_schema schema = {
	"drift-node", "Drift storage node: serves drift.v1 over gRPC", opts,
	sizeof(opts) / sizeof(opts[0])};

int main(int argc, char **argv)
{
	struct node_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	drift_err err;
	drift_err_clear(&err);
	if (drift_cfg_defaults(&schema, &cfg, &err) != 0) {
		fprintf(stderr, "drift-node: %s\n", err.msg);
		return 2;
	}
	int first;
	int rv = drift_cfg_parse_args(&schema, &cfg, argc, argv, &first, &err);
	if (rv == DRIFT_CFG_HELP) {
		drift_cfg_usage(&schema, stdout);
		drift_cfg_free(&schema, &cfg);
		return 0;
	}
	if (rv != 0 || first != argc) {
		fprintf(stderr, "drift-node: %s\n",
			rv != 0 ? err.msg : "unexpected argument");
		drift_cfg_free(&schema, &cfg);
		return 2;
	}
	if (cfg.data_dir == NULL || cfg.data_dir[0] == '\0') {
		fprintf(stderr, "drift-node: --data-dir is required\n");
		drift_cfg_free(&schema, &cfg);
		return 2;
	}
	drift_log_set_level(cfg.log_level);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	int status = 1;
	drift_cm *cm = NULL;
	drift_grpc_server *srv = NULL;
	drift_cm_opts co = {.memtable_rows = (uint32_t)cfg.memtable_rows,
			    .max_vectors = (uint64_t)cfg.max_vectors,
			    .memory_budget = cfg.memory_budget,
			    .max_dim = (uint32_t)cfg.max_dim,
			    .janitor = true};
	if (drift_cm_open(cfg.data_dir, &co, &cm, &err) != 0) {
		DRIFT_ERROR("drift-node: %s", err.msg);
		goto out;
	}
	drift_grpc_server_opts so = {
		.max_recv_msg = cfg.max_message,
		.max_send_msg = cfg.max_message,
		.workers = (unsigned)cfg.workers,
		.max_workers = (unsigned)cfg.max_workers,
		.cpu_workers = (unsigned)cfg.cpu_workers,
	};
	if (drift_grpc_server_new(&so, &srv, &err) != 0 ||
	    drift_node_service_register(srv, cm, cfg.listen) != 0 ||
	    drift_grpc_server_listen(srv, cfg.listen, &err) != 0 ||
	    drift_grpc_server_start(srv, &err) != 0) {
		DRIFT_ERROR("drift-node: %s",
			    err.msg[0] ? err.msg : "cannot start the server");
		goto out;
	}
	drift_grpc_server_set_health(srv, "drift.v1.Drift", 1);
	char host[256];
	uint16_t port;
	if (drift_cfg_parse_addr(cfg.listen, host, sizeof(host), &port) != 0)
		snprintf(host, sizeof(host), "%s", "?");
	printf("listening on %s:%d\n", host, drift_grpc_server_port(srv));
	fflush(stdout);
	DRIFT_INFO("drift-node ready: serving drift.v1 on %s:%d (data in %s)",
		   host, drift_grpc_server_port(srv), cfg.data_dir);
	int sig;
	sigwait(&set, &sig);
	DRIFT_INFO("drift-node: signal %d, shutting down", sig);
	drift_grpc_server_shutdown(srv, cfg.grace);
	status = 0;
out:
	drift_grpc_server_free(srv);
	drift_cm_close(cm);
	if (status == 0)
		DRIFT_INFO("drift-node: stopped");
	drift_cfg_free(&schema, &cfg);
	return status;
}
