/* Tests of node/l1_persist: an index written bucket by bucket into a real
 * segment and loaded into a fresh index gives back every vector bit for bit
 * and the same answers to the same searches; after upserts and deletes only
 * the touched buckets are dirty, and writing just those reproduces the
 * index; damaged blocks are refused and leave the index as it was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/l1/l1.h"
#include "node/storage/segment.h"
#include "drift_test.h"

/* ---- Fixture ---- */

#define DIM DRIFT_TEST_FMNIST_DIM
#define N 6000

static float *data;

/* DRIFT_TEST_VSTORE=file (a second meson test) runs every case with the
 * full vectors in a scratch file behind a 32 KiB row cache, so re-ranking,
 * maintenance and persistence read them from disk. */
static char store_dir[4096];

static drift_l1_opts *with_store(drift_l1_opts *o)
{
	const char *m = getenv("DRIFT_TEST_VSTORE");
	if (m == NULL || strcmp(m, "file") != 0)
		return o;
	if (store_dir[0] == 0)
		drift_test_tmpdir(store_dir, sizeof(store_dir));
	o->vec_dir = store_dir;
	o->vec_cache_bytes = 32 << 10;
	return o;
}

static void store_cleanup(void)
{
	if (store_dir[0] != 0)
		drift_test_rmtree(store_dir);
	store_dir[0] = 0;
}

static void setup(void)
{
	size_t n;
	data = drift_test_fmnist("train", N + 400, &n);
	cr_assert_eq(n, N + 400);
}

static void teardown(void)
{
	free(data);
	store_cleanup();
}

/* ---- Helpers ---- */

static drift_l1 *new_index(enum drift_metric metric)
{
	drift_l1_opts o = {
		.dim = DIM, .metric = metric, .bucket_target = 200, .seed = 3};
	drift_l1 *l1;
	drift_err err;
	cr_assert_eq(drift_l1_new(with_store(&o), &l1, &err), 0, "%s", err.msg);
	return l1;
}

/* The newest block of each slot, as a manifest would record it. */
struct where {
	drift_segment_writer *w;
	int32_t block[4096]; /* per slot: block index, -1 none, -2 freed */
	unsigned seg[4096];  /* which segment */
	unsigned cur;
};

static int sink(void *ctx, uint32_t slot, const void *block, size_t len,
		const uint64_t *ids, size_t n)
{
	for (size_t i = 1; i < n; i++)
		cr_assert_lt(ids[i - 1], ids[i], "ids ascending");
	struct where *wh = ctx;
	cr_assert_lt(slot, 4096);
	if (block == NULL) {
		wh->block[slot] = -2;
		return 0;
	}
	drift_block_desc d = {.kind = DRIFT_BLOCK_BUCKET, .key = slot};
	uint32_t idx;
	drift_err err;
	int rv = drift_segw_add_block(wh->w, &d, block, len, &idx, &err);
	cr_assert_eq(rv, 0, "%s", err.msg);
	wh->block[slot] = (int32_t)idx;
	wh->seg[slot] = wh->cur;
	return 0;
}

static void write_dirty(drift_l1 *l1, struct where *wh, const char *path,
			unsigned seg)
{
	drift_err err;
	cr_assert_eq(
		drift_segw_create(drift_fs_posix(), path, seg, &wh->w, &err), 0,
		"%s", err.msg);
	wh->cur = seg;
	cr_assert_eq(drift_l1_encode_dirty(l1, sink, wh, &err), 0, "%s",
		     err.msg);
	cr_assert_eq(drift_segw_finish(wh->w, &err), 0, "%s", err.msg);
	drift_l1_clear_dirty(l1);
	cr_assert_eq(drift_l1_dirty_count(l1), 0);
}

static drift_l1 *load(enum drift_metric metric, struct where *wh,
		      char paths[][300], unsigned nseg)
{
	drift_l1 *l1 = new_index(metric);
	drift_segment_reader *r[4];
	drift_err err;
	for (unsigned i = 0; i < nseg; i++)
		cr_assert_eq(drift_segr_open(drift_fs_posix(), paths[i], &r[i],
					     &err),
			     0, "%s", err.msg);
	for (uint32_t s = 0; s < 4096; s++) {
		if (wh->block[s] < 0)
			continue;
		drift_segment_reader *sr = r[wh->seg[s]];
		const drift_block_info *bi =
			drift_segr_block(sr, (uint32_t)wh->block[s]);
		void *buf = drift_malloc(bi->length);
		cr_assert_eq(drift_segr_read_block(sr, (uint32_t)wh->block[s],
						   buf, &err),
			     0);
		cr_assert_eq(bi->desc.key, s);
		cr_assert_eq(drift_l1_load_block(l1, s, buf, bi->length, &err),
			     0, "%s", err.msg);
		drift_free(buf);
	}
	cr_assert_eq(drift_l1_load_finish(l1, &err), 0, "%s", err.msg);
	for (unsigned i = 0; i < nseg; i++)
		drift_segr_close(r[i]);
	return l1;
}

/* Same vectors for ids [0, n) present, same searches. */
static void assert_equal(drift_l1 *a, drift_l1 *b, const uint64_t *ids,
			 size_t n)
{
	drift_l1_stats sa, sb;
	drift_l1_stats_get(a, &sa);
	drift_l1_stats_get(b, &sb);
	cr_assert_eq(sa.vectors, sb.vectors);
	cr_assert_eq(sa.buckets, sb.buckets);
	static float va[DIM], vb[DIM];
	for (size_t i = 0; i < n; i++) {
		uint64_t v1 = 0, v2 = 0;
		int r1 = drift_l1_get(a, ids[i], va, &v1);
		int r2 = drift_l1_get(b, ids[i], vb, &v2);
		cr_assert_eq(r1, r2, "id %llu", (unsigned long long)ids[i]);
		if (r1 == 0) {
			cr_assert_eq(memcmp(va, vb, sizeof(va)), 0);
			cr_assert_eq(v1, v2);
		}
	}
	drift_l1_search_opts so = {.k = 10, .nprobe = 6};
	for (int q = 0; q < 30; q++) {
		drift_hit ha[10], hb[10];
		size_t na, nb;
		const float *qv = data + (size_t)(N + q) * DIM;
		cr_assert_eq(drift_l1_search(a, qv, &so, ha, &na, NULL), 0);
		cr_assert_eq(drift_l1_search(b, qv, &so, hb, &nb, NULL), 0);
		cr_assert_eq(na, nb);
		for (size_t i = 0; i < na; i++) {
			cr_assert_eq(ha[i].id, hb[i].id, "query %d rank %zu", q,
				     i);
			cr_assert_float_eq(ha[i].distance, hb[i].distance, 0);
		}
	}
}

static int grab(void *ctx, uint32_t slot, const void *block, size_t len,
		const uint64_t *ids, size_t n)
{
	(void)slot;
	(void)ids;
	(void)n;
	struct {
		uint8_t *b;
		size_t len;
	} *g = ctx;
	if (g->b == NULL && block != NULL) {
		g->b = drift_malloc(len);
		memcpy(g->b, block, len);
		g->len = len;
	}
	return 0;
}

/* ---- Cases ---- */

TestSuite(l1_persist, .init = setup, .fini = teardown);

DRIFT_TEST(l1_persist, write_load_round_trip_then_incremental)
{
	char dir[256], paths[2][300];
	drift_test_tmpdir(dir, sizeof(dir));
	snprintf(paths[0], sizeof(paths[0]), "%s/1.drift", dir);
	snprintf(paths[1], sizeof(paths[1]), "%s/2.drift", dir);
	uint64_t *ids = drift_mallocarray(N + 400, 8);
	for (size_t i = 0; i < N + 400; i++)
		ids[i] = i * 7919 + 3; /* not in order of rows */
	drift_l1 *live = new_index(DRIFT_METRIC_L2);
	drift_err err;
	cr_assert_eq(drift_l1_build(live, ids, data, N, 1, &err), 0, "%s",
		     err.msg);
	struct where *wh = drift_calloc(1, sizeof(*wh));
	for (int s = 0; s < 4096; s++)
		wh->block[s] = -1;
	write_dirty(live, wh, paths[0], 0);
	drift_l1 *back = load(DRIFT_METRIC_L2, wh, paths, 1);
	assert_equal(live, back, ids, N + 400);
	drift_l1_free(back);

	/* Upsert 200 (100 new ids, 100 replaced vectors), delete 50. */
	uint32_t before = 0;
	drift_l1_stats st;
	drift_l1_stats_get(live, &st);
	before = st.buckets;
	uint64_t up[200], del[50];
	for (int i = 0; i < 100; i++)
		up[i] = ids[N + i];
	for (int i = 0; i < 100; i++)
		up[100 + i] = ids[i * 13];
	for (int i = 0; i < 50; i++)
		del[i] = ids[2000 + i * 17];
	size_t deleted;
	cr_assert_eq(drift_l1_apply(live, up, data + (size_t)(N + 100) * DIM,
				    200, del, 50, 2, &deleted, &err),
		     0, "%s", err.msg);
	cr_assert_eq(deleted, 50);
	uint32_t dirty = drift_l1_dirty_count(live);
	cr_assert_gt(dirty, 0);
	cr_assert_lt(dirty, before, "only touched buckets are dirty (%u/%u)",
		     dirty, before);
	write_dirty(live, wh, paths[1], 1);
	back = load(DRIFT_METRIC_L2, wh, paths, 2);
	assert_equal(live, back, ids, N + 400);
	drift_l1_free(back);

	/* Maintenance moves rows between buckets: still reproducible. */
	drift_l1_maint_stats ms;
	cr_assert_eq(drift_l1_maintain(live, 8, &ms, &err), 0);
	drift_l1_free(live);
	drift_free(wh);
	drift_free(ids);
	drift_test_rmtree(dir);
}

/* Damaged blocks (past the segment checksum): refused or decoded, never
 * a crash, and a refused block leaves nothing behind. */
DRIFT_TEST(l1_persist, damaged_blocks)
{
	uint64_t ids[300];
	for (int i = 0; i < 300; i++)
		ids[i] = (uint64_t)i * 3;
	drift_l1 *live = new_index(DRIFT_METRIC_COSINE);
	drift_err err;
	cr_assert_eq(drift_l1_build(live, ids, data, 300, 1, &err), 0);
	struct blk {
		uint8_t *b;
		size_t len;
	} first = {0};
	cr_assert_eq(drift_l1_encode_dirty(live, grab, &first, &err), 0);
	cr_assert_not_null(first.b);
	uint8_t *c = drift_malloc(first.len);
	int refused = 0;
	/* Every byte of the header and the start of the id column, then a
	 * spread of offsets over the columns. */
	size_t step = first.len / 300 + 1, cols = 16 + 4 * DIM;
	for (size_t i = 0; i < first.len;
	     i += (i < 64 || (i >= cols && i < cols + 256) ? 1 : step)) {
		memcpy(c, first.b, first.len);
		c[i] ^= 0x5a;
		drift_l1 *t = new_index(DRIFT_METRIC_COSINE);
		int rv = drift_l1_load_block(t, 0, c, first.len, &err);
		cr_assert(rv == 0 || rv == DRIFT_ECORRUPT, "byte %zu: %d", i,
			  rv);
		if (rv != 0) {
			refused++;
			drift_l1_stats st;
			drift_l1_stats_get(t, &st);
			cr_assert_eq(st.vectors, 0);
		}
		drift_l1_free(t);
	}
	cr_assert_gt(refused, 20);
	for (size_t n = 0; n < first.len; n += step / 3 + 1) {
		drift_l1 *t = new_index(DRIFT_METRIC_COSINE);
		cr_assert_eq(drift_l1_load_block(t, 0, first.b, n, &err),
			     DRIFT_ECORRUPT, "truncated to %zu", n);
		drift_l1_free(t);
	}
	/* A block of another metric or dimension is refused. */
	drift_l1 *t = new_index(DRIFT_METRIC_L2);
	cr_assert_eq(drift_l1_load_block(t, 0, first.b, first.len, &err),
		     DRIFT_ECORRUPT);
	drift_l1_free(t);
	drift_free(c);
	drift_free(first.b);
	drift_l1_free(live);
}
