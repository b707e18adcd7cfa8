/* Fuzz target: arbitrary bytes as an ALP column (every decoder entry
 * point), and the same bytes as floats through an encode/decode round trip
 * that must be bit-exact. */
#include <stdlib.h>
#include <string.h>

#include "node/codec/alp.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Decoding is bounded by what the column can hold: at most 256 values per
 * input byte, checked by drift_alp_count. */
static void decode(const uint8_t *data, size_t size)
{
	uint64_t n;
	if (drift_alp_count(data, size, &n) != 0 || n > (UINT64_C(1) << 22))
		return;
	float *out = malloc((size_t)n * sizeof(float) + 1);
	if (out == NULL)
		return;
	drift_alp_decode(data, size, out, (size_t)n);
	if (n > 0) {
		drift_alp_decode_range(data, size, n / 2, (size_t)(n - n / 2),
				       out);
		drift_alp_decode_range(data, size, n - 1, 1, out);
	}
	drift_alp_stats st;
	drift_alp_stats_of(data, size, &st);
	free(out);
}

static void round_trip(const uint8_t *data, size_t size)
{
	size_t n = size / sizeof(float), cap = drift_alp_bound(n), len;
	float *in = malloc(n * sizeof(float) + 1);
	float *back = malloc(n * sizeof(float) + 1);
	uint8_t *enc = malloc(cap);
	if (in == NULL || back == NULL || enc == NULL)
		goto out;
	memcpy(in, data, n * sizeof(float));
	if (drift_alp_encode(in, n, enc, cap, &len) != 0 ||
	    drift_alp_decode(enc, len, back, n) != 0 ||
	    memcmp(in, back, n * sizeof(float)) != 0)
		abort();
out:
	free(in);
	free(back);
	free(enc);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* An exact-size copy, so that any read past the input is caught. */
	uint8_t *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	decode(copy, size);
	round_trip(copy, size);
	free(copy);
	return 0;
}
