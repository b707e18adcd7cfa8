#include "common/abuf.h"

#include <assert.h>
#include <string.h>

#include "common/alloc.h"
#include "common/err.h"

void drift_abuf_init(drift_abuf *b, size_t align)
{
	assert(align >= sizeof(void *) && (align & (align - 1)) == 0);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
	b->align = align;
}

int drift_abuf_reserve(drift_abuf *b, size_t cap)
{
	if (cap <= b->cap)
		return 0;
	if (cap > SIZE_MAX / 2)
		return DRIFT_ERANGE;
	/* Grow geometrically so that appends are amortised O(1). */
	size_t want = b->cap < 256 ? 256 : b->cap;
	while (want < cap)
		want *= 2;
	want = drift_align_up(want, b->align);

	uint8_t *p = drift_aligned_alloc(b->align, want);
	if (p == NULL)
		return DRIFT_ENOMEM;
	if (b->len > 0)
		memcpy(p, b->data, b->len);
	drift_free(b->data);
	b->data = p;
	b->cap = want;
	return 0;
}

int drift_abuf_append(drift_abuf *b, const void *src, size_t n)
{
	if (n > SIZE_MAX / 2 - b->len)
		return DRIFT_ERANGE;
	int rv = drift_abuf_reserve(b, b->len + n);
	if (rv != 0)
		return rv;
	if (n == 0)
		return 0;
	if (src != NULL)
		memcpy(b->data + b->len, src, n);
	else
		memset(b->data + b->len, 0, n);
	b->len += n;
	return 0;
}

int drift_abuf_pad(drift_abuf *b, size_t multiple)
{
	assert(multiple > 0 && (multiple & (multiple - 1)) == 0);
	size_t target = drift_align_up(b->len, multiple);
	return drift_abuf_append(b, NULL, target - b->len);
}

void drift_abuf_clear(drift_abuf *b)
{
	b->len = 0;
}

void drift_abuf_free(drift_abuf *b)
{
	drift_free(b->data);
	b->data = NULL;
	b->len = 0;
	b->cap = 0;
}
