#!/usr/bin/python3
"""A bounded load of Upsert, Delete, Get and Search against one address (a
drift-router or any drift-node) on one collection, recording every call as
one JSON line, for tests/chaos/checker.py.

    loadgen.py --addr HOST:PORT --collection NAME --out HISTORY
               [--keys 200] [--threads 4] [--duration 30] [--ops 100000]
               [--batch 3] [--mix upsert=4,delete=1,get=4,search=1]
               [--timeout 2] [--backoff 0.05] [--seed 1]
    loadgen.py --addr HOST:PORT --collection NAME --out HISTORY --final-read
               [--keys 200] [--final-timeout 60]

The load stops at --duration seconds or --ops calls, whichever comes
first, or at SIGTERM / SIGINT (calls in flight are finished and recorded).
--final-read appends a read of every key (Get of all of them, retried
until one answer covers each chunk or --final-timeout): run it once the
faults have stopped and the cluster is healthy.

Keys are the ids 0 .. keys-1. Every upsert writes a vector that encodes
its id and a write number unique in the history ("wn", from 1), so a Get
(with_vectors) tells which write it read:

    v[0] = (id >> 12) / 4096   v[1] = (id & 4095) / 4096
    v[2] = (wn >> 12) / 4096   v[3] = (wn & 4095) / 4096
    v[4:] pseudo-random in [0, 1) from (id, wn)

(each exact in float32 for id, wn < 2**24). An Upsert or Delete carries
1..--batch distinct ids, so a call may span shards.

History, one JSON object per line (times: time.monotonic(), CLOCK_MONOTONIC,
comparable with other processes on the machine):

    {"op": "meta", "collection", "addr", "keys", "dimension", "threads",
     "seed", "wn_base"}
    {"op": "upsert", "thread", "ids": [..], "wn": [..], "start", "end",
     "outcome": "OK" | gRPC status name, "message"}
    {"op": "delete", "thread", "ids", "start", "end", "outcome", "message"}
    {"op": "get", "thread", "ids", "values": [wn or null per id],
     "bad": [[id, why], ..], "start", "end", "outcome", "message"}
    {"op": "search", "thread", "hits": [[id, wn], ..], "bad", "start", "end",
     "outcome", "message"}
    {"op": "final", "ids", "values", "bad", "start", "end", "outcome"}

values and hits are filled only when the outcome is OK. A call that is not
OK (an error status, a deadline) is indeterminate for writes: it may or may
not have happened. "bad" lists returned vectors that do not decode to
their own id (the checker counts them as corrupt).
"""
import argparse
import itertools
import json
import os
import random
import signal
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "grpc"))
# grpcio notices a connection attempt's end only when something polls: a
# call that fails fast does not, and the channel's backup poller runs every
# 5 s by default, so a channel whose server came back stayed "connection
# refused" for up to 5 s more (measured against a restarted drift-router).
os.environ.setdefault("GRPC_CLIENT_CHANNEL_BACKUP_POLL_INTERVAL_MS", "50")
import grpc  # noqa: E402

from grpctest import drift_stubs  # noqa: E402

pb, pbg, _, _ = drift_stubs()

LIMIT = 1 << 24
# Reconnect quickly once a restarted router or node listens again (grpcio's
# default backoff grows to two minutes). Not grpc.min_reconnect_backoff_ms:
# grpc-core also takes it as the connect timeout of each attempt.
CHANNEL_OPTS = [("grpc.initial_reconnect_backoff_ms", 100),
                ("grpc.max_reconnect_backoff_ms", 500)]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def encode(i, wn, dim):
    """The vector of write wn to id i (see the module comment)."""
    if not (0 <= i < LIMIT and 0 < wn < LIMIT):
        raise ValueError("id %d or write number %d out of range" % (i, wn))
    r = random.Random(i * 1000003 + wn)
    v = [(i >> 12) / 4096.0, (i & 4095) / 4096.0, (wn >> 12) / 4096.0,
         (wn & 4095) / 4096.0]
    return v + [r.random() for _ in range(dim - 4)]


def decode(i, vector):
    """(wn, None), or (None, why) when vector is not a write to id i."""
    if len(vector) < 4:
        return None, "vector has %d components" % len(vector)
    parts = []
    for x in vector[:4]:
        q = x * 4096.0
        if q != int(q) or not 0 <= q < 4096:
            return None, "component %r is not a code" % x
        parts.append(int(q))
    vid = (parts[0] << 12) | parts[1]
    wn = (parts[2] << 12) | parts[3]
    if vid != i:
        return None, "vector encodes id %d" % vid
    want = encode(i, wn, len(vector))
    if any(f32(a) != f32(b) for a, b in zip(want[4:], vector[4:])):
        return None, "components 4.. do not match write %d" % wn
    return wn, None


class History:
    """JSON lines to a file, one writer at a time."""

    def __init__(self, path, mode="w"):
        self.f = open(path, mode)
        self.mu = threading.Lock()

    def add(self, rec):
        line = json.dumps(rec, separators=(",", ":"))
        with self.mu:
            self.f.write(line + "\n")

    def close(self):
        with self.mu:
            self.f.close()


def outcome(e):
    return e.code().name, (e.details() or "")[:200]


class Load:
    def __init__(self, addr, collection, hist, keys=200, threads=4,
                 duration=30.0, ops=100000, batch=3, mix=None, timeout=2.0,
                 seed=1, wn_base=0, backoff=0.05):
        self.addr = addr
        self.collection = collection
        self.hist = hist
        self.keys = keys
        self.threads = threads
        self.duration = duration
        self.ops = ops
        self.batch = max(1, min(batch, keys))
        self.mix = mix or {"upsert": 4, "delete": 1, "get": 4, "search": 1}
        self.timeout = timeout
        self.seed = seed
        self.wn_base = wn_base
        self.backoff = backoff
        self.stop = threading.Event()
        self.calls = itertools.count()
        self.wn = itertools.count(wn_base + 1)
        self.mu = threading.Lock()
        self.ch = grpc.insecure_channel(addr, options=CHANNEL_OPTS)
        self.s = pbg.DriftStub(self.ch)
        self.dim = self._dimension()

    def _dimension(self):
        deadline = time.monotonic() + 30
        while True:
            try:
                return self.s.DescribeCollection(
                    pb.DescribeCollectionRequest(name=self.collection),
                    timeout=5).collection.dimension
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def meta(self):
        self.hist.add({"op": "meta", "collection": self.collection,
                       "addr": self.addr, "keys": self.keys,
                       "dimension": self.dim, "threads": self.threads,
                       "seed": self.seed,
                       "wn_base": self.wn_base})

    def _next_wn(self):
        with self.mu:
            return next(self.wn)

    def _take_call(self):
        with self.mu:
            return next(self.calls) < self.ops

    def _one(self, tid, rnd, kinds, weights):
        kind = rnd.choices(kinds, weights)[0]
        rec = {"op": kind, "thread": tid}
        if kind in ("upsert", "delete", "get"):
            ids = rnd.sample(range(self.keys), rnd.randint(1, self.batch))
            rec["ids"] = ids
        if kind == "upsert":
            rec["wn"] = [self._next_wn() for _ in ids]
            req = pb.UpsertRequest(collection=self.collection, points=[
                pb.Point(id=i, vector=encode(i, w, self.dim))
                for i, w in zip(ids, rec["wn"])])
            call = self.s.Upsert
        elif kind == "delete":
            req = pb.DeleteRequest(collection=self.collection, ids=ids)
            call = self.s.Delete
        elif kind == "get":
            req = pb.GetRequest(collection=self.collection, ids=ids,
                                with_vectors=True)
            call = self.s.Get
        else:
            q = [rnd.random() for _ in range(self.dim)]
            req = pb.SearchRequest(collection=self.collection, vector=q, k=5,
                                   with_vectors=True)
            call = self.s.Search
        rec["start"] = time.monotonic()
        try:
            resp = call(req, timeout=self.timeout)
            rec["end"] = time.monotonic()
            rec["outcome"], rec["message"] = "OK", ""
        except grpc.RpcError as e:
            rec["end"] = time.monotonic()
            rec["outcome"], rec["message"] = outcome(e)
            resp = None
            # As a client would: not a tight loop of failing calls while
            # a router restarts.
            self.stop.wait(self.backoff)
        if resp is not None and kind == "get":
            rec["values"], rec["bad"] = read_values(ids, resp.points)
        elif resp is not None and kind == "search":
            rec["hits"], rec["bad"] = [], []
            for h in resp.hits:
                wn, why = decode(h.id, h.vector)
                if why:
                    rec["bad"].append([h.id, why])
                else:
                    rec["hits"].append([h.id, wn])
        self.hist.add(rec)

    def _worker(self, tid, until):
        rnd = random.Random(self.seed * 7919 + tid)
        kinds = sorted(self.mix)
        weights = [self.mix[k] for k in kinds]
        while (not self.stop.is_set() and time.monotonic() < until and
               self._take_call()):
            self._one(tid, rnd, kinds, weights)

    def run(self):
        """Runs the load to its bound; returns the number of calls."""
        self.meta()
        until = time.monotonic() + self.duration
        ts = [threading.Thread(target=self._worker, args=(t, until))
              for t in range(self.threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        with self.mu:
            n = next(self.calls)
        return min(n, self.ops)

    def close(self):
        self.ch.close()


def read_values(ids, points):
    """([wn or None per id], [[id, why], ..]) of a GetResponse's points."""
    got = {}
    bad = []
    for p in points:
        wn, why = decode(p.id, p.vector)
        if why:
            bad.append([p.id, why])
        else:
            got[p.id] = wn
    return [got.get(i) for i in ids], bad


def final_read(addr, collection, hist, keys, timeout=60.0, chunk=500):
    """Reads every key through addr, each chunk retried until it answers
    (at most timeout seconds in all); returns the number of chunks that
    never did (0 when every key was read)."""
    ch = grpc.insecure_channel(addr, options=CHANNEL_OPTS)
    s = pbg.DriftStub(ch)
    deadline = time.monotonic() + timeout
    missed = 0
    for lo in range(0, keys, chunk):
        ids = list(range(lo, min(keys, lo + chunk)))
        while True:
            rec = {"op": "final", "ids": ids, "start": time.monotonic()}
            try:
                resp = s.Get(pb.GetRequest(collection=collection, ids=ids,
                                           with_vectors=True), timeout=10)
                rec["end"] = time.monotonic()
                rec["outcome"], rec["message"] = "OK", ""
                rec["values"], rec["bad"] = read_values(ids, resp.points)
                hist.add(rec)
                break
            except grpc.RpcError as e:
                rec["end"] = time.monotonic()
                rec["outcome"], rec["message"] = outcome(e)
                if time.monotonic() > deadline:
                    hist.add(rec)
                    missed += 1
                    break
                time.sleep(0.2)
    ch.close()
    return missed


def parse_mix(text):
    mix = {}
    for part in text.split(","):
        k, _, v = part.partition("=")
        if k not in ("upsert", "delete", "get", "search") or not v.isdigit():
            raise argparse.ArgumentTypeError(
                "--mix: %r is not KIND=WEIGHT (kinds upsert, delete, get, "
                "search)" % part)
        mix[k] = int(v)
    if not any(mix.values()):
        raise argparse.ArgumentTypeError("--mix: every weight is 0")
    return mix


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--addr", required=True)
    ap.add_argument("--collection", required=True)
    ap.add_argument("--out", required=True, help="history file (JSON lines)")
    ap.add_argument("--keys", type=int, default=200)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--duration", type=float, default=30.0)
    ap.add_argument("--ops", type=int, default=100000)
    ap.add_argument("--batch", type=int, default=3)
    ap.add_argument("--mix", type=parse_mix,
                    default=parse_mix("upsert=4,delete=1,get=4,search=1"))
    ap.add_argument("--timeout", type=float, default=2.0,
                    help="deadline of each call, seconds")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--backoff", type=float, default=0.05,
                    help="a thread's pause after a failed call, seconds")
    ap.add_argument("--wn-base", type=int, default=0,
                    help="write numbers start after this (a second load "
                    "on the same collection must not reuse numbers)")
    ap.add_argument("--final-read", action="store_true")
    ap.add_argument("--final-timeout", type=float, default=60.0)
    a = ap.parse_args(argv)
    for name in ("keys", "threads", "ops", "batch"):
        if getattr(a, name) < 1:
            ap.error("--%s must be at least 1" % name)
    if a.keys > LIMIT or a.duration <= 0 or a.timeout <= 0:
        ap.error("--keys at most 2^24, --duration and --timeout positive")
    if a.final_read:
        hist = History(a.out, "a")
        missed = final_read(a.addr, a.collection, hist, a.keys,
                            a.final_timeout)
        hist.close()
        if missed:
            print("final read: %d chunk(s) of keys never answered" % missed,
                  file=sys.stderr)
            return 1
        return 0
    hist = History(a.out)
    load = Load(a.addr, a.collection, hist, keys=a.keys, threads=a.threads,
                duration=a.duration, ops=a.ops, batch=a.batch, mix=a.mix,
                timeout=a.timeout, seed=a.seed, wn_base=a.wn_base,
                backoff=a.backoff)

    def on_signal(signum, frame):
        load.stop.set()
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    print("load started", flush=True)
    n = load.run()
    load.close()
    hist.close()
    print("load done: %d calls" % n, flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
