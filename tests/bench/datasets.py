"""The benchmark data sets, made from Debian packages and cached outside the
repository (../shared/data/README.md).

fmnist: Fashion-MNIST (dataset-fashion-mnist), 60,000 x 784 base rows,
        10,000 queries (the test images).
fmnist_10k: its first 10,000 base rows and 1,000 queries (quick runs).
sift:   SIFT descriptors (python3-opencv) of the photographs and wallpapers of
        several Debian packages, about a million x 128 base rows in image
        order (source kept per row range, for the drift scenario), 10,000
        query rows from held-out images (every 8th image).

Each set is a folder: base.fvecs, query.fvecs, gt_l2.ivecs and gt_ip.ivecs
(exact top-100, computed here), meta.json; sift adds sources.tsv (row
ranges and their package/image) and query_sources.txt (the image order
index of each query row, for "queries near what has been seen").
"""
import gzip
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time

import numpy as np

import vecio

SIFT_PACKAGES = [
    "gnome-backgrounds",
    "mate-backgrounds",
    "plasma-workspace-wallpapers",
    "ukui-wallpapers",
    "lomiri-wallpapers",
    "lomiri-wallpapers-16.04",
    "lomiri-wallpapers-20.04",
    "sway-backgrounds",
    "stellarium-data",
]
SIFT_PER_IMAGE = 40000
SIFT_QUERY_EVERY = 8
SIFT_QUERIES = 10000
SIFT_MAX_ROWS = 1_000_000
MAX_SIDE = 4096  # larger images are scaled down: SIFT on 8K pixels is slow


def log(msg):
    print(f"[datasets] {msg}", file=sys.stderr, flush=True)


def cache_dir():
    return os.environ.get("DRIFT_BENCH_DATA", "/var/tmp/drift-bench")


# ---- Ground truth ----------------------------------------------------------

def ground_truth(base, queries, k=100, metric="l2", block=512, sub=32):
    """Exact top-k by blockwise brute force: float32 BLAS finds k + 32
    candidates per query, which are then re-ranked in float64 (ties broken
    by id) so that near-equal distances come out in the right order."""
    n = len(base)
    k = min(k, n)
    extra = min(n, k + 32)
    out = np.empty((len(queries), k), dtype=np.int32)
    bnorm = (base.astype(np.float64) ** 2).sum(1).astype(np.float32)
    for s in range(0, len(queries), block):
        q = queries[s:s + block]
        dots = q @ base.T
        score = (bnorm[None, :] - 2 * dots) if metric == "l2" else -dots
        cand = np.argpartition(score, extra - 1, axis=1)[:, :extra]
        for t in range(0, len(q), sub):
            c = cand[t:t + sub]
            qq = q[t:t + sub].astype(np.float64)
            x = base[c].astype(np.float64)
            if metric == "l2":
                d = ((x - qq[:, None, :]) ** 2).sum(-1)
            else:
                d = -np.einsum("qcd,qd->qc", x, qq)
            order = np.lexsort((c, d), axis=-1)[:, :k]
            out[s + t:s + t + len(c)] = np.take_along_axis(c, order, axis=1)
    return out


def finish(folder, base, queries, meta):
    vecio.write_fvecs(os.path.join(folder, "base.fvecs"), base)
    vecio.write_fvecs(os.path.join(folder, "query.fvecs"), queries)
    t0 = time.time()
    for metric in ("l2", "ip"):
        gt = ground_truth(base, queries, metric=metric)
        vecio.write_ivecs(os.path.join(folder, f"gt_{metric}.ivecs"), gt)
    meta["gt_seconds"] = round(time.time() - t0, 1)
    meta.update(rows=len(base), dim=int(base.shape[1]), queries=len(queries))
    with open(os.path.join(folder, "meta.json"), "w") as f:
        json.dump(meta, f, indent=1)


# ---- Fashion-MNIST ---------------------------------------------------------

def _idx_images(path):
    with gzip.open(path, "rb") as f:
        raw = f.read()
    n, r, c = (int.from_bytes(raw[i:i + 4], "big") for i in (4, 8, 12))
    return np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, r * c).astype(np.float32)


def fmnist():
    folder = os.path.join(cache_dir(), "fmnist")
    if os.path.exists(os.path.join(folder, "meta.json")):
        return folder
    os.makedirs(folder, exist_ok=True)
    src = "/usr/share/datasets/fashion-mnist"
    base = _idx_images(os.path.join(src, "train-images-idx3-ubyte.gz"))
    queries = _idx_images(os.path.join(src, "t10k-images-idx3-ubyte.gz"))
    log(f"fmnist: {len(base)} x {base.shape[1]}, ground truth ...")
    finish(folder, base, queries, {"name": "fmnist", "source": "dataset-fashion-mnist"})
    return folder


def fmnist_10k():
    """The quick runs' set: the first 10,000 Fashion-MNIST base rows and
    the first 1,000 queries, with their own exact ground truth."""
    folder = os.path.join(cache_dir(), "fmnist_10k")
    if os.path.exists(os.path.join(folder, "meta.json")):
        return folder
    src = fmnist()
    os.makedirs(folder, exist_ok=True)
    base = vecio.read_fvecs(os.path.join(src, "base.fvecs"))[:10000]
    queries = vecio.read_fvecs(os.path.join(src, "query.fvecs"))[:1000]
    log(f"fmnist_10k: {len(base)} x {base.shape[1]}, ground truth ...")
    finish(folder, np.ascontiguousarray(base), np.ascontiguousarray(queries),
           {"name": "fmnist_10k", "source": "dataset-fashion-mnist, the "
            "first 10,000 train and 1,000 test images"})
    return folder


# ---- SIFT of packaged images ----------------------------------------------

def list_images():
    images = []
    for pkg in SIFT_PACKAGES:
        try:
            files = subprocess.run(["dpkg", "-L", pkg], capture_output=True,
                                   text=True, check=True).stdout.split("\n")
        except subprocess.CalledProcessError:
            log(f"sift: package {pkg} is not installed; skipped")
            continue
        for f in sorted(files):
            if f.lower().endswith((".jpg", ".jpeg", ".png", ".webp")) and \
                    os.path.isfile(f) and not os.path.islink(f) and \
                    os.path.getsize(f) >= 100_000:
                images.append((pkg, f))
    # The same picture ships in several packages or sizes: keep one copy.
    seen, unique = set(), []
    for pkg, f in images:
        h = hashlib.sha1(open(f, "rb").read()).hexdigest()
        if h not in seen:
            seen.add(h)
            unique.append((pkg, f))
    return unique


def _extract(path):
    import cv2
    img = cv2.imread(path, cv2.IMREAD_GRAYSCALE)
    if img is None:
        return np.zeros((0, 128), dtype=np.float32)
    h, w = img.shape
    if max(h, w) > MAX_SIDE:
        s = MAX_SIDE / max(h, w)
        img = cv2.resize(img, (int(w * s), int(h * s)), interpolation=cv2.INTER_AREA)
    sift = cv2.SIFT_create(nfeatures=SIFT_PER_IMAGE)
    kp, desc = sift.detectAndCompute(img, None)
    if desc is None:
        return np.zeros((0, 128), dtype=np.float32)
    order = np.argsort([-k.response for k in kp], kind="stable")[:SIFT_PER_IMAGE]
    return desc[order].astype(np.float32)


def shuffle_queries(folder):
    """Puts the queries of a cache written in image order (before
    query_order "random" was recorded in meta.json) in a seeded random
    order: query.fvecs, both ground truths and query_sources.txt are
    permuted together, the drift steps' query indices are mapped to the new
    order (their selection and ground truth stay valid), and the quick and
    ingest subsets, cut from the old order, are removed."""
    import shutil
    meta_path = os.path.join(folder, "meta.json")
    meta = json.load(open(meta_path))
    if meta.get("query_order") == "random":
        return
    log(f"{folder}: queries in image order; shuffling them")
    queries = vecio.read_fvecs(os.path.join(folder, "query.fvecs"))
    perm = np.random.default_rng(8).permutation(len(queries))
    inv = np.empty_like(perm)
    inv[perm] = np.arange(len(perm))
    vecio.write_fvecs(os.path.join(folder, "query.fvecs.tmp"), queries[perm])
    os.replace(os.path.join(folder, "query.fvecs.tmp"),
               os.path.join(folder, "query.fvecs"))
    for metric in ("l2", "ip"):
        p = os.path.join(folder, f"gt_{metric}.ivecs")
        vecio.write_ivecs(p + ".tmp", vecio.read_ivecs(p)[perm])
        os.replace(p + ".tmp", p)
    qs = os.path.join(folder, "query_sources.txt")
    if os.path.exists(qs):
        qimg = np.loadtxt(qs, dtype=np.int64)
        np.savetxt(qs + ".tmp", qimg[perm], fmt="%d")
        os.replace(qs + ".tmp", qs)
    for sub in os.listdir(folder):
        d = os.path.join(folder, sub)
        if sub.startswith("drift") and os.path.isdir(d):
            for f in os.listdir(d):
                if f.startswith("queries_") and f.endswith(".txt"):
                    idx = np.atleast_1d(np.loadtxt(os.path.join(d, f),
                                                   dtype=np.int64))
                    np.savetxt(os.path.join(d, f + ".tmp"),
                               inv[idx], fmt="%d")
                    os.replace(os.path.join(d, f + ".tmp"),
                               os.path.join(d, f))
    for sub in ("quick", "ingest"):
        shutil.rmtree(os.path.join(folder, sub), ignore_errors=True)
    meta["query_order"] = "random"
    with open(meta_path + ".tmp", "w") as f:
        json.dump(meta, f, indent=1)
    os.replace(meta_path + ".tmp", meta_path)


def sift():
    folder = os.path.join(cache_dir(), "sift")
    if os.path.exists(os.path.join(folder, "meta.json")):
        shuffle_queries(folder)
        return folder
    os.makedirs(folder, exist_ok=True)
    images = list_images()
    log(f"sift: {len(images)} images from {len(SIFT_PACKAGES)} packages")
    t0 = time.time()
    with multiprocessing.Pool(os.cpu_count()) as pool:
        descs = pool.map(_extract, [f for _, f in images], chunksize=1)
    extract_s = time.time() - t0
    base_parts, sources, qparts, qorder = [], [], [], []
    seen = set()
    rows = 0
    for i, ((pkg, f), d) in enumerate(zip(images, descs)):
        # Exact duplicate rows are dropped (within and across images).
        keep = []
        for j, row in enumerate(d):
            key = row.tobytes()
            if key not in seen:
                seen.add(key)
                keep.append(j)
        d = d[keep]
        if i % SIFT_QUERY_EVERY == SIFT_QUERY_EVERY - 1:
            qparts.append(d)
            qorder.append(np.full(len(d), i, dtype=np.int64))
            continue
        if rows >= SIFT_MAX_ROWS:
            continue
        d = d[:SIFT_MAX_ROWS - rows]
        if len(d) == 0:
            continue
        base_parts.append(d)
        sources.append((rows, rows + len(d), i, pkg, f))
        rows += len(d)
    base = np.concatenate(base_parts)
    qall = np.concatenate(qparts)
    qimg = np.concatenate(qorder)
    rng = np.random.default_rng(8)
    # Random order, not sorted: see the top of this file.
    pick = rng.choice(len(qall), min(SIFT_QUERIES, len(qall)), replace=False)
    queries, qimg = qall[pick], qimg[pick]
    with open(os.path.join(folder, "sources.tsv"), "w") as f:
        for s in sources:
            f.write("\t".join(str(x) for x in s) + "\n")
    np.savetxt(os.path.join(folder, "query_sources.txt"), qimg, fmt="%d")
    log(f"sift: {len(base)} base rows, {len(queries)} queries "
        f"(extraction {extract_s:.0f} s); ground truth ...")
    finish(folder, base, queries, {"name": "sift", "images": len(images),
                                   "packages": SIFT_PACKAGES,
                                   "query_order": "random",
                                   "extract_seconds": round(extract_s, 1)})
    return folder


def drift_steps(folder, steps=10, per_step_queries=1000, stride=1):
    """The drift scenario's steps over the sift set: base rows in source
    order, cut into `steps` parts at image boundaries; after step s, the
    queries are those of held-out images that came before the last inserted
    image (queries near what has been seen), with exact ground truth
    against the rows inserted so far. Writes steps.tsv (end_row, gt path,
    query index path) and returns its path. stride > 1 (the quick run):
    every stride-th base row, still in source order, written as
    base.fvecs next to steps.tsv (drift_base() names the base file)."""
    out = os.path.join(folder, "drift" if stride == 1 and steps == 10 else
                       f"drift-s{stride}-{steps}-{per_step_queries}")
    path = os.path.join(out, "steps.tsv")
    if os.path.exists(path):
        return path
    os.makedirs(out, exist_ok=True)
    base = vecio.read_fvecs(os.path.join(folder, "base.fvecs"))
    if stride > 1:
        base = np.ascontiguousarray(base[::stride])
        vecio.write_fvecs(os.path.join(out, "base.fvecs"), base)
    queries = vecio.read_fvecs(os.path.join(folder, "query.fvecs"))
    qimg = np.loadtxt(os.path.join(folder, "query_sources.txt"), dtype=np.int64)
    src = [line.split("\t") for line in open(os.path.join(folder, "sources.tsv"))]
    ends = [-(-int(s[1]) // stride) for s in src]  # rows kept before end
    imgs = [int(s[2]) for s in src]
    n = len(base)
    rng = np.random.default_rng(3)
    lines = []
    for s in range(steps):
        target = n * (s + 1) // steps
        k = next(i for i, e in enumerate(ends) if e >= target)
        end, last_img = ends[k], imgs[k]
        eligible = np.nonzero(qimg <= last_img)[0]
        if len(eligible) > per_step_queries:
            eligible = np.sort(rng.choice(eligible, per_step_queries, replace=False))
        gt = ground_truth(base[:end], queries[eligible], k=10)
        gtp = os.path.join(out, f"gt_{s}.ivecs")
        idxp = os.path.join(out, f"queries_{s}.txt")
        vecio.write_ivecs(gtp, gt)
        np.savetxt(idxp, eligible, fmt="%d")
        lines.append(f"{end}\t{gtp}\t{idxp}\n")
        log(f"drift step {s}: {end} rows, {len(eligible)} queries")
    with open(path + ".tmp", "w") as f:
        f.writelines(lines)
    os.replace(path + ".tmp", path)
    return path


def drift_base(folder, steps_path):
    """The base file the steps of drift_steps() index."""
    sub = os.path.join(os.path.dirname(steps_path), "base.fvecs")
    return sub if os.path.exists(sub) else os.path.join(folder, "base.fvecs")


if __name__ == "__main__":
    for name in sys.argv[1:] or ["fmnist", "sift"]:
        print(globals()[name]())
