"""The Genie HTTP server: a Starlette app composed in one ``create_app`` call.

Everything the app owns (device, held tensors, counters, compute limiter) lives
in a ``ServerState`` on ``app.state.genie``; nothing is module-level, so two apps
in one process share nothing.  Endpoints read and write safetensors bodies and
answer errors as ``{"error": {"type", "message"}}`` with the status fixed by the
error class (see ``genie.errors``).  Compute runs on worker threads, never on the
event loop, and every computing response carries ``Server-Timing``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import mmap
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar, overload

import anyio
import torch
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from genie._version import __version__
from genie.device import describe, matmul_benchmark, resolve_device, timed
from genie.errors import (
    AuthError,
    GenieError,
    MalformedRequestError,
    MethodNotAllowedError,
    NotFoundError,
    OutOfMemoryError,
    ServerBusyError,
    ServerError,
)
from genie.graph import GRAPH_METADATA_KEY, HANDLES_METADATA_KEY, Graph, from_wire
from genie.op_limits import warm_up
from genie.ops import REGISTRY, OpContext, get_op, op_names
from genie.protocol import PROTOCOL_VERSION, SAFETENSORS_MEDIA_TYPE
from genie.server.bodies import CLOSE_KEY, BodyBudget, ReleaseBodyBudget, receive_body
from genie.server.config import ServerConfig
from genie.server.stats import Stats, StatsCollector
from genie.server.store import TensorStore
from genie.wire import Decoded, Encoded, decode, encode, slices

__all__ = ["ServerState", "create_app"]

log = logging.getLogger("genie.server")
#: Reply bodies go to uvicorn in slices of this size: 1 MiB measured best for 64 MB
#: replies on loopback (34-42 ms, vs 38-44 ms at 4 MiB and 45 ms at 256 KiB).
STREAM_CHUNK = 1024 * 1024
#: Bodies and replies above this size are decoded / encoded on a worker thread.  Below
#: it the hop costs more than it saves: with every body sent to a thread, a 10x10
#: /echo took 0.31 ms instead of 0.17 ms (median of 300, loopback, CPU server).
OFF_LOOP_BYTES = 1024 * 1024

T = TypeVar("T")
R = TypeVar("R")


@dataclass
class ServerState:
    """What one app owns."""

    config: ServerConfig
    device: torch.device
    store: TensorStore
    stats: Stats
    registry: CollectorRegistry
    limiter: anyio.CapacityLimiter
    bodies: BodyBudget
    inflight: int = 0
    device_info: dict[str, Any] = field(default_factory=dict)

    @property
    def op_ctx(self) -> OpContext:
        return OpContext(device=self.device, max_alloc_bytes=self.config.max_held_bytes
                         or self.config.max_body_bytes)


@dataclass
class Timing:
    """Phases of one request, reported in ``Server-Timing`` and the stats."""

    decode_ms: float = 0.0
    compute_ms: float = 0.0
    encode_ms: float = 0.0

    def header(self) -> str:
        return (f"decode;dur={self.decode_ms:.3f}, compute;dur={self.compute_ms:.3f}, "
                f"encode;dur={self.encode_ms:.3f}")


def _state(request: Request) -> ServerState:
    state: ServerState = request.app.state.genie
    return state


# --- request bodies -------------------------------------------------------------------


async def read_body(request: Request, limit: int) -> bytearray | mmap.mmap:
    """Receive the body into one writable buffer (tensors alias it), within ``limit``,
    the server's budget for bodies in flight and its idle timeout (``genie.server.bodies``)."""
    state = _state(request)
    return await receive_body(request, limit, state.bodies, state.config.body_timeout_s)


def decode_body(body: bytearray | mmap.mmap, timing: Timing) -> Decoded:
    start = time.perf_counter()
    decoded = decode(body) if body else Decoded()
    timing.decode_ms = (time.perf_counter() - start) * 1000
    return decoded


async def decode_request(body: bytearray | mmap.mmap, timing: Timing) -> Decoded:
    """``decode_body``, on a worker thread when the body is over ``OFF_LOOP_BYTES``.

    A large body can carry a large header (JSON to parse, shapes to check, bool bytes
    to scan); on the event loop that would stall every other connection.  Small
    bodies stay on the loop, where the thread hop would cost more than the work.
    """
    if len(body) <= OFF_LOOP_BYTES:
        return decode_body(body, timing)
    return await anyio.to_thread.run_sync(decode_body, body, timing)


def tensor_response(encoded: Encoded, timing: Timing,
                    extra_headers: dict[str, str] | None = None) -> Response:
    """Stream a safetensors body from tensor memory, with an exact Content-Length.

    A body of at most ``STREAM_CHUNK`` bytes is copied once and sent whole instead:
    ``StreamingResponse`` runs a task group per reply to watch for disconnects, which
    cost about 0.15 ms, half the server's time on a 400-byte tensor.
    """
    headers = {"content-length": str(encoded.nbytes), "server-timing": timing.header(),
               **(extra_headers or {})}
    if encoded.nbytes <= STREAM_CHUNK:
        return Response(encoded.to_bytes(), media_type=SAFETENSORS_MEDIA_TYPE, headers=headers)

    async def chunks() -> AsyncIterator[bytes | memoryview]:
        for view in slices(encoded.chunks, STREAM_CHUNK):
            yield view

    return StreamingResponse(chunks(), media_type=SAFETENSORS_MEDIA_TYPE, headers=headers)


def encode_outputs(tensors: dict[str, torch.Tensor], timing: Timing,
                   metadata: dict[str, str] | None = None) -> Encoded:
    start = time.perf_counter()
    encoded = encode(tensors, metadata)  # moves device tensors to the host
    timing.encode_ms = (time.perf_counter() - start) * 1000
    return encoded


@overload
async def run_compute(request: Request, timing: Timing, fn: Callable[[], T]) -> T: ...


@overload
async def run_compute(request: Request, timing: Timing, fn: Callable[[], T],
                      then: Callable[[T], R]) -> R: ...


async def run_compute(request: Request, timing: Timing, fn: Callable[[], Any],
                      then: Callable[[Any], Any] | None = None) -> Any:
    """Run ``fn`` on a worker thread, synchronized and timed; 503 when saturated.

    ``then`` runs on the same worker right after, outside the compute time: it is
    where replies are encoded (``encode_outputs`` records its own time), because
    encoding copies device tensors to the host and makes strided results
    contiguous, work that must not block the event loop.
    """
    state = _state(request)
    if state.inflight >= state.config.max_inflight:
        raise ServerBusyError(f"server busy: {state.inflight} requests in flight "
                              f"(limit {state.config.max_inflight}); retry shortly")
    state.inflight += 1
    try:
        def work() -> tuple[Any, float]:
            result, ms = timed(state.device, fn)
            timing.compute_ms = ms  # before ``then``, which may fail: still reported
            return (result if then is None else then(result)), ms

        result, ms = await anyio.to_thread.run_sync(work, limiter=state.limiter)
    finally:
        state.inflight -= 1
    request.state.genie_compute_ms = ms
    return result


def _json_query(request: Request, name: str, default: Any) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also: huge ints, deep nesting
        raise MalformedRequestError(f"query parameter {name!r} is not valid JSON: {exc}") from exc


# --- endpoints ------------------------------------------------------------------------


async def health(request: Request) -> Response:
    state = _state(request)
    info = dict(state.device_info)
    if state.device.type == "cuda":
        info = describe(state.device)  # memory figures change; read them fresh
    return JSONResponse({
        "status": "ok",
        **info,
        "torch_version": torch.__version__,
        "genie_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "uptime_s": state.stats.uptime_s(),
        "requests": state.stats.totals(),
        "ops": len(REGISTRY),
        "auth": state.config.token is not None,
    })


async def ops(request: Request) -> Response:
    return JSONResponse({"ops": [{"name": n, "signature": REGISTRY[n].signature()}
                                 for n in op_names()]})


async def stats(request: Request) -> Response:
    return JSONResponse(_state(request).stats.snapshot())


async def metrics(request: Request) -> Response:
    return Response(generate_latest(_state(request).registry), media_type=CONTENT_TYPE_LATEST)


async def device(request: Request) -> Response:
    state = _state(request)
    timing = Timing()
    bench = await run_compute(request, timing, lambda: matmul_benchmark(state.device))
    return JSONResponse({**describe(state.device), "benchmark": bench},
                        headers={"server-timing": timing.header()})


async def execute(request: Request) -> Response:
    """One op: body tensors bind by parameter name (a lone tensor binds to the first
    parameter); ``?args=`` carries the other arguments as a JSON object."""
    state = _state(request)
    op = get_op(request.query_params.get("op"))
    timing = Timing()
    body = await read_body(request, state.config.max_body_bytes)
    decoded = await decode_request(body, timing)
    kwargs = _json_query(request, "args", {})
    if not isinstance(kwargs, dict):
        raise MalformedRequestError("query parameter 'args' must be a JSON object")
    used: set[str] = set()  # body tensors that args refer to (possibly more than once)
    kwargs = {k: from_wire(v, lambda ref: _execute_ref(decoded, ref.kind, ref.name, used))
              for k, v in kwargs.items()}
    names = {p.name for p in op.params}
    tensors = {k: v for k, v in decoded.tensors.items() if k not in used}
    for name in list(tensors):
        if name in names:
            if name in kwargs:
                raise MalformedRequestError(f"argument {name!r} given in both body and args")
            kwargs[name] = tensors.pop(name)
    if len(tensors) == 1 and op.params and op.params[0].name not in kwargs:
        kwargs[op.params[0].name] = tensors.popitem()[1]
    if tensors:
        raise MalformedRequestError(
            f"body tensors {sorted(tensors)} match no parameter of {op.signature()}")

    def work() -> torch.Tensor:
        moved = {k: _to_device(v, state.device) for k, v in kwargs.items()}
        # Within the allocation cap, checked on meta before anything is allocated.  The
        # body's tensors belong to this request alone, so a unary op may write its
        # result over its input (bit-identical; no fresh output to fault in).
        return op.run(op.bind((), moved), state.op_ctx, reuse_input=True)

    encoded = await run_compute(request, timing, work,
                                lambda result: encode_outputs({"output": result}, timing))
    return tensor_response(encoded, timing)


def _execute_ref(decoded: Decoded, kind: str, name: str, used: set[str]) -> torch.Tensor:
    if kind == "input" and name in decoded.tensors:
        used.add(name)
        return decoded.tensors[name]
    raise MalformedRequestError(f"/execute args may refer only to body tensors, not {kind} "
                                f"{name!r}")


def _to_device(value: Any, device: torch.device) -> Any:
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, list):
        return [_to_device(v, device) for v in value]
    return value


async def graph(request: Request) -> Response:
    state = _state(request)
    timing = Timing()
    body = await read_body(request, state.config.max_body_bytes)
    decoded = await decode_request(body, timing)
    text = decoded.metadata.get(GRAPH_METADATA_KEY)
    if text is None:
        raise MalformedRequestError(
            f"a /graph body carries its graph JSON in the safetensors metadata key "
            f"{GRAPH_METADATA_KEY!r}")
    g = (Graph.from_json(text) if len(text) <= OFF_LOOP_BYTES
         else await anyio.to_thread.run_sync(Graph.from_json, text))
    missing = sorted(g.input_names() - set(decoded.tensors))
    if missing:
        raise MalformedRequestError(f"graph refers to inputs {missing} that the body lacks")
    handles = {h: state.store.get(h) for h in sorted(g.handle_ids())}

    kept: dict[str, dict[str, Any]] = {}

    def work() -> dict[str, torch.Tensor]:
        inputs = {k: v.to(state.device) for k, v in decoded.tensors.items()}
        return g.run(inputs, handles, state.op_ctx)

    def reply(outputs: dict[str, torch.Tensor]) -> Encoded:
        # A kept output that is (a view of) a body tensor would keep the whole received
        # body alive while the budget counts only its own bytes: hold a copy instead.
        body_storages = {t.untyped_storage().data_ptr() for t in decoded.tensors.values()
                         if t.numel()}
        kept.update(state.store.put_many({
            k: outputs[k].clone() if outputs[k].untyped_storage().data_ptr() in body_storages
            else outputs[k] for k in g.keep}))
        returned = {k: v for k, v in outputs.items() if k not in kept}
        meta = {HANDLES_METADATA_KEY: json.dumps(kept)} if kept else None
        return encode_outputs(returned, timing, meta)

    try:
        return tensor_response(await run_compute(request, timing, work, reply), timing)
    except BaseException:  # a complex128 output, host memory for a copy, cancellation:
        _release(state.store, kept)  # the client never learns the kept ids
        raise


def _release(store: TensorStore, kept: dict[str, dict[str, Any]]) -> None:
    for info in kept.values():
        with contextlib.suppress(NotFoundError):  # a client that listed it deleted it
            store.delete(info["id"])


async def put_tensor(request: Request) -> Response:
    state = _state(request)
    timing = Timing()
    body = await read_body(request, state.config.max_body_bytes)
    decoded = await decode_request(body, timing)
    if len(decoded.tensors) != 1:
        raise MalformedRequestError(f"POST /tensors takes exactly one tensor, got "
                                    f"{len(decoded.tensors)}")
    (tensor,) = decoded.tensors.values()
    # Held on the worker too: the store copies a tensor that aliases the body.
    (info,) = (await run_compute(request, timing, lambda: tensor.to(state.device),
                                 lambda moved: state.store.put_many({"t": moved}))).values()
    return JSONResponse(info, status_code=201, headers={"server-timing": timing.header()})


async def list_tensors(request: Request) -> Response:
    store = _state(request).store
    count, nbytes = store.usage()
    return JSONResponse({"tensors": store.list(), "count": count, "bytes": nbytes,
                         "budget_bytes": store.budget_bytes})


async def get_tensor(request: Request) -> Response:
    handle_id = request.path_params["handle"]
    tensor = _state(request).store.get(handle_id)
    timing = Timing()
    if tensor.device.type == "cpu":  # held tensors are contiguous: encoding copies nothing
        return tensor_response(encode_outputs({handle_id: tensor}, timing), timing)
    encoded = await run_compute(request, timing, lambda: tensor,  # device-to-host copy
                                lambda t: encode_outputs({handle_id: t}, timing))
    return tensor_response(encoded, timing)


async def delete_tensor(request: Request) -> Response:
    info = _state(request).store.delete(request.path_params["handle"])
    return JSONResponse({**info, "deleted": True})


async def echo(request: Request) -> Response:
    """Decode and re-encode: validates the body, costs transfer only."""
    state = _state(request)
    timing = Timing()
    body = await read_body(request, state.config.max_body_bytes)
    decoded = await decode_request(body, timing)
    if len(body) <= OFF_LOOP_BYTES:
        return tensor_response(encode_outputs(decoded.tensors, timing, decoded.metadata), timing)
    encoded = await anyio.to_thread.run_sync(encode_outputs, decoded.tensors, timing,
                                             decoded.metadata)
    return tensor_response(encoded, timing)


# --- errors, auth and accounting ------------------------------------------------------


def error_response(request: Request, exc: GenieError) -> Response:
    request.state.genie_error_type = exc.error_type
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
        err = NotFoundError(f"no route {request.method} {request.url.path}; see GET /health "
                            "and docs/protocol.md")
    elif exc.status_code == 405:
        err = MethodNotAllowedError(f"{request.method} is not allowed on {request.url.path}")
    else:
        err = MalformedRequestError(str(exc.detail))
    return error_response(request, err)


async def on_oom(request: Request, exc: Exception) -> Response:
    state = _state(request)
    if state.device.type == "cuda":
        torch.cuda.empty_cache()
    log.warning("out of memory on %s: %s", state.device, exc)
    return error_response(request, OutOfMemoryError(
        f"the server's device {state.device} ran out of memory for this request; "
        "retry with a smaller tensor or after freeing held tensors"))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return error_response(request, ServerError(f"internal server error: {type(exc).__name__}: "
                                               f"{exc}"))


Endpoint = Callable[[Request], Awaitable[Response]]


def authorized(endpoint: Endpoint) -> Endpoint:
    """Require ``Authorization: Bearer <token>`` when the server has a token."""

    async def guarded(request: Request) -> Response:
        token = _state(request).config.token
        if token is not None:
            given = request.headers.get("authorization", "")
            scheme, _, value = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(value.encode(),
                                                                     token.encode()):
                raise AuthError("missing or wrong bearer token: send "
                                "'Authorization: Bearer <token>' (--token / GENIE_TOKEN)")
        try:
            return await endpoint(request)
        except (GenieError, HTTPException, torch.OutOfMemoryError):
            raise  # their handlers answer them
        except Exception as exc:
            # Answered here, not by the app-wide handler: Starlette re-raises what that
            # handler answers, and uvicorn then closes the connection, which can reset
            # it before the client has read the 500.
            return await on_unexpected(request, exc)

    guarded.__name__ = endpoint.__name__
    return guarded


class AccountingMiddleware:
    """Counts every request once: endpoint, status, error type, bytes, latency.

    Pure ASGI so that it sees the bytes as they cross the wire and the final
    status, including 404s for unknown routes and bodies refused as too large.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        scope.setdefault("state", {})
        seen = {"in": 0, "out": 0, "status": 500, "recorded": False}

        def record() -> None:
            # Recorded before the last body byte is handed to the server, so a client
            # that has its whole reply always finds this request in the next /stats.
            if seen["recorded"]:
                return
            seen["recorded"] = True
            route = scope.get("route")
            endpoint = f"{scope['method']} {getattr(route, 'path', None) or 'unmatched'}"
            state = scope["state"]
            app_state: ServerState = scope["app"].state.genie
            app_state.stats.record(
                endpoint, status=seen["status"], error_type=state.get("genie_error_type"),
                bytes_in=seen["in"], bytes_out=seen["out"],
                latency_ms=(time.perf_counter() - start) * 1000,
                compute_ms=state.get("genie_compute_ms", 0.0))

        async def counting_receive() -> Message:
            message = await receive()
            if message["type"] == "http.request":
                seen["in"] += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                seen["status"] = message["status"]
            elif message["type"] == "http.response.body":
                seen["out"] += len(message.get("body", b""))
                if not message.get("more_body", False):
                    record()
            await send(message)

        try:
            await self.app(scope, counting_receive, counting_send)
        except Exception:
            scope["state"]["genie_error_type"] = "internal"
            raise
        finally:
            record()  # no complete reply was sent (error, disconnect): count it anyway


def create_app(config: ServerConfig | None = None) -> Starlette:
    """Build a Genie app.  Resolving the device happens here, so a bad ``--device``
    fails at start-up rather than on the first request."""
    config = config or ServerConfig()
    dev = resolve_device(config.device)
    store = TensorStore(config.max_held_bytes)
    counters = Stats(store.usage)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(StatsCollector(counters))
    state = ServerState(config=config, device=dev, store=store, stats=counters,
                        registry=registry, limiter=anyio.CapacityLimiter(config.compute_threads),
                        bodies=BodyBudget(config.max_inflight_body_bytes),
                        device_info=describe(dev))

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        log.info("genie %s serving on %s (%d ops, auth %s)", __version__, dev, len(REGISTRY),
                 "on" if config.token else "off")
        # Before serving: the first meta inference (allocation cap) costs ~1.5 s once per
        # process.  Not in a daemon thread: one still inside torch at exit aborts it.
        await anyio.to_thread.run_sync(warm_up)
        yield
        store.clear()

    routes = [
        Route("/health", authorized(health), methods=["GET"]),
        Route("/ops", authorized(ops), methods=["GET"]),
        Route("/stats", authorized(stats), methods=["GET"]),
        Route("/metrics", authorized(metrics), methods=["GET"]),
        Route("/device", authorized(device), methods=["GET"]),
        Route("/execute", authorized(execute), methods=["POST"]),
        Route("/graph", authorized(graph), methods=["POST"]),
        Route("/echo", authorized(echo), methods=["POST"]),
        Route("/tensors", authorized(put_tensor), methods=["POST"]),
        Route("/tensors", authorized(list_tensors), methods=["GET"]),
        Route("/tensors/{handle}", authorized(get_tensor), methods=["GET"]),
        Route("/tensors/{handle}", authorized(delete_tensor), methods=["DELETE"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(AccountingMiddleware),
                    Middleware(ReleaseBodyBudget, budget=state.bodies)],
        exception_handlers={
            GenieError: on_genie_error,
            HTTPException: on_http_error,
            torch.OutOfMemoryError: on_oom,
            Exception: on_unexpected,
        },
        lifespan=lifespan,
    )
    app.state.genie = state
    return app
