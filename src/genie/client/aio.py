"""``genie.AsyncClient``: the ``asyncio`` twin of ``genie.Client``, over httpx.

Every API method is the same ``Endpoints`` method as on ``Client``, awaited.
``aclose()`` ends the session as ``Client.close()`` does; one left open at
interpreter exit is ended by ``genie.client.sync.ExitRelease`` with a blocking
request, since no event loop runs by then.
"""

from __future__ import annotations

import asyncio
import time
from types import TracebackType
from typing import Any, TypeVar

import httpx

from genie.client import httpx_support as hx
from genie.client.calls import (
    DEFAULT_RETRIES,
    DEFAULT_TIMEOUT,
    NEW_SESSION,
    AsyncClientBase,
    Call,
    Endpoints,
    NewSession,
    Plan,
    ProgressCallback,
    Sink,
    Timeout,
)
from genie.client.sync import ExitRelease
from genie.errors import GenieError

__all__ = ["AsyncClient"]

T = TypeVar("T")


class AsyncClient(AsyncClientBase, Endpoints):
    """An ``asyncio`` Genie client: ``await client.execute("relu", x)``.

    Use it as an async context manager, or call ``aclose()``.
    """

    def __init__(self, url: str, *, token: str | None = None,
                 timeout: float | Timeout = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                 session: str | NewSession | None = NEW_SESSION,
                 progress: ProgressCallback | None = None) -> None:
        super().__init__(url, token=token, timeout=timeout, retries=retries, session=session,
                         progress=progress)
        self._http = httpx.AsyncClient(base_url=self.url, limits=hx.LIMITS)

    def watch_exit(self) -> None:
        self.exit_hook = ExitRelease(self)

    async def perform(self, call: Call[T]) -> T:
        if call.plan is None:
            return call.parse(None)
        attempt = 0
        while True:
            try:
                return call.parse(await self._send(call.plan))
            except GenieError as exc:
                delay = self.retry_delay(exc, attempt)
                if delay is None:
                    raise
                await asyncio.sleep(delay)
                attempt += 1

    async def _send(self, plan: Plan) -> Any:
        for last_try in (False, True):
            started = time.perf_counter()
            replied = False
            try:
                async with self._http.stream(**hx.request_args(self, plan),
                                             content=hx.async_content(self, plan)) as resp:
                    replied = True
                    sink = Sink.for_length(resp.headers.get("content-length"),
                                           lambda size: self.download_meter(plan, size))
                    async for chunk in resp.aiter_raw():
                        sink.write(chunk)
                    return self.finish(plan, resp.status_code, resp.headers, sink.body(),
                                       started)
            except httpx.HTTPError as exc:
                if last_try or not hx.resend_now(plan, exc, replied):
                    raise hx.translate(self, plan, exc) from exc
                self.note_reconnect()
        raise AssertionError("unreachable")

    async def aclose(self) -> None:
        """End the session (as ``Client.close``), then close the connections."""
        if self.closed:
            return
        call = self.close_call()
        try:
            if call is not None:
                assert call.plan is not None
                try:
                    call.parse(await self._send(call.plan))
                except GenieError as exc:
                    self.close_failed(exc)
        finally:
            self.mark_closed()
            await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
