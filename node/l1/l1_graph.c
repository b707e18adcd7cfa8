/*
 * The centroid graph of the L1 index: with many buckets, the nearest
 * centroids of a query come from a small HNSW over the centroids (DESIGN.md,
 * "Centroid search") instead of a flat scan of all of them.
 *
 * The graph is node/l0/hnsw.c used as it is, through its API: one node per
 * bucket slot, keyed by the slot number. A slot whose centroid changes (a
 * split, a re-centre, a new or loaded bucket) is inserted again with a
 * higher sequence number, so its old node stays only as a waypoint; a freed
 * slot gets a tombstone. The graph's metric gives the probe key's order: L2
 * for L2, inner product for IP and COSINE (queries are normalised by
 * l1.c and the key is -dot(q, centroid) with the centroid as it is, which
 * hnsw's COSINE would normalise). It is built when the index reaches
 * graph_min_buckets live buckets (default GRAPH_MIN) with room for twice
 * the live buckets plus GRAPH_SLACK rows; when the rows run out (or an
 * insert fails) it is marked unusable, searches fall back to the flat scan,
 * and the writer rebuilds it after the publish.
 *
 * The probe keys themselves are always recomputed exactly from l1->cent:
 * the graph only chooses which buckets are candidates. Search width:
 * ef = max(2 * wanted, GRAPH_EF) (the test in tests/unit/test_l1.c checks
 * that recall at a probe budget and at a recall target is that of the flat
 * scan on 2,000 buckets).
 *
 * Threads: inserts run under the write side of l1->lock (in l1_publish);
 * searches under the read side; the graph is replaced under the write side
 * and the old one freed after, so no reader can hold it.
 */
#include <float.h>
#include <math.h>
#include <string.h>

#include "common/alloc.h"
#include "common/log.h"
#include "common/vec.h"
#include "node/l0/hnsw.h"
#include "node/l1/l1_internal.h"

/* From this many live buckets the graph is used. Measured on 1M SIFT
 * (1,954 buckets, recall target 0.95, 44.7 buckets probed, one thread):
 * the flat scan took 255-333 us of CPU per search against 441-467 us with
 * the graph, the same recall (docs/search-profile.md); a flat scan grows
 * by about 15 ns a bucket, so the graph pays only several times further. */
#define GRAPH_MIN 8192
#define GRAPH_SLACK 256
#define GRAPH_EF 64

uint32_t l1_graph_min(const drift_l1 *l1)
{
	return l1->o.graph_min_buckets ? l1->o.graph_min_buckets : GRAPH_MIN;
}

void l1_graph_note(drift_l1 *l1, uint32_t slot, bool changed, bool freed)
{
	if (l1->cg == NULL || !l1->cg_ok || (!changed && !freed))
		return;
	int rv;
	if (freed)
		rv = drift_hnsw_delete(l1->cg, slot, ++l1->cg_seq);
	else
		rv = drift_hnsw_insert(l1->cg, slot,
				       l1->cent + (size_t)slot * l1->dim,
				       ++l1->cg_seq, NULL);
	if (rv != 0)
		l1->cg_ok = false; /* full (or no memory): rebuild */
}

/* A graph of every live centroid. */
static int graph_build(const drift_l1 *l1, drift_hnsw **out)
{
	drift_hnsw_opts o = {
		.dim = l1->dim,
		.metric = l1->o.metric == DRIFT_METRIC_L2 ? DRIFT_METRIC_L2
							  : DRIFT_METRIC_IP,
		.capacity = 2 * l1->live + GRAPH_SLACK,
		.seed = l1->o.seed,
	};
	drift_hnsw *g;
	int rv = drift_hnsw_new(&o, &g, NULL);
	if (rv != 0)
		return rv;
	for (uint32_t s = 0; s < l1->nslots && rv == 0; s++)
		if (l1->b[s] != NULL)
			rv = drift_hnsw_insert(
				g, s, l1->cent + (size_t)s * l1->dim, 1, NULL);
	if (rv != 0) {
		drift_hnsw_free(g);
		return rv;
	}
	*out = g;
	return 0;
}

void l1_graph_refresh(drift_l1 *l1)
{
	bool want = l1->live >= l1_graph_min(l1);
	if (want && l1->cg != NULL && l1->cg_ok)
		return;
	if (!want && l1->cg == NULL)
		return;
	drift_hnsw *g = NULL;
	if (want && graph_build(l1, &g) != 0) {
		DRIFT_WARN("L1: centroid graph of %u buckets could not be "
			   "built; searches scan every centroid",
			   l1->live);
		g = NULL;
	}
	pthread_rwlock_wrlock(&l1->lock);
	drift_hnsw *old = l1->cg;
	l1->cg = g;
	l1->cg_ok = g != NULL;
	l1->cg_seq = 1;
	pthread_rwlock_unlock(&l1->lock);
	drift_hnsw_free(old);
}

void l1_graph_free(drift_l1 *l1)
{
	drift_hnsw_free(l1->cg);
	l1->cg = NULL;
}

size_t l1_graph_probe(const drift_l1 *l1, const float *qn, size_t want,
		      drift_hit *scratch, probe *out)
{
	if (l1->cg == NULL || !l1->cg_ok || want == 0)
		return 0;
	uint32_t ef = want * 2 > GRAPH_EF ? (uint32_t)want * 2 : GRAPH_EF;
	size_t n = 0;
	if (drift_hnsw_search(l1->cg, qn, (uint32_t)want, ef, scratch, &n) != 0)
		return 0;
	const drift_vec_kernels *k = drift_vec();
	size_t m = 0;
	for (size_t i = 0; i < n; i++) {
		uint32_t s = (uint32_t)scratch[i].id;
		if (s >= l1->nslots || l1->b[s] == NULL)
			continue; /* cannot happen: freed slots are deleted */
		const float *c = l1->cent + (size_t)s * l1->dim;
		float key = l1->o.metric == DRIFT_METRIC_L2
				    ? sqrtf(k->l2sq(qn, c, l1->dim))
				    : -k->dot(qn, c, l1->dim);
		out[m++] = (probe){key, s};
	}
	return m;
}
