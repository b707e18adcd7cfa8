/* Tests of common/log: filtering, the line format, sinks and whole lines
 * under concurrency. */
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"
#include "common/log.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

#define CAPTURE_MAX 8192

static char captured[CAPTURE_MAX];
static size_t captured_len;
static int captured_lines;
static int last_level;
static pthread_mutex_t capture_lock = PTHREAD_MUTEX_INITIALIZER;

static void capture(void *ctx, int level, const char *line, size_t len)
{
	(void)ctx;
	pthread_mutex_lock(&capture_lock);
	if (captured_len + len < CAPTURE_MAX) {
		memcpy(captured + captured_len, line, len);
		captured_len += len;
		captured[captured_len] = '\0';
	}
	captured_lines++;
	last_level = level;
	pthread_mutex_unlock(&capture_lock);
}

static drift_manual_clock mclock;

static void setup(void)
{
	captured_len = 0;
	captured[0] = '\0';
	captured_lines = 0;
	drift_manual_clock_init(&mclock,
				1795530245 * DRIFT_NS_PER_S + 123456789);
	drift_log_set_clock(&mclock.clock);
	drift_log_set_sink(capture, NULL);
	drift_log_set_level(DRIFT_LOG_INFO);
}

static void teardown(void)
{
	drift_log_set_sink(NULL, NULL);
	drift_log_set_clock(NULL);
	drift_log_set_level(DRIFT_LOG_INFO);
	drift_log_set_format(DRIFT_LOG_FORMAT_TEXT);
	drift_log_set_node_id(NULL);
	drift_log_scope_clear();
}

TestSuite(log, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static int evaluated;

static int side_effect(void)
{
	return ++evaluated;
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(log, line_format)
{
	int line = __LINE__ + 1;
	DRIFT_INFO("opened %d files", 3);
	char want[256];
	snprintf(want, sizeof(want),
		 "2026-11-24T14:24:05.123456Z INFO  %s:%d opened 3 files\n",
		 __FILE__, line);
	cr_assert_str_eq(captured, want);
	cr_assert_eq(last_level, DRIFT_LOG_INFO);
}

DRIFT_TEST(log, threshold_filters_and_skips_arguments)
{
	evaluated = 0;
	DRIFT_DEBUG("hidden %d", side_effect());
	DRIFT_TRACE("hidden %d", side_effect());
	cr_assert_eq(captured_lines, 0);
	cr_assert_eq(evaluated, 0,
		     "arguments of a disabled line are not "
		     "evaluated");
	DRIFT_WARN("shown %d", side_effect());
	DRIFT_ERROR("shown");
	cr_assert_eq(captured_lines, 2);
	cr_assert_eq(evaluated, 1);

	drift_log_set_level(DRIFT_LOG_TRACE);
	DRIFT_TRACE("now shown");
	cr_assert_eq(captured_lines, 3);
	drift_log_set_level(DRIFT_LOG_OFF);
	DRIFT_ERROR("never");
	cr_assert_eq(captured_lines, 3);
	cr_assert_not(drift_log_enabled(DRIFT_LOG_ERROR));
}

DRIFT_TEST(log, long_lines_are_cut_with_a_newline)
{
	char big[3 * DRIFT_LOG_LINE_MAX];
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	DRIFT_ERROR("%s", big);
	cr_assert_eq(captured_len, DRIFT_LOG_LINE_MAX);
	cr_assert_eq(captured[captured_len - 1], '\n');
	cr_assert_eq(strncmp(captured + captured_len - 4, "...\n", 4), 0);
}

DRIFT_TEST(log, parse_level_names)
{
	int level = -1;
	cr_assert_eq(drift_log_parse_level("debug", &level), 0);
	cr_assert_eq(level, DRIFT_LOG_DEBUG);
	cr_assert_eq(drift_log_parse_level("WARNING", &level), 0);
	cr_assert_eq(level, DRIFT_LOG_WARN);
	cr_assert_eq(drift_log_parse_level("Off", &level), 0);
	cr_assert_eq(level, DRIFT_LOG_OFF);
	cr_assert_eq(drift_log_parse_level("loud", &level), DRIFT_EINVAL);
	cr_assert_eq(level, DRIFT_LOG_OFF, "unchanged on error");
	cr_assert_str_eq(drift_log_level_name(DRIFT_LOG_ERROR), "ERROR");
	cr_assert_str_eq(drift_log_level_name(99), "?");
}

#define THREADS 4
#define LINES_PER_THREAD 200

static void *log_many(void *arg)
{
	long id = (long)arg;
	for (int i = 0; i < LINES_PER_THREAD; i++)
		DRIFT_INFO("thread %ld line %d %s", id, i,
			   "padding-padding-padding-padding-padding");
	return NULL;
}

/* Lines from many threads to stderr arrive whole: one write(2) each. */
DRIFT_TEST(log, concurrent_lines_stay_whole_on_stderr)
{
	drift_log_set_sink(NULL, NULL);
	FILE *tmp = tmpfile();
	cr_assert_not_null(tmp);
	int saved = dup(STDERR_FILENO);
	dup2(fileno(tmp), STDERR_FILENO);

	pthread_t t[THREADS];
	for (long i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, log_many, (void *)i);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	dup2(saved, STDERR_FILENO);
	close(saved);

	rewind(tmp);
	char line[512];
	int n = 0;
	while (fgets(line, sizeof(line), tmp) != NULL) {
		long id;
		int i;
		char pad[64];
		char *msg = strstr(line, " thread ");
		cr_assert_not_null(msg, "malformed line: %s", line);
		cr_assert_eq(
			sscanf(msg, " thread %ld line %d %63s", &id, &i, pad),
			3, "malformed line: %s", line);
		cr_assert_str_eq(pad,
				 "padding-padding-padding-padding-padding");
		cr_assert_eq(
			strncmp(line, "2026-11-24T14:24:05.123456Z INFO ", 33),
			0, "line starts with its stamp: %s", line);
		n++;
	}
	fclose(tmp);
	cr_assert_eq(n, THREADS * LINES_PER_THREAD);
}

/* ---- JSON lines ------------------------------------------------------- */

DRIFT_TEST(log, json_line_format)
{
	drift_log_set_format(DRIFT_LOG_FORMAT_JSON);
	int line = __LINE__ + 1;
	DRIFT_WARN("opened %d files", 3);
	char want[512];
	snprintf(want, sizeof(want),
		 "{\"time\":\"2026-11-24T14:24:05.123456Z\",\"level\":\"warn\","
		 "\"message\":\"opened 3 files\",\"source\":\"%s:%d\"}\n",
		 __FILE__, line);
	cr_assert_str_eq(captured, want);
}

DRIFT_TEST(log, json_carries_node_collection_shard_and_request)
{
	drift_log_set_format(DRIFT_LOG_FORMAT_JSON);
	drift_log_set_node_id("node-0");
	drift_log_scope_set("docs", 3, "req-7");
	DRIFT_INFO("x");
	cr_assert_not_null(strstr(captured, ",\"node_id\":\"node-0\","
					    "\"collection\":\"docs\","
					    "\"request_id\":\"req-7\","
					    "\"shard\":3}\n"),
			   "%s", captured);
	/* The target changes, the request id stays. */
	drift_log_scope_target("other", -1);
	captured_len = 0;
	DRIFT_INFO("y");
	cr_assert_not_null(strstr(captured, "\"collection\":\"other\","
					    "\"request_id\":\"req-7\"}\n"),
			   "%s", captured);
	drift_log_scope_clear();
	drift_log_set_node_id(NULL);
	captured_len = 0;
	DRIFT_INFO("z");
	cr_assert_null(strstr(captured, "node_id"), "%s", captured);
	cr_assert_null(strstr(captured, "request_id"), "%s", captured);
	cr_assert_null(strstr(captured, "shard"), "%s", captured);
}

DRIFT_TEST(log, json_escapes_quotes_controls_and_bad_utf8)
{
	drift_log_set_format(DRIFT_LOG_FORMAT_JSON);
	/* A quote, a backslash, a newline, a tab, a control byte, valid
	 * UTF-8 (e-acute, euro sign), then a lone continuation byte, an
	 * overlong NUL and a surrogate, which are not UTF-8. */
	DRIFT_INFO("a\"b\\c\nd\te\x01 \xc3\xa9\xe2\x82\xac \x80 \xc0\x80 "
		   "\xed\xa0\x80");
	cr_assert_not_null(strstr(captured,
				  "\"message\":\"a\\\"b\\\\c\\nd\\te\\u0001 "
				  "\xc3\xa9\xe2\x82\xac \xef\xbf\xbd "
				  "\xef\xbf\xbd\xef\xbf\xbd "
				  "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\""),
			   "%s", captured);
}

DRIFT_TEST(log, json_long_message_is_cut_inside_its_string)
{
	drift_log_set_format(DRIFT_LOG_FORMAT_JSON);
	drift_log_scope_set("docs", 1, "r");
	char big[3 * DRIFT_LOG_LINE_MAX];
	/* Quotes expand to two bytes: a cut must not split an escape. */
	for (size_t i = 0; i < sizeof(big) - 1; i++)
		big[i] = i % 2 ? '"' : 'x';
	big[sizeof(big) - 1] = '\0';
	DRIFT_ERROR("%s", big);
	cr_assert_leq(captured_len, DRIFT_LOG_LINE_MAX);
	cr_assert_eq(captured_lines, 1);
	const char *tail = ",\"collection\":\"docs\",\"request_id\":\"r\","
			   "\"shard\":1}\n";
	cr_assert_not_null(strstr(captured, tail), "the fields survive");
	/* Inside the message every quote is escaped. */
	const char *m = strstr(captured, "\"message\":\"") + 11;
	const char *end = strstr(m, "\",\"source\"");
	cr_assert_not_null(end);
	for (const char *p = m; p < end; p++)
		if (*p == '"')
			cr_assert_eq(p[-1], '\\', "unescaped quote at %td",
				     p - m);
}

DRIFT_TEST(log, parse_format_names)
{
	int f = -1;
	cr_assert_eq(drift_log_parse_format("json", &f), 0);
	cr_assert_eq(f, DRIFT_LOG_FORMAT_JSON);
	cr_assert_eq(drift_log_parse_format("TEXT", &f), 0);
	cr_assert_eq(f, DRIFT_LOG_FORMAT_TEXT);
	cr_assert_eq(drift_log_parse_format("xml", &f), DRIFT_EINVAL);
	cr_assert_eq(f, DRIFT_LOG_FORMAT_TEXT, "unchanged on error");
}
