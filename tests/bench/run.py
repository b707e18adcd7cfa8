#!/usr/bin/python3
"""The benchmark harness: Drift and its peers on real data, in one run.

    tests/bench/run.py [--quick] [--only static,drift] [--dataset fmnist,sift]

Every system runs as its own process speaking one protocol (README.md):
JSON lines on stdout. The harness measures each process's peak resident
memory (wait4's ru_maxrss), subtracts a run that only loads the data, and
reports bytes per vector. It writes tables (markdown and TSV) and plots
under build/bench/ and regenerates docs/benchmarks.md with the machine,
the command and the results. Nothing in the report is typed by hand.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import datasets  # noqa: E402

OUT = os.path.join(ROOT, os.environ.get("DRIFT_BENCH_OUT", "build/bench"))
DOCS = os.path.join(ROOT, "docs")
TARGETS = (0.90, 0.95, 0.99)
THREADS = os.cpu_count() or 1


def log(msg):
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


# ---- Running systems --------------------------------------------------------

def run_system(cmd, timeout=7200):
    """Runs cmd; returns (records, peak RSS bytes, seconds)."""
    log("$ " + " ".join(cmd))
    t0 = time.time()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    records = []
    for line in p.stdout:
        line = line.strip()
        if line.startswith("{"):
            rec = json.loads(line)
            records.append(rec)
            log("  " + line)
    _, status, ru = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[0]} exited {p.returncode}")
    return records, ru.ru_maxrss * 1024, time.time() - t0


def hnswlib_binary():
    exe = os.path.join(OUT, "hnswlib_bench")
    src = os.path.join(HERE, "peers", "hnswlib_bench.cpp")
    if not os.path.exists(exe) or os.path.getmtime(exe) < os.path.getmtime(src):
        os.makedirs(OUT, exist_ok=True)
        subprocess.run(["g++", "-O3", "-march=native", "-std=c++17", "-pthread",
                        "-o", exe, src], check=True)
    return exe


def drift_binary():
    """drift-bench, copied out of the build tree at the start of the run so
    that a rebuild during a long run does not change what is measured."""
    exe = os.path.join(OUT, "drift-bench")
    if not getattr(drift_binary, "copied", False):
        os.makedirs(OUT, exist_ok=True)
        shutil.copy2(os.path.join(ROOT, "build", "tests", "bench", "drift-bench"), exe)
        drift_binary.copied = True
    return exe


def static_systems(folder):
    base, query = f"{folder}/base.fvecs", f"{folder}/query.fvecs"
    gt = f"{folder}/gt_l2.ivecs"
    drift = drift_binary()
    faiss = [sys.executable, os.path.join(HERE, "peers", "faiss_bench.py"), "static"]
    return {
        "drift": [drift, "static", base, query, gt, "--threads", str(THREADS)],
        "hnswlib": [hnswlib_binary(), base, query, gt, "--threads", str(THREADS)],
        "faiss-ivfflat": faiss + [base, query, gt, "--index", "ivfflat",
                                  "--threads", str(THREADS)],
        "faiss-ivfsq8": faiss + [base, query, gt, "--index", "ivfsq8",
                                 "--threads", str(THREADS)],
    }


def qps_at(points, target):
    """Best QPS among measured points with recall@10 >= target (no
    interpolation: a target no point reaches is n/a)."""
    ok = [p["qps"] for p in points if p["recall10"] >= target]
    return max(ok) if ok else None


def scenario_static(names, results):
    rows = []
    for ds in names:
        folder = getattr(datasets, ds)()
        meta = json.load(open(os.path.join(folder, "meta.json")))
        for system, cmd in static_systems(folder).items():
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
                rows.append({
                    "dataset": ds, "system": system, "threads": t,
                    **{f"qps@{x:.2f}": qps_at(pts, x) for x in TARGETS},
                    "build_s": build["build_s"],
                    "ingest_vps": meta["rows"] / build["build_s"],
                    "bytes_per_vector": (peak - base_rss) / meta["rows"],
                })
    return rows


def scenario_drift(results, budget=8):
    folder = datasets.sift()
    steps = datasets.drift_steps(folder)
    base, query = f"{folder}/base.fvecs", f"{folder}/query.fvecs"
    drift = drift_binary()
    faiss = [sys.executable, os.path.join(HERE, "peers", "faiss_bench.py"), "drift",
             base, steps, query, "--budget", str(budget)]
    cmds = {
        "drift-maint": [drift, "drift", base, steps, query, "--budget", str(budget)],
        "drift-nomaint": [drift, "drift", base, steps, query, "--budget", str(budget),
                          "--no-maintenance"],
        "faiss-ivfsq8-static": faiss,
    }
    rows = []
    for name, cmd in cmds.items():
        recs, _, _ = run_system(cmd)
        rows += [r for r in recs if r["event"] == "drift"]
    results["drift"] = rows
    return rows


def scenario_kernels(results):
    """SQ8 ADC scan GB/s of codes per core per SIMD level, next to the
    core's memory read bandwidth measured in the same run."""
    exe = os.path.join(ROOT, "build", "tests", "bench", "scan-bench")
    rows = []
    for dim in (128, 784):
        recs, _, _ = run_system([exe, str(dim), "512"])
        bw = next(r["gb_per_s"] for r in recs if r["event"] == "membw")
        for r in recs:
            if r["event"] == "scan":
                rows.append({"dim": dim, "level": r["level"],
                             "scan_gb_per_s": r["gb_per_s"],
                             "vectors_per_s": r["vectors_per_s"],
                             "memory_read_gb_per_s": bw})
    results["kernels"] = rows
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
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for res in results["static"]:
        if res["dataset"] != ds:
            continue
        pts = sorted((s for s in res["searches"] if s["threads"] == 1),
                     key=lambda s: s["recall10"])
        style = "o-" if res["system"] != "drift" else "s-"
        if res["system"] == "drift":
            for param in ("nprobe", "recall_target"):
                sub = [p for p in pts if p["param"] == param]
                ax.plot([p["recall10"] for p in sub], [p["qps"] for p in sub], style,
                        label=f"drift ({param})")
        else:
            ax.plot([p["recall10"] for p in pts], [p["qps"] for p in pts], style,
                    label=res["system"])
    ax.set_yscale("log")
    ax.set_xlabel("recall@10")
    ax.set_ylabel("queries per second (1 thread)")
    ax.set_title(f"{ds}: recall vs QPS")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_drift(rows, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for name in sorted({r["system"] for r in rows}):
        sub = sorted((r for r in rows if r["system"] == name), key=lambda r: r["step"])
        x = [r["rows"] for r in sub]
        axes[0].plot(x, [r["recall10"] for r in sub], "o-", label=name)
        axes[1].plot(x, [r["p99_ms"] for r in sub], "o-", label=name)
    axes[0].set_ylabel("recall@10 at a fixed probe budget")
    axes[1].set_ylabel("p99 latency (ms)")
    axes[1].set_yscale("log")
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


def report(results, static_rows, drift_rows, kernel_rows, argv):
    os.makedirs(OUT, exist_ok=True)
    img_dir = os.path.join(DOCS, "benchmarks")
    os.makedirs(img_dir, exist_ok=True)
    m = machine()
    lines = ["# Benchmarks", "",
             "Generated by `tests/bench/run.py`; do not edit by hand.", "",
             f"- command: `{' '.join(argv)}`",
             f"- date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
             f"- machine: {m.get('cpu', '?')}, {m.get('cores')} cores, "
             f"{m.get('memory_gib', '?')} GiB, SIMD {m.get('simd', '?')}, "
             f"Linux {m.get('kernel')}",
             f"- FAISS (python3-faiss) compile options: {m.get('faiss', 'n/a')}",
             "- hnswlib: libhnswlib-dev headers, g++ -O3 -march=native, M=16, "
             "efConstruction=200",
             "- Drift: the engine in-process (tests/bench/drift_bench.c): L1 "
             "index only (bulk k-means build, full-precision scan; SQ8 ADC "
             "scan, L0 and the server are not in these numbers yet)", ""]
    if static_rows:
        cols = ["dataset", "system", "threads"] + [f"qps@{x:.2f}" for x in TARGETS] + \
               ["build_s", "ingest_vps", "bytes_per_vector"]
        md, tsv = table(static_rows, cols, {"build_s": 1})
        open(os.path.join(OUT, "static.md"), "w").write(md + "\n")
        open(os.path.join(OUT, "static.tsv"), "w").write(tsv)
        lines += ["## Static: QPS at recall@10, build rate, memory", "",
                  "QPS is the best measured point reaching the recall (n/a: no "
                  "point reached it). Memory is peak resident bytes of the "
                  "process minus a run that only loads the data, per vector.", "",
                  md, ""]
        for ds in sorted({r["dataset"] for r in static_rows}):
            png = f"recall_qps_{ds}.png"
            plot_static(results, ds, os.path.join(OUT, png))
            shutil.copy(os.path.join(OUT, png), os.path.join(img_dir, png))
            lines += [f"![{ds}](benchmarks/{png})", ""]
    if kernel_rows:
        cols = ["dim", "level", "scan_gb_per_s", "vectors_per_s",
                "memory_read_gb_per_s"]
        md, tsv = table(kernel_rows, cols, {"scan_gb_per_s": 2,
                                            "memory_read_gb_per_s": 2})
        open(os.path.join(OUT, "kernels.md"), "w").write(md + "\n")
        open(os.path.join(OUT, "kernels.tsv"), "w").write(tsv)
        lines += ["## SQ8 ADC scan, one core", "",
                  "GB/s of codes scanned (512 MiB of codes, best of three), "
                  "next to the same core's memory read bandwidth.", "", md, ""]
    if drift_rows:
        cols = ["system", "step", "rows", "recall10", "p50_ms", "p99_ms", "buckets",
                "max_bucket"]
        md, tsv = table(drift_rows, cols, {"recall10": 4, "p50_ms": 3, "p99_ms": 3})
        open(os.path.join(OUT, "drift.md"), "w").write(md + "\n")
        open(os.path.join(OUT, "drift.tsv"), "w").write(tsv)
        plot_drift(drift_rows, os.path.join(OUT, "drift.png"))
        shutil.copy(os.path.join(OUT, "drift.png"), os.path.join(img_dir, "drift.png"))
        lines += ["## Drift: SIFT inserted in source order, fixed probe budget", "",
                  md, "", "![drift](benchmarks/drift.png)", ""]
    with open(os.path.join(OUT, "results.json"), "w") as f:
        json.dump(results, f, indent=1)
    open(os.path.join(DOCS, "benchmarks.md"), "w").write("\n".join(lines))
    print("\n".join(lines))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true",
                    help="Fashion-MNIST only, static scenario: minutes")
    ap.add_argument("--only", default="static,drift,kernels")
    ap.add_argument("--dataset", default=None)
    a = ap.parse_args()
    scen = set(a.only.split(","))
    names = (a.dataset or ("fmnist" if a.quick else "fmnist,sift")).split(",")
    results = {}
    static_rows = scenario_static(names, results) if "static" in scen else []
    drift_rows = scenario_drift(results) if "drift" in scen and not a.quick else []
    kernel_rows = scenario_kernels(results) if "kernels" in scen else []
    report(results, static_rows, drift_rows, kernel_rows,
           ["tests/bench/run.py"] + sys.argv[1:])


if __name__ == "__main__":
    main()
