/* Tests of node/manifest: round trip; every byte flipped and every
 * truncation is refused (never a wrong manifest); semantic damage that a
 * checksum cannot see (recomputed checksum) is refused too; a store that
 * fails at any file operation leaves the previous manifest readable. */
#include <errno.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/hash.h"
#include "node/storage/manifest.h"
#include "drift_test.h"

/* ---- Helpers ---- */

static void sample(drift_manifest *m, uint64_t gen)
{
	drift_manifest_init(m);
	m->generation = gen;
	m->wal_seq = 1000 + gen;
	m->next_segment_id = 10;
	m->nsegments = 3;
	m->segments = drift_mallocarray(3, 8);
	m->segments[0] = 2;
	m->segments[1] = 5;
	m->segments[2] = 9;
	m->nbuckets = 4;
	m->buckets = drift_mallocarray(4, sizeof(drift_manifest_bucket));
	for (uint32_t i = 0; i < 4; i++)
		m->buckets[i] =
			(drift_manifest_bucket){.slot = i * 3,
						.block = i,
						.segment = m->segments[i % 3]};
	m->meta_len = 5;
	m->meta = drift_malloc(5);
	memcpy(m->meta, "dim=8", 5);
}

static void assert_same(const drift_manifest *a, const drift_manifest *b)
{
	cr_assert_eq(a->generation, b->generation);
	cr_assert_eq(a->wal_seq, b->wal_seq);
	cr_assert_eq(a->next_segment_id, b->next_segment_id);
	cr_assert_eq(a->nsegments, b->nsegments);
	cr_assert_eq(a->nbuckets, b->nbuckets);
	for (uint32_t i = 0; i < a->nsegments; i++)
		cr_assert_eq(a->segments[i], b->segments[i]);
	for (uint32_t i = 0; i < a->nbuckets; i++) {
		cr_assert_eq(a->buckets[i].slot, b->buckets[i].slot);
		cr_assert_eq(a->buckets[i].block, b->buckets[i].block);
		cr_assert_eq(a->buckets[i].segment, b->buckets[i].segment);
	}
	cr_assert_eq(a->meta_len, b->meta_len);
	if (a->meta_len > 0)
		cr_assert_eq(memcmp(a->meta, b->meta, a->meta_len), 0);
}

/* Re-seals a body edited in place with a valid checksum. */
static void reseal(uint8_t *b, size_t len)
{
	drift_store_le64(b + 24, drift_checksum64(b + 32, len - 32));
}

/* ---- Cases ---- */

DRIFT_TEST(manifest, round_trip_and_empty)
{
	drift_manifest m, back;
	sample(&m, 7);
	uint8_t *b;
	size_t len;
	cr_assert_eq(drift_manifest_encode(&m, &b, &len), 0);
	cr_assert_eq(drift_manifest_decode(b, len, &back, NULL), 0);
	assert_same(&m, &back);
	drift_manifest_free(&back);
	drift_free(b);
	drift_manifest_free(&m);

	drift_manifest e;
	drift_manifest_init(&e);
	cr_assert_eq(drift_manifest_encode(&e, &b, &len), 0);
	cr_assert_eq(drift_manifest_decode(b, len, &back, NULL), 0);
	assert_same(&e, &back);
	drift_manifest_free(&back);
	drift_free(b);
}

DRIFT_TEST(manifest, every_flip_and_truncation_refused)
{
	drift_manifest m, back;
	sample(&m, 3);
	uint8_t *b;
	size_t len;
	cr_assert_eq(drift_manifest_encode(&m, &b, &len), 0);
	uint8_t *c = drift_malloc(len);
	for (size_t i = 0; i < len; i++) {
		for (int bit = 0; bit < 8; bit += 3) {
			memcpy(c, b, len);
			c[i] ^= (uint8_t)(1u << bit);
			drift_err err;
			int rv = drift_manifest_decode(c, len, &back, &err);
			cr_assert(rv == DRIFT_ECORRUPT || rv == DRIFT_ENOTSUP,
				  "byte %zu bit %d: %d", i, bit, rv);
		}
	}
	for (size_t n = 0; n < len; n++)
		cr_assert_eq(drift_manifest_decode(b, n, &back, NULL),
			     DRIFT_ECORRUPT, "truncated to %zu", n);
	drift_free(c);
	drift_free(b);
	drift_manifest_free(&m);
}

/* Damage with a valid checksum (a bug of a writer, or a crafted file). */
DRIFT_TEST(manifest, semantic_damage_refused)
{
	drift_manifest m, back;
	uint8_t *b;
	size_t len;
	drift_err err;
	/* Segments out of order. */
	sample(&m, 1);
	m.segments[1] = 1;
	drift_manifest_encode(&m, &b, &len);
	cr_assert_eq(drift_manifest_decode(b, len, &back, &err),
		     DRIFT_ECORRUPT);
	cr_assert(strstr(err.msg, "order") != NULL, "%s", err.msg);
	drift_free(b);
	drift_manifest_free(&m);
	/* A bucket on a segment that is not live. */
	sample(&m, 1);
	m.buckets[2].segment = 4;
	drift_manifest_encode(&m, &b, &len);
	cr_assert_eq(drift_manifest_decode(b, len, &back, &err),
		     DRIFT_ECORRUPT);
	cr_assert(strstr(err.msg, "not live") != NULL, "%s", err.msg);
	drift_free(b);
	drift_manifest_free(&m);
	/* A slot listed twice. */
	sample(&m, 1);
	m.buckets[3].slot = m.buckets[0].slot;
	drift_manifest_encode(&m, &b, &len);
	cr_assert_eq(drift_manifest_decode(b, len, &back, &err),
		     DRIFT_ECORRUPT);
	drift_free(b);
	drift_manifest_free(&m);
	/* Counts larger than the body, resealed. */
	sample(&m, 1);
	drift_manifest_encode(&m, &b, &len);
	drift_store_le32(b + 32 + 28, 1000000);
	reseal(b, len);
	cr_assert_eq(drift_manifest_decode(b, len, &back, &err),
		     DRIFT_ECORRUPT);
	drift_free(b);
	/* A newer version. */
	drift_manifest_encode(&m, &b, &len);
	drift_store_le32(b + 8, DRIFT_MANIFEST_VERSION + 1);
	cr_assert_eq(drift_manifest_decode(b, len, &back, &err), DRIFT_ENOTSUP);
	drift_free(b);
	drift_manifest_free(&m);
}

/* Each file operation of a store fails in turn: the store reports it and
 * the previous manifest is still what a reader gets. */
DRIFT_TEST(manifest, failed_store_keeps_the_old_one)
{
	char dir[256];
	drift_test_tmpdir(dir, sizeof(dir));
	drift_fault_fs ff;
	drift_fault_fs_init(&ff, drift_fs_posix());
	drift_manifest m, back;
	drift_err err;
	cr_assert_eq(drift_manifest_load(&ff.fs, dir, &back, &err),
		     DRIFT_ENOENT);
	sample(&m, 1);
	cr_assert_eq(drift_manifest_store(&ff.fs, dir, &m, &err), 0, "%s",
		     err.msg);
	drift_manifest_free(&m);
	static const enum drift_fs_op ops[] = {DRIFT_FS_OPEN, DRIFT_FS_WRITE,
					       DRIFT_FS_PWRITE, DRIFT_FS_FSYNC,
					       DRIFT_FS_RENAME};
	int failed = 0;
	uint64_t expect = 1; /* the generation of the last store that worked */
	for (size_t i = 0; i < sizeof(ops) / sizeof(ops[0]); i++) {
		drift_fault_fs_arm(&ff, ops[i], 1,
				   ops[i] == DRIFT_FS_WRITE ||
						   ops[i] == DRIFT_FS_PWRITE
					   ? ENOSPC
					   : EIO,
				   0);
		sample(&m, 2 + i);
		int rv = drift_manifest_store(&ff.fs, dir, &m, &err);
		drift_manifest_free(&m);
		long calls = drift_fault_fs_calls(&ff, ops[i]);
		drift_fault_fs_arm(&ff, ops[i], 0, 0, 0);
		if (rv == 0)
			expect = 2 + i;
		if (calls == 0)
			continue; /* this path does not use that call */
		if (rv != 0) {
			failed++;
			cr_assert_eq(
				drift_manifest_load(&ff.fs, dir, &back, &err),
				0, "%s", err.msg);
			cr_assert_eq(back.generation, expect,
				     "op %d: a failed store (%s) replaced the "
				     "manifest",
				     (int)ops[i], err.msg);
			drift_manifest_free(&back);
		}
	}
	cr_assert_geq(failed, 3, "faults reached the store");
	/* And a store that works replaces it. */
	sample(&m, 9);
	cr_assert_eq(drift_manifest_store(&ff.fs, dir, &m, &err), 0);
	cr_assert_eq(drift_manifest_load(&ff.fs, dir, &back, &err), 0);
	assert_same(&m, &back);
	drift_manifest_free(&back);
	drift_manifest_free(&m);
	drift_test_rmtree(dir);
}
