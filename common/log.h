/*
 * Logging: levels, timestamps, level-checked macros.
 *
 * A line looks like
 *
 *     2026-11-24T14:03:05.123456Z INFO  node/storage/wal.c:120 wal: opened 3
 * files
 *
 * (the text format) or, with drift_log_set_format(DRIFT_LOG_FORMAT_JSON),
 * one JSON object per line:
 *
 *     {"time":"2026-11-24T14:03:05.123456Z","level":"info",
 *      "message":"wal: opened 3 files","source":"node/storage/wal.c:120",
 *      "node_id":"n1","collection":"docs","shard":2,"request_id":"..."}
 *
 * where node_id, collection, shard and request_id appear only when set
 * (drift_log_set_node_id, drift_log_scope_set). Strings are escaped per
 * RFC 8259 and bytes that are not UTF-8 become U+FFFD, so every line
 * parses; a message cut to fit the line stays inside its string.
 *
 * Lines go to stderr unless a sink is installed. The macros test the level
 * before evaluating their arguments, so a disabled DRIFT_DEBUG costs one
 * relaxed atomic load. Each line is written with a single write(2) call, so
 * lines of concurrent threads never interleave. Lines longer than
 * DRIFT_LOG_LINE_MAX bytes are truncated.
 */
#ifndef DRIFT_COMMON_LOG_H
#define DRIFT_COMMON_LOG_H

#include <stdatomic.h>
#include <stddef.h>

#include "common/clock.h"

enum drift_log_level {
	DRIFT_LOG_TRACE = 0,
	DRIFT_LOG_DEBUG,
	DRIFT_LOG_INFO,
	DRIFT_LOG_WARN,
	DRIFT_LOG_ERROR,
	DRIFT_LOG_OFF, /* as a threshold: log nothing */
};

#define DRIFT_LOG_LINE_MAX 2048

/* The current threshold; read it through drift_log_enabled(). */
extern atomic_int drift_log_threshold;

static inline int drift_log_enabled(int level)
{
	return level >=
	       atomic_load_explicit(&drift_log_threshold, memory_order_relaxed);
}

/* Formats and emits one line. Use the macros below instead. */
void drift_log_emit(int level, const char *file, int line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

#define DRIFT_LOG(level, ...)                                                  \
	do {                                                                   \
		if (drift_log_enabled(level))                                  \
			drift_log_emit((level), __FILE__, __LINE__,            \
				       __VA_ARGS__);                           \
	} while (0)

#define DRIFT_TRACE(...) DRIFT_LOG(DRIFT_LOG_TRACE, __VA_ARGS__)
#define DRIFT_DEBUG(...) DRIFT_LOG(DRIFT_LOG_DEBUG, __VA_ARGS__)
#define DRIFT_INFO(...) DRIFT_LOG(DRIFT_LOG_INFO, __VA_ARGS__)
#define DRIFT_WARN(...) DRIFT_LOG(DRIFT_LOG_WARN, __VA_ARGS__)
#define DRIFT_ERROR(...) DRIFT_LOG(DRIFT_LOG_ERROR, __VA_ARGS__)

/* Sets the threshold: lines below level are dropped. Default: INFO. */
void drift_log_set_level(int level);

/* Parses "trace", "debug", "info", "warn", "error" or "off" (any case) into
 * *level. Returns 0 or DRIFT_EINVAL (then *level is unchanged). */
int drift_log_parse_level(const char *name, int *level);

/* "TRACE", "DEBUG", ... for a level; "?" for anything else. */
const char *drift_log_level_name(int level);

/* A sink receives each finished line (ending in '\n', not NUL-terminated
 * beyond len) and must be thread-safe. NULL restores stderr. */
typedef void (*drift_log_sink)(void *ctx, int level, const char *line,
			       size_t len);
void drift_log_set_sink(drift_log_sink sink, void *ctx);

enum drift_log_format {
	DRIFT_LOG_FORMAT_TEXT = 0,
	DRIFT_LOG_FORMAT_JSON,
};

/* Sets the line format (default text). */
void drift_log_set_format(int format);

/* Parses "text" or "json" into *format. 0 or DRIFT_EINVAL (unchanged). */
int drift_log_parse_format(const char *name, int *format);

/* The node id every JSON line carries (copied; NULL or "" removes it).
 * Setting it once while other threads log is safe (they see no id or the
 * whole one); changing it again while they do is not. */
void drift_log_set_node_id(const char *id);

/* The calling thread's context, added to its JSON lines: collection (NULL:
 * none), shard (negative: none), request id (NULL: none). The strings are
 * borrowed, not copied: they must stay valid until the scope is changed
 * or cleared. Handlers set it when they know the collection and clear it
 * before they return (the gRPC server sets the request id around each
 * handler). */
void drift_log_scope_set(const char *collection, int shard,
			 const char *request_id);
/* Sets only the collection and shard, keeping the request id. */
void drift_log_scope_target(const char *collection, int shard);
void drift_log_scope_clear(void);

/* The clock that stamps lines (NULL: the system clock); for tests. */
void drift_log_set_clock(const drift_clock *clock);

#endif /* DRIFT_COMMON_LOG_H */
