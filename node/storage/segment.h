/*
 * .drift segment files: the bytes L1 buckets live in.
 *
 * A SegmentWriter appends blocks (each starting on a 4 KiB page and padded to
 * a whole number of pages: PageBlock) and finishes the file with a footer
 * that indexes them. A SegmentReader opens a finished file, validates every
 * structural byte it depends on, and reads blocks, checking each block's
 * checksum. The byte layout, and what a reader does with each kind of
 * damage, is at the top of segment.c and in docs/segment-format.md.
 *
 * The segment layer does not interpret block contents: a block has a kind,
 * flags, a key and an aux word chosen by its writer (the L1 index stores a
 * bucket's columns as blocks keyed by bucket id), and the footer may carry
 * opaque sections (the bloom filter of the ids in the segment, metadata).
 *
 * Durability: the writer writes "<path>.tmp"; finishing syncs the blocks,
 * writes and syncs the footer, renames the file to path and syncs the
 * directory. A crash at any moment leaves either no file at path or a
 * complete one; a stray ".tmp" is garbage for the caller to delete.
 *
 * Threads: a writer is used by one thread. A reader is immutable after open:
 * any number of threads may read blocks at once.
 */
#ifndef DRIFT_NODE_SEGMENT_H
#define DRIFT_NODE_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/fs.h"

#define DRIFT_SEGMENT_VERSION 1
#define DRIFT_SEGMENT_PAGE 4096
/* Upper bounds that keep a corrupt length field from asking for absurd
 * memory: a footer is at most 256 MiB, a block at most 1 GiB. */
#define DRIFT_SEGMENT_MAX_FOOTER (UINT64_C(256) << 20)
#define DRIFT_SEGMENT_MAX_BLOCK (UINT64_C(1) << 30)

/* What a block is, as its writer describes it. */
typedef struct drift_block_desc {
	uint32_t kind;	/* the user's block type */
	uint32_t flags; /* e.g. the codec of the payload */
	uint64_t key;	/* e.g. the bucket id */
	uint64_t aux;	/* e.g. a row count or version */
} drift_block_desc;

/* A block as the footer records it. */
typedef struct drift_block_info {
	drift_block_desc desc;
	uint64_t offset;   /* file offset, a multiple of DRIFT_SEGMENT_PAGE */
	uint64_t length;   /* payload bytes (the padding is not included) */
	uint64_t checksum; /* XXH3-64 of the payload */
} drift_block_info;

/* ---- Writer ------------------------------------------------------------- */

typedef struct drift_segment_writer drift_segment_writer;

/* Starts "<path>.tmp" (replacing a stale one). segment_id is recorded in the
 * header and trailer. 0 or a DRIFT_E* code (the message names the file);
 * *out is written only on success. */
int drift_segw_create(drift_fs *fs, const char *path, uint64_t segment_id,
		      drift_segment_writer **out, drift_err *err);

/* Appends a block of len bytes (len <= DRIFT_SEGMENT_MAX_BLOCK) and returns
 * its index in *index (may be NULL). On failure the writer is unusable: the
 * caller must drift_segw_abort() it. */
int drift_segw_add_block(drift_segment_writer *w, const drift_block_desc *desc,
			 const void *data, size_t len, uint32_t *index,
			 drift_err *err);

/* Adds an opaque footer section of the given kind (one per kind). */
int drift_segw_add_section(drift_segment_writer *w, uint32_t kind,
			   const void *data, size_t len, drift_err *err);

/* Writes the footer and makes the file durable at path (see above). The
 * writer is freed whether or not this succeeds; on failure path is
 * untouched and the temporary file removed. */
int drift_segw_finish(drift_segment_writer *w, drift_err *err);

/* Gives up: closes and removes the temporary file, frees the writer. NULL is
 * allowed. */
void drift_segw_abort(drift_segment_writer *w);

/* ---- Reader ------------------------------------------------------------- */

typedef struct drift_segment_reader drift_segment_reader;

/* Opens and validates a finished segment. 0, DRIFT_ENOENT/DRIFT_EIO/...
 * from the file system, DRIFT_ECORRUPT (the message says which structure is
 * damaged), DRIFT_ENOTSUP (a newer format version), DRIFT_ENOMEM. *out is
 * written only on success. */
int drift_segr_open(drift_fs *fs, const char *path, drift_segment_reader **out,
		    drift_err *err);

void drift_segr_close(drift_segment_reader *r);

uint64_t drift_segr_id(const drift_segment_reader *r);
uint32_t drift_segr_block_count(const drift_segment_reader *r);
/* The descriptor of block i (< block_count); the pointer lives as long as
 * the reader. */
const drift_block_info *drift_segr_block(const drift_segment_reader *r,
					 uint32_t i);

/* Reads block i into buf (room for its length) and checks its checksum:
 * 0, DRIFT_ECORRUPT (checksum mismatch or short file), DRIFT_EIO. */
int drift_segr_read_block(drift_segment_reader *r, uint32_t i, void *buf,
			  drift_err *err);

/* Checks bytes read some other way (the disk manager) against block i's
 * checksum: 0 or DRIFT_ECORRUPT. */
int drift_segr_verify_block(const drift_segment_reader *r, uint32_t i,
			    const void *buf, drift_err *err);

/* The footer section of a kind: *data points into the reader (valid while
 * it is open), *len its size. DRIFT_ENOENT when absent. */
int drift_segr_section(const drift_segment_reader *r, uint32_t kind,
		       const void **data, size_t *len);

/* The file descriptor, for reads through the disk manager; owned by the
 * reader. */
int drift_segr_fd(const drift_segment_reader *r);

#endif /* DRIFT_NODE_SEGMENT_H */
