/*
 * drift-router: the stateless request router (router/service.h).
 *
 *   drift-router --listen HOST:PORT --join HOST:PORT[,...]
 *                [--metrics-listen HOST:PORT] [--log-format text|json]
 *
 * It follows the shard map from the listed nodes, logs "ready" and prints
 * "listening on HOST:PORT" once it holds one, serves drift.v1.Drift,
 * drift.v1.Cluster and grpc.health.v1, and stops gracefully on SIGTERM or
 * SIGINT. It holds no other state: restart it at will, run any number.
 */
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/config.h"
#include "common/grpc/metrics_http.h"
#include "common/grpc/server.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/process_metrics.h"
#include "router/map.h"
#include "router/service.h"

struct router_cfg {
	char *listen;
	char *join;
	int64_t workers;
	uint64_t max_message;
	uint64_t grace;
	uint64_t wait;
	int log_level;
	int log_format;
	char *metrics_listen;
};

static const char *const formats[] = {"text", "json", NULL};

static const char *const levels[] = {"trace", "debug", "info", "warn",
				     "error", "off",   NULL};

#define OPT(k, f, t, field, d, h, lo, hi)                                      \
	{                                                                      \
		.key = (k), .flag = (f), .type = (t),                          \
		.offset = offsetof(struct router_cfg, field), .def = (d),      \
		.help = (h), .min = (lo), .max = (hi)                          \
	}

static const drift_cfg_opt opts[] = {
	OPT("router.listen", "listen", DRIFT_CFG_ADDR, listen, "127.0.0.1:7400",
	    "gRPC address, HOST:PORT (port 0: any free port)", 0, 0),
	OPT("router.join", "join", DRIFT_CFG_STRING, join, NULL,
	    "gRPC addresses of nodes to follow the shard map from, "
	    "HOST:PORT[,...]",
	    0, 0),
	OPT("router.workers", "workers", DRIFT_CFG_INT, workers, "8",
	    "handler threads kept ready", 1, 1024),
	OPT("router.max_message", NULL, DRIFT_CFG_SIZE, max_message, "64MiB",
	    "largest gRPC message received", 1024, (int64_t)1 << 31),
	OPT("router.shutdown_grace", NULL, DRIFT_CFG_DURATION, grace, "10s",
	    "how long calls in flight may run at shutdown", 0,
	    (int64_t)3600 * 1000000000),
	OPT("router.map_wait", "map-wait", DRIFT_CFG_DURATION, wait, "60s",
	    "how long to wait for a first shard map before giving up", 1000000,
	    (int64_t)3600 * 1000000000),
	{.key = "log.level",
	 .flag = "log-level",
	 .type = DRIFT_CFG_ENUM,
	 .offset = offsetof(struct router_cfg, log_level),
	 .def = "info",
	 .help = "log threshold",
	 .choices = levels},
	{.key = "log.format",
	 .flag = "log-format",
	 .type = DRIFT_CFG_ENUM,
	 .offset = offsetof(struct router_cfg, log_format),
	 .def = "text",
	 .help = "log line format: text, or json (one object per line)",
	 .choices = formats},
	OPT("metrics.listen", "metrics-listen", DRIFT_CFG_ADDR, metrics_listen,
	    NULL, "HTTP address of GET /metrics (Prometheus); unset: none", 0,
	    0),
};

/* drift_router_map_version: the version of the shard map routed by. */
static void collect_map(drift_metrics_out *o, void *ctx)
{
	drift_rmap *m = drift_rmap_get(ctx);
	if (m == NULL)
		return;
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "drift_router_map_version",
			   "The version of the shard map the router routes by.",
			   NULL, NULL, 0, (double)drift_rmap_version(m));
	drift_rmap_unref(m);
}

static const drift_cfg_schema schema = {
	"drift-router", "Drift router: serves drift.v1 over a cluster", opts,
	sizeof(opts) / sizeof(opts[0])};

int main(int argc, char **argv)
{
	struct router_cfg cfg;
	memset(&cfg, 0, sizeof(cfg));
	drift_err err;
	drift_err_clear(&err);
	if (drift_cfg_defaults(&schema, &cfg, &err) != 0) {
		fprintf(stderr, "drift-router: %s\n", err.msg);
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
		fprintf(stderr, "drift-router: %s\n",
			rv != 0 ? err.msg : "unexpected argument");
		drift_cfg_free(&schema, &cfg);
		return 2;
	}
	if (cfg.join == NULL || cfg.join[0] == '\0') {
		fprintf(stderr, "drift-router: --join HOST:PORT[,...] is "
				"required (nodes of the cluster)\n");
		drift_cfg_free(&schema, &cfg);
		return 2;
	}
	drift_log_set_level(cfg.log_level);
	drift_log_set_format(cfg.log_format);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	pthread_sigmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);

	int status = 1;
	drift_rmap_follower *f = NULL;
	drift_grpc_server *srv = NULL;
	drift_metrics_http *mh = NULL;
	bool collecting = false;
	if (drift_rmap_follow(cfg.join, &f, &err) != 0) {
		DRIFT_ERROR("drift-router: %s", err.msg);
		goto out;
	}
	if (drift_rmap_wait(f, cfg.wait) != 0) {
		DRIFT_ERROR("drift-router: no shard map from %s in time",
			    cfg.join);
		goto out;
	}
	drift_grpc_server_opts so = {
		.max_recv_msg = cfg.max_message,
		.max_send_msg = cfg.max_message,
		.workers = (unsigned)cfg.workers,
	};
	if (drift_grpc_server_new(&so, &srv, &err) != 0 ||
	    drift_router_service_register(srv, f) != 0 ||
	    drift_grpc_server_listen(srv, cfg.listen, &err) != 0 ||
	    drift_grpc_server_start(srv, &err) != 0) {
		DRIFT_ERROR("drift-router: %s",
			    err.msg[0] ? err.msg : "cannot start the server");
		goto out;
	}
	if (cfg.metrics_listen != NULL && cfg.metrics_listen[0] != '\0') {
		collecting =
			drift_metrics_add_collector(drift_metrics_default(),
						    collect_map, f) == 0;
		if (!collecting || drift_process_metrics_start() != 0 ||
		    drift_metrics_http_start(drift_metrics_default(),
					     cfg.metrics_listen, &mh,
					     &err) != 0) {
			DRIFT_ERROR("drift-router: %s",
				    err.msg[0] ? err.msg
					       : "cannot start the metrics");
			drift_grpc_server_shutdown(srv, 0);
			goto out;
		}
	}
	drift_grpc_server_set_health(srv, "drift.v1.Drift", 1);
	char host[256];
	uint16_t port;
	if (drift_cfg_parse_addr(cfg.listen, host, sizeof(host), &port) != 0)
		snprintf(host, sizeof(host), "%s", "?");
	printf("listening on %s:%d\n", host, drift_grpc_server_port(srv));
	char mhost[256];
	if (mh != NULL && drift_cfg_parse_addr(cfg.metrics_listen, mhost,
					       sizeof(mhost), &port) == 0)
		printf("metrics on %s:%d\n", mhost,
		       drift_metrics_http_port(mh));
	fflush(stdout);
	drift_rmap *m = drift_rmap_get(f);
	DRIFT_INFO("drift-router ready: serving drift.v1 on %s:%d, shard map "
		   "version %llu from %s",
		   host, drift_grpc_server_port(srv),
		   (unsigned long long)drift_rmap_version(m), cfg.join);
	drift_rmap_unref(m);
	int sig;
	sigwait(&set, &sig);
	DRIFT_INFO("drift-router: signal %d, shutting down", sig);
	drift_router_service_closing();
	drift_grpc_server_shutdown(srv, cfg.grace);
	status = 0;
out:
	drift_metrics_http_stop(mh);
	if (collecting)
		drift_metrics_remove_collector(drift_metrics_default(),
					       collect_map, f);
	drift_grpc_server_free(srv);
	drift_rmap_stop(f);
	if (status == 0)
		DRIFT_INFO("drift-router: stopped");
	drift_cfg_free(&schema, &cfg);
	return status;
}
