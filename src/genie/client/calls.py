"""What the two clients share: each API call planned, and its reply read, in one place.

A call is first *planned* (``Plan``: method, path, query, body chunks) and paired
with the function that reads its reply (``Call``); the sync ``Client`` and the
``AsyncClient`` only differ in how they send a plan and wait for the bytes.  Every
API method is written once, as an ``endpoint`` on ``Endpoints``: on a ``Client`` it
returns the result, on an ``AsyncClient`` an awaitable of it.  Configuration, the
error mapping (``raise_for_error``), the retry policy and the bookkeeping of each
exchange (``BaseClient.finish``) are here too, so the twins cannot drift apart.

Bodies go out as memoryview chunks straight from tensor memory with an exact
Content-Length, and replies are collected into one preallocated buffer (``Sink``)
that the decoded tensors then share.

Only connection failures and 503 are retried, with exponential backoff; any other
error would fail the same way again, or might repeat a request the server already
acted on.

Each client is a *session* on the server: a random id, sent as ``X-Genie-Session``
with every request, owns the handles the client makes, so closing the client frees
them in one request (``end_session``) and the server frees them by itself when the
session goes idle past its lease (a client killed before it could close).  Releases
can wait (``defer_release``): they travel with the next ``run_graph``, which frees
them after the graph ran, so a decode loop frees last step's KV cache in the same
request that computes the next step.

Two things are kept beside the exchanges for callers that time them (the pytest
checks): ``Disturbances`` counts retries, reconnects, timeouts and transport errors, so
a figure measured while they happened can be marked as such; and a ``progress``
callback hears how far a large body has gone, in either direction.

How long a request may take is a ``Timeout``: a base plus the request's bytes at the
slowest rate the link is assumed to move.  The default assumes 1 MiB/s (about 8
Mbit/s), so a healthy slow link is never taken for a dead one; a timeout error
names the budget, how it was computed, and how to raise it.
"""

from __future__ import annotations

import json
import logging
import mmap
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Concatenate, Generic, Literal, ParamSpec, Protocol, TypeVar, overload
from urllib.parse import quote

import torch

from genie.errors import (
    ConfigurationError,
    GenieError,
    MalformedRequestError,
    RemoteError,
    ServerBusyError,
    TransportError,
    error_class_for,
)
from genie.graph import (
    GRAPH_METADATA_KEY,
    HANDLES_METADATA_KEY,
    RELEASED_METADATA_KEY,
    Ref,
    to_wire,
)
from genie.protocol import (
    PROTOCOL_VERSION,
    SAFETENSORS_MEDIA_TYPE,
    SESSION_HEADER,
    is_session_id,
    normalize_url,
)
from genie.wire import Decoded, decode, dtype_from_name, encode, receive_buffer, slices

__all__ = ["BACKOFF_BASE", "CLOSE_TIMEOUT_S", "DEFAULT_MIN_RATE_MIB_S", "DEFAULT_RETRIES",
           "DEFAULT_TIMEOUT", "NEW_SESSION", "PROGRESS_MIN_BYTES", "UPLOAD_CHUNK", "AsyncClientBase",
           "BaseClient", "Call", "Cancellable", "Disturbances", "Endpoints", "Exchange", "GraphResult",
           "NewSession", "Plan", "Progress", "ProgressCallback", "ProgressRelay", "RemoteTensor", "Sink",
           "SyncClientBase", "Timeout", "endpoint", "handle_id"]

MIB = 1024 * 1024
#: Seconds every request may take before its payload is counted.
DEFAULT_TIMEOUT = 30.0
#: The slowest link (MiB/s) the default budget serves: 1 MiB/s is about 8.4 Mbit/s.  It was
#: 10 MiB/s, which failed a healthy 20 Mbit/s link on a 256 MiB upload.
DEFAULT_MIN_RATE_MIB_S = 1.0
UPLOAD_CHUNK = 1024 * 1024
DEFAULT_RETRIES = 3
BACKOFF_BASE = 0.1
#: Bodies from this size on report their progress (smaller ones are over too soon to matter).
PROGRESS_MIN_BYTES = 8 * 1024 * 1024
#: The longest ``close()`` waits for the server to end the session (it never raises).
CLOSE_TIMEOUT_S = 5.0


class NewSession:
    """The type of ``NEW_SESSION``."""

    def __repr__(self) -> str:
        return "NEW_SESSION"


#: ``session=`` default: a fresh random session id (uuid4 hex) for each client.
NEW_SESSION = NewSession()

P = ParamSpec("P")
T = TypeVar("T")
log = logging.getLogger("genie.client")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """How long a request may take: ``base_s`` plus its bytes at ``min_rate_mib_s``.

    The budget is the longest wait for any one step of a request (connecting apart:
    at most ``min(base_s, 10)`` seconds) and, on the plain-HTTP transport, for sending
    a whole body.  A link slower than ``min_rate_mib_s`` needs a lower rate or a larger
    base: ``Client(url, timeout=Timeout(base_s=60, min_rate_mib_s=0.25))``.
    """

    base_s: float = DEFAULT_TIMEOUT
    min_rate_mib_s: float = DEFAULT_MIN_RATE_MIB_S

    def __post_init__(self) -> None:
        for name in ("base_s", "min_rate_mib_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < float("inf"):
                raise ConfigurationError(f"Timeout.{name} must be a finite number > 0, "
                                         f"not {value!r}")

    def budget_s(self, nbytes: int) -> float:
        """Seconds allowed for a request that sends ``nbytes``."""
        return self.base_s + nbytes / (self.min_rate_mib_s * MIB)

    def explain(self, nbytes: int) -> str:
        """The budget for ``nbytes`` and how it was computed, for an error message."""
        return (f"{self.budget_s(nbytes):.3g} s budget = {self.base_s:g} s base + "
                f"{nbytes / MIB:.1f} MiB at an assumed {self.min_rate_mib_s:g} MiB/s")


@dataclass(frozen=True)
class RemoteTensor:
    """A tensor held on the server (``POST /tensors`` or a kept graph output)."""

    id: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int

    @classmethod
    def from_json(cls, info: Mapping[str, Any]) -> RemoteTensor:
        return cls(id=str(info["id"]), shape=tuple(info["shape"]),
                   dtype=dtype_from_name(info["dtype"]), nbytes=int(info["nbytes"]))


@dataclass
class GraphResult:
    """What ``run_graph`` returns: fetched outputs and kept handles, by node id, and
    which of the handles it was asked to release it freed (``missing``: not held)."""

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    handles: dict[str, RemoteTensor] = field(default_factory=dict)
    released: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


@dataclass
class Exchange:
    """Figures of the last request: status, round trip, bytes each way, server phases (ms)."""

    status: int = 0
    round_trip_ms: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    server_timing: dict[str, float] = field(default_factory=dict)


@dataclass
class Disturbances:
    """What went wrong on the way, counted since the client was made.

    A timing taken while any of these moved measured a retry or a reconnect as well as the
    request: compare two snapshots (``since``) around a measurement to know.
    """

    #: Requests sent again after a retryable failure (connect failure, 503).
    retries: int = 0
    #: Pooled connections found closed by the server, or closed before a reply, and replaced.
    reconnects: int = 0
    #: Exchanges that ran into a connect, read or write timeout.
    timeouts: int = 0
    #: Exchanges that failed below HTTP (connect, read, write, protocol), retried or not.
    transport_errors: int = 0

    def copy(self) -> Disturbances:
        return Disturbances(**self.as_dict())

    def since(self, before: Disturbances) -> Disturbances:
        return Disturbances(**{f.name: getattr(self, f.name) - getattr(before, f.name)
                               for f in fields(self)})

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    def __add__(self, other: Disturbances) -> Disturbances:
        return Disturbances(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                               for f in fields(self)})

    def __bool__(self) -> bool:
        return any(self.as_dict().values())


@dataclass(frozen=True)
class Progress:
    """How far one large body has gone: ``done`` of ``total`` bytes (``total`` None: unknown)."""

    method: str
    path: str
    phase: Literal["upload", "download"]
    done: int
    total: int | None


#: Called with a ``Progress`` as a large body goes out or comes in (from the thread or task
#: doing the I/O; keep it quick).
ProgressCallback = Callable[[Progress], None]
#: Wraps a progress callback so that it is delivered elsewhere (``AsyncClient``: on its
#: event loop, when a worker thread does the exchange).
ProgressRelay = Callable[[ProgressCallback], ProgressCallback]


class Metered:
    """A body's chunks as ``UPLOAD_CHUNK`` slices that report their progress as they are taken.

    Iterable more than once (a transport may resend a request on a fresh connection); each
    pass reports from zero.
    """

    def __init__(self, plan: Plan, progress: ProgressCallback) -> None:
        self.plan = plan
        self.progress = progress

    def __iter__(self) -> Iterator[memoryview]:
        done = 0
        for piece in slices(self.plan.chunks, UPLOAD_CHUNK):
            yield piece
            done += len(piece)
            self.progress(Progress(self.plan.method, self.plan.path, "upload", done, self.plan.nbytes))


@dataclass
class Plan:
    """One request, ready to send: the reply is a safetensors body when ``tensors_back``.

    ``timeout`` (seconds) replaces the one the client derives from the payload size.
    """

    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    chunks: Sequence[bytes | memoryview] = ()
    nbytes: int = 0
    tensors_back: bool = False
    content_type: str = SAFETENSORS_MEDIA_TYPE
    timeout: float | None = None
    #: The reply body itself is the result (``GET /probe``), neither tensors nor JSON.
    raw_back: bool = False


class Call(Generic[T]):
    """A plan and the function that turns its (decoded) reply into the caller's result.

    A call without a plan needs no request: ``parse(None)`` is its result.
    """

    __slots__ = ("parse", "plan")

    def __init__(self, plan: Plan | None, parse: Callable[[Any], T]) -> None:
        self.plan = plan
        self.parse = parse


# --- planning -----------------------------------------------------------------------


def handle_path(handle: RemoteTensor | str) -> str:
    """``/tensors/ID`` with the id percent-encoded whole: an id holding ``/``, ``?``,
    ``%``, ``..`` or a line break must name a handle, not another route or query.
    ``quote`` leaves dots alone, and httpx resolves a ``.`` or ``..`` segment
    (RFC 3986 dot-segment removal), so those two ids have their dots encoded too."""
    quoted = quote(handle_id(handle), safe="")
    if quoted in (".", ".."):
        quoted = quoted.replace(".", "%2E")
    return f"/tensors/{quoted}"


def tensor_plan(method: str, path: str, tensors: Mapping[str, torch.Tensor],
                metadata: Mapping[str, str] | None = None, *,
                params: dict[str, str] | None = None, tensors_back: bool = True) -> Plan:
    encoded = encode(tensors, metadata)
    return Plan(method, path, params or {}, encoded.chunks, encoded.nbytes, tensors_back)


def execute_plan(op: str, tensors: Sequence[torch.Tensor], kwargs: Mapping[str, Any]) -> Plan:
    # The positional tensor travels under a name no op uses, so the server binds
    # it to the op's first parameter whatever that is called.
    body: dict[str, torch.Tensor] = {}
    if tensors:
        (body["_positional"],) = tensors
    args: dict[str, Any] = {}

    def lift(value: Any) -> Any:
        # Tensors inside lists (cat, stack, einsum operands, getitem indices) travel
        # in the body too, and the argument refers to them as {"input": NAME}.
        if isinstance(value, torch.Tensor):
            ref = f"_arg{len(body)}"
            body[ref] = value
            return Ref("input", ref)
        if isinstance(value, (list, tuple)):
            return [lift(v) for v in value]
        return value

    for name, value in kwargs.items():
        if isinstance(value, torch.Tensor):
            body[name] = value
        else:
            args[name] = to_wire(lift(value))
    params = {"op": op}
    if args:
        params["args"] = json.dumps(args)
    return tensor_plan("POST", "/execute", body, params=params)


def probe_upload_plan(nbytes: int) -> Plan:
    """``POST /probe`` with ``nbytes`` of zeros: one zero chunk sent again and again, so the
    client spends no memory on the payload."""
    if nbytes < 0:
        raise ConfigurationError(f"cannot send {nbytes} bytes")
    zeros = memoryview(bytes(min(nbytes, UPLOAD_CHUNK)))
    whole, rest = divmod(nbytes, UPLOAD_CHUNK)
    chunks = [zeros] * whole + ([zeros[:rest]] if rest else [])
    return Plan("POST", "/probe", chunks=chunks, nbytes=nbytes)


# --- reading replies ----------------------------------------------------------------


def only_tensor(decoded: Decoded) -> torch.Tensor:
    if len(decoded.tensors) != 1:
        raise MalformedRequestError(f"expected one tensor in the reply, got "
                                    f"{len(decoded.tensors)}")
    return next(iter(decoded.tensors.values()))


def graph_result(decoded: Decoded) -> GraphResult:
    kept = json.loads(decoded.metadata.get(HANDLES_METADATA_KEY, "{}"))
    released = json.loads(decoded.metadata.get(RELEASED_METADATA_KEY, "{}"))
    return GraphResult(outputs=decoded.tensors,
                       handles={k: RemoteTensor.from_json(v) for k, v in kept.items()},
                       released=list(released.get("released", [])),
                       missing=list(released.get("missing", [])))


def handle_id(handle: RemoteTensor | str) -> str:
    return handle.id if isinstance(handle, RemoteTensor) else handle


def as_dict(reply: Any) -> dict[str, Any]:
    if not isinstance(reply, dict):
        raise RemoteError(f"expected a JSON object in the reply, got {type(reply).__name__}")
    return reply


def check_protocol(health: Mapping[str, Any]) -> dict[str, Any]:
    """``health`` itself, after refusing a server whose protocol major version differs."""
    theirs = str(health.get("protocol_version", ""))
    if theirs.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
        raise ConfigurationError(f"server speaks Genie protocol {theirs or '?'}, this client "
                                 f"{PROTOCOL_VERSION}; upgrade the older side")
    return as_dict(health)


def op_list(reply: Any) -> list[str]:
    return [op["name"] for op in as_dict(reply)["ops"]]


def raise_for_error(status: int, body: bytes) -> None:
    """Raise the ``RemoteError`` subclass an error reply's ``type`` names."""
    if status < 400:
        return
    try:
        err = json.loads(body)["error"]
        kind, message = str(err["type"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        kind, message = None, body[:500].decode("utf-8", "replace") or f"HTTP {status}"
    cls = error_class_for(status, kind)
    raise cls(message, status=status, error_type=kind or cls.error_type)


def parse_server_timing(header: str | None) -> dict[str, float]:
    timing: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            try:
                timing[name] = float(rest[4:])
            except ValueError:
                continue
    return timing


class Sink:
    """Collects a reply body into one buffer that the decoded tensors then share.

    With a declared Content-Length the buffer is allocated once, at full size (see
    ``genie.wire.receive_buffer``); a body without one, or not matching it, grows a
    ``bytearray`` instead (the caller's decode or JSON parse then reports it).
    """

    def __init__(self, size: int | None, on_write: Callable[[int], None] | None = None) -> None:
        self.buf: bytearray | mmap.mmap = receive_buffer(size) if size else bytearray()
        # A bytearray with a live memoryview cannot grow, so only a fixed one gets a view.
        self.view = memoryview(self.buf) if size else None
        self.pos = 0
        self.on_write = on_write

    @classmethod
    def for_length(cls, header: str | None,
                   meter: Callable[[int | None], Callable[[int], None] | None] | None = None) -> Sink:
        """A sink sized by a Content-Length header value (absent or malformed: growing);
        ``meter(size)`` may give it a progress function (``BaseClient.download_meter``)."""
        size = int(header) if header is not None and header.isdigit() else None
        return cls(size, meter(size) if meter is not None else None)

    def write(self, chunk: bytes) -> None:
        end = self.pos + len(chunk)
        if self.view is not None and end <= len(self.view):
            self.view[self.pos:end] = chunk
        else:
            if self.view is not None:  # longer than declared: fall back to a growing buffer
                grown = bytearray(self.view[:self.pos])
                self.view.release()
                self.buf, self.view = grown, None
            assert isinstance(self.buf, bytearray)
            self.buf += chunk
        self.pos = end
        if self.on_write is not None:
            self.on_write(end)

    def body(self) -> bytearray | mmap.mmap:
        if self.view is not None:
            self.view.release()
            self.view = None
            if self.pos != len(self.buf):  # shorter than declared
                return bytearray(memoryview(self.buf)[:self.pos])
        return self.buf


# --- the clients' common part -------------------------------------------------------


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
        """A transport replaced a connection the server had closed, or resent on a fresh one."""
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
        self.last = Exchange(status=status, round_trip_ms=(time.perf_counter() - started) * 1000,
                             bytes_sent=plan.nbytes, bytes_received=len(body),
                             server_timing=parse_server_timing(headers.get("server-timing")))
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


class endpoint(Generic[P, T]):  # noqa: N801 - used as a decorator
    """An API method written once: it plans the call, and the client it is read from
    performs it (a ``Client`` returns the result, an ``AsyncClient`` an awaitable)."""

    def __init__(self, build: Callable[Concatenate[Any, P], Call[T]]) -> None:
        self.build = build
        self.__doc__ = build.__doc__
        self.__name__ = build.__name__

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> endpoint[P, T]: ...

    @overload
    def __get__(self, obj: SyncClientBase, owner: type | None = None) -> Callable[P, T]: ...

    @overload
    def __get__(self, obj: AsyncClientBase, owner: type | None = None
                ) -> Callable[P, Coroutine[Any, Any, T]]: ...

    def __get__(self, obj: Any, owner: type | None = None) -> Any:
        if obj is None:
            return self
        build = self.build

        def method(*args: Any, **kwargs: Any) -> Any:
            return obj.perform(build(obj, *args, **kwargs))

        method.__name__ = self.__name__
        method.__doc__ = self.__doc__
        return method


def _get(path: str, parse: Callable[[Any], T]) -> Call[T]:
    return Call(Plan("GET", path), parse)


class Endpoints:
    """The Genie API, one method per call, shared by ``Client`` and ``AsyncClient``."""

    @endpoint
    def health(self) -> Call[dict[str, Any]]:
        """``GET /health``: device, GPU, versions, uptime, request counters."""
        return _get("/health", as_dict)

    @endpoint
    def check_compatible(self) -> Call[dict[str, Any]]:
        """``health()``, raising ``ConfigurationError`` on a protocol mismatch."""
        return _get("/health", check_protocol)

    @endpoint
    def stats(self) -> Call[dict[str, Any]]:
        """``GET /stats``: counters per endpoint, errors by type, latency, bytes held."""
        return _get("/stats", as_dict)

    @endpoint
    def ops(self) -> Call[list[str]]:
        """``GET /ops``: the names of the server's allowlisted ops."""
        return _get("/ops", op_list)

    @endpoint
    def device(self) -> Call[dict[str, Any]]:
        """``GET /device``: device description plus a synchronized matmul benchmark."""
        return _get("/device", as_dict)

    @endpoint
    def execute(self, op: str, tensor: torch.Tensor | None = None, /,
                **kwargs: Any) -> Call[torch.Tensor]:
        """Run one op: ``execute("add", x, other=y)``, ``execute("sum", x, dim=1)``."""
        return Call(execute_plan(op, [] if tensor is None else [tensor], kwargs), only_tensor)

    @endpoint
    def run_graph(self: BaseClient, graph: Mapping[str, Any],
                  inputs: Mapping[str, torch.Tensor] | None = None, *,
                  release: Sequence[RemoteTensor | str] = ()) -> Call[GraphResult]:
        """Run a captured graph (see ``genie.graph``) in one request.

        ``release`` (and every deferred release, ``defer_release``) is freed after the
        graph has run, in the same request; a graph that fails frees nothing.
        """
        if graph.get("keep"):
            self.holding()
        ids = self._take_pending([*map(handle_id, graph.get("release", ())),
                                  *map(handle_id, release)])
        wire = {**graph, "release": ids} if ids else graph

        def parse(decoded: Decoded) -> GraphResult:
            self._sent(ids)
            return graph_result(decoded)

        return Call(tensor_plan("POST", "/graph", inputs or {},
                                {GRAPH_METADATA_KEY: json.dumps(wire)}), parse)

    @endpoint
    def put(self: BaseClient, tensor: torch.Tensor) -> Call[RemoteTensor]:
        """Upload once; refer to it later by handle (in graphs, or ``get``)."""
        self.holding()
        return Call(tensor_plan("POST", "/tensors", {"tensor": tensor}, tensors_back=False),
                    RemoteTensor.from_json)

    @endpoint
    def get(self, handle: RemoteTensor | str) -> Call[torch.Tensor]:
        """``GET /tensors/{id}``: the value of a held tensor."""
        return Call(Plan("GET", handle_path(handle), tensors_back=True), only_tensor)

    @endpoint
    def delete(self, handle: RemoteTensor | str) -> Call[dict[str, Any]]:
        """``DELETE /tensors/{id}``: free a held tensor."""
        return Call(Plan("DELETE", handle_path(handle)), as_dict)

    @endpoint
    def release(self: BaseClient, *handles: RemoteTensor | str) -> Call[dict[str, Any]]:
        """``POST /tensors/release``: free ``handles`` and every deferred release in ONE
        request (none at all when there is nothing to free).  Returns ``{"released":
        [ids], "missing": [ids not held], "count", "bytes"}``."""
        ids = self._take_pending([handle_id(h) for h in handles])
        if not ids:
            return Call(None, lambda _: {"released": [], "missing": [], "count": 0, "bytes": 0})
        body = json.dumps({"ids": ids}).encode()

        def parse(reply: Any) -> dict[str, Any]:
            self._sent(ids)
            return as_dict(reply)

        return Call(Plan("POST", "/tensors/release", chunks=[body], nbytes=len(body),
                         content_type="application/json"), parse)

    @endpoint
    def session_info(self: BaseClient, session: str | None = None) -> Call[dict[str, Any]]:
        """``GET /sessions/{id}`` (this client's session by default): the handles and
        bytes it holds, its request count and idle time."""
        name = session or self.session
        if name is None or not is_session_id(name):
            raise ConfigurationError(f"no valid session to look up: {name!r}")
        return _get(f"/sessions/{name}", as_dict)

    @endpoint
    def end_session(self: BaseClient) -> Call[dict[str, Any]]:
        """``DELETE /sessions/{id}``: free every handle this client's session holds, in
        one request (what ``close()`` does).  The client stays usable."""
        return self._end_session_call(None)

    @endpoint
    def echo(self, tensor: torch.Tensor) -> Call[torch.Tensor]:
        """Round-trip a tensor with no compute: measures pure transfer."""
        return Call(tensor_plan("POST", "/echo", {"tensor": tensor}), only_tensor)

    @endpoint
    def probe_upload(self, nbytes: int) -> Call[dict[str, Any]]:
        """``POST /probe``: send ``nbytes`` the server counts and drops (the network's
        upload baseline: no tensor work on either side).  Returns ``{"bytes": N}``."""
        return Call(probe_upload_plan(nbytes), as_dict)

    @endpoint
    def probe_download(self, nbytes: int) -> Call[int]:
        """``GET /probe?bytes=N``: receive ``nbytes`` of filler (the download baseline).
        Returns how many bytes arrived."""
        return Call(Plan("GET", "/probe", {"bytes": str(int(nbytes))}, raw_back=True), len)
