/*
 * gRPC status codes, and how Drift's error codes map onto them.
 *
 * The codes and their numbers are fixed by the gRPC specification
 * (doc/statuscodes.md of grpc/grpc); they travel as the decimal value of the
 * grpc-status trailer. One X-macro list generates the enum and the names.
 */
#ifndef DRIFT_COMMON_GRPC_STATUS_H
#define DRIFT_COMMON_GRPC_STATUS_H

#include "common/err.h"

#define DRIFT_GRPC_CODE_MAP(X)                                                 \
	X(OK, 0)                                                               \
	X(CANCELLED, 1)                                                        \
	X(UNKNOWN, 2)                                                          \
	X(INVALID_ARGUMENT, 3)                                                 \
	X(DEADLINE_EXCEEDED, 4)                                                \
	X(NOT_FOUND, 5)                                                        \
	X(ALREADY_EXISTS, 6)                                                   \
	X(PERMISSION_DENIED, 7)                                                \
	X(RESOURCE_EXHAUSTED, 8)                                               \
	X(FAILED_PRECONDITION, 9)                                              \
	X(ABORTED, 10)                                                         \
	X(OUT_OF_RANGE, 11)                                                    \
	X(UNIMPLEMENTED, 12)                                                   \
	X(INTERNAL, 13)                                                        \
	X(UNAVAILABLE, 14)                                                     \
	X(DATA_LOSS, 15)                                                       \
	X(UNAUTHENTICATED, 16)

enum drift_grpc_code {
#define DRIFT__GRPC_ENUM(name, value) DRIFT_GRPC_##name = (value),
	DRIFT_GRPC_CODE_MAP(DRIFT__GRPC_ENUM)
#undef DRIFT__GRPC_ENUM
};

/* A finished call's status as a client sees it. */
typedef struct drift_grpc_status {
	int code;		     /* a drift_grpc_code */
	char msg[DRIFT_ERR_MSG_MAX]; /* grpc-message, decoded; "" when none */
} drift_grpc_status;

/* "INVALID_ARGUMENT" for 3; "UNKNOWN" for values outside the list. */
const char *drift_grpc_code_name(int code);

/* The status a server answers for a DRIFT_E* failure (0 gives OK):
 * EINVAL/ERANGE/ESYNTAX -> INVALID_ARGUMENT, ENOENT -> NOT_FOUND, EEXIST ->
 * ALREADY_EXISTS, ENOMEM/ENOSPC/ELIMIT -> RESOURCE_EXHAUSTED, ETIMEDOUT ->
 * DEADLINE_EXCEEDED, ECANCELED -> CANCELLED, EUNAVAIL/EBUSY/ECLOSED ->
 * UNAVAILABLE, ESTALE -> FAILED_PRECONDITION, ECORRUPT -> DATA_LOSS,
 * ENOTSUP -> UNIMPLEMENTED, EPERM -> PERMISSION_DENIED, others INTERNAL. */
int drift_grpc_code_from_err(int err);

/* The DRIFT_E* code a client reports for a non-OK status (0 for OK): the
 * inverse of the map above where it is one to one. */
int drift_grpc_err_from_code(int code);

#endif /* DRIFT_COMMON_GRPC_STATUS_H */
