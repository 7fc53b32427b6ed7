"""Errors as replies: every failure answers ``{"error": {"type", "message"}}`` with the
status its class fixes (``genie.errors``), and is counted by type in the stats."""

from __future__ import annotations

import logging

import torch
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from genie.errors import (
    AuthError,
    GenieError,
    MalformedRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OutOfMemoryError,
    ServerError,
)
from genie.server.bodies import CLOSE_KEY
from genie.server.state import state_of

__all__ = ["ANSWERED", "ERROR_TYPE_KEY", "EXCEPTION_HANDLERS", "error_response", "on_unexpected"]

log = logging.getLogger("genie.server")
#: Where a request keeps the error type it was answered with (``scope["state"]``).
ERROR_TYPE_KEY = "genie_error_type"


def error_response(request: Request, exc: GenieError) -> Response:
    request.scope.setdefault("state", {})[ERROR_TYPE_KEY] = exc.error_type
    headers = {"www-authenticate": "Bearer"} if isinstance(exc, AuthError) else {}
    if request.scope.get("state", {}).get(CLOSE_KEY):  # the rest of the body may never come
        headers["connection"] = "close"
    return JSONResponse(exc.to_json(), status_code=exc.status or 500, headers=headers)


async def on_genie_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GenieError)
    return error_response(request, exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    err: GenieError
    if exc.status_code == 404:
        err = NotFoundError(f"no route {request.method} {request.url.path}; GET / lists the "
                            "routes (docs/protocol.md describes them)")
    elif exc.status_code == 405:
        err = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}")
    else:
        err = MalformedRequestError(str(exc.detail))
    return error_response(request, err)


async def on_oom(request: Request, exc: Exception) -> Response:
    """Device memory (``torch.OutOfMemoryError``) or host memory (``MemoryError``, e.g.
    while parsing a huge header) ran out for this request: 503, and the server goes on."""
    device = state_of(request).device
    if device.type == "cuda":
        torch.cuda.empty_cache()
    where = f"device {device}" if isinstance(exc, torch.OutOfMemoryError) else "host"
    log.warning("out of memory on the %s: %s", where, exc)
    return error_response(request, OutOfMemoryError(
        f"the server's {where} ran out of memory for this request; "
        "retry with a smaller tensor or after freeing held tensors"))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, ServerError(f"internal server error: {type(exc).__name__}: "
                                               f"{exc}"))


#: The app's exception handlers: Genie errors by their class, Starlette's own HTTP errors
#: (404 unknown route, 405) in the same shape, device or host OOM as 503, anything else
#: as 500.
EXCEPTION_HANDLERS = {
    GenieError: on_genie_error,
    HTTPException: on_http_error,
    torch.OutOfMemoryError: on_oom,
    MemoryError: on_oom,
    Exception: on_unexpected,
}

#: What a handler answers in its own shape (every class but the catch-all ``Exception``):
#: an endpoint lets these go up to it.
ANSWERED: tuple[type[Exception], ...] = tuple(
    cls for cls in EXCEPTION_HANDLERS if cls is not Exception)
