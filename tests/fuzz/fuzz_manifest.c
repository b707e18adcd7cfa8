/* Fuzz target: arbitrary bytes as a manifest file. The decoder must return
 * 0 or an error, never crash or read out of bounds, and what it accepts must
 * encode back to the same bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/alloc.h"
#include "node/storage/manifest.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	drift_manifest m;
	if (drift_manifest_decode(data, size, &m, NULL) != 0)
		return 0;
	uint8_t *b;
	size_t len;
	if (drift_manifest_encode(&m, &b, &len) == 0) {
		if (len != size || memcmp(b, data, size) != 0)
			abort();
		drift_free(b);
	}
	drift_manifest_free(&m);
	return 0;
}
