/*
 * codec-bench: speed and compression of the L1 storage codecs on real
 * vectors. For each data set: ALP (encode and decode GB/s of float32 bytes,
 * compression ratio vs raw float32, one-row range decodes), SQ8 (train +
 * encode and decode GB/s of float32 bytes), FastLanes on the integer
 * columns a bucket of that many rows has (sorted ids and byte offsets with
 * delta, random 48-bit ids plain: GB/s of raw integer bytes and ratio),
 * FastLanes also packs the data set's own values as u32 when every one of
 * them is an integer in 0..2^32-1 (pixels, SIFT bins),
 * and the bloom filter (adds and probes per second, measured false-positive
 * rate at a 1% target). One JSON line per measurement on stdout.
 *
 *   codec-bench [MAX_ROWS [SET...]]      SET: fmnist, sift (default both)
 *
 * Data: Fashion-MNIST from the benchmark cache
 * (${DRIFT_BENCH_DATA:-/var/tmp/drift-bench}/fmnist/base.fvecs) or else
 * the Debian package dataset-fashion-mnist; SIFT descriptors from
 * .../sift/base.fvecs when the cache has them (skipped with a message when
 * not named on the command line, an error when named). At most MAX_ROWS
 * rows of each (default 200000). Times are the best of 3 runs.
 *
 * Every lossless round trip (ALP whole and one-row range decodes,
 * FastLanes) is compared bit for bit with its input after the timed runs;
 * a difference prints what differs and exits 1, so a figure is never
 * reported for a wrong result. The "codec" lines carry "bit_exact": true
 * for those, false for SQ8 (lossy), whose largest error in quantization
 * steps is "max_err_steps" (at most 0.5 plus float rounding).
 */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "common/clock.h"
#include "common/rand.h"
#include "node/codec/alp.h"
#include "node/codec/bloom.h"
#include "node/codec/fastlanes.h"
#include "node/codec/sq8.h"

#define RUNS 3

typedef struct dataset {
	const char *name;
	float *x;
	size_t rows;
	uint32_t dim;
} dataset;

static double since(uint64_t t0)
{
	return (double)(drift_now_ns() - t0) / 1e9;
}

static int read_fvecs(const char *path, size_t max_rows, dataset *d)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		return -1;
	int32_t dim;
	if (fread(&dim, 4, 1, f) != 1 || dim <= 0 || dim > 65536) {
		fclose(f);
		return -1;
	}
	/* Rows in the file, so that a small file gets a small buffer. */
	size_t row_bytes = 4 + (size_t)dim * 4;
	if (fseek(f, 0, SEEK_END) == 0 && ftell(f) > 0 &&
	    (size_t)ftell(f) / row_bytes < max_rows)
		max_rows = (size_t)ftell(f) / row_bytes;
	rewind(f);
	float *x = malloc(max_rows * (size_t)dim * sizeof(float));
	size_t n = 0;
	int32_t dd;
	while (x != NULL && n < max_rows && fread(&dd, 4, 1, f) == 1 &&
	       dd == dim &&
	       fread(x + n * (size_t)dim, 4, (size_t)dim, f) == (size_t)dim)
		n++;
	fclose(f);
	if (x == NULL || n == 0) {
		free(x);
		return -1;
	}
	d->x = x;
	d->rows = n;
	d->dim = (uint32_t)dim;
	return 0;
}

/* The IDX file of the Debian package (big-endian header, then bytes). */
static int read_fmnist_package(size_t max_rows, dataset *d)
{
	FILE *p = popen("gzip -dc /usr/share/datasets/fashion-mnist/"
			"train-images-idx3-ubyte.gz 2>/dev/null",
			"r");
	if (p == NULL)
		return -1;
	unsigned char head[16];
	if (fread(head, 1, 16, p) != 16) {
		pclose(p);
		return -1;
	}
	size_t n = (size_t)head[4] << 24 | (size_t)head[5] << 16 |
		   (size_t)head[6] << 8 | head[7];
	n = n < max_rows ? n : max_rows;
	float *x = malloc(n * 784 * sizeof(float));
	unsigned char row[784];
	size_t r = 0;
	for (; x != NULL && r < n && fread(row, 1, 784, p) == 784; r++)
		for (int i = 0; i < 784; i++)
			x[r * 784 + i] = row[i];
	pclose(p);
	if (x == NULL || r == 0) {
		free(x);
		return -1;
	}
	*d = (dataset){"fmnist", x, r, 784};
	return 0;
}

/* bit_exact: 1 checked lossless, 0 lossy (max_err_steps then given). */
static void emit(const char *set, const char *codec, const char *column,
		 size_t raw, size_t enc, double enc_s, double dec_s,
		 int bit_exact, double max_err_steps)
{
	printf("{\"event\": \"codec\", \"dataset\": \"%s\", \"codec\": "
	       "\"%s\", \"column\": \"%s\", \"raw_bytes\": %zu, "
	       "\"encoded_bytes\": %zu, \"ratio\": %.3f, "
	       "\"encode_gb_per_s\": %.3f, \"decode_gb_per_s\": %.3f, "
	       "\"bit_exact\": %s",
	       set, codec, column, raw, enc, (double)raw / (double)enc,
	       (double)raw / enc_s / 1e9, (double)raw / dec_s / 1e9,
	       bit_exact ? "true" : "false");
	if (!bit_exact)
		printf(", \"max_err_steps\": %.4f", max_err_steps);
	printf("}\n");
	fflush(stdout);
}

/* Exits 1 naming the first value whose bits differ. */
static void check_bits(const char *what, const char *set, const void *a,
		       const void *b, size_t n, size_t width)
{
	if (memcmp(a, b, n * width) == 0)
		return;
	size_t i = 0;
	while (memcmp((const uint8_t *)a + i * width,
		      (const uint8_t *)b + i * width, width) == 0)
		i++;
	fprintf(stderr,
		"codec-bench: %s on %s is not bit-exact: value %zu of %zu "
		"differs\n",
		what, set, i, n);
	exit(1);
}

static void bench_alp(const dataset *d)
{
	size_t n = d->rows * d->dim, cap = drift_alp_bound(n), len = 0;
	uint8_t *buf = malloc(cap);
	float *back = malloc(n * sizeof(float));
	if (buf == NULL || back == NULL)
		exit(1);
	double enc = 1e30, dec = 1e30;
	for (int run = 0; run < RUNS; run++) {
		uint64_t t0 = drift_now_ns();
		if (drift_alp_encode(d->x, n, buf, cap, &len) != 0)
			exit(1);
		double s = since(t0);
		enc = s < enc ? s : enc;
		t0 = drift_now_ns();
		if (drift_alp_decode(buf, len, back, n) != 0)
			exit(1);
		s = since(t0);
		dec = s < dec ? s : dec;
	}
	check_bits("ALP", d->name, back, d->x, n, sizeof(float));
	emit(d->name, "alp", "vectors", n * 4, len, enc, dec, 1, 0);
	drift_alp_stats st;
	if (drift_alp_stats_of(buf, len, &st) != 0)
		exit(1);
	/* Re-rank access: one random row at a time. */
	drift_rand r;
	drift_rand_seed(&r, 1);
	enum { FETCHES = 20000 };
	uint64_t t0 = drift_now_ns();
	for (int i = 0; i < FETCHES; i++) {
		uint64_t row = drift_rand_below(&r, d->rows);
		if (drift_alp_decode_range(buf, len, row * d->dim, d->dim,
					   back + row * d->dim) != 0)
			exit(1);
	}
	double s = since(t0);
	/* The fetched rows landed in place over the whole decode. */
	check_bits("ALP range decode", d->name, back, d->x, n, sizeof(float));
	printf("{\"event\": \"alp_detail\", \"dataset\": \"%s\", "
	       "\"vectors_alp\": %llu, \"vectors_rd\": %llu, "
	       "\"vectors_stored\": %llu, \"exceptions\": %llu, "
	       "\"row_fetch_us\": %.3f}\n",
	       d->name, (unsigned long long)st.alp, (unsigned long long)st.rd,
	       (unsigned long long)st.stored, (unsigned long long)st.exceptions,
	       s / FETCHES * 1e6);
	free(buf);
	free(back);
}

static void bench_sq8(const dataset *d)
{
	size_t n = d->rows, dim = d->dim;
	float *min = malloc(dim * 4), *scale = malloc(dim * 4);
	uint8_t *codes = malloc(n * dim);
	float *back = malloc(n * dim * sizeof(float));
	if (min == NULL || scale == NULL || codes == NULL || back == NULL)
		exit(1);
	double enc = 1e30, dec = 1e30;
	for (int run = 0; run < RUNS; run++) {
		uint64_t t0 = drift_now_ns();
		if (drift_sq8_train(d->x, n, d->dim, min, scale) != 0)
			exit(1);
		if (drift_sq8_encode(min, scale, d->dim, d->x, n, codes) != 0)
			exit(1);
		double s = since(t0);
		enc = s < enc ? s : enc;
		t0 = drift_now_ns();
		drift_sq8_decode(min, scale, d->dim, codes, n, back);
		s = since(t0);
		dec = s < dec ? s : dec;
	}
	double worst = 0;
	for (size_t i = 0; i < n * dim; i++) {
		float sc = scale[i % dim];
		double e = fabs((double)back[i] - (double)d->x[i]);
		/* A constant dimension (scale 0) decodes exactly. */
		if (sc > 0 && e / sc > worst)
			worst = e / sc;
	}
	emit(d->name, "sq8", "vectors (lossy)", n * dim * 4, n * dim + 8 * dim,
	     enc, dec, 0, worst);
	free(min);
	free(scale);
	free(codes);
	free(back);
}

static void bench_fastlanes(const char *set, const char *column,
			    const uint64_t *v, size_t n, bool delta)
{
	size_t cap = drift_fastlanes_bound(n, 64, delta), len = 0;
	uint8_t *buf = malloc(cap);
	uint64_t *back = malloc(n * 8);
	if (buf == NULL || back == NULL)
		exit(1);
	double enc = 1e30, dec = 1e30;
	for (int run = 0; run < RUNS; run++) {
		uint64_t t0 = drift_now_ns();
		if (drift_fastlanes_encode64(v, n, delta, buf, cap, &len) != 0)
			exit(1);
		double s = since(t0);
		enc = s < enc ? s : enc;
		t0 = drift_now_ns();
		if (drift_fastlanes_decode64(buf, len, back, n) != 0)
			exit(1);
		s = since(t0);
		dec = s < dec ? s : dec;
	}
	check_bits("FastLanes", set, back, v, n, 8);
	emit(set, delta ? "fastlanes+delta" : "fastlanes", column, n * 8, len,
	     enc, dec, 1, 0);
	free(buf);
	free(back);
}

/* The data set's values as u32, when they all are integers (Fashion-MNIST
 * pixels, SIFT bins): FastLanes on real data. */
static void bench_values32(const dataset *d)
{
	size_t n = d->rows * d->dim;
	for (size_t i = 0; i < n; i++)
		if (!(d->x[i] >= 0 && d->x[i] <= 4294967295.0f &&
		      d->x[i] == floorf(d->x[i]))) {
			fprintf(stderr,
				"codec-bench: %s has non-integer values; "
				"FastLanes u32 of the values skipped\n",
				d->name);
			return;
		}
	uint32_t *v = malloc(n * 4), *back = malloc(n * 4);
	size_t cap = drift_fastlanes_bound(n, 32, false), len = 0;
	uint8_t *buf = malloc(cap);
	if (v == NULL || back == NULL || buf == NULL)
		exit(1);
	for (size_t i = 0; i < n; i++)
		v[i] = (uint32_t)d->x[i];
	double enc = 1e30, dec = 1e30;
	for (int run = 0; run < RUNS; run++) {
		uint64_t t0 = drift_now_ns();
		if (drift_fastlanes_encode32(v, n, false, buf, cap, &len) != 0)
			exit(1);
		double s = since(t0);
		enc = s < enc ? s : enc;
		t0 = drift_now_ns();
		if (drift_fastlanes_decode32(buf, len, back, n) != 0)
			exit(1);
		s = since(t0);
		dec = s < dec ? s : dec;
	}
	check_bits("FastLanes u32", d->name, back, v, n, 4);
	emit(d->name, "fastlanes", "vector values (u32)", n * 4, len, enc, dec,
	     1, 0);
	free(v);
	free(back);
	free(buf);
}

static void bench_columns(const dataset *d)
{
	size_t n = d->rows;
	uint64_t *v = malloc(n * 8);
	if (v == NULL)
		exit(1);
	drift_rand r;
	drift_rand_seed(&r, 2);
	/* Sorted ids with gaps (deleted rows): 1..8 apart. */
	for (size_t i = 0; i < n; i++)
		v[i] = (i ? v[i - 1] : UINT64_C(1) << 32) + 1 +
		       drift_rand_below(&r, 8);
	bench_fastlanes(d->name, "sorted ids (u64)", v, n, true);
	/* Byte offsets of the rows in a page block. */
	for (size_t i = 0; i < n; i++)
		v[i] = (uint64_t)i * d->dim * 4;
	bench_fastlanes(d->name, "row offsets (u64)", v, n, true);
	/* Unsorted ids drawn from 48 bits. */
	for (size_t i = 0; i < n; i++)
		v[i] = drift_rand_next(&r) >> 16;
	bench_fastlanes(d->name, "random 48-bit ids (u64)", v, n, false);

	/* Bloom filter of the sorted ids. */
	for (size_t i = 0; i < n; i++)
		v[i] = (i ? v[i - 1] : 0) + 1 + drift_rand_below(&r, 8);
	drift_bloom b;
	if (drift_bloom_new(&b, n, 0.01) != 0)
		exit(1);
	uint64_t t0 = drift_now_ns();
	for (size_t i = 0; i < n; i++)
		drift_bloom_add(&b, v[i]);
	double add_s = since(t0);
	size_t fp = 0, probes = 1000000;
	t0 = drift_now_ns();
	for (size_t i = 0; i < probes; i++)
		fp += drift_bloom_maybe(&b, (UINT64_C(1) << 62) + i);
	double probe_s = since(t0);
	printf("{\"event\": \"bloom\", \"dataset\": \"%s\", \"n\": %zu, "
	       "\"bytes\": %zu, \"k\": %u, \"target_fp\": 0.01, "
	       "\"measured_fp\": %.5f, \"adds_per_s\": %.0f, "
	       "\"probes_per_s\": %.0f}\n",
	       d->name, n, drift_bloom_size(&b), b.k, (double)fp / probes,
	       (double)n / add_s, (double)probes / probe_s);
	drift_bloom_free(&b);
	free(v);
}

int main(int argc, char **argv)
{
	size_t max_rows = argc > 1 ? (size_t)atol(argv[1]) : 200000;
	bool want_fmnist = argc <= 2, want_sift = argc <= 2;
	for (int i = 2; i < argc; i++) {
		if (strcmp(argv[i], "fmnist") == 0) {
			want_fmnist = true;
		} else if (strcmp(argv[i], "sift") == 0) {
			want_sift = true;
		} else {
			fprintf(stderr, "usage: codec-bench [MAX_ROWS [fmnist] "
					"[sift]]\n");
			return 2;
		}
	}
	if (max_rows == 0)
		max_rows = 200000;
	const char *base = getenv("DRIFT_BENCH_DATA");
	if (base == NULL || base[0] == '\0')
		base = "/var/tmp/drift-bench";
	char path[1024];
	dataset sets[2];
	int nsets = 0;

	/* A set named on the command line must be there. */
	bool named = argc > 2;
	snprintf(path, sizeof(path), "%s/fmnist/base.fvecs", base);
	if (want_fmnist) {
		if (read_fvecs(path, max_rows, &sets[nsets]) == 0 ||
		    read_fmnist_package(max_rows, &sets[nsets]) == 0) {
			sets[nsets++].name = "fmnist";
		} else {
			fprintf(stderr,
				"codec-bench: no Fashion-MNIST (make deps)\n");
			if (named)
				return 1;
		}
	}
	snprintf(path, sizeof(path), "%s/sift/base.fvecs", base);
	if (want_sift) {
		if (read_fvecs(path, max_rows, &sets[nsets]) == 0) {
			sets[nsets++].name = "sift";
		} else {
			fprintf(stderr,
				"codec-bench: %s absent, SIFT skipped\n", path);
			if (named)
				return 1;
		}
	}

	for (int i = 0; i < nsets; i++) {
		fprintf(stderr, "codec-bench: %s, %zu x %u\n", sets[i].name,
			sets[i].rows, sets[i].dim);
		printf("{\"event\": \"dataset\", \"dataset\": \"%s\", "
		       "\"rows\": %zu, \"dim\": %u}\n",
		       sets[i].name, sets[i].rows, sets[i].dim);
		bench_alp(&sets[i]);
		bench_sq8(&sets[i]);
		bench_values32(&sets[i]);
		bench_columns(&sets[i]);
		free(sets[i].x);
	}
	return nsets > 0 ? 0 : 1;
}
