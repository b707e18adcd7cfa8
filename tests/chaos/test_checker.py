#!/usr/bin/python3
"""Unit tests of tests/chaos/checker.py on synthetic histories (TAP):

- each kind of violation is caught: an acknowledged write lost, a deleted
  id back, a stale Get (older value, absent, a deleted id), a phantom
  (never written, read before its upsert began, a Search hit), a corrupt
  vector, an incomplete final read, and histories where each read is
  explainable alone but not all together (nonlinear);
- valid histories pass: sequential, concurrent acknowledged writes,
  indeterminate upserts and deletes seen or not, touching intervals
  (A.end == B.start is concurrent), calls over several keys;
- random histories of a simulated linearizable register (threads,
  overlapping calls, failed calls applied or not, late) pass, and each of
  them with one Get made stale fails;
- on 3,000 small random histories the verdict equals a brute-force
  search over every order of every subset of the indeterminate writes;
- the command line: exit 0, 1 with a report naming the key, 2 on a
  malformed history.
"""
import json
import os
import random
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
import checker  # noqa: E402
from grpctest import Tap  # noqa: E402

# ---- Helpers ----


def up(pairs, s, e, ok=True):
    """An Upsert of {id: wn}."""
    return {"op": "upsert", "ids": list(pairs), "wn": list(pairs.values()),
            "start": s, "end": e, "outcome": "OK" if ok else "UNAVAILABLE"}


def de(ids, s, e, ok=True):
    return {"op": "delete", "ids": list(ids), "start": s, "end": e,
            "outcome": "OK" if ok else "DEADLINE_EXCEEDED"}


def get(vals, s, e, op="get"):
    """A Get that returned {id: wn or None}."""
    return {"op": op, "ids": list(vals), "values": list(vals.values()),
            "bad": [], "start": s, "end": e, "outcome": "OK"}


def final(vals, t=1000.0):
    return get(vals, t, t + 1, op="final")


def run(recs):
    for n, r in enumerate(recs, 1):
        r["line"] = n
    return checker.check(recs)


def kinds(res):
    return {k: v for k, v in res["counts"].items() if v}


# ---- Random linearizable histories ----


def simulate(seed, keys=4, threads=6, ops=1500, fail=0.15):
    """Records of a register per key that takes each call at one random
    instant inside it; a failed write is applied (at an instant up to 5 s
    after its start, maybe after its end) or not, at random."""
    rnd = random.Random(seed)
    clock = [rnd.uniform(0, 1) for _ in range(threads)]
    recs, events = [], []
    wn = 0
    for _ in range(ops):
        t = min(range(threads), key=lambda x: clock[x])
        s = clock[t]
        e = s + rnd.uniform(0.01, 2.0)
        clock[t] = e + rnd.uniform(0.0, 0.3)
        ids = rnd.sample(range(keys), rnd.randint(1, min(2, keys)))
        kind = rnd.choices(["upsert", "delete", "get"], [4, 1, 4])[0]
        failed = rnd.random() < fail
        if kind == "upsert":
            pairs = {}
            for i in ids:
                wn += 1
                pairs[i] = wn
            r = up(pairs, s, e, not failed)
        elif kind == "delete":
            r = de(ids, s, e, not failed)
        else:
            r = get({i: None for i in ids}, s, e)
            if failed:
                r["outcome"] = "UNAVAILABLE"
                del r["values"]
        recs.append(r)
        if kind != "get" and failed:
            if rnd.random() < 0.5:
                continue  # never happened
            at = rnd.uniform(s, s + 5.0)
        else:
            at = rnd.uniform(s, e)
        if kind != "get" or not failed:
            events.append((at, len(recs) - 1))
    state = {}
    for at, k in sorted(events):
        r = recs[k]
        if r["op"] == "upsert":
            state.update(zip(r["ids"], r["wn"]))
        elif r["op"] == "delete":
            for i in r["ids"]:
                state.pop(i, None)
        else:
            r["values"] = [state.get(i) for i in r["ids"]]
    end = max(clock) + 10
    recs.append(final({i: state.get(i) for i in range(keys)}, end))
    recs.insert(0, {"op": "meta", "keys": keys})
    return recs


def make_stale(recs, rnd):
    """A copy of recs with one Get's value replaced by an acknowledged
    upsert that another acknowledged write had overwritten before the Get
    began; None when there is no such Get."""
    acked = [r for r in recs if r["op"] in ("upsert", "delete") and
             r["outcome"] == "OK"]
    gets = [k for k, r in enumerate(recs) if r["op"] == "get" and
            r["outcome"] == "OK"]
    rnd.shuffle(gets)
    for k in gets:
        g = recs[k]
        for j, i in enumerate(g["ids"]):
            mine = [r for r in acked if i in r["ids"]]
            for x in mine:
                # An upsert's value names one write; "absent" could come
                # from another delete, so it would not surely be stale.
                if x["op"] == "upsert" and any(x["end"] < w["start"] and w["end"] < g["start"]
                       for w in mine):
                    v = x["wn"][x["ids"].index(i)]
                    if v == g["values"][j]:
                        continue
                    out = json.loads(json.dumps(recs))
                    out[k]["values"][j] = v
                    return out
    return None


def brute_force(recs):
    """Whether one key's records (key 1) are linearizable, by trying every
    order of every subset of the indeterminate writes."""
    import itertools
    ops = []
    for r in recs:
        if r["op"] in ("upsert", "delete"):
            ok = r["outcome"] == "OK"
            ops.append(("w", r["wn"][0] if r["op"] == "upsert" else None,
                        r["start"], r["end"] if ok else float("inf"), ok))
        elif r["outcome"] == "OK":
            ops.append(("r", r["values"][0], r["start"], r["end"], True))
    must = [o for o in ops if o[4]]
    maybe = [o for o in ops if not o[4]]
    for n in range(len(maybe) + 1):
        for extra in itertools.combinations(maybe, n):
            chosen = must + list(extra)
            for order in itertools.permutations(chosen):
                if any(b[3] < a[2] for k, a in enumerate(order)
                       for b in order[k + 1:]):
                    continue  # b precedes a in real time
                state, good = None, True
                for kind, v, _, _, _ in order:
                    if kind == "w":
                        state = v
                    elif state != v:
                        good = False
                        break
                if good:
                    return True
    return False


def small_random(rnd):
    """A history of 2..6 calls on key 1, on a coarse clock (so intervals
    often touch), reads returning any value written or absent."""
    recs, wns = [], []
    for _ in range(rnd.randint(2, 6)):
        s = rnd.randint(0, 8)
        e = s + rnd.randint(0, 3)
        kind = rnd.choice(["upsert", "delete", "get", "get"])
        ok = rnd.random() < 0.7
        if kind == "upsert":
            wns.append(len(wns) + 1)
            recs.append(up({1: wns[-1]}, s, e, ok))
        elif kind == "delete":
            recs.append(de([1], s, e, ok))
        else:
            recs.append(get({1: None}, s, e))
    for r in recs:
        if r["op"] == "get":
            r["values"] = [rnd.choice([None] + wns)]
    return recs


# ---- Cases ----


def cases(tap):
    # Valid histories.
    res = run([up({1: 1}, 0, 1), get({1: 1}, 2, 3), de([1], 4, 5),
               get({1: None}, 6, 7), up({1: 2}, 8, 9), final({1: 2})])
    tap.check(not res["violations"], "sequential upsert, get, delete, get, "
              "upsert, final: valid %s" % kinds(res))
    for fv in (1, 2):
        res = run([up({1: 1}, 0, 10), up({1: 2}, 1, 9), final({1: fv})])
        tap.check(not res["violations"], "two concurrent acknowledged "
                  "writes: the final read may show either (%d)" % fv)
    res = run([up({1: 1}, 0, 10), up({1: 2}, 1, 9), get({1: 1}, 2, 3),
               get({1: 2}, 4, 5), final({1: 2})])
    tap.check(not res["violations"], "Gets during concurrent writes see "
              "one, then the other: valid %s" % kinds(res))
    for g in (1, 2):
        res = run([up({1: 1}, 0, 1), up({1: 2}, 2, 5), get({1: g}, 3, 4),
                   final({1: 2})])
        tap.check(not res["violations"], "a Get concurrent with a write "
                  "may see the value before or after it (%d)" % g)
    for fv in (1, 2):
        res = run([up({1: 1}, 0, 1), up({1: 2}, 2, 3, ok=False),
                   final({1: fv})])
        tap.check(not res["violations"], "an indeterminate upsert may or "
                  "may not have happened: final %d valid" % fv)
    res = run([up({1: 1}, 0, 1), up({1: 2}, 2, 3, ok=False),
               get({1: 1}, 4, 5), get({1: 2}, 6, 7), final({1: 2})])
    tap.check(not res["violations"], "an indeterminate upsert may take "
              "effect after its call failed (seen late): valid %s" %
              kinds(res))
    for fv in (1, None):
        res = run([up({1: 1}, 0, 1), de([1], 2, 3, ok=False),
                   final({1: fv})])
        tap.check(not res["violations"], "an indeterminate delete: final "
                  "%s valid" % fv)
    res = run([up({1: 1}, 0, 1), de([1], 2, 3, ok=False),
               get({1: None}, 4, 5), up({1: 2}, 6, 7), get({1: 2}, 8, 9),
               de([1], 10, 11, ok=False), de([1], 10.5, 11, ok=False),
               get({1: 2}, 12, 13), get({1: None}, 14, 15),
               final({1: None})])
    tap.check(not res["violations"], "several indeterminate deletes, some "
              "seen: valid %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), up({1: 2}, 2, 5),
               de([1], 3, 4, ok=False), get({1: None}, 4, 5),
               get({1: 2}, 6, 7), final({1: 2})])
    tap.check(not res["violations"], "an indeterminate delete taking "
              "effect before an acknowledged write that began earlier (the "
              "search must try it again after undoing that write): valid "
              "%s" % kinds(res))
    res = run([get({1: None}, 0, 1), up({1: 1}, 2, 3), final({1: 1})])
    tap.check(not res["violations"], "absent before the first write: the "
              "initial state")
    res = run([up({1: 1}, 0, 1), up({1: 2}, 1, 2), final({1: 1})])
    tap.check(not res["violations"], "touching intervals (A.end == B.start) "
              "are concurrent: the older value may be final")
    res = run([up({1: 1, 2: 2}, 0, 1), de([2, 3], 2, 3), up({3: 3}, 4, 5),
               get({1: 1, 2: None, 3: 3}, 6, 7),
               final({1: 1, 2: None, 3: 3})])
    tap.check(not res["violations"], "calls over several keys: valid %s" %
              kinds(res))

    # Violations.
    res = run([up({1: 1}, 0, 1), up({1: 2}, 1.001, 2), final({1: 1})])
    tap.check(kinds(res) == {"lost": 1} and "write 2 lost" in
              res["violations"][0][2],
              "an older value after an acknowledged write: lost (%s)" %
              res["violations"][0][2][:90])
    res = run([up({1: 1}, 0, 1), up({1: 2}, 2, 3), final({1: None})])
    tap.check(kinds(res) == {"lost": 1}, "absent after acknowledged "
              "writes: lost %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), de([1], 2, 3), final({1: 1})])
    tap.check(kinds(res) == {"back": 1}, "a value after an acknowledged "
              "delete: back %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), de([1], 2, 3), up({1: 2}, 4, 5, ok=False),
               final({1: 1})])
    tap.check(kinds(res) == {"back": 1}, "a deleted value back, a later "
              "indeterminate write not seen: back %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), up({1: 2}, 2, 3), get({1: 1}, 4, 5),
               final({1: 2})])
    tap.check(kinds(res) == {"stale": 1}, "a Get after an acknowledged "
              "write sees the older value: stale %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), get({1: None}, 2, 3), final({1: 1})])
    tap.check(kinds(res) == {"stale": 1}, "a Get after an acknowledged "
              "write sees absent: stale %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), de([1], 2, 3), get({1: 1}, 4, 5),
               final({1: None})])
    tap.check(kinds(res) == {"stale": 1} and "deleted id seen" in
              res["violations"][0][2], "a Get after an acknowledged "
              "delete sees the value: stale, a deleted id seen")
    res = run([up({1: 1}, 0, 1), get({1: 99}, 2, 3), final({1: 1})])
    tap.check(kinds(res) == {"phantom": 1}, "a write number never written: "
              "phantom %s" % kinds(res))
    res = run([get({1: 1}, 0, 1), up({1: 1}, 2, 3), final({1: 1})])
    tap.check(kinds(res) == {"phantom": 1}, "a value read before its "
              "upsert began: phantom %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), {"op": "search", "hits": [[1, 1], [2, 7]],
                                  "bad": [], "start": 2, "end": 3,
                                  "outcome": "OK"}, final({1: 1})])
    tap.check(kinds(res) == {"phantom": 1}, "a Search hit never written: "
              "phantom %s" % kinds(res))
    g = get({1: None}, 2, 3)
    g["bad"] = [[1, "vector encodes id 5"]]
    res = run([up({1: 1}, 0, 1), g, final({1: 1})])
    tap.check(kinds(res) == {"corrupt": 1}, "a vector of another id: "
              "corrupt %s" % kinds(res))
    res = run([{"op": "meta", "keys": 3}, up({1: 1}, 0, 1),
               final({0: None, 1: 1})])
    tap.check(kinds(res) == {"incomplete": 1}, "the final read misses a "
              "key: incomplete %s" % kinds(res))
    res = run([up({1: 1}, 0, 10), up({1: 2}, 1, 9), get({1: 1}, 2, 3),
               get({1: 2}, 4, 5), final({1: 1})])
    tap.check(kinds(res) == {"nonlinear": 1}, "concurrent writes seen 1, "
              "2, then 1 again: nonlinear %s" % kinds(res))
    res = run([up({1: 1}, 0, 10), up({1: 2}, 1, 9), get({1: 2}, 2, 3),
               get({1: 1}, 4, 5), get({1: 2}, 6, 7), final({1: 2})])
    tap.check(kinds(res) == {"nonlinear": 1}, "new, old, new among "
              "concurrent writes: nonlinear %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), up({1: 2}, 2, 3, ok=False),
               get({1: 2}, 4, 5), get({1: 1}, 6, 7), final({1: 2})])
    tap.check(kinds(res) == {"nonlinear": 1}, "an indeterminate write seen, "
              "then the value before it: nonlinear %s" % kinds(res))
    res = run([up({1: 1}, 0, 1), de([1], 2, 3, ok=False),
               get({1: None}, 4, 5), get({1: 1}, 6, 7), final({1: 1})])
    tap.check(kinds(res) == {"nonlinear": 1}, "an indeterminate delete "
              "seen, then the deleted value: nonlinear %s" % kinds(res))

    # Random histories.
    rnd = random.Random(19)
    passed = caught = tried = 0
    missed = []
    for seed in range(30):
        recs = simulate(seed)
        res = checker.check(json.loads(json.dumps(recs)))
        passed += not res["violations"]
        if res["violations"]:
            missed.append((seed, res["violations"][0][2][:200]))
        bad = make_stale(recs, rnd)
        if bad is not None:
            tried += 1
            caught += bool(checker.check(bad)["violations"])
    tap.check(passed == 30, "30 random linearizable histories (4 keys, 6 "
              "threads, 1,500 calls, 15%% failed) pass: %d %s" %
              (passed, missed[:1]))
    tap.check(tried >= 25 and caught == tried, "the same with one Get made "
              "stale: %d of %d caught" % (caught, tried))
    rnd = random.Random(4)
    agree = valid = 0
    differ = []
    for _ in range(3000):
        recs = small_random(rnd)
        want = brute_force(recs)
        got = not checker.check(json.loads(json.dumps(recs)))["violations"]
        valid += want
        agree += want == got
        if want != got and len(differ) < 1:
            differ.append(recs)
    tap.check(agree == 3000 and 300 < valid < 2700,
              "3,000 small random histories (2..6 calls, touching "
              "intervals, indeterminate writes): the checker agrees with "
              "a brute-force search over every order in %d (%d valid) %s" %
              (agree, valid, differ))
    recs = simulate(7, keys=100, threads=8, ops=40000)
    t = time.monotonic()
    res = checker.check(recs)
    dt = time.monotonic() - t
    tap.check(not res["violations"] and dt < 120,
              "40,000 calls over 100 keys, 8 threads: valid, checked in "
              "%.1f s" % dt)

    # The command line.
    d = tempfile.mkdtemp(prefix="drift-checker-")
    good, bad, broken = (os.path.join(d, x) for x in
                         ("good.jsonl", "bad.jsonl", "broken.jsonl"))
    for path, recs in ((good, [up({1: 1}, 0, 1), final({1: 1})]),
                       (bad, [up({4: 1}, 0, 1), up({4: 2}, 2, 3),
                              final({4: 1})])):
        with open(path, "w") as f:
            for r in recs:
                f.write(json.dumps(r) + "\n")
    with open(broken, "w") as f:
        f.write('{"op": "upsert", "ids": [1]}\n')
    cmd = [sys.executable, os.path.join(HERE, "checker.py")]
    p = [subprocess.run(cmd + [x], capture_output=True, text=True)
         for x in (good, bad, broken)]
    tap.check(p[0].returncode == 0 and p[0].stdout.startswith("PASS"),
              "checker.py on a valid history: exit 0, PASS")
    tap.check(p[1].returncode == 1 and "FAIL" in p[1].stdout and
              "lost id 4: acknowledged write 2 lost" in p[1].stdout,
              "checker.py on a lost write: exit 1, the report names id 4 "
              "(%s)" % p[1].stdout.splitlines()[-1][:80])
    tap.check(p[2].returncode == 2 and "no field" in p[2].stderr,
              "checker.py on a malformed history: exit 2 (%s)" %
              p[2].stderr.strip()[:80])
    for x in (good, bad, broken):
        os.unlink(x)
    os.rmdir(d)


def main():
    tap = Tap()
    tap.run("cases", cases, tap)
    tap.done()


if __name__ == "__main__":
    main()
