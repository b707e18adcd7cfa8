/*
 * The HNSW memtable (node/l0/hnsw.h): Malkov & Yashunin, "Efficient and robust
 * approximate nearest neighbor search using Hierarchical Navigable Small
 * World graphs", TPAMI 2018. The algorithms are cited by their number in
 * the paper.
 *
 * DESIGN
 *
 * Arenas. drift_hnsw_new reserves one mapping (drift_reserve) sized by the
 * capacity, and its pages become resident as rows fill them, in row order:
 *   vecs     capacity * stride floats (stride = dim rounded up to 16, so
 *            every row starts on a cache line)
 *   ids, seqnos, level, up_off, state   one value per row
 *   l0       layer-0 neighbour lists, capacity * (1 + 3M) uint32
 *            (room0 = 2M + M)
 *   up       the lists of layers >= 1, (1 + M + M/2) uint32 each; row r's
 *            list of layer l is up[up_off[r] + l - 1], up_off[r] taken
 *            from a bump counter when r is taken
 * A list is [count, entry 0, ..., entry max-1]. Row r's level is
 * floor(-ln(u) * mL), mL = 1 / ln(M) (the paper's choice), capped at
 * MAX_LEVEL, with u drawn from a hash of (seed, r): it depends only on the
 * seed and r, so drift_hnsw_new sums the levels of every row to come
 * without storing them, and the upper arena has exactly the size the rows
 * need. So an empty memtable costs a few pages whatever its capacity (a
 * shard's memtable is sized for 65,536 rows; a tenant may hold 100), and
 * freeing it unmaps everything it touched.
 *
 * Rows and states. A row is taken by a compare-and-swap on nrows, filled
 * (vector, id, seqno), linked into the graph (Algorithm 1, in two phases:
 * its own lists on every layer first, then the links from its neighbours
 * that make it reachable; see link_row), then committed
 * under the map lock: the id's map slot points to it and its state becomes
 * LIVE, while the row it replaces (if any) becomes DEAD. A row is PENDING
 * until its commit, DEAD when superseded, deleted or refused (ESTALE,
 * ENOMEM). Searches return LIVE rows only; every row, whatever its state,
 * is a waypoint of the graph, so deleting never disconnects it.
 *
 * Id map. Linear probing over a power-of-two table at most half full,
 * slots {key, val, tomb seqno}, never removed. val is 0 (empty), ROW |
 * row, or TOMB (seqno in the slot). Writers change it under map_lock (a
 * commit is a few stores, so one lock costs little next to the graph
 * search of an insert); readers probe it without a lock. The table starts
 * at MAP_MIN slots and doubles when half full (the writer copies it under
 * map_lock and publishes the copy with release); the tables it replaced
 * stay allocated until drift_hnsw_free (together smaller than the last),
 * so a reader still probing one reads a state the map had during its
 * call. Hashed slots are scattered, so a table sized for the capacity
 * would make every id cost a resident page.
 *
 * Concurrency (the memory-ordering rule). Writers lock a node (one of
 * NLOCKS striped mutexes, by row) to change its neighbour lists, one node
 * at a time, so they cannot deadlock; readers never lock. Every shared
 * word a reader may see while it changes is a C11 atomic, and:
 *   - a neighbour-list entry is stored with release and loaded with
 *     acquire; a list's count is stored with release after the entries
 *     it covers, and loaded with acquire before them;
 *   - a row is filled (vector, id, seqno) before its number is first
 *     stored anywhere (a list, the entry point, the map), and every such
 *     store is a release, every load of it an acquire.
 * So a reader that finds row r has a happens-before path back to r's
 * writes, whichever thread copied r into the list it read. A reader racing
 * a rewrite of a list (shrinking it, in connect) may read a mixture of the
 * old and new entries, each of them a valid row of that layer; the visited
 * set absorbs duplicates. Entry point: one atomic word (level, row), raised
 * by an insert whose level tops the graph while it holds top_lock (rare:
 * about log_M(n) times), so two such inserts do not race. Map slot: key,
 * then tomb seqno (relaxed), then val (release); readers load val with
 * acquire first. State: on an update the old row's DEAD is stored before
 * the new row's LIVE (release), and a search keeps one row per id (the
 * highest seqno) in case it read the old LIVE before the new one.
 *
 * Parameters. M = 16 (2M = 32 on layer 0; lists have room for half as many
 * again, see connect), the paper's and hnswlib's usual
 * value. ef_construction defaults to 100, not hnswlib's 200. Measured with
 * hnsw-bench on Fashion-MNIST (784-d, 20,000 rows, 500 queries), recall@10
 * at search ef 10 / 20 / 40 / 100:
 *   ef_construction  50: 0.945 / 0.983 / 0.996 / 0.9994   ~3,900 rows/s
 *   ef_construction 100: 0.955 / 0.990 / 0.998 / 0.9998   ~2,200 rows/s
 *   ef_construction 200: 0.959 / 0.991 / 0.998 / 0.9998   ~1,250 rows/s
 * (insert rates of one thread on an idle core). 100 keeps all but a few
 * thousandths of 200's recall at 1.75 times its insert rate; a memtable is
 * rebuilt at every rotation, so insert speed matters more here than the
 * last 0.1%, while 50 starts to cost recall at small ef.
 * Neighbours are chosen by Algorithm 4 without extendCandidates and
 * keepPrunedConnections, as the paper advises for data that is not
 * extremely clustered, except under IP (see select_neighbors).
 */
#include "node/l0/hnsw.h"

#include <assert.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common/abuf.h"
#include "common/alloc.h"
#include "common/hash.h"
#include "common/rand.h"
#include "common/vec.h"

#define MAX_LEVEL 15
/* Node lock stripes: an insert holds one node's lock at a time, briefly,
 * so a few hundred stripes keep writers apart on any core count. */
#define NLOCKS 256
#define MAP_MIN 64

enum { STATE_PENDING = 0, STATE_LIVE = 1, STATE_DEAD = 2 };

#define VAL_ROW (1ull << 32)
#define VAL_TOMB (2ull << 32)
#define VAL_KIND(v) ((v) & ~0xffffffffull)
#define VAL_IDX(v) ((uint32_t)(v))

/* Entry point word: 0 while empty, else (level + 1) << 32 | row. */
#define EP_MAKE(row, lvl) ((uint64_t)((lvl) + 1) << 32 | (row))
#define EP_ROW(ep) ((uint32_t)(ep))
#define EP_LEVEL(ep) ((int)((ep) >> 32) - 1)

typedef struct map_slot {
	_Atomic uint64_t key;
	_Atomic uint64_t val;
	_Atomic uint64_t tseq; /* seqno of the tombstone when val is TOMB */
} map_slot;

typedef struct map_table {
	struct map_table *prev; /* the table this one replaced */
	size_t mask;
	map_slot slot[];
} map_table;

struct drift_hnsw {
	uint32_t dim, stride, capacity, max_tombstones;
	uint32_t m, m0, efc;
	uint32_t room0, roomu; /* list capacity: the degree plus slack */
	enum drift_metric metric;

	void *arena; /* one reservation holding every array below */
	size_t arena_bytes;
	float *vecs;
	uint64_t *ids, *seqnos;
	uint8_t *level;
	uint32_t *up_off;
	_Atomic uint8_t *state;
	_Atomic uint32_t *l0, *up;
	_Atomic uint32_t up_used; /* upper lists handed out */
	size_t n_up;		  /* upper lists of all rows to come */

	pthread_mutex_t *locks; /* NLOCKS, or fewer for small capacities */
	uint32_t lock_mask;
	pthread_mutex_t top_lock;
	_Atomic uint64_t ep;
	_Atomic uint32_t nrows;

	_Atomic(map_table *) map;
	uint64_t hash_seed, level_seed;
	double ml; /* 1 / ln(M) */
	pthread_mutex_t map_lock;
	uint32_t tomb_new; /* ids added by deletes; under map_lock */
	_Atomic uint32_t live, tombs, nids;

	struct scratch_pool *pool; /* of searches and inserts */

	uint64_t fixed_bytes;	    /* the handle, locks and scratch pool */
	_Atomic uint64_t map_bytes; /* every map table allocated */
};

/* ---- Rows, lists, distances --------------------------------------------- */

/* Row r's level (see the top of this file). */
static int level_of(const drift_hnsw *h, uint32_t r)
{
	uint64_t x = drift_hash_u64(r, h->level_seed);
	double u = (double)((x >> 11) + 1) * 0x1p-53; /* (0, 1] */
	double lv = floor(-log(u) * h->ml);
	return lv > MAX_LEVEL ? MAX_LEVEL : (int)lv;
}

static inline const float *vec_of(const drift_hnsw *h, uint32_t r)
{
	return h->vecs + (size_t)r * h->stride;
}

static inline _Atomic uint32_t *list_of(const drift_hnsw *h, uint32_t r, int lc)
{
	if (lc == 0)
		return h->l0 + (size_t)r * (1 + h->room0);
	return h->up + ((size_t)h->up_off[r] + (size_t)lc - 1) * (1 + h->roomu);
}

/* The most entries a list of layer lc holds. */
static inline uint32_t list_max(const drift_hnsw *h, int lc)
{
	return lc == 0 ? h->room0 : h->roomu;
}

/* The degree a full list is pruned back to. */
static inline uint32_t list_degree(const drift_hnsw *h, int lc)
{
	return lc == 0 ? h->m0 : h->m;
}

/* The count of a list, read by a reader (or a writer not holding the
 * node's lock). */
static inline uint32_t list_count(const drift_hnsw *h, _Atomic uint32_t *l,
				  int lc)
{
	uint32_t n = atomic_load_explicit(&l[0], memory_order_acquire);
	uint32_t max = list_max(h, lc);
	return n < max ? n : max;
}

static inline uint32_t list_entry(_Atomic uint32_t *l, uint32_t i)
{
	return atomic_load_explicit(&l[1 + i], memory_order_acquire);
}

static inline bool is_live(const drift_hnsw *h, uint32_t r)
{
	return atomic_load_explicit(&h->state[r], memory_order_acquire) ==
	       STATE_LIVE;
}

/* The engine's distance under the memtable's metric (node/l1/l1.h). */
static inline float dist(const drift_hnsw *h, const drift_vec_kernels *k,
			 const float *a, const float *b)
{
	return drift_metric_dist(k, h->metric, a, b, h->dim);
}

/* Asks for all of row r's vector: a distance reads it whole, and rows are
 * far apart, so the hardware prefetcher alone starts too late. */
static inline void prefetch_vec(const drift_hnsw *h, uint32_t r)
{
	const char *p = (const char *)vec_of(h, r);
	for (size_t off = 0; off < h->dim * sizeof(float); off += 64)
		__builtin_prefetch(p + off);
}

static inline pthread_mutex_t *lock_of(drift_hnsw *h, uint32_t r)
{
	return &h->locks[r & h->lock_mask];
}

/* ---- Scratch of one search or insert ------------------------------------ */

typedef struct nd {
	float d;
	uint32_t r;
} nd;

static inline bool nd_less(nd a, nd b)
{
	return a.d < b.d || (a.d == b.d && a.r < b.r);
}

static int nd_cmp(const void *a, const void *b)
{
	nd x = *(const nd *)a, y = *(const nd *)b;
	return nd_less(x, y) ? -1 : nd_less(y, x);
}

/* A binary heap of nd: the nearest at the root when !max, the farthest
 * when max. */
typedef struct heap {
	nd *a;
	size_t n, cap;
	bool max;
} heap;

static inline bool heap_above(const heap *hp, nd a, nd b)
{
	return hp->max ? nd_less(b, a) : nd_less(a, b);
}

static int heap_push(heap *hp, nd x)
{
	if (hp->n == hp->cap) {
		size_t cap = hp->cap * 2;
		nd *a = drift_realloc(hp->a, cap * sizeof(nd));
		if (a == NULL)
			return DRIFT_ENOMEM;
		hp->a = a;
		hp->cap = cap;
	}
	size_t i = hp->n++;
	while (i > 0) {
		size_t p = (i - 1) / 2;
		if (!heap_above(hp, x, hp->a[p]))
			break;
		hp->a[i] = hp->a[p];
		i = p;
	}
	hp->a[i] = x;
	return 0;
}

static nd heap_pop(heap *hp)
{
	nd top = hp->a[0], x = hp->a[--hp->n];
	size_t n = hp->n, i = 0;
	for (;;) {
		size_t c = 2 * i + 1;
		if (c >= n)
			break;
		if (c + 1 < n && heap_above(hp, hp->a[c + 1], hp->a[c]))
			c++;
		if (!heap_above(hp, hp->a[c], x))
			break;
		hp->a[i] = hp->a[c];
		i = c;
	}
	if (n > 0)
		hp->a[i] = x;
	return top;
}

/* The visited set: a mark per row of the memtable, equal to tag when the
 * row was visited; clearing is a new tag (the marks are zeroed once every
 * 65,535 clears). A hash set sized by the search, re-made for every call,
 * cost an allocation, a few rehashes and a memset of its table on each
 * layer of each insert; the marks cost 2 bytes per row per scratch, and
 * scratches are kept for reuse (scratch_get). */
typedef struct vset {
	uint16_t *mark;
	uint16_t tag;
	uint32_t cap; /* marks allocated: grows with the rows visited */
	uint32_t max; /* the memtable's capacity */
} vset;

/* Room for row r's mark (new marks are zero: never visited). */
static int vset_grow(vset *s, uint32_t r)
{
	size_t cap = s->cap ? 2 * (size_t)s->cap : 1024;
	while (cap <= r)
		cap *= 2;
	if (cap > s->max)
		cap = s->max;
	uint16_t *m = drift_realloc(s->mark, cap * sizeof(uint16_t));
	if (m == NULL)
		return DRIFT_ENOMEM;
	memset(m + s->cap, 0, (cap - s->cap) * sizeof(uint16_t));
	s->mark = m;
	s->cap = (uint32_t)cap;
	return 0;
}

/* 1 when r was added, 0 when it was there, DRIFT_ENOMEM. */
static inline int vset_add(vset *s, uint32_t r)
{
	if (r >= s->cap) {
		int rv = vset_grow(s, r);
		if (rv != 0)
			return rv;
	}
	if (s->mark[r] == s->tag)
		return 0;
	s->mark[r] = s->tag;
	return 1;
}

static void vset_clear(vset *s)
{
	if (++s->tag == 0) {
		memset(s->mark, 0, (size_t)s->cap * sizeof(uint16_t));
		s->tag = 1;
	}
}

typedef struct scratch {
	vset seen;
	heap cand;	/* candidates C of Algorithm 2, nearest first */
	heap res;	/* the dynamic list W of Algorithm 2, farthest first */
	nd *w;		/* W sorted, room for efcap */
	nd *sel;	/* room for room0 + 1 */
	nd *tmp;	/* room for room0 + 1 */
	uint32_t *plan; /* an insert's neighbours, M per layer */
	uint32_t nplan[MAX_LEVEL + 1];
	uint32_t ef, efcap;
} scratch;

/* Scratches not in use, for the next search or insert. */
#define POOL_MAX 16
struct scratch_pool {
	pthread_mutex_t lock;
	scratch *free[POOL_MAX];
	int n;
};

static void scratch_free(scratch *s)
{
	if (s == NULL)
		return;
	drift_free(s->seen.mark);
	drift_free(s->cand.a);
	drift_free(s->res.a);
	drift_free(s->w);
	drift_free(s->sel);
	drift_free(s->tmp);
	drift_free(s->plan);
	drift_free(s);
}

static scratch *scratch_new(const drift_hnsw *h)
{
	scratch *s = drift_calloc(1, sizeof(*s));
	if (s == NULL)
		return NULL;
	s->seen.max = h->capacity;
	s->seen.tag = 1;
	s->cand.cap = 256;
	s->cand.a = drift_mallocarray(s->cand.cap, sizeof(nd));
	s->res.max = true;
	s->sel = drift_mallocarray((size_t)h->room0 + 1, sizeof(nd));
	s->tmp = drift_mallocarray((size_t)h->room0 + 1, sizeof(nd));
	s->plan = drift_mallocarray((size_t)(MAX_LEVEL + 1) * h->m,
				    sizeof(uint32_t));
	if (s->cand.a == NULL || s->sel == NULL || s->tmp == NULL ||
	    s->plan == NULL) {
		scratch_free(s);
		return NULL;
	}
	return s;
}

static void scratch_reset(scratch *s)
{
	vset_clear(&s->seen);
	s->cand.n = 0;
	s->res.n = 0;
}

/* A scratch for a search list of ef, reset, from the pool or new; NULL when
 * out of memory. Give it back with scratch_put. */
static scratch *scratch_get(const drift_hnsw *h, uint32_t ef)
{
	scratch *s = NULL;
	pthread_mutex_lock(&h->pool->lock);
	if (h->pool->n > 0)
		s = h->pool->free[--h->pool->n];
	pthread_mutex_unlock(&h->pool->lock);
	if (s == NULL && (s = scratch_new(h)) == NULL)
		return NULL;
	if (s->efcap < ef) {
		nd *res =
			drift_realloc(s->res.a, ((size_t)ef + 1) * sizeof(nd));
		if (res != NULL)
			s->res.a = res;
		nd *w = res ? drift_realloc(s->w, (size_t)ef * sizeof(nd))
			    : NULL;
		if (w != NULL)
			s->w = w;
		if (res == NULL || w == NULL) {
			scratch_free(s);
			return NULL;
		}
		s->efcap = ef;
		s->res.cap = (size_t)ef + 1;
	}
	s->ef = ef;
	scratch_reset(s);
	return s;
}

static void scratch_put(const drift_hnsw *h, scratch *s)
{
	pthread_mutex_lock(&h->pool->lock);
	if (h->pool->n < POOL_MAX) {
		h->pool->free[h->pool->n++] = s;
		s = NULL;
	}
	pthread_mutex_unlock(&h->pool->lock);
	scratch_free(s);
}

/* Offers x to W, which keeps the ef nearest. W has room for ef + 1. */
static void res_offer(scratch *s, nd x)
{
	(void)heap_push(&s->res, x); /* never grows: cap is ef + 1 */
	if (s->res.n > s->ef)
		heap_pop(&s->res);
}

/* Empties W into s->w, nearest first; returns how many. */
static size_t res_drain(scratch *s)
{
	size_t n = s->res.n;
	for (size_t i = n; i > 0; i--)
		s->w[i - 1] = heap_pop(&s->res);
	return n;
}

/* Makes r an entry point of the next SEARCH-LAYER (already at distance d). */
static int seed(const drift_hnsw *h, scratch *s, uint32_t r, float d,
		bool live_only)
{
	int rv = vset_add(&s->seen, r);
	if (rv <= 0)
		return rv;
	rv = heap_push(&s->cand, (nd){d, r});
	if (rv == 0 && (!live_only || is_live(h, r)))
		res_offer(s, (nd){d, r});
	return rv;
}

/* ---- Search ------------------------------------------------------------- */

/* Algorithm 2 with ef = 1, as a greedy walk: from *cur on each layer from
 * top down to stop + 1, move to the nearest neighbour while one is nearer
 * to q. */
static void descend(const drift_hnsw *h, const drift_vec_kernels *k,
		    const float *q, uint32_t *cur, float *curd, int top,
		    int stop)
{
	for (int lc = top; lc > stop; lc--) {
		bool moved = true;
		while (moved) {
			moved = false;
			_Atomic uint32_t *l = list_of(h, *cur, lc);
			uint32_t n = list_count(h, l, lc);
			for (uint32_t i = 0; i < n; i++) {
				uint32_t e = list_entry(l, i);
				assert(e < h->capacity && h->level[e] >= lc);
				float d = dist(h, k, q, vec_of(h, e));
				if (d < *curd) {
					*curd = d;
					*cur = e;
					moved = true;
				}
			}
		}
	}
}

/* Algorithm 2: SEARCH-LAYER(q, ep, ef, lc), from the entry points already
 * seeded into s; W ends in s->res. With live_only, W admits LIVE rows only
 * while every row still guides the walk (a deleted row is a waypoint). */
static int search_layer(const drift_hnsw *h, const drift_vec_kernels *k,
			const float *q, scratch *s, int lc, bool live_only)
{
	uint32_t batch[3 * DRIFT_HNSW_MAX_M];
	while (s->cand.n > 0) {
		nd c = heap_pop(&s->cand);
		if (s->res.n >= s->ef && c.d > s->res.a[0].d)
			break;
		_Atomic uint32_t *l = list_of(h, c.r, lc);
		uint32_t n = list_count(h, l, lc), nb = 0;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t e = list_entry(l, i);
			assert(e < h->capacity && h->level[e] >= lc);
			int rv = vset_add(&s->seen, e);
			if (rv < 0)
				return rv;
			if (rv == 0)
				continue;
			__builtin_prefetch(vec_of(h, e));
			batch[nb++] = e;
		}
		for (uint32_t i = 0; i < nb; i++) {
			uint32_t e = batch[i];
			if (i + 1 < nb)
				prefetch_vec(h, batch[i + 1]);
			float d = dist(h, k, q, vec_of(h, e));
			if (s->res.n < s->ef || d < s->res.a[0].d) {
				int rv = heap_push(&s->cand, (nd){d, e});
				if (rv != 0)
					return rv;
				if (!live_only || is_live(h, e))
					res_offer(s, (nd){d, e});
			}
		}
	}
	return 0;
}

typedef struct idrow {
	uint64_t id, seqno;
	uint32_t row, at;
} idrow;

static int idrow_cmp(const void *a, const void *b)
{
	const idrow *x = a, *y = b;
	if (x->id != y->id)
		return x->id < y->id ? -1 : 1;
	if (x->seqno != y->seqno)
		return x->seqno < y->seqno ? -1 : 1;
	return x->row < y->row ? -1 : x->row > y->row;
}

static int hit_cmp(const void *a, const void *b)
{
	drift_hit x = *(const drift_hit *)a, y = *(const drift_hit *)b;
	return drift_hit_less(x, y) ? -1 : drift_hit_less(y, x);
}

/* Keeps, of the n rows in w (nearest first), those still LIVE and the
 * newest row of each id (two rows of one id can both look LIVE to a search
 * racing an update), as hits sorted by drift_hit_less; returns how many. */
static int final_hits(const drift_hnsw *h, const nd *w, size_t n,
		      drift_hit *hits, size_t *n_hits)
{
	idrow *ir = drift_mallocarray(n ? n : 1, sizeof(idrow));
	if (ir == NULL)
		return DRIFT_ENOMEM;
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t r = w[i].r;
		if (is_live(h, r))
			ir[m++] = (idrow){h->ids[r], h->seqnos[r], r,
					  (uint32_t)i};
	}
	qsort(ir, m, sizeof(idrow), idrow_cmp);
	size_t out = 0;
	for (size_t i = 0; i < m; i++) {
		if (i + 1 < m && ir[i + 1].id == ir[i].id)
			continue; /* an older row of the same id */
		hits[out++] = (drift_hit){ir[i].id, w[ir[i].at].d};
	}
	drift_free(ir);
	qsort(hits, out, sizeof(drift_hit), hit_cmp);
	*n_hits = out;
	return 0;
}

static bool all_finite(const float *v, uint32_t dim)
{
	for (uint32_t j = 0; j < dim; j++)
		if (!isfinite(v[j]))
			return false;
	return true;
}

/* The divisor that normalises v under COSINE (as node/l1/l1.c computes it),
 * or 0 when v has no direction. */
static float norm_of(const drift_vec_kernels *k, const float *v, uint32_t dim)
{
	float norm = sqrtf(k->dot(v, v, dim));
	return norm > 0 && isfinite(norm) ? norm : 0.0f;
}

/* Algorithm 5: K-NN-SEARCH. */
int drift_hnsw_search(const drift_hnsw *h, const float *q, uint32_t k,
		      uint32_t ef, drift_hit *out, size_t *n_out)
{
	const drift_vec_kernels *kern = drift_vec();
	if (k == 0 || !all_finite(q, h->dim))
		return DRIFT_EINVAL;
	if (ef == 0)
		ef = DRIFT_HNSW_EF_SEARCH;
	if (ef < k)
		ef = k;
	float *qn = NULL;
	if (h->metric == DRIFT_METRIC_COSINE) {
		float norm = norm_of(kern, q, h->dim);
		if (norm == 0)
			return DRIFT_EINVAL;
		qn = drift_mallocarray(h->dim, sizeof(float));
		if (qn == NULL)
			return DRIFT_ENOMEM;
		for (uint32_t j = 0; j < h->dim; j++)
			qn[j] = q[j] / norm;
		q = qn;
	}
	uint64_t epv = atomic_load_explicit(&h->ep, memory_order_acquire);
	if (epv == 0) {
		drift_free(qn);
		*n_out = 0;
		return 0;
	}

	drift_hit *hits = NULL;
	int rv = DRIFT_ENOMEM;
	scratch *s = scratch_get(h, ef);
	if (s == NULL)
		goto out_q;
	hits = drift_mallocarray(ef, sizeof(drift_hit));
	if (hits == NULL) {
		rv = DRIFT_ENOMEM;
		goto out_scratch;
	}
	uint32_t cur = EP_ROW(epv);
	float curd = dist(h, kern, q, vec_of(h, cur));
	descend(h, kern, q, &cur, &curd, EP_LEVEL(epv), 0);
	rv = seed(h, s, cur, curd, true);
	if (rv < 0)
		goto out_hits;
	rv = search_layer(h, kern, q, s, 0, true);
	if (rv != 0)
		goto out_hits;
	size_t n = res_drain(s), nh;
	rv = final_hits(h, s->w, n, hits, &nh);
	if (rv != 0)
		goto out_hits;
	if (nh > k)
		nh = k;
	memcpy(out, hits, nh * sizeof(drift_hit));
	*n_out = nh;
out_hits:
	drift_free(hits);
out_scratch:
	scratch_put(h, s);
out_q:
	drift_free(qn);
	return rv;
}

/* ---- Insert ------------------------------------------------------------- */

/* The neighbours of a node among n candidates c (nearest to base first,
 * c[i].d their distance to base), at most max, into sel (which may be c).
 * Returns how many.
 *
 * L2, COSINE: Algorithm 4, SELECT-NEIGHBORS-HEURISTIC(base, C, M), without
 * extension and without keeping pruned connections: keep each candidate
 * that is nearer to base than to every one kept before.
 * IP: Algorithm 3, SELECT-NEIGHBORS-SIMPLE (the max nearest). The
 * heuristic assumes a metric; under a negated inner product a long vector
 * is "nearer" to every other than that one is to itself, so the heuristic
 * keeps little more than the longest candidate, and measured recall@10 on
 * Fashion-MNIST fell to 0.72 at ef 100 (0.98 with simple selection, the
 * choice of ip-NSW: Morozov & Babenko, "Non-metric similarity graphs for
 * maximum inner product search", NeurIPS 2018). */
static size_t select_neighbors(const drift_hnsw *h, const drift_vec_kernels *k,
			       const nd *c, size_t n, uint32_t max, nd *sel)
{
	if (h->metric == DRIFT_METRIC_IP) {
		size_t ns = n < max ? n : max;
		memmove(sel, c, ns * sizeof(nd));
		return ns;
	}
	size_t ns = 0;
	for (size_t i = 0; i < n && ns < max; i++) {
		const float *v = vec_of(h, c[i].r);
		bool keep = true;
		for (size_t j = 0; j < ns && keep; j++)
			keep = !(dist(h, k, v, vec_of(h, sel[j].r)) < c[i].d);
		if (keep)
			sel[ns++] = c[i];
	}
	return ns;
}

/* Writes a node's list (the caller holds the node's lock): entries first,
 * then the count, all with release. */
static void list_write(_Atomic uint32_t *l, const nd *e, size_t n)
{
	for (size_t i = 0; i < n; i++)
		atomic_store_explicit(&l[1 + i], e[i].r, memory_order_release);
	atomic_store_explicit(&l[0], (uint32_t)n, memory_order_release);
}

/* Adds the new row r to e's list on layer lc. A list has room for its
 * degree (M, or 2M on layer 0) plus half as much slack; only a list with
 * no room left is shrunk, by select_neighbors over its entries and r, back
 * to the degree (Algorithm 1, "shrink connections"). Shrinking at every
 * link past the degree, as the paper's loop reads, re-runs the heuristic
 * (a quadratic number of distances) on almost every link of a full node;
 * with the slack it runs once per M links there, and lists average a few
 * more entries for searches to read. Measured with shard-bench ingest
 * (SIFT, 150,000 rows, 2 writers, ef_construction 40, a loaded machine):
 * 21.1 and 14.5 s of CPU against 23.3 and 19.3 without slack, recall@10
 * unchanged (0.994).
 * cand has room for list_max + 1. */
static void connect(drift_hnsw *h, const drift_vec_kernels *k, uint32_t e,
		    uint32_t r, int lc, nd *cand)
{
	uint32_t max = list_max(h, lc);
	pthread_mutex_lock(lock_of(h, e));
	_Atomic uint32_t *l = list_of(h, e, lc);
	uint32_t n = atomic_load_explicit(&l[0], memory_order_relaxed);
	if (n < max) {
		atomic_store_explicit(&l[1 + n], r, memory_order_release);
		atomic_store_explicit(&l[0], n + 1, memory_order_release);
	} else {
		const float *ve = vec_of(h, e);
		for (uint32_t i = 0; i < n; i++) {
			uint32_t x = atomic_load_explicit(&l[1 + i],
							  memory_order_relaxed);
			cand[i] = (nd){dist(h, k, ve, vec_of(h, x)), x};
		}
		cand[n] = (nd){dist(h, k, ve, vec_of(h, r)), r};
		qsort(cand, n + 1, sizeof(nd), nd_cmp);
		/* In place: select_neighbors only reads entries before the
		 * one it writes. */
		size_t ns = select_neighbors(h, k, cand, n + 1,
					     list_degree(h, lc), cand);
		list_write(l, cand, ns);
	}
	pthread_mutex_unlock(lock_of(h, e));
}

/* Algorithm 1: INSERT(hnsw, q, M, Mmax, efConstruction, mL) of row r, whose
 * vector is in place, in two phases. First, layer by layer from the top,
 * the search for r's neighbours and r's own lists; then the connections
 * from those neighbours back to r, which make r reachable. So whoever
 * reaches r (a search descending through it) finds its lists complete on
 * every layer below; linking layer by layer, as the paper's loop reads, a
 * search could descend onto r at a layer whose list was still empty and
 * come back nearly empty-handed. */
static int link_row(drift_hnsw *h, const drift_vec_kernels *k, scratch *s,
		    uint32_t r)
{
	int l = h->level[r];
	bool raise = false;
	uint64_t epv = atomic_load_explicit(&h->ep, memory_order_acquire);
	if (epv == 0 || l > EP_LEVEL(epv)) {
		/* r may become the entry point: one such insert at a time. */
		pthread_mutex_lock(&h->top_lock);
		raise = true;
		epv = atomic_load_explicit(&h->ep, memory_order_acquire);
		if (epv != 0 && l <= EP_LEVEL(epv)) {
			pthread_mutex_unlock(&h->top_lock);
			raise = false;
		}
	}
	if (epv == 0) {
		atomic_store_explicit(&h->ep, EP_MAKE(r, l),
				      memory_order_release);
		pthread_mutex_unlock(&h->top_lock);
		return 0;
	}

	const float *q = vec_of(h, r);
	int top = EP_LEVEL(epv), low = l < top ? l : top, rv = 0, lc;
	uint32_t cur = EP_ROW(epv);
	float curd = dist(h, k, q, vec_of(h, cur));
	descend(h, k, q, &cur, &curd, top, l);
	scratch_reset(s);
	rv = vset_add(&s->seen, r); /* never its own neighbour */
	if (rv >= 0)
		rv = seed(h, s, cur, curd, false);
	for (lc = low; lc >= 0 && rv >= 0; lc--) {
		rv = search_layer(h, k, q, s, lc, false);
		if (rv != 0)
			break;
		size_t nw = res_drain(s);
		size_t ns = select_neighbors(h, k, s->w, nw, h->m, s->sel);
		pthread_mutex_lock(lock_of(h, r));
		list_write(list_of(h, r, lc), s->sel, ns);
		pthread_mutex_unlock(lock_of(h, r));
		s->nplan[lc] = (uint32_t)ns;
		for (size_t i = 0; i < ns; i++)
			s->plan[(size_t)lc * h->m + i] = s->sel[i].r;
		if (lc == 0)
			break;
		/* W is the entry point set of the next layer. */
		scratch_reset(s);
		rv = vset_add(&s->seen, r);
		for (size_t i = 0; i < nw && rv >= 0; i++)
			rv = seed(h, s, s->w[i].r, s->w[i].d, false);
	}
	if (rv >= 0) {
		for (lc = low; lc >= 0; lc--)
			for (uint32_t i = 0; i < s->nplan[lc]; i++)
				connect(h, k, s->plan[(size_t)lc * h->m + i], r,
					lc, s->tmp);
	}
	if (raise) {
		if (rv >= 0)
			atomic_store_explicit(&h->ep, EP_MAKE(r, l),
					      memory_order_release);
		pthread_mutex_unlock(&h->top_lock);
	}
	return rv < 0 ? rv : 0;
}

/* ---- Id map ------------------------------------------------------------- */

static map_table *map_table_new(size_t n)
{
	map_table *t = drift_calloc(1, sizeof(*t) + n * sizeof(map_slot));
	if (t != NULL)
		t->mask = n - 1;
	return t;
}

/* The slot of id in t, or NULL. Lock-free. */
static const map_slot *map_get(const drift_hnsw *h, const map_table *t,
			       uint64_t id)
{
	size_t i = drift_hash_u64(id, h->hash_seed) & t->mask;
	for (;;) {
		const map_slot *s = &t->slot[i];
		uint64_t v =
			atomic_load_explicit(&s->val, memory_order_acquire);
		if (v == 0)
			return NULL;
		if (atomic_load_explicit(&s->key, memory_order_relaxed) == id)
			return s;
		i = (i + 1) & t->mask;
	}
}

/* Under map_lock: the slot of id in t, or the empty slot where it goes. */
static map_slot *map_slot_of(drift_hnsw *h, map_table *t, uint64_t id)
{
	size_t i = drift_hash_u64(id, h->hash_seed) & t->mask;
	for (;;) {
		map_slot *s = &t->slot[i];
		uint64_t v =
			atomic_load_explicit(&s->val, memory_order_relaxed);
		if (v == 0 ||
		    atomic_load_explicit(&s->key, memory_order_relaxed) == id)
			return s;
		i = (i + 1) & t->mask;
	}
}

/* Under map_lock: the slot of id, or the empty slot where it goes, with
 * room for it (the table doubled first when a new id would fill it past
 * half); NULL when the table cannot grow. */
static map_slot *map_find(drift_hnsw *h, uint64_t id)
{
	map_table *t = atomic_load_explicit(&h->map, memory_order_relaxed);
	map_slot *s = map_slot_of(h, t, id);
	uint32_t ids = atomic_load_explicit(&h->nids, memory_order_relaxed);
	if (atomic_load_explicit(&s->val, memory_order_relaxed) != 0 ||
	    2 * ((size_t)ids + 1) <= t->mask + 1)
		return s;
	size_t n = 2 * (t->mask + 1);
	map_table *nt = map_table_new(n);
	if (nt == NULL)
		return NULL;
	for (size_t i = 0; i <= t->mask; i++) {
		const map_slot *o = &t->slot[i];
		uint64_t v =
			atomic_load_explicit(&o->val, memory_order_relaxed);
		if (v == 0)
			continue;
		uint64_t key =
			atomic_load_explicit(&o->key, memory_order_relaxed);
		map_slot *d = map_slot_of(h, nt, key);
		atomic_store_explicit(&d->key, key, memory_order_relaxed);
		atomic_store_explicit(
			&d->tseq,
			atomic_load_explicit(&o->tseq, memory_order_relaxed),
			memory_order_relaxed);
		atomic_store_explicit(&d->val, v, memory_order_relaxed);
	}
	nt->prev = t;
	atomic_fetch_add_explicit(&h->map_bytes, n * sizeof(map_slot),
				  memory_order_relaxed);
	/* Every slot of nt before readers can find it. */
	atomic_store_explicit(&h->map, nt, memory_order_release);
	return map_slot_of(h, nt, id);
}

/* The seqno of a slot's entry (val != 0). */
static uint64_t slot_seqno(const drift_hnsw *h, const map_slot *s, uint64_t v)
{
	if (VAL_KIND(v) == VAL_ROW)
		return h->seqnos[VAL_IDX(v)];
	return atomic_load_explicit(&s->tseq, memory_order_relaxed);
}

static void entry_of(const drift_hnsw *h, const map_slot *s, uint64_t v,
		     drift_hnsw_entry *out)
{
	out->id = atomic_load_explicit(&s->key, memory_order_relaxed);
	out->seqno = slot_seqno(h, s, v);
	if (VAL_KIND(v) == VAL_ROW) {
		out->kind = DRIFT_HNSW_LIVE;
		out->row = VAL_IDX(v);
		out->vec = vec_of(h, out->row);
	} else {
		out->kind = DRIFT_HNSW_TOMBSTONE;
		out->row = 0;
		out->vec = NULL;
	}
}

/* Makes row r the newest entry of id, unless a newer entry is there. */
static int commit_row(drift_hnsw *h, uint64_t id, uint64_t seqno, uint32_t r)
{
	int rv = 0;
	pthread_mutex_lock(&h->map_lock);
	map_slot *s = map_find(h, id);
	if (s == NULL) {
		atomic_store_explicit(&h->state[r], STATE_DEAD,
				      memory_order_release);
		rv = DRIFT_ENOMEM;
		goto out;
	}
	uint64_t v = atomic_load_explicit(&s->val, memory_order_relaxed);
	if (v != 0 && slot_seqno(h, s, v) > seqno) {
		atomic_store_explicit(&h->state[r], STATE_DEAD,
				      memory_order_release);
		rv = DRIFT_ESTALE;
		goto out;
	}
	if (v == 0) {
		atomic_store_explicit(&s->key, id, memory_order_relaxed);
		atomic_fetch_add_explicit(&h->nids, 1, memory_order_relaxed);
	} else if (VAL_KIND(v) == VAL_ROW) {
		/* The old row dies before the new one lives. */
		atomic_store_explicit(&h->state[VAL_IDX(v)], STATE_DEAD,
				      memory_order_release);
		atomic_fetch_sub_explicit(&h->live, 1, memory_order_relaxed);
	} else {
		atomic_fetch_sub_explicit(&h->tombs, 1, memory_order_relaxed);
	}
	atomic_store_explicit(&h->state[r], STATE_LIVE, memory_order_release);
	atomic_fetch_add_explicit(&h->live, 1, memory_order_relaxed);
	atomic_store_explicit(&s->val, VAL_ROW | r, memory_order_release);
out:
	pthread_mutex_unlock(&h->map_lock);
	return rv;
}

/* ---- Public ------------------------------------------------------------- */

int drift_hnsw_insert(drift_hnsw *h, uint64_t id, const float *vec,
		      uint64_t seqno, uint32_t *row)
{
	const drift_vec_kernels *k = drift_vec();
	if (!all_finite(vec, h->dim))
		return DRIFT_EINVAL;
	float norm = 1.0f;
	if (h->metric == DRIFT_METRIC_COSINE) {
		norm = norm_of(k, vec, h->dim);
		if (norm == 0)
			return DRIFT_EINVAL;
	}
	drift_hnsw_entry cur;
	if (drift_hnsw_lookup(h, id, &cur) == 0 && cur.seqno > seqno)
		return DRIFT_ESTALE;

	scratch *s = scratch_get(h, h->efc);
	if (s == NULL)
		return DRIFT_ENOMEM;
	int rv;
	uint32_t r = atomic_load_explicit(&h->nrows, memory_order_relaxed);
	do {
		if (r >= h->capacity) {
			scratch_put(h, s);
			return DRIFT_ELIMIT;
		}
	} while (!atomic_compare_exchange_weak_explicit(&h->nrows, &r, r + 1,
							memory_order_relaxed,
							memory_order_relaxed));

	float *dst = h->vecs + (size_t)r * h->stride;
	if (h->metric == DRIFT_METRIC_COSINE)
		for (uint32_t j = 0; j < h->dim; j++)
			dst[j] = vec[j] / norm;
	else
		memcpy(dst, vec, h->dim * sizeof(float));
	h->ids[r] = id;
	h->seqnos[r] = seqno;
	int lvl = level_of(h, r);
	h->level[r] = (uint8_t)lvl;
	h->up_off[r] = atomic_fetch_add_explicit(&h->up_used, (uint32_t)lvl,
						 memory_order_relaxed);

	rv = link_row(h, k, s, r);
	scratch_put(h, s);
	if (rv != 0) {
		atomic_store_explicit(&h->state[r], STATE_DEAD,
				      memory_order_release);
		return rv;
	}
	rv = commit_row(h, id, seqno, r);
	if (rv == 0 && row != NULL)
		*row = r;
	return rv;
}

int drift_hnsw_delete(drift_hnsw *h, uint64_t id, uint64_t seqno)
{
	int rv = 0;
	pthread_mutex_lock(&h->map_lock);
	map_slot *s = map_find(h, id);
	if (s == NULL) {
		rv = DRIFT_ENOMEM;
		goto out;
	}
	uint64_t v = atomic_load_explicit(&s->val, memory_order_relaxed);
	if (v == 0) {
		if (h->tomb_new >= h->max_tombstones) {
			rv = DRIFT_ELIMIT;
			goto out;
		}
		h->tomb_new++;
		atomic_store_explicit(&s->key, id, memory_order_relaxed);
		atomic_fetch_add_explicit(&h->nids, 1, memory_order_relaxed);
	} else if (slot_seqno(h, s, v) > seqno) {
		rv = DRIFT_ESTALE;
		goto out;
	}
	if (VAL_KIND(v) == VAL_ROW) {
		atomic_store_explicit(&h->state[VAL_IDX(v)], STATE_DEAD,
				      memory_order_release);
		atomic_fetch_sub_explicit(&h->live, 1, memory_order_relaxed);
	}
	if (VAL_KIND(v) != VAL_TOMB)
		atomic_fetch_add_explicit(&h->tombs, 1, memory_order_relaxed);
	atomic_store_explicit(&s->tseq, seqno, memory_order_relaxed);
	atomic_store_explicit(&s->val, VAL_TOMB, memory_order_release);
out:
	pthread_mutex_unlock(&h->map_lock);
	return rv;
}

int drift_hnsw_lookup(const drift_hnsw *h, uint64_t id, drift_hnsw_entry *out)
{
	const map_slot *s = map_get(
		h, atomic_load_explicit(&h->map, memory_order_acquire), id);
	if (s == NULL)
		return DRIFT_ENOENT;
	entry_of(h, s, atomic_load_explicit(&s->val, memory_order_acquire),
		 out);
	return 0;
}

void drift_hnsw_iter_init(drift_hnsw_iter *it, const drift_hnsw *h)
{
	it->h = h;
	it->table = atomic_load_explicit(&h->map, memory_order_acquire);
	it->slot = 0;
}

bool drift_hnsw_iter_next(drift_hnsw_iter *it, drift_hnsw_entry *out)
{
	const drift_hnsw *h = it->h;
	const map_table *t = it->table;
	while (it->slot <= t->mask) {
		const map_slot *s = &t->slot[it->slot++];
		uint64_t v =
			atomic_load_explicit(&s->val, memory_order_acquire);
		if (v != 0) {
			entry_of(h, s, v, out);
			return true;
		}
	}
	return false;
}

void drift_hnsw_stats_get(const drift_hnsw *h, drift_hnsw_stats *st)
{
	uint64_t epv = atomic_load_explicit(&h->ep, memory_order_acquire);
	st->capacity = h->capacity;
	st->rows = drift_hnsw_count(h);
	st->live = atomic_load_explicit(&h->live, memory_order_relaxed);
	st->tombstones = atomic_load_explicit(&h->tombs, memory_order_relaxed);
	st->ids = atomic_load_explicit(&h->nids, memory_order_relaxed);
	st->levels = epv == 0 ? 0 : (uint32_t)EP_LEVEL(epv) + 1;
	/* The pages the rows filled (the arenas fill in row order) and the
	 * map's tables. */
	uint64_t rows = st->rows,
		 up = atomic_load_explicit(&h->up_used, memory_order_relaxed);
	st->bytes = h->fixed_bytes +
		    atomic_load_explicit(&h->map_bytes, memory_order_relaxed) +
		    rows * (h->stride * sizeof(float) + 1 + 4 + 8 + 8 + 1 +
			    (1 + (uint64_t)h->room0) * sizeof(uint32_t)) +
		    up * (1 + (uint64_t)h->roomu) * sizeof(uint32_t);
}

uint32_t drift_hnsw_count(const drift_hnsw *h)
{
	return atomic_load_explicit(&h->nrows, memory_order_relaxed);
}

uint32_t drift_hnsw_dim(const drift_hnsw *h)
{
	return h->dim;
}

enum drift_metric drift_hnsw_metric(const drift_hnsw *h)
{
	return h->metric;
}

/* ---- Life --------------------------------------------------------------- */

static void release_arenas(drift_hnsw *h)
{
	drift_unreserve(h->arena, h->arena_bytes);
	map_table *t = atomic_load_explicit(&h->map, memory_order_relaxed);
	while (t != NULL) {
		map_table *prev = t->prev;
		drift_free(t);
		t = prev;
	}
	drift_free(h->locks);
	if (h->pool != NULL) {
		for (int i = 0; i < h->pool->n; i++)
			scratch_free(h->pool->free[i]);
		pthread_mutex_destroy(&h->pool->lock);
		drift_free(h->pool);
	}
}

void drift_hnsw_free(drift_hnsw *h)
{
	if (h == NULL)
		return;
	for (uint32_t i = 0; i <= h->lock_mask; i++)
		pthread_mutex_destroy(&h->locks[i]);
	pthread_mutex_destroy(&h->top_lock);
	pthread_mutex_destroy(&h->map_lock);
	release_arenas(h);
	drift_free(h);
}

static size_t pow2_at_least(size_t n)
{
	size_t p = 1;
	while (p < n)
		p *= 2;
	return p;
}

static int check_opts(const drift_hnsw_opts *o, drift_err *err)
{
	if (o->dim == 0 || o->dim > DRIFT_HNSW_MAX_DIM)
		return drift_err_set(err, DRIFT_EINVAL,
				     "hnsw: dim %u out of 1..%u", o->dim,
				     DRIFT_HNSW_MAX_DIM);
	if (o->metric > DRIFT_METRIC_COSINE)
		return drift_err_set(err, DRIFT_EINVAL,
				     "hnsw: unknown metric %d", (int)o->metric);
	if (o->capacity == 0 || o->capacity == UINT32_MAX)
		return drift_err_set(err, DRIFT_EINVAL,
				     "hnsw: capacity %u out of 1..%u",
				     o->capacity, UINT32_MAX - 1);
	if (o->m != 0 && (o->m < 2 || o->m > DRIFT_HNSW_MAX_M))
		return drift_err_set(err, DRIFT_EINVAL,
				     "hnsw: M %u out of 2..%u", o->m,
				     DRIFT_HNSW_MAX_M);
	return 0;
}

/* The upper lists every row to come will take. */
static int count_levels(drift_hnsw *h, size_t *n_up, drift_err *err)
{
	size_t total = 0;
	for (uint32_t r = 0; r < h->capacity; r++) {
		total += (size_t)level_of(h, r);
		if (total > UINT32_MAX)
			return drift_err_set(err, DRIFT_EINVAL,
					     "hnsw: capacity %u too large",
					     h->capacity);
	}
	*n_up = total;
	return 0;
}

/* Bytes rounded up to a cache line: where the next array of the arena
 * starts. */
static size_t arena_take(size_t *off, size_t bytes)
{
	size_t at = *off;
	*off = (at + bytes + 63) & ~(size_t)63;
	return at;
}

int drift_hnsw_new(const drift_hnsw_opts *opts, drift_hnsw **out,
		   drift_err *err)
{
	int rv = check_opts(opts, err);
	if (rv != 0)
		return rv;
	drift_hnsw *h = drift_calloc(1, sizeof(*h));
	if (h == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "hnsw: handle");
	h->dim = opts->dim;
	h->stride = (opts->dim + 15) & ~15u;
	h->capacity = opts->capacity;
	h->max_tombstones =
		opts->max_tombstones ? opts->max_tombstones : opts->capacity;
	h->m = opts->m ? opts->m : DRIFT_HNSW_M;
	h->m0 = 2 * h->m;
	h->room0 = h->m0 + h->m0 / 2;
	h->roomu = h->m + h->m / 2;
	h->efc = opts->ef_construction ? opts->ef_construction
				       : DRIFT_HNSW_EF_CONSTRUCTION;
	h->metric = opts->metric;
	h->hash_seed = opts->seed ^ 0x6a09e667f3bcc908ull;

	h->level_seed = opts->seed;
	h->ml = 1.0 / log((double)h->m);
	size_t cap = h->capacity;
	size_t nlocks = pow2_at_least(cap < NLOCKS ? cap : NLOCKS);
	h->lock_mask = (uint32_t)(nlocks - 1);
	size_t n_up = 0;
	rv = count_levels(h, &n_up, err);
	if (rv != 0)
		goto fail;
	h->n_up = n_up;

	size_t off = 0;
	size_t o_vecs = arena_take(&off, cap * h->stride * sizeof(float));
	size_t o_ids = arena_take(&off, cap * sizeof(uint64_t));
	size_t o_seq = arena_take(&off, cap * sizeof(uint64_t));
	size_t o_upoff = arena_take(&off, cap * sizeof(uint32_t));
	size_t o_l0 = arena_take(&off, cap * (1 + (size_t)h->room0) *
					       sizeof(uint32_t));
	size_t o_up =
		arena_take(&off, (n_up ? n_up : 1) * (1 + (size_t)h->roomu) *
					 sizeof(uint32_t));
	size_t o_level = arena_take(&off, cap);
	size_t o_state = arena_take(&off, cap * sizeof(*h->state));
	h->arena_bytes = off;
	h->arena = drift_reserve(off);
	map_table *map = map_table_new(MAP_MIN);
	atomic_init(&h->map, map);
	h->locks = drift_mallocarray(nlocks, sizeof(pthread_mutex_t));
	h->pool = drift_calloc(1, sizeof(*h->pool));
	if (h->pool != NULL)
		pthread_mutex_init(&h->pool->lock, NULL);
	if (h->arena == NULL || map == NULL || h->locks == NULL ||
	    h->pool == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM,
				   "hnsw: arenas for %u rows of %u floats",
				   h->capacity, h->dim);
		goto fail;
	}
	char *a = h->arena;
	h->vecs = (float *)(a + o_vecs);
	h->ids = (uint64_t *)(a + o_ids);
	h->seqnos = (uint64_t *)(a + o_seq);
	h->up_off = (uint32_t *)(a + o_upoff);
	h->l0 = (_Atomic uint32_t *)(a + o_l0);
	h->up = (_Atomic uint32_t *)(a + o_up);
	h->level = (uint8_t *)(a + o_level);
	h->state = (_Atomic uint8_t *)(a + o_state);
	h->fixed_bytes = sizeof(*h) + sizeof(*h->pool) +
			 nlocks * sizeof(pthread_mutex_t);
	atomic_init(&h->map_bytes, MAP_MIN * sizeof(map_slot));

	for (size_t i = 0; i < nlocks; i++)
		pthread_mutex_init(&h->locks[i], NULL);
	pthread_mutex_init(&h->top_lock, NULL);
	pthread_mutex_init(&h->map_lock, NULL);
	*out = h;
	return 0;
fail:
	release_arenas(h);
	drift_free(h);
	return rv;
}
