#!/usr/bin/env bash
# A concurrency driver under ThreadSanitizer, as a plain executable:
#
#   tests/tsan/run.sh hnsw|shard|metrics [OUT_DIR]
#                                  (default: $TMPDIR/drift-tsan)
#
#   hnsw   the HNSW memtable alone (tests/tsan/tsan_hnsw.c)
#   shard  the whole shard engine: WAL, memtables, rotation, flush, L1 and
#          its maintenance, the Janitor, epochs (tests/tsan/tsan_shard.c)
#   metrics  the metrics registry: updates, series creation, scrapes and
#          collectors at once (tests/tsan/tsan_metrics.c)
#
# Compiles the driver and the sources it needs with -fsanitize=thread into
# OUT_DIR (its own objects: TSan cannot share objects with the ASan build,
# and every file whose memory the threads share must be instrumented, the
# SIMD kernels included), then runs it. Exit status 0 only when the
# driver's checks hold and TSan reported no race. meson registers both as
# tests of the release build's suite tsan (node/meson.build), so make test
# runs them.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
driver=${1:?usage: run.sh hnsw|shard|metrics [OUT_DIR]}
out=${2:-${TMPDIR:-/tmp}/drift-tsan}/$driver
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
common=(common/alloc.c common/clock.c common/err.c common/hash.c common/log.c
  common/rand.c common/simd.c common/topk.c common/vec.c)
libs=(-lxxhash -lm -pthread)
case $driver in
hnsw)
  srcs=("${common[@]}" node/l0/hnsw.c tests/tsan/tsan_hnsw.c)
  ;;
shard)
  srcs=("${common[@]}" common/abuf.c common/epoch.c common/fs.c
    node/codec/alp.c node/codec/bloom.c node/codec/fastlanes.c
    node/codec/rabitq.c node/codec/sq8.c node/storage/disk.c node/l0/hnsw.c node/l1/kmeans.c node/engine/kv.c
    node/l1/l1.c node/l1/l1_calib.c node/l1/l1_graph.c node/l1/l1_maint.c node/l1/l1_persist.c
    node/engine/janitor.c node/engine/janitor_metrics.c node/storage/manifest.c node/storage/segment.c node/engine/shard.c
    node/engine/shard_janitor.c node/engine/shard_open.c node/engine/shard_record.c node/engine/shard_replica.c node/storage/vstore.c
    node/storage/wal.c common/metrics.c
    tests/tsan/tsan_shard.c)
  build node/codec/sq8_avx2.c -mavx2 -mfma
  build node/codec/rabitq_avx2.c -mavx2 -mfma
  build node/codec/rabitq_avx512.c -mavx512f -mavx512bw -mavx512dq \
    -mavx512vl -mfma
  build node/codec/sq8_avx512.c -mavx512f -mavx512bw -mavx512dq -mavx512vl \
    -mfma
  libs+=(-luring)
  ;;
metrics)
  srcs=("${common[@]}" common/metrics.c tests/tsan/tsan_metrics.c)
  ;;
*)
  echo "run.sh: unknown driver $driver (hnsw, shard or metrics)" >&2
  exit 2
  ;;
esac
for f in "${srcs[@]}"; do
  build "$f"
done
build common/vec_avx2.c -mavx2 -mfma
build common/vec_avx512.c -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma
"$cc" -fsanitize=thread "${objs[@]}" -o "$out/tsan-$driver" "${libs[@]}"
TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1 second_deadlock_stack=1} \
  exec "$out/tsan-$driver"
