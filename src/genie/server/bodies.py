"""Receiving request bodies: the size limit, a server-wide byte budget, an idle timeout.

A declared ``Content-Length`` is a promise the client may never keep.  So the bytes
it declares are first reserved against a budget shared by every request
(``--max-inflight-body-mb``; a body that does not fit is answered 503 ``busy``,
which clients retry), memory is set aside only once the first body byte arrives,
and a body that goes ``--body-timeout-s`` without a byte is refused (400), so a
client that sends headers and stalls neither costs memory nor holds its share of
the budget.  The share is returned when the request ends, however it ends: the
``ReleaseBodyBudget`` middleware sees every request out.
"""

from __future__ import annotations

import mmap
from typing import Any

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.types import ASGIApp, Receive, Scope, Send

from genie.errors import MalformedRequestError, PayloadTooLargeError, ServerBusyError
from genie.wire import receive_buffer

__all__ = ["BodyBudget", "ReleaseBodyBudget", "receive_body"]

#: Buffers at least this large are allocated on a worker thread: ``receive_buffer``
#: maps and populates them in one system call, which for gigabytes takes long
#: enough (about 60 ms per 256 MB) to stall every other connection on the loop.
ALLOCATE_OFF_LOOP_BYTES = 1024 * 1024
#: Where a request keeps the bytes it has reserved (``scope["state"]``).
RESERVED_KEY = "genie_body_reserved"
#: Set when the reply must close the connection (the body was not read to its end).
CLOSE_KEY = "genie_close_connection"


class BodyBudget:
    """Bytes of request bodies the server has committed to hold at once.

    Used only from the event loop (one thread), so plain integers suffice.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit_bytes = limit_bytes
        self.reserved = 0

    def reserve(self, nbytes: int, what: str) -> None:
        """Reserve ``nbytes`` or refuse with 503 ``busy``; ``what`` names the body."""
        if self.reserved + nbytes > self.limit_bytes:
            raise ServerBusyError(
                f"server busy: request bodies in flight already take {self.reserved} of "
                f"the server's {self.limit_bytes}-byte budget (--max-inflight-body-mb), "
                f"no room for {what}; retry shortly")
        self.reserved += nbytes

    def release(self, nbytes: int) -> None:
        self.reserved -= nbytes


class ReleaseBodyBudget:
    """Pure ASGI middleware: return a request's reserved bytes once it has ended.

    The received body lives as long as the request (tensors alias it, and /echo
    streams its reply straight from it), so the bytes count until the reply has
    been sent, or the request failed, or the client went away.
    """

    def __init__(self, app: ASGIApp, budget: BodyBudget) -> None:
        self.app = app
        self.budget = budget

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, send)
        finally:
            self.budget.release(state.pop(RESERVED_KEY, 0))


async def receive_body(request: Request, limit: int, budget: BodyBudget,
                       idle_timeout_s: float) -> bytearray | mmap.mmap:
    """Receive the body into one writable buffer (tensors alias it).

    A declared ``Content-Length`` over ``limit`` is refused (413) before reading a
    byte, and one over what is left of ``budget`` is refused (503).  A client that
    hangs up mid-body, or stalls for ``idle_timeout_s``, sent a bad request: it is
    counted as ``malformed_request`` rather than logged as an unhandled 500.
    """
    try:
        return await _receive(request, limit, budget, idle_timeout_s)
    except ClientDisconnect:
        raise MalformedRequestError("the client disconnected before sending the whole "
                                    "request body") from None


async def _receive(request: Request, limit: int, budget: BodyBudget,
                   idle_timeout_s: float) -> bytearray | mmap.mmap:
    declared = request.headers.get("content-length")
    if declared is None:
        return await _receive_unsized(request, limit, budget, idle_timeout_s)
    try:
        size = int(declared)
    except ValueError:
        raise MalformedRequestError(f"bad Content-Length {declared!r}") from None
    if size < 0:
        raise MalformedRequestError(f"bad Content-Length {declared!r}")
    if size > limit:
        raise PayloadTooLargeError(f"request body is {size} bytes, over the server's "
                                   f"{limit}-byte limit (--max-body-mb)")
    _reserve(request, budget, size, f"this {size}-byte body")
    buf: bytearray | mmap.mmap | None = None
    view = memoryview(b"")
    pos = 0
    more = True
    while more:
        chunk, more = await _next_chunk(request, idle_timeout_s)
        if not chunk:
            continue
        end = pos + len(chunk)
        if end > size:
            raise MalformedRequestError("request body is longer than its Content-Length")
        if buf is None:  # only now: a client that sends headers alone costs no memory
            buf = await _allocate(size)
            view = memoryview(buf)
        view[pos:end] = chunk
        pos = end
    if pos != size:
        raise MalformedRequestError(f"request body ended after {pos} of {size} bytes")
    return bytearray() if buf is None else buf


async def _receive_unsized(request: Request, limit: int, budget: BodyBudget,
                           idle_timeout_s: float) -> bytearray:
    """A chunked body: reserved chunk by chunk as it grows."""
    growing = bytearray()
    more = True
    while more:
        chunk, more = await _next_chunk(request, idle_timeout_s)
        if len(growing) + len(chunk) > limit:
            raise PayloadTooLargeError(
                f"request body passed the server's {limit}-byte limit (--max-body-mb)")
        _reserve(request, budget, len(chunk), f"{len(chunk)} more bytes of a chunked body")
        growing += chunk
    return growing


def _reserve(request: Request, budget: BodyBudget, nbytes: int, what: str) -> None:
    if nbytes:
        budget.reserve(nbytes, what)
        state: dict[str, Any] = request.scope["state"]
        state[RESERVED_KEY] = state.get(RESERVED_KEY, 0) + nbytes


async def _next_chunk(request: Request, idle_timeout_s: float) -> tuple[bytes, bool]:
    """The next piece of the body and whether more follows, within the idle timeout."""
    with anyio.move_on_after(idle_timeout_s) as waited:
        message = await request.receive()
    if waited.cancelled_caught:
        request.scope["state"][CLOSE_KEY] = True
        raise MalformedRequestError(
            f"the request body stalled: no byte arrived for {idle_timeout_s:g} s "
            "(--body-timeout-s)")
    if message["type"] == "http.disconnect":
        raise ClientDisconnect()
    return message.get("body", b""), bool(message.get("more_body", False))


async def _allocate(size: int) -> bytearray | mmap.mmap:
    if size < ALLOCATE_OFF_LOOP_BYTES:
        return receive_buffer(size)
    return await anyio.to_thread.run_sync(receive_buffer, size)
