/*
 * What every drift-cli command shares: the invocation (address, output
 * mode, timeout), the connection, option parsing, and how failures are
 * reported.
 *
 * Exit codes (docs/cli.md): 0 success; 1 the server refused or could not
 * be reached (the message names the gRPC status and carries the server's
 * message); 2 bad usage or a local problem (a missing or malformed file, a
 * wrong dimension found before sending); 130 interrupted (Ctrl-C). Every
 * failure prints exactly one line on stderr:
 *     drift-cli: COMMAND: what went wrong
 * Commands return the exit code; DRIFT_CLI_HELP means --help was printed
 * (exit 0).
 */
#ifndef DRIFT_CLI_CLI_H
#define DRIFT_CLI_CLI_H

#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/grpc/client.h"
#include "drift/v1/drift.pb-c.h"

enum {
	DRIFT_CLI_EXIT_OK = 0,
	DRIFT_CLI_EXIT_REFUSED = 1,
	DRIFT_CLI_EXIT_USAGE = 2,
	DRIFT_CLI_EXIT_INTERRUPTED = 130,
	DRIFT_CLI_HELP = 256,
};

typedef struct drift_cli {
	const char *addr;	   /* --addr */
	bool json;		   /* --output json */
	uint64_t timeout_ns;	   /* --timeout, per call */
	unsigned connections;	   /* HTTP/2 connections (bench raises it) */
	const char *command;	   /* "collection create": for messages */
	drift_grpc_client *client; /* made on first use */
} drift_cli;

/* Prints "drift-cli: COMMAND: message" (newlines folded into spaces) on
 * stderr and returns code. */
int drift_cli_fail(drift_cli *cli, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

/* Reports a failed call (exit 1): "STATUS_NAME: server message". */
int drift_cli_fail_status(drift_cli *cli, const drift_grpc_status *st);

/* The connection, made on first use. 0 or an exit code (reported). */
int drift_cli_client(drift_cli *cli, drift_grpc_client **out);

/* One unary call of method ("/drift.v1.Drift/Search") with the per-call
 * timeout. 0 (*resp is the caller's: protobuf_c_message_free_unpacked) or
 * an exit code (reported). */
int drift_cli_call(drift_cli *cli, const char *method,
		   const ProtobufCMessage *req,
		   const ProtobufCMessageDescriptor *resp_desc,
		   ProtobufCMessage **resp);

/* The dimension and the most points of one Upsert of collection name
 * (DescribeCollection). 0 or an exit code (reported). */
int drift_cli_collection_dim(drift_cli *cli, const char *name, uint32_t *dim,
			     uint32_t *memtable_rows);

/* ---- Options ---- */

/* One option of a command: "--name VALUE" or "--name=VALUE" when metavar
 * is set, a flag "--name" otherwise. parse fills value and set. */
typedef struct drift_cli_opt {
	const char *name; /* without "--" */
	const char *metavar;
	const char *value;
	bool set;
} drift_cli_opt;

/* Parses a command's arguments (global options already removed): options
 * anywhere, the rest positional into pos (room for max_pos; max_pos < 0:
 * no limit, pos must then have room for argc). "--help" prints usage to
 * stdout and returns DRIFT_CLI_HELP. An unknown option, a missing value or
 * a wrong number of positionals is one line naming the problem and
 * returns DRIFT_CLI_EXIT_USAGE. "--" ends the options. */
int drift_cli_parse(drift_cli *cli, const char *usage, drift_cli_opt *opts,
		    size_t n_opts, int argc, char **argv, char **pos,
		    int min_pos, int max_pos, int *n_pos);

/* Value parsers for options and positionals: 0 or DRIFT_CLI_EXIT_USAGE
 * with a message naming what (an option "--k" or "id"). */
int drift_cli_u64(drift_cli *cli, const char *what, const char *s, uint64_t min,
		  uint64_t max, uint64_t *out);
int drift_cli_f64(drift_cli *cli, const char *what, const char *s, double min,
		  double max, double *out);

/* --k (default 10), --nprobe and --recall-target (at most one) into a
 * search request (search and bench). 0 or DRIFT_CLI_EXIT_USAGE. */
int drift_cli_search_params(drift_cli *cli, const drift_cli_opt *k,
			    const drift_cli_opt *nprobe,
			    const drift_cli_opt *target,
			    Drift__V1__SearchRequest *req);

/* Lower-case names of the API's enums, as --output text and json print
 * them ("l2", "always", "up", "leader"). */
const char *drift_cli_metric_name(int metric);
const char *drift_cli_wal_sync_name(int wal_sync);
const char *drift_cli_node_state_name(int state);
const char *drift_cli_node_role_name(int role);

/* ---- Commands (cmd_*.c): each returns the exit code ---- */

typedef int (*drift_cli_cmd_fn)(drift_cli *cli, int argc, char **argv);

int drift_cli_cmd_status(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_node_add(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_node_remove(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_shard_map(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_rebalance(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_collection_create(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_collection_list(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_collection_describe(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_collection_drop(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_get(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_delete(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_search(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_load(drift_cli *cli, int argc, char **argv);
int drift_cli_cmd_bench(drift_cli *cli, int argc, char **argv);

#endif /* DRIFT_CLI_CLI_H */
