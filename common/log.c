#include "common/log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/err.h"

atomic_int drift_log_threshold = DRIFT_LOG_INFO;

/* Sink and its context are swapped together under this pair: tests install a
 * sink before starting threads, so a plain pair of atomics is enough. */
static _Atomic(drift_log_sink) log_sink;
static _Atomic(void *) log_sink_ctx;
static _Atomic(const drift_clock *) log_clock;

static const char *const level_names[] = {
	"TRACE", "DEBUG", "INFO", "WARN", "ERROR", "OFF",
};

void drift_log_set_level(int level)
{
	if (level < DRIFT_LOG_TRACE)
		level = DRIFT_LOG_TRACE;
	if (level > DRIFT_LOG_OFF)
		level = DRIFT_LOG_OFF;
	atomic_store(&drift_log_threshold, level);
}

int drift_log_parse_level(const char *name, int *level)
{
	for (int i = DRIFT_LOG_TRACE; i <= DRIFT_LOG_OFF; i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*level = i;
			return 0;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*level = DRIFT_LOG_WARN;
		return 0;
	}
	return DRIFT_EINVAL;
}

const char *drift_log_level_name(int level)
{
	if (level < DRIFT_LOG_TRACE || level > DRIFT_LOG_OFF)
		return "?";
	return level_names[level];
}

void drift_log_set_sink(drift_log_sink sink, void *ctx)
{
	atomic_store(&log_sink_ctx, ctx);
	atomic_store(&log_sink, sink);
}

void drift_log_set_clock(const drift_clock *clock)
{
	atomic_store(&log_clock, clock);
}

/* Writes "YYYY-MM-DDTHH:MM:SS.uuuuuuZ" for wall time ns into out. */
static size_t format_time(char *out, size_t cap, uint64_t ns)
{
	time_t secs = (time_t)(ns / DRIFT_NS_PER_S);
	unsigned usec = (unsigned)((ns % DRIFT_NS_PER_S) / DRIFT_NS_PER_US);
	struct tm tm;
	gmtime_r(&secs, &tm);
	size_t n = strftime(out, cap, "%Y-%m-%dT%H:%M:%S", &tm);
	int m = snprintf(out + n, cap - n, ".%06uZ", usec);
	return n + (m > 0 ? (size_t)m : 0);
}

/* Appends s (n bytes) to out[*pos..cap) as the inside of a JSON string:
 * quote, backslash and control characters escaped, bytes that are not
 * UTF-8 replaced by U+FFFD. Stops before an escape that would not fit, so
 * the result is always a whole string body. */
static void json_escape(char *out, size_t cap, size_t *pos, const char *s,
			size_t n)
{
	size_t p = *pos;
	for (size_t i = 0; i < n;) {
		unsigned char c = (unsigned char)s[i];
		char tmp[8];
		const char *w = tmp;
		size_t wl, step = 1;
		if (c == '"' || c == '\\') {
			tmp[0] = '\\';
			tmp[1] = (char)c;
			wl = 2;
		} else if (c == '\n' || c == '\t' || c == '\r') {
			tmp[0] = '\\';
			tmp[1] = c == '\n' ? 'n' : c == '\t' ? 't' : 'r';
			wl = 2;
		} else if (c < 0x20 || c == 0x7f) {
			snprintf(tmp, sizeof(tmp), "\\u%04x", c);
			wl = 6;
		} else if (c < 0x80) {
			tmp[0] = (char)c;
			wl = 1;
		} else {
			/* A well-formed UTF-8 sequence (no overlongs,
			 * surrogates or code points past U+10FFFF) is copied;
			 * anything else is one replacement character. */
			size_t len = c >= 0xf0 ? 4 : c >= 0xe0 ? 3 : 2;
			unsigned lo = 0x80, hi = 0xbf;
			bool ok = c >= 0xc2 && c <= 0xf4 && i + len <= n;
			if (c == 0xe0)
				lo = 0xa0;
			else if (c == 0xed)
				hi = 0x9f;
			else if (c == 0xf0)
				lo = 0x90;
			else if (c == 0xf4)
				hi = 0x8f;
			for (size_t k = 1; ok && k < len; k++) {
				unsigned char d = (unsigned char)s[i + k];
				ok = k == 1 ? (d >= lo && d <= hi)
					    : (d >= 0x80 && d <= 0xbf);
			}
			if (ok) {
				w = s + i;
				wl = len;
				step = len;
			} else {
				w = "\xef\xbf\xbd";
				wl = 3;
			}
		}
		if (p + wl >= cap)
			break;
		memcpy(out + p, w, wl);
		p += wl;
		i += step;
	}
	*pos = p;
}

static atomic_int log_format;
/* The node id: written into the buffer before the pointer is published,
 * so threads already logging see either no id or the whole one. */
static char log_node_id_buf[128];
static _Atomic(const char *) log_node_id;

struct scope {
	const char *collection;
	int shard;
	const char *request_id;
};
static _Thread_local struct scope log_scope = {NULL, -1, NULL};

void drift_log_set_format(int format)
{
	atomic_store(&log_format, format == DRIFT_LOG_FORMAT_JSON
					  ? DRIFT_LOG_FORMAT_JSON
					  : DRIFT_LOG_FORMAT_TEXT);
}

int drift_log_parse_format(const char *name, int *format)
{
	if (strcasecmp(name, "text") == 0)
		*format = DRIFT_LOG_FORMAT_TEXT;
	else if (strcasecmp(name, "json") == 0)
		*format = DRIFT_LOG_FORMAT_JSON;
	else
		return DRIFT_EINVAL;
	return 0;
}

void drift_log_set_node_id(const char *id)
{
	if (id == NULL || id[0] == '\0') {
		atomic_store_explicit(&log_node_id, NULL, memory_order_release);
		return;
	}
	snprintf(log_node_id_buf, sizeof(log_node_id_buf), "%s", id);
	atomic_store_explicit(&log_node_id, log_node_id_buf,
			      memory_order_release);
}

void drift_log_scope_set(const char *collection, int shard,
			 const char *request_id)
{
	log_scope = (struct scope){collection, shard, request_id};
}

void drift_log_scope_target(const char *collection, int shard)
{
	log_scope.collection = collection;
	log_scope.shard = shard;
}

void drift_log_scope_clear(void)
{
	log_scope = (struct scope){NULL, -1, NULL};
}

/* Room kept at the end of a JSON line for the fields after the message:
 * source, node id, collection, shard, request id and the closing brace. */
#define JSON_TAIL_MAX 900

static size_t format_json(char *buf, size_t cap, const char *when, int level,
			  const char *file, int line, const char *msg,
			  size_t mlen)
{
	static const char *const lower[] = {"trace", "debug", "info",
					    "warn",  "error", "off"};
	size_t n = 0;
	int m = snprintf(buf, cap,
			 "{\"time\":\"%s\",\"level\":\"%s\","
			 "\"message\":\"",
			 when,
			 level >= DRIFT_LOG_TRACE && level <= DRIFT_LOG_OFF
				 ? lower[level]
				 : "?");
	n = m > 0 ? (size_t)m : 0;
	json_escape(buf, cap - JSON_TAIL_MAX, &n, msg, mlen);
	char src[300];
	snprintf(src, sizeof(src), "%s:%d", file, line);
	const struct {
		const char *key, *value;
	} fields[] = {
		{"source", src},
		{"node_id",
		 atomic_load_explicit(&log_node_id, memory_order_acquire)},
		{"collection", log_scope.collection},
		{"request_id", log_scope.request_id},
	};
	buf[n++] = '"';
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
		if (fields[i].value == NULL)
			continue;
		m = snprintf(buf + n, cap - n, ",\"%s\":\"", fields[i].key);
		n += m > 0 ? (size_t)m : 0;
		/* Each field gets at most 200 bytes of the tail. */
		size_t lim = n + 200 < cap - 8 ? n + 200 : cap - 8;
		json_escape(buf, lim, &n, fields[i].value,
			    strlen(fields[i].value));
		buf[n++] = '"';
	}
	if (log_scope.shard >= 0) {
		m = snprintf(buf + n, cap - n, ",\"shard\":%d",
			     log_scope.shard);
		n += m > 0 ? (size_t)m : 0;
	}
	buf[n++] = '}';
	buf[n++] = '\n';
	return n;
}

void drift_log_emit(int level, const char *file, int line, const char *fmt, ...)
{
	char buf[DRIFT_LOG_LINE_MAX];
	const drift_clock *clock = atomic_load(&log_clock);
	if (clock == NULL)
		clock = drift_clock_system();

	size_t n;
	if (atomic_load_explicit(&log_format, memory_order_relaxed) ==
	    DRIFT_LOG_FORMAT_JSON) {
		char when[40], msg[DRIFT_LOG_LINE_MAX];
		format_time(when, sizeof(when), drift_clock_wall(clock));
		va_list ap;
		va_start(ap, fmt);
		int m = vsnprintf(msg, sizeof(msg), fmt, ap);
		va_end(ap);
		size_t mlen = m < 0			? 0
			      : (size_t)m < sizeof(msg) ? (size_t)m
							: sizeof(msg) - 1;
		n = format_json(buf, sizeof(buf), when, level, file, line, msg,
				mlen);
		goto emit;
	}
	n = format_time(buf, sizeof(buf), drift_clock_wall(clock));
	int m = snprintf(buf + n, sizeof(buf) - n, " %-5s %s:%d ",
			 drift_log_level_name(level), file, line);
	if (m > 0)
		n += (size_t)m;
	if (n < sizeof(buf) - 1) {
		va_list ap;
		va_start(ap, fmt);
		m = vsnprintf(buf + n, sizeof(buf) - n, fmt, ap);
		va_end(ap);
		if (m > 0)
			n += (size_t)m;
	}
	/* Leave room for the newline; a cut line ends in "...". */
	if (n >= sizeof(buf) - 1) {
		n = sizeof(buf) - 1;
		memcpy(buf + n - 3, "...", 3);
	}
	buf[n++] = '\n';

emit:;
	drift_log_sink sink = atomic_load(&log_sink);
	if (sink != NULL) {
		sink(atomic_load(&log_sink_ctx), level, buf, n);
		return;
	}
	/* stderr: one write per line; a failed log write has nowhere to go. */
	ssize_t w = write(STDERR_FILENO, buf, n);
	(void)w;
}
