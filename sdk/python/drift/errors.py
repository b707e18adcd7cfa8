"""drift.DriftError and one subclass per gRPC status code, named after it
(NOT_FOUND -> NotFound). Each carries the status code and the server's
message. Errors found before anything is sent (a wrong shape, a NaN, both
nprobe and recall_target) are InvalidArgument too, which is also a
ValueError."""
from typing import Dict, Optional, Type

import grpc


class DriftError(Exception):
    """A failed call: .code (grpc.StatusCode) and .message (the server's
    message, or the SDK's for errors found before sending)."""

    code: grpc.StatusCode = grpc.StatusCode.UNKNOWN

    def __init__(self, message: str,
                 code: Optional[grpc.StatusCode] = None) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return "%s: %s" % (self.code.name, self.message)


class Cancelled(DriftError):
    code = grpc.StatusCode.CANCELLED


class Unknown(DriftError):
    code = grpc.StatusCode.UNKNOWN


class InvalidArgument(DriftError, ValueError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class DeadlineExceeded(DriftError):
    code = grpc.StatusCode.DEADLINE_EXCEEDED


class NotFound(DriftError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DriftError):
    code = grpc.StatusCode.ALREADY_EXISTS


class PermissionDenied(DriftError):
    code = grpc.StatusCode.PERMISSION_DENIED


class ResourceExhausted(DriftError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class FailedPrecondition(DriftError):
    code = grpc.StatusCode.FAILED_PRECONDITION


class Aborted(DriftError):
    code = grpc.StatusCode.ABORTED


class OutOfRange(DriftError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unimplemented(DriftError):
    code = grpc.StatusCode.UNIMPLEMENTED


class Internal(DriftError):
    code = grpc.StatusCode.INTERNAL


class Unavailable(DriftError):
    code = grpc.StatusCode.UNAVAILABLE


class DataLoss(DriftError):
    code = grpc.StatusCode.DATA_LOSS


class Unauthenticated(DriftError):
    code = grpc.StatusCode.UNAUTHENTICATED


_BY_CODE: Dict[grpc.StatusCode, Type[DriftError]] = {
    c.code: c for c in (Cancelled, Unknown, InvalidArgument,
                        DeadlineExceeded, NotFound, AlreadyExists,
                        PermissionDenied, ResourceExhausted,
                        FailedPrecondition, Aborted, OutOfRange,
                        Unimplemented, Internal, Unavailable, DataLoss,
                        Unauthenticated)
}


def from_rpc_error(e: grpc.RpcError) -> DriftError:
    """The DriftError subclass of a grpcio error."""
    code = e.code() if hasattr(e, "code") else grpc.StatusCode.UNKNOWN
    details = e.details() if hasattr(e, "details") else str(e)
    cls = _BY_CODE.get(code, DriftError)
    return cls(details or code.name, code)
