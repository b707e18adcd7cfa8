/*
 * Configuration: a file in a TOML subset, overridden by command-line flags.
 *
 * A program describes its options once, in a table of drift_cfg_opt (key,
 * type, default, bounds, help, and where the value lives in its own config
 * struct). From that table this module fills the struct with defaults, loads
 * a file, applies flags, prints usage and reports every mistake with where it
 * is and what was expected.
 *
 * File format (docs/configuration.md has the operator's version):
 *
 *     # comment
 *     [node]                      # a table: keys below are "node.<key>"
 *     data_dir = "/var/lib/drift" # strings in double quotes (\" \\ \n \t)
 *     listen = "0.0.0.0:7400"     # HOST:PORT, IPv6 as "[::1]:7400"
 *     workers = 4                 # integers, '_' allowed between digits
 *     memory_budget = "8GiB"      # sizes: bytes, or B/KiB/MiB/GiB/TiB/KB/MB/..
 *     sync_interval = "10ms"      # durations: ns/us/ms/s/m/h, unit required
 *     verbose = true              # booleans: true or false
 *     wal_sync = "always"         # enums: one of the option's names
 *     recall = 0.95               # floating point
 *
 * A key may appear once per file. Unknown keys and tables are errors (with a
 * suggestion when a known key is close), never ignored: a typo must not
 * silently leave a default in place.
 *
 * Flags: every option is "--<key>=VALUE" or "--<key> VALUE" with its full
 * dotted key, and also "--<flag>" when the option names a short flag. A
 * boolean given without a value is true. "--config FILE" loads FILE before
 * any flag is applied, wherever it appears, so flags always win. "--" ends
 * the flags.
 *
 * Loading is all-or-nothing: when a file or the flags have any error, the
 * target struct is left exactly as it was.
 */
#ifndef DRIFT_COMMON_CONFIG_H
#define DRIFT_COMMON_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "common/err.h"

enum drift_cfg_type {
	DRIFT_CFG_STRING,   /* char * (owned by the struct; drift_cfg_free) */
	DRIFT_CFG_ADDR,	    /* char *, validated as HOST:PORT */
	DRIFT_CFG_INT,	    /* int64_t, within [min, max] */
	DRIFT_CFG_SIZE,	    /* uint64_t bytes, within [min, max] */
	DRIFT_CFG_DURATION, /* uint64_t nanoseconds, within [min, max] */
	DRIFT_CFG_BOOL,	    /* bool */
	DRIFT_CFG_ENUM,	    /* int: index into choices */
	DRIFT_CFG_DOUBLE,   /* double, within [dmin, dmax] */
};

typedef struct drift_cfg_opt {
	const char *key;  /* "section.name" */
	const char *flag; /* extra long flag without "--", or NULL */
	enum drift_cfg_type type;
	size_t offset;	 /* offsetof(the config struct, field) */
	const char *def; /* default in flag syntax; NULL: empty/zero */
	const char *help;
	/* Bounds for INT, SIZE and DURATION, used when min < max. */
	int64_t min, max;
	/* Bounds for DOUBLE, used when dmin < dmax. */
	double dmin, dmax;
	/* ENUM: the names, NULL-terminated. */
	const char *const *choices;
} drift_cfg_opt;

typedef struct drift_cfg_schema {
	const char *program; /* for usage: "drift-node" */
	const char *summary; /* one line under the usage line */
	const drift_cfg_opt *opts;
	size_t nopts;
} drift_cfg_schema;

/* Returned by drift_cfg_parse_args when -h or --help was given. */
#define DRIFT_CFG_HELP 1

/* Sets every option to its default. Strings are allocated. 0, DRIFT_ENOMEM,
 * or DRIFT_EINVAL when a default does not parse (a bug in the schema).
 * On failure target is left with no allocated strings. target must be
 * zeroed or freshly freed before the call. */
int drift_cfg_defaults(const drift_cfg_schema *s, void *target, drift_err *err);

/* Loads a file over the current values. 0 or DRIFT_ENOENT, DRIFT_EIO,
 * DRIFT_ESYNTAX (malformed line), DRIFT_EINVAL (unknown key, wrong type,
 * bad or out-of-range value), DRIFT_ENOMEM; the message starts with
 * "<path>:<line>: ". */
int drift_cfg_load_file(const drift_cfg_schema *s, void *target,
			const char *path, drift_err *err);

/* The same over a buffer of len bytes (need not be NUL-terminated); name is
 * used in messages. */
int drift_cfg_load_buffer(const drift_cfg_schema *s, void *target,
			  const char *name, const char *data, size_t len,
			  drift_err *err);

/* Sets one option from text in flag syntax ("8GiB", "true", "always"). */
int drift_cfg_set(const drift_cfg_schema *s, void *target, const char *key,
		  const char *value, drift_err *err);

/* Applies "--config FILE" and then every flag of argv[1..argc). Arguments
 * that are not flags (and all after "--") are positional: their indexes are
 * not stored; *first_positional gets the index of the first one (argc when
 * none), and the positionals must come after the flags. Returns 0,
 * DRIFT_CFG_HELP, or an error as drift_cfg_load_file (the message names the
 * flag). */
int drift_cfg_parse_args(const drift_cfg_schema *s, void *target, int argc,
			 char *const argv[], int *first_positional,
			 drift_err *err);

/* Prints usage: every option with its flag(s), type, default and help. */
void drift_cfg_usage(const drift_cfg_schema *s, FILE *out);

/* Frees the strings of target (the struct itself is the caller's) and zeroes
 * them. Safe to call twice. */
void drift_cfg_free(const drift_cfg_schema *s, void *target);

/* Parsers shared with other modules (flags of drift-cli, protocol options).
 * Each returns 0 or DRIFT_EINVAL/DRIFT_ERANGE and writes *out only on
 * success. */
int drift_cfg_parse_size(const char *text, uint64_t *out);
int drift_cfg_parse_duration(const char *text, uint64_t *out_ns);
int drift_cfg_parse_bool(const char *text, bool *out);
/* Splits "host:port" or "[v6]:port"; host gets at most host_cap bytes. */
int drift_cfg_parse_addr(const char *text, char *host, size_t host_cap,
			 uint16_t *port);

#endif /* DRIFT_COMMON_CONFIG_H */
