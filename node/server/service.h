/*
 * The public API drift.v1 served by a node: drift.v1.Drift (collections,
 * writes, reads) and drift.v1.Cluster (Status; the other methods answer
 * UNIMPLEMENTED until the cluster exists), on a gRPC server of
 * common/grpc.
 *
 * Limits (each refused with a status naming it, nothing changed):
 *   k                      1..DRIFT_NODE_MAX_K
 *   points per Upsert      the collection's memtable size (memtable_rows):
 *                          RESOURCE_EXHAUSTED above it
 *   ids per Get            DRIFT_NODE_MAX_GET
 *   queries per SearchBatch DRIFT_NODE_MAX_BATCH_QUERIES
 *   message size           the server's (64 MiB by default)
 *   memory                 the collection's share (node/engine/collection.h,
 *                          "Memory"): RESOURCE_EXHAUSTED naming the
 *                          collection, its usage and its share
 *   dimension              the node's limits.max_dimension:
 *                          INVALID_ARGUMENT
 *   disk                   a full disk: RESOURCE_EXHAUSTED, the message
 *                          starting with "disk full: " and naming the file
 */
#ifndef DRIFT_NODE_SERVICE_H
#define DRIFT_NODE_SERVICE_H

#include "common/api/validate.h"
#include "common/grpc/server.h"
#include "node/server/cluster.h"
#include "node/engine/collection.h"

#define DRIFT_NODE_VERSION "0.1.0"
/* The API's limits: common/api/validate.h, shared with drift-router. */
#define DRIFT_NODE_MAX_K DRIFT_API_MAX_K
#define DRIFT_NODE_MAX_GET DRIFT_API_MAX_GET
#define DRIFT_NODE_MAX_BATCH_QUERIES DRIFT_API_MAX_BATCH_QUERIES
#define DRIFT_NODE_MAX_PAGE DRIFT_API_MAX_PAGE

/* Registers every method on srv (before it starts), serving cm, with the
 * cluster nc (node/server/cluster.h: drift.v1.Cluster, metadata changes through
 * Raft, routing checks). */
int drift_node_service_register(drift_grpc_server *srv, drift_cm *cm,
				drift_node_cluster *nc);

/* Stops what register started (after the server has shut down). */
void drift_node_service_close(void);

#endif /* DRIFT_NODE_SERVICE_H */
