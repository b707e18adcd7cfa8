/*
 * Readers for the vector files users bring: fvecs, bvecs, ivecs and .npy.
 *
 * Formats (all little endian):
 * - fvecs: each row is an int32 dimension d, then d float32 values;
 * - bvecs: each row is an int32 d, then d unsigned bytes;
 * - ivecs: each row is an int32 d, then d int32 values (ground-truth ids);
 * - .npy (NumPy format 1.0, 2.0 or 3.0): magic "\x93NUMPY", version, header
 *   length (uint16 for 1.0, uint32 after), a Python dict literal with
 *   'descr', 'fortran_order' and 'shape', then the data in C order. A
 *   shape (rows, dim), or (rows,) read as (rows, 1), of '<f4', '<f2'
 *   (IEEE half), '<f8', '|u1', '<i4', '<i8' or '<u8' is accepted; Fortran
 *   order is refused.
 *
 * Opening checks the whole file's shape: every row of an *vecs file must
 * have the first row's dimension (checked as rows are read) and the file
 * size must be a whole number of rows; a .npy file's size must match its
 * shape. Anything else is DRIFT_ECORRUPT with the path and what is wrong.
 * Rows are read in order, converted to float32 (or int32 for ids). A
 * drift_vecfile is owned by one thread.
 */
#ifndef DRIFT_CLI_VECFILE_H
#define DRIFT_CLI_VECFILE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

enum drift_vecfile_format {
	DRIFT_VECFILE_FVECS,
	DRIFT_VECFILE_BVECS,
	DRIFT_VECFILE_IVECS,
	DRIFT_VECFILE_NPY,
};

/* Largest dimension accepted: bigger is a corrupt or foreign file. */
#define DRIFT_VECFILE_MAX_DIM 65536

typedef struct drift_vecfile drift_vecfile;

/* Opens path; the format comes from its extension (.fvecs, .bvecs, .ivecs,
 * .npy). 0, DRIFT_EINVAL (unknown extension), DRIFT_ENOENT/DRIFT_EIO,
 * DRIFT_ECORRUPT, DRIFT_ENOMEM. *out is written only on success. */
int drift_vecfile_open(const char *path, drift_vecfile **out, drift_err *err);

void drift_vecfile_close(drift_vecfile *f);

enum drift_vecfile_format drift_vecfile_format(const drift_vecfile *f);
uint32_t drift_vecfile_dim(const drift_vecfile *f);
uint64_t drift_vecfile_rows(const drift_vecfile *f);

/* Reads up to max_rows further rows as float32 into out (room for
 * max_rows * dim floats); *n_read gets the number read, 0 at the end.
 * Integer values are converted exactly where float32 can hold them. */
int drift_vecfile_read(drift_vecfile *f, float *out, size_t max_rows,
		       size_t *n_read, drift_err *err);

/* The same as int32 (ivecs, and .npy of integers): ground-truth ids. Float
 * files give DRIFT_EINVAL. */
int drift_vecfile_read_i32(drift_vecfile *f, int32_t *out, size_t max_rows,
			   size_t *n_read, drift_err *err);

/* The same as uint64 (ids files): integer files only (DRIFT_EINVAL for
 * floats); a negative value is DRIFT_ERANGE naming the row. */
int drift_vecfile_read_u64(drift_vecfile *f, uint64_t *out, size_t max_rows,
			   size_t *n_read, drift_err *err);

#endif /* DRIFT_CLI_VECFILE_H */
