/*
 * grpc.health.v1.Health for every server (proto/grpc/health/v1/health.proto):
 * a registry of service name -> serving status, Check (unary: the status,
 * or NOT_FOUND for an unknown service) and Watch (server streaming: the
 * status now, then every change; SERVICE_UNKNOWN while the name is not
 * registered). Internal to common/grpc; the server owns one.
 */
#ifndef DRIFT_COMMON_GRPC_HEALTH_H
#define DRIFT_COMMON_GRPC_HEALTH_H

#include "common/grpc/server.h"

typedef struct drift_grpc_health drift_grpc_health;

int drift_grpc_health_new(drift_grpc_health **out);
void drift_grpc_health_free(drift_grpc_health *h);

/* Sets service's status (a ServingStatus value); wakes watchers. */
int drift_grpc_health_set(drift_grpc_health *h, const char *service,
			  int status);
/* Every service becomes NOT_SERVING and watchers finish (shutdown). */
void drift_grpc_health_close(drift_grpc_health *h);

/* Registers Check and Watch on s. */
int drift_grpc_health_register(drift_grpc_health *h, drift_grpc_server *s);

#endif /* DRIFT_COMMON_GRPC_HEALTH_H */
