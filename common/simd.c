#include "common/simd.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <strings.h>

#include "common/err.h"
#include "common/log.h"

static const char *const level_names[] = {"scalar", "avx2", "avx512"};

static pthread_once_t detect_once = PTHREAD_ONCE_INIT;
static int detected;
static atomic_int active;

/* __builtin_cpu_supports consults CPUID and XGETBV (the OS must save YMM or
 * ZMM state), so a level it reports can be used. */
static int detect_cpu(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_cpu_init();
	if (__builtin_cpu_supports("avx512f") &&
	    __builtin_cpu_supports("avx512bw") &&
	    __builtin_cpu_supports("avx512dq") &&
	    __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("fma"))
		return DRIFT_SIMD_AVX512;
	if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
		return DRIFT_SIMD_AVX2;
#endif
	return DRIFT_SIMD_SCALAR;
}

static void detect(void)
{
	detected = detect_cpu();
	int level = detected;
	const char *env = getenv("DRIFT_SIMD");
	if (env != NULL && env[0] != '\0') {
		int want;
		if (drift_simd_parse(env, &want) != 0)
			DRIFT_WARN("DRIFT_SIMD=%s is not one of scalar, avx2, "
				   "avx512; using %s",
				   env, level_names[level]);
		else if (want > detected)
			DRIFT_WARN("DRIFT_SIMD=%s: this CPU supports only %s; "
				   "using %s",
				   env, level_names[detected],
				   level_names[detected]);
		else
			level = want;
	}
	atomic_store(&active, level);
}

int drift_simd_detected(void)
{
	pthread_once(&detect_once, detect);
	return detected;
}

int drift_simd_level(void)
{
	pthread_once(&detect_once, detect);
	return atomic_load_explicit(&active, memory_order_relaxed);
}

int drift_simd_set_level(int level)
{
	pthread_once(&detect_once, detect);
	if (level < DRIFT_SIMD_SCALAR || level > DRIFT_SIMD_AVX512)
		return DRIFT_EINVAL;
	if (level > detected)
		return DRIFT_ENOTSUP;
	atomic_store(&active, level);
	return 0;
}

const char *drift_simd_name(int level)
{
	if (level < DRIFT_SIMD_SCALAR || level > DRIFT_SIMD_AVX512)
		return "?";
	return level_names[level];
}

int drift_simd_parse(const char *name, int *level)
{
	for (int i = DRIFT_SIMD_SCALAR; i <= DRIFT_SIMD_AVX512; i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*level = i;
			return 0;
		}
	}
	return DRIFT_EINVAL;
}
