/*
 * Shared helpers for Criterion unit tests.
 *
 * DRIFT_TEST(suite, name) declares a Criterion test whose body is followed by
 * a leak check when the build has LeakSanitizer (make test's ASan build):
 * Criterion runs each test in a worker process that exits without running
 * LeakSanitizer's exit-time check, so without this a leak would pass
 * unnoticed. Memory still reachable from statics (suite fixtures) is not a
 * leak; memory the test lost track of is, and fails the test.
 */
#ifndef DRIFT_TESTS_DRIFT_TEST_H
#define DRIFT_TESTS_DRIFT_TEST_H

#include <criterion/criterion.h>

#if defined(__SANITIZE_ADDRESS__)
#define DRIFT_TEST_LSAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DRIFT_TEST_LSAN 1
#endif
#endif

#ifdef DRIFT_TEST_LSAN
#include <sanitizer/lsan_interface.h>
static inline void drift_test_check_leaks(void)
{
	cr_assert(__lsan_do_recoverable_leak_check() == 0,
		  "memory leaked: see the LeakSanitizer report above");
}
#else
static inline void drift_test_check_leaks(void)
{
}
#endif

#define DRIFT_TEST(suite, name)                                                \
	static void drift_test_body_##suite##_##name(void);                    \
	Test(suite, name)                                                      \
	{                                                                      \
		drift_test_body_##suite##_##name();                            \
		drift_test_check_leaks();                                      \
	}                                                                      \
	static void drift_test_body_##suite##_##name(void)

/* A fresh empty directory under $TMPDIR (or /tmp) for one test; the caller
 * removes it with drift_test_rmtree. path gets at most cap bytes. */
void drift_test_tmpdir(char *path, size_t cap);
void drift_test_rmtree(const char *path);

/* Real data for quality floors and codec round trips: the Fashion-MNIST
 * images of the Debian package dataset-fashion-mnist (installed by make
 * deps), 784-d vectors of pixel values 0..255 as floats. set is "train"
 * (60,000 rows) or "t10k" (10,000 rows). Returns up to max_rows rows in a
 * new buffer (free with free()) and their count in *rows; fails the test
 * when the package is missing. */
float *drift_test_fmnist(const char *set, size_t max_rows, size_t *rows);
#define DRIFT_TEST_FMNIST_DIM 784

#endif /* DRIFT_TESTS_DRIFT_TEST_H */
