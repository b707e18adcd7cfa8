/* Tests of common/vec: every kernel of every level this CPU runs, against a
 * double-precision reference, for every length from 0 to 1024, unaligned,
 * and at the very end of a readable page (the tail must not over-read). */
#include <math.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "common/rand.h"
#include "common/simd.h"
#include "common/vec.h"
#include "drift_test.h"

/* ---- Helpers ---------------------------------------------------------- */

#define MAXN 1024

static double ref_l2sq(const float *a, const float *b, size_t n, double *mag)
{
	double s = 0;
	for (size_t i = 0; i < n; i++) {
		double d = (double)a[i] - (double)b[i];
		s += d * d;
	}
	*mag = s;
	return s;
}

static double ref_dot(const float *a, const float *b, size_t n, double *mag)
{
	double s = 0, m = 0;
	for (size_t i = 0; i < n; i++) {
		s += (double)a[i] * (double)b[i];
		m += fabs((double)a[i] * (double)b[i]);
	}
	*mag = m;
	return s;
}

/* float32 sums of n terms are within about n * 2^-24 of the exact sum,
 * relative to the sum of magnitudes. */
static void check_close(double got, double want, double mag, size_t n,
			const char *what, int level)
{
	double tol = (double)(n + 4) * 0x1p-23 * mag + 1e-30;
	cr_assert(fabs(got - want) <= tol,
		  "%s at %s, n=%zu: got %.9g want %.9g (tol %.3g)", what,
		  drift_simd_name(level), n, got, want, tol);
}

static void fill(drift_rand *r, float *v, size_t n)
{
	for (size_t i = 0; i < n; i++)
		v[i] = (float)(drift_rand_normal(r) * 10.0);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(vec, every_level_matches_reference_for_all_lengths)
{
	static float a[MAXN + 1], b[MAXN + 1];
	drift_rand r;
	drift_rand_seed(&r, 42);
	int tested = 0;
	for (int level = DRIFT_SIMD_SCALAR; level <= DRIFT_SIMD_AVX512;
	     level++) {
		const drift_vec_kernels *k = drift_vec_for(level);
		if (k == NULL) {
			cr_log_info("level %s not supported by this CPU: "
				    "not tested here",
				    drift_simd_name(level));
			continue;
		}
		tested++;
		cr_assert_eq(k->level, level);
		for (size_t n = 0; n <= MAXN; n++) {
			fill(&r, a, n + 1);
			fill(&r, b, n + 1);
			/* +1: unaligned start. */
			double mag, want;
			want = ref_l2sq(a + 1, b + 1, n, &mag);
			check_close(k->l2sq(a + 1, b + 1, n), want, mag, n,
				    "l2sq", level);
			want = ref_dot(a + 1, b + 1, n, &mag);
			check_close(k->dot(a + 1, b + 1, n), want, mag, n,
				    "dot", level);
		}
	}
	cr_assert_geq(tested, 1);
	cr_log_info("kernel levels tested: %d (detected %s)", tested,
		    drift_simd_name(drift_simd_detected()));
}

/* Vectors that end exactly where the readable memory ends: any read past the
 * last element faults. */
DRIFT_TEST(vec, tails_never_read_past_the_vector)
{
	long page = sysconf(_SC_PAGESIZE);
	uint8_t *map = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(map, MAP_FAILED);
	cr_assert_eq(mprotect(map + page, (size_t)page, PROT_NONE), 0);
	float *end = (float *)(map + page);
	for (size_t i = 0; i < (size_t)page / sizeof(float); i++)
		((float *)map)[i] = 1.0f;

	for (int level = DRIFT_SIMD_SCALAR; level <= DRIFT_SIMD_AVX512;
	     level++) {
		const drift_vec_kernels *k = drift_vec_for(level);
		if (k == NULL)
			continue;
		for (size_t n = 0; n <= 67; n++) {
			const float *v = end - n;
			cr_assert_float_eq(k->l2sq(v, v, n), 0.0f, 0);
			cr_assert_float_eq(k->dot(v, v, n), (float)n, 0);
		}
	}
	munmap(map, (size_t)page * 2);
}

DRIFT_TEST(vec, known_values)
{
	float a[3] = {1, 2, 3}, b[3] = {4, 6, 3};
	for (int level = DRIFT_SIMD_SCALAR; level <= DRIFT_SIMD_AVX512;
	     level++) {
		const drift_vec_kernels *k = drift_vec_for(level);
		if (k == NULL)
			continue;
		cr_assert_float_eq(k->l2sq(a, b, 3), 25.0f, 0);
		cr_assert_float_eq(k->dot(a, b, 3), 25.0f, 0);
		cr_assert_float_eq(k->l2sq(a, b, 0), 0.0f, 0);
	}
}
