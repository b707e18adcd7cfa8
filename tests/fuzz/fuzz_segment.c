/* Fuzz target: arbitrary bytes as a segment file. Opening must fail cleanly
 * or give blocks and sections inside the file; reading every block must
 * return data or DRIFT_ECORRUPT. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "common/alloc.h"
#include "node/storage/segment.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char path[64];
	snprintf(path, sizeof(path), "/tmp/drift-fuzz-seg-%d.drift",
		 (int)getpid());
	FILE *fp = fopen(path, "wb");
	if (fp == NULL)
		return 0;
	fwrite(data, 1, size, fp);
	fclose(fp);
	drift_segment_reader *r;
	if (drift_segr_open(drift_fs_posix(), path, &r, NULL) == 0) {
		for (uint32_t i = 0; i < drift_segr_block_count(r); i++) {
			const drift_block_info *b = drift_segr_block(r, i);
			if (b->offset + b->length > size)
				__builtin_trap(); /* the reader let it past */
			void *buf = malloc(b->length + 1);
			if (buf != NULL)
				drift_segr_read_block(r, i, buf, NULL);
			free(buf);
		}
		const void *sec;
		size_t len;
		drift_segr_section(r, 1, &sec, &len);
		drift_segr_close(r);
	}
	unlink(path);
	return 0;
}
