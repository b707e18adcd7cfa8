#!/usr/bin/python3
"""Checks a history written by tests/chaos/loadgen.py (the load's calls and
the final read of every key) and prints what is wrong, per key.

    checker.py HISTORY [--faults FAULTS] [--max-report 20] [--summary]

Exit status 0 when nothing is wrong, 1 with a report otherwise, 2 when the
history cannot be read.

The model: each key is a register. An acknowledged (OK) Upsert or Delete
took effect at one instant inside its call, [start, end]; one that failed
or timed out is indeterminate: it may never have happened, or taken effect
at any instant after its start (end = +infinity). An OK Get, and the final
read, returned the state at one instant inside its call. Operation A
precedes B iff A.end < B.start (intervals that touch or overlap are
concurrent). Each upsert writes a unique write number, so a read names the
write it saw; "absent" is the initial state or some delete.

What is reported, per key:

- lost: the final read is not explainable by the writes: it shows an older
  write's value, or absent, where an acknowledged write came after (the
  final state must be the last acknowledged write or one concurrent with it
  or after it, acknowledged or not);
- back: the final read shows a value that an acknowledged delete came
  after, with no later write (a deleted id came back);
- stale: a Get returned a state that an acknowledged write rules out: the
  write it saw (or every delete, and the initial state, when it saw
  absent) precedes an acknowledged write that precedes the Get;
- phantom: a read returned a write number never written to that id, or one
  whose Upsert started only after the read had ended; a Search returned
  such a point;
- corrupt: a returned vector does not decode to its own id (loadgen's
  "bad");
- nonlinear: each read is explainable on its own, but not all together:
  the key's history has no linearization (for example two Gets in a row
  that see a newer value, then an older one). Checked exactly, per key,
  with the search of Wing and Gong as Lowe improved it (the algorithm of
  Porcupine): operations are tried in the order of their calls, each
  (set of operations done, register state) is tried once, and
  indeterminate writes may be left out. Two shortcuts keep it exact: an
  indeterminate upsert that no read saw is dropped (leaving it out never
  changes a read), and indeterminate deletes, which are alike but for
  their start, are tried earliest first;
- incomplete: the final read did not cover every key;
- undecided: the search for a linearization took more than --steps steps
  on one key (reported, never passed).

--faults FAULTS (JSON lines from tests/chaos/test_chaos.py: kind, target,
t0 when it began, t_back when the node or router was started again or
continued, t1 when the cluster was healthy, ids it affects or null) adds the failover window of each fault to the summary: the
time from the first failed write (to the ids the fault affects) to the
first acknowledged write that started after the last failed one.
"""
import argparse
import bisect
import json
import sys
from collections import defaultdict

INF = float("inf")
KINDS = ("lost", "back", "stale", "phantom", "corrupt", "nonlinear",
         "incomplete", "undecided")
DEFAULT_STEPS = 2000000


class HistoryError(Exception):
    pass


def load(path):
    """The records of a history file (a list of dicts)."""
    recs = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            try:
                r = json.loads(line)
            except ValueError as e:
                raise HistoryError("%s:%d: not JSON (%s)" % (path, n, e))
            if not isinstance(r, dict) or "op" not in r:
                raise HistoryError("%s:%d: not a record" % (path, n))
            r["line"] = n
            recs.append(r)
    return recs


class Write:
    __slots__ = ("wn", "start", "end", "acked", "line")

    def __init__(self, wn, start, end, acked, line):
        self.wn = wn  # None: a delete
        self.start = start
        self.end = end if acked else INF
        self.acked = acked
        self.line = line


class Read:
    __slots__ = ("wn", "start", "end", "final", "line")

    def __init__(self, wn, start, end, final, line):
        self.wn = wn  # None: absent
        self.start = start
        self.end = end
        self.final = final
        self.line = line


def _need(r, *fields):
    for f in fields:
        if f not in r:
            raise HistoryError("line %d (%s): no field %r" %
                               (r.get("line", 0), r["op"], f))


def split_by_key(recs):
    """(writes, reads, issues, meta): per key lists of Write and Read,
    and the issues found while reading (corrupt values, search phantoms,
    an incomplete final read)."""
    writes = defaultdict(list)
    reads = defaultdict(list)
    issues = []
    meta = {}
    searches = []
    final_keys = set()
    seen_wn = {}
    for r in recs:
        op = r["op"]
        if op == "meta":
            meta = r
            continue
        if op not in ("upsert", "delete", "get", "search", "final"):
            raise HistoryError("line %d: unknown op %r" % (r["line"], op))
        _need(r, "start", "end", "outcome")
        ok = r["outcome"] == "OK"
        if op == "upsert":
            _need(r, "ids", "wn")
            if len(r["ids"]) != len(r["wn"]):
                raise HistoryError("line %d: ids and wn differ in length" %
                                   r["line"])
            for i, wn in zip(r["ids"], r["wn"]):
                if wn in seen_wn:
                    raise HistoryError(
                        "line %d: write number %d also on line %d" %
                        (r["line"], wn, seen_wn[wn]))
                seen_wn[wn] = r["line"]
                writes[i].append(Write(wn, r["start"], r["end"], ok,
                                       r["line"]))
        elif op == "delete":
            _need(r, "ids")
            for i in r["ids"]:
                writes[i].append(Write(None, r["start"], r["end"], ok,
                                       r["line"]))
        elif op == "search":
            if ok:
                searches.append(r)
        elif ok:
            _need(r, "ids", "values")
            if len(r["ids"]) != len(r["values"]):
                raise HistoryError("line %d: ids and values differ in "
                                   "length" % r["line"])
            bad = {b[0] for b in r.get("bad", [])}
            for i, v in zip(r["ids"], r["values"]):
                if i in bad:
                    continue
                reads[i].append(Read(v, r["start"], r["end"], op == "final",
                                     r["line"]))
                if op == "final":
                    final_keys.add(i)
        if ok and op in ("get", "final", "search"):
            for i, why in r.get("bad", []):
                issues.append(("corrupt", i, "line %d: %s returned id %d "
                               "with a vector that is no write to it: %s" %
                               (r["line"], op, i, why)))
    upserts = {(i, w.wn): w for i, ws in writes.items() for w in ws
               if w.wn is not None}
    for r in searches:
        for i, wn in r["hits"]:
            w = upserts.get((i, wn))
            if w is None or r["end"] < w.start:
                issues.append(("phantom", i, "line %d: search returned id "
                               "%d write %d, %s" % (
                                   r["line"], i, wn,
                                   "never written to it" if w is None else
                                   "written only after the search ended "
                                   "(line %d)" % w.line)))
    if "keys" in meta:
        missing = sorted(set(range(meta["keys"])) - final_keys)
        if missing:
            issues.append(("incomplete", missing[0],
                           "the final read did not answer for %d key(s): "
                           "%s%s" % (len(missing), missing[:10],
                                     " ..." if len(missing) > 10 else "")))
    return writes, reads, issues, meta


# ---- The per-read check ----

class _Acked:
    """The acknowledged writes of one key, for "does an acknowledged write
    come after x and before R": sorted by start, with the suffix minimum
    of their ends."""

    def __init__(self, ws):
        self.ws = sorted((w for w in ws if w.acked), key=lambda w: w.start)
        self.starts = [w.start for w in self.ws]
        self.sufmin = [INF] * (len(self.ws) + 1)
        for k in range(len(self.ws) - 1, -1, -1):
            self.sufmin[k] = min(self.ws[k].end, self.sufmin[k + 1])

    def first_end_after(self, t):
        """The earliest end of an acknowledged write that starts after t
        (INF when none)."""
        return self.sufmin[bisect.bisect_right(self.starts, t)]

    def last_before(self, t):
        """The acknowledged write with the latest start among those that
        end before t."""
        best = None
        for w in self.ws:
            if w.end < t and (best is None or w.start > best.start):
                best = w
        return best


def _rel(t, t0):
    return "+%.3fs" % (t - t0)


def _describe_write(w, t0):
    what = "delete" if w.wn is None else "upsert of write %d" % w.wn
    return "%s (line %d, %s..%s)" % (what, w.line, _rel(w.start, t0),
                                     _rel(w.end, t0))


def check_reads(key, ws, rs, t0=0.0):
    """Violations (kind, key, text) of the reads of one key, each read on
    its own."""
    out = []
    acked = _Acked(ws)
    by_wn = {w.wn: w for w in ws if w.wn is not None}
    dels = sorted((w for w in ws if w.wn is None), key=lambda w: w.start)
    dstarts = [d.start for d in dels]
    # Best "absent" source among the deletes started by time t: prefix
    # maximum of first_end_after(delete's end).
    dbest = []
    m = -INF
    for d in dels:
        m = max(m, acked.first_end_after(d.end))
        dbest.append(m)
    init_m = acked.sufmin[0]
    for r in rs:
        where = "line %d, %s %s..%s" % (r.line, "final read" if r.final else
                                        "Get", _rel(r.start, t0),
                                        _rel(r.end, t0))
        if r.wn is not None:
            x = by_wn.get(r.wn)
            if x is None:
                out.append(("phantom", key, "%s returned write %d, never "
                            "written to id %d" % (where, r.wn, key)))
                continue
            if r.end < x.start:
                out.append(("phantom", key, "%s returned write %d, whose "
                            "upsert started after the read ended (line %d)"
                            % (where, r.wn, x.line)))
                continue
            if acked.first_end_after(x.end) >= r.start:
                continue
            seen = "write %d (line %d)" % (r.wn, x.line)
        else:
            k = bisect.bisect_right(dstarts, r.end)
            best = max(init_m, dbest[k - 1] if k else -INF)
            if best >= r.start:
                continue
            seen = "absent"
        w = acked.last_before(r.start)
        if r.final:
            kind = "back" if w.wn is None else "lost"
            if kind == "back":
                text = ("id %d is back: the final read shows %s, but the "
                        "last acknowledged write was a %s" %
                        (key, seen, _describe_write(w, t0)))
            else:
                text = ("acknowledged write %d lost: the final read shows "
                        "%s, but the last acknowledged write was an %s" %
                        (w.wn, seen, _describe_write(w, t0)))
            out.append((kind, key, "%s [%s]" % (text, where)))
        else:
            out.append(("stale", key, "%s returned %s, but the acknowledged "
                        "%s came after it and before the Get started%s" % (
                            where, seen, _describe_write(w, t0),
                            " (a deleted id seen)" if w.wn is None and
                            r.wn is not None else "")))
    return out


# ---- Linearizability of one key (Wing & Gong, Lowe; Porcupine) ----

def linearizable(ws, rs, max_steps=DEFAULT_STEPS):
    """True, False, or None (gave up after max_steps) for one key's
    writes and reads."""
    read_wns = {r.wn for r in rs if r.wn is not None}
    # (is_read, value, start, end, indeterminate delete)
    ops = [(False, w.wn, w.start, w.end, w.wn is None and not w.acked)
           for w in ws if w.acked or w.wn is None or w.wn in read_wns]
    ops += [(True, r.wn, r.start, r.end, False) for r in rs]
    if not rs:
        return True
    events = []
    for i, op in enumerate(ops):
        events.append((op[2], 0, i))
        if op[3] != INF:
            events.append((op[3], 1, i))
    events.sort()
    m = len(events)
    head, tail = 0, m + 1
    nxt = list(range(1, m + 2)) + [tail]
    prv = [head] + list(range(0, m + 1))
    is_call = [False] * (m + 2)
    op_of = [0] * (m + 2)
    call_node = [0] * len(ops)
    ret_node = [-1] * len(ops)
    for k, (_, typ, i) in enumerate(events, 1):
        op_of[k] = i
        if typ == 0:
            is_call[k] = True
            call_node[i] = k
        else:
            ret_node[i] = k

    def unlink(x):
        nxt[prv[x]] = nxt[x]
        prv[nxt[x]] = prv[x]

    def relink(x):
        nxt[prv[x]] = x
        prv[nxt[x]] = x

    def lift(i):
        unlink(call_node[i])
        if ret_node[i] >= 0:
            unlink(ret_node[i])

    def unlift(i):
        if ret_node[i] >= 0:
            relink(ret_node[i])
        relink(call_node[i])

    def indet_delete_before(x):
        e = nxt[head]
        while e != x:
            if is_call[e] and ops[op_of[e]][4]:
                return True
            e = nxt[e]
        return False

    state = None
    lin = 0
    cache = set()
    stack = []
    e = nxt[head]
    passed_indet = False
    steps = 0
    while e != tail:
        steps += 1
        if steps > max_steps:
            return None
        if is_call[e]:
            i = op_of[e]
            is_read, val, _, _, indet = ops[i]
            if indet:
                if passed_indet:
                    e = nxt[e]
                    continue
                passed_indet = True
            if not is_read or state == val:
                nl = lin | (1 << i)
                key = (nl, val)
                if key not in cache:
                    cache.add(key)
                    stack.append((i, state))
                    lin, state = nl, val
                    lift(i)
                    e = nxt[head]
                    passed_indet = False
                    continue
            e = nxt[e]
        else:
            # An operation's return with its call not linearized: undo the
            # last choice.
            if not stack:
                return False
            i, state = stack.pop()
            lin &= ~(1 << i)
            unlift(i)
            e = nxt[call_node[i]]
            passed_indet = ops[i][4] or indet_delete_before(call_node[i])
    # Only calls of indeterminate writes are left: they need not happen.
    return True


# ---- The whole history ----

def check(recs, max_steps=DEFAULT_STEPS):
    """{"violations": [(kind, key, text)], "counts": {kind: n},
    "keys": n, "writes": n, "reads": n}."""
    for n, r in enumerate(recs, 1):
        r.setdefault("line", n)
    writes, reads, issues, meta = split_by_key(recs)
    starts = [r["start"] for r in recs if "start" in r]
    t0 = min(starts) if starts else 0.0
    viol = list(issues)
    for key in sorted(set(writes) | set(reads)):
        ws, rs = writes.get(key, []), reads.get(key, [])
        v = check_reads(key, ws, rs, t0)
        viol += v
        if v:
            continue
        lz = linearizable(ws, rs, max_steps)
        if lz is None:
            viol.append(("undecided", key, "id %d: no answer after %d "
                         "steps (%d writes, %d reads)" %
                         (key, max_steps, len(ws), len(rs))))
        elif not lz:
            viol.append(("nonlinear", key, "id %d: every read is "
                         "explainable on its own, but no order of its %d "
                         "writes and %d reads explains them all:\n%s" %
                         (key, len(ws), len(rs), _dump(ws, rs, t0))))
    counts = {k: 0 for k in KINDS}
    for kind, _, _ in viol:
        counts[kind] += 1
    return {"violations": viol, "counts": counts,
            "keys": len(set(writes) | set(reads)),
            "writes": sum(len(x) for x in writes.values()),
            "reads": sum(len(x) for x in reads.values()), "meta": meta}


def _dump(ws, rs, t0, limit=40):
    rows = [(w.start, "  %s..%s %s %s (line %d)" % (
        _rel(w.start, t0), "inf" if w.end == INF else _rel(w.end, t0),
        "delete" if w.wn is None else "upsert %d" % w.wn,
        "OK" if w.acked else "indeterminate", w.line)) for w in ws]
    rows += [(r.start, "  %s..%s %s -> %s (line %d)" % (
        _rel(r.start, t0), _rel(r.end, t0), "final" if r.final else "get",
        "absent" if r.wn is None else r.wn, r.line)) for r in rs]
    rows.sort()
    text = [x for _, x in rows[:limit]]
    if len(rows) > limit:
        text.append("  ... %d more" % (len(rows) - limit))
    return "\n".join(text)


def verdict(result):
    c = result["counts"]
    bad = sum(c.values())
    head = ("%s: %d keys, %d writes, %d reads; lost %d, back %d, stale %d, "
            "phantom %d, corrupt %d, nonlinear %d, incomplete %d, "
            "undecided %d" % ("FAIL" if bad else "PASS", result["keys"],
                              result["writes"], result["reads"], c["lost"],
                              c["back"], c["stale"], c["phantom"],
                              c["corrupt"], c["nonlinear"], c["incomplete"],
                              c["undecided"]))
    return head


def report(result, limit=20):
    lines = [verdict(result)]
    for kind, key, text in result["violations"][:limit]:
        lines.append("%s id %s: %s" % (kind, key, text))
    if len(result["violations"]) > limit:
        lines.append("... %d more" % (len(result["violations"]) - limit))
    return "\n".join(lines)


# ---- Summary: calls, latencies, failover windows ----

def percentile(xs, p):
    """Nearest rank; None for no samples."""
    if not xs:
        return None
    xs = sorted(xs)
    k = max(0, min(len(xs) - 1, int(-(-p * len(xs) // 100)) - 1))
    return xs[k]


def _ms(x):
    return "-" if x is None else "%.1f ms" % (x * 1000)


def _s(x):
    return "never closed" if x == INF else "%.2f s" % x


def load_faults(path):
    with open(path) as f:
        return [json.loads(x) for x in f if x.strip()]


def failover_windows(recs, faults):
    """Per fault: {"fault", "failed", "writes", "window"}: the writes to
    the ids the fault affects (all when its ids is null) that started
    (failed: ended) between its t0 and the next fault's t0; window = from
    the first failed one's start to the end of the first acknowledged one
    that started after the last failed one started (None when none failed;
    INF when none was acknowledged after)."""
    ws = sorted((r for r in recs if r["op"] in ("upsert", "delete")),
                key=lambda r: r["start"])
    out = []
    for k, f in enumerate(faults):
        until = faults[k + 1]["t0"] if k + 1 < len(faults) else INF
        ids = None if f.get("ids") is None else set(f["ids"])
        mine = [r for r in ws if ids is None or
                ids.intersection(r["ids"])]
        # A failed call belongs to the fault during which it failed (a
        # call started just before the next fault fails of that one).
        failed = [r for r in mine if r["outcome"] != "OK" and
                  f["t0"] <= r["end"] < until]
        mine = [r for r in mine if f["t0"] <= r["start"] < until]
        window = None
        if failed:
            first = min(r["start"] for r in failed)
            last = max(r["start"] for r in failed)
            after = [r["end"] for r in mine if r["outcome"] == "OK" and
                     r["start"] > last]
            window = (min(after) if after else INF) - first
        out.append({"fault": f, "failed": len(failed), "writes": len(mine),
                    "window": window})
    return out


def summary(recs, faults=(), result=None):
    lines = []
    by = defaultdict(lambda: defaultdict(int))
    for r in recs:
        if r["op"] in ("upsert", "delete", "get", "search", "final"):
            by[r["op"]][r["outcome"]] += 1
    lines.append("calls by kind and outcome:")
    for op in ("upsert", "delete", "get", "search", "final"):
        if op in by:
            lines.append("  %-7s %s" % (op, ", ".join(
                "%s %d" % (k, v) for k, v in
                sorted(by[op].items(), key=lambda kv: (kv[0] != "OK",
                                                       kv[0])))))
    wl = [r["end"] - r["start"] for r in recs if r["op"] in
          ("upsert", "delete") and r["outcome"] == "OK"]
    sl = [r["end"] - r["start"] for r in recs if r["op"] == "search" and
          r["outcome"] == "OK"]
    lines.append("latency of acknowledged writes: p50 %s, p99 %s (%d); "
                 "of searches: p50 %s, p99 %s (%d)" % (
                     _ms(percentile(wl, 50)), _ms(percentile(wl, 99)),
                     len(wl), _ms(percentile(sl, 50)),
                     _ms(percentile(sl, 99)), len(sl)))
    if faults:
        lines.append("failover windows (first failed write to the first "
                     "acknowledged one after the last failure, writes to "
                     "the ids the fault affects):")
        fws = failover_windows(recs, faults)
        for fw in fws:
            f = fw["fault"]
            w = fw["window"]
            target = f["target"] + (" (leader)" if f.get("leader") else "")
            lines.append("  %-6s %-16s down %.2f s: %d of %d writes failed, "
                         "window %s" % (
                             f["kind"], target,
                             f.get("t_back", f["t1"]) - f["t0"],
                             fw["failed"], fw["writes"],
                             "-" if w is None else "never closed" if
                             w == INF else "%.2f s" % w))
        for kind in sorted({fw["fault"]["kind"] for fw in fws}):
            ws = [fw["window"] or 0.0 for fw in fws
                  if fw["fault"]["kind"] == kind]
            lines.append("  %s: %d faults, window p50 %s, max %s" % (
                kind, len(ws), _s(percentile(ws, 50)), _s(max(ws))))
    if result is not None:
        lines.append("checker: " + verdict(result))
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("history")
    ap.add_argument("--faults")
    ap.add_argument("--max-report", type=int, default=20)
    ap.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                    help="most search steps per key")
    ap.add_argument("--summary", action="store_true",
                    help="print the calls, latencies and failover windows "
                    "too")
    a = ap.parse_args(argv)
    try:
        recs = load(a.history)
        faults = load_faults(a.faults) if a.faults else []
        result = check(recs, a.steps)
    except (OSError, HistoryError, ValueError, KeyError, TypeError) as e:
        print("checker: %s: %s" % (a.history, e), file=sys.stderr)
        return 2
    if a.summary or faults:
        print(summary(recs, faults))
    print(report(result, a.max_report))
    return 1 if result["violations"] else 0


if __name__ == "__main__":
    sys.exit(main())
