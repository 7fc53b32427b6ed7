"""Materialization: the graph a set of nodes needs, sent in one request.

``build_graph`` walks the nodes the requested ones depend on and writes the
``/graph`` body (inline inputs, server handles by id, each op once, arguments at
their defaults left out); ``run_nodes`` picks the client (see
``genie.lazy.session``), sends it, and caches what comes back on the nodes, which
become leaves.  The cached value is private: what users get is a copy
(``genie.lazy.tensor.materialize``), since later graphs send the cached value.

``release_nodes`` frees handles in one request per server, or, deferred, in none:
the client carries them in its next graph, which frees them after it ran.  So a
decode step that reads last step's KV cache, keeps the new one and releases the
old costs one request.  A deferred node keeps its handle, usable until the release
reaches the server (``settle_releases`` notices that after each graph).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from genie.client import Client
from genie.errors import ConfigurationError, GenieError
from genie.graph import to_wire
from genie.lazy.node import LazyNode
from genie.lazy.session import SESSION, resolve_client

__all__ = ["build_graph", "release_nodes", "run_nodes", "settle_releases", "value_of"]


def _walk(roots: Iterable[LazyNode]) -> tuple[list[LazyNode], list[LazyNode]]:
    """(leaves, computed nodes in dependency order) reachable from ``roots``."""
    leaves: list[LazyNode] = []
    order: list[LazyNode] = []
    seen: set[int] = set()
    stack: list[tuple[LazyNode, bool]] = [(n, False) for n in roots]
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
    if isinstance(value, LazyNode):
        return refs[id(value)]
    if isinstance(value, (list, tuple)):
        return [_wire(v, refs) for v in value]
    return to_wire(value)


def _is_default(value: Any, default: Any) -> bool:
    if value is default:
        return True
    return (type(value) is type(default) and not isinstance(value, (LazyNode, list, tuple))
            and value == default)


def _pick_client(nodes: Iterable[LazyNode], explicit: Client | None) -> tuple[Client, bool]:
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


def build_graph(fetch: Sequence[LazyNode], keep: Sequence[LazyNode]
                ) -> tuple[dict[str, Any], dict[str, torch.Tensor], dict[str, LazyNode],
                           list[LazyNode]]:
    """The wire graph for ``fetch`` + ``keep``: (graph, inputs, node id -> LazyNode, leaves)."""
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
    ids: dict[str, LazyNode] = {}

    def add(op_name: str, kwargs: dict[str, Any], node: LazyNode, *, identity: bool = False
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


def run_nodes(fetch: Sequence[LazyNode], keep: Sequence[LazyNode], client: Client | None) -> None:
    fetch = [n for n in dict.fromkeys(fetch) if n.value is None]
    keep = [n for n in dict.fromkeys(keep) if n.handle is None]
    if not fetch and not keep:
        return
    settle_releases()
    graph, inputs, ids, leaves = build_graph(fetch, keep)
    chosen, named = _pick_client([*leaves, *ids.values()], client)
    result = chosen.run_graph(graph, inputs)  # carries the client's deferred releases
    settle_releases()
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


def release_nodes(nodes: Iterable[LazyNode], *, defer: bool = False) -> None:
    """Free the server handles behind ``nodes`` (one request per server), keeping any
    fetched value; ``defer``: no request now, the client's next graph carries them.

    A node released before its value was fetched cannot be used again.
    """
    groups: dict[int, tuple[Client, list[LazyNode]]] = {}
    for node in nodes:
        if node.handle is not None:
            client = resolve_client(node.client)
            groups.setdefault(id(client), (client, []))[1].append(node)
    for client, group in groups.values():
        handles = [n.handle for n in group if n.handle is not None]
        if defer:
            client.defer_release(*handles)
            SESSION.deferred.extend((client, weakref.ref(n)) for n in group)
            continue
        client.release(*handles)
        for node in group:
            node.handle = None
    if not defer:
        settle_releases()  # release() also sent what was deferred


def settle_releases() -> None:
    """Nodes whose deferred release reached the server lose their handle."""
    still = []
    pending: dict[int, set[str]] = {}  # per client, read once
    for client, ref in SESSION.deferred:
        node = ref()
        if node is None or node.handle is None:
            continue
        ids = pending.get(id(client))
        if ids is None:
            ids = pending[id(client)] = set(client.pending_releases)
        if node.handle.id in ids:
            still.append((client, ref))
        else:
            node.handle = None
    SESSION.deferred = still


def value_of(node: LazyNode) -> torch.Tensor:
    """The cached CPU value of ``node`` (materializing it when needed), NOT a copy: for
    reading only (``item``, ``tolist``, a mask).  What users keep gets ``.clone()``."""
    run_nodes([node], [], None)
    value = node.value
    assert value is not None
    return value
