/*
 * drift-cli: the cluster admin and data tool (SPEC 4b, docs/cli.md).
 *
 *     drift-cli [--addr HOST:PORT] [--output text|json] [--timeout S]
 *               COMMAND ...
 *
 * Global options may come anywhere on the line. The address defaults to
 * $DRIFT_ADDR, else 127.0.0.1:7400 (make run's router).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "common/alloc.h"

typedef struct command {
	const char *word1,
		*word2; /* "collection", "create"; word2 may be NULL */
	drift_cli_cmd_fn fn;
	const char *summary;
} command;

static const command commands[] = {
	{"status", NULL, drift_cli_cmd_status, "cluster nodes, roles, leader"},
	{"node", "add", drift_cli_cmd_node_add, "add a node by its address"},
	{"node", "remove", drift_cli_cmd_node_remove, "remove a node by id"},
	{"collection", "create", drift_cli_cmd_collection_create,
	 "create a collection"},
	{"collection", "list", drift_cli_cmd_collection_list,
	 "list collections"},
	{"collection", "describe", drift_cli_cmd_collection_describe,
	 "a collection's configuration and shard statistics"},
	{"collection", "drop", drift_cli_cmd_collection_drop,
	 "drop a collection and its data"},
	{"load", NULL, drift_cli_cmd_load,
	 "bulk load an fvecs, bvecs or npy file"},
	{"search", NULL, drift_cli_cmd_search,
	 "k nearest neighbours of a vector or a query file"},
	{"get", NULL, drift_cli_cmd_get, "points by id"},
	{"delete", NULL, drift_cli_cmd_delete, "delete points by id"},
	{"shard-map", NULL, drift_cli_cmd_shard_map,
	 "shards, their replicas and shards per node"},
	{"rebalance", NULL, drift_cli_cmd_rebalance,
	 "even out shards over the nodes"},
	{"bench", NULL, drift_cli_cmd_bench,
	 "recall, QPS and latency of a query file"},
};

#define N_COMMANDS (sizeof(commands) / sizeof(commands[0]))

static void usage(FILE *f)
{
	fprintf(f, "usage: drift-cli [--addr HOST:PORT] [--output text|json] "
		   "[--timeout SECONDS] COMMAND ...\n\ncommands:\n");
	for (size_t i = 0; i < N_COMMANDS; i++) {
		char name[32];
		snprintf(name, sizeof(name), "%s%s%s", commands[i].word1,
			 commands[i].word2 ? " " : "",
			 commands[i].word2 ? commands[i].word2 : "");
		fprintf(f, "  %-22s %s\n", name, commands[i].summary);
	}
	fprintf(f, "\n\"drift-cli COMMAND --help\" shows a command's "
		   "options. --addr defaults to $DRIFT_ADDR, else "
		   "127.0.0.1:7400.\n");
}

/* Takes the global options out of argv (anywhere on the line): 0, or an
 * exit code (reported). rest gets the other arguments. */
static int globals(drift_cli *cli, int argc, char **argv, char **rest,
		   int *n_rest)
{
	int n = 0;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *names[] = {"--addr", "--output", "--timeout"};
		int which = -1;
		const char *val = NULL;
		for (int k = 0; k < 3; k++) {
			size_t l = strlen(names[k]);
			if (strncmp(a, names[k], l) == 0 &&
			    (a[l] == '\0' || a[l] == '=')) {
				which = k;
				val = a[l] == '=' ? a + l + 1 : NULL;
			}
		}
		if (strcmp(a, "--") == 0) {
			/* The rest is the command's, untouched. */
			for (; i < argc; i++)
				rest[n++] = argv[i];
			break;
		}
		if (which < 0) {
			rest[n++] = argv[i];
			continue;
		}
		if (val == NULL) {
			if (i + 1 >= argc)
				return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
						      "%s needs a value", a);
			val = argv[++i];
		}
		if (which == 0) {
			cli->addr = val;
		} else if (which == 1) {
			if (strcmp(val, "json") == 0)
				cli->json = true;
			else if (strcmp(val, "text") == 0)
				cli->json = false;
			else
				return drift_cli_fail(cli, DRIFT_CLI_EXIT_USAGE,
						      "--output: \"%s\" is not "
						      "text or json",
						      val);
		} else {
			double s;
			int rv = drift_cli_f64(cli, "--timeout", val, 0.001,
					       86400, &s);
			if (rv != 0)
				return rv;
			cli->timeout_ns = (uint64_t)(s * 1e9);
		}
	}
	*n_rest = n;
	return 0;
}

int main(int argc, char **argv)
{
	drift_cli cli = {0};
	cli.addr = getenv("DRIFT_ADDR");
	if (cli.addr == NULL || cli.addr[0] == '\0')
		cli.addr = "127.0.0.1:7400";
	cli.timeout_ns = 30ull * 1000000000ull;
	char **rest = drift_malloc(sizeof(char *) * (size_t)(argc + 1));
	if (rest == NULL)
		return drift_cli_fail(&cli, DRIFT_CLI_EXIT_USAGE,
				      "out of memory");
	int n = 0, rv = globals(&cli, argc, argv, rest, &n);
	if (rv != 0)
		goto out;
	if (n == 0 || strcmp(rest[0], "--help") == 0 ||
	    strcmp(rest[0], "help") == 0) {
		usage(n == 0 ? stderr : stdout);
		rv = n == 0 ? DRIFT_CLI_EXIT_USAGE : 0;
		goto out;
	}
	const command *cmd = NULL;
	int used = 1;
	bool word1_known = false;
	for (size_t i = 0; i < N_COMMANDS && cmd == NULL; i++) {
		if (strcmp(rest[0], commands[i].word1) != 0)
			continue;
		word1_known = true;
		if (commands[i].word2 == NULL) {
			cmd = &commands[i];
		} else if (n > 1 && strcmp(rest[1], commands[i].word2) == 0) {
			cmd = &commands[i];
			used = 2;
		}
	}
	if (cmd == NULL) {
		if (word1_known && (n < 2 || strcmp(rest[1], "--help") == 0)) {
			/* "drift-cli node": which sub-command? */
			usage(n < 2 ? stderr : stdout);
			rv = n < 2 ? DRIFT_CLI_EXIT_USAGE : 0;
		} else if (word1_known) {
			rv = drift_cli_fail(
				&cli, DRIFT_CLI_EXIT_USAGE,
				"unknown command \"%s %s\" (drift-cli "
				"--help lists them)",
				rest[0], rest[1]);
		} else {
			rv = drift_cli_fail(&cli, DRIFT_CLI_EXIT_USAGE,
					    "unknown command \"%s\" (drift-cli "
					    "--help lists them)",
					    rest[0]);
		}
		goto out;
	}
	char name[64];
	snprintf(name, sizeof(name), "%s%s%s", cmd->word1,
		 cmd->word2 ? " " : "", cmd->word2 ? cmd->word2 : "");
	cli.command = name;
	rv = cmd->fn(&cli, n - used, rest + used);
	if (rv == DRIFT_CLI_HELP)
		rv = 0;
	cli.command = NULL;
out:
	if (cli.client != NULL)
		drift_grpc_client_free(cli.client);
	drift_free(rest);
	fflush(stdout);
	if (ferror(stdout) && rv == 0) {
		fprintf(stderr, "drift-cli: writing the output failed\n");
		rv = DRIFT_CLI_EXIT_USAGE;
	}
	return rv;
}
