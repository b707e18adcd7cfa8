/*
 * drift-node: the storage node. Opens every collection in its data
 * directory (hydration), joins or bootstraps the cluster
 * (node/server/cluster.h), serves drift.v1 and grpc.health.v1 over gRPC, and
 * shuts down gracefully on SIGTERM or SIGINT (a Raft leader hands leadership
 * over, the server stops accepting and finishes calls in flight, the
 * collections close: every shard syncs its WAL).
 *
 *   drift-node --data-dir DIR --listen HOST:PORT --raft-listen HOST:PORT
 *              [--join HOST:PORT[,...]] [--node-id ID]
 *              [--advertise HOST:PORT] [--config FILE] ...
 *
 * Without --raft-listen the Raft port is the --listen port + 10 on the
 * same host (any free port when --listen asks for port 0).
 * `drift-node --help` lists every option; docs/configuration.md describes
 * the file. It logs a line containing "ready" once it accepts requests,
 * and prints "listening on HOST:PORT" on stdout (PORT is the real one when
 * 0 was asked for).
 */
#include <netdb.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/config.h"
#include "common/grpc/metrics_http.h"
#include "common/grpc/server.h"
#include "common/log.h"
#include "common/process_metrics.h"
#include "node/replica/replica.h"
#include "node/server/cluster.h"
#include "node/engine/collection.h"
#include "node/engine/engine_metrics.h"
#include "node/server/raft_metrics.h"
#include "node/server/service.h"

struct node_cfg {
	char *data_dir;
	char *listen;
	char *raft_listen;
	char *advertise;
	char *raft_advertise;
	char *join;
	char *node_id;
	int64_t max_voters;
	uint64_t election;
	uint64_t join_timeout;
	int64_t workers;
	int64_t max_workers;
	int64_t cpu_workers;
	int64_t copy_rate;
	uint64_t replace_down_after;
	bool rebalance_on_join;
	uint64_t max_message;
	int64_t memtable_rows;
	int64_t max_vectors;
	int64_t max_dim;
	uint64_t memory_budget;
	uint64_t grace;
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
		.offset = offsetof(struct node_cfg, field), .def = (d),        \
		.help = (h), .min = (lo), .max = (hi)                          \
	}

static const drift_cfg_opt opts[] = {
	OPT("node.data_dir", "data-dir", DRIFT_CFG_STRING, data_dir, NULL,
	    "directory of the node's collections (created when missing)", 0, 0),
	OPT("node.listen", "listen", DRIFT_CFG_ADDR, listen, "127.0.0.1:7400",
	    "gRPC address, HOST:PORT (port 0: any free port)", 0, 0),
	OPT("cluster.raft_listen", "raft-listen", DRIFT_CFG_ADDR, raft_listen,
	    NULL,
	    "Raft address, HOST:PORT (default: the --listen host, its port "
	    "+ 10)",
	    0, 0),
	OPT("cluster.advertise", "advertise", DRIFT_CFG_ADDR, advertise, NULL,
	    "gRPC address peers and routers dial (default: --listen, which "
	    "must then not be a wildcard address)",
	    0, 0),
	OPT("cluster.raft_advertise", "raft-advertise", DRIFT_CFG_ADDR,
	    raft_advertise, NULL,
	    "Raft address peers dial (default: --raft-listen, or the "
	    "--advertise host with the Raft port when that is a wildcard)",
	    0, 0),
	OPT("cluster.join", "join", DRIFT_CFG_STRING, join, NULL,
	    "gRPC addresses of members to join through, HOST:PORT[,...] "
	    "(only for an empty data directory; none: bootstrap a cluster "
	    "of one)",
	    0, 0),
	OPT("cluster.node_id", "node-id", DRIFT_CFG_STRING, node_id, NULL,
	    "this node's id (default: the one kept in the data directory, "
	    "or a new one)",
	    0, 0),
	OPT("cluster.max_voters", "max-voters", DRIFT_CFG_INT, max_voters, "3",
	    "Raft voters of a new cluster (3 or 5); later nodes are standbys",
	    3, 5),
	OPT("cluster.election_timeout", "election-timeout", DRIFT_CFG_DURATION,
	    election, "300ms",
	    "Raft election timeout (heartbeats every fifth of it)", 50000000,
	    (int64_t)60 * 1000000000),
	OPT("cluster.join_timeout", "join-timeout", DRIFT_CFG_DURATION,
	    join_timeout, "60s",
	    "how long a new node tries to join before it gives up", 1000000,
	    (int64_t)3600 * 1000000000),
	OPT("node.workers", "workers", DRIFT_CFG_INT, workers, "4",
	    "handler threads kept ready", 1, 1024),
	OPT("node.max_workers", NULL, DRIFT_CFG_INT, max_workers, "256",
	    "handlers running at once at most", 1, 65536),
	OPT("cluster.copy_rate", "copy-rate", DRIFT_CFG_SIZE, copy_rate,
	    "64MiB",
	    "bytes per second a full copy of a shard (a move, a replica "
	    "catching up) sends at most, so the load keeps its latency "
	    "(0: no limit)",
	    0, (int64_t)1 << 40),
	OPT("cluster.rebalance_on_join", "rebalance-on-join", DRIFT_CFG_BOOL,
	    rebalance_on_join, "false",
	    "the metadata leader rebalances (the fewest moves) once a node it "
	    "added is up",
	    0, 0),
	OPT("cluster.replace_down_after", "replace-down-after",
	    DRIFT_CFG_DURATION, replace_down_after, "5m",
	    "how long a node is down before the leader copies its replicas "
	    "to the nodes that are up, as if it were removed (0: never)",
	    0, (int64_t)7 * 24 * 3600 * 1000000000),
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
	{.key = "log.format",
	 .flag = "log-format",
	 .type = DRIFT_CFG_ENUM,
	 .offset = offsetof(struct node_cfg, log_format),
	 .def = "text",
	 .help = "log line format: text, or json (one object per line)",
	 .choices = formats},
	OPT("metrics.listen", "metrics-listen", DRIFT_CFG_ADDR, metrics_listen,
	    NULL, "HTTP address of GET /metrics (Prometheus); unset: none", 0,
	    0),
};

static const drift_cfg_schema schema = {
	"drift-node", "Drift storage node: serves drift.v1 over gRPC", opts,
	sizeof(opts) / sizeof(opts[0])};

static bool wildcard(const char *host)
{
	return host[0] == '\0' || strcmp(host, "0.0.0.0") == 0 ||
	       strcmp(host, "::") == 0 || strcmp(host, "[::]") == 0;
}

/* A free TCP port on host (for a Raft port when --listen asks for any
 * port: the tests and development runs). */
static int free_port(const char *host)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC,
				 .ai_socktype = SOCK_STREAM,
				 .ai_flags = AI_PASSIVE};
	struct addrinfo *ai = NULL;
	if (getaddrinfo(host, "0", &hints, &ai) != 0 || ai == NULL)
		return -1;
	int port = -1;
	int fd = socket(ai->ai_family, SOCK_STREAM, 0);
	if (fd >= 0 && bind(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
			port = ntohs(ss.ss_family == AF_INET6
					     ? ((struct sockaddr_in6 *)&ss)
						       ->sin6_port
					     : ((struct sockaddr_in *)&ss)
						       ->sin_port);
	}
	if (fd >= 0)
		close(fd);
	freeaddrinfo(ai);
	return port;
}

static void join_host_port(char *out, size_t cap, const char *host, int port)
{
	if (strchr(host, ':') != NULL && host[0] != '[')
		snprintf(out, cap, "[%s]:%d", host, port);
	else
		snprintf(out, cap, "%s:%d", host, port);
}

/* The cluster's addresses from the flags, once the gRPC port is known:
 * what peers dial for gRPC and for Raft, and where Raft listens. */
struct addrs {
	char advertise[DRIFT_ADDR_MAX + 1];
	char raft_bind[DRIFT_ADDR_MAX + 1];
	char raft_advertise[DRIFT_ADDR_MAX + 1];
};

static int cluster_addrs(const struct node_cfg *cfg, int grpc_port,
			 struct addrs *a, drift_err *err)
{
	char host[256], adv_host[256];
	uint16_t port;
	if (drift_cfg_parse_addr(cfg->listen, host, sizeof(host), &port) != 0)
		return drift_err_set(err, DRIFT_EINVAL, "bad --listen %s",
				     cfg->listen);
	if (cfg->advertise != NULL && cfg->advertise[0] != '\0') {
		uint16_t ap;
		if (drift_cfg_parse_addr(cfg->advertise, adv_host,
					 sizeof(adv_host), &ap) != 0 ||
		    wildcard(adv_host) || ap == 0)
			return drift_err_set(
				err, DRIFT_EINVAL,
				"--advertise %s: peers cannot dial a wildcard "
				"host or port 0",
				cfg->advertise);
		snprintf(a->advertise, sizeof(a->advertise), "%s",
			 cfg->advertise);
	} else {
		if (wildcard(host))
			return drift_err_set(
				err, DRIFT_EINVAL,
				"--listen %s is a wildcard address: give "
				"--advertise HOST:PORT, the address peers and "
				"routers dial",
				cfg->listen);
		snprintf(adv_host, sizeof(adv_host), "%s", host);
		join_host_port(a->advertise, sizeof(a->advertise), host,
			       grpc_port);
	}
	char rhost[256];
	uint16_t rport;
	if (cfg->raft_listen != NULL && cfg->raft_listen[0] != '\0') {
		if (drift_cfg_parse_addr(cfg->raft_listen, rhost, sizeof(rhost),
					 &rport) != 0 ||
		    rport == 0)
			return drift_err_set(err, DRIFT_EINVAL,
					     "--raft-listen %s: give a port "
					     "(peers dial it)",
					     cfg->raft_listen);
	} else {
		snprintf(rhost, sizeof(rhost), "%s", host);
		int p = port == 0 ? free_port(host) : (int)port + 10;
		if (p <= 0 || p > 65535)
			return drift_err_set(
				err, DRIFT_EINVAL,
				"no Raft port: give --raft-listen");
		rport = (uint16_t)p;
	}
	join_host_port(a->raft_bind, sizeof(a->raft_bind), rhost, rport);
	if (cfg->raft_advertise != NULL && cfg->raft_advertise[0] != '\0') {
		char h[256];
		uint16_t p;
		if (drift_cfg_parse_addr(cfg->raft_advertise, h, sizeof(h),
					 &p) != 0 ||
		    wildcard(h) || p == 0)
			return drift_err_set(
				err, DRIFT_EINVAL,
				"--raft-advertise %s: peers cannot dial a "
				"wildcard host or port 0",
				cfg->raft_advertise);
		snprintf(a->raft_advertise, sizeof(a->raft_advertise), "%s",
			 cfg->raft_advertise);
	} else {
		join_host_port(a->raft_advertise, sizeof(a->raft_advertise),
			       wildcard(rhost) ? adv_host : rhost, rport);
	}
	return 0;
}

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
	if (cfg.max_voters != 3 && cfg.max_voters != 5) {
		fprintf(stderr, "drift-node: --max-voters must be 3 or 5\n");
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
	drift_cm *cm = NULL;
	drift_grpc_server *srv = NULL;
	drift_node_cluster *nc = NULL;
	struct addrs ad;
	drift_metrics_http *mh = NULL;
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
	/* Listen first: the cluster needs the real port of "port 0". */
	if (drift_grpc_server_new(&so, &srv, &err) != 0 ||
	    drift_grpc_server_listen(srv, cfg.listen, &err) != 0 ||
	    cluster_addrs(&cfg, drift_grpc_server_port(srv), &ad, &err) != 0) {
		DRIFT_ERROR("drift-node: %s",
			    err.msg[0] ? err.msg : "cannot start the server");
		goto out;
	}
	drift_node_cluster_opts nco = {
		.data_dir = cfg.data_dir,
		.node_id = cfg.node_id,
		.address = ad.advertise,
		.raft_bind = ad.raft_bind,
		.raft_address = ad.raft_advertise,
		.join = cfg.join,
		.max_voters = (unsigned)cfg.max_voters,
		.election_ms = (unsigned)(cfg.election / 1000000),
		.cm = cm,
	};
	drift_replica_copy_rate((uint64_t)cfg.copy_rate);
	drift_replica_replace_after(cfg.replace_down_after);
	drift_replica_rebalance_on_join(cfg.rebalance_on_join);
	if (drift_node_cluster_open(&nco, &nc, &err) != 0 ||
	    drift_node_service_register(srv, cm, nc) != 0 ||
	    drift_grpc_server_start(srv, &err) != 0) {
		DRIFT_ERROR("drift-node: %s",
			    err.msg[0] ? err.msg : "cannot start the server");
		goto out;
	}
	drift_log_set_node_id(drift_node_cluster_node_id(nc));
	if (cfg.metrics_listen != NULL && cfg.metrics_listen[0] != '\0') {
		if (drift_engine_metrics_start(cm) != 0 ||
		    drift_raft_metrics_start(nc) != 0 ||
		    drift_process_metrics_start() != 0 ||
		    drift_metrics_http_start(drift_metrics_default(),
					     cfg.metrics_listen, &mh,
					     &err) != 0) {
			DRIFT_ERROR("drift-node: %s", err.msg[0]
							      ? err.msg
							      : "cannot start "
								"the metrics");
			drift_grpc_server_shutdown(srv, 0);
			goto out;
		}
		DRIFT_INFO("drift-node: metrics on %s (port %d), GET /metrics",
			   cfg.metrics_listen, drift_metrics_http_port(mh));
	}
	char host[256];
	uint16_t port;
	if (drift_cfg_parse_addr(cfg.listen, host, sizeof(host), &port) != 0)
		snprintf(host, sizeof(host), "%s", "?");
	/* Joining needs the server: the leader dials this node's Status. */
	if (drift_node_cluster_start(nc, cfg.join_timeout, &err) != 0) {
		DRIFT_ERROR("drift-node: %s", err.msg);
		drift_grpc_server_shutdown(srv, 0);
		goto out;
	}
	printf("listening on %s:%d\n", host, drift_grpc_server_port(srv));
	char mhost[256];
	if (mh != NULL && drift_cfg_parse_addr(cfg.metrics_listen, mhost,
					       sizeof(mhost), &port) == 0)
		printf("metrics on %s:%d\n", mhost,
		       drift_metrics_http_port(mh));
	fflush(stdout);
	drift_grpc_server_set_health(srv, "drift.v1.Drift", 1);
	DRIFT_INFO("drift-node ready: node %s serving drift.v1 on %s:%d "
		   "(advertised as %s, Raft on %s; data in %s)",
		   drift_node_cluster_node_id(nc), host,
		   drift_grpc_server_port(srv), ad.advertise, ad.raft_bind,
		   cfg.data_dir);
	int sig;
	sigwait(&set, &sig);
	DRIFT_INFO("drift-node: signal %d, shutting down", sig);
	/* Not ready any more (readiness probes, and the leader places no new
	 * shard here), while calls in flight and forwarded ones still run. */
	drift_grpc_server_set_health(srv, "drift.v1.Drift", 2);
	/* Leadership first, while the server still answers forwarded calls;
	 * then the calls in flight. */
	drift_node_cluster_stop(nc);
	drift_grpc_server_shutdown(srv, cfg.grace);
	status = 0;
out:
	drift_metrics_http_stop(mh);
	if (cm != NULL)
		drift_engine_metrics_stop(cm);
	if (nc != NULL)
		drift_raft_metrics_stop(nc);
	drift_grpc_server_free(srv);
	drift_node_service_close();
	drift_node_cluster_close(nc);
	drift_cm_close(cm);
	if (status == 0)
		DRIFT_INFO("drift-node: stopped");
	drift_cfg_free(&schema, &cfg);
	return status;
}
