/* Fuzz target: arbitrary bytes as a serialised bloom filter. */
#include <stdlib.h>
#include <string.h>

#include "node/codec/bloom.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint64_t *copy = malloc(size + 8);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	drift_bloom b;
	if (drift_bloom_view(&b, (const uint8_t *)copy, size) == 0)
		for (uint64_t id = 0; id < 64; id++)
			drift_bloom_maybe(&b, id);
	free(copy);
	return 0;
}
