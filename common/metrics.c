/*
 * The metrics registry and the text exposition format.
 *
 * Format (Prometheus text exposition 0.0.4): per family one "# HELP name
 * text" (backslash and newline escaped) and one "# TYPE name type", then
 * its samples "name{label="value",...} value", label values escaped
 * (backslash, double quote, newline). A histogram's series render as
 * name_bucket{...,le="bound"} with cumulative counts, the last le="+Inf",
 * then name_sum and name_count (equal to the +Inf bucket).
 */
#include "common/metrics.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"

const double drift_metrics_latency_bounds[] = {
	0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
	0.05,	 0.1,	 0.25,	  0.5,	  1,	 2.5,	 5,	10,
};
const size_t drift_metrics_latency_nbounds =
	sizeof(drift_metrics_latency_bounds) /
	sizeof(drift_metrics_latency_bounds[0]);

struct drift_series {
	_Atomic(drift_series *) next;
	drift_metric_family *fam;
	char *values[DRIFT_METRICS_LABELS_MAX];
	atomic_ullong v;	/* counter: count; gauge: double bits */
	atomic_ullong sum;	/* histogram: double bits */
	atomic_ullong *buckets; /* histogram: nbounds + 1 (the last +Inf) */
};

struct drift_metric_family {
	_Atomic(drift_metric_family *) next;
	drift_metrics *reg;
	enum drift_metric_type type;
	char *name;
	char *help;
	size_t nlabels;
	char *labels[DRIFT_METRICS_LABELS_MAX];
	size_t nbounds;
	double bounds[DRIFT_METRICS_BOUNDS_MAX];
	_Atomic(drift_series *) series;
};

struct collector {
	drift_metrics_collect_fn fn;
	void *ctx;
};

struct drift_metrics {
	pthread_mutex_t mu; /* creators of families and series */
	_Atomic(drift_metric_family *) families;
	pthread_mutex_t collect_mu; /* the collector array and its runs */
	struct collector *collectors;
	size_t ncollectors, capcollectors;
	drift_series *dropped;
};

/* ---- Helpers ---- */

static bool name_ok(const char *s, bool colon)
{
	if (s == NULL || s[0] == '\0')
		return false;
	for (size_t i = 0; s[i] != '\0'; i++) {
		char c = s[i];
		bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			     c == '_' || (colon && c == ':');
		if (!alpha && !(i > 0 && c >= '0' && c <= '9'))
			return false;
	}
	return true;
}

static bool metric_name_ok(const char *s)
{
	return name_ok(s, true) && strncmp(s, "drift_", 6) == 0;
}

static bool label_name_ok(const char *s)
{
	return name_ok(s, false) && strncmp(s, "__", 2) != 0 &&
	       strcmp(s, "le") != 0;
}

static uint64_t dbits(double v)
{
	uint64_t u;
	memcpy(&u, &v, sizeof(u));
	return u;
}

static double bitsd(uint64_t u)
{
	double v;
	memcpy(&v, &u, sizeof(v));
	return v;
}

/* Adds d to the double held in a as bits. */
static void atomic_add_double(atomic_ullong *a, double d)
{
	unsigned long long old = atomic_load_explicit(a, memory_order_relaxed);
	while (!atomic_compare_exchange_weak_explicit(
		a, &old, dbits(bitsd(old) + d), memory_order_relaxed,
		memory_order_relaxed))
		;
}

/* A growable string; on allocation failure it stops growing and says so. */
struct sb {
	char *p;
	size_t len, cap;
	bool oom;
};

static void sb_put(struct sb *b, const char *s, size_t n)
{
	if (b->oom)
		return;
	if (b->len + n + 1 > b->cap) {
		size_t cap = b->cap ? b->cap : 1024;
		while (cap < b->len + n + 1)
			cap *= 2;
		char *p = drift_realloc(b->p, cap);
		if (p == NULL) {
			b->oom = true;
			return;
		}
		b->p = p;
		b->cap = cap;
	}
	memcpy(b->p + b->len, s, n);
	b->len += n;
	b->p[b->len] = '\0';
}

static void sb_str(struct sb *b, const char *s)
{
	sb_put(b, s, strlen(s));
}

static void sb_printf(struct sb *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void sb_printf(struct sb *b, const char *fmt, ...)
{
	char tmp[64];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	if (n > 0)
		sb_put(b, tmp,
		       (size_t)n < sizeof(tmp) ? (size_t)n : sizeof(tmp) - 1);
}

/* A label value: backslash, double quote and newline escaped. HELP text
 * escapes only backslash and newline (quote is false). */
static void sb_escaped(struct sb *b, const char *s, bool quote)
{
	for (; *s != '\0'; s++) {
		if (*s == '\\')
			sb_str(b, "\\\\");
		else if (*s == '\n')
			sb_str(b, "\\n");
		else if (quote && *s == '"')
			sb_str(b, "\\\"");
		else
			sb_put(b, s, 1);
	}
}

/* The shortest decimal that reads back as v; +Inf, -Inf, NaN as the
 * format spells them. */
static void sb_double(struct sb *b, double v)
{
	if (isnan(v)) {
		sb_str(b, "NaN");
		return;
	}
	if (isinf(v)) {
		sb_str(b, v > 0 ? "+Inf" : "-Inf");
		return;
	}
	char tmp[40];
	/* Whole numbers (counts, bytes, most bounds) without an exponent. */
	if (v == floor(v) && fabs(v) < 1e15) {
		snprintf(tmp, sizeof(tmp), "%.0f", v);
		sb_str(b, tmp);
		return;
	}
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (strtod(tmp, NULL) == v)
			break;
	}
	sb_str(b, tmp);
}

/* {a="x",b="y"} with an optional le= label last; nothing without labels. */
static void sb_labels(struct sb *b, const char *const *names,
		      const char *const *values, size_t n, const char *le)
{
	if (n == 0 && le == NULL)
		return;
	sb_put(b, "{", 1);
	for (size_t i = 0; i < n; i++) {
		if (i > 0)
			sb_put(b, ",", 1);
		sb_str(b, names[i]);
		sb_put(b, "=\"", 2);
		sb_escaped(b, values[i], true);
		sb_put(b, "\"", 1);
	}
	if (le != NULL) {
		if (n > 0)
			sb_put(b, ",", 1);
		sb_str(b, "le=\"");
		sb_str(b, le);
		sb_put(b, "\"", 1);
	}
	sb_put(b, "}", 1);
}

/* ---- Registry ---- */

static drift_metrics *default_reg;
static pthread_once_t default_once = PTHREAD_ONCE_INIT;

static void default_init(void)
{
	if (drift_metrics_new(&default_reg) != 0)
		default_reg = NULL;
}

drift_metrics *drift_metrics_default(void)
{
	pthread_once(&default_once, default_init);
	return default_reg;
}

int drift_metrics_new(drift_metrics **out)
{
	drift_metrics *r = drift_calloc(1, sizeof(*r));
	if (r == NULL)
		return DRIFT_ENOMEM;
	pthread_mutex_init(&r->mu, NULL);
	pthread_mutex_init(&r->collect_mu, NULL);
	r->dropped = drift_metrics_simple(
		r, DRIFT_METRIC_COUNTER, "drift_metrics_dropped_samples_total",
		"Collector samples dropped for a bad name or label.", NULL, 0);
	*out = r;
	return 0;
}

static void series_free(drift_series *m)
{
	for (size_t i = 0; i < DRIFT_METRICS_LABELS_MAX; i++)
		drift_free(m->values[i]);
	drift_free(m->buckets);
	drift_free(m);
}

static void family_free(drift_metric_family *f)
{
	drift_series *m = atomic_load(&f->series);
	while (m != NULL) {
		drift_series *next = atomic_load(&m->next);
		series_free(m);
		m = next;
	}
	for (size_t i = 0; i < f->nlabels; i++)
		drift_free(f->labels[i]);
	drift_free(f->name);
	drift_free(f->help);
	drift_free(f);
}

void drift_metrics_free(drift_metrics *r)
{
	if (r == NULL)
		return;
	drift_metric_family *f = atomic_load(&r->families);
	while (f != NULL) {
		drift_metric_family *next = atomic_load(&f->next);
		family_free(f);
		f = next;
	}
	drift_free(r->collectors);
	pthread_mutex_destroy(&r->mu);
	pthread_mutex_destroy(&r->collect_mu);
	drift_free(r);
}

static bool same_shape(const drift_metric_family *f,
		       enum drift_metric_type type, const char *const *labels,
		       size_t nlabels, const double *bounds, size_t nbounds)
{
	if (f->type != type || f->nlabels != nlabels || f->nbounds != nbounds)
		return false;
	for (size_t i = 0; i < nlabels; i++)
		if (strcmp(f->labels[i], labels[i]) != 0)
			return false;
	for (size_t i = 0; i < nbounds; i++)
		if (f->bounds[i] != bounds[i])
			return false;
	return true;
}

static int check_family(enum drift_metric_type type, const char *name,
			const char *const *labels, size_t nlabels,
			const double *bounds, size_t nbounds)
{
	if (!metric_name_ok(name) || nlabels > DRIFT_METRICS_LABELS_MAX ||
	    (nlabels > 0 && labels == NULL))
		return DRIFT_EINVAL;
	if (type != DRIFT_METRIC_COUNTER && type != DRIFT_METRIC_GAUGE &&
	    type != DRIFT_METRIC_HISTOGRAM)
		return DRIFT_EINVAL;
	size_t n = strlen(name);
	if (type == DRIFT_METRIC_COUNTER &&
	    (n < 6 || strcmp(name + n - 6, "_total") != 0))
		return DRIFT_EINVAL;
	for (size_t i = 0; i < nlabels; i++) {
		if (!label_name_ok(labels[i]))
			return DRIFT_EINVAL;
		for (size_t j = 0; j < i; j++)
			if (strcmp(labels[i], labels[j]) == 0)
				return DRIFT_EINVAL;
	}
	if (type != DRIFT_METRIC_HISTOGRAM)
		return nbounds == 0 ? 0 : DRIFT_EINVAL;
	if (nbounds == 0 || nbounds > DRIFT_METRICS_BOUNDS_MAX ||
	    bounds == NULL)
		return DRIFT_EINVAL;
	for (size_t i = 0; i < nbounds; i++) {
		if (!isfinite(bounds[i]) ||
		    (i > 0 && bounds[i] <= bounds[i - 1]))
			return DRIFT_EINVAL;
	}
	return 0;
}

int drift_metrics_family(drift_metrics *r, enum drift_metric_type type,
			 const char *name, const char *help,
			 const char *const *labels, size_t nlabels,
			 const double *bounds, size_t nbounds,
			 drift_metric_family **out)
{
	if (r == NULL)
		return DRIFT_EINVAL;
	int rv = check_family(type, name, labels, nlabels, bounds, nbounds);
	if (rv != 0)
		return rv;
	pthread_mutex_lock(&r->mu);
	drift_metric_family *last = NULL;
	for (drift_metric_family *f = atomic_load(&r->families); f != NULL;
	     f = atomic_load(&f->next)) {
		last = f;
		if (strcmp(f->name, name) != 0)
			continue;
		rv = same_shape(f, type, labels, nlabels, bounds, nbounds)
			     ? 0
			     : DRIFT_EEXIST;
		if (rv == 0)
			*out = f;
		pthread_mutex_unlock(&r->mu);
		return rv;
	}
	rv = DRIFT_ENOMEM;
	drift_metric_family *f = drift_calloc(1, sizeof(*f));
	if (f == NULL)
		goto out;
	f->reg = r;
	f->type = type;
	f->name = drift_strdup(name);
	f->help = drift_strdup(help != NULL ? help : "");
	if (f->name == NULL || f->help == NULL)
		goto fail;
	for (size_t i = 0; i < nlabels; i++) {
		if ((f->labels[i] = drift_strdup(labels[i])) == NULL)
			goto fail;
		f->nlabels = i + 1;
	}
	f->nbounds = nbounds;
	if (nbounds > 0)
		memcpy(f->bounds, bounds, nbounds * sizeof(double));
	/* Published at the tail so renders keep registration order. */
	if (last == NULL)
		atomic_store_explicit(&r->families, f, memory_order_release);
	else
		atomic_store_explicit(&last->next, f, memory_order_release);
	*out = f;
	rv = 0;
	goto out;
fail:
	family_free(f);
out:
	pthread_mutex_unlock(&r->mu);
	return rv;
}

static bool values_match(const drift_series *m, const char *const *values,
			 size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(m->values[i], values[i]) != 0)
			return false;
	return true;
}

int drift_metrics_series(drift_metric_family *f, const char *const *values,
			 drift_series **out)
{
	if (f == NULL || (f->nlabels > 0 && values == NULL))
		return DRIFT_EINVAL;
	for (size_t i = 0; i < f->nlabels; i++)
		if (values[i] == NULL)
			return DRIFT_EINVAL;
	/* Lock-free lookup first: the common case once warmed up. */
	for (drift_series *m =
		     atomic_load_explicit(&f->series, memory_order_acquire);
	     m != NULL;
	     m = atomic_load_explicit(&m->next, memory_order_acquire)) {
		if (values_match(m, values, f->nlabels)) {
			*out = m;
			return 0;
		}
	}
	drift_metrics *r = f->reg;
	pthread_mutex_lock(&r->mu);
	drift_series *last = NULL;
	for (drift_series *m = atomic_load(&f->series); m != NULL;
	     m = atomic_load(&m->next)) {
		last = m;
		if (values_match(m, values, f->nlabels)) {
			pthread_mutex_unlock(&r->mu);
			*out = m;
			return 0;
		}
	}
	int rv = DRIFT_ENOMEM;
	drift_series *m = drift_calloc(1, sizeof(*m));
	if (m == NULL)
		goto out;
	m->fam = f;
	for (size_t i = 0; i < f->nlabels; i++)
		if ((m->values[i] = drift_strdup(values[i])) == NULL)
			goto fail;
	if (f->type == DRIFT_METRIC_HISTOGRAM) {
		m->buckets = drift_calloc(f->nbounds + 1, sizeof(*m->buckets));
		if (m->buckets == NULL)
			goto fail;
	}
	atomic_init(&m->v, f->type == DRIFT_METRIC_GAUGE ? dbits(0.0) : 0);
	atomic_init(&m->sum, dbits(0.0));
	if (last == NULL)
		atomic_store_explicit(&f->series, m, memory_order_release);
	else
		atomic_store_explicit(&last->next, m, memory_order_release);
	*out = m;
	rv = 0;
	goto out;
fail:
	series_free(m);
out:
	pthread_mutex_unlock(&r->mu);
	return rv;
}

drift_series *drift_metrics_simple(drift_metrics *r,
				   enum drift_metric_type type,
				   const char *name, const char *help,
				   const double *bounds, size_t nbounds)
{
	drift_metric_family *f;
	drift_series *m;
	if (drift_metrics_family(r, type, name, help, NULL, 0, bounds, nbounds,
				 &f) != 0 ||
	    drift_metrics_series(f, NULL, &m) != 0)
		return NULL;
	return m;
}

/* ---- Updates ---- */

void drift_metrics_inc(drift_series *m)
{
	drift_metrics_add(m, 1);
}

void drift_metrics_add(drift_series *m, uint64_t n)
{
	if (m == NULL)
		return;
	assert(m->fam->type == DRIFT_METRIC_COUNTER);
	atomic_fetch_add_explicit(&m->v, n, memory_order_relaxed);
}

void drift_metrics_set(drift_series *m, double v)
{
	if (m == NULL)
		return;
	assert(m->fam->type == DRIFT_METRIC_GAUGE);
	atomic_store_explicit(&m->v, dbits(v), memory_order_relaxed);
}

void drift_metrics_gauge_add(drift_series *m, double d)
{
	if (m == NULL)
		return;
	assert(m->fam->type == DRIFT_METRIC_GAUGE);
	atomic_add_double(&m->v, d);
}

void drift_metrics_observe(drift_series *m, double v)
{
	if (m == NULL)
		return;
	assert(m->fam->type == DRIFT_METRIC_HISTOGRAM);
	const drift_metric_family *f = m->fam;
	/* First bound >= v (le is inclusive); NaN lands in +Inf. */
	size_t lo = 0, hi = f->nbounds;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (v <= f->bounds[mid])
			hi = mid;
		else
			lo = mid + 1;
	}
	atomic_fetch_add_explicit(&m->buckets[lo], 1, memory_order_relaxed);
	atomic_add_double(&m->sum, v);
}

static uint64_t hist_count(const drift_series *m)
{
	uint64_t n = 0;
	for (size_t i = 0; i <= m->fam->nbounds; i++)
		n += atomic_load_explicit(&m->buckets[i], memory_order_relaxed);
	return n;
}

double drift_metrics_value(const drift_series *m)
{
	if (m == NULL)
		return 0;
	switch (m->fam->type) {
	case DRIFT_METRIC_COUNTER:
		return (double)atomic_load(&m->v);
	case DRIFT_METRIC_GAUGE:
		return bitsd(atomic_load(&m->v));
	case DRIFT_METRIC_HISTOGRAM:
		return (double)hist_count(m);
	}
	return 0;
}

/* ---- Collectors ---- */

int drift_metrics_add_collector(drift_metrics *r, drift_metrics_collect_fn fn,
				void *ctx)
{
	if (r == NULL || fn == NULL)
		return DRIFT_EINVAL;
	int rv = 0;
	pthread_mutex_lock(&r->collect_mu);
	if (r->ncollectors == r->capcollectors) {
		size_t cap = r->capcollectors ? 2 * r->capcollectors : 8;
		struct collector *c =
			drift_realloc(r->collectors, cap * sizeof(*c));
		if (c == NULL) {
			rv = DRIFT_ENOMEM;
			goto out;
		}
		r->collectors = c;
		r->capcollectors = cap;
	}
	r->collectors[r->ncollectors++] = (struct collector){fn, ctx};
out:
	pthread_mutex_unlock(&r->collect_mu);
	return rv;
}

void drift_metrics_remove_collector(drift_metrics *r,
				    drift_metrics_collect_fn fn, void *ctx)
{
	if (r == NULL)
		return;
	pthread_mutex_lock(&r->collect_mu);
	for (size_t i = 0; i < r->ncollectors; i++) {
		if (r->collectors[i].fn == fn && r->collectors[i].ctx == ctx) {
			memmove(&r->collectors[i], &r->collectors[i + 1],
				(r->ncollectors - i - 1) *
					sizeof(r->collectors[0]));
			r->ncollectors--;
			break;
		}
	}
	pthread_mutex_unlock(&r->collect_mu);
}

/* ---- Exposition ---- */

/* One family being rendered: registry families and collector samples of
 * the same name end up in one group, so each name has one HELP and TYPE. */
struct group {
	char *name;
	char *help;
	enum drift_metric_type type;
	struct sb body;
};

struct drift_metrics_out {
	drift_metrics *reg;
	struct group *groups;
	size_t n, cap;
	bool oom;
};

static struct group *group_get(drift_metrics_out *o, const char *name,
			       const char *help, enum drift_metric_type type)
{
	for (size_t i = 0; i < o->n; i++)
		if (strcmp(o->groups[i].name, name) == 0)
			return o->groups[i].type == type ? &o->groups[i] : NULL;
	if (o->n == o->cap) {
		size_t cap = o->cap ? 2 * o->cap : 64;
		struct group *g = drift_realloc(o->groups, cap * sizeof(*g));
		if (g == NULL) {
			o->oom = true;
			return NULL;
		}
		o->groups = g;
		o->cap = cap;
	}
	struct group *g = &o->groups[o->n];
	memset(g, 0, sizeof(*g));
	g->name = drift_strdup(name);
	g->help = drift_strdup(help != NULL ? help : "");
	g->type = type;
	if (g->name == NULL || g->help == NULL) {
		drift_free(g->name);
		drift_free(g->help);
		o->oom = true;
		return NULL;
	}
	o->n++;
	return g;
}

void drift_metrics_emit(drift_metrics_out *out, enum drift_metric_type type,
			const char *name, const char *help,
			const char *const *labels, const char *const *values,
			size_t nlabels, double v)
{
	bool ok = type != DRIFT_METRIC_HISTOGRAM && metric_name_ok(name) &&
		  (nlabels == 0 || (labels != NULL && values != NULL));
	for (size_t i = 0; ok && i < nlabels; i++)
		ok = label_name_ok(labels[i]) && values[i] != NULL;
	struct group *g = ok ? group_get(out, name, help, type) : NULL;
	if (g == NULL) {
		drift_metrics_inc(out->reg->dropped);
		return;
	}
	sb_str(&g->body, name);
	sb_labels(&g->body, labels, values, nlabels, NULL);
	sb_put(&g->body, " ", 1);
	sb_double(&g->body, v);
	sb_put(&g->body, "\n", 1);
}

static void render_series(struct sb *b, const drift_metric_family *f,
			  const drift_series *m)
{
	const char *const *names = (const char *const *)f->labels;
	const char *const *values = (const char *const *)m->values;
	if (f->type != DRIFT_METRIC_HISTOGRAM) {
		sb_str(b, f->name);
		sb_labels(b, names, values, f->nlabels, NULL);
		sb_put(b, " ", 1);
		if (f->type == DRIFT_METRIC_COUNTER)
			sb_printf(b, "%llu",
				  (unsigned long long)atomic_load_explicit(
					  &m->v, memory_order_relaxed));
		else
			sb_double(b, bitsd(atomic_load_explicit(
					     &m->v, memory_order_relaxed)));
		sb_put(b, "\n", 1);
		return;
	}
	uint64_t cum = 0;
	for (size_t i = 0; i <= f->nbounds; i++) {
		cum += atomic_load_explicit(&m->buckets[i],
					    memory_order_relaxed);
		struct sb le = {0};
		if (i < f->nbounds)
			sb_double(&le, f->bounds[i]);
		sb_str(b, f->name);
		sb_str(b, "_bucket");
		sb_labels(b, names, values, f->nlabels,
			  i < f->nbounds ? (le.p != NULL ? le.p : "0")
					 : "+Inf");
		drift_free(le.p);
		sb_printf(b, " %llu\n", (unsigned long long)cum);
	}
	sb_str(b, f->name);
	sb_str(b, "_sum");
	sb_labels(b, names, values, f->nlabels, NULL);
	sb_put(b, " ", 1);
	sb_double(b,
		  bitsd(atomic_load_explicit(&m->sum, memory_order_relaxed)));
	sb_put(b, "\n", 1);
	sb_str(b, f->name);
	sb_str(b, "_count");
	sb_labels(b, names, values, f->nlabels, NULL);
	sb_printf(b, " %llu\n", (unsigned long long)cum);
}

static const char *type_name(enum drift_metric_type t)
{
	switch (t) {
	case DRIFT_METRIC_COUNTER:
		return "counter";
	case DRIFT_METRIC_GAUGE:
		return "gauge";
	case DRIFT_METRIC_HISTOGRAM:
		return "histogram";
	}
	return "untyped";
}

int drift_metrics_render(drift_metrics *r, char **text, size_t *len)
{
	drift_metrics_out o = {.reg = r};
	for (drift_metric_family *f =
		     atomic_load_explicit(&r->families, memory_order_acquire);
	     f != NULL;
	     f = atomic_load_explicit(&f->next, memory_order_acquire)) {
		struct group *g = group_get(&o, f->name, f->help, f->type);
		if (g == NULL)
			continue;
		for (drift_series *m = atomic_load_explicit(
			     &f->series, memory_order_acquire);
		     m != NULL;
		     m = atomic_load_explicit(&m->next, memory_order_acquire))
			render_series(&g->body, f, m);
	}
	pthread_mutex_lock(&r->collect_mu);
	for (size_t i = 0; i < r->ncollectors; i++)
		r->collectors[i].fn(&o, r->collectors[i].ctx);
	pthread_mutex_unlock(&r->collect_mu);

	struct sb b = {0};
	bool oom = o.oom;
	for (size_t i = 0; i < o.n; i++) {
		struct group *g = &o.groups[i];
		oom = oom || g->body.oom;
		/* A family with no series yet says nothing (its HELP alone
		 * would be valid, but is noise). */
		if (g->body.len > 0) {
			sb_str(&b, "# HELP ");
			sb_str(&b, g->name);
			sb_put(&b, " ", 1);
			sb_escaped(&b, g->help, false);
			sb_str(&b, "\n# TYPE ");
			sb_str(&b, g->name);
			sb_put(&b, " ", 1);
			sb_str(&b, type_name(g->type));
			sb_put(&b, "\n", 1);
			sb_put(&b, g->body.p, g->body.len);
		}
		drift_free(g->name);
		drift_free(g->help);
		drift_free(g->body.p);
	}
	drift_free(o.groups);
	if (b.p == NULL && !b.oom)
		sb_put(&b, "", 0);
	if (oom || b.oom) {
		drift_free(b.p);
		return DRIFT_ENOMEM;
	}
	*text = b.p;
	*len = b.len;
	return 0;
}
