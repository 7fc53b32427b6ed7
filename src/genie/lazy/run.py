"""Materialization: the graph a set of LazyTensors needs, sent in one request.

``build_graph`` walks the nodes the requested tensors depend on and writes the
``/graph`` body (inline inputs, server handles by id, each op once, arguments at
their defaults left out); ``_run`` picks the client (see ``genie.lazy``, "Where it
runs"), sends it, and caches what comes back on the nodes, which become leaves.
The cache is private: what users get (``materialize``) is a copy, since later
graphs send the cached value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from genie.client import Client
from genie.errors import ConfigurationError, GenieError
from genie.graph import to_wire
from genie.lazy import LazyTensor, Node
from genie.lazy_session import resolve_client

__all__ = ["build_graph", "fetch", "local_value", "materialize", "persist", "release"]


def _walk(roots: Iterable[Node]) -> tuple[list[Node], list[Node]]:
    """(leaves, computed nodes in dependency order) reachable from ``roots``."""
    leaves: list[Node] = []
    order: list[Node] = []
    seen: set[int] = set()
    stack: list[tuple[Node, bool]] = [(n, False) for n in roots]
    while stack:
        node, expanded = stack.pop()
        if expanded:
            order.append(node)
            continue
        if id(node) in seen:
            continue
        seen.add(id(node))
        if node.is_leaf:
            leaves.append(node)
            continue
        if node.kwargs is None:
            raise GenieError("a LazyTensor this graph needs was released (its server handle "
                             "deleted) before its value was fetched")
        stack.append((node, True))
        stack.extend((d, False) for d in node.deps if id(d) not in seen)
    return leaves, order


def _wire(value: Any, refs: Mapping[int, dict[str, str]]) -> Any:
    if isinstance(value, Node):
        return refs[id(value)]
    if isinstance(value, (list, tuple)):
        return [_wire(v, refs) for v in value]
    return to_wire(value)


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    return (type(value) is type(default) and not isinstance(value, (Node, list, tuple))
            and value == default)


def _pick_client(nodes: Iterable[Node], explicit: Client | None) -> tuple[Client, bool]:
    """(client, whether the graph named it): an explicit client, else the one holding
    the handles, else the one tensors were made with (``client=`` on ``genie.remote``,
    a factory or an earlier materialization), else the session's (``resolve_client``)."""
    if explicit is not None:
        return explicit, True
    holders: dict[int, Client] = {}
    made_with: Client | None = None
    for node in nodes:
        if node.client is None:
            continue
        if node.handle is not None:
            holders[id(node.client)] = node.client
        made_with = made_with or node.client
    if len(holders) > 1:
        raise ConfigurationError("a graph mixes tensors held by two different servers; "
                                 "materialize one side first")
    if holders:
        return next(iter(holders.values())), True
    if made_with is not None:
        return made_with, True
    return resolve_client(), False


def build_graph(fetch: Sequence[Node], keep: Sequence[Node]
                ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, Node],
                           list[Node]]:
    """The wire graph for ``fetch`` + ``keep``: (graph, inputs, node id -> Node, leaves)."""
    leaves, order = _walk([*fetch, *keep])
    refs: dict[int, dict[str, str]] = {}
    inputs: dict[str, torch.Tensor] = {}
    for leaf in leaves:
        if leaf.handle is not None:
            refs[id(leaf)] = {"handle": leaf.handle.id}
        else:
            name = f"i{len(inputs)}"
            inputs[name] = leaf.value  # type: ignore[assignment]
            refs[id(leaf)] = {"input": name}
    nodes: list[dict[str, Any]] = []
    ids: dict[str, Node] = {}

    def add(op_name: str, kwargs: dict[str, Any], node: Node, *, identity: bool = False
            ) -> str:
        nid = f"n{len(nodes)}"
        entry: dict[str, Any] = {"id": nid, "op": op_name}
        if kwargs:
            entry["kwargs"] = kwargs
        nodes.append(entry)
        if not identity:
            refs[id(node)] = {"node": nid}
        ids[nid] = node
        return nid

    for node in order:
        op = node.op
        assert op is not None and node.kwargs is not None
        defaults = {p.name: p.default for p in op.params}
        add(op.name, {k: _wire(v, refs) for k, v in node.kwargs.items()
                      if not _is_default(v, defaults[k])}, node)
    # A kept output is not sent back, and a leaf is no node: both reach the output
    # list through an identity node (``contiguous`` of a contiguous tensor: no copy).
    kept = {id(n) for n in keep}
    keep_ids = [refs[id(n)]["node"] if "node" in refs[id(n)]
                else add("contiguous", {"input": refs[id(n)]}, n, identity=True) for n in keep]
    out_ids = [refs[id(n)]["node"] if "node" in refs[id(n)] and id(n) not in kept
               else add("contiguous", {"input": refs[id(n)]}, n, identity=True) for n in fetch]
    graph = {"nodes": nodes, "outputs": list(dict.fromkeys(out_ids + keep_ids)),
             "keep": keep_ids}
    return graph, inputs, ids, leaves


def _run(fetch: Sequence[Node], keep: Sequence[Node], client: Client | None) -> None:
    fetch = [n for n in dict.fromkeys(fetch) if n.value is None]
    keep = [n for n in dict.fromkeys(keep) if n.handle is None]
    if not fetch and not keep:
        return
    graph, inputs, ids, leaves = build_graph(fetch, keep)
    chosen, named = _pick_client([*leaves, *ids.values()], client)
    result = chosen.run_graph(graph, inputs)
    for nid, tensor in result.outputs.items():
        node = ids[nid]
        node.value = tensor
        node.kwargs, node.deps = None, ()
        if named:  # later graphs on this value run where it ran; the session's default
            node.client = chosen  # client is looked up again each time (it may change)
    for nid, handle in result.handles.items():
        node = ids[nid]
        node.handle, node.client = handle, chosen
        node.kwargs, node.deps = None, ()
        if node.op is None:  # an uploaded input: the server copy is the value now
            node.value = None


def _nodes(tensors: Iterable[torch.Tensor]) -> list[Node]:
    nodes = []
    for t in tensors:
        if not isinstance(t, LazyTensor):
            raise TypeError(f"expected a LazyTensor, got {type(t).__name__}")
        nodes.append(t._node)
    return nodes


def materialize(*tensors: torch.Tensor, keep: Sequence[torch.Tensor] = (),
                client: Client | None = None) -> Any:
    """Fetch the values of ``tensors`` (and keep ``keep`` on the server) in ONE request.

    Returns a CPU tensor for one argument, a tuple for several.  Values are cached:
    asking again sends nothing.  Each call returns fresh tensors, as ``.cpu()`` of a
    CUDA tensor does: the cache is what later graphs send, so a caller editing its
    result must not change them (one memory copy per call, like a device-to-host copy).
    """
    fetch = _nodes(tensors)
    _run(fetch, _nodes(keep), client)
    values = tuple(n.value.clone() for n in fetch)  # type: ignore[union-attr]
    return values[0] if len(values) == 1 else values


def persist(*tensors: torch.Tensor, client: Client | None = None) -> None:
    """Keep the values of ``tensors`` on the server as handles, in one request."""
    _run([], _nodes(tensors), client)


def release(*tensors: torch.Tensor) -> None:
    """Delete the server handles behind ``tensors``, keeping any fetched value.

    A tensor released before its value was fetched cannot be used again.
    """
    for node in _nodes(tensors):
        if node.handle is None:
            continue
        client = resolve_client(node.client)
        client.delete(node.handle)
        node.handle = None


def fetch(*tensors: LazyTensor) -> None:
    """Fetch the values of ``tensors`` into the cache in one request, handing out nothing."""
    _run(_nodes(tensors), [], None)


def local_value(t: LazyTensor) -> torch.Tensor:
    """The cached CPU value of ``t`` (materializing it when needed), NOT a copy: for
    reading only (``item``, ``tolist``, a mask).  What users keep gets ``.clone()``."""
    _run([t._node], [], None)
    value = t._node.value
    assert value is not None
    return value
