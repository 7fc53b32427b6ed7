"""``genie.AsyncClient``: the ``asyncio`` twin of ``genie.Client``.

Every API method is the same ``Endpoints`` method as on ``Client``, awaited.  Plain
``http://`` goes through the very transport ``Client`` uses (``genie.client.http1``),
each exchange on a worker thread of the client's own (up to ``MAX_IN_FLIGHT`` at
once), its progress reported on the event loop: measured, httpx's asyncio path cost
about three times the blocking client's round trip on a small tensor and twice on
large ones (docs/performance.md), and a thread blocked in ``recv_into`` holds no
event loop up.  A cancelled call stops waiting at once; its exchange finishes (or
times out) on the thread, so the connection is left at a clean boundary.  https and
proxied URLs go through httpx's ``AsyncClient``.
``aclose()`` ends the session as ``Client.close()`` does; one left open at
interpreter exit is ended by ``genie.client.sync.ExitRelease`` with a blocking
request, since no event loop runs by then.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from types import TracebackType
from typing import Any, TypeVar

import httpx

from genie.client import httpx_support as hx
from genie.client.api import Endpoints
from genie.client.base import DEFAULT_RETRIES, NEW_SESSION, AsyncClientBase, NewSession
from genie.client.calls import Call, Plan, Sink
from genie.client.meter import Progress, ProgressCallback
from genie.client.sync import ExitRelease, plain_pool, send_plain
from genie.client.timeout import DEFAULT_TIMEOUT, Timeout
from genie.errors import GenieError

__all__ = ["MAX_IN_FLIGHT", "AsyncClient"]

T = TypeVar("T")
#: Exchanges one ``AsyncClient`` runs at once over ``genie.client.http1`` (one worker
#: thread each); more wait for a thread.  httpx's own pool allows as many connections.
MAX_IN_FLIGHT = hx.LIMITS.max_connections or 100


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
        self._plain = plain_pool(self.url, self.timeout, self.note_reconnect)
        # As in ``Client``: httpx only where the plain transport does not go.
        self._http = (httpx.AsyncClient(base_url=self.url, limits=hx.LIMITS)
                      if self._plain is None else None)
        self._threads: ThreadPoolExecutor | None = None

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
        if self._plain is not None:
            loop = asyncio.get_running_loop()
            if self._threads is None:
                self._threads = ThreadPoolExecutor(MAX_IN_FLIGHT, thread_name_prefix="genie-aio")

            def on_loop(progress: ProgressCallback) -> ProgressCallback:
                def relay(p: Progress) -> None:
                    loop.call_soon_threadsafe(progress, p)
                return relay

            return await loop.run_in_executor(self._threads, send_plain, self, plan,
                                              self._plain, on_loop)
        assert self._http is not None
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
            if self._plain is not None:
                self._plain.close()
            if self._threads is not None:
                self._threads.shutdown(wait=False)
            if self._http is not None:
                await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
