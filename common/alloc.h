/*
 * Memory allocation behind a small interface.
 *
 * All of Drift allocates through drift_malloc() and friends, so a test can
 * replace the allocator (drift_alloc_set) or make the N-th allocation from now
 * fail (drift_failalloc_arm) and check that every failure path returns
 * DRIFT_ENOMEM and leaks nothing, in the manner of nghttp2's failmalloc tests.
 *
 * Memory from any of these functions, aligned included, is released with
 * drift_free(). drift_free(NULL) does nothing.
 */
#ifndef DRIFT_COMMON_ALLOC_H
#define DRIFT_COMMON_ALLOC_H

#include <stddef.h>

typedef struct drift_allocator {
	void *(*malloc)(void *ctx, size_t size);
	void *(*calloc)(void *ctx, size_t n, size_t size);
	void *(*realloc)(void *ctx, void *ptr, size_t size);
	/* align is a power of two, at least sizeof(void *). */
	void *(*aligned)(void *ctx, size_t align, size_t size);
	void (*free)(void *ctx, void *ptr);
	void *ctx;
} drift_allocator;

/* Each returns NULL on failure. A size of 0 returns a unique pointer that must
 * still be freed (never NULL on success). */
void *drift_malloc(size_t size);
void *drift_calloc(size_t n, size_t size); /* checks n * size for overflow */
void *drift_realloc(void *ptr, size_t size);
void *drift_aligned_alloc(size_t align, size_t size);
void drift_free(void *ptr);

/* Large zero-filled memory straight from the kernel (an anonymous private
 * mapping, without swap reservation): no page is resident until it is
 * first touched, and drift_unreserve gives every page back at once. For
 * arenas sized for a maximum that fill as they are used (node/l0/hnsw.c): the
 * C library would serve them from its heap once its mmap threshold has
 * grown past their size, and its calloc then writes every byte. Not
 * served by the allocator of drift_alloc_set, but counted and failed by
 * drift_failalloc_arm. NULL on failure; size is rounded up to pages. */
void *drift_reserve(size_t size);
/* Releases what drift_reserve returned, with the same size; NULL does
 * nothing. */
void drift_unreserve(void *ptr, size_t size);

/* A copy of s (NUL-terminated) or of its first n bytes plus a NUL. */
char *drift_strdup(const char *s);
char *drift_strndup(const char *s, size_t n);

/* malloc(n * size) with an overflow check. */
void *drift_mallocarray(size_t n, size_t size);

/* Installs allocator a for the whole process, or the C library's again when a
 * is NULL. The allocator must outlive its use; memory must be freed by the
 * allocator that returned it, so swap allocators only while nothing allocated
 * by the previous one is alive (tests do it between cases). */
void drift_alloc_set(const drift_allocator *a);

/* The C library allocator (malloc, posix_memalign, free). */
const drift_allocator *drift_alloc_libc(void);

/* Fault injection: after this call the nth allocation (1 = the next one)
 * fails, and so do all later ones when sticky is nonzero. nth = 0 disarms.
 * Counts allocations of every thread. */
void drift_failalloc_arm(long nth, int sticky);

/* Allocations counted since the last drift_failalloc_arm(). */
long drift_failalloc_seen(void);

/* Whether an armed failure has been delivered since the last arm. */
int drift_failalloc_fired(void);

#endif /* DRIFT_COMMON_ALLOC_H */
