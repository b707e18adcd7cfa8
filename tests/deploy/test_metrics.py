#!/usr/bin/python3
"""Operating drift-node: GET /metrics on --metrics-listen and JSON logs.

A real drift-node with --metrics-listen and --log-format json. Every
scrape is parsed line by line with the strict parser of promparse.py
(the Prometheus text exposition format, 0.0.4), and the counters must
move by exactly the calls made: requests by method and code, latency
histograms, live vectors, L0 rows and L1 vectors per shard, WAL fsyncs,
Janitor flushes. Scrapes run while searches do, and each still parses.
The HTTP side answers only GET/HEAD /metrics. Bad flags exit non-zero
with a message. At the end every line the node wrote to stderr must be
one JSON object with time, level, message and source, and the lines of a
call carry its x-request-id. Then a cluster of three (one bootstraps, two
join): every node's scrape parses, one leads, they agree on the map after
a create through a follower, and their JSON logs parse line by line. The parser itself is checked
against broken expositions first, so a lax parser cannot pass."""
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
sys.path.insert(0, HERE)
import grpc  # noqa: E402

import promparse  # noqa: E402
from grpctest import Tap, drift_stubs  # noqa: E402

pb, pbg, hpb, hpbg = drift_stubs()
NODE = os.environ["DRIFT_NODE"]
ROUTER = os.environ["DRIFT_ROUTER"]
C = grpc.StatusCode
DIM = 16
T = Tap()


class Node:
    """drift-node with its stderr in a file; the ports from stdout."""

    def __init__(self, data, extra=(), argv=None):
        self.log = open(data + ".log", "w+")
        if argv is None:
            argv = [NODE, "--data-dir", data, "--memtable-rows", "200"]
        self.proc = subprocess.Popen(
            argv + ["--listen", "127.0.0.1:0", "--metrics-listen",
                    "127.0.0.1:0", "--log-format", "json", "--log-level",
                    "debug"] + list(extra),
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        self.port = self.mport = None
        deadline = time.time() + 30
        while time.time() < deadline and self.mport is None:
            line = self.proc.stdout.readline()
            if not line:
                break
            m = re.match(r"(listening|metrics) on \S+:(\d+)$", line.strip())
            if m and m.group(1) == "listening":
                self.port = int(m.group(2))
            elif m:
                self.mport = int(m.group(2))
        if self.port is None or self.mport is None:
            self.proc.kill()
            raise RuntimeError("drift-node did not start")
        self.ch = grpc.insecure_channel("127.0.0.1:%d" % self.port)
        self.s = pbg.DriftStub(self.ch)

    def stop(self):
        self.ch.close()
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(30)
        self.log.seek(0)
        return rc, self.log.read()


def http(port, request):
    """Sends a raw HTTP request; returns (status, headers dict, body)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request.encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for h in lines[1:]:
        k, _, v = h.partition(":")
        headers[k.strip().lower()] = v.strip()
    return status, headers, body


def scrape(port):
    st, h, body = http(port, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    if st != 200:
        raise RuntimeError("GET /metrics: %d" % st)
    if int(h.get("content-length", -1)) != len(body):
        raise RuntimeError("Content-Length %s for %d bytes" %
                           (h.get("content-length"), len(body)))
    return h, promparse.parse(body.decode("utf-8"))


def val(fams, name, **labels):
    f = fams.get(name)
    v = f.value(**labels) if f is not None else None
    return 0.0 if v is None else v


def hist_count(fams, name, **labels):
    f = fams.get(name)
    for sname, lab, v in (f.samples if f else []):
        if sname == name + "_count" and lab == labels:
            return v
    return 0.0


def sum_over(fams, name, **match):
    f = fams.get(name)
    return sum(v for sname, lab, v in (f.samples if f else [])
               if sname == name and
               all(lab.get(k) == x for k, x in match.items()))


def vec(i):
    r = random.Random(i)
    return [r.uniform(-1, 1) for _ in range(DIM)]


# ---- The parser refuses what the format forbids ----

BROKEN = {
    "no HELP/TYPE": "drift_x 1\n",
    "no final newline": "# HELP drift_x x\n# TYPE drift_x gauge\ndrift_x 1",
    "bad escape": '# HELP drift_x x\n# TYPE drift_x gauge\n'
                  'drift_x{a="\\t"} 1\n',
    "duplicate series": "# HELP drift_x x\n# TYPE drift_x gauge\n"
                        "drift_x 1\ndrift_x 2\n",
    "counter without _total": "# HELP drift_x x\n# TYPE drift_x counter\n"
                              "drift_x 1\n",
    "not cumulative": "# HELP drift_h h\n# TYPE drift_h histogram\n"
                      'drift_h_bucket{le="1"} 2\n'
                      'drift_h_bucket{le="+Inf"} 1\n'
                      "drift_h_sum 1\ndrift_h_count 1\n",
    "no +Inf": "# HELP drift_h h\n# TYPE drift_h histogram\n"
               'drift_h_bucket{le="1"} 1\ndrift_h_sum 1\ndrift_h_count 1\n',
    "count != +Inf": "# HELP drift_h h\n# TYPE drift_h histogram\n"
                     'drift_h_bucket{le="+Inf"} 2\n'
                     "drift_h_sum 1\ndrift_h_count 1\n",
    "family split": "# HELP drift_a a\n# TYPE drift_a gauge\ndrift_a 1\n"
                    "# HELP drift_b b\n# TYPE drift_b gauge\ndrift_b 1\n"
                    '# HELP drift_a a\n',
    "bad value": "# HELP drift_x x\n# TYPE drift_x gauge\ndrift_x one\n",
    "other prefix": "# HELP go_x x\n# TYPE go_x gauge\ngo_x 1\n",
}
GOOD = ("# HELP drift_h h \\\\ \\n\n# TYPE drift_h histogram\n"
        'drift_h_bucket{m="a\\"b",le="0.5"} 1\n'
        'drift_h_bucket{m="a\\"b",le="+Inf"} 3\n'
        'drift_h_sum{m="a\\"b"} 2.5\ndrift_h_count{m="a\\"b"} 3\n')


def parser_cases():
    for what, text in BROKEN.items():
        try:
            promparse.parse(text)
            T.check(False, "the parser refuses: " + what)
        except promparse.ParseError:
            T.check(True, "the parser refuses: " + what)
    f = promparse.parse(GOOD)["drift_h"]
    T.check(f.help == "h \\ \n" and f.samples[0][1] == {"m": 'a"b',
                                                         "le": "0.5"},
            "the parser reads escapes back")


# ---- The node ----

def metrics_cases(n, tmp):
    h, before = scrape(n.mport)
    T.check(h.get("content-type", "").startswith(
        "text/plain; version=0.0.4"), "Content-Type is the text format's")
    T.check(val(before, "drift_process_resident_memory_bytes") > 0,
            "process RSS is exported")

    rid = "deploy-test-create-1"
    n.s.CreateCollection(pb.CreateCollectionRequest(
        name="ops", dimension=DIM, shards=2), timeout=30,
        metadata=(("x-request-id", rid),))
    ups, total = 5, 0
    for b in range(ups):
        pts = [pb.Point(id=b * 100 + i, vector=vec(b * 100 + i))
               for i in range(100)]
        total += n.s.Upsert(pb.UpsertRequest(collection="ops", points=pts),
                            timeout=30).written
    searches = 7
    for i in range(searches):
        n.s.Search(pb.SearchRequest(collection="ops", vector=vec(i), k=5),
                   timeout=30)
    try:
        n.s.Search(pb.SearchRequest(collection="ops", vector=[1.0], k=5),
                   timeout=30)
        bad = C.OK
    except grpc.RpcError as e:
        bad = e.code()
    T.check(bad == C.INVALID_ARGUMENT, "a wrong dimension is refused")
    try:
        n.s.Search(pb.SearchRequest(collection="nope", vector=vec(0), k=5),
                   timeout=30)
    except grpc.RpcError:
        pass

    _, after = scrape(n.mport)
    method = "drift.v1.Drift/"

    def delta(m, code):
        return val(after, "drift_grpc_requests_total", method=method + m,
                   code=code) - \
            val(before, "drift_grpc_requests_total", method=method + m,
                code=code)
    T.check(delta("Upsert", "OK") == ups,
            "Upsert OK counted %d times (got %g)" %
            (ups, delta("Upsert", "OK")))
    T.check(delta("Search", "OK") == searches,
            "Search OK counted %d times (got %g)" %
            (searches, delta("Search", "OK")))
    T.check(delta("Search", "INVALID_ARGUMENT") == 1,
            "the bad Search counted under INVALID_ARGUMENT")
    T.check(delta("Search", "NOT_FOUND") == 1,
            "the unknown collection counted under NOT_FOUND")
    T.check(delta("CreateCollection", "OK") == 1, "CreateCollection counted")
    lat = hist_count(after, "drift_grpc_request_duration_seconds",
                     method=method + "Search") - \
        hist_count(before, "drift_grpc_request_duration_seconds",
                   method=method + "Search")
    T.check(lat == searches + 2,
            "the Search latency histogram counts every call (%g)" % lat)
    live = sum_over(after, "drift_shard_live_vectors", collection="ops")
    T.check(live == total == 500, "live vectors over shards = %g" % live)
    shards = {lab["shard"] for _, lab, _ in
              after["drift_shard_live_vectors"].samples
              if lab["collection"] == "ops"}
    T.check(shards == {"0", "1"}, "one series per shard: %s" % shards)
    T.check(sum_over(after, "drift_shard_l0_rows", collection="ops") +
            sum_over(after, "drift_shard_l1_vectors", collection="ops")
            >= 500, "L0 rows + L1 vectors hold every vector")
    fs = hist_count(after, "drift_wal_fsync_seconds") - \
        hist_count(before, "drift_wal_fsync_seconds")
    T.check(fs >= ups, "every acknowledged batch was fsynced (%g)" % fs)
    T.check(val(after, "drift_grpc_connections") >= 1,
            "the open connection is counted")
    # One call stays open: the node's own WatchShardMap, the map it
    # follows to forward requests for shards it does not hold.
    T.check(val(after, "drift_grpc_calls_in_flight") == 1,
            "no call in flight once all answered but the node's own "
            "shard-map watch")

    # The node is a cluster of one: its own Raft leader.
    T.check(val(after, "drift_raft_role") == 3 and
            val(after, "drift_raft_voters") == 1 and
            val(after, "drift_raft_leader_known") == 1,
            "Raft: the leader of a cluster of one")
    T.check(val(after, "drift_raft_term") >= 1 and
            0 < val(after, "drift_raft_applied_index") <=
            val(after, "drift_raft_commit_index") <=
            val(after, "drift_raft_last_index"),
            "Raft term and indexes: applied <= commit <= last")
    T.check(val(after, "drift_cluster_map_version") >
            val(before, "drift_cluster_map_version"),
            "the map version moved with the create (%g -> %g)" %
            (val(before, "drift_cluster_map_version"),
             val(after, "drift_cluster_map_version")))
    T.check(val(after, "drift_cluster_nodes", state="up") == 1 and
            val(after, "drift_cluster_collections") == 1,
            "the map: one node up, one collection")
    sync = [(lab["shard"], v) for _, lab, v in
            after["drift_shard_replica_in_sync"].samples
            if lab["collection"] == "ops"] \
        if "drift_shard_replica_in_sync" in after else []
    T.check(sorted(sync) == [("0", 1), ("1", 1)],
            "each shard's one replica is in sync: %s" % sync)

    acts = ("flush", "split", "merge", "recenter", "compaction")
    T.check(all(("drift_janitor_action_seconds_count", {"action": a})
                in [(s, lab) for s, lab, _ in
                    after["drift_janitor_action_seconds"].samples]
                for a in acts)
            if "drift_janitor_action_seconds" in after else False,
            "a duration histogram for every Janitor action, before any")
    n.s.Flush(pb.FlushRequest(collection="ops"), timeout=60)
    _, flushed = scrape(n.mport)
    fl = sum_over(flushed, "drift_janitor_actions_total", collection="ops",
                  action="flush")
    T.check(fl >= 1, "the Janitor's flushes are counted (%g)" % fl)
    # A flush is counted, then timed, under the shard's L1 lock, which the
    # Flush call waits for: every flush counted at the last scrape is timed
    # now, and nothing is timed that is not counted.
    fl_before = sum_over(after, "drift_janitor_actions_total",
                         collection="ops", action="flush")
    timed = hist_count(flushed, "drift_janitor_action_seconds",
                       action="flush")
    T.check(fl_before < timed <= fl and
            timed > hist_count(after, "drift_janitor_action_seconds",
                               action="flush"),
            "the Flush's durations are in the histogram (%g timed, %g "
            "flushes before it, %g after)" % (timed, fl_before, fl))
    secs = sum(v for s, lab, v in
               flushed["drift_janitor_action_seconds"].samples
               if s == "drift_janitor_action_seconds_sum" and
               lab == {"action": "flush"})
    T.check(0 < secs < 60, "flush durations add up to %g s" % secs)
    l1 = sum_over(flushed, "drift_shard_l1_vectors", collection="ops")
    T.check(l1 == 500, "after Flush L1 holds the 500 vectors (%g)" % l1)
    T.check(sum_over(flushed, "drift_shard_l1_buckets", collection="ops")
            >= 2, "L1 buckets are exported")
    b = sum_over(flushed, "drift_shard_l1_bytes", collection="ops")
    T.check(b >= 500 * DIM * 4, "L1 segment bytes on disk hold at least "
            "the 500 full vectors (%g)" % b)
    T.check(val(flushed, "drift_collection_memory_bytes",
                collection="ops") > 0, "collection memory is exported")
    return rid


def compaction_cases(n):
    """A segment left mostly garbage is compacted by the Janitor: counted
    and timed. Four clusters far apart, 512 vectors each (k-means gives
    them a bucket each, in one memtable); deleting three of them leaves the first segment a
    quarter live, under the compaction threshold of a half."""
    n.s.CreateCollection(pb.CreateCollectionRequest(
        name="cmp", dimension=DIM, shards=1, memtable_rows=4096),
        timeout=30)
    r = random.Random(7)
    pts = [pb.Point(id=i, vector=[(100.0 if j == i // 512 else 0.0) +
                                  r.gauss(0, 1) for j in range(DIM)])
           for i in range(2048)]
    n.s.Upsert(pb.UpsertRequest(collection="cmp", points=pts), timeout=60)
    n.s.Flush(pb.FlushRequest(collection="cmp"), timeout=60)
    _, before = scrape(n.mport)
    n.s.Delete(pb.DeleteRequest(collection="cmp",
                                ids=list(range(512, 2048))), timeout=60)
    n.s.Flush(pb.FlushRequest(collection="cmp"), timeout=60)
    done, deadline = 0, time.time() + 20
    while done < 1 and time.time() < deadline:
        time.sleep(0.2)
        _, now = scrape(n.mport)
        done = sum_over(now, "drift_janitor_actions_total",
                        collection="cmp", action="compaction")
    T.check(done >= 1, "the Janitor compacts the mostly deleted segment "
            "(%g compactions)" % done)
    timed = hist_count(now, "drift_janitor_action_seconds",
                       action="compaction") - \
        hist_count(before, "drift_janitor_action_seconds",
                   action="compaction")
    T.check(timed >= done, "each compaction is timed (%g timed, %g done)"
            % (timed, done))
    T.check(sum_over(now, "drift_shard_live_vectors", collection="cmp")
            == 512, "512 vectors live after the compaction")
    n.s.DropCollection(pb.DropCollectionRequest(name="cmp"), timeout=30)


def concurrent_scrapes(n):
    """Scrapes while 4 clients search: every scrape parses, and the
    searches are all counted."""
    stop = time.time() + 3
    errors, done = [], [0] * 4

    def client(k):
        ch = grpc.insecure_channel("127.0.0.1:%d" % n.port)
        s = pbg.DriftStub(ch)
        while time.time() < stop and done[k] < 500:
            s.Search(pb.SearchRequest(collection="ops", vector=vec(k),
                                      k=10), timeout=30)
            done[k] += 1
        ch.close()
    _, before = scrape(n.mport)
    ts = [threading.Thread(target=client, args=(k,)) for k in range(4)]
    for t in ts:
        t.start()
    scrapes = 0
    while any(t.is_alive() for t in ts):
        try:
            scrape(n.mport)
            scrapes += 1
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(str(e))
    for t in ts:
        t.join()
    _, after = scrape(n.mport)
    key = dict(method="drift.v1.Drift/Search", code="OK")
    got = val(after, "drift_grpc_requests_total", **key) - \
        val(before, "drift_grpc_requests_total", **key)
    T.check(not errors and scrapes > 0,
            "%d scrapes during searches all parse %s" % (scrapes,
                                                         errors[:1]))
    T.check(got == sum(done), "%d searches, %g counted" % (sum(done), got))


# Families the dashboard shows that a lone drift-node does not export: the
# router's, and those of replicas and moves (a cluster's primaries and
# leader: docs/operations.md, "Metrics"; tests/cluster checks the lag).
NOT_NODE = {"drift_router_fanout_seconds", "drift_replication_lag_ops",
            "drift_shard_moves_in_progress"}  # the first: routers export it


def dashboard_cases(n):
    """Every metric the Grafana dashboard queries is one drift-node
    exports (or one of NOT_NODE), under its exported type."""
    with open(os.path.join(HERE, "..", "..", "deploy", "grafana",
                           "drift.json")) as f:
        dash = json.load(f)
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [v["query"]["query"] for v in dash["templating"]["list"]
              if isinstance(v.get("query"), dict)]
    _, fams = scrape(n.mport)
    missing = []
    for e in exprs:
        for name in re.findall(r"\bdrift_[a-z0-9_]+", e):
            base = re.sub(r"_(bucket|sum|count)$", "", name)
            f = fams.get(base) or fams.get(name)
            if f is None and base not in NOT_NODE:
                missing.append(name)
            elif f is not None and name.endswith("_bucket") and \
                    f.type != "histogram":
                missing.append(name + " (not a histogram)")
    T.check(exprs and not missing, "the dashboard's %d queries name only "
            "exported metrics %s" % (len(exprs), missing))


def http_cases(n):
    st, _, _ = http(n.mport, "HEAD /metrics HTTP/1.1\r\n\r\n")
    T.check(st == 200, "HEAD /metrics is 200")
    st, _, _ = http(n.mport, "GET /other HTTP/1.1\r\n\r\n")
    T.check(st == 404, "another path is 404")
    st, _, _ = http(n.mport, "POST /metrics HTTP/1.1\r\n"
                             "Content-Length: 0\r\n\r\n")
    T.check(st == 405, "POST is 405")
    st, _, _ = http(n.mport, "nonsense\r\n\r\n")
    T.check(st == 400, "a bad request line is 400")


def bad_flags(tmp):
    for extra, what in ((["--metrics-listen", "nohost"], "metrics-listen"),
                        (["--log-format", "xml"], "log-format")):
        p = subprocess.run([NODE, "--data-dir", os.path.join(tmp, "bad"),
                            "--listen", "127.0.0.1:0"] + extra,
                           capture_output=True, text=True, timeout=30)
        T.check(p.returncode != 0 and what in p.stderr,
                "%s refused with a message naming it (rc %d: %s)" %
                (" ".join(extra), p.returncode, p.stderr.strip()[:120]))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        p = subprocess.run([NODE, "--data-dir", os.path.join(tmp, "busy"),
                            "--listen", "127.0.0.1:0", "--metrics-listen",
                            "127.0.0.1:%d" % port],
                           capture_output=True, text=True, timeout=30)
        T.check(p.returncode != 0 and "metrics" in p.stderr,
                "a metrics port in use: exit %d, %s" %
                (p.returncode, p.stderr.strip()[-120:]))


STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z\Z")


def log_cases(text, rid):
    lines = text.splitlines()
    bad = []
    objs = []
    for i, line in enumerate(lines, 1):
        try:
            o = json.loads(line)
            ok = (isinstance(o, dict) and STAMP.match(o.get("time", "")) and
                  o.get("level") in ("trace", "debug", "info", "warn",
                                     "error") and
                  isinstance(o.get("message"), str) and
                  isinstance(o.get("source"), str))
        except ValueError:
            ok = False
        if not ok:
            bad.append("line %d: %r" % (i, line[:200]))
        else:
            objs.append(o)
    T.check(lines and not bad, "%d log lines, every one a JSON object "
            "with time, level, message, source %s" % (len(lines), bad[:2]))
    ready = [o for o in objs if "ready" in o["message"]]
    T.check(ready and ready[0].get("node_id"),
            "the ready line is there, with the node id: %s" % ready[:1])
    call = [o for o in objs if o.get("request_id") == rid]
    T.check(call and "drift.v1.Drift/CreateCollection: OK" in
            call[-1]["message"] and call[-1].get("node_id"),
            "the call's line carries its x-request-id: %s" % call[-1:])
    created = [o for o in objs if "created" in o["message"]]
    T.check(created and created[0].get("collection") == "ops",
            "the create line carries the collection: %s" % created[:1])
    made = {o["request_id"] for o in objs
            if o.get("request_id") and o["request_id"] != rid}
    T.check(len(made) >= 10, "calls without x-request-id get ids of "
            "their own, each its own (%d)" % len(made))


def parse_log(text):
    """The JSON objects of a log; raises on a line that is not one."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        o = json.loads(line)
        if not (isinstance(o, dict) and STAMP.match(o.get("time", "")) and
                isinstance(o.get("message"), str)):
            raise ValueError("line %d: %r" % (i, line[:200]))
        out.append(o)
    return out


def cluster_cases(tmp):
    """Three nodes (one bootstraps, two join it): every node's scrape
    parses and agrees on the cluster, exactly one leads, and a collection
    created through a follower reaches every node's map."""
    nodes = []
    try:
        for i in range(3):
            d = os.path.join(tmp, "c%d" % i)
            extra = [] if i == 0 else \
                ["--join", "127.0.0.1:%d" % nodes[0].port]
            nodes.append(Node(d, extra + ["--node-id", "c%d" % i]))
        deadline = time.time() + 30
        while True:
            fams = [scrape(n.mport)[1] for n in nodes]
            if all(val(f, "drift_cluster_nodes", state="up") == 3 and
                   val(f, "drift_raft_voters") == 3 and
                   val(f, "drift_raft_leader_known") == 1
                   for f in fams) or time.time() > deadline:
                break
            time.sleep(0.2)
        roles = sorted(val(f, "drift_raft_role") for f in fams)
        T.check(roles == [1, 1, 3], "three nodes: one leader, two "
                "followers (roles %s)" % roles)
        T.check(all(val(f, "drift_cluster_nodes", state="up") == 3 and
                    val(f, "drift_raft_voters") == 3 for f in fams),
                "every node's map has three nodes up and three voters")
        follower = [n for n, f in zip(nodes, fams)
                    if val(f, "drift_raft_role") == 1][0]
        _, before = scrape(follower.mport)
        follower.s.CreateCollection(pb.CreateCollectionRequest(
            name="spread", dimension=DIM, shards=3), timeout=30)
        _, after = scrape(follower.mport)
        key = dict(method="drift.v1.Drift/CreateCollection", code="OK")
        T.check(val(after, "drift_grpc_requests_total", **key) -
                val(before, "drift_grpc_requests_total", **key) == 1,
                "the follower counted the create it forwarded")
        deadline = time.time() + 10
        while True:
            fams = [scrape(n.mport)[1] for n in nodes]
            versions = {val(f, "drift_cluster_map_version") for f in fams}
            if (len(versions) == 1 and
                    all(val(f, "drift_cluster_collections") == 1
                        for f in fams)) or time.time() > deadline:
                break
            time.sleep(0.2)
        T.check(len(versions) == 1 and all(
            val(f, "drift_cluster_collections") == 1 for f in fams),
            "every node applied the create (map versions %s)" % versions)
        # A router in front of them: its own scrape and JSON log.
        router = Node(os.path.join(tmp, "router"),
                      ["--join", ",".join("127.0.0.1:%d" % n.port
                                          for n in nodes)],
                      argv=[ROUTER])
        try:
            _, r0 = scrape(router.mport)
            router.s.ListCollections(pb.ListCollectionsRequest(),
                                     timeout=30)
            router.s.Search(pb.SearchRequest(collection="spread",
                                             vector=vec(1), k=5),
                            timeout=30)
            _, r1 = scrape(router.mport)
            parts = sum(v for sname, _, v in
                        r1["drift_router_fanout_seconds"].samples
                        if sname == "drift_router_fanout_seconds_count") \
                if "drift_router_fanout_seconds" in r1 else 0
            T.check(parts >= 3, "a search over 3 shards timed each node's "
                    "part of the fan-out (%g parts)" % parts)
            key = dict(method="drift.v1.Drift/ListCollections", code="OK")
            T.check(val(r1, "drift_grpc_requests_total", **key) -
                    val(r0, "drift_grpc_requests_total", **key) == 1 and
                    val(r1, "drift_router_map_version") in versions and
                    val(r1, "drift_process_resident_memory_bytes") > 0,
                    "drift-router's /metrics parses, counts its calls and "
                    "routes by the nodes' map version (%g)" %
                    val(r1, "drift_router_map_version"))
        finally:
            _, rlog = router.stop()
        try:
            T.check(any("ready" in o["message"] for o in parse_log(rlog)),
                    "drift-router's JSON log parses, line by line")
        except ValueError as e:
            T.check(False, "drift-router's JSON log parses: %s" % e)
        shards = {lab["shard"] for f in fams
                  if "drift_shard_live_vectors" in f
                  for _, lab, _ in f["drift_shard_live_vectors"].samples
                  if lab["collection"] == "spread"}
        T.check(shards == {"0", "1", "2"}, "every shard is exported by a "
                "node that opened it: %s" % sorted(shards))
    finally:
        logs = [n.stop()[1] for n in nodes]
    ids = set()
    try:
        for text in logs:
            objs = parse_log(text)
            ids |= {o["node_id"] for o in objs if "node_id" in o}
        T.check(ids == {"c0", "c1", "c2"}, "the cluster run's JSON logs "
                "parse, line by line, each naming its node: %s" % ids)
    except ValueError as e:
        T.check(False, "the cluster run's JSON logs parse: %s" % e)


def main():
    tmp = tempfile.mkdtemp(prefix="drift-deploy-")
    try:
        parser_cases()
        data = os.path.join(tmp, "data")
        os.mkdir(data)
        n = Node(data)
        rid = None
        try:
            rid = metrics_cases(n, tmp)
            compaction_cases(n)
            concurrent_scrapes(n)
            dashboard_cases(n)
            http_cases(n)
        finally:
            rc, log = n.stop()
        T.check(rc == 0, "drift-node stopped cleanly (%s)" % rc)
        log_cases(log, rid)
        cluster_cases(tmp)
        bad_flags(tmp)
    except Exception as e:  # noqa: BLE001 - a failed check, reported
        T.check(False, "raised %s: %s" % (type(e).__name__, e))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    T.done()


if __name__ == "__main__":
    main()
