"""Genie: run PyTorch ops on a remote GPU over HTTP + safetensors.

Public API (everything else is private)::

    genie.Client(url, token=None)        blocking client; genie.AsyncClient its twin
    genie.Timeout(base_s, min_rate_mib_s) how long a request may wait (Client(timeout=...))
    genie.RemoteTensor                   a tensor held on the server (a handle)
    genie.create_app / ServerConfig      build the server app (genie.server, loaded when used)
    genie.GenieError and subclasses      the one exception tree (see genie.errors)
    genie.LazyTensor, genie.remote(t)    capture torch code, run it remotely in one request
    genie.connect / capture / materialize / persist / release / remote_module,
    genie.randn / rand / zeros / ones / full / arange / eye   (see genie.lazy)

``import genie`` loads no server code: ``create_app`` and ``ServerConfig`` (and with
them starlette, uvicorn and prometheus-client) are imported on first use.
"""

from typing import TYPE_CHECKING, Any

from genie._version import __version__
from genie.client import AsyncClient, Client, GraphResult, RemoteTensor, Timeout
from genie.errors import (
    AuthError,
    BudgetExceededError,
    ComputeTimeoutError,
    ConfigurationError,
    GenieError,
    HeaderTooLargeError,
    InvalidArgumentError,
    MalformedRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OutOfMemoryError,
    PayloadTooLargeError,
    RemoteError,
    RequestTimeoutError,
    ServerBusyError,
    ServerError,
    TransportError,
    UnsupportedDTypeError,
    UnsupportedMediaTypeError,
    UnsupportedOpError,
    WireFormatError,
)
from genie.lazy import (
    LazyTensor,
    arange,
    capture,
    connect,
    disconnect,
    eye,
    full,
    materialize,
    ones,
    persist,
    rand,
    randn,
    release,
    remote,
    remote_device,
    remote_module,
    zeros,
)
from genie.protocol import PROTOCOL_VERSION

if TYPE_CHECKING:
    from genie.server import ServerConfig, create_app

__all__ = [
    "REMOTE_DEVICE",
    "LazyTensor",
    "connect",
    "disconnect",
    "materialize",
    "persist",
    "release",
    "remote",
    "arange",
    "capture",
    "eye",
    "full",
    "ones",
    "rand",
    "randn",
    "remote_module",
    "zeros",
    "PROTOCOL_VERSION",
    "AsyncClient",
    "AuthError",
    "BudgetExceededError",
    "Client",
    "ComputeTimeoutError",
    "ConfigurationError",
    "GenieError",
    "GraphResult",
    "HeaderTooLargeError",
    "InvalidArgumentError",
    "MalformedRequestError",
    "MethodNotAllowedError",
    "NotFoundError",
    "OutOfMemoryError",
    "PayloadTooLargeError",
    "RemoteError",
    "RemoteTensor",
    "RequestTimeoutError",
    "ServerBusyError",
    "ServerConfig",
    "ServerError",
    "Timeout",
    "TransportError",
    "UnsupportedDTypeError",
    "UnsupportedMediaTypeError",
    "UnsupportedOpError",
    "WireFormatError",
    "__version__",
    "create_app",
]


def __getattr__(name: str) -> Any:
    """Names resolved on first use (PEP 562): the server, and the remote device, which
    names torch's PrivateUse1 backend when first asked for, not at import."""
    if name in ("create_app", "ServerConfig"):
        import genie.server

        return getattr(genie.server, name)
    if name == "REMOTE_DEVICE":
        return remote_device()
    raise AttributeError(f"module 'genie' has no attribute {name!r}")
