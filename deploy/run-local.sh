#!/usr/bin/env bash
# `make run`: a three-node cluster on 127.0.0.1 from the build directory
# given (SPEC section 6).
#
#   node-1  gRPC 127.0.0.1:7401  Raft 127.0.0.1:7411  metrics :9401  (bootstraps)
#   node-2  gRPC 127.0.0.1:7402  Raft 127.0.0.1:7412  metrics :9402  (--join node-1)
#   node-3  gRPC 127.0.0.1:7403  Raft 127.0.0.1:7413  metrics :9403  (--join node-1)
#   drift-router on 127.0.0.1:7400 in front of them, metrics :9400
#
# (docs/operations.md, "Processes and ports": GET /metrics on each.)
#
# Data lives under BUILD/run-data/node-N and is kept across runs (a node
# whose directory already holds a member restarts from it and ignores
# --join). Logs go to BUILD/run-data/node-N.log. Ctrl-C (or SIGTERM) stops
# all three gracefully: each gets SIGTERM, a Raft leader hands leadership
# over, and the script waits for every one to exit.
set -euo pipefail
build=${1:-build}
node="$build/node/drift-node"
router="$build/router/drift-router"
if [ ! -x "$node" ] || [ ! -x "$router" ]; then
  echo "make run: $node or $router has not been built (run make build)." >&2
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
    --metrics-listen "127.0.0.1:940$i" \
    "${join[@]}" >>"$base/node-$i.log" 2>&1 &
  pids+=($!)
  wait_ready "$i" "$!" "$from"
done

touch "$base/router.log"
from=$(($(wc -l <"$base/router.log") + 1))
"$router" --listen 127.0.0.1:7400 --metrics-listen 127.0.0.1:9400 \
  --join 127.0.0.1:7401,127.0.0.1:7402,127.0.0.1:7403 \
  >>"$base/router.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 600); do
  tail -n "+$from" "$base/router.log" | grep -q "ready" && break
  if ! kill -0 "$!" 2>/dev/null; then
    echo "make run: drift-router exited; see $base/router.log" >&2
    stop
  fi
  sleep 0.1
done

cat <<MSG
Drift: a router and three nodes on 127.0.0.1 (data and logs in $base);
Ctrl-C stops them.
  router  127.0.0.1:7400  (point clients here; metrics 127.0.0.1:9400/metrics)
  node-1  127.0.0.1:7401  (Raft 127.0.0.1:7411; metrics 127.0.0.1:9401/metrics)
  node-2  127.0.0.1:7402  (Raft 127.0.0.1:7412; metrics 127.0.0.1:9402/metrics)
  node-3  127.0.0.1:7403  (Raft 127.0.0.1:7413; metrics 127.0.0.1:9403/metrics)
  status:  grpcurl -plaintext -proto proto/drift/v1/drift.proto \\
             127.0.0.1:7400 drift.v1.Cluster/Status
  API:     drift.v1.Drift at the router (proto/drift/v1/drift.proto)
MSG
wait
