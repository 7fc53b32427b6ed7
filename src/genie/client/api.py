"""The Genie API, one method per call (``Endpoints``), written once for both clients.

Every API method is an ``endpoint``: it plans its call, and the client it is read from
performs it, so on a ``Client`` it returns the result and on an ``AsyncClient`` an
awaitable of it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine, Mapping, Sequence
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar, overload

import torch

from genie.client.base import AsyncClientBase, BaseClient, SyncClientBase
from genie.client.calls import (
    Call,
    GraphResult,
    Plan,
    RemoteTensor,
    as_dict,
    check_protocol,
    execute_plan,
    graph_result,
    handle_id,
    handle_path,
    only_tensor,
    op_list,
    probe_upload_plan,
    tensor_plan,
)
from genie.errors import ConfigurationError
from genie.graph import GRAPH_METADATA_KEY
from genie.protocol import is_session_id
from genie.wire import Decoded

__all__ = ["Endpoints", "endpoint"]

P = ParamSpec("P")
T = TypeVar("T")


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
