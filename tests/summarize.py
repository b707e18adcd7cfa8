#!/usr/bin/env python3
"""Totals of a test run: the line `make test` ends with.

Reads meson's testlog.json of each build (--meson, repeatable) and simple
result files (--results: lines "PASS name" / "FAIL name"). A test that speaks
TAP (Criterion) counts each of its cases; a case its plan announced but that
never reported (a crash) counts as failed, and so does a test whose cases all
passed but that itself failed (a leak or sanitizer report at exit, a
timeout). A "not ok ... # TODO" case is a known gap: listed, not counted
(TAP's meaning). Any other test counts once. Prints one line per build, then
"N passed, N failed"; exits 1 when anything failed.
"""
import argparse
import json
import re
import sys

OK = re.compile(r"^ok\b")
NOT_OK = re.compile(r"^not ok\b")
# TAP: a "not ok" with a TODO directive is a known, expected failure (the
# work is still to do): reported, not counted as failed.
TODO = re.compile(r"^not ok\b[^#]*#\s*TODO\b", re.IGNORECASE)
PLAN = re.compile(r"^1\.\.(\d+)")


def count_meson(path):
    passed = failed = 0
    failures = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)
            name, result = t["name"], t["result"]
            out = t.get("stdout") or ""
            lines = out.splitlines()
            ok = sum(1 for l in lines if OK.match(l))
            todo = [l for l in lines if TODO.match(l)]
            bad = sum(1 for l in lines if NOT_OK.match(l)) - len(todo)
            for l in todo:
                print(f"  todo: {name}: {l}", file=sys.stderr)
            plans = [int(m.group(1)) for l in lines if (m := PLAN.match(l))]
            if ok + bad == 0 and not plans:
                if result in ("OK", "EXPECTEDFAIL", "SKIP"):
                    passed += 1
                else:
                    failed += 1
                    failures.append(f"{name}: {result}")
                continue
            missing = max(0, (plans[0] if plans else 0) - ok - bad -
                          len(todo))
            # A TAP test that skips itself ("1..0 # SKIP why": no root for
            # a private mount, say) passes nothing and fails nothing.
            extra = 1 if result not in ("OK", "EXPECTEDFAIL", "SKIP") and bad + missing == 0 else 0
            if result == "SKIP" and bad + missing == 0:
                print(f"  skipped: {name}", file=sys.stderr)
            passed += ok
            failed += bad + missing + extra
            if bad or missing or extra:
                failures.append(f"{name}: {bad} failed, {missing} never reported, result {result}")
    return passed, failed, failures


def count_results(path):
    passed = failed = 0
    failures = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            status, _, name = line.strip().partition(" ")
            if not status:
                continue
            if status == "PASS":
                passed += 1
            else:
                failed += 1
                failures.append(name or status)
    return passed, failed, failures


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--meson", action="append", default=[])
    ap.add_argument("--results", action="append", default=[])
    args = ap.parse_args()
    total_p = total_f = 0
    for kind, paths, fn in (("meson", args.meson, count_meson),
                            ("results", args.results, count_results)):
        for path in paths:
            try:
                p, f, failures = fn(path)
            except (OSError, ValueError) as e:
                print(f"{path}: unreadable ({e}): counted as 1 failure")
                p, f, failures = 0, 1, []
            print(f"{path}: {p} passed, {f} failed")
            for fail in failures:
                print(f"  FAILED {fail}")
            total_p += p
            total_f += f
    print(f"{total_p} passed, {total_f} failed")
    return 1 if total_f else 0


if __name__ == "__main__":
    sys.exit(main())
