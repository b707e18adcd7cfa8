/* Fuzz target: arbitrary bytes as a FastLanes column (both widths), and
 * the same bytes as integers through encode/decode round trips (plain and
 * delta, 32 and 64 bit) that must be bit-exact. */
#include <stdlib.h>
#include <string.h>

#include "node/codec/fastlanes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void decode(const uint8_t *data, size_t size)
{
	drift_fastlanes_info info;
	if (drift_fastlanes_info_of(data, size, &info) != 0 ||
	    info.n > (UINT64_C(1) << 22))
		return;
	uint64_t *out = malloc((size_t)info.n * sizeof(uint64_t) + 1);
	if (out == NULL)
		return;
	drift_fastlanes_decode32(data, size, (uint32_t *)out, (size_t)info.n);
	drift_fastlanes_decode64(data, size, out, (size_t)info.n);
	free(out);
}

static void round_trip(const uint8_t *data, size_t size, bool delta)
{
	size_t n64 = size / 8, n32 = size / 4;
	size_t cap = drift_fastlanes_bound(n32, 32, delta);
	size_t cap64 = drift_fastlanes_bound(n64, 64, delta);
	cap = cap > cap64 ? cap : cap64;
	uint8_t *enc = malloc(cap);
	uint64_t *in = malloc(size + 8), *back = malloc(size + 8);
	size_t len;
	if (enc == NULL || in == NULL || back == NULL)
		goto out;
	memcpy(in, data, size);
	if (drift_fastlanes_encode64(in, n64, delta, enc, cap, &len) != 0 ||
	    drift_fastlanes_decode64(enc, len, back, n64) != 0 ||
	    memcmp(in, back, n64 * 8) != 0)
		abort();
	if (drift_fastlanes_encode32((const uint32_t *)in, n32, delta, enc, cap,
				     &len) != 0 ||
	    drift_fastlanes_decode32(enc, len, (uint32_t *)back, n32) != 0 ||
	    memcmp(in, back, n32 * 4) != 0)
		abort();
out:
	free(enc);
	free(in);
	free(back);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	decode(copy, size);
	round_trip(copy, size, false);
	round_trip(copy, size, true);
	free(copy);
	return 0;
}
