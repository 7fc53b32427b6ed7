"""``genie.Client``: the blocking client, over keep-alive connections.

Plain ``http://`` goes through ``genie.client.http1`` (a fraction of httpx's
per-request cost, and ``recv_into`` the reply buffer); https and proxied URLs go
through httpx, which handles TLS, proxies and ``NO_PROXY``.

``close()`` ends the client's server session (its handles are freed in one request);
a client still open when the interpreter exits is closed by ``ExitRelease``, for
``AsyncClient`` too.
"""

from __future__ import annotations

import atexit
import os
import time
import weakref
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies

import httpx

from genie.client import httpx_support as hx
from genie.client.api import Endpoints
from genie.client.base import DEFAULT_RETRIES, NEW_SESSION, BaseClient, NewSession, SyncClientBase
from genie.client.calls import Call, Plan, Sink
from genie.client.http1 import Http1Pool
from genie.client.meter import ProgressCallback, ProgressRelay
from genie.client.timeout import DEFAULT_TIMEOUT, Timeout
from genie.errors import GenieError, TransportError

__all__ = ["EXIT_TIMEOUT_S", "Client", "ExitRelease", "plain_pool", "send_plain"]

T = TypeVar("T")

#: At interpreter exit, the longest ending a still-open client's session may take to
#: connect, and then to send or read (the server may be gone, or unreachable).
EXIT_TIMEOUT_S = 2.0


def plain_pool(url: str, timeout: float, on_reconnect: Callable[[], None]) -> Http1Pool | None:
    """``genie.client.http1`` for plain ``http://`` with no proxy in the environment;
    ``None`` (httpx) otherwise."""
    parts = urlsplit(url)
    proxies = getproxies()
    if parts.scheme != "http" or proxies.get("http") or proxies.get("all"):
        return None
    assert parts.hostname is not None and parts.port is not None  # normalize_url made sure
    return Http1Pool(parts.hostname, parts.port, connect_timeout=min(timeout, 10.0),
                     on_reconnect=on_reconnect)


def send_plain(client: BaseClient, plan: Plan, pool: Http1Pool,
               via: ProgressRelay | None = None) -> Any:
    """One exchange over ``genie.client.http1``: whole tensor views out, one
    ``recv_into`` the reply buffer in; blocking (``AsyncClient`` runs it on a worker
    thread, its progress told through ``via``)."""
    started = time.perf_counter()
    target = f"{plan.path}?{urlencode(plan.params, quote_via=quote)}" if plan.params \
        else plan.path
    chunks = client.upload_chunks(plan, via) if plan.method == "POST" else ()
    try:
        reply = pool.request(plan.method, target, client.headers(plan), chunks, plan.nbytes,
                             timeout=client.plan_timeout(plan),
                             meter=lambda size: client.download_meter(plan, size, via))
    except TransportError as exc:
        raise client.transport_error(plan, exc.message, exc.kind, exc.retryable) from exc
    return client.finish(plan, reply.status, reply.headers, reply.body, started)


class Client(SyncClientBase, Endpoints):
    """A blocking Genie client.

    ``url`` is ``HOST``, ``HOST:PORT`` or ``http(s)://HOST:PORT`` (port 8888 by
    default).  Use it as a context manager, or call ``close()``.
    """

    def __init__(self, url: str, *, token: str | None = None,
                 timeout: float | Timeout = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                 session: str | NewSession | None = NEW_SESSION,
                 progress: ProgressCallback | None = None) -> None:
        super().__init__(url, token=token, timeout=timeout, retries=retries, session=session,
                         progress=progress)
        self._plain = plain_pool(self.url, self.timeout, self.note_reconnect)
        # httpx only where the plain transport does not go (https, a proxy): building
        # one costs tens of milliseconds (its TLS context).
        self._http = (httpx.Client(base_url=self.url, limits=hx.LIMITS)
                      if self._plain is None else None)

    def watch_exit(self) -> None:
        self.exit_hook = ExitRelease(self)

    def perform(self, call: Call[T]) -> T:
        if call.plan is None:
            return call.parse(None)
        attempt = 0
        while True:
            try:
                return call.parse(self._send(call.plan))
            except GenieError as exc:
                delay = self.retry_delay(exc, attempt)
                if delay is None:
                    raise
                time.sleep(delay)
                attempt += 1

    def _send(self, plan: Plan) -> Any:
        if self._plain is not None:
            return send_plain(self, plan, self._plain)
        assert self._http is not None
        for last_try in (False, True):
            started = time.perf_counter()
            replied = False
            try:
                with self._http.stream(**hx.request_args(self, plan),
                                       content=hx.sync_content(self, plan)) as resp:
                    replied = True
                    sink = Sink.for_length(resp.headers.get("content-length"),
                                           lambda size: self.download_meter(plan, size))
                    for chunk in resp.iter_raw():
                        sink.write(chunk)
                    return self.finish(plan, resp.status_code, resp.headers, sink.body(),
                                       started)
            except httpx.HTTPError as exc:
                if last_try or not hx.resend_now(plan, exc, replied):
                    raise hx.translate(self, plan, exc) from exc
                self.note_reconnect()
        raise AssertionError("unreachable")

    def close(self) -> None:
        """End the session (its handles are freed, in one request, bounded by
        ``CLOSE_TIMEOUT_S``; a server that is gone is not an error), then close the
        connections.  Closing twice does nothing."""
        if self.closed:
            return
        call = self.close_call()
        try:
            if call is not None:
                assert call.plan is not None
                try:
                    call.parse(self._send(call.plan))
                except GenieError as exc:
                    self.close_failed(exc)
        finally:
            self.mark_closed()
            if self._plain is not None:
                self._plain.close()
            if self._http is not None:
                self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class ExitRelease:
    """Ends an open client's session when the interpreter exits (``atexit``).

    Registered when a client first may hold handles, cancelled by ``close()``.  It
    holds the client weakly: a client collected unclosed is left to the server's lease
    (a request made from the garbage collector could block any thread, an event loop
    included).  At exit it sends one ``DELETE /sessions/{id}`` from a fresh blocking
    client with short timeouts (``EXIT_TIMEOUT_S``), also for an ``AsyncClient``,
    whose event loop is gone by then; it never raises, and a forked child (which
    inherits the registration) does nothing.
    """

    def __init__(self, client: BaseClient) -> None:
        self._client = weakref.ref(client)
        self._pid = os.getpid()
        atexit.register(self)
        # Collected unclosed: unregister.  Not at exit itself, where it would unregister
        # this very hook before it runs.
        self._collected = weakref.finalize(client, atexit.unregister, self)
        self._collected.atexit = False

    def cancel(self) -> None:
        atexit.unregister(self)
        self._collected.detach()

    def __call__(self) -> None:
        client = self._client()
        if client is None or os.getpid() != self._pid or not client.needs_release():
            return
        try:
            with Client(client.url, token=client.token, timeout=EXIT_TIMEOUT_S, retries=0,
                        session=client.session) as ender:
                ender.end_session()
        except Exception:  # noqa: S110 - at exit: the server may be gone; its lease frees them
            pass
