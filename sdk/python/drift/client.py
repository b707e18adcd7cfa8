"""drift.Client: the public API of a Drift router or node, with numpy in
and out.

A client holds one gRPC channel (HTTP/2, multiplexed) and no other mutable
state, so one client may be shared by any number of threads. UNAVAILABLE
(no connection, no quorum: nothing was done) is retried with exponential
back-off and jitter until the call's timeout, or 5 times when there is
none; every other error raises at once. Retried writes are safe: an upsert
or delete applied twice leaves the same state (a retried
create_collection may answer AlreadyExists for its own first attempt).
"""
import random
import time
from typing import (Any, Callable, Dict, Iterator, List, Optional, Sequence,
                    Tuple, TypeVar)

import grpc
import numpy as np
import numpy.typing as npt

from drift import _stubs
from drift.errors import InvalidArgument, from_rpc_error
from drift.types import (ClusterStatus, CollectionInfo, Hit, NodeInfo, Point,
                         ShardAssignment, ShardMap, ShardMove, ShardStats)

pb, pbg = _stubs.load()

T = TypeVar("T")
ArrayLike = npt.ArrayLike
IdArray = npt.NDArray[np.uint64]
FloatArray = npt.NDArray[np.float32]

MAX_MESSAGE = 64 << 20        # the server's default limit
BATCH_BYTES = 4 << 20         # vectors per Upsert message, at most
SEARCH_BATCH = 1024           # queries per SearchBatch call
MAX_RETRIES = 5               # UNAVAILABLE retries when there is no timeout
BACKOFF_MIN = 0.05
BACKOFF_MAX = 2.0

_METRICS = {"l2": pb.METRIC_L2, "ip": pb.METRIC_IP,
            "cosine": pb.METRIC_COSINE}
_METRIC_NAMES = {v: k for k, v in _METRICS.items()}
_SYNCS = {"always": pb.WAL_SYNC_ALWAYS, "batch": pb.WAL_SYNC_BATCH,
          "none": pb.WAL_SYNC_NONE}
_SYNC_NAMES = {v: k for k, v in _SYNCS.items()}
_STATES = {pb.NODE_STATE_UP: "up", pb.NODE_STATE_DOWN: "down",
           pb.NODE_STATE_JOINING: "joining",
           pb.NODE_STATE_LEAVING: "leaving"}
_ROLES = {pb.NODE_ROLE_LEADER: "leader", pb.NODE_ROLE_VOTER: "voter",
          pb.NODE_ROLE_STANDBY: "standby"}


# ---- Conversions ----------------------------------------------------------

def _ids(ids: ArrayLike) -> IdArray:
    """ids as uint64, every value checked (0..2^64-1)."""
    # Python ints go through object arrays: numpy would make [2**64-1, 0]
    # float64 and lose the id.
    a = ids if isinstance(ids, np.ndarray) else np.asarray(ids, dtype=object)
    if a.ndim == 0:
        a = a.reshape(1)
    if a.ndim != 1:
        raise InvalidArgument("ids must be one-dimensional, got shape %s" %
                              (a.shape,))
    if a.size == 0:
        return np.zeros(0, dtype=np.uint64)
    if a.dtype == object:
        vals = a.tolist()
        if not all(isinstance(v, (int, np.integer)) and
                   not isinstance(v, bool) and 0 <= v < 1 << 64
                   for v in vals):
            raise InvalidArgument("ids must be integers in 0..2^64-1")
        return np.array(vals, dtype=np.uint64)
    if a.dtype.kind == "u":
        return a.astype(np.uint64, copy=False)
    if a.dtype.kind == "i":
        if (a < 0).any():
            raise InvalidArgument("ids must be integers in 0..2^64-1, "
                                  "got %d" % int(a[a < 0][0]))
        return a.astype(np.uint64)
    raise InvalidArgument("ids must be integers, got dtype %s" % a.dtype)


def _floats(v: ArrayLike, what: str) -> FloatArray:
    try:
        a = np.asarray(v, dtype=np.float32)
    except (TypeError, ValueError) as e:
        raise InvalidArgument("%s: not numbers (%s)" % (what, e)) from None
    if a.size > 0 and not np.isfinite(a).all():
        raise InvalidArgument("%s: NaN or infinite component" % what)
    return a


def _varint(v: int) -> bytes:
    out = bytearray()
    while v >= 0x80:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


def _encode_upsert(collection: str, ids: IdArray, vecs: FloatArray) -> bytes:
    """An UpsertRequest in protobuf wire format, built straight from the
    arrays (a Point message per row would cost more than the network):
    field 1 collection; field 2 points, each Point {1: id varint,
    2: packed floats}."""
    name = collection.encode()
    parts = [b"\x0a", _varint(len(name)), name]
    d = vecs.shape[1]
    vlen = b"\x12" + _varint(4 * d)
    raw = np.ascontiguousarray(vecs, dtype="<f4").tobytes()
    row = 4 * d
    for i, id_ in enumerate(ids.tolist()):
        body = b"\x08" + _varint(id_) + vlen
        parts.append(b"\x12")
        parts.append(_varint(len(body) + row))
        parts.append(body)
        parts.append(raw[i * row:(i + 1) * row])
    return b"".join(parts)


def _hits(r: Any, with_vectors: bool) -> List[Hit]:
    if not with_vectors:
        return [Hit(h.id, h.distance) for h in r.hits]
    return [Hit(h.id, h.distance, np.array(h.vector, dtype=np.float32))
            for h in r.hits]


def _info(c: Any) -> CollectionInfo:
    stats = [ShardStats(s.shard, s.live, s.l0_rows, s.l0_tombstones,
                        s.l1_vectors, s.l1_buckets, s.segments, s.wal_bytes,
                        s.wal_seq, s.flushed_seq, s.flushes, s.splits,
                        s.merges, s.recenters, s.memory_bytes)
             for s in c.shard_stats]
    return CollectionInfo(c.name, c.dimension,
                          _METRIC_NAMES.get(c.metric, "unknown"),
                          c.vector_count, c.shards, c.replication_factor,
                          _SYNC_NAMES.get(c.wal_sync, "unknown"),
                          c.memtable_rows, c.default_recall, c.memory_bytes,
                          c.memory_limit, stats)


def _node(n: Any) -> NodeInfo:
    return NodeInfo(n.id, n.address, _STATES.get(n.state, "unknown"),
                    _ROLES.get(n.role, "unknown"), n.raft_address, n.shards,
                    n.primaries)


def _move(m: Any) -> ShardMove:
    return ShardMove(m.collection, m.shard, getattr(m, "from"), m.to,
                     m.bytes_done, m.bytes_total)


# ---- The client -----------------------------------------------------------

class Client:
    """A connection to a Drift router or node at address ("host:port").

    timeout: seconds each call may take, retries included (None: no
    deadline). A context manager: leaving the block closes the channel.
    """

    def __init__(self, address: str, timeout: Optional[float] = None,
                 *, max_message_bytes: int = MAX_MESSAGE) -> None:
        self.address = address
        self.timeout = timeout
        self._channel = grpc.insecure_channel(address, options=[
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.max_receive_message_length", max_message_bytes)])
        self._drift = pbg.DriftStub(self._channel)
        self._cluster = pbg.ClusterStub(self._channel)
        # Upserts go out pre-encoded (_encode_upsert).
        self._upsert_raw = self._channel.unary_unary(
            "/drift.v1.Drift/Upsert", request_serializer=None,
            response_deserializer=pb.UpsertResponse.FromString)
        self._upsert_stream_raw = self._channel.stream_unary(
            "/drift.v1.Drift/UpsertStream", request_serializer=None,
            response_deserializer=pb.UpsertResponse.FromString)

    # -- lifetime --

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- calls --

    def _call(self, fn: Callable[..., T], make_req: Callable[[], Any],
              timeout: Optional[float] = None) -> T:
        """fn(request) with UNAVAILABLE retried; make_req makes the request
        again for each attempt (a stream's iterator is used up)."""
        t = self.timeout if timeout is None else timeout
        deadline = None if t is None else time.monotonic() + t
        delay = BACKOFF_MIN
        attempt = 0
        while True:
            left = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    left = 0.001  # let grpc say DEADLINE_EXCEEDED
            try:
                return fn(make_req(), timeout=left)
            except grpc.RpcError as e:
                err = from_rpc_error(e)
                if e.code() != grpc.StatusCode.UNAVAILABLE:
                    raise err from None
                attempt += 1
                pause = min(delay * (1 + random.random()), BACKOFF_MAX)
                if (deadline is None and attempt > MAX_RETRIES) or \
                        (deadline is not None and
                         time.monotonic() + pause >= deadline):
                    raise err from None
                time.sleep(pause)
                delay = min(delay * 2, BACKOFF_MAX)

    # -- collections --

    def create_collection(self, name: str, dimension: int,
                          metric: str = "l2", shards: int = 1,
                          replication_factor: int = 1,
                          wal_sync: str = "always", *,
                          memtable_rows: int = 0,
                          default_recall: float = 0.0,
                          memory_limit: int = 0) -> CollectionInfo:
        """Creates a collection. metric: "l2", "ip" or "cosine" (cosine
        collections keep the normalised vector); wal_sync: "always"
        (acknowledged means fsynced), "batch" or "none"."""
        m = _METRICS.get(metric.lower())
        s = _SYNCS.get(wal_sync.lower())
        if m is None:
            raise InvalidArgument("metric %r is not l2, ip or cosine" %
                                  metric)
        if s is None:
            raise InvalidArgument("wal_sync %r is not always, batch or "
                                  "none" % wal_sync)
        req = pb.CreateCollectionRequest(
            name=name, dimension=dimension, metric=m, shards=shards,
            replication_factor=replication_factor, wal_sync=s,
            memtable_rows=memtable_rows, default_recall=default_recall,
            memory_limit=memory_limit)
        r = self._call(self._drift.CreateCollection, lambda: req)
        return _info(r.collection)

    def drop_collection(self, name: str) -> None:
        req = pb.DropCollectionRequest(name=name)
        self._call(self._drift.DropCollection, lambda: req)

    def list_collections(self) -> List[CollectionInfo]:
        out: List[CollectionInfo] = []
        token = ""
        while True:
            req = pb.ListCollectionsRequest(page_size=1000, page_token=token)
            r = self._call(self._drift.ListCollections, lambda: req)
            out.extend(_info(c) for c in r.collections)
            token = r.next_page_token
            if not token:
                return out

    def describe_collection(self, name: str) -> CollectionInfo:
        req = pb.DescribeCollectionRequest(name=name)
        return _info(self._call(self._drift.DescribeCollection,
                                lambda: req).collection)

    def flush(self, collection: str) -> None:
        """Makes everything written so far durable in L1."""
        req = pb.FlushRequest(collection=collection)
        self._call(self._drift.Flush, lambda: req)

    # -- points --

    def upsert(self, collection: str, ids: ArrayLike, vectors: ArrayLike,
               *, batch_size: Optional[int] = None) -> int:
        """Writes n points: ids (n integers in 0..2^64-1) and vectors (an
        (n, d) array; float64 and integers are converted to float32; one
        vector of shape (d,) with one id is accepted). Returns the number
        written. Shapes and finiteness are checked before anything is
        sent. An input that fits one message (4 MiB of vectors, or
        batch_size rows) is one all-or-nothing Upsert; a larger one checks
        the collection's dimension first and streams batches through
        UpsertStream, each applied as it arrives."""
        idv = _ids(ids)
        vec = _floats(vectors, "vectors")
        if vec.ndim == 1 and idv.size == 1:
            vec = vec.reshape(1, -1)
        if vec.ndim != 2:
            raise InvalidArgument("vectors must be an (n, d) array, got "
                                  "shape %s" % (vec.shape,))
        n, d = vec.shape
        if n != idv.size:
            raise InvalidArgument("%d ids for %d vectors" % (idv.size, n))
        if n == 0:
            return 0
        if d == 0:
            raise InvalidArgument("vectors have no components")
        rows = batch_size if batch_size is not None else \
            max(1, BATCH_BYTES // (4 * d + 16))
        if rows < 1:
            raise InvalidArgument("batch_size must be >= 1")
        if n <= rows:
            body = _encode_upsert(collection, idv, vec)
            r = self._call(self._upsert_raw, lambda: body)
            return int(r.written)
        # Several messages are applied one by one: refuse a wrong
        # dimension before the first, so none is written.
        info = self.describe_collection(collection)
        if info.dimension != d:
            raise InvalidArgument("vectors have dimension %d, collection "
                                  "%s has %d" % (d, collection,
                                                 info.dimension))
        if info.memtable_rows:
            rows = min(rows, info.memtable_rows)

        def messages() -> Iterator[bytes]:
            for i in range(0, n, rows):
                yield _encode_upsert(collection, idv[i:i + rows],
                                     vec[i:i + rows])

        r = self._call(self._upsert_stream_raw, messages)
        return int(r.written)

    def delete(self, collection: str, ids: ArrayLike) -> int:
        """Deletes ids; returns how many existed (unknown ids are not an
        error)."""
        req = pb.DeleteRequest(collection=collection,
                               ids=_ids(ids).tolist())
        return int(self._call(self._drift.Delete, lambda: req).deleted)

    def get(self, collection: str, ids: ArrayLike,
            with_vectors: bool = True) -> List[Point]:
        """The points of ids that exist, in request order."""
        req = pb.GetRequest(collection=collection, ids=_ids(ids).tolist(),
                            with_vectors=with_vectors)
        r = self._call(self._drift.Get, lambda: req)
        return [Point(p.id, np.array(p.vector, dtype=np.float32)
                      if with_vectors else None) for p in r.points]

    # -- search --

    def search(self, collection: str, vector: ArrayLike, k: int = 10,
               nprobe: Optional[int] = None,
               recall_target: Optional[float] = None,
               with_vectors: bool = False, *,
               as_numpy: bool = False) -> Any:
        """k nearest neighbours, best first.

        vector of shape (d,): a list of Hit (.id, .distance, .vector when
        with_vectors). Shape (m, d): a list of m such lists, through
        SearchBatch. At most one of nprobe (L1 buckets to probe) and
        recall_target (0 < t <= 1; 1 is exact); neither: the collection's
        default. as_numpy=True returns (ids, distances) arrays instead,
        uint64 and float32, of shape (k',) or (m, k'); rows with fewer hits
        than the longest are padded with id 0 and distance inf.
        """
        if nprobe is not None and recall_target is not None:
            raise InvalidArgument("give at most one of nprobe and "
                                  "recall_target")
        q = _floats(vector, "vector")
        opts: Dict[str, Any] = dict(k=k, with_vectors=with_vectors)
        if nprobe is not None:
            opts["nprobe"] = nprobe
        if recall_target is not None:
            opts["recall_target"] = recall_target
        if q.ndim == 1:
            req = pb.SearchRequest(collection=collection, vector=q.tolist(),
                                   **opts)
            hits = _hits(self._call(self._drift.Search, lambda: req),
                         with_vectors)
            if as_numpy:
                ids, dist = _as_numpy([hits])
                return ids[0], dist[0]
            return hits
        if q.ndim != 2:
            raise InvalidArgument("vector must have shape (d,) or (m, d), "
                                  "got %s" % (q.shape,))
        out: List[List[Hit]] = []
        for i in range(0, q.shape[0], SEARCH_BATCH):
            breq = pb.SearchBatchRequest(collection=collection, queries=[
                pb.SearchRequest(vector=row.tolist(), **opts)
                for row in q[i:i + SEARCH_BATCH]])
            r = self._call(self._drift.SearchBatch, lambda: breq)
            out.extend(_hits(x, with_vectors) for x in r.results)
        if as_numpy:
            return _as_numpy(out)
        return out

    # -- cluster --

    def status(self) -> ClusterStatus:
        r = self._call(self._cluster.Status, lambda: pb.StatusRequest())
        return ClusterStatus([_node(n) for n in r.nodes], r.leader,
                             r.map_version, r.node_id, r.version,
                             r.cluster_id, r.term, list(r.collections),
                             [_move(m) for m in r.moves])

    def shard_map(self, collection: Optional[str] = None) -> ShardMap:
        req = pb.ShardMapRequest(collection=collection or "")
        r = self._call(self._cluster.ShardMap, lambda: req)
        return ShardMap(r.version, [
            ShardAssignment(a.collection, a.shard, list(a.nodes),
                            list(a.in_sync),
                            _move(a.move) if a.HasField("move") else None)
            for a in r.shards], [_node(n) for n in r.nodes], r.leader)

    def rebalance(self, wait: bool = False) -> int:
        """Starts the moves that even out shards over the nodes (with wait,
        returns when they are done, without a deadline unless the client
        has one); returns the number of moves."""
        req = pb.RebalanceRequest(wait=wait)
        return int(self._call(self._cluster.Rebalance, lambda: req).moves)


def _as_numpy(results: Sequence[List[Hit]]) -> Tuple[IdArray, FloatArray]:
    width = max((len(r) for r in results), default=0)
    ids = np.zeros((len(results), width), dtype=np.uint64)
    dist = np.full((len(results), width), np.inf, dtype=np.float32)
    for i, r in enumerate(results):
        ids[i, :len(r)] = [h.id for h in r]
        dist[i, :len(r)] = [h.distance for h in r]
    return ids, dist

