"""The HTTP endpoints: what each route reads, computes and answers.

Endpoints read and write safetensors bodies (``genie.server.codec``), run compute on
the app's executor (``genie.server.executor``) and raise ``genie.errors`` to refuse a
request; the app's handlers turn those into the one error shape.  Every computing
reply carries ``Server-Timing``.  ``/probe`` moves bytes with no tensor work at all:
the network baseline that tensor transfers are compared with.

What the original server answered is kept beside Genie's own fields, for the scripts
written against it: ``/health``'s ``"status":"healthy"``, ``uptime`` and ``stats``,
``/execute``'s multipart form (``genie.server.forms``), and ``GET /`` listing the routes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import mmap
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any, TypeVar, overload

import anyio
import torch
from prometheus_client import generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from genie._version import __version__
from genie.errors import MalformedRequestError, NotFoundError, PayloadTooLargeError, UnsupportedOpError
from genie.graph import GRAPH_METADATA_KEY, HANDLES_METADATA_KEY, RELEASED_METADATA_KEY, from_wire
from genie.ops import REGISTRY, Op, get_op, op_names
from genie.protocol import HEALTHY, PROTOCOL_VERSION, SAFETENSORS_MEDIA_TYPE
from genie.server.bodies import read_body
from genie.server.budget import reserve_for
from genie.server.codec import (
    OFF_LOOP_BYTES,
    STREAM_CHUNK,
    decode_request,
    encode_outputs,
    json_charge,
    tensor_response,
)
from genie.server.device import describe, matmul_benchmark
from genie.server.executor import INLINE_BYTES, Graph
from genie.server.forms import OP_FIELD, ExecuteForm, is_form, parse_execute_form
from genie.server.middleware import COMPUTE_MS_KEY, Endpoint
from genie.server.scheduling import Watch, client_key
from genie.server.sessions import session_of
from genie.server.state import state_of
from genie.server.store import TensorStore
from genie.server.timing import Timing
from genie.wire import Decoded, Encoded, json_cost

__all__ = ["NO_OP", "RouteInfo", "delete_tensor", "device", "echo", "execute", "get_tensor", "graph",
           "health", "index", "list_tensors", "metrics", "ops", "probe_download", "probe_upload",
           "put_tensor", "stats"]

#: The answer to an ``/execute`` that names no op (no list of 161 names: nothing was misspelt).
NO_OP = f"no op given (use ?op=NAME or the form field {OP_FIELD})"
#: One line of ``GET /``: method, path, what the route does.
RouteInfo = tuple[str, str, str]

T = TypeVar("T")
R = TypeVar("R")

#: ``GET /probe?bytes=N``: ASCII digits, few enough for any limit (and for ``int``).
_WHOLE_BYTES = re.compile(r"[0-9]{1,19}")


@overload
async def compute(request: Request, timing: Timing, fn: Callable[[Watch], T], *,
                  stoppable: bool = False) -> T: ...


@overload
async def compute(request: Request, timing: Timing, fn: Callable[[Watch], T],
                  then: Callable[[T], R], *, stoppable: bool = False,
                  inline: str | None = None) -> R: ...


async def compute(request: Request, timing: Timing, fn: Callable[[Watch], Any],
                  then: Callable[[Any], Any] | None = None, *, stoppable: bool = False,
                  inline: str | None = None) -> Any:
    """``Executor.run`` for this request: a fair share of the threads for its client,
    watched for its deadline and, when ``stoppable`` (``fn`` checks the watch: a graph,
    between nodes), for its client going away (``genie.server.scheduling``); its compute
    time noted for the stats.  Call it once the body has been read: the watch listens on
    the request for the disconnect.

    ``inline`` (the op's name, for an op ``Executor.inline_fits`` judged cheap): run
    ``fn`` and ``then`` on the event loop instead (``Executor.run_inline``)."""
    state = state_of(request)
    if inline is not None and then is not None:
        try:
            return state.executor.run_inline(timing, inline, fn, then)
        finally:
            request.scope["state"][COMPUTE_MS_KEY] = timing.compute_ms
    watch = Watch(state.executor.max_compute_s)
    client = client_key(session_of(request), request.client.host if request.client else None)
    # Only a graph can stop part-way, so only a graph listens (a task costs ~15 us).
    listener = (asyncio.get_running_loop().create_task(_until_disconnect(request, watch))
                if stoppable else None)
    try:
        if then is None:
            return await state.executor.run(timing, fn, client=client, watch=watch)
        return await state.executor.run(timing, fn, then, client=client, watch=watch)
    finally:
        if listener is not None:
            listener.cancel()
        request.scope["state"][COMPUTE_MS_KEY] = timing.compute_ms


async def _until_disconnect(request: Request, watch: Watch) -> None:
    while (await request.receive())["type"] != "http.disconnect":
        pass
    watch.gone.set()


def _json_query(request: Request, name: str, default: Any) -> Any:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    json_charge(request)(json_cost(raw), f"parsing query parameter {name!r}")
    try:
        return json.loads(raw)
    except (ValueError, RecursionError) as exc:  # also: huge ints, deep nesting
        raise MalformedRequestError(f"query parameter {name!r} is not valid JSON: {exc}") from exc


async def health(request: Request) -> Response:
    state = state_of(request)
    info = dict(state.device_info)
    if state.device.type == "cuda":
        info = describe(state.device)  # memory figures change; read them fresh
    totals = state.stats.totals()
    uptime = state.stats.uptime_s()
    # Starlette writes JSON compactly ({"status":"healthy",...}), which the original
    # scripts' grep and cut pipelines rely on.
    return JSONResponse({
        "status": HEALTHY,
        **info,
        "torch_version": torch.__version__,
        "genie_version": __version__,
        "protocol_version": PROTOCOL_VERSION,
        "uptime_s": uptime,
        "ops": len(REGISTRY),
        "auth": state.config.token is not None,
        # The original server's names.  The request counters appear once, as "stats":
        # the original scripts grep '"failed":[0-9]*' and must find one match.
        "uptime": uptime,
        "stats": {"total_requests": totals["total"], "successful": totals["succeeded"],
                  "failed": totals["failed"]},
    })


def index(routes: Sequence[RouteInfo]) -> Endpoint:
    """``GET /``: the routes this server answers, one line each, as the original did."""
    listing = {"service": "genie", "genie_version": __version__,
               "protocol_version": PROTOCOL_VERSION, "docs": "docs/protocol.md",
               "endpoints": [{"method": m, "path": p, "description": d} for m, p, d in routes]}

    async def index(request: Request) -> Response:
        return JSONResponse(listing)

    return index


async def ops(request: Request) -> Response:
    return JSONResponse({"ops": [{"name": n, "signature": REGISTRY[n].signature()}
                                 for n in op_names()]})


async def stats(request: Request) -> Response:
    state = state_of(request)
    return JSONResponse({**state.stats.snapshot(), "sessions": state.store.sessions_report()})


async def metrics(request: Request) -> Response:
    return Response(generate_latest(state_of(request).registry), media_type=CONTENT_TYPE_LATEST)


async def device(request: Request) -> Response:
    state = state_of(request)
    timing = Timing()
    bench = await compute(request, timing, lambda _: matmul_benchmark(state.device))
    return JSONResponse({**describe(state.device), "benchmark": bench},
                        headers={"server-timing": timing.header()})


async def execute(request: Request) -> Response:
    """One op: body tensors bind by parameter name (a lone tensor binds to the first
    parameter); ``?args=`` carries the other arguments as a JSON object.

    The body is safetensors, or the original server's form (``operation``, the file
    ``tensor_file`` and one field per other argument).  An op named in the query is
    checked before the body is read, so an unknown one costs no upload.
    """
    state = state_of(request)
    content_type = request.headers.get("content-type")
    form_request = is_form(content_type)
    name = request.query_params.get("op")
    if name is None and not form_request:
        raise UnsupportedOpError(NO_OP)
    op = None if name is None else get_op(name)
    timing = Timing()
    body = await read_body(request)
    kwargs = _json_query(request, "args", {})
    if not isinstance(kwargs, dict):
        raise MalformedRequestError("query parameter 'args' must be a JSON object")
    tensor_bytes: bytearray | mmap.mmap | memoryview = body
    if form_request:
        form = await _read_form(request, body, content_type)
        op = _form_op(op, form)
        for key, value in form.args.items():
            if key in kwargs:
                raise MalformedRequestError(f"argument {key!r} given in both the form and args")
            kwargs[key] = value
        tensor_bytes = form.tensors
    if op is None:
        raise UnsupportedOpError(NO_OP)
    decoded = await decode_request(request, tensor_bytes, timing)
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

    # What meta inference learns is kept only if the request succeeds: a refused
    # request leaves nothing in the server's cache.
    executor = state.executor
    staged = executor.meta.stage()
    # A small body on a CPU server: bind here, and a cheap op runs right here too.
    bound = (op.bind((), kwargs) if len(tensor_bytes) <= INLINE_BYTES
             and executor.device.type == "cpu" else None)
    inline = bound is not None and executor.inline_fits(op, bound, staged)

    def work(_: Watch) -> torch.Tensor:
        args = bound if bound is not None else op.bind((), {
            k: _to_device(v, state.device) for k, v in kwargs.items()})
        # Within the allocation cap, checked on meta before anything is allocated.  The
        # body's tensors belong to this request alone, so a unary op may write its
        # result over its input (bit-identical; no fresh output to fault in).
        return executor.run_op(op, args, cache=staged, reuse_input=True)

    def reply(result: torch.Tensor) -> Encoded:
        encoded = encode_outputs(request, {"output": result}, timing)
        staged.commit()
        return encoded

    return tensor_response(await compute(request, timing, work, reply,
                                         inline=op.name if inline else None), timing)


async def _read_form(request: Request, body: bytearray | mmap.mmap, content_type: str | None
                     ) -> ExecuteForm:
    charge = json_charge(request)
    if len(body) <= OFF_LOOP_BYTES:
        return parse_execute_form(body, content_type, charge)
    return await anyio.to_thread.run_sync(parse_execute_form, body, content_type, charge)


def _form_op(queried: Op | None, form: ExecuteForm) -> Op | None:
    if form.op is None:
        return queried
    if queried is not None and queried.name != form.op:
        raise MalformedRequestError(f"two ops given: ?op={queried.name} and the form field "
                                    f"{OP_FIELD}={form.op}")
    return get_op(form.op)


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
    state = state_of(request)
    timing = Timing()
    body = await read_body(request)
    decoded = await decode_request(request, body, timing)
    text = decoded.metadata.get(GRAPH_METADATA_KEY)
    if text is None:
        raise MalformedRequestError(
            f"a /graph body carries its graph JSON in the safetensors metadata key "
            f"{GRAPH_METADATA_KEY!r}")
    charge = json_charge(request)
    g = (Graph.from_json(text, charge) if len(text) <= OFF_LOOP_BYTES
         else await anyio.to_thread.run_sync(Graph.from_json, text, charge))
    missing = sorted(g.refs_of_kind("input") - set(decoded.tensors))
    if missing:
        raise MalformedRequestError(f"graph refers to inputs {missing} that the body lacks")
    handles = {h: state.store.get(h) for h in sorted(g.refs_of_kind("handle"))}
    owner = session_of(request)

    kept: dict[str, dict[str, Any]] = {}
    staged = state.executor.meta.stage()  # committed only when the reply is ready

    def work(watch: Watch) -> dict[str, torch.Tensor]:
        inputs = {k: v.to(state.device) for k, v in decoded.tensors.items()}
        return state.executor.run_graph(g, inputs, handles, staged, watch)

    def reply(outputs: dict[str, torch.Tensor]) -> Encoded:
        # A kept output that is (a view of) a body tensor would keep the whole received
        # body alive while the budget counts only its own bytes: hold a copy instead.
        body_storages = {t.untyped_storage().data_ptr() for t in decoded.tensors.values()
                         if t.numel()}
        kept.update(state.store.put_many({
            k: outputs[k].clone() if outputs[k].untyped_storage().data_ptr() in body_storages
            else outputs[k] for k in g.keep}, owner=owner, freeing=g.release))
        returned = {k: v for k, v in outputs.items() if k not in kept}
        meta = {HANDLES_METADATA_KEY: json.dumps(kept)} if kept else {}
        if g.release:  # freed once the reply is laid out: a failed graph frees nothing
            held, missing = state.store.split_held(g.release)
            meta[RELEASED_METADATA_KEY] = json.dumps({"released": held, "missing": missing})
        encoded = encode_outputs(request, returned, timing, meta or None)
        staged.commit()
        if g.release:
            state.store.release_many(g.release)
        return encoded

    try:
        return tensor_response(await compute(request, timing, work, reply, stoppable=True),
                               timing)
    except BaseException:  # a complex128 output, host memory for a copy, cancellation:
        _release(state.store, kept)  # the client never learns the kept ids
        raise


def _release(store: TensorStore, kept: dict[str, dict[str, Any]]) -> None:
    for info in kept.values():
        with contextlib.suppress(NotFoundError):  # a client that listed it deleted it
            store.delete(info["id"])


async def put_tensor(request: Request) -> Response:
    state = state_of(request)
    timing = Timing()
    body = await read_body(request)
    decoded = await decode_request(request, body, timing)
    if len(decoded.tensors) != 1:
        raise MalformedRequestError(f"POST /tensors takes exactly one tensor, got "
                                    f"{len(decoded.tensors)}")
    (tensor,) = decoded.tensors.values()
    # Held on the worker too: the store copies a tensor that aliases the body.
    owner = session_of(request)
    (info,) = (await compute(request, timing, lambda _: tensor.to(state.device),
                             lambda moved: state.store.put_many({"t": moved}, owner=owner))
               ).values()
    return JSONResponse(info, status_code=201, headers={"server-timing": timing.header()})


#: ``GET /tensors`` answers at most this many handles per page (``?limit=``, ``?after=``):
#: without a bound, a server holding a million empty tensors answers a 100 MB listing.
MAX_LIST_LIMIT = 1000


async def list_tensors(request: Request) -> Response:
    store = state_of(request).store
    raw = request.query_params.get("limit", str(MAX_LIST_LIMIT))
    limit = int(raw) if raw.isascii() and raw.isdigit() and len(raw) <= 9 else 0
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise MalformedRequestError(f"query parameter 'limit' must be a whole number from 1 "
                                    f"to {MAX_LIST_LIMIT}, got {raw[:20]!r}")
    count, nbytes = store.usage()
    page = store.list(limit + 1, request.query_params.get("after"))
    more = len(page) > limit
    page = page[:limit]
    return JSONResponse({"tensors": page, "count": count, "bytes": nbytes,
                         "budget_bytes": store.budget_bytes,
                         "next": page[-1]["id"] if more else None})


async def get_tensor(request: Request) -> Response:
    handle_id = request.path_params["handle"]
    tensor = state_of(request).store.get(handle_id)
    timing = Timing()
    if tensor.device.type == "cpu":  # held tensors are contiguous: encoding copies nothing
        return tensor_response(encode_outputs(request, {handle_id: tensor}, timing), timing)
    encoded = await compute(request, timing, lambda _: tensor,  # device-to-host copy
                            lambda t: encode_outputs(request, {handle_id: t}, timing))
    return tensor_response(encoded, timing)


async def delete_tensor(request: Request) -> Response:
    info = state_of(request).store.delete(request.path_params["handle"])
    return JSONResponse({**info, "deleted": True})


async def echo(request: Request) -> Response:
    """Decode and re-encode: validates the body, costs transfer only."""
    timing = Timing()
    body = await read_body(request)
    decoded = await decode_request(request, body, timing)
    if len(body) <= OFF_LOOP_BYTES:
        return tensor_response(encode_outputs(request, decoded.tensors, timing,
                                              decoded.metadata), timing)
    encoded = await anyio.to_thread.run_sync(encode_outputs, request, decoded.tensors, timing,
                                             decoded.metadata)
    return tensor_response(encoded, timing)


async def probe_upload(request: Request) -> Response:
    """Receive a body of any bytes and drop it: the upload half of the network baseline.

    Received like every body (``read_body``), so the body limit, the budget for bodies in
    flight and the idle timeout apply here too; nothing is decoded.
    """
    body = await read_body(request)
    return JSONResponse({"bytes": len(body)})


async def probe_download(request: Request) -> Response:
    """``?bytes=N`` zero bytes, streamed from one reused chunk: the download half.

    N is bounded by the body limit (``--max-body-mb``), as a request body would be, so a
    probe can never ask the server for more than it would accept.
    """
    raw = request.query_params.get("bytes")
    if raw is None or not _WHOLE_BYTES.fullmatch(raw):  # not isdigit(): "²" is a digit to it
        raise MalformedRequestError(f"GET /probe needs ?bytes=N, a whole number of bytes >= 0; "
                                    f"got {raw!r}")
    nbytes, limit = int(raw), state_of(request).config.max_body_bytes
    if nbytes > limit:
        raise PayloadTooLargeError(f"a probe of {nbytes} bytes is over the server's "
                                   f"{limit}-byte limit (--max-body-mb)")
    # One chunk of zeros is made per probe: it counts as a reply in flight until sent.
    reserve_for(request.scope, state_of(request).replies, min(nbytes, STREAM_CHUNK), "this probe")
    headers = {"content-length": str(nbytes)}
    if nbytes <= STREAM_CHUNK:
        return Response(bytes(nbytes), media_type=SAFETENSORS_MEDIA_TYPE, headers=headers)
    zeros = memoryview(bytes(STREAM_CHUNK))

    async def chunks() -> AsyncIterator[memoryview]:
        whole, rest = divmod(nbytes, STREAM_CHUNK)
        for _ in range(whole):
            yield zeros
        if rest:
            yield zeros[:rest]

    return StreamingResponse(chunks(), media_type=SAFETENSORS_MEDIA_TYPE, headers=headers)
