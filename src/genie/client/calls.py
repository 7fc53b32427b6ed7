"""Each API call planned, and its reply read, in one place: what both clients send and
how they read what comes back.

A call is first *planned* (``Plan``: method, path, query, body chunks) and paired with
the function that reads its reply (``Call``); the sync ``Client`` and the
``AsyncClient`` only differ in how they send a plan and wait for the bytes.  Bodies go
out as memoryview chunks straight from tensor memory with an exact Content-Length, and
replies are collected into one preallocated buffer (``Sink``) that the decoded tensors
then share.  Error replies become the ``RemoteError`` their type names
(``raise_for_error``).
"""

from __future__ import annotations

import json
import mmap
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import torch

from genie.errors import ConfigurationError, MalformedRequestError, RemoteError, error_class_for
from genie.graph import HANDLES_METADATA_KEY, RELEASED_METADATA_KEY, Ref, to_wire
from genie.protocol import PROTOCOL_VERSION, SAFETENSORS_MEDIA_TYPE
from genie.wire import Decoded, dtype_from_name, encode, receive_buffer

__all__ = ["UPLOAD_CHUNK", "Call", "GraphResult", "Plan", "RemoteTensor", "Sink", "as_dict",
           "check_protocol", "execute_plan", "graph_result", "handle_id", "handle_path",
           "only_tensor", "op_list", "parse_server_timing", "probe_upload_plan",
           "raise_for_error", "tensor_plan"]

#: Bodies go out, and report their progress, in slices of this size.
UPLOAD_CHUNK = 1024 * 1024
T = TypeVar("T")


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
