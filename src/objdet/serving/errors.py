"""``ServingError``: a request the server refuses, with TF Serving's error code.

TF Serving answers every failure with a canonical code (``tensorflow.error.Code``, numbered
as gRPC's status codes) and a message; REST turns the code into an HTTP status with the
mapping below (TF Serving's ``ToHTTPStatusCode``) and the body ``{"error": "<message>"}``.
"""

from __future__ import annotations

import grpc

from objdet.errors import ObjdetError
from objdet.serving.protos import error_codes_pb2

Code = error_codes_pb2.Code

HTTP_STATUS: dict[int, int] = {
    Code.OK: 200,
    Code.CANCELLED: 499,
    Code.UNKNOWN: 500,
    Code.INVALID_ARGUMENT: 400,
    Code.DEADLINE_EXCEEDED: 504,
    Code.NOT_FOUND: 404,
    Code.ALREADY_EXISTS: 409,
    Code.PERMISSION_DENIED: 403,
    Code.UNAUTHENTICATED: 401,
    Code.RESOURCE_EXHAUSTED: 429,
    Code.FAILED_PRECONDITION: 400,
    Code.ABORTED: 409,
    Code.OUT_OF_RANGE: 400,
    Code.UNIMPLEMENTED: 501,
    Code.INTERNAL: 500,
    Code.UNAVAILABLE: 503,
    Code.DATA_LOSS: 500,
}
_GRPC_STATUS = {status.value[0]: status for status in grpc.StatusCode}


class ServingError(ObjdetError):
    """A refused request: ``code`` (a ``tensorflow.error.Code``) and a one-line message."""

    def __init__(self, code: int, message: str, http_status: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self._http_status = http_status  # where REST's status is not the code's (413)

    @property
    def http_status(self) -> int:
        return self._http_status or HTTP_STATUS.get(self.code, 500)

    @property
    def grpc_status(self) -> grpc.StatusCode:
        return _GRPC_STATUS.get(self.code, grpc.StatusCode.UNKNOWN)

    @property
    def code_name(self) -> str:
        return str(Code.Name(self.code))  # type: ignore[arg-type]


def invalid_argument(message: str) -> ServingError:
    return ServingError(Code.INVALID_ARGUMENT, message)


def not_found(message: str) -> ServingError:
    return ServingError(Code.NOT_FOUND, message)


def unavailable(message: str) -> ServingError:
    return ServingError(Code.UNAVAILABLE, message)


def resource_exhausted(message: str) -> ServingError:
    return ServingError(Code.RESOURCE_EXHAUSTED, message)
