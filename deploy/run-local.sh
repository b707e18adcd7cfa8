#!/usr/bin/env bash
# `make run`: a three-node cluster on 127.0.0.1 from the build directory
# given (SPEC section 6).
#
#   node-1  gRPC 127.0.0.1:7401  Raft 127.0.0.1:7411  (bootstraps)
#   node-2  gRPC 127.0.0.1:7402  Raft 127.0.0.1:7412  (--join node-1)
#   node-3  gRPC 127.0.0.1:7403  Raft 127.0.0.1:7413  (--join node-1)
#
# Data lives under BUILD/run-data/node-N and is kept across runs (a node
# whose directory already holds a member restarts from it and ignores
# --join). Logs go to BUILD/run-data/node-N.log. Ctrl-C (or SIGTERM) stops
# all three gracefully: each gets SIGTERM, a Raft leader hands leadership
# over, and the script waits for every one to exit. The router on 7400
# comes with drift-router.
set -euo pipefail
build=${1:-build}
node="$build/node/drift-node"
if [ ! -x "$node" ]; then
  echo "make run: $node has not been built (run make build)." >&2
  exit 1
fi
base="$build/run-data"
mkdir -p "$base"
pids=()

stop() {
  trap - INT TERM
  echo
  echo "make run: stopping the nodes"
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  echo "make run: stopped"
  exit 0
}
trap stop INT TERM

# Waits until a node's log says it is ready (or it exits).
wait_ready() {
  local i=$1 pid=$2 from=$3 log="$base/node-$i.log"
  for _ in $(seq 1 600); do
    tail -n "+$from" "$log" 2>/dev/null | grep -q "ready" && return 0
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "make run: node-$i exited; its log ($log) ends with:" >&2
      tail -n 5 "$log" >&2
      stop
    fi
    sleep 0.1
  done
  echo "make run: node-$i did not get ready in 60 s; see $log" >&2
  stop
}

for i in 1 2 3; do
  data="$base/node-$i"
  mkdir -p "$data"
  join=()
  [ "$i" -gt 1 ] && join=(--join 127.0.0.1:7401)
  touch "$base/node-$i.log"
  from=$(($(wc -l <"$base/node-$i.log") + 1))
  "$node" --data-dir "$data" --node-id "node-$i" \
    --listen "127.0.0.1:740$i" --raft-listen "127.0.0.1:741$i" \
    "${join[@]}" >>"$base/node-$i.log" 2>&1 &
  pids+=($!)
  wait_ready "$i" "$!" "$from"
done

cat <<MSG
Drift: three nodes on 127.0.0.1 (data and logs in $base); Ctrl-C stops them.
  node-1  127.0.0.1:7401  (Raft 127.0.0.1:7411)
  node-2  127.0.0.1:7402  (Raft 127.0.0.1:7412)
  node-3  127.0.0.1:7403  (Raft 127.0.0.1:7413)
  status:  grpcurl -plaintext -proto proto/drift/v1/drift.proto \\
             127.0.0.1:7401 drift.v1.Cluster/Status
  API:     drift.v1.Drift at any node (proto/drift/v1/drift.proto); a
           request for a shard another node holds is FAILED_PRECONDITION
           naming it, until drift-router exists
MSG
wait
