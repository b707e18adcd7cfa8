#include "cli/json.h"

#include <assert.h>
#include <inttypes.h>
#include <math.h>

void drift_json_init(drift_json *j, FILE *out)
{
	j->out = out;
	j->depth = 0;
	j->need_comma[0] = false;
	j->after_key = false;
}

/* Puts the comma a new value or key needs. */
static void sep(drift_json *j)
{
	if (j->after_key) {
		j->after_key = false;
		return;
	}
	if (j->need_comma[j->depth])
		fputc(',', j->out);
	j->need_comma[j->depth] = true;
}

static void open_(drift_json *j, int c)
{
	sep(j);
	fputc(c, j->out);
	assert(j->depth < DRIFT_JSON_MAX_DEPTH);
	j->depth++;
	j->need_comma[j->depth] = false;
}

static void close_(drift_json *j, int c)
{
	assert(j->depth > 0);
	j->depth--;
	fputc(c, j->out);
}

void drift_json_obj_begin(drift_json *j)
{
	open_(j, '{');
}

void drift_json_obj_end(drift_json *j)
{
	close_(j, '}');
}

void drift_json_arr_begin(drift_json *j)
{
	open_(j, '[');
}

void drift_json_arr_end(drift_json *j)
{
	close_(j, ']');
}

static void put_string(FILE *out, const char *s)
{
	fputc('"', out);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		switch (*p) {
		case '"':
			fputs("\\\"", out);
			break;
		case '\\':
			fputs("\\\\", out);
			break;
		case '\n':
			fputs("\\n", out);
			break;
		case '\t':
			fputs("\\t", out);
			break;
		case '\r':
			fputs("\\r", out);
			break;
		default:
			if (*p < 0x20)
				fprintf(out, "\\u%04x", *p);
			else
				fputc(*p, out);
		}
	}
	fputc('"', out);
}

void drift_json_key(drift_json *j, const char *key)
{
	sep(j);
	put_string(j->out, key);
	fputc(':', j->out);
	j->after_key = true;
}

void drift_json_str(drift_json *j, const char *s)
{
	sep(j);
	put_string(j->out, s != NULL ? s : "");
}

void drift_json_u64(drift_json *j, uint64_t v)
{
	sep(j);
	fprintf(j->out, "%" PRIu64, v);
}

void drift_json_i64(drift_json *j, int64_t v)
{
	sep(j);
	fprintf(j->out, "%" PRId64, v);
}

void drift_json_f64(drift_json *j, double v)
{
	sep(j);
	if (isfinite(v))
		fprintf(j->out, "%.9g", v);
	else
		fputs("null", j->out);
}

void drift_json_bool(drift_json *j, bool v)
{
	sep(j);
	fputs(v ? "true" : "false", j->out);
}

void drift_json_null(drift_json *j)
{
	sep(j);
	fputs("null", j->out);
}

void drift_json_done(drift_json *j)
{
	assert(j->depth == 0);
	fputc('\n', j->out);
	fflush(j->out);
}
