/* Tests of common/config: the file format, flags, errors that say where and
 * what, and all-or-nothing loading. */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/config.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

typedef struct conf {
	char *data_dir;
	char *listen;
	int64_t workers;
	uint64_t memory;
	uint64_t sync_interval;
	bool verbose;
	int wal_sync;
	double recall;
} conf;

static const char *const sync_names[] = {"always", "batch", "none", NULL};

static const drift_cfg_opt opts[] = {
	{.key = "node.data_dir",
	 .flag = "data-dir",
	 .type = DRIFT_CFG_STRING,
	 .offset = offsetof(conf, data_dir),
	 .def = "/var/lib/drift",
	 .help = "Where the node keeps its data."},
	{.key = "node.listen",
	 .flag = "listen",
	 .type = DRIFT_CFG_ADDR,
	 .offset = offsetof(conf, listen),
	 .def = "127.0.0.1:7400",
	 .help = "Address to serve on."},
	{.key = "node.workers",
	 .type = DRIFT_CFG_INT,
	 .offset = offsetof(conf, workers),
	 .def = "4",
	 .min = 1,
	 .max = 256,
	 .help = "Worker threads."},
	{.key = "memory.budget",
	 .type = DRIFT_CFG_SIZE,
	 .offset = offsetof(conf, memory),
	 .def = "1GiB",
	 .help = "Memory budget."},
	{.key = "wal.sync_interval",
	 .type = DRIFT_CFG_DURATION,
	 .offset = offsetof(conf, sync_interval),
	 .def = "10ms",
	 .min = 0,
	 .max = 10000000000,
	 .help = "Group commit window."},
	{.key = "log.verbose",
	 .flag = "verbose",
	 .type = DRIFT_CFG_BOOL,
	 .offset = offsetof(conf, verbose),
	 .help = "Chatty logs."},
	{.key = "wal.sync",
	 .flag = "wal-sync",
	 .type = DRIFT_CFG_ENUM,
	 .offset = offsetof(conf, wal_sync),
	 .def = "always",
	 .choices = sync_names,
	 .help = "When writes are acknowledged."},
	{.key = "search.recall",
	 .type = DRIFT_CFG_DOUBLE,
	 .offset = offsetof(conf, recall),
	 .def = "0.9",
	 .dmin = 0.01,
	 .dmax = 1.0,
	 .help = "Default recall target."},
};

static const drift_cfg_schema schema = {
	.program = "drift-test",
	.summary = "A schema for tests.",
	.opts = opts,
	.nopts = sizeof(opts) / sizeof(opts[0]),
};

static conf c;
static char dir[256];

static void setup(void)
{
	memset(&c, 0, sizeof(c));
	drift_err err;
	cr_assert_eq(drift_cfg_defaults(&schema, &c, &err), 0, "%s", err.msg);
	dir[0] = '\0';
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_cfg_free(&schema, &c);
	if (dir[0] != '\0')
		drift_test_rmtree(dir);
}

TestSuite(config, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static int load(const char *text, drift_err *err)
{
	return drift_cfg_load_buffer(&schema, &c, "drift.conf", text,
				     strlen(text), err);
}

/* Loading text fails with code and a message containing want; the config
 * is unchanged. */
static void load_fails(const char *text, int code, const char *want)
{
	conf before = c;
	char dd[256], ls[256];
	snprintf(dd, sizeof(dd), "%s", c.data_dir);
	snprintf(ls, sizeof(ls), "%s", c.listen);
	drift_err err;
	drift_err_clear(&err);
	int rv = load(text, &err);
	cr_assert_eq(rv, code, "for %s: got %s (%s)", text, drift_errname(rv),
		     err.msg);
	cr_assert_not_null(strstr(err.msg, want),
			   "for %s: message '%s' "
			   "lacks '%s'",
			   text, err.msg, want);
	cr_assert_eq(memcmp(&before, &c, sizeof(c)), 0, "unchanged");
	cr_assert_str_eq(c.data_dir, dd);
	cr_assert_str_eq(c.listen, ls);
}

static int args(drift_err *err, int *first, int argc, ...)
{
	char *argv[32];
	va_list ap;
	va_start(ap, argc);
	argv[0] = "drift-test";
	for (int i = 1; i < argc; i++)
		argv[i] = va_arg(ap, char *);
	va_end(ap);
	argv[argc] = NULL;
	return drift_cfg_parse_args(&schema, &c, argc, argv, first, err);
}

/* ---- Cases: file format ----------------------------------------------- */

DRIFT_TEST(config, defaults)
{
	cr_assert_str_eq(c.data_dir, "/var/lib/drift");
	cr_assert_str_eq(c.listen, "127.0.0.1:7400");
	cr_assert_eq(c.workers, 4);
	cr_assert_eq(c.memory, UINT64_C(1) << 30);
	cr_assert_eq(c.sync_interval, 10000000);
	cr_assert_eq(c.verbose, false);
	cr_assert_eq(c.wal_sync, 0);
	cr_assert_float_eq(c.recall, 0.9, 1e-12);
}

DRIFT_TEST(config, full_file)
{
	const char *text = "# Drift node\n"
			   "\n"
			   "[node]\n"
			   "data_dir = \"/srv/drift \\\"x\\\"\"  # quoted\n"
			   "listen = '[::1]:7401'\n"
			   "  workers = 1_6\n"
			   "[memory]\r\n"
			   "budget = \"512 MiB\"\r\n"
			   "[wal]\n"
			   "sync_interval = \"1s250ms\"\n"
			   "sync = \"BATCH\"\n"
			   "[log]\n"
			   "verbose = true\n"
			   "[search]\n"
			   "recall = 0.95";
	drift_err err;
	cr_assert_eq(load(text, &err), 0, "%s", err.msg);
	cr_assert_str_eq(c.data_dir, "/srv/drift \"x\"");
	cr_assert_str_eq(c.listen, "[::1]:7401");
	cr_assert_eq(c.workers, 16);
	cr_assert_eq(c.memory, UINT64_C(512) << 20);
	cr_assert_eq(c.sync_interval, 1250000000);
	cr_assert_eq(c.wal_sync, 1);
	cr_assert_eq(c.verbose, true);
	cr_assert_float_eq(c.recall, 0.95, 1e-12);
}

DRIFT_TEST(config, sizes_may_be_plain_integers)
{
	drift_err err;
	cr_assert_eq(load("memory.budget = 4096\n", &err), 0, "%s", err.msg);
	cr_assert_eq(c.memory, 4096);
}

DRIFT_TEST(config, unknown_keys_name_the_line_and_suggest)
{
	load_fails("[node]\nlisten = \"a:1\"\nlisen = \"b:2\"\n", DRIFT_EINVAL,
		   "drift.conf:3: unknown key 'node.lisen' (did you mean "
		   "'node.listen'?)");
	load_fails("[nope]\nthing = 1\n", DRIFT_EINVAL,
		   "drift.conf:2: unknown key 'nope.thing'");
}

DRIFT_TEST(config, bad_values_say_what_was_expected)
{
	load_fails("node.workers = 0\n", DRIFT_EINVAL,
		   "drift.conf:1: node.workers: expected an integer from 1 "
		   "to 256, got '0'");
	load_fails("node.workers = \"4\"\n", DRIFT_EINVAL, "(without quotes)");
	load_fails("node.workers = 99999999999999999999\n", DRIFT_EINVAL,
		   "expected an integer");
	load_fails("node.data_dir = /srv\n", DRIFT_EINVAL,
		   "strings need double quotes");
	load_fails("wal.sync = \"sometimes\"\n", DRIFT_EINVAL,
		   "wal.sync: expected one of always, batch, none, got "
		   "'sometimes'");
	load_fails("node.listen = \"localhost\"\n", DRIFT_EINVAL,
		   "expected an address HOST:PORT");
	load_fails("node.listen = \"h:65536\"\n", DRIFT_EINVAL, "HOST:PORT");
	load_fails("memory.budget = \"8 parsecs\"\n", DRIFT_EINVAL,
		   "expected a size");
	load_fails("wal.sync_interval = \"11s\"\n", DRIFT_EINVAL,
		   "a duration from 0ns to 10000000000ns");
	load_fails("wal.sync_interval = 5\n", DRIFT_EINVAL,
		   "expected a duration");
	load_fails("log.verbose = maybe\n", DRIFT_EINVAL, "true or false");
	load_fails("search.recall = 1.5\n", DRIFT_EINVAL,
		   "a number from 0.01 to 1");
	load_fails("search.recall = 1e999\n", DRIFT_EINVAL, "a number");
}

DRIFT_TEST(config, syntax_errors)
{
	load_fails("node.workers 4\n", DRIFT_ESYNTAX,
		   "drift.conf:1: expected '=' after the key");
	load_fails("\n\nnode.data_dir = \"abc\n", DRIFT_ESYNTAX,
		   "drift.conf:3: string is not closed on this line");
	load_fails("node.workers = 4 5\n", DRIFT_ESYNTAX,
		   "unexpected text after the value");
	load_fails("[node\n", DRIFT_ESYNTAX, "expected a table name");
	load_fails("[[node]]\n", DRIFT_ESYNTAX, "arrays of tables");
	load_fails("[node] x\n", DRIFT_ESYNTAX,
		   "unexpected text after the table name");
	load_fails("= 4\n", DRIFT_ESYNTAX, "expected 'key = value'");
	load_fails("node.workers =\n", DRIFT_ESYNTAX, "expected a value");
	load_fails("node.data_dir = \"a\\qb\"\n", DRIFT_ESYNTAX,
		   "unsupported escape");
	load_fails("node.workers = 4\nnode.workers = 5\n", DRIFT_EINVAL,
		   "drift.conf:2: key 'node.workers' is already set on line "
		   "1");
	drift_err err;
	const char nul[] = "node.workers = 4\0\n";
	int rv = drift_cfg_load_buffer(&schema, &c, "bin", nul, sizeof(nul),
				       &err);
	cr_assert_eq(rv, DRIFT_ESYNTAX);
	cr_assert_not_null(strstr(err.msg, "NUL byte"));
}

DRIFT_TEST(config, error_halfway_changes_nothing)
{
	/* Two good lines, then a bad one: none of the three applies. */
	load_fails("node.data_dir = \"/new\"\nnode.workers = 9\n"
		   "node.workers2 = 1\n",
		   DRIFT_EINVAL, "unknown key 'node.workers2'");
	cr_assert_eq(c.workers, 4);
}

DRIFT_TEST(config, every_failed_allocation_is_clean)
{
	const char *text = "[node]\ndata_dir = \"/a\"\nlisten = \"h:1\"\n"
			   "workers = 8\n";
	drift_err err;
	for (long n = 1;; n++) {
		drift_failalloc_arm(n, 0);
		int rv = load(text, &err);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0, "%s", err.msg);
			cr_assert_geq(n, 3, "loading allocates");
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM, "allocation %ld", n);
		cr_assert_str_eq(c.data_dir, "/var/lib/drift");
		cr_assert_eq(c.workers, 4);
	}
	cr_assert_str_eq(c.data_dir, "/a");
	cr_assert_eq(c.workers, 8);
}

DRIFT_TEST(config, load_file_reports_path_and_missing_file)
{
	drift_test_tmpdir(dir, sizeof(dir));
	char path[300];
	snprintf(path, sizeof(path), "%s/drift.conf", dir);
	drift_err err;
	int rv = drift_cfg_load_file(&schema, &c, path, &err);
	cr_assert_eq(rv, DRIFT_ENOENT);
	cr_assert_not_null(strstr(err.msg, path), "%s", err.msg);

	FILE *f = fopen(path, "w");
	fputs("[node]\nworkers = 300\n", f);
	fclose(f);
	rv = drift_cfg_load_file(&schema, &c, path, &err);
	cr_assert_eq(rv, DRIFT_EINVAL);
	char want[400];
	snprintf(want, sizeof(want), "%s:2: node.workers: expected", path);
	cr_assert_not_null(strstr(err.msg, want), "%s", err.msg);
}

/* ---- Cases: flags ----------------------------------------------------- */

DRIFT_TEST(config, flags_in_every_form)
{
	drift_err err;
	int first = -1;
	int rv = args(&err, &first, 11, "--data-dir", "/x", "--listen=h:9",
		      "--node.workers", "7", "--memory-budget=2GB", "--verbose",
		      "--wal-sync=none", "search", "--other");
	/* "--memory-budget" is not a flag: only keys and named flags are. */
	cr_assert_eq(rv, DRIFT_EINVAL);
	cr_assert_not_null(strstr(err.msg, "unknown flag '--memory-budget'"),
			   "%s", err.msg);
	cr_assert_str_eq(c.data_dir, "/var/lib/drift", "nothing applied");

	rv = args(&err, &first, 11, "--data-dir", "/x", "--listen=h:9",
		  "--node.workers", "7", "--memory.budget=2GB", "--verbose",
		  "--wal-sync=none", "search", "--other");
	cr_assert_eq(rv, 0, "%s", err.msg);
	cr_assert_str_eq(c.data_dir, "/x");
	cr_assert_str_eq(c.listen, "h:9");
	cr_assert_eq(c.workers, 7);
	cr_assert_eq(c.memory, 2000000000);
	cr_assert(c.verbose);
	cr_assert_eq(c.wal_sync, 2);
	cr_assert_eq(first, 9, "flags stop at the first positional");
}

DRIFT_TEST(config, flag_errors)
{
	drift_err err;
	int first = -1;
	cr_assert_eq(args(&err, &first, 2, "--lisen=h:1"), DRIFT_EINVAL);
	cr_assert_str_eq(err.msg, "unknown flag '--lisen' (did you mean "
				  "'--listen'?)");
	cr_assert_eq(args(&err, &first, 2, "--listen"), DRIFT_EINVAL);
	cr_assert_str_eq(err.msg, "--listen: missing value");
	cr_assert_eq(args(&err, &first, 3, "--wal-sync", "fast"), DRIFT_EINVAL);
	cr_assert_str_eq(err.msg, "--wal-sync: expected one of always, batch, "
				  "none, got 'fast'");
	cr_assert_eq(args(&err, &first, 2, "-x"), DRIFT_EINVAL);
	cr_assert_eq(args(&err, &first, 2, "--config"), DRIFT_EINVAL);
	cr_assert_eq(first, -1, "no output on failure");
	cr_assert_eq(args(&err, &first, 3, "--workers", "1"), DRIFT_EINVAL);
	cr_assert_eq(args(&err, &first, 2, "--help"), DRIFT_CFG_HELP);
	cr_assert_eq(args(&err, &first, 2, "-h"), DRIFT_CFG_HELP);
}

DRIFT_TEST(config, config_file_loads_first_and_flags_win)
{
	drift_test_tmpdir(dir, sizeof(dir));
	char path[300], opt[320];
	snprintf(path, sizeof(path), "%s/drift.conf", dir);
	FILE *f = fopen(path, "w");
	fputs("[node]\nworkers = 12\ndata_dir = \"/from-file\"\n", f);
	fclose(f);
	snprintf(opt, sizeof(opt), "--config=%s", path);
	drift_err err;
	int first;
	/* The flag before --config still overrides the file. */
	int rv = args(&err, &first, 3, "--data-dir=/from-flag", opt);
	cr_assert_eq(rv, 0, "%s", err.msg);
	cr_assert_str_eq(c.data_dir, "/from-flag");
	cr_assert_eq(c.workers, 12);
	cr_assert_eq(first, 3);

	rv = args(&err, &first, 4, "--config", path, "--", "--verbose");
	cr_assert_eq(rv, 0, "%s", err.msg);
	cr_assert_eq(first, 4, "after -- everything is positional");
	cr_assert_not(c.verbose);
}

DRIFT_TEST(config, set_one_key)
{
	drift_err err;
	cr_assert_eq(drift_cfg_set(&schema, &c, "wal.sync", "batch", &err), 0);
	cr_assert_eq(c.wal_sync, 1);
	cr_assert_eq(drift_cfg_set(&schema, &c, "wal.snyc", "batch", &err),
		     DRIFT_EINVAL);
	cr_assert_eq(drift_cfg_set(&schema, &c, "node.workers", "x", &err),
		     DRIFT_EINVAL);
	cr_assert_eq(c.workers, 4);
}

DRIFT_TEST(config, usage_lists_every_option)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	drift_cfg_usage(&schema, f);
	fclose(f);
	for (size_t i = 0; i < schema.nopts; i++)
		cr_assert_not_null(strstr(buf, opts[i].key), "%s", opts[i].key);
	cr_assert_not_null(strstr(buf, "--data-dir TEXT, --node.data_dir"));
	cr_assert_not_null(strstr(buf, "[default: 127.0.0.1:7400]"));
	cr_assert_not_null(strstr(buf, "one of always, batch, none"));
	free(buf);
}

/* ---- Cases: value parsers --------------------------------------------- */

DRIFT_TEST(config, size_parser)
{
	struct {
		const char *text;
		int rv;
		uint64_t want;
	} cases[] = {
		{"0", 0, 0},
		{"4096", 0, 4096},
		{"1_000", 0, 1000},
		{"1KiB", 0, 1024},
		{"1k", 0, 1024},
		{"3 MB", 0, 3000000},
		{"2gib", 0, UINT64_C(2) << 30},
		{"1TiB", 0, UINT64_C(1) << 40},
		{"18446744073709551615", 0, UINT64_MAX},
		{"18446744073709551616", DRIFT_ERANGE, 0},
		{"17179869184GiB", DRIFT_ERANGE, 0},
		{"", DRIFT_EINVAL, 0},
		{"-1", DRIFT_EINVAL, 0},
		{"1.5GiB", DRIFT_EINVAL, 0},
		{"_1", DRIFT_EINVAL, 0},
		{"1__0", DRIFT_EINVAL, 0},
		{"1 GiB x", DRIFT_EINVAL, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 777;
		int rv = drift_cfg_parse_size(cases[i].text, &v);
		cr_assert_eq(rv, cases[i].rv, "'%s'", cases[i].text);
		cr_assert_eq(v, rv == 0 ? cases[i].want : 777, "'%s'",
			     cases[i].text);
	}
}

DRIFT_TEST(config, duration_parser)
{
	struct {
		const char *text;
		int rv;
		uint64_t want;
	} cases[] = {
		{"0", 0, 0},
		{"250ms", 0, 250000000},
		{"1h30m", 0, UINT64_C(5400000000000)},
		{"15us", 0, 15000},
		{"2s5ns", 0, 2000000005},
		{"5", DRIFT_EINVAL, 0},
		{"5 s", DRIFT_EINVAL, 0},
		{"s", DRIFT_EINVAL, 0},
		{"5d", DRIFT_EINVAL, 0},
		{"99999999999h", DRIFT_ERANGE, 0},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		uint64_t v = 777;
		int rv = drift_cfg_parse_duration(cases[i].text, &v);
		cr_assert_eq(rv, cases[i].rv, "'%s'", cases[i].text);
		cr_assert_eq(v, rv == 0 ? cases[i].want : 777, "'%s'",
			     cases[i].text);
	}
}

DRIFT_TEST(config, address_parser)
{
	char host[64];
	uint16_t port = 1;
	cr_assert_eq(drift_cfg_parse_addr("127.0.0.1:0", host, 64, &port), 0);
	cr_assert_str_eq(host, "127.0.0.1");
	cr_assert_eq(port, 0);
	cr_assert_eq(drift_cfg_parse_addr("[fe80::1]:443", host, 64, &port), 0);
	cr_assert_str_eq(host, "fe80::1");
	cr_assert_eq(port, 443);
	cr_assert_eq(
		drift_cfg_parse_addr("node-1.drift:65535", host, 64, &port), 0);
	cr_assert_eq(port, 65535);
	const char *bad[] = {"",
			     ":80",
			     "host",
			     "host:",
			     "host:x",
			     "h:-1",
			     "[::1]80",
			     "[::1:80",
			     "h st:1",
			     "h:1_0",
			     "h:99999999999999999999"};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_neq(drift_cfg_parse_addr(bad[i], host, 64, &port), 0,
			      "'%s'", bad[i]);
	cr_assert_eq(drift_cfg_parse_addr("h:65536", host, 64, &port),
		     DRIFT_ERANGE);
	cr_assert_neq(drift_cfg_parse_addr("longhostname:1", host, 4, &port),
		      0);
}
