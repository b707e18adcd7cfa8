#!/usr/bin/env bash
# make bench / make bench-quick: the benchmark harness (tests/bench/run.py).
set -euo pipefail
cd "$(dirname "$0")/../.."
exec /usr/bin/python3 tests/bench/run.py "$@"
