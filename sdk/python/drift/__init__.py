"""Drift's Python SDK: a thin, typed client over the public gRPC API
(drift.v1). See sdk/python/README.md.

    import drift
    with drift.Client("127.0.0.1:7400") as c:
        c.create_collection("docs", dimension=128)
        c.upsert("docs", ids, vectors)
        hits = c.search("docs", query, k=10)
"""
from drift.client import Client
from drift.errors import (Aborted, AlreadyExists, Cancelled, DataLoss,
                          DeadlineExceeded, DriftError, FailedPrecondition,
                          Internal, InvalidArgument, NotFound, OutOfRange,
                          PermissionDenied, ResourceExhausted, Unauthenticated,
                          Unavailable, Unimplemented, Unknown)
from drift.types import (ClusterStatus, CollectionInfo, Hit, NodeInfo, Point,
                         ShardAssignment, ShardMap, ShardMove, ShardStats)

__version__ = "0.1.0"

__all__ = [
    "Client", "DriftError", "Aborted", "AlreadyExists", "Cancelled",
    "DataLoss", "DeadlineExceeded", "FailedPrecondition", "Internal",
    "InvalidArgument", "NotFound", "OutOfRange", "PermissionDenied",
    "ResourceExhausted", "Unauthenticated", "Unavailable", "Unimplemented",
    "Unknown", "ClusterStatus", "CollectionInfo", "Hit", "NodeInfo", "Point",
    "ShardAssignment", "ShardMap", "ShardMove", "ShardStats",
]
