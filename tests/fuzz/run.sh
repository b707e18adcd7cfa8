#!/usr/bin/env bash
# Runs every fuzz target of a -Dfuzz=true build for SECONDS each.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS [RESULTS_FILE]
#
# Each target starts from tests/fuzz/corpus/<name>/ (the seeds, never
# modified) plus its working corpus in BUILD_DIR/fuzz-corpus/<name>/, which
# keeps what earlier runs found. A crash leaves its input in
# BUILD_DIR/fuzz-artifacts/. RESULTS_FILE gets "PASS name" or "FAIL name" per
# target. Exit status: 0 when no target failed.
set -uo pipefail
build=$1
seconds=$2
results=${3:-/dev/null}
here=$(cd "$(dirname "$0")" && pwd)
: >"$results"

status=0
shopt -s nullglob
targets=()
for f in "$build"/tests/fuzz/fuzz_*; do
  [ -f "$f" ] && [ -x "$f" ] && targets+=("$f")
done
if [ ${#targets[@]} -eq 0 ]; then
  echo "fuzz: no targets in $build/tests/fuzz" >&2
  exit 1
fi
mkdir -p "$build/fuzz-artifacts"
for bin in "${targets[@]}"; do
  [ -f "$bin" ] && [ -x "$bin" ] || continue
  name=$(basename "$bin")
  name=${name#fuzz_}
  corpus="$build/fuzz-corpus/$name"
  seeds="$here/corpus/$name"
  mkdir -p "$corpus" "$seeds"
  log="$build/fuzz-artifacts/$name.log"
  if ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
    "$bin" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$build/fuzz-artifacts/$name-" \
      "$corpus" "$seeds" >"$log" 2>&1; then
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | tail -1)
    echo "fuzz $name: ok (${runs:-no run count})"
    echo "PASS fuzz_$name" >>"$results"
  else
    echo "fuzz $name: FAILED; log: $log" >&2
    tail -n 40 "$log" >&2
    echo "FAIL fuzz_$name" >>"$results"
    status=1
  fi
done
exit $status
