#include "common/alloc.h"

#include <stdatomic.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

static void *libc_malloc(void *ctx, size_t size)
{
	(void)ctx;
	return malloc(size == 0 ? 1 : size);
}

static void *libc_calloc(void *ctx, size_t n, size_t size)
{
	(void)ctx;
	if (n == 0 || size == 0)
		n = size = 1;
	return calloc(n, size);
}

static void *libc_realloc(void *ctx, void *ptr, size_t size)
{
	(void)ctx;
	return realloc(ptr, size == 0 ? 1 : size);
}

static void *libc_aligned(void *ctx, size_t align, size_t size)
{
	(void)ctx;
	void *p = NULL;
	if (posix_memalign(&p, align, size == 0 ? align : size) != 0)
		return NULL;
	return p;
}

static void libc_free(void *ctx, void *ptr)
{
	(void)ctx;
	free(ptr);
}

static const drift_allocator libc_allocator = {
	.malloc = libc_malloc,
	.calloc = libc_calloc,
	.realloc = libc_realloc,
	.aligned = libc_aligned,
	.free = libc_free,
	.ctx = NULL,
};

static _Atomic(const drift_allocator *) current = &libc_allocator;

/* Fault injection state: the failure is armed for allocation number fail_at
 * (counted from 1 since the arm); 0 means disarmed. */
static atomic_long fail_at;
static atomic_long seen;
static atomic_int sticky_fail;
static atomic_int fired;

const drift_allocator *drift_alloc_libc(void)
{
	return &libc_allocator;
}

void drift_alloc_set(const drift_allocator *a)
{
	atomic_store(&current, a != NULL ? a : &libc_allocator);
}

void drift_failalloc_arm(long nth, int sticky)
{
	atomic_store(&seen, 0);
	atomic_store(&fired, 0);
	atomic_store(&sticky_fail, sticky != 0);
	atomic_store(&fail_at, nth);
}

long drift_failalloc_seen(void)
{
	return atomic_load(&seen);
}

int drift_failalloc_fired(void)
{
	return atomic_load(&fired);
}

/* Whether this allocation must fail. Cheap when disarmed: one atomic load. */
static int should_fail(void)
{
	long at = atomic_load_explicit(&fail_at, memory_order_relaxed);
	if (at <= 0)
		return 0;
	long n = atomic_fetch_add(&seen, 1) + 1;
	if (n == at || (n > at && atomic_load(&sticky_fail))) {
		atomic_store(&fired, 1);
		return 1;
	}
	return 0;
}

void *drift_malloc(size_t size)
{
	if (should_fail())
		return NULL;
	const drift_allocator *a = atomic_load(&current);
	return a->malloc(a->ctx, size);
}

void *drift_calloc(size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	if (should_fail())
		return NULL;
	const drift_allocator *a = atomic_load(&current);
	return a->calloc(a->ctx, n, size);
}

void *drift_mallocarray(size_t n, size_t size)
{
	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	return drift_malloc(n * size);
}

void *drift_realloc(void *ptr, size_t size)
{
	if (should_fail())
		return NULL;
	const drift_allocator *a = atomic_load(&current);
	return a->realloc(a->ctx, ptr, size);
}

void *drift_aligned_alloc(size_t align, size_t size)
{
	if (align < sizeof(void *) || (align & (align - 1)) != 0)
		return NULL;
	if (should_fail())
		return NULL;
	const drift_allocator *a = atomic_load(&current);
	return a->aligned(a->ctx, align, size);
}

void drift_free(void *ptr)
{
	if (ptr == NULL)
		return;
	const drift_allocator *a = atomic_load(&current);
	a->free(a->ctx, ptr);
}

char *drift_strndup(const char *s, size_t n)
{
	size_t len = strnlen(s, n);
	char *p = drift_malloc(len + 1);
	if (p == NULL)
		return NULL;
	memcpy(p, s, len);
	p[len] = '\0';
	return p;
}

char *drift_strdup(const char *s)
{
	return drift_strndup(s, SIZE_MAX);
}

void *drift_reserve(size_t size)
{
	if (should_fail())
		return NULL;
	void *p = mmap(NULL, size ? size : 1, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	return p == MAP_FAILED ? NULL : p;
}

void drift_unreserve(void *ptr, size_t size)
{
	if (ptr != NULL)
		munmap(ptr, size ? size : 1);
}
