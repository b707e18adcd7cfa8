/*
 * The L0 memtable of a shard: an HNSW graph (Malkov & Yashunin, "Efficient
 * and robust approximate nearest neighbor search using Hierarchical
 * Navigable Small World graphs", TPAMI 2018) over the shard's freshest
 * writes, with an id map that says what the newest write of each id is.
 *
 * Rows. Every insert appends a row (id, vector, seqno) and never changes an
 * earlier one. An id inserted again gets a new row; its old row is then
 * superseded. A delete writes a tombstone for the id. The newest entry of an
 * id (the one with the highest seqno; on equal seqnos, the later call) is
 * what drift_hnsw_lookup and the iterator report, and the only row of that
 * id a search may return. Superseded rows, and rows whose id was deleted,
 * stay in the graph as waypoints (they keep it connected) but are never
 * returned. A write older than the id's newest entry is refused with
 * DRIFT_ESTALE and changes nothing visible.
 *
 * Size. The capacity (rows) and the number of ids a delete may add (ids not
 * yet here: a delete of a vector that lives in L1 still needs a tombstone
 * here to hide it) are fixed at creation. The arenas (vectors, levels,
 * neighbour lists) are reserved then, as address space: their pages become
 * resident as rows fill them, so memory follows the rows written, not the
 * capacity, and an insert never allocates per row. The id map starts small
 * and doubles as ids arrive. Nothing is freed before drift_hnsw_free, which
 * gives it all back to the system. A full
 * memtable answers DRIFT_ELIMIT; the shard then rotates it (a fresh
 * memtable takes the writes, this one is flushed into L1 and freed once no
 * reader can still see it, by the owner's epoch scheme).
 *
 * Distances are those of the L1 index (node/l1/l1.h), computed with the same
 * kernels (common/vec.h), so the shard merges L0 and L1 hits by distance:
 * L2 is the squared Euclidean distance, IP the negated inner product, COSINE
 * 1 - cosine similarity, with every vector and query normalised (divided by
 * sqrtf(dot(v, v))) on the way in, as L1 does.
 *
 * Threads. Any number of threads may insert and delete at once, and any
 * number may search, look up and iterate at the same time. Writers take
 * short per-node locks (a row's neighbour lists) and a map lock (the commit
 * of a write); readers (search, lookup, iterate, stats) take no lock and
 * never wait. A read racing with writes sees each write either whole or not
 * at all: only valid rows, exact distances, no id twice. drift_hnsw_free
 * must not race with anything.
 */
#ifndef DRIFT_NODE_HNSW_H
#define DRIFT_NODE_HNSW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/hit.h"
#include "node/l1/l1.h" /* enum drift_metric */

/* Defaults of drift_hnsw_opts (see hnsw.c for why). */
#define DRIFT_HNSW_M 16
#define DRIFT_HNSW_EF_CONSTRUCTION 100
#define DRIFT_HNSW_EF_SEARCH 64
#define DRIFT_HNSW_MAX_M 64
#define DRIFT_HNSW_MAX_DIM 65536

typedef struct drift_hnsw_opts {
	uint32_t dim;		  /* 1..DRIFT_HNSW_MAX_DIM */
	enum drift_metric metric; /* L2, IP or COSINE */
	uint32_t capacity;	  /* rows (updates included); > 0 */
	uint32_t max_tombstones;  /* ids a delete may add; 0: capacity */
	uint32_t m;		  /* links per node and layer (2 * m on layer
				   * 0); 0: DRIFT_HNSW_M; 2..DRIFT_HNSW_MAX_M */
	uint32_t ef_construction; /* 0: DRIFT_HNSW_EF_CONSTRUCTION */
	uint64_t seed;		  /* of the node levels */
} drift_hnsw_opts;

typedef struct drift_hnsw drift_hnsw;

/* Creates an empty memtable (its arenas reserved, not yet resident). 0,
 * DRIFT_EINVAL (an option out of range; message in err) or DRIFT_ENOMEM. *out
 * is written only on success; the caller frees it with drift_hnsw_free. */
int drift_hnsw_new(const drift_hnsw_opts *opts, drift_hnsw **out,
		   drift_err *err);

/* Frees h and all it holds (NULL does nothing). No other call on h may run
 * or follow; pointers from lookup and the iterator become invalid. */
void drift_hnsw_free(drift_hnsw *h);

/* Inserts vec (dim floats, copied; normalised for COSINE) as the newest
 * entry of id with sequence number seqno. *row (may be NULL) gets the row.
 * Returns 0; DRIFT_EINVAL when vec has a NaN or infinite component, or no
 * direction (zero norm) under COSINE; DRIFT_ESTALE when the id's newest
 * entry has a higher seqno; DRIFT_ELIMIT when all rows are used;
 * DRIFT_ENOMEM when the search's scratch or the id map cannot grow. After
 * ESTALE (found late, racing another writer of the id) or ENOMEM the row
 * may be used up as a waypoint that is never returned. Thread-safe. */
int drift_hnsw_insert(drift_hnsw *h, uint64_t id, const float *vec,
		      uint64_t seqno, uint32_t *row);

/* Writes a tombstone: id's newest entry becomes a deletion with seqno, so
 * its rows here are hidden (and, by the shard, its L1 copy). An id not here
 * yet takes one of max_tombstones ids. Returns 0, DRIFT_ESTALE (a newer
 * entry is here; nothing changes), DRIFT_ELIMIT (no room for a new id) or
 * DRIFT_ENOMEM (the id map cannot grow; nothing changes).
 * Thread-safe. */
int drift_hnsw_delete(drift_hnsw *h, uint64_t id, uint64_t seqno);

enum drift_hnsw_kind {
	DRIFT_HNSW_LIVE = 1,	  /* a row */
	DRIFT_HNSW_TOMBSTONE = 2, /* a deletion */
};

/* The newest entry of an id. */
typedef struct drift_hnsw_entry {
	uint64_t id;
	uint64_t seqno;
	enum drift_hnsw_kind kind;
	uint32_t row;	  /* LIVE only */
	const float *vec; /* LIVE only: dim floats inside h (normalised for
			   * COSINE), valid and unchanged while h lives;
			   * NULL for a tombstone */
} drift_hnsw_entry;

/* The newest entry of id: 0, or DRIFT_ENOENT when id has none here (out is
 * then untouched). Lock-free. */
int drift_hnsw_lookup(const drift_hnsw *h, uint64_t id, drift_hnsw_entry *out);

/* The k best live rows for q (dim floats; normalised here for COSINE),
 * best first (drift_hit_less), with exact distances, into out (room for
 * k); *n_out gets how many (fewer than k when fewer are live or found).
 * A live row is the newest entry of its id; no id appears twice. ef is the
 * size of the search's dynamic list (Algorithm 5): 0 means
 * DRIFT_HNSW_EF_SEARCH, and an ef below k is raised to k. Returns 0;
 * DRIFT_EINVAL for k of 0, a NaN or infinite component in q, or a zero q
 * under COSINE; DRIFT_ENOMEM. Takes no lock of h and never waits for a
 * writer (its scratch, a few KiB growing with ef, comes from
 * drift_malloc). */
int drift_hnsw_search(const drift_hnsw *h, const float *q, uint32_t k,
		      uint32_t ef, drift_hit *out, size_t *n_out);

typedef struct drift_hnsw_stats {
	uint32_t capacity;   /* rows */
	uint32_t rows;	     /* rows used (live, superseded, deleted) */
	uint32_t live;	     /* ids whose newest entry is a row */
	uint32_t tombstones; /* ids whose newest entry is a tombstone */
	uint32_t ids;	     /* ids with an entry (live + tombstones) */
	uint32_t levels;     /* layers of the graph (0 when empty) */
	uint64_t bytes;	     /* memory in use: the pages the rows filled,
			      * the id map, the handle */
} drift_hnsw_stats;

/* A snapshot of the counters (each exact; together exact only when no
 * writer runs). Lock-free. */
void drift_hnsw_stats_get(const drift_hnsw *h, drift_hnsw_stats *st);

/* Rows used so far; equal to the capacity when full. Lock-free. */
uint32_t drift_hnsw_count(const drift_hnsw *h);

/* Dimension and metric of h. */
uint32_t drift_hnsw_dim(const drift_hnsw *h);
enum drift_metric drift_hnsw_metric(const drift_hnsw *h);

/* The newest entries, one per id (live rows and tombstones), for the flush
 * into L1:
 *
 *     drift_hnsw_iter it;
 *     drift_hnsw_entry e;
 *     drift_hnsw_iter_init(&it, h);
 *     while (drift_hnsw_iter_next(&it, &e))
 *             ...
 *
 * The order is that of the id map (deterministic for a given set of ids).
 * Meant for a rotated memtable, which no writer changes any more; with
 * writers running, each id still comes out once, in some state it had
 * during the walk. Lock-free; an iterator holds no resources. */
typedef struct drift_hnsw_iter {
	const drift_hnsw *h;
	const void *table; /* the id map's table when the walk began */
	size_t slot;
} drift_hnsw_iter;

void drift_hnsw_iter_init(drift_hnsw_iter *it, const drift_hnsw *h);
bool drift_hnsw_iter_next(drift_hnsw_iter *it, drift_hnsw_entry *out);

#endif /* DRIFT_NODE_HNSW_H */
