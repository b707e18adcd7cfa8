#include "cluster/ring.h"

#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/endian.h"
#include "common/err.h"
#include "common/hash.h"

/* Seeds keep the two uses of the hash independent of each other. They are
 * part of the placement: changing one moves every shard. */
#define VNODE_SEED UINT64_C(0x64726966742d766e) /* "drift-vn" */
#define SHARD_SEED UINT64_C(0x64726966742d7368) /* "drift-sh" */

typedef struct point {
	uint64_t pos;
	uint64_t node;
} point;

struct drift_ring {
	unsigned vnodes;
	size_t nnodes;
	point *points; /* sorted by (pos, node); nnodes * vnodes of them */
	size_t npoints;
};

static uint64_t vnode_pos(uint64_t node, unsigned i)
{
	uint8_t buf[12];
	drift_store_le64(buf, node);
	drift_store_le32(buf + 8, i);
	return drift_hash64_seeded(buf, sizeof(buf), VNODE_SEED);
}

static int point_cmp(const void *a, const void *b)
{
	const point *x = a, *y = b;
	if (x->pos != y->pos)
		return x->pos < y->pos ? -1 : 1;
	/* Equal positions (vanishingly rare) still order deterministically. */
	return x->node < y->node ? -1 : x->node > y->node;
}

int drift_ring_new(unsigned vnodes, drift_ring **out)
{
	if (vnodes == 0 || vnodes > DRIFT_RING_MAX_VNODES)
		return DRIFT_EINVAL;
	drift_ring *r = drift_calloc(1, sizeof(*r));
	if (r == NULL)
		return DRIFT_ENOMEM;
	r->vnodes = vnodes;
	*out = r;
	return 0;
}

void drift_ring_free(drift_ring *r)
{
	if (r == NULL)
		return;
	drift_free(r->points);
	drift_free(r);
}

static int has_node(const drift_ring *r, uint64_t node)
{
	if (r->npoints == 0)
		return 0;
	/* Every node owns point vnode_pos(node, 0): look it up directly. */
	point key = {vnode_pos(node, 0), node};
	return bsearch(&key, r->points, r->npoints, sizeof(point), point_cmp) !=
	       NULL;
}

int drift_ring_add(drift_ring *r, uint64_t node)
{
	if (has_node(r, node))
		return DRIFT_EEXIST;
	point *p = drift_realloc(r->points,
				 (r->npoints + r->vnodes) * sizeof(point));
	if (p == NULL)
		return DRIFT_ENOMEM;
	for (unsigned i = 0; i < r->vnodes; i++)
		p[r->npoints + i] = (point){vnode_pos(node, i), node};
	r->points = p;
	r->npoints += r->vnodes;
	r->nnodes++;
	qsort(r->points, r->npoints, sizeof(point), point_cmp);
	return 0;
}

int drift_ring_remove(drift_ring *r, uint64_t node)
{
	if (!has_node(r, node))
		return DRIFT_ENOENT;
	size_t w = 0;
	for (size_t i = 0; i < r->npoints; i++)
		if (r->points[i].node != node)
			r->points[w++] = r->points[i];
	r->npoints = w;
	r->nnodes--;
	return 0;
}

size_t drift_ring_size(const drift_ring *r)
{
	return r->nnodes;
}

/* Index of the first point at or after pos, wrapping to 0. */
static size_t first_at_or_after(const drift_ring *r, uint64_t pos)
{
	size_t lo = 0, hi = r->npoints;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		if (r->points[mid].pos < pos)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo == r->npoints ? 0 : lo;
}

unsigned drift_ring_place(const drift_ring *r, uint64_t key, unsigned rf,
			  uint64_t *out)
{
	if (r->npoints == 0 || rf == 0)
		return 0;
	unsigned want = rf < r->nnodes ? rf : (unsigned)r->nnodes;
	unsigned n = 0;
	size_t i = first_at_or_after(r, key);
	/* Walk clockwise; rf is small, so a linear check for repeats is the
	 * cheapest set. */
	for (size_t step = 0; step < r->npoints && n < want; step++) {
		uint64_t node = r->points[i].node;
		unsigned j = 0;
		while (j < n && out[j] != node)
			j++;
		if (j == n)
			out[n++] = node;
		if (++i == r->npoints)
			i = 0;
	}
	return n;
}

uint64_t drift_shard_key(const char *collection, uint32_t shard)
{
	size_t len = strlen(collection);
	uint8_t buf[256 + 4];
	if (len > 256)
		len = 256; /* names are at most 64 bytes; bound the copy */
	memcpy(buf, collection, len);
	drift_store_le32(buf + len, shard);
	return drift_hash64_seeded(buf, len + 4, SHARD_SEED);
}
