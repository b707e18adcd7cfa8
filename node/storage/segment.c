/*
 * The .drift segment format, version 1. All integers little endian.
 *
 *   offset 0       header page (4096 bytes)
 *   4096 ...       blocks: each starts on a page boundary; its payload is
 *                  followed by zeros up to the next page boundary
 *   F              footer (F is a multiple of 4096)
 *   ...            zeros
 *   size - 64      trailer (64 bytes); size is a multiple of 4096
 *
 * Header page:
 *    0  8  magic "DRIFTSEG"
 *    8  4  format version (1)
 *   12  4  header size (4096)
 *   16  8  segment id
 *   24  8  creation time, ns since the Unix epoch
 *   32 24  reserved, zero
 *   56  8  XXH3-64 of bytes 0..55
 *   64     zeros up to 4096
 *
 * Footer (footer_length bytes at F):
 *    0  8  magic "DRIFTFTR"
 *    8  4  block count B
 *   12  4  section count S
 *   16     B block entries of 48 bytes:
 *            0 kind u32, 4 flags u32, 8 key u64, 16 aux u64,
 *           24 offset u64, 32 length u64, 40 XXH3-64 of the payload u64
 *          S section entries of 24 bytes:
 *            0 kind u32, 4 reserved u32 (0), 8 offset u64 (from F),
 *           16 length u64
 *          section bytes
 *
 * Trailer (last 64 bytes of the file):
 *    0  8  magic "DRIFTEND"
 *    8  4  format version
 *   12  4  flags (0)
 *   16  8  segment id (equal to the header's)
 *   24  8  footer offset F
 *   32  8  footer length
 *   40  8  XXH3-64 of the footer bytes
 *   48  8  block count (equal to the footer's)
 *   56  8  XXH3-64 of trailer bytes 0..55
 *
 * Validity, checked by the reader on open; any failure is DRIFT_ECORRUPT with
 * the file and the broken rule in the message, and nothing of the file is
 * trusted:
 * - the size is a multiple of 4096 and at least two pages (header, trailer);
 * - header magic and checksum hold; the version is known (a newer one is
 *   DRIFT_ENOTSUP: written by a newer Drift, not damaged);
 * - trailer magic and checksum hold, ids and versions agree with the header;
 * - the footer lies page-aligned between the header and the trailer, is at
 *   most 256 MiB, and its checksum holds;
 * - block entries are page-aligned, in increasing order, do not overlap one
 *   another or the footer, and are at most 1 GiB each;
 * - section entries lie inside the footer, after the entries; kinds are
 *   unique.
 * A block's payload is checked against its checksum each time it is read;
 * a mismatch is DRIFT_ECORRUPT for that read (the rest of the file may still
 * be read). Bytes of the padding are covered by no checksum: they are never
 * read as data, so damage there is harmless.
 */
#include "node/storage/segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "common/abuf.h"
#include "common/alloc.h"
#include "common/clock.h"
#include "common/endian.h"
#include "common/hash.h"

#define PAGE DRIFT_SEGMENT_PAGE
#define HEADER_MAGIC "DRIFTSEG"
#define FOOTER_MAGIC "DRIFTFTR"
#define TRAILER_MAGIC "DRIFTEND"
#define TRAILER_SIZE 64
#define BLOCK_ENTRY 48
#define SECTION_ENTRY 24
#define FOOTER_FIXED 16

typedef struct section {
	uint32_t kind;
	uint8_t *data;
	size_t len;
} section;

struct drift_segment_writer {
	drift_fs *fs;
	char *path;
	char *tmp;
	int fd;
	uint64_t id;
	uint64_t end; /* where the next block goes */
	drift_block_info *blocks;
	size_t nblocks, cap;
	section *sections;
	size_t nsections;
	bool failed;
};

struct drift_segment_reader {
	drift_fs *fs;
	char *path;
	int fd;
	uint64_t id;
	uint8_t *footer; /* the whole footer, sections point into it */
	drift_block_info *blocks;
	uint32_t nblocks;
	section *sections;
	uint32_t nsections;
};

static const uint8_t zeros[PAGE];

/* ---- Writer ------------------------------------------------------------- */

int drift_segw_create(drift_fs *fs, const char *path, uint64_t segment_id,
		      drift_segment_writer **out, drift_err *err)
{
	drift_segment_writer *w = drift_calloc(1, sizeof(*w));
	size_t plen = strlen(path);
	if (w == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "creating segment %s",
				     path);
	w->fd = -1;
	w->fs = fs;
	w->id = segment_id;
	w->path = drift_strdup(path);
	w->tmp = drift_malloc(plen + 5);
	int rv;
	if (w->path == NULL || w->tmp == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "creating segment %s",
				   path);
		goto fail;
	}
	memcpy(w->tmp, path, plen);
	memcpy(w->tmp + plen, ".tmp", 5);

	int fd = fs->open(fs, w->tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0) {
		rv = drift_err_errno(err, -fd, "creating segment %s", w->tmp);
		goto fail;
	}
	w->fd = fd;

	uint8_t header[PAGE] = {0};
	memcpy(header, HEADER_MAGIC, 8);
	drift_store_le32(header + 8, DRIFT_SEGMENT_VERSION);
	drift_store_le32(header + 12, PAGE);
	drift_store_le64(header + 16, segment_id);
	drift_store_le64(header + 24, drift_clock_wall(drift_clock_system()));
	drift_store_le64(header + 56, drift_checksum64(header, 56));
	rv = drift_fs_write_all(fs, fd, header, PAGE, w->tmp, err);
	if (rv != 0)
		goto fail;
	w->end = PAGE;
	*out = w;
	return 0;
fail:
	drift_segw_abort(w);
	return rv;
}

int drift_segw_add_block(drift_segment_writer *w, const drift_block_desc *desc,
			 const void *data, size_t len, uint32_t *index,
			 drift_err *err)
{
	if (w->failed)
		return drift_err_set(err, DRIFT_EINVAL,
				     "segment %s: writer failed earlier",
				     w->tmp);
	if (len > DRIFT_SEGMENT_MAX_BLOCK)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "segment %s: block of %zu bytes is over "
				     "the 1 GiB limit",
				     w->tmp, len);
	if (w->nblocks == UINT32_MAX)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "segment %s: too many blocks", w->tmp);
	if (w->nblocks == w->cap) {
		size_t cap = w->cap ? 2 * w->cap : 16;
		drift_block_info *b =
			drift_realloc(w->blocks, cap * sizeof(*b));
		if (b == NULL)
			return drift_err_set(err, DRIFT_ENOMEM,
					     "segment %s: block index", w->tmp);
		w->blocks = b;
		w->cap = cap;
	}
	/* Write the payload, then zeros to the page boundary. A failure leaves
	 * a partial file that the footer never describes. */
	int rv = drift_fs_write_all(w->fs, w->fd, data, len, w->tmp, err);
	size_t pad = drift_align_up(len, PAGE) - len;
	if (rv == 0 && pad > 0)
		rv = drift_fs_write_all(w->fs, w->fd, zeros, pad, w->tmp, err);
	if (rv != 0) {
		w->failed = true;
		return rv;
	}
	drift_block_info *b = &w->blocks[w->nblocks];
	b->desc = *desc;
	b->offset = w->end;
	b->length = len;
	b->checksum = drift_checksum64(data, len);
	w->end += len + pad;
	if (index != NULL)
		*index = (uint32_t)w->nblocks;
	w->nblocks++;
	return 0;
}

int drift_segw_add_section(drift_segment_writer *w, uint32_t kind,
			   const void *data, size_t len, drift_err *err)
{
	for (size_t i = 0; i < w->nsections; i++)
		if (w->sections[i].kind == kind)
			return drift_err_set(err, DRIFT_EEXIST,
					     "segment %s: section %u given "
					     "twice",
					     w->tmp, kind);
	if (len > DRIFT_SEGMENT_MAX_FOOTER / 2)
		return drift_err_set(err, DRIFT_ELIMIT,
				     "segment %s: section of %zu bytes is too "
				     "large",
				     w->tmp, len);
	section *s =
		drift_realloc(w->sections, (w->nsections + 1) * sizeof(*s));
	if (s == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "segment %s", w->tmp);
	w->sections = s;
	uint8_t *copy = drift_malloc(len);
	if (copy == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "segment %s", w->tmp);
	if (len > 0)
		memcpy(copy, data, len);
	s[w->nsections++] = (section){kind, copy, len};
	return 0;
}

/* Serialises the footer into b. */
static int build_footer(const drift_segment_writer *w, drift_abuf *b)
{
	size_t fixed = FOOTER_FIXED + w->nblocks * BLOCK_ENTRY +
		       w->nsections * SECTION_ENTRY;
	size_t total = fixed;
	for (size_t i = 0; i < w->nsections; i++)
		total += w->sections[i].len;
	if (total > DRIFT_SEGMENT_MAX_FOOTER)
		return DRIFT_ELIMIT;
	int rv = drift_abuf_append(b, NULL, total);
	if (rv != 0)
		return rv;
	uint8_t *p = b->data;
	memcpy(p, FOOTER_MAGIC, 8);
	drift_store_le32(p + 8, (uint32_t)w->nblocks);
	drift_store_le32(p + 12, (uint32_t)w->nsections);
	p += FOOTER_FIXED;
	for (size_t i = 0; i < w->nblocks; i++, p += BLOCK_ENTRY) {
		const drift_block_info *bi = &w->blocks[i];
		drift_store_le32(p, bi->desc.kind);
		drift_store_le32(p + 4, bi->desc.flags);
		drift_store_le64(p + 8, bi->desc.key);
		drift_store_le64(p + 16, bi->desc.aux);
		drift_store_le64(p + 24, bi->offset);
		drift_store_le64(p + 32, bi->length);
		drift_store_le64(p + 40, bi->checksum);
	}
	uint64_t off = fixed;
	for (size_t i = 0; i < w->nsections; i++, p += SECTION_ENTRY) {
		drift_store_le32(p, w->sections[i].kind);
		drift_store_le32(p + 4, 0);
		drift_store_le64(p + 8, off);
		drift_store_le64(p + 16, w->sections[i].len);
		if (w->sections[i].len > 0)
			memcpy(b->data + off, w->sections[i].data,
			       w->sections[i].len);
		off += w->sections[i].len;
	}
	return 0;
}

static void writer_free(drift_segment_writer *w)
{
	for (size_t i = 0; i < w->nsections; i++)
		drift_free(w->sections[i].data);
	drift_free(w->sections);
	drift_free(w->blocks);
	drift_free(w->path);
	drift_free(w->tmp);
	drift_free(w);
}

int drift_segw_finish(drift_segment_writer *w, drift_err *err)
{
	drift_fs *fs = w->fs;
	drift_abuf footer;
	drift_abuf_init(&footer, DRIFT_ALIGN_CACHE);
	int rv;
	if (w->failed) {
		rv = drift_err_set(err, DRIFT_EINVAL,
				   "segment %s: writer failed earlier", w->tmp);
		goto fail;
	}
	/* The blocks reach the disk before the footer that describes them. */
	rv = fs->fdatasync(fs, w->fd);
	if (rv < 0) {
		rv = drift_err_errno(err, -rv, "syncing segment %s", w->tmp);
		goto fail;
	}
	rv = build_footer(w, &footer);
	if (rv != 0) {
		rv = drift_err_set(err, rv, "segment %s: building the footer",
				   w->tmp);
		goto fail;
	}
	uint64_t footer_off = w->end;
	uint64_t flen = footer.len;
	uint64_t fsum = drift_checksum64(footer.data, footer.len);
	/* Pad so that the trailer ends the file on a page boundary. */
	size_t used = footer.len + TRAILER_SIZE;
	rv = drift_abuf_append(&footer, NULL,
			       drift_align_up(used, PAGE) - used);
	uint8_t trailer[TRAILER_SIZE] = {0};
	memcpy(trailer, TRAILER_MAGIC, 8);
	drift_store_le32(trailer + 8, DRIFT_SEGMENT_VERSION);
	drift_store_le64(trailer + 16, w->id);
	drift_store_le64(trailer + 24, footer_off);
	drift_store_le64(trailer + 32, flen);
	drift_store_le64(trailer + 40, fsum);
	drift_store_le64(trailer + 48, w->nblocks);
	drift_store_le64(trailer + 56, drift_checksum64(trailer, 56));
	if (rv == 0)
		rv = drift_abuf_append(&footer, trailer, TRAILER_SIZE);
	if (rv != 0) {
		rv = drift_err_set(err, rv, "segment %s: building the footer",
				   w->tmp);
		goto fail;
	}
	rv = drift_fs_write_all(fs, w->fd, footer.data, footer.len, w->tmp,
				err);
	if (rv != 0)
		goto fail;
	rv = fs->fsync(fs, w->fd);
	if (rv < 0) {
		rv = drift_err_errno(err, -rv, "syncing segment %s", w->tmp);
		goto fail;
	}
	rv = fs->close(fs, w->fd);
	w->fd = -1;
	if (rv < 0) {
		rv = drift_err_errno(err, -rv, "closing segment %s", w->tmp);
		goto fail;
	}
	rv = fs->rename(fs, w->tmp, w->path);
	if (rv < 0) {
		rv = drift_err_errno(err, -rv, "renaming %s", w->tmp);
		goto fail;
	}
	char dir[4096];
	drift_fs_dirname(w->path, dir, sizeof(dir));
	rv = drift_fs_fsync_dir(fs, dir, err);
	drift_abuf_free(&footer);
	writer_free(w);
	return rv;
fail:
	drift_abuf_free(&footer);
	drift_segw_abort(w);
	return rv;
}

void drift_segw_abort(drift_segment_writer *w)
{
	if (w == NULL)
		return;
	if (w->fd >= 0)
		w->fs->close(w->fs, w->fd);
	if (w->tmp != NULL)
		w->fs->unlink(w->fs, w->tmp);
	writer_free(w);
}

/* ---- Reader ------------------------------------------------------------- */

/* Reports damage: "segment <path>: <what>", DRIFT_ECORRUPT. */
__attribute__((format(printf, 3, 4))) static int
corrupt(const drift_segment_reader *r, drift_err *err, const char *fmt, ...)
{
	char what[256];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	return drift_err_set(err, DRIFT_ECORRUPT, "segment %s: %s", r->path,
			     what);
}

static int check_header(drift_segment_reader *r, const uint8_t *h,
			drift_err *err)
{
	if (memcmp(h, HEADER_MAGIC, 8) != 0)
		return corrupt(r, err, "bad header magic: not a segment file");
	if (drift_load_le64(h + 56) != drift_checksum64(h, 56))
		return corrupt(r, err, "header checksum mismatch");
	uint32_t version = drift_load_le32(h + 8);
	if (version > DRIFT_SEGMENT_VERSION)
		return drift_err_set(err, DRIFT_ENOTSUP,
				     "segment %s: format version %u is newer "
				     "than this build (%u)",
				     r->path, version, DRIFT_SEGMENT_VERSION);
	if (version == 0 || drift_load_le32(h + 12) != PAGE)
		return corrupt(r, err, "bad header version or size");
	r->id = drift_load_le64(h + 16);
	return 0;
}

/* Validates the trailer against the header and the file size; gives the
 * footer's place. */
static int check_trailer(drift_segment_reader *r, const uint8_t *t,
			 uint64_t size, uint64_t *foff, uint64_t *flen,
			 uint64_t *fsum, uint64_t *nblocks, drift_err *err)
{
	if (memcmp(t, TRAILER_MAGIC, 8) != 0)
		return corrupt(r, err,
			       "bad trailer magic: the file is "
			       "incomplete or damaged");
	if (drift_load_le64(t + 56) != drift_checksum64(t, 56))
		return corrupt(r, err, "trailer checksum mismatch");
	if (drift_load_le32(t + 8) != DRIFT_SEGMENT_VERSION ||
	    drift_load_le32(t + 12) != 0)
		return corrupt(r, err, "trailer version or flags disagree");
	if (drift_load_le64(t + 16) != r->id)
		return corrupt(r, err,
			       "trailer segment id disagrees with the "
			       "header");
	*foff = drift_load_le64(t + 24);
	*flen = drift_load_le64(t + 32);
	*fsum = drift_load_le64(t + 40);
	*nblocks = drift_load_le64(t + 48);
	if (*foff < PAGE || *foff % PAGE != 0 ||
	    *flen > DRIFT_SEGMENT_MAX_FOOTER || *flen < FOOTER_FIXED ||
	    *foff > size - TRAILER_SIZE || *flen > size - TRAILER_SIZE - *foff)
		return corrupt(r, err, "footer place out of bounds");
	return 0;
}

static int parse_footer(drift_segment_reader *r, uint64_t foff, uint64_t flen,
			uint64_t nblocks, drift_err *err)
{
	const uint8_t *f = r->footer;
	if (memcmp(f, FOOTER_MAGIC, 8) != 0)
		return corrupt(r, err, "bad footer magic");
	uint64_t nb = drift_load_le32(f + 8);
	uint64_t ns = drift_load_le32(f + 12);
	if (nb != nblocks)
		return corrupt(r, err, "block count disagrees with trailer");
	uint64_t entries = FOOTER_FIXED + nb * BLOCK_ENTRY + ns * SECTION_ENTRY;
	if (entries > flen)
		return corrupt(r, err, "footer too short for its entries");
	r->blocks = drift_mallocarray(nb ? nb : 1, sizeof(*r->blocks));
	r->sections = drift_mallocarray(ns ? ns : 1, sizeof(*r->sections));
	if (r->blocks == NULL || r->sections == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "segment %s", r->path);

	const uint8_t *p = f + FOOTER_FIXED;
	uint64_t next = PAGE; /* blocks start after the header page */
	for (uint64_t i = 0; i < nb; i++, p += BLOCK_ENTRY) {
		drift_block_info *b = &r->blocks[i];
		b->desc.kind = drift_load_le32(p);
		b->desc.flags = drift_load_le32(p + 4);
		b->desc.key = drift_load_le64(p + 8);
		b->desc.aux = drift_load_le64(p + 16);
		b->offset = drift_load_le64(p + 24);
		b->length = drift_load_le64(p + 32);
		b->checksum = drift_load_le64(p + 40);
		if (b->offset % PAGE != 0 || b->offset < next ||
		    b->length > DRIFT_SEGMENT_MAX_BLOCK || b->offset > foff ||
		    b->length > foff - b->offset)
			return corrupt(
				r, err,
				"block %llu out of bounds or overlapping",
				(unsigned long long)i);
		next = b->offset + drift_align_up(b->length, PAGE);
		if (next > foff)
			return corrupt(r, err, "block %llu overlaps the footer",
				       (unsigned long long)i);
	}
	r->nblocks = (uint32_t)nb;
	for (uint64_t i = 0; i < ns; i++, p += SECTION_ENTRY) {
		section *s = &r->sections[i];
		s->kind = drift_load_le32(p);
		uint64_t off = drift_load_le64(p + 8);
		uint64_t len = drift_load_le64(p + 16);
		if (drift_load_le32(p + 4) != 0 || off < entries ||
		    off > flen || len > flen - off)
			return corrupt(r, err, "section %llu out of bounds",
				       (unsigned long long)i);
		for (uint64_t j = 0; j < i; j++)
			if (r->sections[j].kind == s->kind)
				return corrupt(r, err,
					       "section kind %u appears twice",
					       s->kind);
		s->data = r->footer + off;
		s->len = (size_t)len;
	}
	r->nsections = (uint32_t)ns;
	return 0;
}

int drift_segr_open(drift_fs *fs, const char *path, drift_segment_reader **out,
		    drift_err *err)
{
	drift_segment_reader *r = drift_calloc(1, sizeof(*r));
	if (r == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "opening segment %s",
				     path);
	r->fs = fs;
	r->fd = -1;
	int rv;
	r->path = drift_strdup(path);
	if (r->path == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "opening segment %s",
				   path);
		goto fail;
	}
	r->fd = fs->open(fs, path, O_RDONLY, 0);
	if (r->fd < 0) {
		rv = drift_err_errno(err, -r->fd, "opening segment %s", path);
		goto fail;
	}
	int64_t ssize = fs->size(fs, r->fd);
	if (ssize < 0) {
		rv = drift_err_errno(err, (int)-ssize, "segment %s", path);
		goto fail;
	}
	uint64_t size = (uint64_t)ssize;
	if (size < 2 * PAGE || size % PAGE != 0) {
		rv = corrupt(r, err,
			     "size %llu is not a whole number of pages: "
			     "truncated or not a segment",
			     (unsigned long long)size);
		goto fail;
	}
	uint8_t head[64], tail[TRAILER_SIZE];
	rv = drift_fs_pread_exact(fs, r->fd, head, sizeof(head), 0, path, err);
	if (rv == 0)
		rv = check_header(r, head, err);
	if (rv == 0)
		rv = drift_fs_pread_exact(fs, r->fd, tail, TRAILER_SIZE,
					  size - TRAILER_SIZE, path, err);
	uint64_t foff = 0, flen = 0, fsum = 0, nblocks = 0;
	if (rv == 0)
		rv = check_trailer(r, tail, size, &foff, &flen, &fsum, &nblocks,
				   err);
	if (rv != 0)
		goto fail;
	r->footer = drift_malloc((size_t)flen);
	if (r->footer == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "segment %s footer",
				   path);
		goto fail;
	}
	rv = drift_fs_pread_exact(fs, r->fd, r->footer, (size_t)flen, foff,
				  path, err);
	if (rv != 0)
		goto fail;
	if (drift_checksum64(r->footer, (size_t)flen) != fsum) {
		rv = corrupt(r, err, "footer checksum mismatch");
		goto fail;
	}
	rv = parse_footer(r, foff, flen, nblocks, err);
	if (rv != 0)
		goto fail;
	*out = r;
	return 0;
fail:
	drift_segr_close(r);
	return rv;
}

void drift_segr_close(drift_segment_reader *r)
{
	if (r == NULL)
		return;
	if (r->fd >= 0)
		r->fs->close(r->fs, r->fd);
	drift_free(r->blocks);
	drift_free(r->sections);
	drift_free(r->footer);
	drift_free(r->path);
	drift_free(r);
}

uint64_t drift_segr_id(const drift_segment_reader *r)
{
	return r->id;
}

uint32_t drift_segr_block_count(const drift_segment_reader *r)
{
	return r->nblocks;
}

const drift_block_info *drift_segr_block(const drift_segment_reader *r,
					 uint32_t i)
{
	return i < r->nblocks ? &r->blocks[i] : NULL;
}

int drift_segr_verify_block(const drift_segment_reader *r, uint32_t i,
			    const void *buf, drift_err *err)
{
	const drift_block_info *b = &r->blocks[i];
	if (drift_checksum64(buf, (size_t)b->length) != b->checksum)
		return corrupt(r, err, "block %u checksum mismatch", i);
	return 0;
}

int drift_segr_read_block(drift_segment_reader *r, uint32_t i, void *buf,
			  drift_err *err)
{
	if (i >= r->nblocks)
		return drift_err_set(err, DRIFT_EINVAL,
				     "segment %s has no block %u", r->path, i);
	const drift_block_info *b = &r->blocks[i];
	int rv = drift_fs_pread_exact(r->fs, r->fd, buf, (size_t)b->length,
				      b->offset, r->path, err);
	if (rv != 0)
		return rv;
	return drift_segr_verify_block(r, i, buf, err);
}

int drift_segr_section(const drift_segment_reader *r, uint32_t kind,
		       const void **data, size_t *len)
{
	for (uint32_t i = 0; i < r->nsections; i++) {
		if (r->sections[i].kind == kind) {
			*data = r->sections[i].data;
			*len = r->sections[i].len;
			return 0;
		}
	}
	return DRIFT_ENOENT;
}

int drift_segr_fd(const drift_segment_reader *r)
{
	return r->fd;
}
