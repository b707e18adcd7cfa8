#!/usr/bin/python3
"""FAISS peer for the benchmark harness (tests/bench/README.md).

    faiss_bench.py static BASE QUERY GT --index ivfflat|ivfsq8 [--threads N]
    faiss_bench.py drift BASE STEPS.tsv QUERY --budget NPROBE [--retrain]

static: trains IVF (nlist = 4 sqrt(n), at most 256 training points per
list), adds the base, sweeps nprobe with one thread and with N, prints JSON
lines. drift: trains on the first step only (the static index that drift
breaks), or on every step with --retrain, and reports recall@10 and
latency at a fixed nprobe after each step.
"""
import argparse
import json
import math
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import vecio  # noqa: E402

import faiss  # noqa: E402


def emit(**kw):
    print(json.dumps(kw), flush=True)


def make_index(kind, dim, nlist):
    quant = faiss.IndexFlatL2(dim)
    if kind == "ivfflat":
        return faiss.IndexIVFFlat(quant, dim, nlist, faiss.METRIC_L2), quant
    return faiss.IndexIVFScalarQuantizer(
        quant, dim, nlist, faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_L2), quant


def recall10(ids, gt):
    hit = 0
    for row, g in zip(ids, gt):
        hit += len(set(row[:10].tolist()) & set(g[:10].tolist()))
    return hit / (10.0 * len(gt))


def train_sample(x, nlist, seed=42):
    m = min(len(x), 256 * nlist)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(x), m, replace=False) if m < len(x) else np.arange(len(x))
    return np.ascontiguousarray(x[idx])


def cmd_static(a):
    base = vecio.read_fvecs(a.base)
    q = vecio.read_fvecs(a.query)
    gt = vecio.read_ivecs(a.gt)
    if a.load_only:
        return
    faiss.omp_set_num_threads(a.threads)
    nlist = max(1, int(round(4 * math.sqrt(len(base)))))
    index, quant = make_index(a.index, base.shape[1], nlist)
    t0 = time.perf_counter()
    index.train(train_sample(base, nlist))
    index.add(base)
    build = time.perf_counter() - t0
    emit(event="build", system="faiss-" + a.index, n=len(base), build_s=round(build, 3),
         nlist=nlist, threads=a.threads, compile=faiss.get_compile_options())
    for nprobe in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        if nprobe > nlist:
            break
        index.nprobe = nprobe
        for t in sorted({1, a.threads}):
            faiss.omp_set_num_threads(t)
            t0 = time.perf_counter()
            if t == 1:
                # One query at a time: the latency a single client sees.
                ids = np.empty((len(q), 10), dtype=np.int64)
                for i in range(len(q)):
                    _, ids[i:i + 1] = index.search(q[i:i + 1], 10)
            else:
                _, ids = index.search(q, 10)
            secs = time.perf_counter() - t0
            emit(event="search", system="faiss-" + a.index, param="nprobe",
                 value=nprobe, threads=t, qps=round(len(q) / secs, 1),
                 recall10=round(recall10(ids, gt), 4))


def cmd_drift(a):
    base = vecio.read_fvecs(a.base)
    q = vecio.read_fvecs(a.query)
    faiss.omp_set_num_threads(1)
    steps = [line.rstrip("\n").split("\t") for line in open(a.steps) if line.strip()]
    first_end = int(steps[0][0])
    nlist = max(1, int(round(4 * math.sqrt(first_end))))
    index = None
    done = 0
    name = "faiss-ivfsq8-" + ("retrained" if a.retrain else "static")
    for s, (end, gtpath, idxpath) in enumerate(steps):
        end = int(end)
        if index is None or a.retrain:
            nl = max(1, int(round(4 * math.sqrt(end)))) if a.retrain else nlist
            index, _ = make_index("ivfsq8", base.shape[1], nl)
            index.train(train_sample(base[:end], nl))
            index.add(base[:end])
        else:
            index.add(base[done:end])
        done = end
        index.nprobe = a.budget
        gt = vecio.read_ivecs(gtpath)
        which = np.loadtxt(idxpath, dtype=np.int64, ndmin=1)
        lat = []
        ids = np.empty((len(which), 10), dtype=np.int64)
        for i, qi in enumerate(which):
            t0 = time.perf_counter()
            _, ids[i:i + 1] = index.search(q[qi:qi + 1], 10)
            lat.append(time.perf_counter() - t0)
        lat = np.array(lat) * 1e3
        sizes = [index.invlists.list_size(i) for i in range(index.nlist)]
        emit(event="drift", system=name, step=s, rows=end,
             recall10=round(recall10(ids, gt), 4),
             p50_ms=round(float(np.percentile(lat, 50)), 3),
             p99_ms=round(float(np.percentile(lat, 99)), 3),
             buckets=index.nlist, max_bucket=int(max(sizes)))


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("static")
    s.add_argument("base")
    s.add_argument("query")
    s.add_argument("gt")
    s.add_argument("--index", choices=["ivfflat", "ivfsq8"], required=True)
    s.add_argument("--threads", type=int, default=os.cpu_count())
    s.add_argument("--load-only", action="store_true")
    d = sub.add_parser("drift")
    d.add_argument("base")
    d.add_argument("steps")
    d.add_argument("query")
    d.add_argument("--budget", type=int, default=8)
    d.add_argument("--retrain", action="store_true")
    a = ap.parse_args()
    cmd_static(a) if a.cmd == "static" else cmd_drift(a)


if __name__ == "__main__":
    main()
