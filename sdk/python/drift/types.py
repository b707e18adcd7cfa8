"""The values the client returns: plain frozen dataclasses, independent of
the generated protobuf classes."""
from dataclasses import dataclass, field
from typing import List, NamedTuple, Optional

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]


class Hit(NamedTuple):
    """A search result: smaller distance is better (squared L2, negated
    dot product, or 1 - cosine similarity). A NamedTuple: searches make
    many, and a tuple is the cheapest immutable object to make."""
    id: int
    distance: float
    vector: Optional[FloatArray] = None


class Point(NamedTuple):
    id: int
    vector: Optional[FloatArray] = None


@dataclass(frozen=True)
class ShardStats:
    shard: int
    live: int
    l0_rows: int
    l0_tombstones: int
    l1_vectors: int
    l1_buckets: int
    segments: int
    wal_bytes: int
    wal_seq: int
    flushed_seq: int
    flushes: int
    splits: int
    merges: int
    recenters: int
    memory_bytes: int


@dataclass(frozen=True)
class CollectionInfo:
    name: str
    dimension: int
    metric: str            # "l2", "ip" or "cosine"
    vector_count: int      # live vectors, deletes subtracted
    shards: int
    replication_factor: int
    wal_sync: str          # "always", "batch" or "none"
    memtable_rows: int     # the most points of one write
    default_recall: float
    memory_bytes: int
    memory_limit: int      # 0: no limit
    shard_stats: List[ShardStats] = field(default_factory=list)


@dataclass(frozen=True)
class NodeInfo:
    id: str
    address: str
    state: str             # "up", "down", "joining" or "leaving"
    role: str              # "leader", "voter" or "standby"
    raft_address: str
    shards: int
    primaries: int


@dataclass(frozen=True)
class ShardMove:
    collection: str
    shard: int
    from_node: str
    to_node: str
    bytes_done: int
    bytes_total: int


@dataclass(frozen=True)
class ClusterStatus:
    nodes: List[NodeInfo]
    leader: str            # "" when there is none
    map_version: int
    node_id: str           # the node that answered
    version: str
    cluster_id: str
    term: int
    collections: List[str]
    moves: List[ShardMove]


@dataclass(frozen=True)
class ShardAssignment:
    collection: str
    shard: int
    nodes: List[str]       # replica node ids, primary first
    in_sync: List[str]
    move: Optional[ShardMove] = None


@dataclass(frozen=True)
class ShardMap:
    version: int
    shards: List[ShardAssignment]
    nodes: List[NodeInfo]
    leader: str
