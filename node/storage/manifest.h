/*
 * The manifest of a shard: which segments and which bucket blocks make up
 * its L1, and how far the write-ahead log is covered by them.
 *
 * It lives in one file, <dir>/MANIFEST, replaced atomically for every new
 * version (write MANIFEST.tmp, fsync, rename, fsync the directory:
 * drift_fs_write_file_atomic), so a crash leaves either the old version or
 * the new one, never a mix. The generation grows by one per version. The
 * byte layout and what the reader does with damage are at the top of
 * manifest.c.
 *
 * Recovery rule: a shard opens the manifest, opens every segment it names,
 * loads the buckets it lists, then replays the WAL records with sequence
 * numbers above wal_seq. Segment files that the manifest does not name are
 * garbage from a flush that did not finish (or from before a GC), and are
 * deleted.
 */
#ifndef DRIFT_NODE_MANIFEST_H
#define DRIFT_NODE_MANIFEST_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/fs.h"

#define DRIFT_MANIFEST_VERSION 1
#define DRIFT_MANIFEST_MAX (UINT64_C(256) << 20)

/* Where the newest version of one bucket is. */
typedef struct drift_manifest_bucket {
	uint32_t slot;	  /* the L1 slot the bucket occupies */
	uint32_t block;	  /* block index in its segment */
	uint64_t segment; /* segment id */
} drift_manifest_bucket;

typedef struct drift_manifest {
	uint64_t generation;
	uint64_t wal_seq; /* WAL records <= this are durable in L1 */
	uint64_t next_segment_id;
	uint32_t nsegments;
	uint64_t *segments; /* live segment ids, ascending */
	uint32_t nbuckets;
	drift_manifest_bucket *buckets;
	size_t meta_len;
	uint8_t *meta; /* opaque: the owner's configuration record */
} drift_manifest;

/* An empty manifest (generation 0, nothing live). */
void drift_manifest_init(drift_manifest *m);
void drift_manifest_free(drift_manifest *m);

/* Serialises m into a new buffer (drift_free). 0 or DRIFT_ENOMEM. */
int drift_manifest_encode(const drift_manifest *m, uint8_t **out, size_t *len);

/* Parses bytes into *m (initialised by this call; freed by the caller on
 * success only). 0, DRIFT_ECORRUPT (the message says what is wrong),
 * DRIFT_ENOTSUP (a newer format version), DRIFT_ENOMEM. */
int drift_manifest_decode(const uint8_t *in, size_t len, drift_manifest *m,
			  drift_err *err);

/* Writes m as <dir>/MANIFEST, atomically and durably. On failure the old
 * manifest stays in place. */
int drift_manifest_store(drift_fs *fs, const char *dir, const drift_manifest *m,
			 drift_err *err);

/* Reads <dir>/MANIFEST. DRIFT_ENOENT when there is none (a new shard); the
 * decode errors otherwise, with the path in the message. */
int drift_manifest_load(drift_fs *fs, const char *dir, drift_manifest *m,
			drift_err *err);

#endif /* DRIFT_NODE_MANIFEST_H */
