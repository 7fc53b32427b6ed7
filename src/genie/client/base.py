"""What both clients are: configuration, the session, the retry policy and the handling
of each exchange (``BaseClient``), written once so the twins cannot drift apart.

Only connection failures and 503 are retried, with exponential backoff; any other error
would fail the same way again, or might repeat a request the server already acted on.

Each client is a *session* on the server: a random id, sent as ``X-Genie-Session`` with
every request, owns the handles the client makes, so closing the client frees them in
one request (``end_session``) and the server frees them by itself when the session goes
idle past its lease (a client killed before it could close).  Releases can wait
(``defer_release``): they travel with the next ``run_graph``, which frees them after the
graph ran, so a decode loop frees last step's KV cache in the same request that
computes the next step.
"""

from __future__ import annotations

import json
import logging
import mmap
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from genie.client.calls import (
    UPLOAD_CHUNK,
    Call,
    Plan,
    RemoteTensor,
    as_dict,
    handle_id,
    parse_server_timing,
    raise_for_error,
)
from genie.client.meter import (
    PROGRESS_MIN_BYTES,
    Disturbances,
    Exchange,
    Metered,
    Progress,
    ProgressCallback,
    ProgressRelay,
)
from genie.client.timeout import DEFAULT_TIMEOUT, Timeout
from genie.errors import ConfigurationError, GenieError, RemoteError, ServerBusyError, TransportError
from genie.protocol import SAFETENSORS_MEDIA_TYPE, SESSION_HEADER, is_session_id, normalize_url
from genie.wire import decode

__all__ = ["BACKOFF_BASE", "CLOSE_TIMEOUT_S", "DEFAULT_RETRIES", "NEW_SESSION",
           "AsyncClientBase", "BaseClient", "Cancellable", "NewSession", "SyncClientBase"]

DEFAULT_RETRIES = 3
BACKOFF_BASE = 0.1
#: The longest ``close()`` waits for the server to end the session (it never raises).
CLOSE_TIMEOUT_S = 5.0


class NewSession:
    """The type of ``NEW_SESSION``."""

    def __repr__(self) -> str:
        return "NEW_SESSION"


#: ``session=`` default: a fresh random session id (uuid4 hex) for each client.
NEW_SESSION = NewSession()

T = TypeVar("T")
log = logging.getLogger("genie.client")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class BaseClient:
    """Configuration and the handling of each exchange, shared by both clients."""

    def __init__(self, url: str, *, token: str | None = None,
                 timeout: float | Timeout = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
                 session: str | NewSession | None = NEW_SESSION,
                 progress: ProgressCallback | None = None) -> None:
        try:
            self.url = normalize_url(url)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        if isinstance(session, NewSession):
            session = uuid.uuid4().hex
        elif session is not None and not is_session_id(session):
            raise ConfigurationError("session must be 1 to 128 letters, digits, '-' or '_' "
                                     "(or None: no session)")
        #: The server-side session this client's handles belong to (None: anonymous).
        self.session = session
        #: Whether the session may hold handles this client made (so closing ends it).
        self.may_hold = False
        self.closed = False
        #: What ends the session at interpreter exit, once the client may hold handles.
        self.exit_hook: Cancellable | None = None
        self._pending: dict[str, None] = {}  # deferred releases, in order
        self._lock = threading.Lock()
        if token is not None and not (token.isascii() and token.isprintable()
                                      and " " not in token):
            # It travels in an HTTP header: non-ASCII would fail at every request with
            # an encoding error, and a line break would forge headers.
            raise ConfigurationError("token must be printable ASCII without spaces")
        self.token = token
        #: The whole policy; a plain number is its base, at the default assumed rate.
        self.timeouts = timeout if isinstance(timeout, Timeout) else Timeout(base_s=timeout)
        self.timeout = self.timeouts.base_s
        self.retries = retries
        self.last = Exchange()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.requests = 0
        self.disturbances = Disturbances()
        #: Hears the progress of bodies of at least ``PROGRESS_MIN_BYTES``; may be set any time.
        self.progress = progress

    # --- what callers who time requests need to know ---------------------------------

    def upload_chunks(self, plan: Plan, via: ProgressRelay | None = None
                      ) -> Sequence[bytes | memoryview] | Metered:
        """The body to send: ``plan.chunks`` as is, or metered when someone wants progress
        (told through ``via(progress)`` when given: another thread sends it)."""
        progress = self.progress
        if progress is None or plan.nbytes < PROGRESS_MIN_BYTES:
            return plan.chunks
        return Metered(plan, progress if via is None else via(progress))

    def download_meter(self, plan: Plan, total: int | None, via: ProgressRelay | None = None
                       ) -> Callable[[int], None] | None:
        """A function to call with the bytes received so far, or None (no one listens, or
        small); ``via`` as for ``upload_chunks``."""
        progress = self.progress
        if progress is None or (total is not None and total < PROGRESS_MIN_BYTES):
            return None
        if via is not None:
            progress = via(progress)
        last = [0]

        def advance(done: int) -> None:
            # At most once per UPLOAD_CHUNK, and always at the end.
            if done - last[0] >= UPLOAD_CHUNK or done == total:
                last[0] = done
                progress(Progress(plan.method, plan.path, "download", done, total))

        return advance

    def note_reconnect(self) -> None:
        """A transport replaced a connection the server had closed, or resent on a fresh one
        (from AsyncClient's worker threads too, so under the lock)."""
        with self._lock:
            self.disturbances.reconnects += 1

    def headers(self, plan: Plan) -> dict[str, str]:
        headers = {"accept": f"{SAFETENSORS_MEDIA_TYPE}, application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if self.session is not None:
            headers[SESSION_HEADER] = self.session
        if plan.method == "POST":
            headers["content-type"] = plan.content_type
            headers["content-length"] = str(plan.nbytes)
        return headers

    def timeout_s(self, nbytes: int) -> float:
        """The budget of a request that sends ``nbytes`` (see ``Timeout``)."""
        return self.timeouts.budget_s(nbytes)

    def plan_timeout(self, plan: Plan) -> float:
        """The timeout of ``plan``: its own, else ``timeout_s`` of its payload."""
        return plan.timeout if plan.timeout is not None else self.timeout_s(plan.nbytes)

    # --- the session ------------------------------------------------------------

    def holding(self) -> None:
        """Note that the session may now hold handles of this client: closing it, or
        the interpreter's exit, ends the session."""
        with self._lock:
            if self.may_hold:
                return
            self.may_hold = True
        self.watch_exit()

    def watch_exit(self) -> None:
        """Arrange for the session to end at interpreter exit (each client's own way)."""

    def needs_release(self) -> bool:
        """Whether closing must tell the server: the session may hold this client's
        handles, or releases are still deferred."""
        return not self.closed and self.session is not None and bool(
            self.may_hold or self._pending)

    def defer_release(self, *handles: RemoteTensor | str) -> None:
        """Release ``handles`` with the next ``run_graph`` (after the graph has run, in the
        same request) or the next ``release()``; ``close()`` frees them too."""
        with self._lock:
            self._pending.update(dict.fromkeys(handle_id(h) for h in handles))

    @property
    def pending_releases(self) -> tuple[str, ...]:
        """Handle ids whose deferred release has not reached the server yet."""
        with self._lock:
            return tuple(self._pending)

    def _take_pending(self, ids: Sequence[str]) -> list[str]:
        """``ids`` plus the deferred releases, without duplicates, in order."""
        with self._lock:
            return list(dict.fromkeys([*ids, *self._pending]))

    def _sent(self, ids: Sequence[str]) -> None:
        """The server acted on the release of ``ids``: no longer deferred."""
        with self._lock:
            for i in ids:
                self._pending.pop(i, None)

    def close_call(self) -> Call[dict[str, Any]] | None:
        """The request ``close()`` sends (None: nothing to tell the server)."""
        if not self.needs_release():
            return None
        return self._end_session_call(min(self.timeout, CLOSE_TIMEOUT_S))

    def close_failed(self, exc: GenieError) -> None:
        """``close()`` could not end the session: not an error (the server may be gone;
        if not, its lease frees the handles)."""
        log.debug("ending session %s on %s: %s", self.session, self.url, exc)

    def mark_closed(self) -> None:
        self.closed = True
        if self.exit_hook is not None:
            self.exit_hook.cancel()

    def _end_session_call(self, timeout: float | None) -> Call[dict[str, Any]]:
        if self.session is None:
            raise ConfigurationError("this client has no session (session=None)")

        def ended(reply: Any) -> dict[str, Any]:
            with self._lock:
                self.may_hold = False
                self._pending.clear()
            return as_dict(reply)

        return Call(Plan("DELETE", f"/sessions/{self.session}", timeout=timeout), ended)

    def transport_error(self, plan: Plan, detail: str, kind: str, retryable: bool
                        ) -> TransportError:
        """A failed exchange, named by its request; a timeout also names its budget, how
        it was computed, and how to raise it."""
        message = f"{plan.method} {self.url}{plan.path} failed ({kind}): {detail}"
        if kind in ("read_timeout", "write_timeout") and plan.timeout is not None:
            message += f"; this request's own {plan.timeout:g} s budget"
        elif kind in ("read_timeout", "write_timeout"):
            message += (f"; {self.timeouts.explain(plan.nbytes)}. A link slower than that is "
                        "not dead: raise the budget with Client(timeout=genie.Timeout(base_s=..., "
                        "min_rate_mib_s=...)) or, for the pytest checks, --genie-timeout=SECONDS")
        elif kind == "connect_timeout":
            message += (f"; no connection within {min(self.timeout, 10.0):g} s "
                        "(min(timeout base, 10 s)): is the server up and the port reachable?")
        return TransportError(message, kind=kind, retryable=retryable)

    def finish(self, plan: Plan, status: int, headers: Mapping[str, str],
               body: bytearray | mmap.mmap, started: float) -> Any:
        """Record the exchange; raise its error, or return its decoded body."""
        last = Exchange(status=status, round_trip_ms=(time.perf_counter() - started) * 1000,
                        bytes_sent=plan.nbytes, bytes_received=len(body),
                        server_timing=parse_server_timing(headers.get("server-timing")))
        with self._lock:  # AsyncClient finishes exchanges on several worker threads at once
            self.last = last
            self.bytes_sent += plan.nbytes
            self.bytes_received += len(body)
            self.requests += 1
        if status >= 400:  # never copy a successful (possibly huge) body
            raise_for_error(status, bytes(body))
        if plan.raw_back:
            return body
        if plan.tensors_back:
            return decode(body)
        try:
            return json.loads(body if isinstance(body, bytearray) else bytes(body))
        except ValueError as exc:
            raise RemoteError(f"reply to {plan.method} {plan.path} is not JSON",
                              status=status) from exc

    def retry_delay(self, exc: GenieError, attempt: int) -> float | None:
        """Seconds to wait before retrying after ``exc`` on attempt ``attempt`` (from 0),
        or ``None`` when it must not be retried.  Counts the failure in ``disturbances``."""
        if isinstance(exc, TransportError):
            self.disturbances.transport_errors += 1
            if exc.kind.endswith("timeout"):
                self.disturbances.timeouts += 1
        if attempt >= self.retries or not (
                isinstance(exc, ServerBusyError)
                or (isinstance(exc, TransportError) and exc.retryable)):
            return None
        self.disturbances.retries += 1
        return float(BACKOFF_BASE * (2 ** attempt))


class SyncClientBase(BaseClient):
    """A client whose endpoints return their results (``genie.Client``)."""

    def perform(self, call: Call[T]) -> T:
        raise NotImplementedError


class AsyncClientBase(BaseClient):
    """A client whose endpoints return awaitables of their results (``genie.AsyncClient``)."""

    async def perform(self, call: Call[T]) -> T:
        raise NotImplementedError
