/*
 * L1 maintenance: keeping buckets within bounds and near their members as
 * the data drifts. Each call does a bounded number of actions, most urgent
 * first:
 *
 * 1. Split, when a bucket has more than bucket_max members (default 3x the
 *    target of 512): 2-means over its members gives two centroids (k-means
 *    into one piece per half bucket_max for a bucket more than twice over
 *    the bound, the backlog a fast ingest leaves: at 1M SIFT rows halving
 *    could not keep up, and buckets averaged 5,000 rows); the bucket keeps
 *    its slot with one, new slots take the others. Then
 *    neighbour stealing (SPFresh's LIRE protocol, Xu et al., SOSP 2023): the
 *    members of the steal_neighbors (8) buckets nearest the old centroid are
 *    re-examined, and every vector whose nearest centroid among the new pair
 *    and those neighbours is not its own moves there. Vectors that already
 *    sit with their nearest centroid do not move.
 * 2. Scatter merge, when a bucket has fewer than bucket_min members (default
 *    target / 4), most urgent first: urgency = 1 - size / bucket_min (an
 *    empty bucket is the most urgent; the seed plan's urgency formula). The
 *    bucket is dissolved: each member goes to its nearest centroid among the
 *    16 buckets nearest the dissolved one (its next-nearest bucket, in
 *    practice).
 * 3. Re-centre, when drift = |mean - centroid| / rms radius passes
 *    drift_ratio (0.2): the running sum gives the mean in O(dim); the
 *    centroid moves to the mean, and members now closer to one of the 8
 *    nearest neighbouring centroids move there.
 *
 * 4. Pack, when most of the vector store's rows are free (more free than in
 *    use, and at least PACK_MIN_FREE), until none is: the bucket holding
 *    the most rows at or above the number in use moves them down into the
 *    free rows below (the store hands out its lowest free rows first), so
 *    the top of the store empties out and its memory (the row cache's
 *    pages, the scratch file) follows the rows in use
 *    (node/storage/vstore.h). Members, codes and centroid stay; only rows
 *    move. A mass delete leaves the survivors scattered over the whole
 *    store, each page of the row cache holding one; this is what gives
 *    that memory back.
 *
 * The constants come from the seed plan's split/merge criteria, SPFresh's
 * reassignment range (a few nearest postings suffice), and our measurements
 * (tests/unit/test_l1.c keeps sizes within bounds after maintenance and
 * recall flat under the drifting SIFT stream). Every move goes through
 * drift_kv (l1_publish), so deletes and gets keep working while buckets
 * change. Each action builds new bucket versions and publishes them at once.
 */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/vec.h"
#include "node/l1/kmeans.h"
#include "node/l1/l1_internal.h"

#define MERGE_NEIGHBORS 16
#define PACK_MIN_FREE 1024 /* free rows below which no pack starts */
#define SPLIT_MAX 16	   /* pieces of one split */

/* A destination of a redistribution: a slot and its (new) centroid. */
typedef struct dest {
	uint32_t slot;
	bool is_new;	 /* slot taken for this action */
	bool keeps_rows; /* not a source: its own rows stay */
	const float *centroid;
	uint32_t n; /* rows assigned so far */
} dest;

/* Up to m live slots nearest to v (excluding skip), nearest first. */
static size_t nearest_slots(const drift_l1 *l1, const float *v, uint32_t skip,
			    uint32_t *out, size_t m)
{
	const drift_vec_kernels *k = drift_vec();
	float dist[64];
	size_t n = 0;
	for (uint32_t s = 0; s < l1->nslots; s++) {
		if (l1->b[s] == NULL || s == skip)
			continue;
		float d = k->l2sq(v, l1->cent + (size_t)s * l1->dim, l1->dim);
		if (n == m && d >= dist[n - 1])
			continue;
		size_t i = n < m ? n++ : n - 1;
		while (i > 0 && dist[i - 1] > d) {
			dist[i] = dist[i - 1];
			out[i] = out[i - 1];
			i--;
		}
		dist[i] = d;
		out[i] = s;
	}
	return n;
}

static uint32_t nearest_dest(const dest *d, size_t nd, const float *v,
			     uint32_t dim)
{
	const drift_vec_kernels *k = drift_vec();
	uint32_t best = 0;
	float bd = FLT_MAX;
	for (size_t i = 0; i < nd; i++) {
		float x = k->l2sq(v, d[i].centroid, dim);
		if (x < bd) {
			bd = x;
			best = (uint32_t)i;
		}
	}
	return best;
}

/* Moves every row of the source slots to its nearest destination and
 * publishes the result. Destinations that are not sources keep their own
 * rows. A source that is not a destination is freed. */
static int redistribute(drift_l1 *l1, const uint32_t *src, size_t nsrc, dest *d,
			size_t nd, uint64_t *moved)
{
	uint32_t dim = l1->dim;
	size_t total = 0, most = 1;
	for (size_t i = 0; i < nsrc; i++) {
		total += l1->b[src[i]]->n;
		if (l1->b[src[i]]->n > most)
			most = l1->b[src[i]]->n;
	}
	int rv = DRIFT_ENOMEM;
	uint32_t *to = drift_mallocarray(total ? total : 1, sizeof(uint32_t));
	l1_change *ch = drift_calloc(nd + nsrc, sizeof(l1_change));
	float *v = drift_mallocarray(most * dim, sizeof(float));
	if (to == NULL || ch == NULL || v == NULL)
		goto out;
	size_t t = 0;
	for (size_t i = 0; i < nsrc; i++) {
		const l1_bucket *b = l1->b[src[i]];
		rv = l1_bucket_vectors(l1, b, 0, b->n, v);
		if (rv != 0)
			goto out;
		for (uint32_t r = 0; r < b->n; r++, t++) {
			to[t] = nearest_dest(d, nd, v + (size_t)r * dim, dim);
			d[to[t]].n++;
		}
	}
	drift_free(v);
	v = NULL;
	rv = DRIFT_ENOMEM;
	size_t nch = 0;
	for (size_t i = 0; i < nd; i++) {
		uint32_t own = d[i].keeps_rows ? l1->b[d[i].slot]->n : 0;
		l1_change *c = &ch[nch++];
		c->slot = d[i].slot;
		if (own + d[i].n == 0)
			continue; /* becomes free (nb NULL) */
		rv = l1_bucket_alloc(l1, own + d[i].n, 0, d[i].centroid,
				     &c->nb);
		if (rv != 0)
			goto out;
		c->nb->n = 0;
		if (own > 0) {
			const l1_bucket *b = l1->b[d[i].slot];
			memcpy(c->nb->ids, b->ids, own * sizeof(uint64_t));
			memcpy(c->nb->versions, b->versions,
			       own * sizeof(uint64_t));
			memcpy(c->nb->rows, b->rows, own * sizeof(uint32_t));
			c->nb->n = own;
		}
	}
	t = 0;
	uint64_t mv = 0;
	for (size_t i = 0; i < nsrc; i++) {
		const l1_bucket *b = l1->b[src[i]];
		for (uint32_t r = 0; r < b->n; r++, t++) {
			l1_bucket *nb = ch[to[t]].nb;
			uint32_t o = nb->n++;
			nb->ids[o] = b->ids[r];
			nb->versions[o] = b->versions[r];
			nb->rows[o] = b->rows[r];
			if (d[to[t]].slot != src[i])
				mv++;
		}
	}
	/* Sources that are no destination are freed. */
	for (size_t i = 0; i < nsrc; i++) {
		bool kept = false;
		for (size_t j = 0; j < nd && !kept; j++)
			kept = d[j].slot == src[i];
		if (!kept)
			ch[nch++] = (l1_change){.slot = src[i], .nb = NULL};
	}
	for (size_t i = 0; i < nch; i++)
		if (ch[i].nb != NULL &&
		    (rv = l1_bucket_finish(l1, ch[i].nb)) != 0)
			goto out;
	l1_publish(l1, ch, nch, NULL, 0);
	*moved += mv;
	l1->changed_since_calib += mv;
	drift_free(ch);
	ch = NULL;
	rv = 0;
out:
	if (ch != NULL)
		for (size_t i = 0; i < nd + nsrc; i++)
			l1_bucket_free(ch[i].nb);
	drift_free(ch);
	drift_free(to);
	drift_free(v);
	return rv;
}

static int split(drift_l1 *l1, uint32_t s, drift_l1_maint_stats *st)
{
	uint32_t dim = l1->dim;
	const l1_bucket *b = l1->b[s];
	/* Two pieces for a bucket up to twice the bound; for one further
	 * over it (a backlog of large flushes) one per half bucket_max it
	 * holds, so that one action brings it back within bounds. */
	uint32_t mx = l1->o.bucket_max;
	uint32_t k = b->n <= 2 * mx
			     ? 2
			     : (uint32_t)((2 * (uint64_t)b->n + mx - 1) / mx);
	if (k > SPLIT_MAX)
		k = SPLIT_MAX;
	float *cent = drift_mallocarray((size_t)k * dim, sizeof(float));
	float *v = drift_mallocarray((size_t)b->n * dim, sizeof(float));
	if (cent == NULL || v == NULL) {
		drift_free(cent);
		drift_free(v);
		return DRIFT_ENOMEM;
	}
	drift_kmeans_opts ko = {.seed = drift_rand_next(&l1->rng),
				.sample_per_centroid = 1u << 30};
	int rv = l1_bucket_vectors(l1, b, 0, b->n, v);
	if (rv == 0)
		rv = drift_kmeans(v, b->n, dim, k, &ko, cent, NULL, NULL);
	drift_free(v);
	uint32_t nslot[SPLIT_MAX];
	uint32_t taken = 0;
	while (rv == 0 && taken + 1 < k)
		if ((rv = l1_take_slot(l1, &nslot[taken])) == 0)
			taken++;
	if (rv != 0) {
		while (taken > 0)
			l1->free_slots[l1->nfree++] = nslot[--taken];
		drift_free(cent);
		return rv;
	}
	uint32_t nb[16];
	size_t nn = nearest_slots(
		l1, b->centroid, s, nb,
		l1->o.steal_neighbors < 16 ? l1->o.steal_neighbors : 16);
	dest d[SPLIT_MAX + 16];
	uint32_t src[17];
	size_t nd = 0, ns = 0;
	d[nd++] = (dest){.slot = s, .centroid = cent};
	for (uint32_t i = 0; i + 1 < k; i++)
		d[nd++] = (dest){.slot = nslot[i],
				 .is_new = true,
				 .centroid = cent + (size_t)(i + 1) * dim};
	src[ns++] = s;
	for (size_t i = 0; i < nn; i++) {
		d[nd++] = (dest){.slot = nb[i],
				 .centroid = l1->cent + (size_t)nb[i] * dim};
		src[ns++] = nb[i];
	}
	rv = redistribute(l1, src, ns, d, nd, &st->moved);
	if (rv != 0)
		for (uint32_t i = 0; i + 1 < k; i++)
			l1->free_slots[l1->nfree++] = nslot[i];
	else
		st->splits++;
	drift_free(cent);
	return rv;
}

static int merge(drift_l1 *l1, uint32_t s, drift_l1_maint_stats *st)
{
	uint32_t dim = l1->dim;
	uint32_t nb[MERGE_NEIGHBORS];
	size_t nn =
		nearest_slots(l1, l1->b[s]->centroid, s, nb, MERGE_NEIGHBORS);
	if (nn == 0)
		return 0; /* the last bucket stays */
	dest d[MERGE_NEIGHBORS];
	for (size_t i = 0; i < nn; i++)
		d[i] = (dest){.slot = nb[i],
			      .keeps_rows = true,
			      .centroid = l1->cent + (size_t)nb[i] * dim};
	int rv = redistribute(l1, &s, 1, d, nn, &st->moved);
	if (rv == 0)
		st->merges++;
	return rv;
}

static int recenter(drift_l1 *l1, uint32_t s, drift_l1_maint_stats *st)
{
	uint32_t dim = l1->dim;
	const l1_bucket *b = l1->b[s];
	float *mean = drift_mallocarray(dim, sizeof(float));
	if (mean == NULL)
		return DRIFT_ENOMEM;
	for (uint32_t j = 0; j < dim; j++)
		mean[j] = (float)(b->sum[j] / b->n);
	uint32_t nb[16];
	size_t nn = nearest_slots(
		l1, mean, s, nb,
		l1->o.steal_neighbors < 16 ? l1->o.steal_neighbors : 16);
	dest d[17];
	size_t nd = 0;
	d[nd++] = (dest){.slot = s, .centroid = mean};
	for (size_t i = 0; i < nn; i++)
		d[nd++] = (dest){.slot = nb[i],
				 .keeps_rows = true,
				 .centroid = l1->cent + (size_t)nb[i] * dim};
	int rv = redistribute(l1, &s, 1, d, nd, &st->moved);
	if (rv == 0)
		st->recenters++;
	drift_free(mean);
	return rv;
}

/* Whether the store wants packing: it starts when more rows are free than
 * in use, and goes on until none is free (or no bucket has a row to move).
 * *inuse: the rows in use. */
static bool pack_wanted(drift_l1 *l1, uint64_t *inuse)
{
	drift_vstore_stats st;
	drift_vstore_stats_get(l1->vs, &st);
	if (st.free_rows == 0)
		l1->packing = false;
	else if (st.free_rows >= PACK_MIN_FREE && st.free_rows > st.rows)
		l1->packing = true;
	*inuse = st.rows;
	return l1->packing;
}

/* The slot with the most rows at or above inuse (0 when none has any). */
static uint32_t pack_pick(const drift_l1 *l1, uint64_t inuse, uint32_t *slot)
{
	uint32_t best = 0;
	for (uint32_t s = 0; s < l1->nslots; s++) {
		const l1_bucket *b = l1->b[s];
		if (b == NULL)
			continue;
		uint32_t m = 0;
		for (uint32_t r = 0; r < b->n; r++)
			m += b->rows[r] >= inuse;
		if (m > best) {
			best = m;
			*slot = s;
		}
	}
	return best;
}

/* A new version of slot s whose m rows at or above inuse moved to new rows
 * (the lowest free ones): the members that keep their rows first, with
 * their codes; the moved ones after, their vectors stored anew. */
static int pack(drift_l1 *l1, uint32_t s, uint64_t inuse, uint32_t m,
		drift_l1_maint_stats *st)
{
	const l1_bucket *b = l1->b[s];
	uint32_t *dead = drift_mallocarray(m, sizeof(uint32_t));
	l1_bucket *nb = NULL;
	int rv = DRIFT_ENOMEM;
	if (dead == NULL ||
	    (rv = l1_bucket_alloc(l1, b->n, m, b->centroid, &nb)) != 0)
		goto out;
	uint32_t o = 0, d = 0;
	for (uint32_t r = 0; r < b->n; r++) {
		if (b->rows[r] >= inuse) {
			dead[d++] = b->rows[r];
			continue;
		}
		nb->ids[o] = b->ids[r];
		nb->versions[o] = b->versions[r];
		nb->rows[o] = b->rows[r];
		l1_bucket_copy_codes(l1, nb, o, b, r);
		o++;
	}
	for (uint32_t r = 0; r < b->n; r++)
		if (b->rows[r] >= inuse) {
			nb->ids[o] = b->ids[r];
			nb->versions[o] = b->versions[r];
			o++;
		}
	if ((rv = drift_vstore_read(l1->vs, dead, m, nb->newvecs)) != 0 ||
	    (rv = l1_bucket_finish_update(l1, nb, b, dead, m)) != 0)
		goto out;
	l1_change ch = {.slot = s, .nb = nb};
	nb = NULL;
	l1_publish(l1, &ch, 1, NULL, 0);
	/* No search can hold the old rows now. */
	drift_vstore_release(l1->vs, dead, m);
	st->packs++;
	st->packed += m;
out:
	l1_bucket_free(nb);
	drift_free(dead);
	return rv;
}

static double bucket_drift(const l1_bucket *b, uint32_t dim)
{
	if (b->n == 0 || !(b->rms > 0))
		return 0;
	double d2 = 0;
	for (uint32_t j = 0; j < dim; j++) {
		double m = b->sum[j] / b->n - b->centroid[j];
		d2 += m * m;
	}
	return sqrt(d2) / b->rms;
}

enum action { ACT_NONE, ACT_SPLIT, ACT_MERGE, ACT_RECENTER };

/* The most urgent action: splits by size, then merges by urgency, then
 * re-centres by drift. */
static enum action pick(const drift_l1 *l1, uint32_t *slot)
{
	double best = 0;
	enum action act = ACT_NONE;
	for (uint32_t s = 0; s < l1->nslots; s++) {
		const l1_bucket *b = l1->b[s];
		if (b == NULL)
			continue;
		double score;
		enum action a;
		if (b->n > l1->o.bucket_max) {
			a = ACT_SPLIT;
			score = 3.0 + (double)b->n / l1->o.bucket_max;
		} else if (b->n < l1->o.bucket_min && l1->live > 1) {
			a = ACT_MERGE;
			score = 2.0 + 1.0 - (double)b->n / l1->o.bucket_min;
		} else {
			double dr = bucket_drift(b, l1->dim);
			if (dr <= l1->o.drift_ratio)
				continue;
			a = ACT_RECENTER;
			score = 1.0 + (dr < 0.99 ? dr : 0.99);
		}
		if (score > best) {
			best = score;
			act = a;
			*slot = s;
		}
	}
	return act;
}

int drift_l1_maintain(drift_l1 *l1, unsigned max_actions,
		      drift_l1_maint_stats *done, drift_err *err)
{
	drift_l1_maint_stats st = {0};
	int rv = 0;
	for (unsigned i = 0; i < max_actions; i++) {
		uint32_t s = 0;
		enum action a = pick(l1, &s);
		if (a == ACT_NONE) {
			/* Packing last: it only gives memory back. */
			uint64_t inuse;
			uint32_t m = 0;
			if (pack_wanted(l1, &inuse) &&
			    (m = pack_pick(l1, inuse, &s)) == 0)
				l1->packing = false;
			if (m == 0)
				break;
			if ((rv = pack(l1, s, inuse, m, &st)) != 0) {
				rv = drift_err_set(err, rv, "L1 packing");
				break;
			}
			continue;
		}
		uint64_t t0 = l1->on_action != NULL ? drift_now_ns() : 0;
		rv = a == ACT_SPLIT   ? split(l1, s, &st)
		     : a == ACT_MERGE ? merge(l1, s, &st)
				      : recenter(l1, s, &st);
		if (rv != 0) {
			rv = drift_err_set(err, rv, "L1 maintenance");
			break;
		}
		if (l1->on_action != NULL)
			l1->on_action(l1->on_action_ctx,
				      a == ACT_SPLIT   ? DRIFT_L1_SPLIT
				      : a == ACT_MERGE ? DRIFT_L1_MERGE
						       : DRIFT_L1_RECENTER,
				      drift_now_ns() - t0);
	}
	if (rv == 0 && l1->count > 0 &&
	    l1->changed_since_calib * 10 > l1->count)
		rv = l1_calib_refresh(l1, err);
	if (done != NULL)
		*done = st;
	return rv;
}

void drift_l1_set_action_hook(drift_l1 *l1, drift_l1_action_fn fn, void *ctx)
{
	l1->on_action = fn;
	l1->on_action_ctx = ctx;
}
