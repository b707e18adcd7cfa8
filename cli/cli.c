#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "drift/v1/drift.pb-c.h"

/* ---- Failures ----------------------------------------------------------- */

int drift_cli_fail(drift_cli *cli, int code, const char *fmt, ...)
{
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	/* One line: a server's message may hold newlines. */
	for (char *p = msg; *p; p++)
		if (*p == '\n' || *p == '\r')
			*p = ' ';
	fflush(stdout);
	if (cli->command != NULL)
		fprintf(stderr, "drift-cli: %s: %s\n", cli->command, msg);
	else
		fprintf(stderr, "drift-cli: %s\n", msg);
	return code;
}

int drift_cli_fail_status(drift_cli *cli, const drift_grpc_status *st)
{
	const char *name = drift_grpc_code_name(st->code);
	if (st->code == DRIFT_GRPC_UNAVAILABLE)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_REFUSED,
				      "%s: %s (is a node or router listening "
				      "on %s?)",
				      name, st->msg[0] ? st->msg : "no answer",
				      cli->addr);
	return drift_cli_fail(cli, DRIFT_CLI_EXIT_REFUSED, "%s: %s", name,
			      st->msg[0] ? st->msg : "(no message)");
}

/* ---- Calls -------------------------------------------------------------- */

int drift_cli_client(drift_cli *cli, drift_grpc_client **out)
{
	if (cli->client == NULL) {
		drift_grpc_client_opts o = {0};
		o.connections = cli->connections;
		o.max_recv_msg = 256u << 20;
		drift_err err;
		drift_err_clear(&err);
		if (drift_grpc_client_new(cli->addr, &o, &cli->client, &err) !=
		    0)
			return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE, "%s",
					      err.msg);
	}
	*out = cli->client;
	return 0;
}

int drift_cli_call(drift_cli *cli, const char *method,
		   const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *resp_desc,
		   ProtobufCMessage **resp)
{
	drift_grpc_client *c = NULL;
	int rv = drift_cli_client(cli, &c);
	if (rv != 0)
		return rv;
	drift_grpc_status st;
	if (drift_grpc_client_unary_pb(c, method, req, resp_desc,
				       cli->timeout_ns, resp, &st) != 0)
		return drift_cli_fail_status(cli, &st);
	return 0;
}

int drift_cli_collection_dim(drift_cli *cli, const char *name, uint32_t *dim,
			     uint32_t *memtable_rows)
{
	Drift__V1__DescribeCollectionRequest req =
		DRIFT__V1__DESCRIBE_COLLECTION_REQUEST__INIT;
	req.name = (char *)name;
	Drift__V1__DescribeCollectionResponse *r = NULL;
	int rv = drift_cli_call(
		cli, "/drift.v1.Drift/DescribeCollection", &req.base,
		&drift__v1__describe_collection_response__descriptor,
		(ProtobufCMessage **)&r);
	if (rv != 0)
		return rv;
	*dim = r->collection != NULL ? r->collection->dimension : 0;
	if (memtable_rows != NULL)
		*memtable_rows = r->collection != NULL
					 ? r->collection->memtable_rows
					 : 0;
	protobuf_c_message_free_unpacked(&r->base, NULL);
	return 0;
}

/* ---- Options ------------------------------------------------------------ */

static void print_usage(FILE *f, const char *usage)
{
	fprintf(f,
		"usage: drift-cli [--addr HOST:PORT] [--output text|json] "
		"[--timeout SECONDS] %s\n",
		usage);
}

/* A usage error: one line, with the way to the command's help. */
static int usage_error(drift_cli *cli, const char *what)
{
	return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
			      "%s (drift-cli %s --help shows the usage)", what,
			      cli->command != NULL ? cli->command : "");
}

int drift_cli_parse(drift_cli *cli, const char *usage, drift_cli_opt *opts,
		    size_t n_opts, int argc, char **argv, char **pos,
		    int min_pos, int max_pos, int *n_pos)
{
	int np = 0;
	bool opts_done = false;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if (opts_done || a[0] != '-' || a[1] != '-') {
			/* "-0.5" and friends are values, not options. */
			if (max_pos >= 0 && np == max_pos) {
				char m[300];
				snprintf(m, sizeof(m),
					 "unexpected argument \"%.200s\"", a);
				return usage_error(cli, m);
			}
			pos[np++] = argv[i];
			continue;
		}
		if (a[2] == '\0') {
			opts_done = true;
			continue;
		}
		if (strcmp(a, "--help") == 0) {
			print_usage(stdout, usage);
			return DRIFT_CLI_HELP;
		}
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t len = eq != NULL ? (size_t)(eq - name) : strlen(name);
		drift_cli_opt *o = NULL;
		for (size_t k = 0; k < n_opts; k++)
			if (strlen(opts[k].name) == len &&
			    memcmp(opts[k].name, name, len) == 0)
				o = &opts[k];
		if (o == NULL) {
			char m[300];
			snprintf(m, sizeof(m), "unknown option \"%.*s\"",
				 len > 200 ? 200 : (int)len + 2, a);
			return usage_error(cli, m);
		}
		if (o->metavar == NULL) {
			if (eq != NULL)
				return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
						      "--%s takes no value",
						      o->name);
			o->set = true;
			continue;
		}
		if (eq != NULL) {
			o->value = eq + 1;
		} else if (i + 1 < argc) {
			o->value = argv[++i];
		} else {
			return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
					      "--%s needs a value (%s)",
					      o->name, o->metavar);
		}
		o->set = true;
	}
	if (np < min_pos) {
		char m[300];
		snprintf(m, sizeof(m), "missing arguments: %.250s", usage);
		return usage_error(cli, m);
	}
	*n_pos = np;
	return 0;
}

int drift_cli_u64(drift_cli *cli, const char *what, const char *s, uint64_t min,
		  uint64_t max, uint64_t *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (s[0] < '0' || s[0] > '9' || *end != '\0' || errno == ERANGE)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "%s: \"%s\" is not an unsigned integer",
				      what, s);
	if (v < min || v > max)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "%s: %llu is out of range %llu..%llu",
				      what, v, (unsigned long long)min,
				      (unsigned long long)max);
	*out = v;
	return 0;
}

int drift_cli_f64(drift_cli *cli, const char *what, const char *s, double min,
		  double max, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (end == s || *end != '\0' || errno == ERANGE || !isfinite(v))
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "%s: \"%s\" is not a finite number", what,
				      s);
	if (v < min || v > max)
		return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
				      "%s: %g is out of range %g..%g", what, v,
				      min, max);
	*out = v;
	return 0;
}

/* ---- Names -------------------------------------------------------------- */

const char *drift_cli_metric_name(int metric)
{
	switch (metric) {
	case DRIFT__V1__METRIC__METRIC_L2:
		return "l2";
	case DRIFT__V1__METRIC__METRIC_IP:
		return "ip";
	case DRIFT__V1__METRIC__METRIC_COSINE:
		return "cosine";
	}
	return "unknown";
}

const char *drift_cli_wal_sync_name(int wal_sync)
{
	switch (wal_sync) {
	case DRIFT__V1__WAL_SYNC__WAL_SYNC_ALWAYS:
		return "always";
	case DRIFT__V1__WAL_SYNC__WAL_SYNC_BATCH:
		return "batch";
	case DRIFT__V1__WAL_SYNC__WAL_SYNC_NONE:
		return "none";
	}
	return "unknown";
}

const char *drift_cli_node_state_name(int state)
{
	switch (state) {
	case DRIFT__V1__NODE_STATE__NODE_STATE_UP:
		return "up";
	case DRIFT__V1__NODE_STATE__NODE_STATE_DOWN:
		return "down";
	case DRIFT__V1__NODE_STATE__NODE_STATE_JOINING:
		return "joining";
	case DRIFT__V1__NODE_STATE__NODE_STATE_LEAVING:
		return "leaving";
	}
	return "unknown";
}

const char *drift_cli_node_role_name(int role)
{
	switch (role) {
	case DRIFT__V1__NODE_ROLE__NODE_ROLE_VOTER:
		return "voter";
	case DRIFT__V1__NODE_ROLE__NODE_ROLE_LEADER:
		return "leader";
	case DRIFT__V1__NODE_ROLE__NODE_ROLE_STANDBY:
		return "standby";
	}
	return "unknown";
}
