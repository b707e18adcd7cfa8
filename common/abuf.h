/*
 * Aligned, growable byte buffers.
 *
 * Columns that SIMD kernels scan start on a cache line (DRIFT_ALIGN_CACHE, 64
 * bytes, also the width of an AVX-512 register), and blocks written with
 * O_DIRECT start and end on a page (DRIFT_ALIGN_PAGE, 4 KiB). A drift_abuf
 * keeps its data at the alignment it was created with across growth, and
 * drift_abuf_pad() zero-fills up to the next multiple of a size so that a
 * block ends on a page boundary.
 *
 * A drift_abuf owns its memory; drift_abuf_free() releases it. All functions
 * leave the buffer unchanged when they fail.
 */
#ifndef DRIFT_COMMON_ABUF_H
#define DRIFT_COMMON_ABUF_H

#include <stddef.h>
#include <stdint.h>

#define DRIFT_ALIGN_CACHE 64
#define DRIFT_ALIGN_PAGE 4096

/* x rounded up to a multiple of a (a power of two). x must not overflow. */
static inline size_t drift_align_up(size_t x, size_t a)
{
	return (x + a - 1) & ~(a - 1);
}

static inline int drift_is_aligned(const void *p, size_t a)
{
	return ((uintptr_t)p & (a - 1)) == 0;
}

typedef struct drift_abuf {
	uint8_t *data; /* NULL until the first growth; aligned to align */
	size_t len;    /* bytes in use */
	size_t cap;    /* bytes allocated, a multiple of align */
	size_t align;  /* power of two >= sizeof(void *) */
} drift_abuf;

/* Empty buffer with the given alignment; allocates nothing. align must be a
 * power of two of at least sizeof(void *) (asserted). */
void drift_abuf_init(drift_abuf *b, size_t align);

/* Makes room for at least cap bytes. 0, DRIFT_ENOMEM or DRIFT_ERANGE (size
 * overflow). The contents and len are kept. */
int drift_abuf_reserve(drift_abuf *b, size_t cap);

/* Appends n bytes (zeros when src is NULL). 0, DRIFT_ENOMEM or DRIFT_ERANGE. */
int drift_abuf_append(drift_abuf *b, const void *src, size_t n);

/* Appends zeros until len is a multiple of multiple (a power of two). */
int drift_abuf_pad(drift_abuf *b, size_t multiple);

/* Sets len to 0 and keeps the memory. */
void drift_abuf_clear(drift_abuf *b);

/* Releases the memory; the buffer is empty and may be reused. */
void drift_abuf_free(drift_abuf *b);

#endif /* DRIFT_COMMON_ABUF_H */
