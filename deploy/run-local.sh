#!/usr/bin/env bash
# `make run`: starts what exists on 127.0.0.1 from the build directory given.
#
# Today that is one drift-node (the three-node cluster with the Raft
# metadata group and a router comes with the cluster issue). Its data lives
# under BUILD/run-data/node-1 and survives restarts; Ctrl-C stops it
# gracefully.
set -euo pipefail
build=${1:-build}
node="$build/node/drift-node"
if [ ! -x "$node" ]; then
  echo "make run: $node has not been built (run make build)." >&2
  exit 1
fi
addr=${DRIFT_LISTEN:-127.0.0.1:7400}
data="$build/run-data/node-1"
mkdir -p "$data"
cat <<MSG
drift-node on $addr (data in $data); Ctrl-C stops it.
  health:  grpcurl -plaintext -proto proto/grpc/health/v1/health.proto \\
             $addr grpc.health.v1.Health/Check
  API:     drift.v1.Drift at $addr (proto/drift/v1/drift.proto); see the
           Python example in README.md
MSG
exec "$node" --data-dir "$data" --listen "$addr"
