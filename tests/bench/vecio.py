"""Vector files the benchmarks read and write.

fvecs / ivecs / bvecs: every row is a little-endian int32 dimension d, then
d values (float32, int32 or uint8). .npy: NumPy's own format. The C side
(cli/vecfile.c, used by drift-bench and the bulk loader) reads the same
files.
"""
import numpy as np


def _read_vecs(path, dtype):
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size == 0:
        return np.zeros((0, 0), dtype=dtype)
    d = int(raw[:4].view(np.int32)[0])
    item = np.dtype(dtype).itemsize
    row = 4 + d * item
    if raw.size % row:
        raise ValueError(f"{path}: size {raw.size} is not a multiple of {row}")
    rows = raw.reshape(-1, row)
    if not (rows[:, :4].view(np.int32) == d).all():
        raise ValueError(f"{path}: rows of different dimensions")
    return np.ascontiguousarray(rows[:, 4:]).view(dtype).reshape(-1, d)


def read_fvecs(path):
    return _read_vecs(path, np.float32)


def read_ivecs(path):
    return _read_vecs(path, np.int32)


def read_bvecs(path):
    return _read_vecs(path, np.uint8)


def _write_vecs(path, x, dtype):
    x = np.ascontiguousarray(x, dtype=dtype)
    n, d = x.shape
    out = np.empty((n, 4 + d * x.itemsize), dtype=np.uint8)
    out[:, :4] = np.full((n, 1), d, dtype=np.int32).view(np.uint8)
    out[:, 4:] = x.view(np.uint8).reshape(n, -1)
    tmp = path + ".tmp"
    out.tofile(tmp)
    import os
    os.replace(tmp, path)


def write_fvecs(path, x):
    _write_vecs(path, x, np.float32)


def write_ivecs(path, x):
    _write_vecs(path, x, np.int32)


def read_npy(path):
    return np.load(path, allow_pickle=False)
