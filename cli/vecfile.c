#include "cli/vecfile.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/alloc.h"
#include "common/endian.h"

/* Element types of the values in a row. */
enum elem {
	ELEM_F32,
	ELEM_F64,
	ELEM_U8,
	ELEM_I32,
	ELEM_I64,
	ELEM_F16,
	ELEM_U64
};

static const size_t elem_size[] = {4, 8, 1, 4, 8, 2, 8};

struct drift_vecfile {
	FILE *fp;
	char *path;
	enum drift_vecfile_format format;
	enum elem elem;
	uint32_t dim;
	uint64_t rows;
	uint64_t next;	  /* rows read so far */
	size_t row_bytes; /* bytes of one row on disk, prefix included */
	uint8_t *row;	  /* one row */
};

/* ---- Opening ------------------------------------------------------------ */

static int format_of(const char *path, enum drift_vecfile_format *fmt)
{
	static const struct {
		const char *ext;
		enum drift_vecfile_format fmt;
	} exts[] = {
		{".fvecs", DRIFT_VECFILE_FVECS},
		{".bvecs", DRIFT_VECFILE_BVECS},
		{".ivecs", DRIFT_VECFILE_IVECS},
		{".npy", DRIFT_VECFILE_NPY},
	};
	const char *dot = strrchr(path, '.');
	for (size_t i = 0; dot != NULL && i < sizeof(exts) / sizeof(exts[0]);
	     i++) {
		if (strcmp(dot, exts[i].ext) == 0) {
			*fmt = exts[i].fmt;
			return 0;
		}
	}
	return DRIFT_EINVAL;
}

static int open_vecs(drift_vecfile *f, uint64_t size, drift_err *err)
{
	f->elem = f->format == DRIFT_VECFILE_FVECS   ? ELEM_F32
		  : f->format == DRIFT_VECFILE_BVECS ? ELEM_U8
						     : ELEM_I32;
	if (size == 0)
		return 0; /* no rows, no dimension */
	uint8_t head[4];
	if (fread(head, 1, 4, f->fp) != 4)
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "%s: shorter than one row header",
				     f->path);
	int32_t d = (int32_t)drift_load_le32(head);
	if (d <= 0 || d > DRIFT_VECFILE_MAX_DIM)
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "%s: first row has dimension %d (expected "
				     "1 to %d): not a %s file",
				     f->path, d, DRIFT_VECFILE_MAX_DIM,
				     strrchr(f->path, '.') + 1);
	f->dim = (uint32_t)d;
	f->row_bytes = 4 + (size_t)d * elem_size[f->elem];
	if (size % f->row_bytes != 0)
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "%s: size %llu is not a whole number of "
				     "rows of %zu bytes (dimension %u)",
				     f->path, (unsigned long long)size,
				     f->row_bytes, f->dim);
	f->rows = size / f->row_bytes;
	if (fseek(f->fp, 0, SEEK_SET) != 0)
		return drift_err_errno(err, errno, "%s: seek", f->path);
	return 0;
}

/* Finds "'key'" in the .npy header dict and returns what follows its ':'
 * with spaces skipped, or NULL. */
static const char *npy_field(const char *header, const char *key)
{
	char pattern[32];
	snprintf(pattern, sizeof(pattern), "'%s'", key);
	const char *p = strstr(header, pattern);
	if (p == NULL)
		return NULL;
	p += strlen(pattern);
	while (*p == ' ')
		p++;
	if (*p++ != ':')
		return NULL;
	while (*p == ' ')
		p++;
	return p;
}

static int npy_parse_descr(const char *p, enum elem *elem)
{
	static const struct {
		const char *name;
		enum elem elem;
	} types[] = {
		{"<f4", ELEM_F32}, {"<f8", ELEM_F64}, {"|u1", ELEM_U8},
		{"<u1", ELEM_U8},  {"u1", ELEM_U8},   {"<i4", ELEM_I32},
		{"<i8", ELEM_I64}, {"<f2", ELEM_F16}, {"<u8", ELEM_U64},
	};
	if (p == NULL || (*p != '\'' && *p != '"'))
		return DRIFT_ECORRUPT;
	char quote = *p++;
	const char *end = strchr(p, quote);
	if (end == NULL)
		return DRIFT_ECORRUPT;
	size_t len = (size_t)(end - p);
	for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
		if (strlen(types[i].name) == len &&
		    memcmp(p, types[i].name, len) == 0) {
			*elem = types[i].elem;
			return 0;
		}
	}
	return DRIFT_ENOTSUP;
}

/* Parses "(rows, dim)" into its two numbers; "(rows,)" is (rows, 1). */
static int npy_parse_shape(const char *p, uint64_t dims[2])
{
	if (p == NULL || *p++ != '(')
		return DRIFT_ECORRUPT;
	int n = 0;
	for (;;) {
		while (*p == ' ')
			p++;
		if (*p == ')')
			break;
		if (*p < '0' || *p > '9' || n == 2)
			return DRIFT_ECORRUPT;
		char *end;
		errno = 0;
		unsigned long long v = strtoull(p, &end, 10);
		if (errno != 0)
			return DRIFT_ECORRUPT;
		dims[n++] = v;
		p = end;
		while (*p == ' ')
			p++;
		if (*p == ',')
			p++;
	}
	if (n == 1)
		dims[n++] = 1;
	return n == 2 ? 0 : DRIFT_ENOTSUP;
}

static int open_npy(drift_vecfile *f, uint64_t size, drift_err *err)
{
	uint8_t pre[12];
	if (fread(pre, 1, 10, f->fp) != 10 || memcmp(pre, "\x93NUMPY", 6) != 0)
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "%s: no NumPy magic: not a .npy file",
				     f->path);
	uint8_t major = pre[6];
	uint64_t hlen, offset;
	if (major == 1) {
		hlen = drift_load_le16(pre + 8);
		offset = 10;
	} else if (major == 2 || major == 3) {
		if (fread(pre + 10, 1, 2, f->fp) != 2)
			return drift_err_set(err, DRIFT_ECORRUPT,
					     "%s: truncated header", f->path);
		hlen = drift_load_le32(pre + 8);
		offset = 12;
	} else {
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "%s: unknown .npy version %u", f->path,
				     major);
	}
	if (hlen > 65536 || offset + hlen > size)
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "%s: header length %llu does not fit",
				     f->path, (unsigned long long)hlen);
	char *header = drift_malloc((size_t)hlen + 1);
	if (header == NULL)
		return drift_err_set(err, DRIFT_ENOMEM, "%s", f->path);
	int rv = 0;
	if (fread(header, 1, (size_t)hlen, f->fp) != hlen) {
		rv = drift_err_set(err, DRIFT_ECORRUPT, "%s: truncated header",
				   f->path);
		goto out;
	}
	header[hlen] = '\0';
	if (memchr(header, '\0', (size_t)hlen) != NULL) {
		rv = drift_err_set(err, DRIFT_ECORRUPT,
				   "%s: NUL byte in header", f->path);
		goto out;
	}

	rv = npy_parse_descr(npy_field(header, "descr"), &f->elem);
	if (rv != 0) {
		rv = drift_err_set(err, rv,
				   "%s: element type must be one of <f4, <f2, "
				   "<f8, |u1, <i4, <i8, <u8 (little endian)",
				   f->path);
		goto out;
	}
	const char *fo = npy_field(header, "fortran_order");
	if (fo == NULL || strncmp(fo, "False", 5) != 0) {
		rv = drift_err_set(err, DRIFT_ENOTSUP,
				   "%s: only C-order arrays are supported "
				   "(fortran_order must be False)",
				   f->path);
		goto out;
	}
	uint64_t dims[2];
	rv = npy_parse_shape(npy_field(header, "shape"), dims);
	if (rv != 0) {
		rv = drift_err_set(err, rv,
				   "%s: shape must be (rows, dimension) or "
				   "(rows,)",
				   f->path);
		goto out;
	}
	if (dims[1] == 0 || dims[1] > DRIFT_VECFILE_MAX_DIM) {
		rv = drift_err_set(err, DRIFT_ECORRUPT,
				   "%s: dimension %llu out of range 1..%d",
				   f->path, (unsigned long long)dims[1],
				   DRIFT_VECFILE_MAX_DIM);
		goto out;
	}
	f->dim = (uint32_t)dims[1];
	f->rows = dims[0];
	f->row_bytes = (size_t)f->dim * elem_size[f->elem];
	uint64_t data = size - offset - hlen;
	if (f->rows > data / f->row_bytes || data != f->rows * f->row_bytes)
		rv = drift_err_set(err, DRIFT_ECORRUPT,
				   "%s: %llu data bytes do not hold shape "
				   "(%llu, %u)",
				   f->path, (unsigned long long)data,
				   (unsigned long long)f->rows, f->dim);
out:
	drift_free(header);
	return rv;
}

int drift_vecfile_open(const char *path, drift_vecfile **out, drift_err *err)
{
	enum drift_vecfile_format fmt;
	if (format_of(path, &fmt) != 0)
		return drift_err_set(err, DRIFT_EINVAL,
				     "%s: unknown vector file type (expected "
				     ".fvecs, .bvecs, .ivecs or .npy)",
				     path);
	drift_vecfile *f = drift_calloc(1, sizeof(*f));
	if (f == NULL || (f->path = drift_strdup(path)) == NULL) {
		drift_free(f);
		return drift_err_set(err, DRIFT_ENOMEM, "opening %s", path);
	}
	f->format = fmt;
	int rv;
	f->fp = fopen(path, "rb");
	if (f->fp == NULL) {
		rv = drift_err_errno(err, errno, "opening %s", path);
		goto fail;
	}
	struct stat st;
	if (fstat(fileno(f->fp), &st) != 0) {
		rv = drift_err_errno(err, errno, "reading size of %s", path);
		goto fail;
	}
	if (S_ISDIR(st.st_mode)) {
		rv = drift_err_set(err, DRIFT_EINVAL, "%s is a directory",
				   path);
		goto fail;
	}
	rv = fmt == DRIFT_VECFILE_NPY ? open_npy(f, (uint64_t)st.st_size, err)
				      : open_vecs(f, (uint64_t)st.st_size, err);
	if (rv != 0)
		goto fail;
	if (f->row_bytes > 0 && (f->row = drift_malloc(f->row_bytes)) == NULL) {
		rv = drift_err_set(err, DRIFT_ENOMEM, "opening %s", path);
		goto fail;
	}
	*out = f;
	return 0;
fail:
	drift_vecfile_close(f);
	return rv;
}

void drift_vecfile_close(drift_vecfile *f)
{
	if (f == NULL)
		return;
	if (f->fp != NULL)
		fclose(f->fp);
	drift_free(f->row);
	drift_free(f->path);
	drift_free(f);
}

enum drift_vecfile_format drift_vecfile_format(const drift_vecfile *f)
{
	return f->format;
}

uint32_t drift_vecfile_dim(const drift_vecfile *f)
{
	return f->dim;
}

uint64_t drift_vecfile_rows(const drift_vecfile *f)
{
	return f->rows;
}

/* ---- Reading ------------------------------------------------------------ */

/* IEEE 754 binary16 to float: every half value, subnormals, infinities and
 * NaN included, is exactly a float. */
static float half_to_float(uint16_t h)
{
	uint32_t sign = (uint32_t)(h >> 15) << 31;
	uint32_t e = (h >> 10) & 0x1f, m = h & 0x3ff;
	uint32_t bits;
	if (e == 0x1f) {
		bits = sign | 0x7f800000u | (m << 13);
	} else if (e != 0) {
		bits = sign | ((e + 112) << 23) | (m << 13);
	} else if (m == 0) {
		bits = sign;
	} else {
		/* Subnormal: normalise the mantissa. */
		e = 113;
		while ((m & 0x400) == 0) {
			m <<= 1;
			e--;
		}
		bits = sign | (e << 23) | ((m & 0x3ff) << 13);
	}
	float f;
	memcpy(&f, &bits, sizeof(f));
	return f;
}

/* Reads the next row into f->row and returns a pointer to its values. */
static int next_row(drift_vecfile *f, const uint8_t **values, drift_err *err)
{
	if (fread(f->row, 1, f->row_bytes, f->fp) != f->row_bytes)
		return drift_err_set(err, DRIFT_ECORRUPT,
				     "%s: row %llu is truncated (the file "
				     "changed while it was read?)",
				     f->path, (unsigned long long)f->next);
	if (f->format == DRIFT_VECFILE_NPY) {
		*values = f->row;
	} else {
		uint32_t d = drift_load_le32(f->row);
		if (d != f->dim)
			return drift_err_set(err, DRIFT_ECORRUPT,
					     "%s: row %llu has dimension %u, "
					     "expected %u",
					     f->path,
					     (unsigned long long)f->next, d,
					     f->dim);
		*values = f->row + 4;
	}
	f->next++;
	return 0;
}

int drift_vecfile_read(drift_vecfile *f, float *out, size_t max_rows,
		       size_t *n_read, drift_err *err)
{
	size_t n = 0;
	while (n < max_rows && f->next < f->rows) {
		const uint8_t *v = NULL;
		int rv = next_row(f, &v, err);
		if (rv != 0)
			return rv;
		float *dst = out + n * f->dim;
		for (uint32_t i = 0; i < f->dim; i++) {
			switch (f->elem) {
			case ELEM_F32:
				dst[i] = drift_load_lef32(v + 4 * i);
				break;
			case ELEM_F64: {
				uint64_t bits = drift_load_le64(v + 8 * i);
				double d;
				memcpy(&d, &bits, sizeof(d));
				dst[i] = (float)d;
				break;
			}
			case ELEM_U8:
				dst[i] = v[i];
				break;
			case ELEM_I32:
				dst[i] = (float)(int32_t)drift_load_le32(v +
									 4 * i);
				break;
			case ELEM_I64:
				dst[i] = (float)(int64_t)drift_load_le64(v +
									 8 * i);
				break;
			case ELEM_F16:
				dst[i] = half_to_float(
					drift_load_le16(v + 2 * i));
				break;
			case ELEM_U64:
				dst[i] = (float)drift_load_le64(v + 8 * i);
				break;
			}
		}
		n++;
	}
	*n_read = n;
	return 0;
}

int drift_vecfile_read_i32(drift_vecfile *f, int32_t *out, size_t max_rows,
			   size_t *n_read, drift_err *err)
{
	if (f->elem == ELEM_F32 || f->elem == ELEM_F64 || f->elem == ELEM_F16)
		return drift_err_set(err, DRIFT_EINVAL,
				     "%s holds floats, not integer ids",
				     f->path);
	size_t n = 0;
	while (n < max_rows && f->next < f->rows) {
		const uint8_t *v = NULL;
		int rv = next_row(f, &v, err);
		if (rv != 0)
			return rv;
		int32_t *dst = out + n * f->dim;
		for (uint32_t i = 0; i < f->dim; i++) {
			if (f->elem == ELEM_U8) {
				dst[i] = v[i];
			} else if (f->elem == ELEM_I32) {
				dst[i] = (int32_t)drift_load_le32(v + 4 * i);
			} else {
				uint64_t u = drift_load_le64(v + 8 * i);
				int64_t x = (int64_t)u;
				if ((f->elem == ELEM_U64 && u > INT32_MAX) ||
				    x < INT32_MIN || x > INT32_MAX)
					return drift_err_set(
						err, DRIFT_ERANGE,
						"%s: row %llu holds %lld, "
						"beyond int32",
						f->path,
						(unsigned long long)f->next - 1,
						(long long)x);
				dst[i] = (int32_t)x;
			}
		}
		n++;
	}
	*n_read = n;
	return 0;
}

int drift_vecfile_read_u64(drift_vecfile *f, uint64_t *out, size_t max_rows,
			   size_t *n_read, drift_err *err)
{
	if (f->elem == ELEM_F32 || f->elem == ELEM_F64 || f->elem == ELEM_F16)
		return drift_err_set(err, DRIFT_EINVAL,
				     "%s holds floats, not integer ids",
				     f->path);
	size_t n = 0;
	while (n < max_rows && f->next < f->rows) {
		const uint8_t *v = NULL;
		int rv = next_row(f, &v, err);
		if (rv != 0)
			return rv;
		uint64_t *dst = out + n * f->dim;
		for (uint32_t i = 0; i < f->dim; i++) {
			int64_t x;
			if (f->elem == ELEM_U8) {
				x = v[i];
			} else if (f->elem == ELEM_I32) {
				x = (int32_t)drift_load_le32(v + 4 * i);
			} else if (f->elem == ELEM_U64) {
				dst[i] = drift_load_le64(v + 8 * i);
				continue;
			} else {
				x = (int64_t)drift_load_le64(v + 8 * i);
			}
			if (x < 0)
				return drift_err_set(
					err, DRIFT_ERANGE,
					"%s: row %llu holds %lld: ids are "
					"unsigned",
					f->path,
					(unsigned long long)f->next - 1,
					(long long)x);
			dst[i] = (uint64_t)x;
		}
		n++;
	}
	*n_read = n;
	return 0;
}
