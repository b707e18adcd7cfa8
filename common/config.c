#include "common/config.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "common/alloc.h"
#include "common/fs.h"

/* Config files larger than this are refused: a config is a few KiB, so a
 * bigger file is a mistake (the wrong path given to --config). */
#define CFG_FILE_MAX (1u << 20)
#define KEY_MAX 128

typedef union cfg_value {
	char *s;
	int64_t i;
	uint64_t u;
	bool b;
	int e;
	double d;
} cfg_value;

/* A value parsed but not yet applied: loading fills an array of these, one
 * per option, and applies it only when everything parsed. */
typedef struct pending {
	bool set;
	int line; /* where a file set it, to report a duplicate */
	cfg_value v;
} pending;

/* How a value was written: flags are raw text; in a file, a quoted string
 * and a bare token are different types. */
enum source { SRC_FLAG, SRC_QUOTED, SRC_BARE };

static bool is_string_type(enum drift_cfg_type t)
{
	return t == DRIFT_CFG_STRING || t == DRIFT_CFG_ADDR;
}

/* ---- Value parsers ---------------------------------------------------- */

/* Decimal digits with single '_' between digits; at least one digit. */
static int parse_digits(const char **pp, uint64_t *out)
{
	const char *p = *pp;
	uint64_t v = 0;
	if (!isdigit((unsigned char)*p))
		return DRIFT_EINVAL;
	for (;;) {
		if (isdigit((unsigned char)*p)) {
			unsigned d = (unsigned)(*p - '0');
			if (v > (UINT64_MAX - d) / 10)
				return DRIFT_ERANGE;
			v = v * 10 + d;
			p++;
		} else if (*p == '_' && isdigit((unsigned char)p[1]) &&
			   p > *pp) {
			p++;
		} else {
			break;
		}
	}
	*pp = p;
	*out = v;
	return 0;
}

static int parse_int(const char *text, int64_t *out)
{
	const char *p = text;
	bool neg = false;
	if (*p == '+' || *p == '-')
		neg = *p++ == '-';
	uint64_t mag;
	int rv = parse_digits(&p, &mag);
	if (rv != 0)
		return rv;
	if (*p != '\0')
		return DRIFT_EINVAL;
	if (neg ? mag > (uint64_t)INT64_MAX + 1 : mag > (uint64_t)INT64_MAX)
		return DRIFT_ERANGE;
	*out = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	return 0;
}

static const char *skip_spaces(const char *p)
{
	while (*p == ' ' || *p == '\t')
		p++;
	return p;
}

struct unit {
	const char *name;
	uint64_t mult;
};

static const struct unit size_units[] = {
	{"b", 1},
	{"k", UINT64_C(1) << 10},
	{"kib", UINT64_C(1) << 10},
	{"kb", UINT64_C(1000)},
	{"m", UINT64_C(1) << 20},
	{"mib", UINT64_C(1) << 20},
	{"mb", UINT64_C(1000000)},
	{"g", UINT64_C(1) << 30},
	{"gib", UINT64_C(1) << 30},
	{"gb", UINT64_C(1000000000)},
	{"t", UINT64_C(1) << 40},
	{"tib", UINT64_C(1) << 40},
	{"tb", UINT64_C(1000000000000)},
};

static const struct unit duration_units[] = {
	{"ns", 1},
	{"us", UINT64_C(1000)},
	{"ms", UINT64_C(1000000)},
	{"s", UINT64_C(1000000000)},
	{"m", UINT64_C(60000000000)},
	{"h", UINT64_C(3600000000000)},
};

/* Reads a unit name (letters) at *pp and finds it in units. */
static int parse_unit(const char **pp, const struct unit *units, size_t n,
		      uint64_t *mult)
{
	const char *p = *pp;
	size_t len = 0;
	while (isalpha((unsigned char)p[len]))
		len++;
	for (size_t i = 0; i < n; i++) {
		if (strlen(units[i].name) == len &&
		    strncasecmp(p, units[i].name, len) == 0) {
			*mult = units[i].mult;
			*pp = p + len;
			return 0;
		}
	}
	return DRIFT_EINVAL;
}

static int mul_checked(uint64_t a, uint64_t b, uint64_t *out)
{
	if (b != 0 && a > UINT64_MAX / b)
		return DRIFT_ERANGE;
	*out = a * b;
	return 0;
}

int drift_cfg_parse_size(const char *text, uint64_t *out)
{
	const char *p = text;
	uint64_t v, mult = 1;
	int rv = parse_digits(&p, &v);
	if (rv != 0)
		return rv;
	p = skip_spaces(p);
	if (*p != '\0') {
		rv = parse_unit(&p, size_units,
				sizeof(size_units) / sizeof(size_units[0]),
				&mult);
		if (rv != 0 || *p != '\0')
			return DRIFT_EINVAL;
	}
	rv = mul_checked(v, mult, &v);
	if (rv != 0)
		return rv;
	*out = v;
	return 0;
}

int drift_cfg_parse_duration(const char *text, uint64_t *out_ns)
{
	const char *p = text;
	uint64_t total = 0;
	if (strcmp(text, "0") == 0) {
		*out_ns = 0;
		return 0;
	}
	/* One or more <number><unit> parts: "1h30m", "250ms". */
	do {
		uint64_t v, mult, part;
		int rv = parse_digits(&p, &v);
		if (rv != 0)
			return rv;
		rv = parse_unit(&p, duration_units,
				sizeof(duration_units) /
					sizeof(duration_units[0]),
				&mult);
		if (rv != 0)
			return rv;
		rv = mul_checked(v, mult, &part);
		if (rv != 0 || part > UINT64_MAX - total)
			return DRIFT_ERANGE;
		total += part;
	} while (*p != '\0');
	*out_ns = total;
	return 0;
}

int drift_cfg_parse_bool(const char *text, bool *out)
{
	static const char *const yes[] = {"true", "yes", "on", "1"};
	static const char *const no[] = {"false", "no", "off", "0"};
	for (size_t i = 0; i < 4; i++) {
		if (strcasecmp(text, yes[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcasecmp(text, no[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return DRIFT_EINVAL;
}

int drift_cfg_parse_addr(const char *text, char *host, size_t host_cap,
			 uint16_t *port)
{
	const char *colon, *h = text;
	size_t hlen;
	if (text[0] == '[') {
		const char *close = strchr(text, ']');
		if (close == NULL || close[1] != ':')
			return DRIFT_EINVAL;
		h = text + 1;
		hlen = (size_t)(close - h);
		colon = close + 1;
		for (size_t i = 0; i < hlen; i++)
			if (!isxdigit((unsigned char)h[i]) && h[i] != ':' &&
			    h[i] != '.')
				return DRIFT_EINVAL;
	} else {
		colon = strrchr(text, ':');
		if (colon == NULL)
			return DRIFT_EINVAL;
		hlen = (size_t)(colon - text);
		for (size_t i = 0; i < hlen; i++)
			if (!isalnum((unsigned char)h[i]) && h[i] != '.' &&
			    h[i] != '-' && h[i] != '_')
				return DRIFT_EINVAL;
	}
	if (hlen == 0 || hlen >= host_cap)
		return DRIFT_EINVAL;
	const char *p = colon + 1;
	uint64_t v;
	if (*p == '_' || parse_digits(&p, &v) != 0 || *p != '\0' ||
	    strchr(colon + 1, '_') != NULL)
		return DRIFT_EINVAL;
	if (v > 65535)
		return DRIFT_ERANGE;
	memcpy(host, h, hlen);
	host[hlen] = '\0';
	*port = (uint16_t)v;
	return 0;
}

/* ---- Typed conversion ------------------------------------------------- */

/* Writes "expected ..." for opt into buf. */
static void describe_expected(const drift_cfg_opt *opt, char *buf, size_t cap)
{
	bool ranged = opt->min < opt->max;
	switch (opt->type) {
	case DRIFT_CFG_STRING:
		snprintf(buf, cap, "a string");
		break;
	case DRIFT_CFG_ADDR:
		snprintf(buf, cap,
			 "an address HOST:PORT (IPv6 as [ADDR]:PORT)");
		break;
	case DRIFT_CFG_INT:
		if (ranged)
			snprintf(buf, cap, "an integer from %lld to %lld",
				 (long long)opt->min, (long long)opt->max);
		else
			snprintf(buf, cap, "an integer");
		break;
	case DRIFT_CFG_SIZE:
		if (ranged)
			snprintf(buf, cap,
				 "a size from %lld to %lld bytes (units B, "
				 "KiB, MiB, GiB, TiB, KB, MB, GB, TB)",
				 (long long)opt->min, (long long)opt->max);
		else
			snprintf(buf, cap,
				 "a size such as 4096, 512MiB or 8GiB");
		break;
	case DRIFT_CFG_DURATION:
		if (ranged)
			snprintf(buf, cap,
				 "a duration from %lldns to %lldns with a unit "
				 "(ns, us, ms, s, m, h)",
				 (long long)opt->min, (long long)opt->max);
		else
			snprintf(buf, cap,
				 "a duration with a unit such as 250ms, 5s "
				 "or 1m30s");
		break;
	case DRIFT_CFG_BOOL:
		snprintf(buf, cap, "true or false");
		break;
	case DRIFT_CFG_ENUM: {
		size_t n = (size_t)snprintf(buf, cap, "one of");
		for (size_t i = 0; opt->choices[i] != NULL && n < cap; i++)
			n += (size_t)snprintf(buf + n, cap - n, "%s %s",
					      i == 0 ? "" : ",",
					      opt->choices[i]);
		break;
	}
	case DRIFT_CFG_DOUBLE:
		if (opt->dmin < opt->dmax)
			snprintf(buf, cap, "a number from %g to %g", opt->dmin,
				 opt->dmax);
		else
			snprintf(buf, cap, "a number");
		break;
	}
}

/* Whether a value written in the file's way fits the option's type. */
static bool source_fits(const drift_cfg_opt *opt, enum source src)
{
	switch (opt->type) {
	case DRIFT_CFG_STRING:
	case DRIFT_CFG_ADDR:
	case DRIFT_CFG_ENUM:
		return src != SRC_BARE;
	case DRIFT_CFG_INT:
	case DRIFT_CFG_BOOL:
	case DRIFT_CFG_DOUBLE:
		return src != SRC_QUOTED;
	default:
		return true;
	}
}

static int check_range(const drift_cfg_opt *opt, int64_t v)
{
	return opt->min < opt->max && (v < opt->min || v > opt->max)
		       ? DRIFT_ERANGE
		       : 0;
}

static int check_urange(const drift_cfg_opt *opt, uint64_t v)
{
	if (opt->min >= opt->max)
		return 0;
	uint64_t lo = opt->min < 0 ? 0 : (uint64_t)opt->min;
	uint64_t hi = opt->max < 0 ? 0 : (uint64_t)opt->max;
	return v < lo || v > hi ? DRIFT_ERANGE : 0;
}

/* Converts text to opt's type. On failure the message is "<label>: expected
 * ..., got '<text>'". */
static int convert(const drift_cfg_opt *opt, const char *text, enum source src,
		   cfg_value *out, const char *label, drift_err *err)
{
	cfg_value v = {0};
	int rv = 0;
	char host[256];
	uint16_t port;

	if (!source_fits(opt, src)) {
		rv = DRIFT_EINVAL;
		goto bad;
	}
	switch (opt->type) {
	case DRIFT_CFG_ADDR:
		rv = drift_cfg_parse_addr(text, host, sizeof(host), &port);
		if (rv != 0)
			goto bad;
		/* fall through */
	case DRIFT_CFG_STRING:
		v.s = drift_strdup(text);
		if (v.s == NULL)
			return drift_err_set(err, DRIFT_ENOMEM,
					     "%s: out of memory", label);
		break;
	case DRIFT_CFG_INT:
		rv = parse_int(text, &v.i);
		if (rv == 0)
			rv = check_range(opt, v.i);
		break;
	case DRIFT_CFG_SIZE:
		rv = drift_cfg_parse_size(text, &v.u);
		if (rv == 0)
			rv = check_urange(opt, v.u);
		break;
	case DRIFT_CFG_DURATION:
		rv = drift_cfg_parse_duration(text, &v.u);
		if (rv == 0)
			rv = check_urange(opt, v.u);
		break;
	case DRIFT_CFG_BOOL:
		rv = drift_cfg_parse_bool(text, &v.b);
		break;
	case DRIFT_CFG_ENUM:
		rv = DRIFT_EINVAL;
		for (int i = 0; opt->choices[i] != NULL; i++) {
			if (strcasecmp(text, opt->choices[i]) == 0) {
				v.e = i;
				rv = 0;
				break;
			}
		}
		break;
	case DRIFT_CFG_DOUBLE: {
		char *end;
		errno = 0;
		v.d = strtod(text, &end);
		if (end == text || *end != '\0' ||
		    isspace((unsigned char)*text))
			rv = DRIFT_EINVAL;
		else if (errno == ERANGE || !isfinite(v.d))
			rv = DRIFT_ERANGE;
		else if (opt->dmin < opt->dmax &&
			 (v.d < opt->dmin || v.d > opt->dmax))
			rv = DRIFT_ERANGE;
		break;
	}
	}
	if (rv != 0)
		goto bad;
	*out = v;
	return 0;

bad:;
	char expected[256];
	describe_expected(opt, expected, sizeof(expected));
	const char *quote_hint = "";
	if (!source_fits(opt, src))
		quote_hint = src == SRC_BARE ? " (strings need double quotes)"
					     : " (without quotes)";
	return drift_err_set(err, DRIFT_EINVAL, "%s: expected %s%s, got '%s'",
			     label, expected, quote_hint, text);
}

/* ---- Schema lookups --------------------------------------------------- */

/* Keys compare with '-' and '_' as the same character, so --node.data-dir
 * and node.data_dir name the same option. */
static bool key_eq(const char *a, const char *b, size_t blen)
{
	size_t i = 0;
	for (; i < blen && a[i] != '\0'; i++) {
		char x = a[i] == '-' ? '_' : a[i];
		char y = b[i] == '-' ? '_' : b[i];
		if (x != y)
			return false;
	}
	return i == blen && a[i] == '\0';
}

static const drift_cfg_opt *find_key(const drift_cfg_schema *s, const char *key,
				     size_t len)
{
	for (size_t i = 0; i < s->nopts; i++)
		if (key_eq(s->opts[i].key, key, len))
			return &s->opts[i];
	return NULL;
}

static const drift_cfg_opt *find_flag(const drift_cfg_schema *s,
				      const char *name, size_t len)
{
	for (size_t i = 0; i < s->nopts; i++)
		if (s->opts[i].flag != NULL &&
		    key_eq(s->opts[i].flag, name, len))
			return &s->opts[i];
	return find_key(s, name, len);
}

/* Edit distance, for "did you mean". Strings longer than KEY_MAX count as
 * far from everything. */
static size_t edit_distance(const char *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	if (alen >= KEY_MAX || blen >= KEY_MAX)
		return SIZE_MAX;
	size_t row[KEY_MAX + 1];
	for (size_t j = 0; j <= blen; j++)
		row[j] = j;
	for (size_t i = 1; i <= alen; i++) {
		size_t diag = row[0];
		row[0] = i;
		for (size_t j = 1; j <= blen; j++) {
			size_t up = row[j];
			size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
			size_t best = diag + cost;
			if (row[j] + 1 < best)
				best = row[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			row[j] = best;
			diag = up;
		}
	}
	return row[blen];
}

/* The option key (or flag, when flags is set) closest to name, if close. */
static const char *suggest(const drift_cfg_schema *s, const char *name,
			   size_t len, bool flags)
{
	const char *best = NULL;
	size_t best_d = len / 3 + 1;
	if (best_d > 3)
		best_d = 3;
	for (size_t i = 0; i < s->nopts; i++) {
		const char *cands[2] = {s->opts[i].key,
					flags ? s->opts[i].flag : NULL};
		for (int c = 0; c < 2; c++) {
			if (cands[c] == NULL)
				continue;
			size_t d = edit_distance(name, len, cands[c]);
			if (d <= best_d) {
				best_d = d;
				best = cands[c];
			}
		}
	}
	return best;
}

/* ---- Pending values --------------------------------------------------- */

static void pending_free(const drift_cfg_schema *s, pending *p)
{
	for (size_t i = 0; i < s->nopts; i++)
		if (p[i].set && is_string_type(s->opts[i].type))
			drift_free(p[i].v.s);
	drift_free(p);
}

static void pending_put(const drift_cfg_schema *s, pending *p,
			const drift_cfg_opt *opt, cfg_value v, int line)
{
	size_t i = (size_t)(opt - s->opts);
	if (p[i].set && is_string_type(opt->type))
		drift_free(p[i].v.s);
	p[i].set = true;
	p[i].line = line;
	p[i].v = v;
}

/* Moves every pending value into target; strings change owner. */
static void pending_apply(const drift_cfg_schema *s, pending *p, void *target)
{
	for (size_t i = 0; i < s->nopts; i++) {
		if (!p[i].set)
			continue;
		const drift_cfg_opt *opt = &s->opts[i];
		void *field = (char *)target + opt->offset;
		switch (opt->type) {
		case DRIFT_CFG_STRING:
		case DRIFT_CFG_ADDR:
			drift_free(*(char **)field);
			*(char **)field = p[i].v.s;
			p[i].set = false;
			break;
		case DRIFT_CFG_INT:
			*(int64_t *)field = p[i].v.i;
			break;
		case DRIFT_CFG_SIZE:
		case DRIFT_CFG_DURATION:
			*(uint64_t *)field = p[i].v.u;
			break;
		case DRIFT_CFG_BOOL:
			*(bool *)field = p[i].v.b;
			break;
		case DRIFT_CFG_ENUM:
			*(int *)field = p[i].v.e;
			break;
		case DRIFT_CFG_DOUBLE:
			*(double *)field = p[i].v.d;
			break;
		}
	}
}

static pending *pending_new(const drift_cfg_schema *s, drift_err *err)
{
	pending *p = drift_calloc(s->nopts, sizeof(*p));
	if (p == NULL)
		drift_err_set(err, DRIFT_ENOMEM,
			      "configuration: out of memory");
	return p;
}

/* ---- File parser ------------------------------------------------------ */

typedef struct file_parser {
	const drift_cfg_schema *s;
	pending *p;
	const char *name;
	int line;
	char table[KEY_MAX];
	drift_err *err;
} file_parser;

static bool is_key_char(char c)
{
	return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

static int syntax(file_parser *fp, const char *what)
{
	return drift_err_set(fp->err, DRIFT_ESYNTAX, "%s:%d: %s", fp->name,
			     fp->line, what);
}

/* Reads a quoted string starting at the opening quote p[0] into out (a
 * buffer of cap bytes); *pp ends after the closing quote. */
static int read_string(file_parser *fp, const char **pp, const char *end,
		       char *out, size_t cap)
{
	const char *p = *pp;
	char quote = *p++;
	size_t n = 0;
	while (p < end && *p != quote) {
		char c = *p++;
		if (quote == '"' && c == '\\') {
			if (p >= end)
				break;
			switch (*p++) {
			case '"':
				c = '"';
				break;
			case '\\':
				c = '\\';
				break;
			case 'n':
				c = '\n';
				break;
			case 't':
				c = '\t';
				break;
			default:
				return syntax(fp, "unsupported escape in "
						  "string (use \\\" \\\\ \\n "
						  "or \\t)");
			}
		}
		if (n + 1 >= cap)
			return syntax(fp, "string too long");
		out[n++] = c;
	}
	if (p >= end)
		return syntax(fp, "string is not closed on this line");
	out[n] = '\0';
	*pp = p + 1;
	return 0;
}

/* After a value or a table header only spaces and a comment may follow. */
static int expect_line_end(file_parser *fp, const char *p, const char *end,
			   const char *after)
{
	while (p < end && (*p == ' ' || *p == '\t' || *p == '\r'))
		p++;
	if (p < end && *p != '#') {
		char msg[128];
		snprintf(msg, sizeof(msg), "unexpected text after %s", after);
		return syntax(fp, msg);
	}
	return 0;
}

static int parse_table(file_parser *fp, const char *p, const char *end)
{
	p++; /* '[' */
	if (p < end && *p == '[')
		return syntax(fp, "arrays of tables ([[...]]) are not "
				  "supported");
	const char *start = p;
	while (p < end && is_key_char(*p))
		p++;
	size_t len = (size_t)(p - start);
	if (p >= end || *p != ']' || len == 0)
		return syntax(fp, "expected a table name like [node]");
	if (len >= sizeof(fp->table))
		return syntax(fp, "table name too long");
	memcpy(fp->table, start, len);
	fp->table[len] = '\0';
	return expect_line_end(fp, p + 1, end, "the table name");
}

static int parse_pair(file_parser *fp, const char *p, const char *end)
{
	char key[2 * KEY_MAX];
	char value[4096];
	const char *kstart = p;
	while (p < end && is_key_char(*p))
		p++;
	size_t klen = (size_t)(p - kstart);
	if (klen == 0)
		return syntax(fp, "expected 'key = value', '[table]' or a "
				  "comment");
	if (klen >= KEY_MAX)
		return syntax(fp, "key too long");
	int n = fp->table[0] != '\0'
			? snprintf(key, sizeof(key), "%s.%.*s", fp->table,
				   (int)klen, kstart)
			: snprintf(key, sizeof(key), "%.*s", (int)klen, kstart);
	size_t keylen = (size_t)n;

	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	if (p >= end || *p != '=')
		return syntax(fp, "expected '=' after the key");
	p++;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;

	enum source src;
	int rv;
	if (p < end && (*p == '"' || *p == '\'')) {
		rv = read_string(fp, &p, end, value, sizeof(value));
		if (rv != 0)
			return rv;
		src = SRC_QUOTED;
	} else {
		const char *vstart = p;
		while (p < end && *p != ' ' && *p != '\t' && *p != '#' &&
		       *p != '\r')
			p++;
		size_t vlen = (size_t)(p - vstart);
		if (vlen == 0)
			return syntax(fp, "expected a value after '='");
		if (vlen >= sizeof(value))
			return syntax(fp, "value too long");
		memcpy(value, vstart, vlen);
		value[vlen] = '\0';
		src = SRC_BARE;
	}
	rv = expect_line_end(fp, p, end, "the value");
	if (rv != 0)
		return rv;

	const drift_cfg_opt *opt = find_key(fp->s, key, keylen);
	if (opt == NULL) {
		const char *hint = suggest(fp->s, key, keylen, false);
		if (hint != NULL)
			return drift_err_set(fp->err, DRIFT_EINVAL,
					     "%s:%d: unknown key '%s' (did you "
					     "mean '%s'?)",
					     fp->name, fp->line, key, hint);
		return drift_err_set(fp->err, DRIFT_EINVAL,
				     "%s:%d: unknown key '%s'", fp->name,
				     fp->line, key);
	}
	size_t idx = (size_t)(opt - fp->s->opts);
	if (fp->p[idx].set && fp->p[idx].line > 0)
		return drift_err_set(fp->err, DRIFT_EINVAL,
				     "%s:%d: key '%s' is already set on line "
				     "%d",
				     fp->name, fp->line, opt->key,
				     fp->p[idx].line);

	char label[400];
	snprintf(label, sizeof(label), "%s:%d: %s", fp->name, fp->line,
		 opt->key);
	cfg_value v;
	rv = convert(opt, value, src, &v, label, fp->err);
	if (rv != 0)
		return rv;
	pending_put(fp->s, fp->p, opt, v, fp->line);
	return 0;
}

static int parse_buffer(const drift_cfg_schema *s, pending *p, const char *name,
			const char *data, size_t len, drift_err *err)
{
	file_parser fp = {.s = s, .p = p, .name = name, .err = err};
	const char *end = data + len;
	const char *line = data;
	if (memchr(data, '\0', len) != NULL)
		return drift_err_set(err, DRIFT_ESYNTAX,
				     "%s: contains a NUL byte: not a text file",
				     name);
	while (line < end) {
		const char *eol = memchr(line, '\n', (size_t)(end - line));
		if (eol == NULL)
			eol = end;
		fp.line++;
		const char *q = line;
		while (q < eol && (*q == ' ' || *q == '\t' || *q == '\r'))
			q++;
		int rv = 0;
		if (q < eol && *q == '[')
			rv = parse_table(&fp, q, eol);
		else if (q < eol && *q != '#')
			rv = parse_pair(&fp, q, eol);
		if (rv != 0)
			return rv;
		line = eol + 1;
	}
	return 0;
}

/* ---- Public entry points ---------------------------------------------- */

int drift_cfg_defaults(const drift_cfg_schema *s, void *target, drift_err *err)
{
	pending *p = pending_new(s, err);
	if (p == NULL)
		return DRIFT_ENOMEM;
	for (size_t i = 0; i < s->nopts; i++) {
		const drift_cfg_opt *opt = &s->opts[i];
		cfg_value v = {0};
		if (opt->def != NULL) {
			char label[200];
			snprintf(label, sizeof(label), "default of %s",
				 opt->key);
			int rv = convert(opt, opt->def, SRC_FLAG, &v, label,
					 err);
			if (rv != 0) {
				pending_free(s, p);
				return rv;
			}
		}
		pending_put(s, p, opt, v, 0);
	}
	pending_apply(s, p, target);
	pending_free(s, p);
	return 0;
}

int drift_cfg_load_buffer(const drift_cfg_schema *s, void *target,
			  const char *name, const char *data, size_t len,
			  drift_err *err)
{
	pending *p = pending_new(s, err);
	if (p == NULL)
		return DRIFT_ENOMEM;
	int rv = parse_buffer(s, p, name, data, len, err);
	if (rv == 0)
		pending_apply(s, p, target);
	pending_free(s, p);
	return rv;
}

/* Reads path and parses it into p. */
static int parse_file(const drift_cfg_schema *s, pending *p, const char *path,
		      drift_err *err)
{
	uint8_t *data;
	size_t len;
	int rv = drift_fs_read_file(drift_fs_posix(), path, CFG_FILE_MAX, &data,
				    &len, err);
	if (rv != 0)
		return drift_err_wrap(err, rv, "configuration file");
	rv = parse_buffer(s, p, path, (const char *)data, len, err);
	drift_free(data);
	return rv;
}

int drift_cfg_load_file(const drift_cfg_schema *s, void *target,
			const char *path, drift_err *err)
{
	pending *p = pending_new(s, err);
	if (p == NULL)
		return DRIFT_ENOMEM;
	int rv = parse_file(s, p, path, err);
	if (rv == 0)
		pending_apply(s, p, target);
	pending_free(s, p);
	return rv;
}

int drift_cfg_set(const drift_cfg_schema *s, void *target, const char *key,
		  const char *value, drift_err *err)
{
	const drift_cfg_opt *opt = find_key(s, key, strlen(key));
	if (opt == NULL)
		return drift_err_set(err, DRIFT_EINVAL, "unknown key '%s'",
				     key);
	pending *p = pending_new(s, err);
	if (p == NULL)
		return DRIFT_ENOMEM;
	cfg_value v;
	int rv = convert(opt, value, SRC_FLAG, &v, opt->key, err);
	if (rv == 0) {
		pending_put(s, p, opt, v, 0);
		pending_apply(s, p, target);
	}
	pending_free(s, p);
	return rv;
}

/* Finds "--config FILE" or "--config=FILE" among the flags. */
static int find_config_flag(int argc, char *const argv[], const char **path,
			    drift_err *err)
{
	*path = NULL;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0 || a[0] != '-')
			break;
		if (strcmp(a, "--config") == 0) {
			if (i + 1 >= argc)
				return drift_err_set(err, DRIFT_EINVAL,
						     "--config: missing file "
						     "name");
			*path = argv[++i];
		} else if (strncmp(a, "--config=", 9) == 0) {
			*path = a + 9;
		}
	}
	return 0;
}

static int parse_flags(const drift_cfg_schema *s, pending *p, int argc,
		       char *const argv[], int *first_positional,
		       drift_err *err)
{
	int i = 1;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0) {
			i++;
			break;
		}
		if (a[0] != '-' || a[1] == '\0')
			break;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return DRIFT_CFG_HELP;
		if (a[1] != '-')
			return drift_err_set(err, DRIFT_EINVAL,
					     "unknown flag '%s' (flags are "
					     "--name or --name=value)",
					     a);
		const char *name = a + 2;
		const char *eq = strchr(name, '=');
		size_t nlen = eq != NULL ? (size_t)(eq - name) : strlen(name);
		if (strncmp(name, "config", nlen) == 0 && nlen == 6) {
			if (eq == NULL)
				i++; /* its file was loaded first */
			continue;
		}
		const drift_cfg_opt *opt = find_flag(s, name, nlen);
		if (opt == NULL) {
			const char *hint = suggest(s, name, nlen, true);
			if (hint != NULL)
				return drift_err_set(err, DRIFT_EINVAL,
						     "unknown flag '--%.*s' "
						     "(did you mean '--%s'?)",
						     (int)nlen, name, hint);
			return drift_err_set(err, DRIFT_EINVAL,
					     "unknown flag '--%.*s'", (int)nlen,
					     name);
		}
		const char *value;
		if (eq != NULL)
			value = eq + 1;
		else if (opt->type == DRIFT_CFG_BOOL)
			value = "true";
		else if (i + 1 < argc)
			value = argv[++i];
		else
			return drift_err_set(err, DRIFT_EINVAL,
					     "--%.*s: missing value", (int)nlen,
					     name);
		char label[160];
		snprintf(label, sizeof(label), "--%.*s", (int)nlen, name);
		cfg_value v;
		int rv = convert(opt, value, SRC_FLAG, &v, label, err);
		if (rv != 0)
			return rv;
		pending_put(s, p, opt, v, 0);
	}
	*first_positional = i;
	return 0;
}

int drift_cfg_parse_args(const drift_cfg_schema *s, void *target, int argc,
			 char *const argv[], int *first_positional,
			 drift_err *err)
{
	const char *path;
	int rv = find_config_flag(argc, argv, &path, err);
	if (rv != 0)
		return rv;
	pending *p = pending_new(s, err);
	if (p == NULL)
		return DRIFT_ENOMEM;
	if (path != NULL) {
		rv = parse_file(s, p, path, err);
		if (rv != 0)
			goto out;
	}
	int first = 0;
	rv = parse_flags(s, p, argc, argv, &first, err);
	if (rv != 0)
		goto out;
	pending_apply(s, p, target);
	*first_positional = first;
out:
	pending_free(s, p);
	return rv;
}

static const char *type_meta(enum drift_cfg_type t)
{
	static const char *const names[] = {
		[DRIFT_CFG_STRING] = "TEXT",   [DRIFT_CFG_ADDR] = "HOST:PORT",
		[DRIFT_CFG_INT] = "N",	       [DRIFT_CFG_SIZE] = "SIZE",
		[DRIFT_CFG_DURATION] = "TIME", [DRIFT_CFG_BOOL] = "BOOL",
		[DRIFT_CFG_ENUM] = "NAME",     [DRIFT_CFG_DOUBLE] = "X",
	};
	return names[t];
}

void drift_cfg_usage(const drift_cfg_schema *s, FILE *out)
{
	fprintf(out, "Usage: %s [OPTIONS]\n", s->program);
	if (s->summary != NULL)
		fprintf(out, "%s\n", s->summary);
	fprintf(out, "\nOptions (each is also a key of the config file):\n");
	fprintf(out, "  --config FILE\n      Load FILE first; flags override "
		     "it.\n");
	for (size_t i = 0; i < s->nopts; i++) {
		const drift_cfg_opt *opt = &s->opts[i];
		const char *meta = type_meta(opt->type);
		if (opt->flag != NULL)
			fprintf(out, "  --%s %s, --%s\n", opt->flag, meta,
				opt->key);
		else
			fprintf(out, "  --%s %s\n", opt->key, meta);
		fprintf(out, "      %s", opt->help != NULL ? opt->help : "");
		if (opt->type == DRIFT_CFG_ENUM) {
			char buf[256];
			describe_expected(opt, buf, sizeof(buf));
			fprintf(out, " (%s)", buf);
		}
		if (opt->def != NULL)
			fprintf(out, " [default: %s]", opt->def);
		fputc('\n', out);
	}
	fprintf(out, "  -h, --help\n      Print this help.\n");
}

void drift_cfg_free(const drift_cfg_schema *s, void *target)
{
	for (size_t i = 0; i < s->nopts; i++) {
		if (!is_string_type(s->opts[i].type))
			continue;
		char **field = (char **)((char *)target + s->opts[i].offset);
		drift_free(*field);
		*field = NULL;
	}
}
