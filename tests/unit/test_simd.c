/* Tests of common/simd: detection, the DRIFT_SIMD override, forcing levels.
 * meson runs this binary once per DRIFT_SIMD value. */
#include <stdlib.h>

#include "common/err.h"
#include "common/simd.h"
#include "common/vec.h"
#include "drift_test.h"

DRIFT_TEST(simd, active_level_honours_environment)
{
	int detected = drift_simd_detected();
	const char *env = getenv("DRIFT_SIMD");
	int want = detected;
	int parsed;
	if (env != NULL && drift_simd_parse(env, &parsed) == 0 &&
	    parsed <= detected)
		want = parsed;
	cr_log_info("detected %s, DRIFT_SIMD=%s, active %s",
		    drift_simd_name(detected), env != NULL ? env : "(unset)",
		    drift_simd_name(drift_simd_level()));
	cr_assert_eq(drift_simd_level(), want);
	cr_assert_eq(drift_vec()->level, want,
		     "the kernel table follows the active level");
}

DRIFT_TEST(simd, forcing_levels)
{
	int detected = drift_simd_detected();
	for (int level = DRIFT_SIMD_SCALAR; level <= DRIFT_SIMD_AVX512;
	     level++) {
		int rv = drift_simd_set_level(level);
		if (level <= detected) {
			cr_assert_eq(rv, 0);
			cr_assert_eq(drift_simd_level(), level);
			cr_assert_eq(drift_vec()->level, level);
			cr_assert_not_null(drift_vec_for(level));
		} else {
			cr_assert_eq(rv, DRIFT_ENOTSUP);
			cr_assert_null(drift_vec_for(level));
		}
	}
	cr_assert_eq(drift_simd_set_level(7), DRIFT_EINVAL);
	cr_assert_eq(drift_simd_set_level(-1), DRIFT_EINVAL);
	cr_assert_eq(drift_simd_set_level(detected), 0);
}

DRIFT_TEST(simd, names)
{
	int level = -1;
	cr_assert_eq(drift_simd_parse("AVX2", &level), 0);
	cr_assert_eq(level, DRIFT_SIMD_AVX2);
	cr_assert_eq(drift_simd_parse("sse", &level), DRIFT_EINVAL);
	cr_assert_eq(level, DRIFT_SIMD_AVX2);
	cr_assert_str_eq(drift_simd_name(DRIFT_SIMD_AVX512), "avx512");
	cr_assert_str_eq(drift_simd_name(3), "?");
}
