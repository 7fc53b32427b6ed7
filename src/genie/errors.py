"""Genie's one exception tree, shared by the server and the client.

The server raises these to refuse a request; one handler turns each into the
wire shape ``{"error": {"type": ..., "message": ...}}`` with the class's fixed
status.  The client turns that shape back into the same class, so code on
either side catches one tree::

    GenieError
    ├── ConfigurationError      bad URL, no server configured, bad option (local)
    ├── TransportError          the server could not be reached or timed out (local)
    └── RemoteError             the server refused or failed the request
        ├── MalformedRequestError   400 malformed_request
        │   ├── WireFormatError     400 malformed_request: bytes are not valid safetensors
        │   ├── RequestTimeoutError 408 request_timeout: no request head in time
        │   └── HeaderTooLargeError 431 header_too_large: the request head is too long
        ├── AuthError               401 unauthorized
        ├── NotFoundError           404 not_found: unknown handle or route
        ├── MethodNotAllowedError   405 method_not_allowed
        ├── PayloadTooLargeError    413 payload_too_large
        │   └── BudgetExceededError 413 budget_exceeded: held tensors would pass --max-held-mb
        ├── UnsupportedMediaTypeError 415 unsupported_media_type: a pickle / torch.save upload
        ├── InvalidArgumentError    422 invalid_arguments: bad op arguments or shapes
        │   ├── UnsupportedOpError  422 unsupported_op (also raised locally at capture)
        │   ├── UnsupportedDTypeError 422 unsupported_dtype
        │   └── ComputeTimeoutError 422 compute_timeout: computed past --max-compute-s
        ├── ServerBusyError         503 busy
        │   └── OutOfMemoryError    503 out_of_memory: the device ran out of memory
        └── ServerError             500 internal: a bug on the server

Only ``ServerBusyError`` (and ``TransportError`` for connection failures) is
worth retrying; everything else fails the same way again.
"""

from __future__ import annotations

__all__ = [
    "AuthError",
    "BudgetExceededError",
    "ComputeTimeoutError",
    "ConfigurationError",
    "GenieError",
    "HeaderTooLargeError",
    "InvalidArgumentError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "OutOfMemoryError",
    "PayloadTooLargeError",
    "RemoteError",
    "RequestTimeoutError",
    "ServerBusyError",
    "ServerError",
    "TransportError",
    "UnsupportedDTypeError",
    "UnsupportedMediaTypeError",
    "UnsupportedOpError",
    "WireFormatError",
    "error_class_for",
]


class GenieError(Exception):
    """Base of every error Genie raises on purpose."""

    status: int | None = None
    error_type: str = "error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_json(self) -> dict[str, dict[str, str]]:
        """The wire shape of this error, as the server sends it."""
        return {"error": {"type": self.error_type, "message": self.message}}


class ConfigurationError(GenieError):
    """Raised locally for a bad server URL, option, or when no server is configured."""

    error_type = "configuration"


class TransportError(GenieError):
    """Raised by the client when the server cannot be reached, or a request times out.

    ``kind`` says what failed: ``connect``, ``connect_timeout``, ``read_timeout``,
    ``write_timeout``, ``read``, ``write`` or ``protocol`` (a malformed or cut reply).
    ``retryable`` is true when the request never reached the server (connect
    failures), the only transport failures the client retries by itself.
    """

    error_type = "transport"
    KINDS = ("connect", "connect_timeout", "read_timeout", "write_timeout", "read", "write",
             "protocol")

    def __init__(self, message: str, *, kind: str = "protocol", retryable: bool = False) -> None:
        super().__init__(message)
        if kind not in self.KINDS:
            raise ValueError(f"unknown transport failure kind {kind!r}")
        self.kind = kind
        self.retryable = retryable


class RemoteError(GenieError):
    """The server answered with an error; ``status`` and ``error_type`` say which."""

    status = 500
    error_type = "internal"

    def __init__(self, message: str, *, status: int | None = None,
                 error_type: str | None = None) -> None:
        super().__init__(message)
        # An instance built by the client from a response keeps what the wire said,
        # even when it is a type this version does not know.
        if status is not None:
            self.status = status
        if error_type is not None:
            self.error_type = error_type


class MalformedRequestError(RemoteError):
    """400: the request body or parameters could not be parsed."""

    status = 400
    error_type = "malformed_request"


class WireFormatError(MalformedRequestError):
    """400: bytes that claim to be safetensors are not (truncated, lying header, ...)."""


class RequestTimeoutError(MalformedRequestError):
    """408: the connection sent no complete request head within ``--header-timeout-s``."""

    status = 408
    error_type = "request_timeout"


class HeaderTooLargeError(MalformedRequestError):
    """431: the request line and headers passed ``--max-header-kb``."""

    status = 431
    error_type = "header_too_large"


class AuthError(RemoteError):
    """401: the bearer token is missing or wrong."""

    status = 401
    error_type = "unauthorized"


class NotFoundError(RemoteError):
    """404: an unknown tensor handle or route."""

    status = 404
    error_type = "not_found"


class MethodNotAllowedError(RemoteError):
    """405: the route exists but not for this HTTP method."""

    status = 405
    error_type = "method_not_allowed"


class PayloadTooLargeError(RemoteError):
    """413: the request body is larger than the server's ``--max-body-mb``."""

    status = 413
    error_type = "payload_too_large"


class BudgetExceededError(PayloadTooLargeError):
    """413: keeping this tensor would pass the server's ``--max-held-mb`` budget.

    The server never evicts a tensor a client still holds an id for: free some
    with ``DELETE /tensors/{id}`` and retry.
    """

    error_type = "budget_exceeded"


class UnsupportedMediaTypeError(RemoteError):
    """415: the body is a pickle or a ``torch.save`` file, which Genie never loads.

    Unpickling runs whatever code the bytes name, so a server that loaded uploads that
    way would run any client's code.  The message shows the one-line conversion to
    safetensors, the format every Genie body uses.
    """

    status = 415
    error_type = "unsupported_media_type"


class InvalidArgumentError(RemoteError):
    """422: the op exists but its arguments do not fit (types, shapes, values)."""

    status = 422
    error_type = "invalid_arguments"


class UnsupportedOpError(InvalidArgumentError):
    """422: the op is not in the server's allowlist; the message names the supported ones.

    LazyTensor raises it locally, at the line that used the op, before any request.
    """

    error_type = "unsupported_op"


class UnsupportedDTypeError(InvalidArgumentError):
    """422: a dtype the wire format or the op does not support."""

    error_type = "unsupported_dtype"


class ComputeTimeoutError(InvalidArgumentError):
    """422: the request computed for longer than the server's ``--max-compute-s``
    (checked between graph nodes); split the graph or use smaller tensors."""

    error_type = "compute_timeout"


class ServerBusyError(RemoteError):
    """503: the server is at its concurrency limit; retrying later may succeed."""

    status = 503
    error_type = "busy"


class OutOfMemoryError(ServerBusyError):
    """503: the server's device ran out of memory for this request."""

    error_type = "out_of_memory"


class ServerError(RemoteError):
    """500: an unexpected failure on the server (a bug worth reporting)."""

    status = 500
    error_type = "internal"


_BY_TYPE: dict[str, type[RemoteError]] = {
    cls.error_type: cls
    for cls in (
        MalformedRequestError, RequestTimeoutError, HeaderTooLargeError, AuthError,
        NotFoundError, MethodNotAllowedError, PayloadTooLargeError, BudgetExceededError,
        UnsupportedMediaTypeError, InvalidArgumentError, UnsupportedOpError,
        UnsupportedDTypeError, ComputeTimeoutError, ServerBusyError, OutOfMemoryError,
        ServerError,
    )
}
_BY_STATUS: dict[int, type[RemoteError]] = {
    400: MalformedRequestError, 401: AuthError, 403: AuthError, 404: NotFoundError,
    405: MethodNotAllowedError, 408: RequestTimeoutError, 413: PayloadTooLargeError,
    415: UnsupportedMediaTypeError, 422: InvalidArgumentError, 431: HeaderTooLargeError,
    503: ServerBusyError,
}


def error_class_for(status: int, error_type: str | None) -> type[RemoteError]:
    """The class the client raises for a response with this status and error type."""
    if error_type in _BY_TYPE:
        return _BY_TYPE[error_type]
    return _BY_STATUS.get(status, ServerError)
