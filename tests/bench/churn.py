"""The churn scenario: a steady mix of upserts (new ids and updates of live
ones), deletes and searches for a bounded time on a loaded index, then a
large share of the live set deleted and the engine left to settle.

Every system replays the same trace (written here, format in
tests/bench/shard_bench.c above cmd_churn): the load is ids 0..L-1 with
base rows 0..L-1; each round upserts H new ids and H live ones (the vector
of an upsert is the next base row, cyclically) and deletes H other live
ids, so the live count stays L. One writer thread replays rounds until the
time bound while the other threads search; the systems then write the
top-10 ids of the first queries, delete every live id with id % 100 below
the trace's percentage, settle (Drift: flush, Janitor until its files stop
changing, bounded) and write the top-10 ids again. The harness rebuilds the
live set of each state from the trace and the rounds a system completed
and computes recall@10 against the exact top-10 of that live set (brute
force with numpy; a hit is a live id no farther than the true 10th, so
duplicate rows do not count against a system).
"""
import json
import os
import shutil
import sys
import tempfile

import numpy as np

import datasets
import vecio

MAGIC = 0x4E52554843544644  # "DFTCHURN"
QUERIES = 1000
HNSW_EF = 64        # fixed search knobs of the peers during churn
FAISS_NPROBE = 16


def params(quick):
    """(seconds, settle seconds, rounds in the trace, H, delete %)."""
    return (15, 10, 2000, 250, 70) if quick else (60, 30, 8000, 250, 70)


def load_rows(meta, quick):
    """Half the base is loaded, the other half feeds the upserts first."""
    if quick:
        return min(meta["rows"] // 2, 5000)
    return meta["rows"] // 2


def make_trace(path, load, pool, rounds, h, pct, seed=7):
    if os.path.exists(path):
        return path
    rng = np.random.default_rng(seed)
    live = np.arange(load, dtype=np.int64)
    next_id, next_row = load, load % pool
    out = np.empty((rounds, 5 * h), dtype="<i8")
    for r in range(rounds):
        pos = rng.choice(len(live), 2 * h, replace=False)
        new = np.arange(next_id, next_id + h, dtype=np.int64)
        next_id += h
        out[r, :h] = new
        out[r, h:2 * h] = live[pos[:h]]
        out[r, 2 * h:4 * h] = (next_row + np.arange(2 * h)) % pool
        next_row = (next_row + 2 * h) % pool
        out[r, 4 * h:] = live[pos[h:]]
        live[pos[h:]] = new
    head = np.array([MAGIC, 1, load, rounds, 2 * h, h, pool, pct], dtype="<i8")
    with open(path + ".tmp", "wb") as f:
        f.write(head.tobytes())
        f.write(out.tobytes())
    os.replace(path + ".tmp", path)
    return path


def read_trace(path):
    head = np.fromfile(path, dtype="<i8", count=8)
    _, _, load, rounds, b, d, pool, pct = (int(x) for x in head)
    data = np.fromfile(path, dtype="<i8", offset=64).reshape(rounds, 2 * b + d)
    return load, b, d, pool, pct, data


def live_after(path, rounds, mass_delete):
    """id -> base row (-1: not live) after `rounds` rounds of the trace,
    and after the final delete when mass_delete."""
    load, b, d, _, pct, data = read_trace(path)
    row_of = np.full(load + len(data) * (b // 2), -1, dtype=np.int64)
    row_of[:load] = np.arange(load)
    for r in range(rounds):
        row_of[data[r, :b]] = data[r, b:2 * b]
        row_of[data[r, 2 * b:]] = -1
    if mass_delete:
        ids = np.arange(len(row_of))
        row_of[(row_of >= 0) & (ids % 100 < pct)] = -1
    return row_of


def recall10(base, queries, row_of, got):
    """got: Q x 10 ids (-1: none). A hit is a distinct live id whose vector
    is no farther from the query than the exact 10th nearest live one."""
    ids = np.nonzero(row_of >= 0)[0]
    vecs = base[row_of[ids]]
    q = queries[:len(got)]
    top = datasets.ground_truth(vecs, q, k=10)
    hits = 0
    for i in range(len(q)):
        qq = q[i].astype(np.float64)
        d10 = ((vecs[top[i, -1]].astype(np.float64) - qq) ** 2).sum()
        seen = set()
        for g in got[i]:
            if g < 0 or g >= len(row_of) or row_of[g] < 0 or g in seen:
                continue
            seen.add(g)
            d = ((base[row_of[g]].astype(np.float64) - qq) ** 2).sum()
            if d <= d10 * (1 + 1e-6) + 1e-9:
                hits += 1
    return hits / (10.0 * len(q))


def scenario_churn(names, quick, tools, threads, log):
    """tools: {"shard": exe, "hnswlib": exe, "faiss": script}. Returns
    {"churn": rows, "space": rows}."""
    seconds, settle, rounds, h, pct = params(quick)
    out = {"churn": [], "space": []}
    for ds in names:
        folder = getattr(datasets, ds)()
        meta = json.load(open(os.path.join(folder, "meta.json")))
        load = load_rows(meta, quick)
        base_path = f"{folder}/base.fvecs"
        query_path = f"{folder}/query.fvecs"
        cdir = os.path.join(datasets.cache_dir(), "churn")
        os.makedirs(cdir, exist_ok=True)
        trace = make_trace(os.path.join(
            cdir, f"{ds}-L{load}-R{rounds}-H{h}-P{pct}.trace"),
            load, meta["rows"], rounds, h, pct)
        work = tempfile.mkdtemp(prefix=f"churn-{ds}-", dir=cdir)
        common = ["--seconds", str(seconds), "--threads", str(threads),
                  "--queries", str(QUERIES)]
        systems = {
            "drift": [tools["shard"], "churn", base_path, query_path, trace,
                      "--dir", os.path.join(work, "shard"),
                      "--settle-seconds", str(settle)] + common,
            "hnswlib": [tools["hnswlib"], "churn", base_path, query_path,
                        trace, "--ef", str(HNSW_EF)] + common,
            "faiss-ivfflat": [sys.executable, tools["faiss"], "churn",
                              base_path, query_path, trace,
                              "--nprobe", str(FAISS_NPROBE)] + common +
                             (["--train-per-list", "32"] if quick else []),
        }
        try:
            runs = []
            for system, cmd in systems.items():
                prefix = os.path.join(work, system)
                load1 = os.getloadavg()[0]
                recs, peak, _ = tools["run"](cmd + ["--results", prefix])
                runs.append((system, prefix, recs, peak,
                             max(load1, os.getloadavg()[0])))
            # Loaded only after the systems ran, to keep the harness
            # small (rss-exec keeps its memory out of their peaks anyway).
            base = vecio.read_fvecs(base_path)
            queries = vecio.read_fvecs(query_path)
            for system, prefix, recs, peak, load1 in runs:
                c = next(r for r in recs if r["event"] == "churn")
                row = {**c, "dataset": ds, "system": system,
                       "peak_rss_mib": peak / 2**20, "load1": load1}
                for state, mass in (("end", False), ("settled", True)):
                    got = np.fromfile(f"{prefix}.{state}.i64", dtype="<i8")
                    got = got.reshape(-1, 10)
                    row_of = live_after(trace, c["rounds"], mass)
                    live = int((row_of >= 0).sum())
                    want = c["live_end" if state == "end" else "live_settled"]
                    if live != want:
                        raise RuntimeError(f"{system}: {want} live at {state}, "
                                           f"the trace says {live}")
                    row[f"recall10_{state}"] = recall10(base, queries, row_of,
                                                        got)
                    log(f"churn {ds} {system}: recall@10 {state} "
                        f"{row[f'recall10_{state}']:.4f} ({live} live)")
                out["churn"].append(row)
                for r in recs:
                    if r["event"] == "space":
                        out["space"].append({**r, "dataset": ds,
                                             "system": system})
            del base, queries
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return out


def mib(v):
    return None if v is None else v / 2**20


def body(res, write_table):
    """The report section: (markdown lines)."""
    for r in res["churn"]:
        r["deleted_pct"] = 100.0 * r["mass_deleted"] / max(1, r["live_end"])
    cols = ["dataset", "system", "load_rows", "seconds", "rounds",
            "upserts_per_s", "deletes_per_s", "searches_per_s", "p50_ms",
            "p99_ms", "recall10_end", "mass_deleted", "recall10_settled",
            "settle_s", "peak_rss_mib", "load1"]
    md = write_table("churn", res["churn"], cols,
                     {"seconds": 1, "p50_ms": 2, "p99_ms": 2,
                      "recall10_end": 4, "recall10_settled": 4,
                      "settle_s": 1, "peak_rss_mib": 0, "load1": 1})
    for r in res["space"]:
        r["rss_mib"] = mib(r.get("rss_bytes"))
        r["rss_trimmed_mib"] = mib(r.get("rss_trimmed_bytes"))
        for k in ("disk", "wal", "seg"):
            r[f"{k}_mib"] = mib(r.get(f"{k}_bytes"))
        if "seg_file_bytes" in r:
            r["segment_files_mib"] = ", ".join(
                f"{b / 2**20:.1f}" for b in sorted(r["seg_file_bytes"]))
    scols = ["dataset", "system", "phase", "live", "rss_mib",
             "rss_trimmed_mib", "disk_mib", "wal_mib", "seg_mib", "segments",
             "segment_files_mib",
             "l1_vectors", "l1_buckets", "merges"]
    smd = write_table("churn_space", res["space"], scols,
                      {"rss_mib": 1, "rss_trimmed_mib": 1, "disk_mib": 1,
                       "wal_mib": 1, "seg_mib": 1})
    verdict = []
    for ds in sorted({r["dataset"] for r in res["space"]}):
        ph = {r["phase"]: r for r in res["space"]
              if r["dataset"] == ds and r["system"] == "drift"}
        if "churned" in ph and "settled" in ph:
            a, b = ph["churned"], ph["settled"]
            live = b["live"] / max(1, a["live"])
            disk = b["disk_bytes"] / max(1, a["disk_bytes"])
            mem = ((b["rss_trimmed_bytes"] - ph["data"]["rss_trimmed_bytes"]) /
                   max(1, a["rss_trimmed_bytes"] -
                       ph["data"]["rss_trimmed_bytes"]))
            verdict.append(
                f"- {ds}: after the delete the live set is {100 * live:.0f}% "
                f"of what it was after the churn; Drift's disk is "
                f"{100 * disk:.0f}% ({mib(a['disk_bytes']):,.1f} -> "
                f"{mib(b['disk_bytes']):,.1f} MiB) and its resident memory "
                f"above the loaded data {100 * mem:.0f}% after settling.")
    return [
        "`tests/bench/churn.py` writes one trace per data set that every "
        "system replays: half the base set loaded (ids = row numbers; "
        "quick: at most 5,000 rows), then rounds of 250 upserts of new "
        "ids + 250 upserts of live ids (the next base rows, cyclically, as "
        "their vectors) + 250 deletes of other live ids, so the live count "
        "stays constant. One writer thread replays rounds (one upsert call "
        "and one delete call per round) for the time bound while the other "
        "threads search in a loop (k=10; Drift: default recall target; "
        f"hnswlib ef={HNSW_EF}; FAISS IVF-Flat nprobe={FAISS_NPROBE}, "
        "nlist 4 sqrt(L), one lock around the index as FAISS needs for "
        "writes). p50/p99: search latency during the churn. recall10_end: "
        f"the first {QUERIES} queries after the churn against the exact "
        "top-10 of the live set of that moment (brute force in the "
        "harness; a hit is a live id no farther than the true 10th). Then "
        "every live id with id % 100 < 70 is deleted (mass_deleted); "
        "Drift is flushed and its Janitor given up to settle_s seconds "
        "(until its files and counters stop changing for 2 s); "
        "recall10_settled is measured on what is left. hnswlib is Debian's "
        "0.6.2, which has no `replace_deleted`: deleted slots stay "
        "allocated (markDelete) and new ids take new slots; updates of "
        "live ids go through addPoint (updatePoint). FAISS: remove_ids "
        "(hashtable direct map) + add_with_ids (quick mode trains it on 32 "
        "points per list). load1: the machine's 1-minute load average, "
        "the larger of the values before and after the system ran (2 "
        "cores; other work on the machine takes CPU from the run).", "",
        md, "",
        "Space after each phase: data (the base file loaded, no index), "
        "loaded, churned (after the churn and a flush), deleted (right "
        "after the mass delete), settled, closed (Drift: the files after "
        "drift_shard_close). rss: resident memory of the process as is; "
        "rss_trimmed: after `malloc_trim(0)` returned freed heap to the "
        "system (both include the loaded base file, see the data row). "
        "disk: apparent bytes of every file of the shard, WAL and segments "
        "apart, and the size of each segment file (segments: how many the "
        "manifest names); the peers keep nothing on disk.", "", smd, "", *verdict, ""]
