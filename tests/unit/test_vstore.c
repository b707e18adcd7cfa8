/* Tests of the vector store (node/storage/vstore.c): both modes return what was
 * appended, rows are recycled after release, the row cache holds every row
 * when its budget allows and misses go to disk when it does not, and reads
 * run concurrently with appends. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/rand.h"
#include "node/storage/vstore.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static drift_vstore *vs;
static char dir[4096];

static void setup(void)
{
	drift_test_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	drift_vstore_close(vs);
	vs = NULL;
	drift_test_rmtree(dir);
}

TestSuite(vstore, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

#define DIM 37u

static void open_store(bool file, size_t cache_rows)
{
	drift_vstore_opts o = {.dim = DIM,
			       .dir = file ? dir : NULL,
			       .cache_bytes = cache_rows * DIM * sizeof(float)};
	drift_err err;
	cr_assert_eq(drift_vstore_open(&o, &vs, &err), 0, "%s", err.msg);
}

/* The vector of value v: every component derived from v. */
static void fill(float *x, uint32_t v)
{
	for (uint32_t j = 0; j < DIM; j++)
		x[j] = (float)v * 1000.0f + (float)j;
}

/* Appends n vectors with values from0.. and checks every row reads back,
 * in a shuffled order. */
static void append_and_check(uint32_t n, uint32_t *rows, uint32_t from0)
{
	float *x = malloc((size_t)n * DIM * sizeof(float));
	for (uint32_t i = 0; i < n; i++)
		fill(x + (size_t)i * DIM, from0 + i);
	drift_err err;
	cr_assert_eq(drift_vstore_append(vs, x, n, rows, &err), 0, "%s",
		     err.msg);
	free(x);
}

static void check_rows(const uint32_t *rows, const uint32_t *vals, size_t n)
{
	float *got = malloc(n * DIM * sizeof(float));
	float want[DIM];
	cr_assert_eq(drift_vstore_read(vs, rows, n, got), 0);
	for (size_t i = 0; i < n; i++) {
		fill(want, vals[i]);
		cr_assert(memcmp(got + i * DIM, want, sizeof(want)) == 0,
			  "row %u (value %u) reads back wrong", rows[i],
			  vals[i]);
	}
	free(got);
}

/* Round trip of 1000 rows, read in a seeded random order (adjacent and
 * scattered rows, batches above the read batch), then release and reuse. */
static void round_trip(void)
{
	enum { N = 1000 };
	static uint32_t rows[N], vals[N], perm[N], prow[N], pval[N];
	append_and_check(N, rows, 0);
	for (uint32_t i = 0; i < N; i++) {
		vals[i] = i;
		perm[i] = i;
	}
	check_rows(rows, vals, N); /* in order: coalesced reads */
	drift_rand r;
	drift_rand_seed(&r, 7);
	for (uint32_t i = N; i > 1; i--) {
		uint32_t j = (uint32_t)drift_rand_below(&r, i);
		uint32_t t = perm[i - 1];
		perm[i - 1] = perm[j];
		perm[j] = t;
	}
	for (uint32_t i = 0; i < N; i++) {
		prow[i] = rows[perm[i]];
		pval[i] = vals[perm[i]];
	}
	check_rows(prow, pval, N);
	/* Release every third row; new appends reuse exactly those. */
	uint32_t rel[N], nrel = 0;
	for (uint32_t i = 0; i < N; i += 3)
		rel[nrel++] = rows[i];
	drift_vstore_release(vs, rel, nrel);
	drift_vstore_stats st;
	drift_vstore_stats_get(vs, &st);
	/* Row 999 was the top one: given up, not free. */
	cr_assert_eq(st.free_rows, nrel - 1);
	cr_assert_eq(st.rows, N - nrel);
	uint32_t nrows[N];
	append_and_check(nrel, nrows, 5000);
	drift_vstore_stats_get(vs, &st);
	cr_assert_eq(st.free_rows, 0);
	cr_assert_eq(st.rows, N);
	/* The free rows, lowest first, then the given-up top one again. */
	for (uint32_t i = 0; i < nrel; i++) {
		cr_assert_eq(nrows[i], rel[i], "row %u is not recycled %u",
			     nrows[i], rel[i]);
		vals[i] = 5000 + i;
	}
	check_rows(nrows, vals, nrel);
	/* The rows kept still hold their vectors. */
	for (uint32_t i = 1, k = 0; i < N; i++)
		if (i % 3 != 0) {
			prow[k] = rows[i];
			pval[k++] = i;
		}
	check_rows(prow, pval, N - nrel);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(vstore, memory_mode_round_trip)
{
	open_store(false, 0);
	round_trip();
	drift_vstore_stats st;
	drift_vstore_stats_get(vs, &st);
	cr_assert_geq(st.resident_bytes, 1000ull * DIM * sizeof(float));
	cr_assert_eq(st.disk_reads, 0);
}

DRIFT_TEST(vstore, file_mode_without_cache_reads_from_disk)
{
	open_store(true, 0);
	round_trip();
	drift_vstore_stats st;
	drift_vstore_stats_get(vs, &st);
	cr_assert_eq(st.resident_bytes, 0);
	cr_assert_eq(st.hits, 0);
	cr_assert_gt(st.disk_reads, 0);
}

DRIFT_TEST(vstore, file_mode_with_a_small_cache)
{
	open_store(true, 100);
	round_trip();
	drift_vstore_stats st;
	drift_vstore_stats_get(vs, &st);
	cr_assert_gt(st.resident_bytes, 0);
	cr_assert_leq(st.resident_bytes, 100ull * DIM * sizeof(float) + 8192);
	cr_assert_gt(st.misses, 0);
	cr_assert_gt(st.disk_reads, 0);
}

DRIFT_TEST(vstore, a_budget_for_every_row_keeps_everything_cached)
{
	open_store(true, 1000);
	round_trip();
	drift_vstore_stats st;
	drift_vstore_stats_get(vs, &st);
	cr_assert_eq(st.misses, 0, "%llu misses",
		     (unsigned long long)st.misses);
	cr_assert_eq(st.disk_reads, 0);
}

/* Memory follows the rows in use: released rows leave the cache and the
 * pages that hold none go back; the top of the store is given up; a store
 * emptied and filled again reads back. */
static void release_and_shrink(bool file)
{
	enum { N = 4000 };
	static uint32_t rows[N], vals[N], keep[N];
	open_store(file, file ? N : 0);
	append_and_check(N, rows, 0);
	drift_vstore_stats st;
	drift_vstore_stats_get(vs, &st);
	uint64_t full = st.resident_bytes;
	cr_assert_geq(full, (uint64_t)N * DIM * sizeof(float));
	/* Every row but each 100th and the first 100. */
	uint32_t rel[N], nrel = 0, nk = 0;
	for (uint32_t i = 0; i < N; i++)
		if (i % 100 == 0 || i < 100) {
			keep[nk] = rows[i];
			vals[nk++] = i;
		} else {
			rel[nrel++] = rows[i];
		}
	drift_vstore_release(vs, rel, nrel);
	drift_vstore_stats_get(vs, &st);
	cr_assert_eq(st.rows, nk);
	/* Rows 3901..3999 were the top: gone. */
	cr_assert_eq(st.rows + st.free_rows, 3901);
	if (file) {
		/* A page holds 27 rows of 148 bytes: each kept row keeps one
		 * or two, the first 100 four. */
		cr_assert_leq(st.resident_bytes, (uint64_t)(4 + 2 * 39) * 4096,
			      "%llu bytes resident of %llu",
			      (unsigned long long)st.resident_bytes,
			      (unsigned long long)full);
	}
	check_rows(keep, vals, nk);
	/* The rest released too but for row 0: the store is one row. */
	drift_vstore_release(vs, keep + 1, nk - 1);
	drift_vstore_stats_get(vs, &st);
	cr_assert_eq(st.rows, 1);
	cr_assert_eq(st.free_rows, 0);
	if (file)
		cr_assert_leq(st.resident_bytes, 4096);
	else
		cr_assert_leq(st.resident_bytes, 256ull * DIM * sizeof(float));
	check_rows(keep, vals, 1);
	/* Filled again: new rows from 1 up, read back, from memory when the
	 * cache holds them. */
	append_and_check(N - 1, rows, 10000);
	for (uint32_t i = 0; i < N - 1; i++) {
		cr_assert_eq(rows[i], i + 1);
		vals[i] = 10000 + i;
	}
	check_rows(rows, vals, N - 1);
	drift_vstore_stats_get(vs, &st);
	cr_assert_eq(st.rows, N);
	if (file)
		cr_assert_eq(st.disk_reads, 0);
}

DRIFT_TEST(vstore, memory_follows_rows_in_use_memory)
{
	release_and_shrink(false);
}

DRIFT_TEST(vstore, memory_follows_rows_in_use_file)
{
	release_and_shrink(true);
}

/* While the rows fit the cache there is no file (nothing is read from
 * disk); the append that outgrows it writes every row so far to a new
 * file first, and all read back, evicted ones from the file. */
DRIFT_TEST(vstore, rows_spill_to_the_file_when_they_outgrow_the_cache)
{
	static uint32_t rows[600], vals[600];
	open_store(true, 300);
	append_and_check(250, rows, 0);
	for (uint32_t i = 0; i < 250; i++)
		vals[i] = i;
	uint32_t rel[50];
	for (uint32_t i = 0; i < 50; i++)
		rel[i] = rows[i * 2];
	drift_vstore_release(vs, rel, 50);
	append_and_check(100, rows + 250, 1000); /* 50 reused, 50 fresh */
	for (uint32_t i = 0; i < 100; i++)
		vals[250 + i] = 1000 + i;
	for (uint32_t i = 0; i < 50; i++)
		vals[i * 2] = UINT32_MAX; /* released */
	drift_vstore_stats st;
	drift_vstore_stats_get(vs, &st);
	cr_assert_eq(st.rows, 300);
	cr_assert_eq(st.disk_reads, 0);
	append_and_check(250, rows + 350, 2000); /* 550 rows: spills */
	for (uint32_t i = 0; i < 250; i++)
		vals[350 + i] = 2000 + i;
	uint32_t kr[600], kv[600], nk = 0;
	for (uint32_t i = 0; i < 600; i++)
		if (vals[i] != UINT32_MAX) {
			kr[nk] = rows[i];
			kv[nk++] = vals[i];
		}
	check_rows(kr, kv, nk);
	drift_vstore_stats_get(vs, &st);
	cr_assert_eq(st.rows, 550);
	cr_assert_gt(st.disk_reads, 0, "evicted rows come from the file");
}

DRIFT_TEST(vstore, bad_directory_fails)
{
	drift_vstore_opts o = {.dim = DIM, .dir = "/nonexistent/drift"};
	drift_err err;
	cr_assert_neq(drift_vstore_open(&o, &vs, &err), 0);
	cr_assert_null(vs);
}

/* Readers check rows already appended while the writer appends more (the
 * chunk table of memory mode grows under them; file mode's cache entries
 * are overwritten under them). */
typedef struct reader_arg {
	const uint32_t *rows;
	const _Atomic uint32_t *published;
	int bad;
} reader_arg;

static void *reader(void *p)
{
	reader_arg *a = p;
	float got[DIM], want[DIM];
	drift_rand r;
	drift_rand_seed(&r, 3);
	for (int it = 0; it < 20000; it++) {
		uint32_t n = *a->published;
		if (n == 0)
			continue;
		uint32_t i = (uint32_t)drift_rand_below(&r, n);
		if (drift_vstore_read(vs, &a->rows[i], 1, got) != 0)
			a->bad++;
		fill(want, i);
		if (memcmp(got, want, sizeof(want)) != 0)
			a->bad++;
	}
	return NULL;
}

static void concurrent(bool file)
{
	enum { N = 20000 };
	static uint32_t rows[N];
	static _Atomic uint32_t published;
	published = 0;
	open_store(file, 64);
	reader_arg a = {rows, &published, 0};
	pthread_t t;
	pthread_create(&t, NULL, reader, &a);
	for (uint32_t i = 0; i < N; i += 100) {
		append_and_check(100, rows + i, i);
		published = i + 100;
	}
	pthread_join(t, NULL);
	cr_assert_eq(a.bad, 0);
}

DRIFT_TEST(vstore, reads_during_appends_memory)
{
	concurrent(false);
}

DRIFT_TEST(vstore, reads_during_appends_file)
{
	concurrent(true);
}
