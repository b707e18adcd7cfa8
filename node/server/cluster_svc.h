/*
 * drift.v1.Cluster on a node, and the cluster's part of drift.v1.Drift:
 * metadata changes (CreateCollection, DropCollection, AddNode, RemoveNode)
 * made by the Raft leader, forwarded to it from any other member (a
 * follower never answers a change itself), and the routing checks of the
 * data path.
 *
 * Statuses: no leader known (a minority side, an election under way) is
 * UNAVAILABLE; a change the state refuses keeps its own status (an unknown
 * node NOT_FOUND, a duplicate ALREADY_EXISTS, a node that still holds
 * shards FAILED_PRECONDITION naming them); a request for a shard this node
 * does not hold is FAILED_PRECONDITION naming the node that does (until
 * the router and forwarding exist).
 */
#ifndef DRIFT_NODE_CLUSTER_SVC_H
#define DRIFT_NODE_CLUSTER_SVC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "common/grpc/server.h"
#include "node/server/cluster.h"

/* Registers Status, AddNode, RemoveNode, ShardMap and WatchShardMap
 * (Rebalance is node/replica/replica.h's). */
int drift_cluster_svc_register(drift_grpc_server *srv, drift_node_cluster *nc);

/* For a metadata change received on call c (its request req, of the type
 * the path takes, its response type resp): true when this node leads and
 * should make the change itself; false when the call has been answered
 * (forwarded to the leader and its answer relayed, or UNAVAILABLE when no
 * leader is known). */
bool drift_cluster_svc_lead(drift_node_cluster *nc, drift_grpc_call *c,
			    const ProtobufCMessage *req,
			    const ProtobufCMessageDescriptor *resp);

/* Creates a collection (cfg checked and defaulted by drift_cm_check) on
 * the leader: places its shards, has the Raft group agree, and waits (at
 * most a few seconds) until every node holding a shard has opened it.
 * 0 or an error with a message. */
int drift_cluster_svc_create(drift_node_cluster *nc,
			     const drift_collection_config *cfg,
			     drift_err *err);

/* Drops a collection through the Raft group (leader only). 0,
 * DRIFT_ENOENT or an error with a message. */
int drift_cluster_svc_drop(drift_node_cluster *nc, const char *name,
			   drift_err *err);

/* Routing check for a request on collection `name`: 0 when this node holds
 * the shards of all n ids (all shards when ids is NULL); DRIFT_ESTALE with
 * a message naming the holder otherwise; DRIFT_ENOENT when the map does
 * not know the collection (after waiting for this node to catch up with
 * the leader's map). */
int drift_cluster_svc_route(drift_node_cluster *nc, const char *name,
			    const uint64_t *ids, size_t n, drift_err *err);

/* Routing check of a shard-level call (drift.peer.v1) routed with map
 * version `version`: 0 when this node holds shard `shard` of `name` (after
 * catching up with `version` when it is newer than this node's map) and
 * has it open, and every one of the n ids belongs to that shard.
 * DRIFT_ESTALE naming the holder and this node's map version (the caller
 * refreshes its map), DRIFT_ENOENT, DRIFT_EINVAL (an id of another shard,
 * a shard out of range), DRIFT_EUNAVAIL (not opened yet). */
int drift_cluster_svc_route_shard(drift_node_cluster *nc, const char *name,
				  uint32_t shard, uint64_t version,
				  const uint64_t *ids, size_t n,
				  drift_err *err);

#endif /* DRIFT_NODE_CLUSTER_SVC_H */
