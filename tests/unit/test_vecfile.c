/* Tests of cli/vecfile: each format read back exactly, and every malformed
 * file refused with a message that says what is wrong. */
#include <stdio.h>
#include <string.h>

#include "cli/vecfile.h"
#include "common/alloc.h"
#include "common/endian.h"
#include "drift_test.h"

/* ---- Fixture ---------------------------------------------------------- */

static char dir[256];

static void setup(void)
{
	drift_test_tmpdir(dir, sizeof(dir));
}

static void teardown(void)
{
	drift_failalloc_arm(0, 0);
	drift_test_rmtree(dir);
}

TestSuite(vecfile, .init = setup, .fini = teardown);

/* ---- Helpers ---------------------------------------------------------- */

static const char *write_file(const char *name, const void *data, size_t len)
{
	static char path[400];
	snprintf(path, sizeof(path), "%s/%s", dir, name);
	FILE *f = fopen(path, "wb");
	cr_assert_not_null(f);
	cr_assert_eq(fwrite(data, 1, len, f), len);
	fclose(f);
	return path;
}

/* rows x dim values v(r, i) = r * 100 + i, as an *vecs file with elements
 * of esize bytes. */
static size_t make_vecs(uint8_t *buf, int rows, int dim, int esize)
{
	size_t n = 0;
	for (int r = 0; r < rows; r++) {
		drift_store_le32(buf + n, (uint32_t)dim);
		n += 4;
		for (int i = 0; i < dim; i++) {
			int v = r * 100 + i;
			if (esize == 1)
				buf[n] = (uint8_t)v;
			else
				drift_store_lef32(buf + n, (float)v);
			n += (size_t)esize;
		}
	}
	return n;
}

/* A .npy v1.0 file with the given dict and data. */
static size_t make_npy(uint8_t *buf, const char *dict, const void *data,
		       size_t len)
{
	size_t hlen = strlen(dict);
	memcpy(buf, "\x93NUMPY\x01\x00", 8);
	drift_store_le16(buf + 8, (uint16_t)hlen);
	memcpy(buf + 10, dict, hlen);
	memcpy(buf + 10 + hlen, data, len);
	return 10 + hlen + len;
}

static void open_fails(const char *name, const void *data, size_t len, int code,
		       const char *want)
{
	const char *path = write_file(name, data, len);
	drift_vecfile *f = NULL;
	drift_err err;
	int rv = drift_vecfile_open(path, &f, &err);
	cr_assert_eq(rv, code, "%s: got %s (%s)", name, drift_errname(rv),
		     err.msg);
	cr_assert_null(f);
	cr_assert_not_null(strstr(err.msg, want), "%s: '%s' lacks '%s'", name,
			   err.msg, want);
}

/* ---- Cases ------------------------------------------------------------ */

DRIFT_TEST(vecfile, fvecs_round_trip_in_batches)
{
	static uint8_t buf[1 << 16];
	size_t len = make_vecs(buf, 7, 5, 4);
	const char *path = write_file("a.fvecs", buf, len);
	drift_vecfile *f;
	drift_err err;
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(drift_vecfile_format(f), DRIFT_VECFILE_FVECS);
	cr_assert_eq(drift_vecfile_dim(f), 5);
	cr_assert_eq(drift_vecfile_rows(f), 7);
	float out[3 * 5];
	size_t n, seen = 0;
	do {
		cr_assert_eq(drift_vecfile_read(f, out, 3, &n, &err), 0);
		for (size_t r = 0; r < n; r++)
			for (int i = 0; i < 5; i++)
				cr_assert_float_eq(
					out[r * 5 + i],
					(float)((seen + r) * 100 + i), 0);
		seen += n;
	} while (n > 0);
	cr_assert_eq(seen, 7);
	int32_t ids[5];
	cr_assert_eq(drift_vecfile_read_i32(f, ids, 1, &n, &err), DRIFT_EINVAL);
	drift_vecfile_close(f);
}

DRIFT_TEST(vecfile, bvecs_and_ivecs)
{
	static uint8_t buf[1 << 16];
	size_t len = make_vecs(buf, 3, 4, 1);
	const char *path = write_file("b.bvecs", buf, len);
	drift_vecfile *f;
	drift_err err;
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0, "%s", err.msg);
	float out[12];
	size_t n;
	cr_assert_eq(drift_vecfile_read(f, out, 10, &n, &err), 0);
	cr_assert_eq(n, 3);
	cr_assert_float_eq(out[4 + 3], 103.0f, 0);
	drift_vecfile_close(f);

	/* ivecs: ground truth ids, including negatives. */
	uint8_t iv[2 * (4 + 8)];
	for (int r = 0; r < 2; r++) {
		drift_store_le32(iv + r * 12, 2);
		drift_store_le32(iv + r * 12 + 4, (uint32_t)(r * 10));
		drift_store_le32(iv + r * 12 + 8, (uint32_t)-7);
	}
	path = write_file("gt.ivecs", iv, sizeof(iv));
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0, "%s", err.msg);
	int32_t ids[4];
	cr_assert_eq(drift_vecfile_read_i32(f, ids, 4, &n, &err), 0);
	cr_assert_eq(n, 2);
	cr_assert_eq(ids[2], 10);
	cr_assert_eq(ids[3], -7);
	drift_vecfile_close(f);
}

DRIFT_TEST(vecfile, npy_types)
{
	static uint8_t buf[4096];
	float fv[6] = {1.5f, -2, 3, 4, 5, 6.25f};
	uint8_t le[24];
	for (int i = 0; i < 6; i++)
		drift_store_lef32(le + 4 * i, fv[i]);
	size_t len = make_npy(buf,
			      "{'descr': '<f4', 'fortran_order': False, "
			      "'shape': (2, 3), }      \n",
			      le, sizeof(le));
	const char *path = write_file("x.npy", buf, len);
	drift_vecfile *f;
	drift_err err;
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(drift_vecfile_dim(f), 3);
	cr_assert_eq(drift_vecfile_rows(f), 2);
	float out[6];
	size_t n;
	cr_assert_eq(drift_vecfile_read(f, out, 2, &n, &err), 0);
	cr_assert_eq(memcmp(out, fv, sizeof(fv)), 0);
	drift_vecfile_close(f);

	uint8_t i8[16];
	drift_store_le64(i8, 5);
	drift_store_le64(i8 + 8, (uint64_t)INT64_C(1) << 40);
	len = make_npy(buf,
		       "{'descr': '<i8', 'fortran_order': False, "
		       "'shape': (2, 1)}\n",
		       i8, sizeof(i8));
	path = write_file("ids.npy", buf, len);
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0, "%s", err.msg);
	int32_t ids[2];
	cr_assert_eq(drift_vecfile_read_i32(f, ids, 2, &n, &err), DRIFT_ERANGE);
	cr_assert_not_null(strstr(err.msg, "beyond int32"));
	drift_vecfile_close(f);
}

DRIFT_TEST(vecfile, npy_half_floats_and_uint64_ids)
{
	static uint8_t buf[4096];
	/* binary16: 1.0, -2.0, 0.5, 65504 (largest), 2^-24 (smallest
	 * subnormal), -0. */
	const uint16_t h[6] = {0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001, 0x8000};
	const float want[6] = {1.0f,	 -2.0f,		0.5f,
			       65504.0f, 5.9604645e-8f, -0.0f};
	uint8_t le[12];
	for (int i = 0; i < 6; i++)
		drift_store_le16(le + 2 * i, h[i]);
	size_t len = make_npy(buf,
			      "{'descr': '<f2', 'fortran_order': False, "
			      "'shape': (3, 2)}\n",
			      le, sizeof(le));
	const char *path = write_file("h.npy", buf, len);
	drift_vecfile *f;
	drift_err err;
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0, "%s", err.msg);
	float out[6];
	size_t n;
	cr_assert_eq(drift_vecfile_read(f, out, 3, &n, &err), 0);
	cr_assert_eq(n, 3);
	cr_assert_eq(memcmp(out, want, sizeof(want)), 0);
	drift_vecfile_close(f);

	/* A 1-D '<u8' array: (rows,) is (rows, 1), the whole uint64 range. */
	uint8_t u[24];
	drift_store_le64(u, 0);
	drift_store_le64(u + 8, UINT64_MAX);
	drift_store_le64(u + 16, (uint64_t)1 << 63);
	len = make_npy(buf,
		       "{'descr': '<u8', 'fortran_order': False, "
		       "'shape': (3,)}\n",
		       u, sizeof(u));
	path = write_file("ids.npy", buf, len);
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(drift_vecfile_dim(f), 1);
	uint64_t ids[3];
	cr_assert_eq(drift_vecfile_read_u64(f, ids, 3, &n, &err), 0);
	cr_assert(n == 3 && ids[0] == 0 && ids[1] == UINT64_MAX &&
		  ids[2] == (uint64_t)1 << 63);
	drift_vecfile_close(f);

	/* Negative ids are refused, naming the row. */
	uint8_t i4[8];
	drift_store_le32(i4, 7);
	drift_store_le32(i4 + 4, (uint32_t)-1);
	len = make_npy(buf,
		       "{'descr': '<i4', 'fortran_order': False, "
		       "'shape': (2,)}\n",
		       i4, sizeof(i4));
	path = write_file("neg.npy", buf, len);
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0, "%s", err.msg);
	cr_assert_eq(drift_vecfile_read_u64(f, ids, 2, &n, &err), DRIFT_ERANGE);
	cr_assert_not_null(strstr(err.msg, "row 1"), "%s", err.msg);
	drift_vecfile_close(f);
}

DRIFT_TEST(vecfile, malformed_files_are_refused)
{
	static uint8_t buf[1 << 16];
	size_t len = make_vecs(buf, 3, 4, 4);
	open_fails("cut.fvecs", buf, len - 1, DRIFT_ECORRUPT,
		   "is not a whole number of rows of 20 bytes");
	uint8_t neg[8];
	drift_store_le32(neg, (uint32_t)-3);
	open_fails("neg.fvecs", neg, 8, DRIFT_ECORRUPT, "dimension -3");
	open_fails("short.fvecs", neg, 2, DRIFT_ECORRUPT, "shorter");
	open_fails("x.txt", neg, 2, DRIFT_EINVAL, "unknown vector file type");
	open_fails("bad.npy", "hello world", 11, DRIFT_ECORRUPT,
		   "no NumPy magic");
	uint8_t data[24] = {0};
	len = make_npy(buf,
		       "{'descr': '>f4', 'fortran_order': False, "
		       "'shape': (2, 3)}\n",
		       data, 24);
	open_fails("be.npy", buf, len, DRIFT_ENOTSUP, "little endian");
	len = make_npy(buf,
		       "{'descr': '<f4', 'fortran_order': True, "
		       "'shape': (2, 3)}\n",
		       data, 24);
	open_fails("f.npy", buf, len, DRIFT_ENOTSUP, "C-order");
	len = make_npy(buf,
		       "{'descr': '<f4', 'fortran_order': False, "
		       "'shape': (2, 3)}\n",
		       data, 20);
	open_fails("trunc.npy", buf, len, DRIFT_ECORRUPT, "do not hold");
	len = make_npy(buf,
		       "{'descr': '<f4', 'fortran_order': False, "
		       "'shape': ()}\n",
		       data, 24);
	open_fails("0d.npy", buf, len, DRIFT_ENOTSUP, "shape must be");

	drift_vecfile *f;
	drift_err err;
	char missing[400];
	snprintf(missing, sizeof(missing), "%s/none.fvecs", dir);
	cr_assert_eq(drift_vecfile_open(missing, &f, &err), DRIFT_ENOENT);
	cr_assert_not_null(strstr(err.msg, "none.fvecs"));
}

DRIFT_TEST(vecfile, a_row_with_another_dimension_is_corruption)
{
	static uint8_t buf[1 << 16];
	size_t len = make_vecs(buf, 4, 4, 4);
	drift_store_le32(buf + 2 * 20, 3); /* row 2 claims dimension 3 */
	const char *path = write_file("mixed.fvecs", buf, len);
	drift_vecfile *f;
	drift_err err;
	cr_assert_eq(drift_vecfile_open(path, &f, &err), 0);
	float out[16];
	size_t n;
	cr_assert_eq(drift_vecfile_read(f, out, 4, &n, &err), DRIFT_ECORRUPT);
	cr_assert_not_null(strstr(err.msg, "row 2 has dimension 3, expected 4"),
			   "%s", err.msg);
	drift_vecfile_close(f);
}

DRIFT_TEST(vecfile, failed_allocations_are_clean)
{
	static uint8_t buf[1 << 12];
	size_t len = make_vecs(buf, 2, 4, 4);
	const char *path = write_file("a.fvecs", buf, len);
	for (long n = 1;; n++) {
		drift_vecfile *f = NULL;
		drift_failalloc_arm(n, 0);
		int rv = drift_vecfile_open(path, &f, NULL);
		int fired = drift_failalloc_fired();
		drift_failalloc_arm(0, 0);
		if (!fired) {
			cr_assert_eq(rv, 0);
			drift_vecfile_close(f);
			break;
		}
		cr_assert_eq(rv, DRIFT_ENOMEM);
		cr_assert_null(f);
	}
}
