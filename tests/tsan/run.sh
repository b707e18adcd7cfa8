#!/usr/bin/env bash
# The HNSW memtable under ThreadSanitizer (tests/tsan/tsan_hnsw.c):
#
#   tests/tsan/run.sh [OUT_DIR]      (default: $TMPDIR/drift-tsan)
#
# Compiles the driver, node/hnsw.c and the few common/ files it needs with
# -fsanitize=thread into OUT_DIR (its own objects: TSan cannot share objects
# with the ASan build, and every file whose memory the threads share must be
# instrumented, the SIMD kernels included), then runs it. Exit status 0 only
# when the driver's checks hold and TSan reported no race. meson registers it
# as the test hnsw-tsan of the release build (node/meson.build), so make test
# runs it.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:-${TMPDIR:-/tmp}/drift-tsan}
cc=${CC:-cc}
mkdir -p "$out"
flags=(-std=c11 -D_GNU_SOURCE -O1 -g -fsanitize=thread -fno-omit-frame-pointer
  -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
  -Wvla -I"$root")
objs=()
build() { # source, extra flags...
  local src=$1 obj
  shift
  obj="$out/$(echo "$src" | tr / _).o"
  "$cc" "${flags[@]}" "$@" -c "$root/$src" -o "$obj"
  objs+=("$obj")
}
for f in common/alloc.c common/clock.c common/err.c common/hash.c common/log.c \
  common/rand.c common/simd.c common/topk.c common/vec.c node/hnsw.c \
  tests/tsan/tsan_hnsw.c; do
  build "$f"
done
build common/vec_avx2.c -mavx2 -mfma
build common/vec_avx512.c -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma
"$cc" -fsanitize=thread "${objs[@]}" -o "$out/tsan-hnsw" -lxxhash -lm -pthread
TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1} \
  exec "$out/tsan-hnsw"
