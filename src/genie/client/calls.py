"""``genie.Client`` and ``genie.AsyncClient``: talk to a Genie server.

Both share everything but the I/O: a request is first planned (``_Plan``: method,
path, query, body chunks), then sent by the sync or async transport, then its
reply is interpreted by the same functions.  So the two twins cannot drift apart.

Bodies go out as memoryview chunks straight from tensor memory with an exact
Content-Length (httpx's single-buffer upload re-slices the remaining bytes after
every send, which is quadratic on large bodies), and replies are read into one
preallocated buffer that the decoded tensors then share.  The blocking ``Client``
speaks plain ``http://`` through ``genie.http1`` (a fraction of httpx's per-request
cost, and ``recv_into`` the reply buffer); https and proxied URLs, and the
``AsyncClient``, go through httpx.

Only connection failures and 503 are retried, with exponential backoff; any other
error would fail the same way again, or might repeat a request the server already
acted on.  Neither transport resends a request that may have reached the server,
except a GET or HEAD whose (reused keep-alive) connection closed before a reply
head: ``genie.http1`` resends those, and so does this module around httpx
(httpcore itself resends nothing once a request was handed to a connection).
Both drop keep-alive connections idle for ``IDLE_EXPIRY_S`` (below uvicorn's 5 s),
so that such a close is rare.  No httpx exception escapes: transport
failures become ``TransportError``, error replies the ``RemoteError`` subclass
their ``type`` names (see ``genie.errors``).
"""

from __future__ import annotations

import asyncio
import json
import mmap
import time
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, cast
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import getproxies

import httpx
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
from genie.graph import GRAPH_METADATA_KEY, HANDLES_METADATA_KEY, Ref, to_wire
from genie.http1 import IDLE_EXPIRY_S, RESEND_SAFE_METHODS, ConnectFailed, Http1Error, Http1Pool
from genie.protocol import PROTOCOL_VERSION, SAFETENSORS_MEDIA_TYPE, normalize_url
from genie.wire import Decoded, decode, dtype_from_name, encode, receive_buffer, slices

__all__ = ["AsyncClient", "Client", "GraphResult", "RemoteTensor"]

DEFAULT_TIMEOUT = 30.0
#: Timeouts grow with the payload as if the link moved at least this many bytes/s.
MIN_THROUGHPUT = 10 * 1024 * 1024
UPLOAD_CHUNK = 1024 * 1024
DEFAULT_RETRIES = 3
BACKOFF_BASE = 0.1
#: httpx's default limits, but keep-alive connections expire before uvicorn closes
#: them (httpx's default expiry equals uvicorn's 5 s, which races the server's close).
_LIMITS = httpx.Limits(max_connections=100, max_keepalive_connections=20,
                       keepalive_expiry=IDLE_EXPIRY_S)


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
    """What ``run_graph`` returns: fetched outputs and kept handles, by node id."""

    outputs: dict[str, torch.Tensor] = field(default_factory=dict)
    handles: dict[str, RemoteTensor] = field(default_factory=dict)


@dataclass
class Exchange:
    """Figures of the last request: status, round trip, bytes each way, server phases (ms)."""

    status: int = 0
    round_trip_ms: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    server_timing: dict[str, float] = field(default_factory=dict)


@dataclass
class _Plan:
    method: str
    path: str
    params: dict[str, str] = field(default_factory=dict)
    chunks: Sequence[bytes | memoryview] = ()
    nbytes: int = 0
    tensors_back: bool = False  # the reply is a safetensors body


def _handle_path(handle: RemoteTensor | str) -> str:
    """``/tensors/ID`` with the id percent-encoded whole: an id holding ``/``, ``?``,
    ``%``, ``..`` or a line break must name a handle, not another route or query.
    ``quote`` leaves dots alone, and httpx resolves a ``.`` or ``..`` segment
    (RFC 3986 dot-segment removal), so those two ids have their dots encoded too."""
    handle_id = handle.id if isinstance(handle, RemoteTensor) else handle
    quoted = quote(handle_id, safe="")
    if quoted in (".", ".."):
        quoted = quoted.replace(".", "%2E")
    return f"/tensors/{quoted}"


# httpx annotates upload content as bytes, but passes each chunk on to h11, which
# accepts any buffer (len() and b"".join): 1 MiB memoryviews of tensor memory, not
# one bytes copy of the whole body.
def _httpx_content(chunks: Iterator[memoryview]) -> Iterable[bytes]:
    return cast("Iterable[bytes]", chunks)


def _httpx_async_content(chunks: AsyncIterator[memoryview]) -> AsyncIterable[bytes]:
    return cast("AsyncIterable[bytes]", chunks)


def _tensor_plan(method: str, path: str, tensors: Mapping[str, torch.Tensor],
                 metadata: Mapping[str, str] | None = None, *,
                 params: dict[str, str] | None = None, tensors_back: bool = True) -> _Plan:
    encoded = encode(tensors, metadata)
    return _Plan(method, path, params or {}, encoded.chunks, encoded.nbytes, tensors_back)


def _execute_plan(op: str, tensors: Sequence[torch.Tensor], kwargs: Mapping[str, Any]) -> _Plan:
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
    return _tensor_plan("POST", "/execute", body, params=params)


def _graph_plan(graph: Mapping[str, Any], inputs: Mapping[str, torch.Tensor]) -> _Plan:
    return _tensor_plan("POST", "/graph", inputs, {GRAPH_METADATA_KEY: json.dumps(graph)})


def _graph_result(decoded: Decoded) -> GraphResult:
    kept = json.loads(decoded.metadata.get(HANDLES_METADATA_KEY, "{}"))
    return GraphResult(outputs=decoded.tensors,
                       handles={k: RemoteTensor.from_json(v) for k, v in kept.items()})


def _only_tensor(decoded: Decoded) -> torch.Tensor:
    if len(decoded.tensors) != 1:
        raise MalformedRequestError(f"expected one tensor in the reply, got "
                                    f"{len(decoded.tensors)}")
    return next(iter(decoded.tensors.values()))


def _raise_for_error(status: int, body: bytes) -> None:
    if status < 400:
        return
    try:
        err = json.loads(body)["error"]
        kind, message = str(err["type"]), str(err["message"])
    except (ValueError, KeyError, TypeError):
        kind, message = None, body[:500].decode("utf-8", "replace") or f"HTTP {status}"
    cls = error_class_for(status, kind)
    raise cls(message, status=status, error_type=kind or cls.error_type)


def _parse_server_timing(header: str | None) -> dict[str, float]:
    timing: dict[str, float] = {}
    for part in (header or "").split(","):
        name, _, rest = part.strip().partition(";")
        if rest.startswith("dur="):
            try:
                timing[name] = float(rest[4:])
            except ValueError:
                continue
    return timing


def _check_protocol(health: Mapping[str, Any]) -> None:
    theirs = str(health.get("protocol_version", ""))
    if theirs.split(".")[0] != PROTOCOL_VERSION.split(".")[0]:
        raise ConfigurationError(f"server speaks Genie protocol {theirs or '?'}, this client "
                                 f"{PROTOCOL_VERSION}; upgrade the older side")


class _Sink:
    """Collects a reply body into one buffer that the decoded tensors then share.

    With a declared Content-Length the buffer is allocated once, at full size (see
    ``genie.wire.receive_buffer``); a body without one, or not matching it, grows a
    ``bytearray`` instead (the caller's decode or JSON parse then reports it).
    """

    def __init__(self, size: int | None) -> None:
        self.buf: bytearray | mmap.mmap = receive_buffer(size) if size else bytearray()
        # A bytearray with a live memoryview cannot grow, so only a fixed one gets a view.
        self.view = memoryview(self.buf) if size else None
        self.pos = 0

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

    def body(self) -> bytearray | mmap.mmap:
        if self.view is not None:
            self.view.release()
            self.view = None
            if self.pos != len(self.buf):  # shorter than declared
                return bytearray(memoryview(self.buf)[:self.pos])
        return self.buf


class _Base:
    """Configuration and reply handling shared by the two clients."""

    def __init__(self, url: str, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES) -> None:
        try:
            self.url = normalize_url(url)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from exc
        if token is not None and not (token.isascii() and token.isprintable()
                                      and " " not in token):
            # It travels in an HTTP header: non-ASCII would fail at every request with
            # an encoding error, and a line break would forge headers.
            raise ConfigurationError("token must be printable ASCII without spaces")
        self.token = token
        self.timeout = timeout
        self.retries = retries
        self.last = Exchange()
        self.bytes_sent = 0
        self.bytes_received = 0
        self.requests = 0

    def _headers(self, plan: _Plan) -> dict[str, str]:
        headers = {"accept": f"{SAFETENSORS_MEDIA_TYPE}, application/json"}
        if self.token:
            headers["authorization"] = f"Bearer {self.token}"
        if plan.method == "POST":
            headers["content-type"] = SAFETENSORS_MEDIA_TYPE
            headers["content-length"] = str(plan.nbytes)
        return headers

    def _timeout_s(self, nbytes: int) -> float:
        """The base timeout, grown as if the link moved at least MIN_THROUGHPUT."""
        return self.timeout + nbytes / MIN_THROUGHPUT

    def _timeout(self, nbytes: int) -> httpx.Timeout:
        return httpx.Timeout(self._timeout_s(nbytes), connect=min(self.timeout, 10.0))

    def _finish(self, plan: _Plan, status: int, headers: Mapping[str, str],
                body: bytearray | mmap.mmap, started: float) -> Any:
        self.last = Exchange(status=status, round_trip_ms=(time.perf_counter() - started) * 1000,
                             bytes_sent=plan.nbytes, bytes_received=len(body),
                             server_timing=_parse_server_timing(headers.get("server-timing")))
        self.bytes_sent += plan.nbytes
        self.bytes_received += len(body)
        self.requests += 1
        if status >= 400:  # never copy a successful (possibly huge) body
            _raise_for_error(status, bytes(body))
        if plan.tensors_back:
            return decode(body)
        try:
            return json.loads(body if isinstance(body, bytearray) else bytes(body))
        except ValueError as exc:
            raise RemoteError(f"reply to {plan.method} {plan.path} is not JSON",
                              status=status) from exc

    def _should_retry(self, exc: GenieError, attempt: int) -> bool:
        return attempt < self.retries and (
            isinstance(exc, ServerBusyError)
            or (isinstance(exc, TransportError) and exc.retryable))

    @staticmethod
    def _backoff(attempt: int) -> float:
        return float(BACKOFF_BASE * (2 ** attempt))


def _transport_error(exc: httpx.HTTPError, plan: _Plan, url: str) -> TransportError:
    # Only failures to connect are safe to retry: the server never saw the request.
    return TransportError(f"{plan.method} {url}{plan.path} failed: {type(exc).__name__}: {exc}",
                          retryable=isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout)))


def _resend_now(plan: _Plan, exc: httpx.HTTPError, replied: bool) -> bool:
    """Whether to resend at once, as ``genie.http1`` does: a GET or HEAD whose (likely
    reused, server-closed) connection failed before a reply head arrived.  httpx itself
    never resends a request it has handed to a connection, whatever the method."""
    return (not replied and plan.method in RESEND_SAFE_METHODS
            and isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)))


def _fast_pool(url: str, timeout: float) -> Http1Pool | None:
    """``genie.http1`` for plain ``http://`` with no proxy in the environment;
    ``None`` (httpx, which handles TLS, proxies and ``NO_PROXY``) otherwise."""
    parts = urlsplit(url)
    proxies = getproxies()
    if parts.scheme != "http" or proxies.get("http") or proxies.get("all"):
        return None
    assert parts.hostname is not None and parts.port is not None  # normalize_url made sure
    return Http1Pool(parts.hostname, parts.port, connect_timeout=min(timeout, 10.0))


def _size_from(headers: httpx.Headers) -> int | None:
    value = headers.get("content-length")
    return int(value) if value is not None and value.isdigit() else None


class Client(_Base):
    """A blocking client over keep-alive connections (``genie.http1``, or httpx for
    https and proxies).

    ``url`` is ``HOST``, ``HOST:PORT`` or ``http(s)://HOST:PORT`` (port 8888 by
    default).  Use it as a context manager, or call ``close()``.
    """

    def __init__(self, url: str, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES) -> None:
        super().__init__(url, token=token, timeout=timeout, retries=retries)
        self._http = httpx.Client(base_url=self.url, timeout=self._timeout(0), limits=_LIMITS)
        self._fast = _fast_pool(self.url, self.timeout)

    def _send(self, plan: _Plan) -> Any:
        attempt = 0
        while True:
            try:
                return self._send_once(plan)
            except GenieError as exc:
                if not self._should_retry(exc, attempt):
                    raise
                time.sleep(self._backoff(attempt))
                attempt += 1

    def _send_once(self, plan: _Plan) -> Any:
        if self._fast is not None:
            return self._send_fast(plan, self._fast)
        for last_try in (False, True):
            started = time.perf_counter()
            content = _httpx_content(slices(plan.chunks, UPLOAD_CHUNK)) if plan.method == "POST" \
                else None
            replied = False
            try:
                with self._http.stream(plan.method, plan.path, params=plan.params,
                                       headers=self._headers(plan), content=content,
                                       timeout=self._timeout(plan.nbytes)) as resp:
                    replied = True
                    sink = _Sink(_size_from(resp.headers))
                    for chunk in resp.iter_raw():
                        sink.write(chunk)
                    body = sink.body()
                    status, headers = resp.status_code, resp.headers
            except httpx.HTTPError as exc:
                if not last_try and _resend_now(plan, exc, replied):
                    continue
                raise _transport_error(exc, plan, self.url) from exc
            return self._finish(plan, status, headers, body, started)
        raise AssertionError("unreachable")

    def _send_fast(self, plan: _Plan, pool: Http1Pool) -> Any:
        """The same exchange over ``genie.http1``: whole tensor views out, one
        ``recv_into`` the reply buffer in."""
        started = time.perf_counter()
        target = f"{plan.path}?{urlencode(plan.params, quote_via=quote)}" if plan.params \
            else plan.path
        chunks = plan.chunks if plan.method == "POST" else ()
        try:
            reply = pool.request(plan.method, target, self._headers(plan), chunks, plan.nbytes,
                                 timeout=self._timeout_s(plan.nbytes))
        except Http1Error as exc:
            # The cause is the httpx exception httpx would have raised, as on the other path.
            cause: httpx.TransportError = getattr(httpx, exc.kind, httpx.TransportError)(str(exc))
            cause.__cause__ = exc.__cause__
            raise TransportError(f"{plan.method} {self.url}{plan.path} failed: {exc.kind}: {exc}",
                                 retryable=isinstance(exc, ConnectFailed)) from cause
        return self._finish(plan, reply.status, reply.headers, reply.body, started)

    # --- API ---

    def health(self) -> dict[str, Any]:
        """``GET /health``: device, GPU, versions, uptime, request counters."""
        result: dict[str, Any] = self._send(_Plan("GET", "/health"))
        return result

    def check_compatible(self) -> dict[str, Any]:
        """``health()``, raising ``ConfigurationError`` on a protocol mismatch."""
        info = self.health()
        _check_protocol(info)
        return info

    def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = self._send(_Plan("GET", "/stats"))
        return result

    def ops(self) -> list[str]:
        return [op["name"] for op in self._send(_Plan("GET", "/ops"))["ops"]]

    def device(self) -> dict[str, Any]:
        """``GET /device``: device description plus a synchronized matmul benchmark."""
        result: dict[str, Any] = self._send(_Plan("GET", "/device"))
        return result

    def execute(self, op: str, tensor: torch.Tensor | None = None, /,
                **kwargs: Any) -> torch.Tensor:
        """Run one op: ``execute("add", x, other=y)``, ``execute("sum", x, dim=1)``."""
        return _only_tensor(self._send(_execute_plan(op, [] if tensor is None else [tensor],
                                                     kwargs)))

    def run_graph(self, graph: Mapping[str, Any],
                  inputs: Mapping[str, torch.Tensor] | None = None) -> GraphResult:
        """Run a captured graph (see ``genie.graph``) in one request."""
        return _graph_result(self._send(_graph_plan(graph, inputs or {})))

    def put(self, tensor: torch.Tensor) -> RemoteTensor:
        """Upload once; refer to it later by handle (in graphs, or ``get``)."""
        return RemoteTensor.from_json(self._send(
            _tensor_plan("POST", "/tensors", {"tensor": tensor}, tensors_back=False)))

    def get(self, handle: RemoteTensor | str) -> torch.Tensor:
        return _only_tensor(self._send(_Plan("GET", _handle_path(handle),
                                             tensors_back=True)))

    def delete(self, handle: RemoteTensor | str) -> dict[str, Any]:
        result: dict[str, Any] = self._send(_Plan("DELETE", _handle_path(handle)))
        return result

    def echo(self, tensor: torch.Tensor) -> torch.Tensor:
        """Round-trip a tensor with no compute: measures pure transfer."""
        return _only_tensor(self._send(_tensor_plan("POST", "/echo", {"tensor": tensor})))

    def close(self) -> None:
        if self._fast is not None:
            self._fast.close()
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


class AsyncClient(_Base):
    """The ``asyncio`` twin of ``Client``: same methods, awaited."""

    def __init__(self, url: str, *, token: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES) -> None:
        super().__init__(url, token=token, timeout=timeout, retries=retries)
        self._http = httpx.AsyncClient(base_url=self.url, timeout=self._timeout(0),
                                       limits=_LIMITS)

    async def _send(self, plan: _Plan) -> Any:
        attempt = 0
        while True:
            try:
                return await self._send_once(plan)
            except GenieError as exc:
                if not self._should_retry(exc, attempt):
                    raise
                await asyncio.sleep(self._backoff(attempt))
                attempt += 1

    async def _send_once(self, plan: _Plan) -> Any:
        async def upload() -> AsyncIterator[memoryview]:
            for chunk in slices(plan.chunks, UPLOAD_CHUNK):
                yield chunk

        for last_try in (False, True):
            started = time.perf_counter()
            content = _httpx_async_content(upload()) if plan.method == "POST" else None
            replied = False
            try:
                async with self._http.stream(plan.method, plan.path, params=plan.params,
                                             headers=self._headers(plan), content=content,
                                             timeout=self._timeout(plan.nbytes)) as resp:
                    replied = True
                    sink = _Sink(_size_from(resp.headers))
                    async for chunk in resp.aiter_raw():
                        sink.write(chunk)
                    body = sink.body()
                    status, headers = resp.status_code, resp.headers
            except httpx.HTTPError as exc:
                if not last_try and _resend_now(plan, exc, replied):
                    continue
                raise _transport_error(exc, plan, self.url) from exc
            return self._finish(plan, status, headers, body, started)
        raise AssertionError("unreachable")

    async def health(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(_Plan("GET", "/health"))
        return result

    async def check_compatible(self) -> dict[str, Any]:
        info = await self.health()
        _check_protocol(info)
        return info

    async def stats(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(_Plan("GET", "/stats"))
        return result

    async def ops(self) -> list[str]:
        return [op["name"] for op in (await self._send(_Plan("GET", "/ops")))["ops"]]

    async def device(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(_Plan("GET", "/device"))
        return result

    async def execute(self, op: str, tensor: torch.Tensor | None = None, /,
                      **kwargs: Any) -> torch.Tensor:
        plan = _execute_plan(op, [] if tensor is None else [tensor], kwargs)
        return _only_tensor(await self._send(plan))

    async def run_graph(self, graph: Mapping[str, Any],
                        inputs: Mapping[str, torch.Tensor] | None = None) -> GraphResult:
        return _graph_result(await self._send(_graph_plan(graph, inputs or {})))

    async def put(self, tensor: torch.Tensor) -> RemoteTensor:
        plan = _tensor_plan("POST", "/tensors", {"tensor": tensor}, tensors_back=False)
        return RemoteTensor.from_json(await self._send(plan))

    async def get(self, handle: RemoteTensor | str) -> torch.Tensor:
        plan = _Plan("GET", _handle_path(handle), tensors_back=True)
        return _only_tensor(await self._send(plan))

    async def delete(self, handle: RemoteTensor | str) -> dict[str, Any]:
        result: dict[str, Any] = await self._send(
            _Plan("DELETE", _handle_path(handle)))
        return result

    async def echo(self, tensor: torch.Tensor) -> torch.Tensor:
        return _only_tensor(await self._send(_tensor_plan("POST", "/echo", {"tensor": tensor})))

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()
