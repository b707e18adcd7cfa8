#!/usr/bin/env bash
# `make run`: starts what exists on 127.0.0.1 from the build directory given.
# Today no server binary exists yet (drift-node comes with its issue), so this
# says so and fails instead of pretending.
set -euo pipefail
build=${1:-build}
node="$build/node/drift-node"
if [ ! -x "$node" ]; then
  echo "make run: there is no server yet: $node has not been built." >&2
  echo "make run: Drift's server (drift-node) is not implemented yet; see README.md." >&2
  exit 1
fi
data="$build/run-data/node-1"
mkdir -p "$data"
echo "starting drift-node on 127.0.0.1:7400 (data in $data); Ctrl-C stops it"
exec "$node" --data-dir "$data" --listen 127.0.0.1:7400
