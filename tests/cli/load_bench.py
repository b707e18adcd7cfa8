#!/usr/bin/python3
"""drift-cli load against a direct UpsertStream from C (upsert-direct: the
same rows packed in memory before the clock starts), side by side on one
drift-node, alternating, each run into a fresh collection.

  load_bench.py BUILD_DIR FILE [ROWS] [ROUNDS]

Prints one line per run and the ratio of the medians. The machine may be
shared: the ratio of runs made next to each other is the figure, not the
absolute rates."""
import os
import re
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                "..", "grpc"))
from grpctest import Server  # noqa: E402

BATCH = 2000


def main():
    build, path = sys.argv[1], sys.argv[2]
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else 200000
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 2
    cli = os.path.join(build, "cli", "drift-cli")
    direct = os.path.join(build, "tests", "cli", "upsert-direct")
    tmp = tempfile.mkdtemp(prefix="drift-load-bench-", dir="/var/tmp")
    # A file of exactly ROWS rows, so load and the reference send the same.
    sub = os.path.join(tmp, "sub.fvecs")
    with open(path, "rb") as f:
        d = int.from_bytes(f.read(4), "little")
        f.seek(0)
        with open(sub, "wb") as g:
            g.write(f.read(rows * (4 + 4 * d)))
    srv = Server([os.path.join(build, "node", "drift-node"), "--data-dir",
                  os.path.join(tmp, "node"), "--listen", "127.0.0.1:0",
                  "--log-level", "warn"])
    rates = {"drift-cli load": [], "upsert-direct": []}
    n = 0
    try:
        for r in range(rounds):
            order = ["drift-cli load", "upsert-direct"]
            if r % 2:
                order.reverse()
            for system in order:
                n += 1
                name = "b%d" % n
                subprocess.run([cli, "--addr", srv.addr, "collection",
                                "create", name, "--dim", str(d)],
                               check=True, stdout=subprocess.DEVNULL)
                if system == "drift-cli load":
                    out = subprocess.run(
                        [cli, "--addr", srv.addr, "--output", "json", "load",
                         name, sub, "--batch", str(BATCH)], check=True,
                        capture_output=True, text=True).stdout
                    rate = float(re.search(r'"rows_per_second":([0-9.e+]+)',
                                           out).group(1))
                else:
                    out = subprocess.run(
                        [direct, srv.addr, name, sub, str(rows), str(BATCH)],
                        check=True, capture_output=True, text=True).stdout
                    rate = float(out.split()[-1])
                rates[system].append(rate)
                print("round %d  %-15s %9.0f vectors/s" % (r + 1, system,
                                                            rate),
                      flush=True)
                subprocess.run([cli, "--addr", srv.addr, "collection",
                                "drop", name], check=True,
                               stdout=subprocess.DEVNULL)
    finally:
        srv.stop()
        subprocess.run(["rm", "-rf", tmp])
    a = statistics.median(rates["drift-cli load"])
    b = statistics.median(rates["upsert-direct"])
    print("median: drift-cli load %.0f, upsert-direct %.0f vectors/s: "
          "load at %.1f%% of direct (%d rows of dimension %d, batch %d)" %
          (a, b, 100 * a / b, rows, d, BATCH))


if __name__ == "__main__":
    main()
