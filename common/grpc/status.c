#include "common/grpc/status.h"

const char *drift_grpc_code_name(int code)
{
	switch (code) {
#define DRIFT__GRPC_NAME(name, value)                                          \
	case value:                                                            \
		return #name;
		DRIFT_GRPC_CODE_MAP(DRIFT__GRPC_NAME)
#undef DRIFT__GRPC_NAME
	}
	return "UNKNOWN";
}

int drift_grpc_code_from_err(int err)
{
	switch (err) {
	case 0:
		return DRIFT_GRPC_OK;
	case DRIFT_EINVAL:
	case DRIFT_ERANGE:
	case DRIFT_ESYNTAX:
		return DRIFT_GRPC_INVALID_ARGUMENT;
	case DRIFT_ENOENT:
		return DRIFT_GRPC_NOT_FOUND;
	case DRIFT_EEXIST:
		return DRIFT_GRPC_ALREADY_EXISTS;
	case DRIFT_ENOMEM:
	case DRIFT_ENOSPC:
	case DRIFT_ELIMIT:
		return DRIFT_GRPC_RESOURCE_EXHAUSTED;
	case DRIFT_ETIMEDOUT:
		return DRIFT_GRPC_DEADLINE_EXCEEDED;
	case DRIFT_ECANCELED:
		return DRIFT_GRPC_CANCELLED;
	case DRIFT_EUNAVAIL:
	case DRIFT_EBUSY:
	case DRIFT_ECLOSED:
		return DRIFT_GRPC_UNAVAILABLE;
	case DRIFT_ESTALE:
		return DRIFT_GRPC_FAILED_PRECONDITION;
	case DRIFT_ECONFLICT:
		return DRIFT_GRPC_ABORTED;
	case DRIFT_ECORRUPT:
		return DRIFT_GRPC_DATA_LOSS;
	case DRIFT_ENOTSUP:
		return DRIFT_GRPC_UNIMPLEMENTED;
	case DRIFT_EPERM:
		return DRIFT_GRPC_PERMISSION_DENIED;
	default:
		return DRIFT_GRPC_INTERNAL;
	}
}

int drift_grpc_err_from_code(int code)
{
	switch (code) {
	case DRIFT_GRPC_OK:
		return 0;
	case DRIFT_GRPC_CANCELLED:
		return DRIFT_ECANCELED;
	case DRIFT_GRPC_INVALID_ARGUMENT:
	case DRIFT_GRPC_OUT_OF_RANGE:
		return DRIFT_EINVAL;
	case DRIFT_GRPC_DEADLINE_EXCEEDED:
		return DRIFT_ETIMEDOUT;
	case DRIFT_GRPC_NOT_FOUND:
		return DRIFT_ENOENT;
	case DRIFT_GRPC_ALREADY_EXISTS:
		return DRIFT_EEXIST;
	case DRIFT_GRPC_PERMISSION_DENIED:
	case DRIFT_GRPC_UNAUTHENTICATED:
		return DRIFT_EPERM;
	case DRIFT_GRPC_RESOURCE_EXHAUSTED:
		return DRIFT_ELIMIT;
	case DRIFT_GRPC_FAILED_PRECONDITION:
		return DRIFT_ESTALE;
	case DRIFT_GRPC_ABORTED:
		return DRIFT_ECONFLICT;
	case DRIFT_GRPC_UNIMPLEMENTED:
		return DRIFT_ENOTSUP;
	case DRIFT_GRPC_UNAVAILABLE:
		return DRIFT_EUNAVAIL;
	case DRIFT_GRPC_DATA_LOSS:
		return DRIFT_ECORRUPT;
	default:
		return DRIFT_EINTERNAL;
	}
}
