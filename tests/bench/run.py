#!/usr/bin/python3
"""The benchmark harness: Drift and its peers on real data, in one run.

    tests/bench/run.py [--quick]
                       [--only static,ingest,churn,drift,kernels,codecs,disk,
                               grpc,node]
                       [--dataset fmnist,sift]

Every system runs as its own process speaking one protocol (README.md):
JSON lines on stdout. The harness measures each process's peak resident
memory (wait4's ru_maxrss, through rss-exec so that the harness's own memory
does not count), subtracts a run that only loads the data, and
reports bytes per vector. It writes tables (markdown and TSV) and plots
under build/bench/ and regenerates docs/benchmarks.md with the machine,
the command and the results. A run of some scenarios keeps the sections of
the others from the previous docs/benchmarks.md, each section saying which
command measured it and when. Nothing in the report is typed by hand.
"""
import argparse
import datetime
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import churn  # noqa: E402
import datasets  # noqa: E402

OUT = os.path.join(ROOT, os.environ.get("DRIFT_BENCH_OUT", "build/bench"))
DOCS = os.path.join(ROOT, "docs")
TARGETS = (0.90, 0.95, 0.99)
THREADS = os.cpu_count() or 1
INGEST_BATCH = 1000          # rows per upsert in the ingest scenario
INGEST_QUERIES = 1000        # queries for its recall@10
INGEST_QUICK_ROWS = 10000    # --quick: the first rows of the set ...
INGEST_QUICK_MEMTABLE = 4096  # ... and a memtable that several flushes fill
INGEST_MIXED_ROWS = {False: 150000, True: 5000}  # written while searching
STATIC_QUICK_QUERIES = 1000  # --quick: the static sweep's queries
# Full: the first 2,000 of the 10,000 queries for every system (recall@10
# within about 0.003; all 10,000 made FAISS's one-thread nprobe sweep take
# 17 minutes per index on Fashion-MNIST alone on 2 cores).
STATIC_FULL_QUERIES = 2000
NODE_STATIC_QUERIES = {False: 2000, True: 300}  # drift-node: queries a point
NODE_IN_FLIGHT = 32          # ... and calls in flight from its one client
DRIFT_QUICK_STRIDE = 10      # --quick: every 10th SIFT row, in source order
DRIFT_QUICK_STEPS = 5
# The drift scenario's budget: every system probes this fraction of the
# buckets (lists) it has at each step, so cost is compared share for share;
# the table shows the vectors each query compared.
DRIFT_SHARE = 0.10
INGEST_RECOVER_L1_ROWS = 100000  # in L1 before the memtable is filled (full)
INGEST_RECOVER_MEMTABLE = 65536  # the shard's default memtable, filled


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- Running systems --------------------------------------------------------

_copied = set()


def copied_tool(name):
    """A tool of build/tests/bench, copied out of the build tree on first
    use so that a rebuild during a long run does not change what is
    measured."""
    exe = os.path.join(OUT, name)
    if name not in _copied:
        os.makedirs(OUT, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, "build", "tests", "bench", name), exe)
        _copied.add(name)
    return exe


def run_system(cmd, timeout=7200):
    """Runs cmd; returns (records, peak RSS bytes, seconds). The peak is
    the system's own, through rss-exec: wait4 of a child started from this
    process would count this process's memory too (see rss_exec.c)."""
    log("$ " + " ".join(cmd))
    t0 = time.time()
    rss = copied_tool("rss-exec")  # creates OUT, where its file goes
    fd, rss_file = tempfile.mkstemp(prefix="rss-", dir=OUT)
    os.close(fd)
    p = subprocess.Popen([rss, rss_file] + cmd, stdout=subprocess.PIPE,
                         text=True)
    records = []
    for line in p.stdout:
        line = line.strip()
        if line.startswith("{"):
            rec = json.loads(line)
            records.append(rec)
            log("  " + line)
    p.wait()
    with open(rss_file) as f:
        peak_kib = f.read().strip()
    os.unlink(rss_file)
    if p.returncode != 0 or not peak_kib:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}")
    log(f"  ({time.time() - t0:.1f} s, load {os.getloadavg()[0]:.1f})")
    return records, int(peak_kib) * 1024, time.time() - t0


def hnswlib_binary():
    exe = os.path.join(OUT, "hnswlib_bench")
    src = os.path.join(HERE, "peers", "hnswlib_bench.cpp")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        os.makedirs(OUT, exist_ok=True)
        subprocess.run(["g++", "-O3", "-march=native", "-std=c++17", "-pthread",
                        "-o", exe, src], check=True)
    return exe


def query_subset(folder, n):
    """(query, gt) files of the first n queries of a set (their exact
    top-100 are the first n rows of the set's ground truth), written once
    under the set's folder."""
    import vecio
    sub = os.path.join(folder, "quick")
    query, gt = f"{sub}/query_{n}.fvecs", f"{sub}/gt_l2_{n}.ivecs"
    if not os.path.exists(gt):
        os.makedirs(sub, exist_ok=True)
        vecio.write_fvecs(query + ".tmp",
                          vecio.read_fvecs(f"{folder}/query.fvecs")[:n])
        vecio.write_ivecs(gt + ".tmp",
                          vecio.read_ivecs(f"{folder}/gt_l2.ivecs")[:n])
        os.replace(query + ".tmp", query)
        os.replace(gt + ".tmp", gt)
    return query, gt


def static_systems(folder, quick=False):
    """The static scenario's commands: the first STATIC_FULL_QUERIES queries
    (quick: STATIC_QUICK_QUERIES, and FAISS trained on 64 points per
    list)."""
    base, query = f"{folder}/base.fvecs", f"{folder}/query.fvecs"
    gt = f"{folder}/gt_l2.ivecs"
    query, gt = query_subset(folder, STATIC_QUICK_QUERIES if quick
                             else STATIC_FULL_QUERIES)
    drift = copied_tool("drift-bench")
    faiss = [sys.executable, os.path.join(HERE, "peers", "faiss_bench.py"), "static"]
    fq = (["--train-per-list", "64", "--nprobes", "1,2,4,8,16,32,64",
           "--no-single"] if quick else [])
    return {
        "drift": [drift, "static", base, query, gt, "--threads", str(THREADS)],
        "hnswlib": [hnswlib_binary(), base, query, gt, "--threads", str(THREADS)]
        + (["--efs", "10,16,32,64,128,256"] if quick else []),
        "faiss-ivfflat": faiss + [base, query, gt, "--index", "ivfflat",
                                  "--threads", str(THREADS)] + fq,
        "faiss-ivfsq8": faiss + [base, query, gt, "--index", "ivfsq8",
                                 "--threads", str(THREADS)] + fq,
        "drift-node": [sys.executable, os.path.join(HERE, "node_static.py"),
                       base, query, gt, "--threads", str(THREADS),
                       "--in-flight", str(NODE_IN_FLIGHT),
                       "--queries", str(NODE_STATIC_QUERIES[quick])],
    }


def qps_at(points, target):
    """Best QPS among measured points with recall@10 >= target (no
    interpolation: a target no point reaches is n/a)."""
    ok = [p["qps"] for p in points if p["recall10"] >= target]
    return max(ok) if ok else None


def scenario_static(names, results, quick=False):
    rows = []
    for ds in names:
        folder = getattr(datasets, ds)()
        meta = json.load(open(os.path.join(folder, "meta.json")))
        for system, cmd in static_systems(folder, quick).items():
            if system == "drift-node":
                # The server's own memory, which the client reports.
                recs, _, _ = run_system(cmd)
                build = next(r for r in recs if r["event"] == "build")
                peak, base_rss = build["peak_rss_bytes"], build["base_rss_bytes"]
            else:
                _, base_rss, _ = run_system(cmd + ["--load-only"])
                recs, peak, _ = run_system(cmd)
                build = next(r for r in recs if r["event"] == "build")
            searches = [r for r in recs if r["event"] == "search"]
            results.setdefault("static", []).append(
                {"dataset": ds, "system": system, "build": build,
                 "searches": searches, "peak_rss": peak, "base_rss": base_rss,
                 "rows": meta["rows"], "dim": meta["dim"]})
            for t in sorted({1, THREADS}):
                pts = [s for s in searches if s["threads"] == t]
                if not pts:
                    continue  # quick FAISS: no one-thread sweep
                rows.append({
                    "dataset": ds, "system": system, "threads": t,
                    **{f"qps@{x:.2f}": qps_at(pts, x) for x in TARGETS},
                    "build_s": build["build_s"],
                    "ingest_vps": meta["rows"] / build["build_s"],
                    "bytes_per_vector": (peak - base_rss) / meta["rows"],
                })
    return rows


def scenario_drift(results, quick=False, share=DRIFT_SHARE):
    folder = datasets.sift()
    if quick:
        steps = datasets.drift_steps(folder, DRIFT_QUICK_STEPS, 200,
                                     DRIFT_QUICK_STRIDE)
    else:
        steps = datasets.drift_steps(folder)
    base = datasets.drift_base(folder, steps)
    query = f"{folder}/query.fvecs"
    drift = copied_tool("drift-bench")
    faiss = [sys.executable, os.path.join(HERE, "peers", "faiss_bench.py"), "drift",
             base, steps, query, "--share", str(share)]
    cmds = {
        "drift-maint": [drift, "drift", base, steps, query, "--share", str(share)],
        "drift-nomaint": [drift, "drift", base, steps, query, "--share", str(share),
                          "--no-maintenance"],
        "faiss-ivfsq8-static": faiss,
    }
    rows = []
    for name, cmd in cmds.items():
        recs, _, _ = run_system(cmd)
        rows += [r for r in recs if r["event"] == "drift"]
    for r in rows:
        r["set"] = (f"every {DRIFT_QUICK_STRIDE}th row, {DRIFT_QUICK_STEPS} "
                    "steps, 200 queries a step" if quick else
                    "all rows, 10 steps, 1,000 queries a step")
    results["drift"] = rows
    return rows


def scenario_kernels(results, quick=False):
    """SQ8 ADC scan GB/s of codes per core per SIMD level, next to the
    core's memory read bandwidth measured in the same run."""
    exe = os.path.join(ROOT, "build", "tests", "bench", "scan-bench")
    rows = []
    for dim in (128, 784):
        recs, _, _ = run_system([exe, str(dim), "128" if quick else "512"])
        bw = next(r["gb_per_s"] for r in recs if r["event"] == "membw")
        for r in recs:
            if r["event"] == "scan":
                rows.append({"dim": dim, "level": r["level"],
                             "scan_gb_per_s": r["gb_per_s"],
                             "vectors_per_s": r["vectors_per_s"],
                             "memory_read_gb_per_s": bw,
                             "codes_mib": 128 if quick else 512})
    results["kernels"] = rows
    return rows


def build_exe(*parts):
    exe = os.path.join(ROOT, "build", "tests", "bench", *parts)
    if not os.path.exists(exe):
        raise RuntimeError(f"{exe} missing: make build first")
    return exe


def scenario_codecs(names, results, quick=False):
    """Per codec and data set: encode/decode GB/s of raw bytes, compression
    ratio, and the bit-exact check codec-bench makes of every lossless
    round trip (it exits non-zero, failing the run, on any difference)."""
    exe = build_exe("codec", "codec-bench")
    rows, details, blooms = [], [], []
    for ds in names:
        getattr(datasets, ds)()  # the cached set, built when missing
        recs, _, _ = run_system([exe, str(10000 if quick else 10**7), ds])
        shape = next(r for r in recs if r["event"] == "dataset")
        for r in recs:
            if r["event"] == "codec":
                rows.append({**r, "rows": shape["rows"], "dim": shape["dim"],
                             "check": "bit-exact" if r["bit_exact"] else
                             f"lossy, max error {r['max_err_steps']:.2f} step"})
            elif r["event"] == "alp_detail":
                details.append(r)
            elif r["event"] == "bloom":
                blooms.append(r)
    results["codecs"] = {"codecs": rows, "alp": details, "bloom": blooms}
    return results["codecs"]


def scenario_disk(results, quick):
    """Random 4 KiB reads on one file through the disk manager, io_uring
    and the thread-pool backend, closed loop at a few queue depths."""
    exe = build_exe("disk-bench")
    folder = os.path.join(datasets.cache_dir(), "disk")
    os.makedirs(folder, exist_ok=True)
    mib, seconds, qds = (1024, 3, "1,32") if quick else (4096, 10, "1,4,32")
    recs, _, _ = run_system([exe, "-m", str(mib), "-s", str(seconds), "-q", qds,
                             os.path.join(folder, f"read4k-{mib}m.bin")])
    rows = [r for r in recs if r["event"] == "disk"]
    for r in rows:
        if "o_direct" in r:
            r["o_direct"] = "yes" if r["o_direct"] else "no"
            r["file_gib"] = r["file_bytes"] / 2**30
    results["disk"] = rows
    return rows


def prefix_set(folder, n):
    """(base, gt) files of the first n base rows of a set, with their exact
    top-100 for its first INGEST_QUERIES queries (written once under the
    set's folder); the set's own files when n covers it."""
    meta = json.load(open(os.path.join(folder, "meta.json")))
    if n >= meta["rows"]:
        return f"{folder}/base.fvecs", f"{folder}/gt_l2.ivecs"
    import vecio
    sub = os.path.join(folder, "ingest")
    base, gt = f"{sub}/base_{n}.fvecs", f"{sub}/gt_l2_{n}.ivecs"
    if not os.path.exists(gt):
        os.makedirs(sub, exist_ok=True)
        b = vecio.read_fvecs(f"{folder}/base.fvecs")[:n]
        q = vecio.read_fvecs(f"{folder}/query.fvecs")[:INGEST_QUERIES]
        vecio.write_fvecs(base + ".tmp", b)
        vecio.write_ivecs(gt + ".tmp", datasets.ground_truth(b, q))
        os.replace(base + ".tmp", base)
        os.replace(gt + ".tmp", gt)
    return base, gt


def shard_data_dir(name):
    """A fresh directory for one shard under the bench cache."""
    path = os.path.join(datasets.cache_dir(), "shard-bench", name)
    shutil.rmtree(path, ignore_errors=True)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return path


def run_shard(cmd, name):
    """Runs shard-bench on a fresh shard directory, removed afterwards."""
    path = shard_data_dir(name)
    try:
        recs, _, _ = run_system(cmd + ["--dir", path])
    finally:
        shutil.rmtree(path, ignore_errors=True)
    return recs


def scenario_ingest(names, results, quick):
    """The shard engine's write path (tests/bench/shard_bench.c): ingest
    rate per sync policy next to hnswlib's build rate measured in the same
    run; searches while one writer ingests at half the batch rate;
    drift_shard_open after kill -9 with a full memtable."""
    exe = os.path.join(OUT, "shard-bench")
    os.makedirs(OUT, exist_ok=True)
    shutil.copy2(build_exe("shard-bench"), exe)
    threads = str(THREADS)
    batch = str(INGEST_BATCH)
    out = {"ingest": [], "mixed": [], "recover": []}
    for ds in names:
        folder = getattr(datasets, ds)()
        query = f"{folder}/query.fvecs"
        rows, mem = ((INGEST_QUICK_ROWS, INGEST_QUICK_MEMTABLE) if quick
                     else (1 << 62, None))
        base, gt = prefix_set(folder, rows)
        mbase, mgt = prefix_set(folder, INGEST_MIXED_ROWS[quick])
        common = ["--threads", threads, "--batch", batch,
                  "--queries", str(INGEST_QUERIES)]
        if mem:
            common += ["--memtable", str(mem)]
        recs, _, _ = run_system([hnswlib_binary(), base, query, gt,
                                 "--threads", threads, "--build-only"])
        hb = next(r for r in recs if r["event"] == "build")
        peer = hb["n"] / hb["build_s"]
        out["ingest"].append({"dataset": ds, "system": "hnswlib", "sync": "-",
                              "threads": hb["threads"], "batch": None,
                              "n": hb["n"], "build_s": hb["build_s"],
                              "vectors_per_s": peer, "x_hnswlib": 1.0})
        rate = {}
        for sync in ("always", "batch"):
            recs = run_shard([exe, "ingest", base, query, gt, "--sync", sync]
                             + common, f"{ds}-ingest-{sync}")
            r = next(r for r in recs if r["event"] == "ingest")
            rate[sync] = r["vectors_per_s"]
            out["ingest"].append({"dataset": ds, **r,
                                  "x_hnswlib": r["vectors_per_s"] / peer})
        recs = run_shard([exe, "mixed", mbase, query, mgt, "--sync", "batch",
                          "--rate", f"{rate['batch'] / 2:.1f}",
                          "--idle-seconds", "3" if quick else "10"] + common,
                         f"{ds}-mixed")
        out["mixed"] += [{"dataset": ds, **r} for r in recs
                         if r["event"] == "mixed"]
        # A set too small for the default memtable over 100,000 L1 rows
        # (Fashion-MNIST's 60,000) is split in half: L1, then a memtable
        # of the other half, filled.
        with open(os.path.join(folder, "meta.json")) as f:
            n = json.load(f)["rows"]
        rmem = mem or min(INGEST_RECOVER_MEMTABLE, n // 2)
        rl1 = min(INGEST_RECOVER_L1_ROWS, n - rmem)
        rec = [exe, "recover", base, "--sync", "batch", "--threads", threads,
               "--batch", batch, "--memtable", str(rmem)] + \
            ([] if mem else ["--l1-rows", str(rl1)])
        recs = run_shard(rec, f"{ds}-recover")
        out["recover"] += [{"dataset": ds, **r} for r in recs
                           if r["event"] == "recover"]
    results["ingest"] = out
    return out


def scenario_churn(names, results, quick):
    """Upserts, deletes and searches for a bounded time, then a mass delete
    (tests/bench/churn.py): the shard engine in-process, hnswlib and FAISS
    IVF-Flat replaying the same trace."""
    exe = os.path.join(OUT, "shard-bench")
    os.makedirs(OUT, exist_ok=True)
    shutil.copy2(build_exe("shard-bench"), exe)
    tools = {"shard": exe, "hnswlib": hnswlib_binary(),
             "faiss": os.path.join(HERE, "peers", "faiss_bench.py"),
             "run": run_system}
    res = churn.scenario_churn(names, quick, tools, THREADS, log)
    results["churn"] = res
    return res


def scenario_memory(names, results, quick):
    """tests/bench/memory.py: resident bytes per vector after Flush of
    drift-node next to the shard in-process, on each set (quick: the first
    10,000 Fashion-MNIST rows); then many collections on one node (10,000;
    quick: 1,000): fixed cost, create / first upsert / drop times, and the
    memory once every collection is flushed to L1."""
    script = os.path.join(HERE, "memory.py")
    rows = []

    def lines(cmd):
        out = subprocess.run([sys.executable, script] + cmd, check=True,
                             capture_output=True, text=True,
                             timeout=14400).stdout
        return [json.loads(x) for x in out.splitlines() if x.startswith("{")]
    for ds in names:
        base = os.path.join(getattr(datasets, ds)(), "base.fvecs")
        extra = ["--rows", "10000"] if quick else []
        for r in lines(["vectors", base] + extra):
            r["dataset"] = ds + ("_10k" if quick else "")
            rows.append(r)
            log(f"memory {r['dataset']} {r['system']}: "
                f"{r['bytes_per_vector']} B/vector after Flush")
    count = 1000 if quick else 10000
    rows += lines(["collections", "--count", str(count), "--flush"])
    log(f"memory: {count} collections: {rows[-1]}")
    results["memory"] = rows
    return rows


# ---- Reporting ------------------------------------------------------------

def fmt(v, digits=0):
    if v is None:
        return "n/a"
    if isinstance(v, float):
        return f"{v:,.{digits}f}"
    return str(v)


def table(rows, cols, digits):
    md = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    tsv = ["\t".join(cols)]
    for r in rows:
        md.append("| " + " | ".join(fmt(r.get(c), digits.get(c, 0)) for c in cols) + " |")
        tsv.append("\t".join("" if r.get(c) is None else str(r.get(c)) for c in cols))
    return "\n".join(md), "\n".join(tsv) + "\n"


def plot_static(results, ds, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, many in zip(axes, (False, True)):
        for res in results["static"]:
            if res["dataset"] != ds:
                continue
            pts = sorted((s for s in res["searches"]
                          if (s["threads"] > 1) == many),
                         key=lambda s: s["recall10"])
            if not pts:
                continue
            if res["system"] in ("drift", "drift-node"):
                style = "s-" if res["system"] == "drift" else "D--"
                for param in ("nprobe", "recall_target"):
                    sub = [p for p in pts if p["param"] == param]
                    ax.plot([p["recall10"] for p in sub],
                            [p["qps"] for p in sub], style,
                            label=f"{res['system']} ({param})")
            else:
                ax.plot([p["recall10"] for p in pts], [p["qps"] for p in pts],
                        "o-", label=res["system"])
        ax.set_yscale("log")
        ax.set_xlabel("recall@10")
        ax.set_ylabel("queries per second")
        ax.set_title(f"{ds}: " + (f"{THREADS} threads (drift-node: "
                                  f"{NODE_IN_FLIGHT} calls in flight)"
                                  if many else "1 thread (drift-node: 1 "
                                  "call in flight)"))
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_drift(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for name in sorted({r["system"] for r in rows}):
        sub = sorted((r for r in rows if r["system"] == name), key=lambda r: r["step"])
        x = [r["rows"] for r in sub]
        axes[0].plot(x, [r["recall10"] for r in sub], "o-", label=name)
        axes[1].plot(x, [r.get("scanned", 0) for r in sub], "o-", label=name)
        axes[2].plot(x, [r["p99_ms"] for r in sub], "o-", label=name)
    axes[0].set_ylabel(f"recall@10, probing {DRIFT_SHARE:.0%} of the buckets")
    axes[1].set_ylabel("vectors compared per query")
    axes[2].set_ylabel("p99 latency (ms)")
    axes[2].set_yscale("log")
    for ax in axes:
        ax.set_xlabel("rows inserted (source order)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=8)
    fig.suptitle("SIFT descriptors inserted package by package (drift)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def machine():
    info = {"kernel": platform.release(), "cores": os.cpu_count()}
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
            if line.startswith("flags"):
                flags = line.split()
                info["simd"] = " ".join(f for f in ("avx2", "fma", "avx512f", "avx512bw")
                                        if f in flags)
                break
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal"):
                info["memory_gib"] = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        import faiss
        info["faiss"] = faiss.get_compile_options()
    except ImportError:
        pass
    return info


# Sections of docs/benchmarks.md in order: (scenario, title). Titles of
# earlier reports map to their scenario so that their sections are kept.
SECTIONS = [
    ("static", "Static: QPS at recall@10, build rate, memory"),
    ("ingest", "Ingest: the shard's write path, searches while ingesting, "
     "recovery"),
    ("kernels", "SQ8 ADC scan, one core"),
    ("codecs", "Codecs: speed, compression, bit-exact round trips"),
    ("disk", "Disk: random 4 KiB reads, io_uring vs thread pool"),
    ("grpc", "gRPC layer: unary echo requests/s next to a grpcio server"),
    ("node", "drift-node through gRPC: UpsertStream per sync policy, Search"),
    ("churn", "Churn: upserts, deletes and searches, then a mass delete"),
    ("drift", "Drift: SIFT inserted in source order, fixed probe share"),
    ("memory", "Memory: bytes per vector after Flush, many collections"),
]
MARKER = re.compile(r"^<!-- scenario: (\w+) -->$")


def previous_sections(path):
    """The sections of an earlier report: {scenario: lines}, each with a
    provenance line (sections of reports that predate them get the one of
    their report's header)."""
    if not os.path.exists(path):
        return {}
    text = open(path).read().split("\n")
    head, chunks = [], []
    for line in text:
        if line.startswith("## "):
            chunks.append([line])
        elif chunks:
            chunks[-1].append(line)
        else:
            head.append(line)
    meta = {}
    for line in head:
        m = re.match(r"^- (command|date|machine): (.*)$", line)
        if m:
            meta[m.group(1)] = m.group(2)
    by_title = {title: key for key, title in SECTIONS}
    out = {}
    for i, chunk in enumerate(chunks):
        key = next((MARKER.match(l).group(1) for l in chunk if MARKER.match(l)),
                   None) or by_title.get(chunk[0][3:].strip(), f"unknown-{i}")
        while chunk and chunk[-1] == "":
            chunk.pop()
        if not any(l.startswith("_Measured ") for l in chunk):
            chunk[1:1] = ["", f"<!-- scenario: {key} -->",
                          provenance(meta.get("command", "?").strip("`"),
                                     meta.get("date", "?"),
                                     meta.get("machine", "?"))]
        out[key] = chunk
    return out


def provenance(cmd, date, mach):
    return f"_Measured {date} by `{cmd}`; {mach}._"


def section(key, body, cmd, date, mach):
    title = dict(SECTIONS)[key]
    return [f"## {title}", "", f"<!-- scenario: {key} -->",
            provenance(cmd, date, mach), ""] + body


def write_table(name, rows, cols, digits):
    md, tsv = table(rows, cols, digits)
    open(os.path.join(OUT, f"{name}.md"), "w").write(md + "\n")
    open(os.path.join(OUT, f"{name}.tsv"), "w").write(tsv)
    return md


def body_static(results, static_rows, img_dir):
    cols = ["dataset", "system", "threads"] + [f"qps@{x:.2f}" for x in TARGETS] + \
           ["build_s", "ingest_vps", "bytes_per_vector"]
    md = write_table("static", static_rows, cols, {"build_s": 1})
    lines = ["QPS is the best measured point reaching the recall (n/a: no "
             "point reached it), over the first "
             f"{STATIC_FULL_QUERIES:,} queries of the set for every system "
             "(quick mode: see below). Memory is peak resident bytes of the "
             "process minus a run that only loads the data, per vector. "
             "drift: the engine in-process (`drift_bench.c`, L1 bulk "
             "build). drift-node: a `drift-node` process on 127.0.0.1 "
             "(`node_static.py`): the base loaded with UpsertStream "
             "(batches of 500) and Flush (build_s and ingest_vps include "
             "the flush into L1), then the same sweep (probe budget, recall "
             f"target) over the first {NODE_STATIC_QUERIES[False]:,} queries "
             f"(quick: {NODE_STATIC_QUERIES[True]:,}) from one grpcio client "
             "process: "
             "threads 1 is one call in flight, threads "
             f"{THREADS} is {NODE_IN_FLIGHT} calls in flight (requests "
             "serialized and responses parsed outside the clock); its "
             "memory is the server's VmHWM minus its VmRSS after start. "
             "Quick mode (`--quick`): the first "
             f"{STATIC_QUICK_QUERIES:,} queries for every system, hnswlib's "
             "ef swept over 10, 16, 32, 64, 128, 256; FAISS "
             "trained on 64 points per list, its nprobe swept up to 64, "
             f"and only with {THREADS} threads (batch search; no one-thread "
             "rows).",
             "", md, ""]
    for ds in sorted({r["dataset"] for r in static_rows}):
        png = f"recall_qps_{ds}.png"
        plot_static(results, ds, os.path.join(OUT, png))
        shutil.copy(os.path.join(OUT, png), os.path.join(img_dir, png))
        lines += [f"![{ds}](benchmarks/{png})", ""]
    return lines


def body_ingest(res):
    cols = ["dataset", "system", "sync", "threads", "batch", "n", "build_s",
            "vectors_per_s", "x_hnswlib", "batch_p50_ms", "batch_p99_ms",
            "flushes", "cpu_s", "recall10"]
    md = write_table("ingest", res["ingest"], cols,
                     {"build_s": 1, "x_hnswlib": 2, "batch_p50_ms": 1,
                      "batch_p99_ms": 1, "cpu_s": 1, "recall10": 4})
    mcols = ["dataset", "n", "target_vps", "write_vps", "search_threads",
             "searches", "qps", "p50_ms", "p99_ms", "recall10", "idle_qps",
             "idle_p99_ms"]
    mmd = write_table("ingest_mixed", res["mixed"], mcols,
                      {"p50_ms": 2, "p99_ms": 2, "recall10": 4,
                       "idle_p99_ms": 2})
    rcols = ["dataset", "sync", "l1_vectors", "rows_replayed", "wal_mib",
             "open_cold_s", "open_warm_s", "replay_rows_per_s"]
    for r in res["recover"]:
        r["wal_mib"] = r["wal_bytes"] / 2**20
    rmd = write_table("ingest_recover", res["recover"], rcols,
                      {"wal_mib": 1, "open_cold_s": 2, "open_warm_s": 2})
    verdict = []
    for ds in sorted({r["dataset"] for r in res["ingest"]}):
        b = next((r for r in res["ingest"] if r["dataset"] == ds
                  and r["sync"] == "batch"), None)
        if b:
            verdict.append(f"- {ds}: `batch` ingests at {b['x_hnswlib']:.2f}x "
                           f"hnswlib's build rate: the 3x bar is "
                           f"{'met' if b['x_hnswlib'] >= 3 else 'not met'}.")
    return ["`tests/bench/shard_bench.c`: the shard engine in-process "
            "(`node/engine/shard.h`: WAL, HNSW memtable, flush into L1, Janitor on, "
            "L2). build_s runs from the first upsert until "
            "`drift_shard_flush` has made every row durable in L1; the run "
            "then checks that every row is live and in L1 and that the "
            "manifest covers the whole WAL, and measures recall@10 of "
            f"{INGEST_QUERIES} queries (k=10, default recall target). "
            f"Writers: one thread per core, batches of {INGEST_BATCH} rows "
            "in base order (ids are row numbers); batch_p50/p99_ms: "
            "latency of one upsert call. hnswlib (M=16, efConstruction=200) "
            "is built in the same run on the same rows with as many "
            "threads (`hnswlib_bench --build-only`); x_hnswlib is the ratio "
            "of rates. On a 2-core machine shared with other builds the "
            "figures vary by tens of percent from run to run.", "", md, "",
            *verdict, "",
            "Searches while ingesting: one writer thread upserts the first "
            "n rows of the set into a new shard at half the `batch` rate "
            "measured above (batches on a fixed "
            "schedule; write_vps is the rate it achieved) while one search "
            "thread per core runs the queries in a loop (k=10, default "
            "recall target and ef); QPS and latency over that window. "
            "recall10: the same queries on the final state, against the "
            "exact ground truth of those n rows; idle_*: the same "
            "searches on that state with no writer.", "", mmd, "",
            "Recovery: a child process flushes l1_vectors rows into L1 "
            "(with the writers above), then fills the memtable exactly "
            "(no rotation, no "
            "flush; `batch` sync), reports the rows acknowledged and is "
            "killed with SIGKILL. The shard's files are then synced and "
            "dropped from the page cache and `drift_shard_open` (manifest, "
            "segments, WAL replay into a new memtable) is timed: cold; "
            "every acknowledged row is checked to be there and the replayed "
            "ones to read back as written; open_warm_s is a second open of "
            "the same files from the page cache.", "", rmd, ""]


def body_kernels(kernel_rows):
    cols = ["dim", "level", "scan_gb_per_s", "vectors_per_s",
            "memory_read_gb_per_s", "codes_mib"]
    md = write_table("kernels", kernel_rows, cols,
                     {"scan_gb_per_s": 2, "memory_read_gb_per_s": 2})
    return ["GB/s of codes scanned (codes_mib MiB of codes, 512 in full "
            "mode and 128 in quick mode, best of three), next to the same "
            "core's memory read bandwidth.", "", md, ""]


def body_codecs(codecs):
    cols = ["dataset", "rows", "dim", "codec", "column", "ratio",
            "encode_gb_per_s", "decode_gb_per_s", "check"]
    md = write_table("codecs", codecs["codecs"], cols,
                     {"ratio": 2, "encode_gb_per_s": 2, "decode_gb_per_s": 2})
    acols = ["dataset", "vectors_alp", "vectors_rd", "vectors_stored",
             "exceptions", "row_fetch_us"]
    amd = write_table("codecs_alp", codecs["alp"], acols, {"row_fetch_us": 2})
    bcols = ["dataset", "n", "bytes", "k", "target_fp", "measured_fp",
             "adds_per_s", "probes_per_s"]
    bmd = write_table("codecs_bloom", codecs["bloom"], bcols,
                      {"target_fp": 3, "measured_fp": 4})
    return ["`tests/bench/codec/codec_bench.c`, one core, best of 3 runs "
            "(quick mode: the first 10,000 rows of each set, see rows). "
            "GB/s of raw bytes (float32 for ALP and SQ8, the integers' width "
            "for FastLanes); ratio is raw bytes over encoded bytes (ALP and "
            "SQ8 against raw float32). Vector columns are the whole base set; "
            "id and offset columns have one value per base row (synthetic: "
            "sorted ids with gaps 1..8, a constant stride, random 48-bit "
            "ids). Every lossless round trip was compared bit for bit with "
            "its input after the timed runs (the run fails on a difference).",
            "", md, "",
            "ALP vectors (of 1024 values) per scheme, exceptions, and the "
            "time to decode one random row (`drift_alp_decode_range`):", "",
            amd, "", "Bloom filter of the sorted ids at a 1% target "
            "(1,000,000 absent probes):", "", bmd, ""]


def body_disk(disk_rows):
    ok = [r for r in disk_rows if "iops" in r]
    cols = ["backend", "qd", "threads", "o_direct", "file_gib", "iops",
            "mib_per_s", "mean_us", "p50_us", "p99_us", "p999_us",
            "cpu_us_per_read"]
    md = write_table("disk", ok, cols,
                     {"file_gib": 1, "mib_per_s": 1, "mean_us": 1, "p50_us": 1,
                      "p99_us": 1, "p999_us": 1, "cpu_us_per_read": 2})
    lines = ["`tests/bench/disk_bench.c`: uniformly random 4 KiB reads of one "
             "file through `node/storage/disk.h`, closed loop with `qd` reads in "
             "flight, latency from submission to the completion callback, "
             "every read checked against the block it asked for. `threads`: "
             "the pool's threads (io_uring: its one completion thread). "
             "`o_direct`: whether the file system allowed O_DIRECT (without "
             "it, reads may come from the page cache). cpu_us_per_read: user "
             "+ system CPU time of the process per read.", "", md, ""]
    for r in disk_rows:
        if "unavailable" in r:
            lines += [f"- {r['backend']} unavailable: {r['unavailable']}"]
    return lines


def body_grpc(rows):
    import grpc_bench
    md = write_table("grpc", rows, ["server", "load", "requests_per_s",
                                    "succeeded", "failed"], {})
    return ["`tests/bench/grpc_bench.py`: unary `drift.test.Echo/Unary` with "
            "a 16-byte payload, against `echo-server` (the gRPC layer of "
            "`common/grpc/`: one loop thread plus its worker pool) and "
            "against `tests/grpc/peer.py` (stock Python grpcio, 16 worker "
            "threads), on the same machine in the same run. Loads: h2load "
            "(HTTP/2 responses; it does not read grpc-status) and the "
            "layer's own client (counts only calls with status OK). "
            + grpc_bench.NOTE, "", md, ""]


def body_node(rows):
    import node_bench
    md = write_table("node", [r for r in rows if r.get("kind") != "search"],
                     ["dataset", "measure", "value", "unit", "extra"], {})
    smd = write_table("node_search",
                      [r for r in rows if r.get("kind") == "search"],
                      node_bench.SEARCH_COLS,
                      {"p50_us": 0, "p99_us": 0, "recall10": 4,
                       "cpu_us": 0, "node_cpu_us": 0, "loadavg": 1})
    return ["`tests/bench/node_bench.py`: a real `drift-node` process on "
            "127.0.0.1 and stock clients on the same machine. Ingest: "
            "`UpsertStream` of the base set in batches of 500 (requests "
            "serialized before the clock starts), one collection per sync "
            "policy, then `Flush`. Search: h2load sending one query.", "",
            md, "",
            "The same 1,000 queries (k=10, the collection's default recall "
            "target, nothing else set) on the `batch` collection, round "
            "after round, each way: through the node from one client "
            "process with calls in flight (`node-search-bench grpc`, the C "
            "client of `common/grpc/`, requests serialized beforehand; "
            "stock grpcio), then, the node stopped, in-process on its data "
            "directory (`node-search-bench local`: `drift_collection_search`, "
            "what the Search handler calls). Every way searches one index "
            "state: the node is restarted on its data directory before the "
            "gRPC searches (the in-process open hydrates it the same way, "
            "recall calibration included) and its maintenance has settled. "
            "Latency per call; recall@10 of the first round against the "
            "exact ground truth; cpu_us: user + system CPU time per call "
            "of the client process and the node together (in-process: the "
            "one process), which, unlike QPS, does not depend on how much "
            "of the cores other work takes; node_cpu_us: the node's part "
            "of it, what the server spends per call next to in-process "
            "cpu_us; loadavg: the 1-minute load "
            "average when the row finished (other work on the machine "
            "included). Client, server and other work share the machine's "
            "cores.", "", smd, ""]


def body_memory(rows):
    vec = []
    for r in (x for x in rows if x.get("event") == "vectors"):
        vec.append({"dataset": r["dataset"], "system": r["system"],
                    "n": r["n"], "bytes_per_vector": r["bytes_per_vector"],
                    "peak_bytes_per_vector":
                        r.get("peak_bytes_per_vector"),
                    "node / in-process": r.get("ratio")})
    md = write_table("memory_vectors", vec,
                     ["dataset", "system", "n", "bytes_per_vector",
                      "peak_bytes_per_vector", "node / in-process"],
                     {"node / in-process": 3})
    calls = []
    for r in (x for x in rows if x.get("event") == "call"):
        calls.append({"call": r["call"], "collections": r["count"],
                      "first tenth p50_ms": r["first"]["p50_ms"],
                      "first tenth p99_ms": r["first"]["p99_ms"],
                      "last tenth p50_ms": r["last"]["p50_ms"],
                      "last tenth p99_ms": r["last"]["p99_ms"],
                      "total_s": r["total_s"]})
    cmd = write_table("memory_calls", calls,
                      ["call", "collections", "first tenth p50_ms",
                       "first tenth p99_ms", "last tenth p50_ms",
                       "last tenth p99_ms", "total_s"],
                      {"first tenth p50_ms": 2, "first tenth p99_ms": 2,
                       "last tenth p50_ms": 2, "last tenth p99_ms": 2,
                       "total_s": 1})
    t = next((x for x in rows if x.get("event") == "tenants"), None)
    MiB = float(1 << 20)
    lines = ["`tests/bench/memory.py`. Bytes per vector after Flush: the "
             "same rows loaded into the shard in-process (`shard-bench "
             "ingest`, Janitor on, `batch` sync; resident memory 2 s after "
             "the flush minus before the shard opened) and into a default "
             "`drift-node` (one collection, `UpsertStream` in batches of "
             "500, `Flush`; VmRSS 2 s after the flush minus VmRSS after "
             "start; peak: VmHWM minus VmRSS after start, the memtable's "
             "fill included).", "", md, ""]
    if t is not None:
        lines += [f"Many collections on one default node: {t['count']:,} "
                  f"collections (64-d COSINE) created one after the other, "
                  f"then a first `Upsert` of {t['rows']} vectors into each, "
                  "then every one dropped; a call's latency over the first "
                  "and the last tenth of the collections (a call that slows "
                  "down as the node fills would show there). The node: "
                  f"{t['start_rss'] / MiB:.1f} MiB and "
                  f"{t['start_threads']} threads at start; "
                  f"{t['empty_rss'] / MiB:.1f} MiB and "
                  f"{t['empty_threads']} threads with the empty collections "
                  f"({t['empty_bytes_each'] / 1024:.0f} KiB each); "
                  f"{t['loaded_rss'] / MiB:.1f} MiB and "
                  f"{t['loaded_threads']} threads with {t['rows']} vectors "
                  f"in each ({t['loaded_bytes_each'] / 1024:.0f} KiB each); "
                  + (f"{t['flushed_rss'] / MiB:.1f} MiB and "
                     f"{t['flushed_threads']} threads once each was "
                     "flushed to L1 (`Flush`, one after the other; "
                     f"{t['flushed_bytes_each'] / 1024:.0f} KiB each); "
                     if 'flushed_rss' in t else "") +
                  f"{t['dropped_rss'] / MiB:.1f} MiB and "
                  f"{t['dropped_threads']} threads once all were dropped. "
                  f"`ListCollections` of all {t['listed']:,} in pages of "
                  f"1,000: {t['list_s']:.2f} s.", "", cmd, ""]
    return lines


def body_drift(drift_rows, img_dir):
    cols = ["system", "step", "rows", "recall10", "p50_ms", "p99_ms", "buckets",
            "max_bucket", "probed", "scanned"]
    md = write_table("drift", drift_rows, cols,
                     {"recall10": 4, "p50_ms": 3, "p99_ms": 3, "probed": 0,
                      "scanned": 0})
    plot_drift(drift_rows, os.path.join(OUT, "drift.png"))
    shutil.copy(os.path.join(OUT, "drift.png"), os.path.join(img_dir, "drift.png"))
    sets = sorted({r.get("set", "all rows, 10 steps") for r in drift_rows})
    return [f"The SIFT set ({'; '.join(sets)}) inserted in source order; "
            "after each step recall@10 and latency on queries of held-out "
            "images seen so far, each system probing "
            f"{DRIFT_SHARE:.0%} of the buckets (lists) it has at that step "
            "(`probed`); `scanned` is the vectors a query compared. Without "
            "maintenance buckets only grow, so the same share costs more "
            "scans; FAISS keeps the lists it trained on the first step.", "", md, "",
            "![drift](benchmarks/drift.png)", ""]


def report(results, measured, argv, timings=()):
    """measured: {scenario: rows} of the scenarios this run measured;
    timings: wall seconds and load average of each."""
    os.makedirs(OUT, exist_ok=True)
    img_dir = os.path.join(DOCS, "benchmarks")
    os.makedirs(img_dir, exist_ok=True)
    doc = os.path.join(DOCS, "benchmarks.md")
    old = previous_sections(doc)
    m = machine()
    cmd = " ".join(argv)
    date = f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}"
    mach = (f"{m.get('cpu', '?')}, {m.get('cores')} cores, "
            f"{m.get('memory_gib', '?')} GiB, SIMD {m.get('simd', '?')}, "
            f"Linux {m.get('kernel')}")
    lines = ["# Benchmarks", "",
             "Generated by `tests/bench/run.py`; do not edit by hand. Each "
             "section says when and by which command it was measured: a run "
             "of some scenarios (`--only`) keeps the other sections of the "
             "previous report as they were.", "",
             f"- command: `{cmd}`",
             f"- date: {date}",
             f"- machine: {mach}",
             f"- FAISS (python3-faiss) compile options: {m.get('faiss', 'n/a')}",
             "- hnswlib: libhnswlib-dev headers, g++ -O3 -march=native, M=16, "
             "efConstruction=200",
             "- Drift: static `drift` is the engine in-process "
             "(tests/bench/drift_bench.c: L1 index only, bulk k-means build, "
             "full-precision scan); static `drift-node` is the server through "
             "gRPC (tests/bench/node_static.py); ingest and churn run the "
             "shard engine in-process (tests/bench/shard_bench.c: WAL, L0, "
             "L1, Janitor)",
             "- wall time of this run per scenario (1-minute load average "
             "at its start and end; 2 cores shared with other work): " +
             "; ".join(f"{t['scenario']} {t['seconds']:.0f} s"
                       + (f" (load {t['load1_start']:.1f} -> "
                          f"{t['load1_end']:.1f})"
                          if t["load1_start"] is not None else "")
                       + (f", {t['cpu_s']:.0f} s of CPU time (user + system, "
                          "this process and the systems it ran)"
                          if "cpu_s" in t else "")
                       for t in timings), ""]
    bodies = {
        "static": lambda rows: body_static(results, rows, img_dir),
        "ingest": body_ingest,
        "kernels": body_kernels,
        "codecs": body_codecs,
        "disk": body_disk,
        "grpc": body_grpc,
        "node": body_node,
        "churn": lambda res: churn.body(res, write_table),
        "drift": lambda rows: body_drift(rows, img_dir),
        "memory": body_memory,
    }
    for key, _ in SECTIONS:
        if measured.get(key):
            lines += section(key, bodies[key](measured[key]), cmd, date, mach)
        elif key in old:
            lines += old.pop(key) + [""]
            log(f"{key}: not measured by this run, kept from {doc}")
    for key in sorted(k for k in old if k.startswith("unknown-")):
        lines += old[key] + [""]
    path = os.path.join(OUT, "results.json")
    merged = json.load(open(path)) if os.path.exists(path) else {}
    merged.update(results)
    with open(path, "w") as f:
        json.dump(merged, f, indent=1)
    open(doc, "w").write("\n".join(lines))
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="Fashion-MNIST (the drift scenario: a fifth of the "
                    "SIFT set), 1,000 queries, fewer rows and sweep points, "
                    "shorter time points: minutes")
    ap.add_argument("--only",
                    default="static,ingest,churn,drift,kernels,codecs,disk,"
                    "grpc,node,memory")
    ap.add_argument("--dataset", default=None)
    a = ap.parse_args()
    scen = set(a.only.split(","))
    unknown = scen - {key for key, _ in SECTIONS}
    if unknown:
        ap.error(f"unknown scenario {', '.join(sorted(unknown))}")
    names = (a.dataset or ("fmnist" if a.quick else "fmnist,sift")).split(",")
    # Quick: the static sweep and drift-node on the first 10,000 rows.
    small = ["fmnist_10k"] if a.quick and not a.dataset else names
    results = {}
    measured = {}
    timings = []
    t_run = time.time()

    failed = []

    def timed(key, fn):
        # A scenario that fails is reported and the run goes on: the
        # sections measured are still written, the failed one keeps what
        # docs/benchmarks.md had, and the exit status says it failed.
        t0, load0 = time.time(), os.getloadavg()[0]
        try:
            measured[key] = fn()
        except Exception:  # noqa: BLE001 - reported, and the exit status
            import traceback
            log(f"{key}: FAILED\n{traceback.format_exc()}")
            failed.append(key)
            results.pop(key, None)
            return
        timings.append({"scenario": key, "seconds": time.time() - t0,
                        "load1_start": load0,
                        "load1_end": os.getloadavg()[0]})
        log(f"{key}: {timings[-1]['seconds']:.0f} s")

    if "static" in scen:
        timed("static", lambda: scenario_static(small, results, a.quick))
    if "ingest" in scen:
        timed("ingest", lambda: scenario_ingest(names, results, a.quick))
    if "churn" in scen:
        timed("churn", lambda: scenario_churn(names, results, a.quick))
    if "kernels" in scen:
        timed("kernels", lambda: scenario_kernels(results, a.quick))
    if "codecs" in scen:
        timed("codecs", lambda: scenario_codecs(names, results, a.quick))
    if "disk" in scen:
        timed("disk", lambda: scenario_disk(results, a.quick))
    if "grpc" in scen:
        import grpc_bench
        timed("grpc", lambda: grpc_bench.scenario_grpc(5 if a.quick else 15,
                                                       log))
        if "grpc" in measured:
            results["grpc"] = measured["grpc"]
    if "node" in scen:
        import node_bench
        timed("node", lambda: node_bench.scenario_node(
            small, 5 if a.quick else 10, log))
        if "node" in measured:
            results["node"] = measured["node"]
    if "drift" in scen:
        timed("drift", lambda: scenario_drift(results, a.quick))
    if "memory" in scen:
        timed("memory", lambda: scenario_memory(names, results, a.quick))
    import resource
    cpu = sum(getattr(resource.getrusage(who), f) for f in
              ("ru_utime", "ru_stime") for who in
              (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))
    timings.append({"scenario": "total", "seconds": time.time() - t_run,
                    "load1_start": None, "load1_end": os.getloadavg()[0],
                    "cpu_s": cpu})
    report(results, measured, ["tests/bench/run.py"] + sys.argv[1:], timings)
    for t in timings:
        log(f"time: {t['scenario']} {t['seconds']:.0f} s")
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        sys.exit(1)


if __name__ == "__main__":
    main()
