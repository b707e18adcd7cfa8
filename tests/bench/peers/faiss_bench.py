#!/usr/bin/python3
"""FAISS peer for the benchmark harness (tests/bench/README.md).

    faiss_bench.py static BASE QUERY GT --index ivfflat|ivfsq8 [--threads N]
                   [--train-per-list T] [--nprobes 1,2,4,...] [--no-single]
    faiss_bench.py drift BASE STEPS.tsv QUERY [--budget NPROBE | --share F]
                   [--retrain]
    faiss_bench.py churn BASE QUERY TRACE --results PREFIX [--seconds S]
                   [--threads N] [--nprobe P] [--train-per-list T]

static: trains IVF (nlist = 4 sqrt(n), at most T training points per
list, 256 unless told), adds the base, sweeps nprobe with one thread and with N, prints JSON
lines. drift: trains on the first step only (the static index that drift
breaks), or on every step with --retrain, and reports recall@10 and
latency at a fixed nprobe (or fraction F of the lists) after each step,
with the lists probed and vectors compared per query. churn: tests/bench/churn.py.
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


def train_sample(x, nlist, seed=42, per_list=256):
    m = min(len(x), per_list * nlist)
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
    index.train(train_sample(base, nlist, per_list=a.train_per_list))
    index.add(base)
    build = time.perf_counter() - t0
    emit(event="build", system="faiss-" + a.index, n=len(base), build_s=round(build, 3),
         nlist=nlist, threads=a.threads, compile=faiss.get_compile_options())
    for nprobe in (int(x) for x in a.nprobes.split(",")):
        if nprobe > nlist:
            break
        index.nprobe = nprobe
        for t in sorted({a.threads} if a.no_single else {1, a.threads}):
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
        index.nprobe = (max(1, int(round(a.share * index.nlist)))
                        if a.share > 0 else a.budget)
        gt = vecio.read_ivecs(gtpath)
        which = np.loadtxt(idxpath, dtype=np.int64, ndmin=1)
        lat = []
        ids = np.empty((len(which), 10), dtype=np.int64)
        faiss.cvar.indexIVF_stats.reset()
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
             buckets=index.nlist, max_bucket=int(max(sizes)),
             probed=index.nprobe,
             scanned=round(faiss.cvar.indexIVF_stats.ndis / len(which)))


def rss_bytes():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def space(phase, live):
    rss = rss_bytes()
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except OSError:
        pass
    emit(event="space", system="faiss-ivfflat", phase=phase, live=live,
         rss_bytes=rss, rss_trimmed_bytes=rss_bytes())


def cmd_churn(a):
    """The churn scenario (tests/bench/churn.py; trace format in
    tests/bench/shard_bench.c): IVF-Flat with a hashtable direct map,
    updates as remove_ids + add_with_ids, one lock around the index (FAISS
    indexes take no concurrent writes), one writer and threads - 1
    searchers."""
    import threading
    base = vecio.read_fvecs(a.base)
    q = vecio.read_fvecs(a.query)
    head = np.fromfile(a.trace, dtype="<i8", count=8)
    load, rounds, b, d, pct = (int(head[i]) for i in (2, 3, 4, 5, 7))
    tr = np.fromfile(a.trace, dtype="<i8", offset=64).reshape(rounds, 2 * b + d)
    row_of = np.full(load + rounds * (b // 2), -1, dtype=np.int64)
    row_of[:load] = np.arange(load)
    space("data", 0)  # the bench's own memory included
    faiss.omp_set_num_threads(a.threads)
    nlist = max(1, int(round(4 * math.sqrt(load))))
    index, quant = make_index("ivfflat", base.shape[1], nlist)
    t0 = time.perf_counter()
    index.train(train_sample(base[:load], nlist, per_list=a.train_per_list))
    index.set_direct_map_type(faiss.DirectMap.Hashtable)
    index.add_with_ids(base[:load], np.arange(load, dtype=np.int64))
    load_s = time.perf_counter() - t0
    index.nprobe = a.nprobe
    live = load
    space("loaded", live)
    faiss.omp_set_num_threads(1)
    lock = threading.Lock()
    stop = threading.Event()
    searchers = max(1, a.threads - 1)
    lat = [[] for _ in range(searchers)]

    def search(t):
        i = len(q) * t // searchers
        while not stop.is_set():
            s0 = time.perf_counter()
            with lock:
                index.search(q[i:i + 1], 10)
            lat[t].append(time.perf_counter() - s0)
            i = (i + 1) % len(q)

    pool = [threading.Thread(target=search, args=(t,)) for t in range(searchers)]
    for th in pool:
        th.start()
    done, up_s, del_s = 0, 0.0, 0.0
    c0 = time.perf_counter()
    for r in range(rounds):
        if time.perf_counter() - c0 >= a.seconds:
            break
        up, rows, dels = tr[r, :b], tr[r, b:2 * b], tr[r, 2 * b:]
        vecs = np.ascontiguousarray(base[rows])
        a0 = time.perf_counter()
        with lock:
            index.remove_ids(up)
            index.add_with_ids(vecs, up)
        a1 = time.perf_counter()
        with lock:
            index.remove_ids(dels)
        up_s += a1 - a0
        del_s += time.perf_counter() - a1
        live += int((row_of[up] < 0).sum()) - len(dels)
        row_of[up] = rows
        row_of[dels] = -1
        done = r + 1
    window = time.perf_counter() - c0
    stop.set()
    for th in pool:
        th.join()
    allv = np.array(sorted(x for v in lat for x in v))
    space("churned", live)
    nq = min(a.queries, len(q))

    def dump(path):
        faiss.omp_set_num_threads(a.threads)
        _, ids = index.search(q[:nq], 10)
        ids.astype("<i8").tofile(path)

    dump(a.results + ".end.i64")
    live_end = live
    ids = np.arange(len(row_of))
    gone = ids[(row_of >= 0) & (ids % 100 < pct)]
    m0 = time.perf_counter()
    index.remove_ids(gone)
    mass_s = time.perf_counter() - m0
    row_of[gone] = -1
    live -= len(gone)
    space("deleted", live)
    dump(a.results + ".settled.i64")
    pc = (lambda p: float(np.percentile(allv, p)) * 1e3) if len(allv) else (lambda p: 0.0)
    emit(event="churn", system="faiss-ivfflat", load_rows=load,
         load_s=round(load_s, 3), seconds=round(window, 3), rounds=done,
         trace_rounds=rounds, upserts=done * b, deletes=done * d,
         upserts_per_s=round(done * b / window, 1),
         deletes_per_s=round(done * d / window, 1),
         upsert_busy_s=round(up_s, 3), delete_busy_s=round(del_s, 3),
         searchers=searchers, searches=len(allv),
         searches_per_s=round(len(allv) / window, 1), p50_ms=round(pc(50), 3),
         p99_ms=round(pc(99), 3), live_end=live_end, mass_deleted=len(gone),
         mass_delete_s=round(mass_s, 3), live_settled=live, settle_s=0,
         nlist=nlist, nprobe=a.nprobe, queries=nq)


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
    s.add_argument("--train-per-list", type=int, default=256)
    s.add_argument("--nprobes", default="1,2,4,8,16,32,64,128,256")
    s.add_argument("--no-single", action="store_true",
                   help="skip the one-thread, one-query-at-a-time sweep")
    d = sub.add_parser("drift")
    d.add_argument("base")
    d.add_argument("steps")
    d.add_argument("query")
    d.add_argument("--budget", type=int, default=8)
    d.add_argument("--share", type=float, default=0,
                   help="probe this fraction of the lists (overrides --budget)")
    d.add_argument("--retrain", action="store_true")
    c = sub.add_parser("churn")
    c.add_argument("base")
    c.add_argument("query")
    c.add_argument("trace")
    c.add_argument("--results", required=True)
    c.add_argument("--seconds", type=float, default=60)
    c.add_argument("--threads", type=int, default=os.cpu_count())
    c.add_argument("--nprobe", type=int, default=16)
    c.add_argument("--queries", type=int, default=1000)
    c.add_argument("--train-per-list", type=int, default=256)
    a = ap.parse_args()
    {"static": cmd_static, "drift": cmd_drift, "churn": cmd_churn}[a.cmd](a)


if __name__ == "__main__":
    main()
