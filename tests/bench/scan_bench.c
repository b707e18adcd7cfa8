/*
 * scan-bench: the SQ8 ADC scan kernel's speed per SIMD level, in GB/s of
 * codes per core, next to this core's memory read bandwidth measured in the
 * same run (a plain 64-bit read-and-add loop over a buffer much larger than
 * the caches). Prints one JSON line per measurement.
 *
 *   scan-bench [DIM] [MIB]
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/rand.h"
#include "common/simd.h"
#include "node/codec/sq8.h"

static double seconds(uint64_t t0)
{
	return (double)(drift_now_ns() - t0) / 1e9;
}

int main(int argc, char **argv)
{
	uint32_t dim = argc > 1 ? (uint32_t)atoi(argv[1]) : 128;
	size_t mib = argc > 2 ? (size_t)atoi(argv[2]) : 512;
	size_t bytes = mib << 20;
	size_t rows = bytes / dim;
	/* The bandwidth loop reads all `bytes`, the kernels rows * dim <=
	 * bytes: the buffer has `bytes` (it read past a rows * dim buffer and
	 * faulted when that ended on a page boundary, e.g. 784 x 512 MiB). */
	uint8_t *codes = drift_aligned_alloc(64, bytes);
	float *out = malloc(4096 * sizeof(float));
	float *t = malloc(dim * sizeof(float)),
	      *s = malloc(dim * sizeof(float));
	if (codes == NULL || out == NULL || t == NULL || s == NULL)
		return 1;
	drift_rand r;
	drift_rand_seed(&r, 1);
	for (size_t i = 0; i + 8 <= bytes; i += 8) {
		uint64_t v = drift_rand_next(&r);
		memcpy(codes + i, &v, 8);
	}
	for (uint32_t j = 0; j < dim; j++) {
		t[j] = (float)drift_rand_unit(&r) * 100;
		s[j] = (float)drift_rand_unit(&r);
	}

	/* Memory read bandwidth of one core: best of three passes. */
	double best = 0;
	volatile uint64_t sink = 0;
	for (int pass = 0; pass < 3; pass++) {
		const uint64_t *p = (const uint64_t *)codes;
		uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
		uint64_t t0 = drift_now_ns();
		for (size_t i = 0; i + 4 <= bytes / 8; i += 4) {
			a0 += p[i];
			a1 += p[i + 1];
			a2 += p[i + 2];
			a3 += p[i + 3];
		}
		double gbs = (double)bytes / seconds(t0) / 1e9;
		sink += a0 + a1 + a2 + a3;
		best = gbs > best ? gbs : best;
	}
	printf("{\"event\": \"membw\", \"gb_per_s\": %.2f, \"mib\": %zu}\n",
	       best, mib);

	for (int level = 0; level <= DRIFT_SIMD_AVX512; level++) {
		const drift_sq8_kernels *k = drift_sq8_for(level);
		if (k == NULL)
			continue;
		double kbest = 0;
		for (int pass = 0; pass < 3; pass++) {
			uint64_t t0 = drift_now_ns();
			for (size_t r0 = 0; r0 < rows; r0 += 4096) {
				size_t n = rows - r0 < 4096 ? rows - r0 : 4096;
				k->l2(t, s, codes + r0 * dim, n, dim, out);
				sink += (uint64_t)out[0];
			}
			double gbs = (double)(rows * dim) / seconds(t0) / 1e9;
			kbest = gbs > kbest ? gbs : kbest;
		}
		printf("{\"event\": \"scan\", \"level\": \"%s\", \"dim\": %u, "
		       "\"gb_per_s\": %.2f, \"vectors_per_s\": %.0f}\n",
		       drift_simd_name(level), dim, kbest, kbest * 1e9 / dim);
	}
	(void)sink;
	drift_free(codes);
	free(out);
	free(t);
	free(s);
	return 0;
}
