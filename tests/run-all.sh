#!/usr/bin/env bash
# The whole suite, as `make test` runs it:
#
#   tests/run-all.sh RELEASE_BUILD ASAN_BUILD FUZZ_BUILD FUZZ_SECONDS
#
# meson test in the release build and in the ASan+UBSan build, then each fuzz
# target for FUZZ_SECONDS, then the clang-format check. The last line is the total over every suite:
# "N passed, N failed" (Criterion cases count one each, other tests one
# each). Exit status 0 only when nothing failed.
set -uo pipefail
release=$1
asan=$2
fuzz=$3
seconds=$4
here=$(cd "$(dirname "$0")" && pwd)

for b in "$release" "$asan"; do
  echo "== meson test -C $b"
  meson test -C "$b" --print-errorlogs --num-processes 2 >"$b/test-output.txt" 2>&1
  grep -E '^ *[0-9]+/[0-9]+ ' "$b/test-output.txt" || true
  grep -E -A60 '^=+ [0-9]+/[0-9]+ =+$' "$b/test-output.txt" | head -n 400 || true
done

echo "== fuzz smoke: ${seconds}s per target"
fuzz_results="$fuzz/fuzz-results.txt"
"$here/fuzz/run.sh" "$fuzz" "$seconds" "$fuzz_results"

echo "== clang-format check"
style_results="$release/style-results.txt"
if (cd "$here/.." && git ls-files --cached --others --exclude-standard '*.c' '*.h' '*.cpp' | xargs -r clang-format --dry-run -Werror); then
  echo "PASS clang-format" >"$style_results"
else
  echo "FAIL clang-format (run make format)" >"$style_results"
fi

exec /usr/bin/python3 "$here/summarize.py" \
  --meson "$release/meson-logs/testlog.json" \
  --meson "$asan/meson-logs/testlog.json" \
  --results "$fuzz_results" \
  --results "$style_results"
