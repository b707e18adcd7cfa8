/* Tests of common/metrics: names and shapes, the text exposition format
 * (HELP, TYPE, escaping, cumulative histograms), collectors, concurrent
 * updates during scrapes, and allocation failures. */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"
#include "common/metrics.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static drift_metrics *reg;

static void setup(void)
{
	cr_assert_eq(drift_metrics_new(&reg), 0);
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_metrics_free(reg);
	reg = NULL;
}

TestSuite(metrics, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static char *render(void)
{
	char *text = NULL;
	size_t len = 0;
	cr_assert_eq(drift_metrics_render(reg, &text, &len), 0);
	cr_assert_eq(strlen(text), len);
	return text;
}

/* The value of the first line that starts with prefix followed by a
 * space; NAN when there is none. */
static double sample(const char *text, const char *prefix)
{
	size_t n = strlen(prefix);
	for (const char *p = text; p != NULL && *p != '\0';) {
		if (strncmp(p, prefix, n) == 0 && p[n] == ' ')
			return strtod(p + n + 1, NULL);
		p = strchr(p, '\n');
		if (p != NULL)
			p++;
	}
	return NAN;
}

static size_t count_of(const char *text, const char *needle)
{
	size_t n = 0;
	for (const char *p = strstr(text, needle); p != NULL;
	     p = strstr(p + 1, needle))
		n++;
	return n;
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(metrics, counter_and_gauge_render_with_help_and_type)
{
	drift_metric_family *f;
	const char *l[] = {"method", "code"};
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_COUNTER,
					  "drift_calls_total", "Calls.", l, 2,
					  NULL, 0, &f),
		     0);
	drift_series *ok, *bad;
	const char *v1[] = {"Search", "OK"}, *v2[] = {"Search", "NOT_FOUND"};
	cr_assert_eq(drift_metrics_series(f, v1, &ok), 0);
	cr_assert_eq(drift_metrics_series(f, v2, &bad), 0);
	drift_series *again;
	cr_assert_eq(drift_metrics_series(f, v1, &again), 0);
	cr_assert_eq(again, ok, "one series per label values");
	drift_metrics_inc(ok);
	drift_metrics_add(ok, 41);
	drift_metrics_inc(bad);
	drift_series *g =
		drift_metrics_simple(reg, DRIFT_METRIC_GAUGE, "drift_in_flight",
				     "In flight.", NULL, 0);
	cr_assert_not_null(g);
	drift_metrics_set(g, 5);
	drift_metrics_gauge_add(g, -1.5);
	cr_assert_float_eq(drift_metrics_value(g), 3.5, 1e-12);
	cr_assert_float_eq(drift_metrics_value(ok), 42, 1e-12);

	char *t = render();
	cr_assert_not_null(strstr(t, "# HELP drift_calls_total Calls.\n"
				     "# TYPE drift_calls_total counter\n"
				     "drift_calls_total{method=\"Search\","
				     "code=\"OK\"} 42\n"
				     "drift_calls_total{method=\"Search\","
				     "code=\"NOT_FOUND\"} 1\n"),
			   "%s", t);
	cr_assert_not_null(strstr(t, "# HELP drift_in_flight In flight.\n"
				     "# TYPE drift_in_flight gauge\n"
				     "drift_in_flight 3.5\n"),
			   "%s", t);
	cr_assert_eq(t[strlen(t) - 1], '\n');
	drift_free(t);
}

DRIFT_TEST(metrics, histogram_buckets_are_cumulative_with_inf_sum_count)
{
	const double b[] = {0.001, 0.01, 0.1};
	drift_metric_family *f;
	const char *l[] = {"method"};
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_HISTOGRAM,
					  "drift_latency_seconds", "Latency.",
					  l, 1, b, 3, &f),
		     0);
	drift_series *h;
	const char *v[] = {"Get"};
	cr_assert_eq(drift_metrics_series(f, v, &h), 0);
	/* le is inclusive: a value equal to a bound lands in that bucket. */
	drift_metrics_observe(h, 0.001);
	drift_metrics_observe(h, 0.005);
	drift_metrics_observe(h, 0.05);
	drift_metrics_observe(h, 0.05);
	drift_metrics_observe(h, 7);
	cr_assert_float_eq(drift_metrics_value(h), 5, 1e-12);

	char *t = render();
	cr_assert_not_null(strstr(t,
				  "# TYPE drift_latency_seconds histogram\n"
				  "drift_latency_seconds_bucket{method=\"Get\","
				  "le=\"0.001\"} 1\n"
				  "drift_latency_seconds_bucket{method=\"Get\","
				  "le=\"0.01\"} 2\n"
				  "drift_latency_seconds_bucket{method=\"Get\","
				  "le=\"0.1\"} 4\n"
				  "drift_latency_seconds_bucket{method=\"Get\","
				  "le=\"+Inf\"} 5\n"),
			   "%s", t);
	cr_assert_float_eq(
		sample(t, "drift_latency_seconds_sum{method=\"Get\"}"), 7.106,
		1e-9);
	cr_assert_float_eq(
		sample(t, "drift_latency_seconds_count{method=\"Get\"}"), 5,
		1e-12);
	drift_free(t);
}

DRIFT_TEST(metrics, label_values_and_help_are_escaped)
{
	drift_metric_family *f;
	const char *l[] = {"collection"};
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_GAUGE, "drift_rows",
					  "Rows \\ of a \"collection\"\nsecond",
					  l, 1, NULL, 0, &f),
		     0);
	drift_series *m;
	const char *v[] = {"a\"b\\c\nd"};
	cr_assert_eq(drift_metrics_series(f, v, &m), 0);
	drift_metrics_set(m, 1);
	char *t = render();
	/* HELP escapes backslash and newline only; label values also the
	 * double quote. */
	cr_assert_not_null(
		strstr(t, "# HELP drift_rows Rows \\\\ of a \"collection\"\\n"
			  "second\n"),
		"%s", t);
	cr_assert_not_null(
		strstr(t, "drift_rows{collection=\"a\\\"b\\\\c\\nd\"} 1\n"),
		"%s", t);
	drift_free(t);
}

DRIFT_TEST(metrics, bad_names_and_shapes_are_refused)
{
	drift_metric_family *f = NULL;
	const double b[] = {1, 2}, unsorted[] = {2, 1};
	const char *le[] = {"le"}, *dunder[] = {"__x"}, *dup[] = {"a", "a"},
		   *bad[] = {"9a"};
	const struct {
		enum drift_metric_type type;
		const char *name;
		const char *const *labels;
		size_t nlabels;
		const double *bounds;
		size_t nbounds;
	} cases[] = {
		{DRIFT_METRIC_GAUGE, "other_prefix", NULL, 0, NULL, 0},
		{DRIFT_METRIC_GAUGE, "drift_bad-name", NULL, 0, NULL, 0},
		{DRIFT_METRIC_GAUGE, "", NULL, 0, NULL, 0},
		{DRIFT_METRIC_COUNTER, "drift_no_suffix", NULL, 0, NULL, 0},
		{DRIFT_METRIC_GAUGE, "drift_g", le, 1, NULL, 0},
		{DRIFT_METRIC_GAUGE, "drift_g", dunder, 1, NULL, 0},
		{DRIFT_METRIC_GAUGE, "drift_g", dup, 2, NULL, 0},
		{DRIFT_METRIC_GAUGE, "drift_g", bad, 1, NULL, 0},
		{DRIFT_METRIC_GAUGE, "drift_g", NULL, 0, b, 2},
		{DRIFT_METRIC_HISTOGRAM, "drift_h", NULL, 0, NULL, 0},
		{DRIFT_METRIC_HISTOGRAM, "drift_h", NULL, 0, unsorted, 2},
	};
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		cr_assert_eq(drift_metrics_family(
				     reg, cases[i].type, cases[i].name, "h",
				     cases[i].labels, cases[i].nlabels,
				     cases[i].bounds, cases[i].nbounds, &f),
			     DRIFT_EINVAL, "case %zu", i);
	cr_assert_null(f, "no output on error");

	drift_metric_family *g1, *g2;
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_GAUGE, "drift_g",
					  "h", NULL, 0, NULL, 0, &g1),
		     0);
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_GAUGE, "drift_g",
					  "h", NULL, 0, NULL, 0, &g2),
		     0);
	cr_assert_eq(g1, g2, "the same shape gives the same family");
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_HISTOGRAM,
					  "drift_g", "h", NULL, 0, b, 2, &g2),
		     DRIFT_EEXIST);
	const char *one[] = {"x"};
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_GAUGE, "drift_g",
					  "h", one, 1, NULL, 0, &g2),
		     DRIFT_EEXIST);
}

DRIFT_TEST(metrics, empty_families_are_not_rendered)
{
	drift_metric_family *f;
	const char *l[] = {"x"};
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_GAUGE,
					  "drift_unused", "Unused.", l, 1, NULL,
					  0, &f),
		     0);
	char *t = render();
	cr_assert_null(strstr(t, "drift_unused"), "%s", t);
	drift_free(t);
}

struct coll_ctx {
	int runs;
	double value;
};

static void collector(drift_metrics_out *o, void *arg)
{
	struct coll_ctx *c = arg;
	c->runs++;
	const char *l[] = {"collection", "shard"};
	const char *a[] = {"docs", "0"}, *b[] = {"docs", "1"};
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "drift_shard_rows", "Rows.",
			   l, a, 2, c->value);
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "drift_other", "Other.", NULL,
			   NULL, 0, 1);
	/* Same family again after another: still one HELP/TYPE group. */
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "drift_shard_rows", "Rows.",
			   l, b, 2, c->value + 1);
	/* Bad ones are dropped and counted. */
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "bad name", "x", NULL, NULL,
			   0, 1);
	const char *le[] = {"le"};
	drift_metrics_emit(o, DRIFT_METRIC_GAUGE, "drift_x", "x", le, a, 1, 1);
	drift_metrics_emit(o, DRIFT_METRIC_COUNTER, "drift_other", "x", NULL,
			   NULL, 0, 1);
}

DRIFT_TEST(metrics, collector_samples_group_under_one_help)
{
	struct coll_ctx c = {0, 10};
	cr_assert_eq(drift_metrics_add_collector(reg, collector, &c), 0);
	char *t = render();
	cr_assert_eq(c.runs, 1);
	cr_assert_eq(count_of(t, "# HELP drift_shard_rows "), 1, "%s", t);
	cr_assert_eq(count_of(t, "# TYPE drift_shard_rows "), 1, "%s", t);
	cr_assert_not_null(
		strstr(t, "# TYPE drift_shard_rows gauge\n"
			  "drift_shard_rows{collection=\"docs\",shard=\"0\"} "
			  "10\n"
			  "drift_shard_rows{collection=\"docs\",shard=\"1\"} "
			  "11\n"),
		"%s", t);
	cr_assert_null(strstr(t, "drift_x"), "%s", t);
	cr_assert_eq(count_of(t, "# TYPE drift_other gauge"), 1, "%s", t);
	drift_free(t);
	/* The drop counter is a registry family, rendered before the
	 * collectors run: the next scrape shows the first one's drops. */
	t = render();
	cr_assert_float_eq(sample(t, "drift_metrics_dropped_samples_total"), 3,
			   1e-12, "%s", t);
	drift_free(t);
	drift_metrics_remove_collector(reg, collector, &c);
	t = render();
	cr_assert_eq(c.runs, 2);
	cr_assert_null(strstr(t, "drift_shard_rows"));
	drift_free(t);
}

#define THREADS 4
#define INCS 20000

static drift_series *shared_counter, *shared_hist;

static void *bump(void *arg)
{
	(void)arg;
	for (int i = 0; i < INCS; i++) {
		drift_metrics_inc(shared_counter);
		drift_metrics_observe(shared_hist, (i % 100) * 1e-4);
	}
	return NULL;
}

/* Updates from many threads are all counted, and scrapes running at the
 * same time always see cumulative buckets and _count == +Inf. */
DRIFT_TEST(metrics, concurrent_updates_during_scrapes)
{
	shared_counter =
		drift_metrics_simple(reg, DRIFT_METRIC_COUNTER,
				     "drift_bumps_total", "Bumps.", NULL, 0);
	shared_hist = drift_metrics_simple(
		reg, DRIFT_METRIC_HISTOGRAM, "drift_bump_seconds", "Bumps.",
		drift_metrics_latency_bounds, drift_metrics_latency_nbounds);
	cr_assert_not_null(shared_counter);
	cr_assert_not_null(shared_hist);
	pthread_t t[THREADS];
	for (int i = 0; i < THREADS; i++)
		pthread_create(&t[i], NULL, bump, NULL);
	for (int s = 0; s < 20; s++) {
		char *txt = render();
		double prev = -1;
		for (const char *p = strstr(txt, "drift_bump_seconds_bucket");
		     p != NULL;
		     p = strstr(p + 1, "drift_bump_seconds_bucket")) {
			double v = strtod(strchr(p, ' ') + 1, NULL);
			cr_assert_geq(v, prev, "cumulative buckets");
			prev = v;
		}
		cr_assert_float_eq(sample(txt, "drift_bump_seconds_count"),
				   prev, 1e-12, "_count is the +Inf bucket");
		drift_free(txt);
	}
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	cr_assert_float_eq(drift_metrics_value(shared_counter), THREADS * INCS,
			   1e-9);
	cr_assert_float_eq(drift_metrics_value(shared_hist), THREADS * INCS,
			   1e-9);
}

/* Every allocation of a render may fail: the call says DRIFT_ENOMEM and
 * leaks nothing (the ASan build checks), and a later render works. */
DRIFT_TEST(metrics, render_survives_each_failed_allocation)
{
	struct coll_ctx c = {0, 1};
	cr_assert_eq(drift_metrics_add_collector(reg, collector, &c), 0);
	drift_series *h = drift_metrics_simple(
		reg, DRIFT_METRIC_HISTOGRAM, "drift_h_seconds", "H.",
		drift_metrics_latency_bounds, drift_metrics_latency_nbounds);
	drift_metrics_observe(h, 0.5);
	int failures = 0;
	for (long nth = 1; nth < 200; nth++) {
		drift_failalloc_arm(nth, 0);
		char *text = NULL;
		size_t len;
		int rv = drift_metrics_render(reg, &text, &len);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			drift_free(text);
			break;
		}
		failures++;
		if (rv == 0)
			drift_free(text); /* a failure it could absorb */
		else
			cr_assert_eq(rv, DRIFT_ENOMEM);
	}
	cr_assert_gt(failures, 0);
	char *t = render();
	cr_assert_not_null(strstr(t, "drift_h_seconds_count 1\n"), "%s", t);
	drift_free(t);
}

/* Registration under failing allocations: an error and nothing half-made
 * (asking again later works). */
DRIFT_TEST(metrics, registration_survives_each_failed_allocation)
{
	const char *l[] = {"a", "b"};
	const char *v[] = {"x", "y"};
	for (long nth = 1; nth < 50; nth++) {
		drift_failalloc_arm(nth, 0);
		drift_metric_family *f;
		drift_series *m = NULL;
		int rv = drift_metrics_family(
			reg, DRIFT_METRIC_HISTOGRAM, "drift_r_seconds", "R.", l,
			2, drift_metrics_latency_bounds,
			drift_metrics_latency_nbounds, &f);
		if (rv == 0)
			rv = drift_metrics_series(f, v, &m);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			break;
		}
		cr_assert(rv == 0 || rv == DRIFT_ENOMEM);
	}
	drift_metric_family *f;
	drift_series *m;
	cr_assert_eq(drift_metrics_family(reg, DRIFT_METRIC_HISTOGRAM,
					  "drift_r_seconds", "R.", l, 2,
					  drift_metrics_latency_bounds,
					  drift_metrics_latency_nbounds, &f),
		     0);
	cr_assert_eq(drift_metrics_series(f, v, &m), 0);
	drift_metrics_observe(m, 1);
	char *t = render();
	cr_assert_eq(count_of(t, "# TYPE drift_r_seconds histogram"), 1);
	cr_assert_not_null(
		strstr(t, "drift_r_seconds_count{a=\"x\",b=\"y\"} 1\n"), "%s",
		t);
	drift_free(t);
}
