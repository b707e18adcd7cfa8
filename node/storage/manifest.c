/*
 * The manifest file (see manifest.h). Byte layout, little endian:
 *
 *   offset  size  field
 *   0       8     magic "DRIFTMAN"
 *   8       4     format version (1)
 *   12      4     flags (0)
 *   16      8     body length L
 *   24      8     XXH3-64 of the body
 *   32      L     body:
 *                   u64 generation, u64 wal_seq, u64 next_segment_id,
 *                   u32 nsegments, u32 nbuckets,
 *                   nsegments x u64 segment id (ascending, distinct),
 *                   nbuckets x (u32 slot, u32 block, u64 segment),
 *                   u32 meta length, meta bytes
 *
 * The reader trusts nothing: a wrong magic, a length that disagrees with
 * the file, a checksum mismatch, counts that do not fit the body, segment
 * ids out of order, a bucket naming a segment that is not live or a slot
 * used twice, or trailing bytes are DRIFT_ECORRUPT; a version above ours is
 * DRIFT_ENOTSUP. A damaged manifest is never repaired silently: the shard
 * reports it (its data is still in the segments and the WAL, for an
 * operator to recover).
 */
#include "node/storage/manifest.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/hash.h"

#define MAGIC "DRIFTMAN"
#define HEADER 32

void drift_manifest_init(drift_manifest *m)
{
	memset(m, 0, sizeof(*m));
	m->next_segment_id = 1;
}

void drift_manifest_free(drift_manifest *m)
{
	drift_free(m->segments);
	drift_free(m->buckets);
	drift_free(m->meta);
	drift_manifest_init(m);
}

int drift_manifest_encode(const drift_manifest *m, uint8_t **out, size_t *len)
{
	size_t body = 8 * 3 + 4 * 2 + 8 * (size_t)m->nsegments +
		      16 * (size_t)m->nbuckets + 4 + m->meta_len;
	uint8_t *b = drift_malloc(HEADER + body);
	if (b == NULL)
		return DRIFT_ENOMEM;
	uint8_t *p = b + HEADER;
	drift_store_le64(p, m->generation);
	drift_store_le64(p + 8, m->wal_seq);
	drift_store_le64(p + 16, m->next_segment_id);
	drift_store_le32(p + 24, m->nsegments);
	drift_store_le32(p + 28, m->nbuckets);
	p += 32;
	for (uint32_t i = 0; i < m->nsegments; i++, p += 8)
		drift_store_le64(p, m->segments[i]);
	for (uint32_t i = 0; i < m->nbuckets; i++, p += 16) {
		drift_store_le32(p, m->buckets[i].slot);
		drift_store_le32(p + 4, m->buckets[i].block);
		drift_store_le64(p + 8, m->buckets[i].segment);
	}
	drift_store_le32(p, (uint32_t)m->meta_len);
	if (m->meta_len > 0)
		memcpy(p + 4, m->meta, m->meta_len);
	memcpy(b, MAGIC, 8);
	drift_store_le32(b + 8, DRIFT_MANIFEST_VERSION);
	drift_store_le32(b + 12, 0);
	drift_store_le64(b + 16, body);
	drift_store_le64(b + 24, drift_checksum64(b + HEADER, body));
	*out = b;
	*len = HEADER + body;
	return 0;
}

static int corrupt(drift_err *err, const char *what)
{
	return drift_err_set(err, DRIFT_ECORRUPT, "manifest: %s", what);
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

int drift_manifest_decode(const uint8_t *in, size_t len, drift_manifest *m,
			  drift_err *err)
{
	drift_manifest_init(m);
	if (len < HEADER || memcmp(in, MAGIC, 8) != 0)
		return corrupt(err, "bad magic (not a manifest)");
	uint32_t version = drift_load_le32(in + 8);
	if (version > DRIFT_MANIFEST_VERSION)
		return drift_err_set(err, DRIFT_ENOTSUP,
				     "manifest: format version %u is newer "
				     "than this build's %u",
				     version, DRIFT_MANIFEST_VERSION);
	if (version == 0 || drift_load_le32(in + 12) != 0)
		return corrupt(err, "bad version or flags");
	uint64_t body = drift_load_le64(in + 16);
	if (body != len - HEADER)
		return corrupt(err, "length does not match the file (torn?)");
	if (drift_checksum64(in + HEADER, body) != drift_load_le64(in + 24))
		return corrupt(err, "checksum mismatch");
	const uint8_t *p = in + HEADER, *end = in + len;
	if (end - p < 32)
		return corrupt(err, "body too short");
	drift_manifest t;
	drift_manifest_init(&t);
	t.generation = drift_load_le64(p);
	t.wal_seq = drift_load_le64(p + 8);
	t.next_segment_id = drift_load_le64(p + 16);
	t.nsegments = drift_load_le32(p + 24);
	t.nbuckets = drift_load_le32(p + 28);
	p += 32;
	if ((uint64_t)(end - p) < 8ull * t.nsegments + 16ull * t.nbuckets + 4)
		return corrupt(err, "counts do not fit the body");
	int rv = DRIFT_ENOMEM;
	t.segments = drift_mallocarray(t.nsegments ? t.nsegments : 1, 8);
	t.buckets = drift_mallocarray(t.nbuckets ? t.nbuckets : 1,
				      sizeof(drift_manifest_bucket));
	uint32_t *slots = drift_mallocarray(t.nbuckets ? t.nbuckets : 1, 4);
	if (t.segments == NULL || t.buckets == NULL || slots == NULL)
		goto fail;
	for (uint32_t i = 0; i < t.nsegments; i++, p += 8) {
		t.segments[i] = drift_load_le64(p);
		if ((i > 0 && t.segments[i] <= t.segments[i - 1]) ||
		    t.segments[i] >= t.next_segment_id) {
			rv = corrupt(err, "segment ids out of order");
			goto fail;
		}
	}
	for (uint32_t i = 0; i < t.nbuckets; i++, p += 16) {
		drift_manifest_bucket *b = &t.buckets[i];
		b->slot = drift_load_le32(p);
		b->block = drift_load_le32(p + 4);
		b->segment = drift_load_le64(p + 8);
		slots[i] = b->slot;
		bool live = false;
		for (uint32_t lo = 0, hi = t.nsegments; lo < hi;) {
			uint32_t mid = lo + (hi - lo) / 2;
			if (t.segments[mid] == b->segment) {
				live = true;
				break;
			}
			if (t.segments[mid] < b->segment)
				lo = mid + 1;
			else
				hi = mid;
		}
		if (!live) {
			rv = corrupt(err, "a bucket names a segment that is "
					  "not live");
			goto fail;
		}
	}
	qsort(slots, t.nbuckets, 4, cmp_u32);
	for (uint32_t i = 1; i < t.nbuckets; i++)
		if (slots[i] == slots[i - 1]) {
			rv = corrupt(err, "a slot is listed twice");
			goto fail;
		}
	t.meta_len = drift_load_le32(p);
	p += 4;
	if ((size_t)(end - p) != t.meta_len) {
		rv = corrupt(err, "meta length does not fit the body");
		goto fail;
	}
	if (t.meta_len > 0) {
		t.meta = drift_malloc(t.meta_len);
		if (t.meta == NULL)
			goto fail;
		memcpy(t.meta, p, t.meta_len);
	}
	drift_free(slots);
	*m = t;
	return 0;
fail:
	if (rv == DRIFT_ENOMEM)
		drift_err_set(err, rv, "manifest: out of memory");
	drift_free(slots);
	drift_manifest_free(&t);
	return rv;
}

int drift_manifest_store(drift_fs *fs, const char *dir, const drift_manifest *m,
			 drift_err *err)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/MANIFEST", dir) >=
	    sizeof(path))
		return drift_err_set(err, DRIFT_EINVAL,
				     "manifest: path too long");
	uint8_t *b;
	size_t len;
	int rv = drift_manifest_encode(m, &b, &len);
	if (rv != 0)
		return drift_err_set(err, rv, "manifest: out of memory");
	rv = drift_fs_write_file_atomic(fs, path, b, len, err);
	drift_free(b);
	return rv;
}

int drift_manifest_load(drift_fs *fs, const char *dir, drift_manifest *m,
			drift_err *err)
{
	char path[4096];
	if ((size_t)snprintf(path, sizeof(path), "%s/MANIFEST", dir) >=
	    sizeof(path))
		return drift_err_set(err, DRIFT_EINVAL,
				     "manifest: path too long");
	uint8_t *b;
	size_t len;
	int rv =
		drift_fs_read_file(fs, path, DRIFT_MANIFEST_MAX, &b, &len, err);
	if (rv != 0)
		return rv;
	rv = drift_manifest_decode(b, len, m, err);
	drift_free(b);
	if (rv != 0)
		drift_err_wrap(err, rv, "%s", path);
	return rv;
}
