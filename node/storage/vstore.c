/*
 * drift_vstore: row-addressed full-precision vectors (see vstore.h).
 *
 * Scratch file layout: row r is dim float32 (host order) at offset
 * r * 4 * dim. No header, no checksum: the file is created empty by this
 * process, unlinked at once and never read by another one, so there is no
 * recovery; the segments hold the durable copy.
 *
 * Memory mode keeps rows in chunks of CHUNK_ROWS behind a chunk table. The
 * table grows by copy; old tables stay allocated until close, so a reader
 * that loaded the previous table pointer still finds every chunk it can
 * name (chunks themselves never move; those above the high-water mark are
 * freed, and hold no row a reader may name).
 *
 * File mode's row cache is an anonymous mapping (drift_reserve) that keeps,
 * per page, how many cache entries overlapping it hold a row: when the
 * count falls to zero the page is given back with MADV_DONTNEED, so the
 * cache holds pages only where rows in use are cached.
 */
#include "node/storage/vstore.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/abuf.h"
#include "common/alloc.h"

#define CHUNK_ROWS 256u
#define CACHE_STRIPES 64u
#define READ_BATCH 64u

typedef struct old_table {
	struct old_table *next;
	float **chunks;
} old_table;

struct drift_vstore {
	uint32_t dim;
	size_t row_bytes;
	/* High-water mark: rows 0..nrows-1 exist, and row nrows-1 is in use
	 * (released rows at the top are given up at once). */
	uint64_t nrows;
	/* Released rows below it: a bitmap (bit r set: row r free) of
	 * freewords words, the lowest taken first; none below word lowword. */
	uint64_t *freebits;
	size_t freewords, lowword;
	uint64_t nfreed;
	/* nrows and nfreed for drift_vstore_stats_get, which may race the
	 * writer (stats are read under the L1 read lock, not l1mu). */
	_Atomic uint64_t stat_rows, stat_free;
	/* Memory mode. */
	_Atomic(float **) chunks;
	size_t nchunks, chunkcap; /* chunks 0..nchunks-1 allocated */
	old_table *old;
	/* File mode: a directory (a copy) and, once the rows outgrow the
	 * cache, the scratch file in it; until then the cache holds every
	 * row (no two rows share an entry) and fd is -1. */
	bool file;
	char *dir;
	_Atomic int fd;
	size_t nent;   /* cache entries */
	uint32_t *tag; /* row + 1, or 0 for an empty entry (rows < 2^32 - 1) */
	float *data;   /* nent * dim, from drift_reserve */
	size_t data_bytes, tag_bytes, live_bytes;
	/* Pages of data: in each, how many entries that overlap it hold a
	 * row; a page whose count falls to 0 goes back to the kernel. Entries
	 * lock in groups of group_ents (a whole number of pages, so that no
	 * page has entries of two groups), group g with stripe[g % STRIPES]. */
	size_t page, group_ents;
	uint16_t *plive;
	_Atomic uint64_t pages_held;
	pthread_mutex_t stripe[CACHE_STRIPES];
	atomic_uint_fast64_t hits, misses, reads;
};

static size_t gcd(size_t a, size_t b)
{
	while (b != 0) {
		size_t t = a % b;
		a = b;
		b = t;
	}
	return a;
}

static int make_file(const drift_vstore *vs, int *fd, drift_err *err);

int drift_vstore_open(const drift_vstore_opts *o, drift_vstore **out,
		      drift_err *err)
{
	if (o->dim == 0)
		return drift_err_set(err, DRIFT_EINVAL, "vector store: dim 0");
	drift_vstore *vs = drift_calloc(1, sizeof(*vs));
	if (vs == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "vector store");
	vs->dim = o->dim;
	vs->row_bytes = (size_t)o->dim * sizeof(float);
	vs->fd = -1;
	for (unsigned i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_init(&vs->stripe[i], NULL);
	int rv;
	if (o->dir == NULL) {
		*out = vs;
		return 0;
	}
	vs->file = true;
	vs->dir = drift_strdup(o->dir);
	if (vs->dir == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "vector store");
		goto fail;
	}
	if (strlen(o->dir) > 4000) {
		rv = drift_err_set(err, DRIFT_EINVAL,
				   "vector store: directory name too long");
		goto fail;
	}
	if (access(o->dir, W_OK | X_OK) != 0) {
		rv = drift_err_errno(err, errno, "vector store: directory %s",
				     o->dir);
		goto fail;
	}
	vs->nent = o->cache_bytes / vs->row_bytes;
	if (vs->nent >= UINT32_MAX)
		vs->nent = UINT32_MAX - 1;
	if (vs->nent > 0) {
		long pg = sysconf(_SC_PAGESIZE);
		vs->page = pg > 0 ? (size_t)pg : 4096;
		vs->group_ents = vs->page / gcd(vs->row_bytes, vs->page);
		vs->data_bytes = vs->nent * vs->row_bytes;
		size_t npages = (vs->data_bytes + vs->page - 1) / vs->page;
		vs->tag_bytes = vs->nent * sizeof(uint32_t);
		vs->live_bytes = npages * sizeof(uint16_t);
		/* Reserved, not allocated: only what rows touch is
		 * resident. */
		vs->data = drift_reserve(vs->data_bytes);
		vs->tag = drift_reserve(vs->tag_bytes);
		vs->plive = drift_reserve(vs->live_bytes);
		if (vs->tag == NULL || vs->data == NULL || vs->plive == NULL) {
			rv = drift_err_set(err, DRIFT_ENOMEM,
					   "vector store: row cache of %zu "
					   "bytes",
					   o->cache_bytes);
			goto fail;
		}
	}
	/* Without a cache every row goes to the file from the start. */
	int fd;
	if (vs->nent == 0) {
		if ((rv = make_file(vs, &fd, err)) != 0)
			goto fail;
		atomic_store(&vs->fd, fd);
	}
	*out = vs;
	return 0;
fail:
	drift_vstore_close(vs);
	return rv;
}

void drift_vstore_close(drift_vstore *vs)
{
	if (vs == NULL)
		return;
	float **ch = atomic_load(&vs->chunks);
	for (size_t i = 0; i < vs->nchunks; i++)
		drift_free(ch[i]);
	drift_free(ch);
	while (vs->old != NULL) {
		old_table *t = vs->old;
		vs->old = t->next;
		drift_free(t->chunks);
		drift_free(t);
	}
	if (vs->fd >= 0)
		close(vs->fd);
	drift_free(vs->dir);
	drift_unreserve(vs->tag, vs->tag_bytes);
	drift_unreserve(vs->data, vs->data_bytes);
	drift_unreserve(vs->plive, vs->live_bytes);
	drift_free(vs->freebits);
	for (unsigned i = 0; i < CACHE_STRIPES; i++)
		pthread_mutex_destroy(&vs->stripe[i]);
	drift_free(vs);
}

/* ---- Memory mode -------------------------------------------------------- */

static inline float *mem_row(float **chunks, uint32_t dim, uint64_t r)
{
	return chunks[r / CHUNK_ROWS] + (size_t)(r % CHUNK_ROWS) * dim;
}

/* Makes chunks exist for rows below want. */
static int mem_reserve(drift_vstore *vs, uint64_t want)
{
	size_t need = (size_t)((want + CHUNK_ROWS - 1) / CHUNK_ROWS);
	float **tbl = atomic_load(&vs->chunks);
	if (need > vs->chunkcap) {
		size_t cap = vs->chunkcap ? vs->chunkcap * 2 : 16;
		while (cap < need)
			cap *= 2;
		float **nt = drift_calloc(cap, sizeof(*nt));
		old_table *ot = drift_malloc(sizeof(*ot));
		if (nt == NULL || ot == NULL) {
			drift_free(nt);
			drift_free(ot);
			return DRIFT_ENOMEM;
		}
		if (vs->nchunks > 0)
			memcpy(nt, tbl, vs->nchunks * sizeof(*nt));
		if (tbl != NULL) {
			ot->chunks = tbl;
			ot->next = vs->old;
			vs->old = ot;
		} else {
			drift_free(ot);
		}
		atomic_store_explicit(&vs->chunks, nt, memory_order_release);
		tbl = nt;
		vs->chunkcap = cap;
	}
	while (vs->nchunks < need) {
		float *c = drift_aligned_alloc(DRIFT_ALIGN_CACHE,
					       CHUNK_ROWS * vs->row_bytes);
		if (c == NULL)
			return DRIFT_ENOMEM;
		tbl[vs->nchunks++] = c;
	}
	return 0;
}

/* Frees the chunks above the high-water mark: they hold no row in use, so
 * no reader can name them (the table keeps their slots). */
static void mem_trim(drift_vstore *vs)
{
	size_t need = (size_t)((vs->nrows + CHUNK_ROWS - 1) / CHUNK_ROWS);
	float **tbl = atomic_load(&vs->chunks);
	while (vs->nchunks > need) {
		vs->nchunks--;
		drift_free(tbl[vs->nchunks]);
		tbl[vs->nchunks] = NULL;
	}
}

/* ---- File mode: the row cache ------------------------------------------- */

static inline pthread_mutex_t *entry_lock(drift_vstore *vs, size_t e)
{
	return &vs->stripe[(e / vs->group_ents) % CACHE_STRIPES];
}

/* The pages entry e overlaps: [*p0, *p1]. */
static inline void entry_pages(const drift_vstore *vs, size_t e, size_t *p0,
			       size_t *p1)
{
	*p0 = e * vs->row_bytes / vs->page;
	*p1 = ((e + 1) * vs->row_bytes - 1) / vs->page;
}

/* Entry e (empty) now holds a row. Its group's lock held. */
static void entry_fill(drift_vstore *vs, size_t e)
{
	size_t p0, p1;
	entry_pages(vs, e, &p0, &p1);
	for (size_t p = p0; p <= p1; p++)
		if (vs->plive[p]++ == 0)
			atomic_fetch_add_explicit(&vs->pages_held, 1,
						  memory_order_relaxed);
}

/* Entry e (holding a row) is empty now: the pages it leaves without a row
 * go back to the kernel (reading as zeros if touched again). Its group's
 * lock held, so no entry of those pages is being filled meanwhile. */
static void entry_empty(drift_vstore *vs, size_t e)
{
	size_t p0, p1;
	entry_pages(vs, e, &p0, &p1);
	size_t run = 0; /* pages emptied, ending at p - 1 */
	for (size_t p = p0; p <= p1 + 1; p++) {
		if (p <= p1 && --vs->plive[p] == 0) {
			run++;
			continue;
		}
		if (run == 0)
			continue;
		madvise((char *)vs->data + (p - run) * vs->page, run * vs->page,
			MADV_DONTNEED);
		atomic_fetch_sub_explicit(&vs->pages_held, run,
					  memory_order_relaxed);
		run = 0;
	}
}

static void cache_put(drift_vstore *vs, uint32_t row, const float *v)
{
	size_t e = row % vs->nent;
	pthread_mutex_t *m = entry_lock(vs, e);
	pthread_mutex_lock(m);
	if (vs->tag[e] == 0)
		entry_fill(vs, e);
	memcpy(vs->data + e * vs->dim, v, vs->row_bytes);
	vs->tag[e] = row + 1;
	pthread_mutex_unlock(m);
}

static bool cache_get(drift_vstore *vs, uint32_t row, float *out)
{
	size_t e = row % vs->nent;
	pthread_mutex_t *m = entry_lock(vs, e);
	pthread_mutex_lock(m);
	bool hit = vs->tag[e] == row + 1;
	if (hit)
		memcpy(out, vs->data + e * vs->dim, vs->row_bytes);
	pthread_mutex_unlock(m);
	return hit;
}

/* A released row leaves the cache. */
static void cache_drop(drift_vstore *vs, uint32_t row)
{
	size_t e = row % vs->nent;
	pthread_mutex_t *m = entry_lock(vs, e);
	pthread_mutex_lock(m);
	if (vs->tag[e] == row + 1) {
		vs->tag[e] = 0;
		entry_empty(vs, e);
	}
	pthread_mutex_unlock(m);
}

/* ---- File mode: the scratch file ---------------------------------------- */

/* len bytes between buf and the scratch file at off, all of them (pwrite
 * when write, else pread): 0 or an errno (ENOSPC for a write that makes no
 * progress, EIO for a read past the end). */
static int file_io(int fd, void *buf, size_t len, uint64_t off, bool write)
{
	char *p = buf;
	while (len > 0) {
		ssize_t got = write ? pwrite(fd, p, len, (off_t)off)
				    : pread(fd, p, len, (off_t)off);
		if (got < 0 && errno == EINTR)
			continue;
		if (got < 0)
			return errno;
		if (got == 0)
			return write ? ENOSPC : EIO;
		p += got;
		len -= (size_t)got;
		off += (uint64_t)got;
	}
	return 0;
}

/* Writes count rows starting at row first from v. */
static int file_write(drift_vstore *vs, uint64_t first, const float *v,
		      size_t count, drift_err *err)
{
	int e = file_io(vs->fd, (void *)v, count * vs->row_bytes,
			first * vs->row_bytes, true);
	return e != 0 ? drift_err_errno(err, e, "vector store: writing rows")
		      : 0;
}

/* Creates the scratch file (unlinked at once: see the top) into *fd. */
static int make_file(const drift_vstore *vs, int *fd, drift_err *err)
{
	char path[4096];
	snprintf(path, sizeof(path), "%s/l1-vectors.XXXXXX", vs->dir);
	int f = mkostemp(path, O_CLOEXEC);
	if (f < 0)
		return drift_err_errno(err, errno, "vector store: creating %s",
				       path);
	unlink(path);
	*fd = f;
	return 0;
}

/* The rows outgrow the cache: the scratch file is created and takes every
 * row so far (cached, all of them: free ones are written as they are),
 * before any row can be evicted. Writer. */
static int spill(drift_vstore *vs, drift_err *err)
{
	enum { BLOCK = 256 };
	float *buf = drift_mallocarray((size_t)BLOCK * vs->dim, sizeof(float));
	if (buf == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "vector store");
	int fd, e = make_file(vs, &fd, err);
	if (e != 0) {
		drift_free(buf);
		return e;
	}
	for (uint64_t r0 = 0; r0 < vs->nrows && e == 0; r0 += BLOCK) {
		size_t c = vs->nrows - r0 < BLOCK ? vs->nrows - r0 : BLOCK;
		for (size_t i = 0; i < c; i++) {
			pthread_mutex_t *m = entry_lock(vs, r0 + i);
			pthread_mutex_lock(m);
			memcpy(buf + i * vs->dim, vs->data + (r0 + i) * vs->dim,
			       vs->row_bytes);
			pthread_mutex_unlock(m);
		}
		e = file_io(fd, buf, c * vs->row_bytes, r0 * vs->row_bytes,
			    true);
	}
	drift_free(buf);
	if (e != 0) {
		close(fd);
		return drift_err_errno(err, e, "vector store: writing rows");
	}
	atomic_store(&vs->fd, fd);
	return 0;
}

/* ---- Free rows ---------------------------------------------------------- */

static inline bool row_free(const drift_vstore *vs, uint64_t r)
{
	return (vs->freebits[r / 64] >> (r % 64)) & 1u;
}

/* Room in the bitmap for rows below want. */
static int bits_reserve(drift_vstore *vs, uint64_t want)
{
	size_t need = (size_t)((want + 63) / 64);
	if (need <= vs->freewords)
		return 0;
	size_t cap = vs->freewords ? vs->freewords : 16;
	while (cap < need)
		cap *= 2;
	uint64_t *b = drift_realloc(vs->freebits, cap * sizeof(uint64_t));
	if (b == NULL)
		return DRIFT_ENOMEM;
	memset(b + vs->freewords, 0, (cap - vs->freewords) * sizeof(uint64_t));
	vs->freebits = b;
	vs->freewords = cap;
	return 0;
}

/* The n lowest free rows into rows, ascending (n <= nfreed); they are not
 * taken yet. */
static void lowest_free(const drift_vstore *vs, size_t n, uint32_t *rows)
{
	size_t got = 0;
	for (size_t w = vs->lowword; got < n; w++) {
		uint64_t bits = vs->freebits[w];
		while (bits != 0 && got < n) {
			unsigned b = (unsigned)__builtin_ctzll(bits);
			rows[got++] = (uint32_t)(w * 64 + b);
			bits &= bits - 1;
		}
	}
}

/* ---- Append, release, read ---------------------------------------------- */

int drift_vstore_append(drift_vstore *vs, const float *v, size_t n,
			uint32_t *rows, drift_err *err)
{
	if (n == 0)
		return 0;
	size_t reuse = n < vs->nfreed ? n : (size_t)vs->nfreed;
	size_t fresh = n - reuse;
	/* Rows below 2^32 - 1, so that row + 1 fits the cache's tags. */
	if (vs->nrows + fresh >= UINT32_MAX)
		return drift_err_set(err, DRIFT_ENOSPC,
				     "vector store: more than 2^32 rows");
	if (bits_reserve(vs, vs->nrows + fresh) != 0 ||
	    (!vs->file && mem_reserve(vs, vs->nrows + fresh) != 0))
		return drift_err_set(err, DRIFT_ENOMEM,
				     "vector store: %zu rows", n);
	/* The lowest free rows first, so that the top of the store empties
	 * out as rows come and go (and L1 can pack it: l1_maint.c). Rows
	 * come out ascending. */
	lowest_free(vs, reuse, rows);
	for (size_t i = reuse; i < n; i++)
		rows[i] = (uint32_t)(vs->nrows + (i - reuse));
	int rv;
	if (vs->file && vs->fd < 0 && vs->nrows + fresh > vs->nent &&
	    (rv = spill(vs, err)) != 0)
		return rv;
	if (!vs->file) {
		float **tbl = atomic_load(&vs->chunks);
		for (size_t i = 0; i < n; i++)
			memcpy(mem_row(tbl, vs->dim, rows[i]),
			       v + i * (size_t)vs->dim, vs->row_bytes);
	} else {
		/* One write per run of adjacent rows (while the cache holds
		 * every row, none). */
		for (size_t i = 0, j; i < n && vs->fd >= 0; i = j) {
			for (j = i + 1; j < n && rows[j] == rows[j - 1] + 1;
			     j++)
				;
			rv = file_write(vs, rows[i], v + i * (size_t)vs->dim,
					j - i, err);
			if (rv != 0)
				return rv;
		}
		if (vs->nent > 0)
			for (size_t i = 0; i < n; i++)
				cache_put(vs, rows[i], v + i * (size_t)vs->dim);
	}
	for (size_t i = 0; i < reuse; i++)
		vs->freebits[rows[i] / 64] &= ~((uint64_t)1 << (rows[i] % 64));
	if (reuse > 0)
		vs->lowword = rows[reuse - 1] / 64;
	vs->nfreed -= reuse;
	vs->nrows += fresh;
	atomic_store_explicit(&vs->stat_rows, vs->nrows, memory_order_relaxed);
	atomic_store_explicit(&vs->stat_free, vs->nfreed, memory_order_relaxed);
	return 0;
}

void drift_vstore_release(drift_vstore *vs, const uint32_t *rows, size_t n)
{
	if (n == 0)
		return;
	for (size_t i = 0; i < n; i++) {
		uint32_t r = rows[i];
		assert(r < vs->nrows && !row_free(vs, r));
		vs->freebits[r / 64] |= (uint64_t)1 << (r % 64);
		if (r / 64 < vs->lowword)
			vs->lowword = r / 64;
		if (vs->nent > 0)
			cache_drop(vs, r);
	}
	vs->nfreed += n;
	/* Free rows at the top are given up: the high-water mark falls to the
	 * highest row in use. */
	uint64_t top = vs->nrows;
	while (vs->nrows > 0 && row_free(vs, vs->nrows - 1)) {
		uint64_t r = vs->nrows - 1;
		if (r % 64 == 63 && vs->freebits[r / 64] == UINT64_MAX) {
			vs->freebits[r / 64] = 0; /* a whole word at once */
			vs->nrows -= 64;
			vs->nfreed -= 64;
			continue;
		}
		vs->freebits[r / 64] &= ~((uint64_t)1 << (r % 64));
		vs->nrows--;
		vs->nfreed--;
	}
	if (vs->nrows < top) {
		if (!vs->file)
			mem_trim(vs);
		else if (vs->fd >= 0) /* on failure, the length stays */
			(void)!ftruncate(vs->fd,
					 (off_t)(vs->nrows * vs->row_bytes));
	}
	atomic_store_explicit(&vs->stat_rows, vs->nrows, memory_order_relaxed);
	atomic_store_explicit(&vs->stat_free, vs->nfreed, memory_order_relaxed);
}

static int read_file_rows(drift_vstore *vs, const uint32_t *rows, size_t n,
			  float *out);

/* Reads of at least this many rows are made in file order. */
#define SORTED_READ_MIN 64

typedef struct row_at {
	uint32_t row;
	uint32_t at; /* its place in the request */
} row_at;

static int row_at_cmp(const void *a, const void *b)
{
	uint32_t x = ((const row_at *)a)->row, y = ((const row_at *)b)->row;
	return x < y ? -1 : x > y;
}

int drift_vstore_read(drift_vstore *vs, const uint32_t *rows, size_t n,
		      float *out)
{
	uint32_t dim = vs->dim;
	if (!vs->file) {
		float **tbl =
			atomic_load_explicit(&vs->chunks, memory_order_acquire);
		for (size_t i = 0; i < n; i++)
			memcpy(out + i * dim, mem_row(tbl, dim, rows[i]),
			       vs->row_bytes);
		return 0;
	}
	/* Rows asked in any order (a bucket's members by id, say) are read
	 * in file order, so that runs of adjacent rows (each append stores
	 * its rows together) become one request each, not one per row. A
	 * few rows (a search's re-rank candidates) are read as asked:
	 * sorting them costs more than it could merge. */
	bool sorted = true;
	for (size_t i = 1; i < n && sorted; i++)
		sorted = rows[i - 1] <= rows[i];
	if (sorted || n < SORTED_READ_MIN)
		return read_file_rows(vs, rows, n, out);
	row_at *ra = drift_mallocarray(n, sizeof(row_at));
	uint32_t *sr =
		ra != NULL ? drift_mallocarray(n, sizeof(uint32_t)) : NULL;
	float *tmp =
		sr != NULL ? drift_mallocarray(n * dim, sizeof(float)) : NULL;
	if (tmp == NULL) {
		drift_free(ra);
		drift_free(sr);
		return read_file_rows(vs, rows, n, out);
	}
	for (size_t i = 0; i < n; i++)
		ra[i] = (row_at){rows[i], (uint32_t)i};
	qsort(ra, n, sizeof(row_at), row_at_cmp);
	for (size_t i = 0; i < n; i++)
		sr[i] = ra[i].row;
	int rv = read_file_rows(vs, sr, n, tmp);
	for (size_t i = 0; i < n && rv == 0; i++)
		memcpy(out + (size_t)ra[i].at * dim, tmp + i * dim,
		       vs->row_bytes);
	drift_free(ra);
	drift_free(sr);
	drift_free(tmp);
	return rv;
}

static int read_file_rows(drift_vstore *vs, const uint32_t *rows, size_t n,
			  float *out)
{
	uint32_t dim = vs->dim;
	size_t first[READ_BATCH], count[READ_BATCH];
	size_t nreq = 0;
	uint64_t hits = 0, misses = 0;
	int rv = 0;
	for (size_t i = 0; i <= n && rv == 0; i++) {
		bool flush = i == n || nreq == READ_BATCH;
		if (!flush) {
			if (vs->nent > 0 &&
			    cache_get(vs, rows[i], out + i * dim)) {
				hits++;
				continue;
			}
			misses++;
			/* Rows adjacent in the file and in the request
			 * share one read. */
			if (nreq > 0) {
				size_t j = nreq - 1;
				if (first[j] + count[j] == i &&
				    (uint64_t)rows[i - 1] + 1 == rows[i]) {
					count[j]++;
					continue;
				}
			}
			if (nreq < READ_BATCH) {
				first[nreq] = i;
				count[nreq] = 1;
				nreq++;
				continue;
			}
		}
		if (nreq == 0)
			continue;
		if (vs->fd < 0) {
			/* Every row is cached while there is no file: a miss
			 * names a row that is not in use. */
			rv = DRIFT_EIO;
			break;
		}
		/* Read by this thread, not through the disk manager: the
		 * store is a buffered scratch file whose rows are mostly in
		 * the page cache, and a search waits for them anyway, so a
		 * hand-off to another thread only adds context switches. */
		for (size_t j = 0; j < nreq && rv == 0; j++)
			rv = file_io(vs->fd, out + first[j] * dim,
				     count[j] * vs->row_bytes,
				     (uint64_t)rows[first[j]] * vs->row_bytes,
				     false) != 0
				     ? DRIFT_EIO
				     : 0;
		if (rv == 0 && vs->nent > 0)
			for (size_t j = 0; j < nreq; j++)
				for (size_t c = 0; c < count[j]; c++)
					cache_put(vs, rows[first[j] + c],
						  out + (first[j] + c) * dim);
		atomic_fetch_add_explicit(&vs->reads, nreq,
					  memory_order_relaxed);
		nreq = 0;
		if (i < n)
			i--; /* the row that did not fit: again */
	}
	atomic_fetch_add_explicit(&vs->hits, hits, memory_order_relaxed);
	atomic_fetch_add_explicit(&vs->misses, misses, memory_order_relaxed);
	return rv != 0 ? DRIFT_EIO : 0;
}

void drift_vstore_stats_get(drift_vstore *vs, drift_vstore_stats *st)
{
	uint64_t rows =
		atomic_load_explicit(&vs->stat_rows, memory_order_relaxed);
	uint64_t freed =
		atomic_load_explicit(&vs->stat_free, memory_order_relaxed);
	st->rows = rows > freed ? rows - freed : 0;
	st->free_rows = freed;
	st->hits = atomic_load(&vs->hits);
	st->misses = atomic_load(&vs->misses);
	st->disk_reads = atomic_load(&vs->reads);
	/* Memory mode: the chunks; file mode: the cache's pages that hold a
	 * row (the others were never touched or went back). */
	st->resident_bytes =
		!vs->file ? (uint64_t)vs->nchunks * CHUNK_ROWS * vs->row_bytes
			  : atomic_load_explicit(&vs->pages_held,
						 memory_order_relaxed) *
				    vs->page;
}
