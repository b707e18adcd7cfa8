/*
 * k-means clustering (Lloyd's algorithm) for building L1 buckets and for
 * splitting one bucket in two.
 *
 * Training runs on a seeded sample of at most sample_per_centroid * k
 * points (FAISS's practice: more points barely move the centroids); every
 * point is then assigned to its nearest centroid when asked. Initialisation
 * is k-means++ (Arthur & Vassilvitskii, 2007) for small k and distinct random
 * sample points for large k, where k-means++'s k passes over the sample cost
 * more than they bring. Empty clusters are re-seeded by splitting the
 * largest one (a perturbed copy of its centroid), so every centroid ends
 * with members. Distances are squared L2 through the SIMD kernels.
 */
#ifndef DRIFT_NODE_KMEANS_H
#define DRIFT_NODE_KMEANS_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct drift_kmeans_opts {
	unsigned iters;		      /* Lloyd iterations; 0: 10 */
	unsigned sample_per_centroid; /* 0: 64 */
	uint64_t seed;
} drift_kmeans_opts;

/* Clusters the n rows of x (row-major, dim floats each) into k centroids
 * (k <= n), written to centroids (k * dim floats). When assign is not NULL,
 * assign[i] gets the nearest centroid of row i. 0, DRIFT_EINVAL or
 * DRIFT_ENOMEM; outputs are written only on success. */
int drift_kmeans(const float *x, size_t n, uint32_t dim, uint32_t k,
		 const drift_kmeans_opts *opts, float *centroids,
		 uint32_t *assign, drift_err *err);

/* The index of the centroid nearest to v (of k, row-major) and, when dist is
 * not NULL, its squared distance. */
uint32_t drift_nearest(const float *v, const float *centroids, uint32_t k,
		       uint32_t dim, float *dist);

#endif /* DRIFT_NODE_KMEANS_H */
