"""Speaking through httpx: what the sync client (for https and proxies) and the async
client share when they send a plan with httpx.

httpx annotates upload content as bytes, but passes each chunk on to h11, which
accepts any buffer: bodies go out as 1 MiB memoryviews of tensor memory, never as one
bytes copy of the whole body.  Keep-alive connections expire before uvicorn closes
them (httpx's default expiry equals uvicorn's 5 s, which races the server's close),
and a GET or HEAD whose connection closed before a reply head is resent once, as
``genie.client.http1`` does (httpcore itself resends nothing once a request was
handed to a connection).  No httpx exception leaves the client: each becomes a
``TransportError`` of the matching kind.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator
from typing import Any, cast

import httpx

from genie.client.base import BaseClient
from genie.client.calls import UPLOAD_CHUNK, Plan
from genie.client.http1 import IDLE_EXPIRY_S, RESEND_SAFE_METHODS
from genie.client.meter import Metered
from genie.errors import TransportError
from genie.wire import slices

__all__ = ["LIMITS", "async_content", "request_args", "resend_now", "sync_content",
           "translate"]

LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20,
                      keepalive_expiry=IDLE_EXPIRY_S)

_KINDS: tuple[tuple[type[httpx.HTTPError], str], ...] = (
    (httpx.ConnectTimeout, "connect_timeout"), (httpx.PoolTimeout, "connect_timeout"),
    (httpx.ConnectError, "connect"), (httpx.ReadTimeout, "read_timeout"),
    (httpx.WriteTimeout, "write_timeout"), (httpx.ReadError, "read"),
    (httpx.WriteError, "write"),
)


def _pieces(client: BaseClient, plan: Plan) -> Iterator[memoryview]:
    body = client.upload_chunks(plan)
    return iter(body) if isinstance(body, Metered) else slices(body, UPLOAD_CHUNK)


def sync_content(client: BaseClient, plan: Plan) -> Iterable[bytes] | None:
    if plan.method != "POST":
        return None
    return cast("Iterable[bytes]", _pieces(client, plan))


def async_content(client: BaseClient, plan: Plan) -> AsyncIterable[bytes] | None:
    if plan.method != "POST":
        return None

    async def upload() -> AsyncIterator[memoryview]:
        for chunk in _pieces(client, plan):
            yield chunk

    return cast("AsyncIterable[bytes]", upload())


def request_args(client: BaseClient, plan: Plan) -> dict[str, Any]:
    """The keyword arguments of ``httpx.Client.stream`` for ``plan`` (but the content)."""
    return {"method": plan.method, "url": plan.path, "params": plan.params,
            "headers": client.headers(plan),
            "timeout": httpx.Timeout(client.plan_timeout(plan),
                                     connect=min(client.timeout, 10.0))}


def resend_now(plan: Plan, exc: httpx.HTTPError, replied: bool) -> bool:
    """Whether to resend at once: a GET or HEAD whose (likely reused, server-closed)
    connection failed before a reply head arrived."""
    return (not replied and plan.method in RESEND_SAFE_METHODS
            and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)))


def translate(client: BaseClient, plan: Plan, exc: httpx.HTTPError) -> TransportError:
    """The ``TransportError`` for an httpx failure.  Only failures to connect are
    retryable: then the server never saw the request."""
    kind = next((k for cls, k in _KINDS if isinstance(exc, cls)), "protocol")
    return client.transport_error(plan, f"{type(exc).__name__}: {exc}", kind,
                                  retryable=kind in ("connect", "connect_timeout"))
