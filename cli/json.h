/*
 * A small JSON writer for drift-cli's --output json: one document per
 * command, written as it is built (no tree in memory).
 *
 * The writer tracks nesting and puts the commas; callers say what comes
 * next. Strings are escaped per RFC 8259 (", \, control characters as
 * \uXXXX; bytes >= 0x80 pass through, so UTF-8 stays UTF-8). Floats use
 * %.9g, enough to give back the same float32; NaN and infinities, which
 * JSON cannot hold, are written as null. uint64 values are written in full
 * (readers that keep numbers as doubles lose precision above 2^53: the
 * docs say so). A drift_json is a plain value on the caller's stack.
 */
#ifndef DRIFT_CLI_JSON_H
#define DRIFT_CLI_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define DRIFT_JSON_MAX_DEPTH 16

typedef struct drift_json {
	FILE *out;
	int depth;
	bool need_comma[DRIFT_JSON_MAX_DEPTH + 1];
	bool after_key; /* a key was written: the value needs no comma */
} drift_json;

void drift_json_init(drift_json *j, FILE *out);

void drift_json_obj_begin(drift_json *j);
void drift_json_obj_end(drift_json *j);
void drift_json_arr_begin(drift_json *j);
void drift_json_arr_end(drift_json *j);

/* The key of the next value in an object. */
void drift_json_key(drift_json *j, const char *key);

void drift_json_str(drift_json *j, const char *s);
void drift_json_u64(drift_json *j, uint64_t v);
void drift_json_i64(drift_json *j, int64_t v);
void drift_json_f64(drift_json *j, double v);
void drift_json_bool(drift_json *j, bool v);
void drift_json_null(drift_json *j);

/* Ends the document with a newline and flushes. */
void drift_json_done(drift_json *j);

#endif /* DRIFT_CLI_JSON_H */
