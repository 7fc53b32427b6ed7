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

Resident leaves (tensors moved with ``.to(remote)``) that a graph sends inline are
also kept by it (the graph's ``keep``), so the next graph refers to them by handle:
a model moved to the device uploads its weights with its first forward, once.  When
such a tensor is collected its handle is released the same deferred way: it travels
with the client's next request, so dropping a model costs no request of its own.

A value that Python itself asks for (``bool``, ``item``, a mask: ``value_of``) is
computed here, with no request, when that is exact on any device and cheap: every
input is a local integer or boolean value (a snapshot not yet sent, or a small
resident tensor whose value Genie keeps beside its handle), every step stays integer
or boolean, and the graph is small.  Libraries branch on such values inside a
forward (HF transformers asks ``attention_mask.all()`` to skip the mask), and a
device round trip for each would cost a request per check.  Floating-point work,
random draws and anything larger always run on the server.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import torch

from genie.client import Client, RemoteTensor
from genie.errors import ConfigurationError, GenieError
from genie.graph import to_wire
from genie.lazy.node import LazyNode
from genie.lazy.session import SESSION, resolve_client
from genie.ops import OpContext

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
    # Resident leaves still on this side are kept by this graph (sent once, ever).
    keep = [*keep, *(n for n in leaves if n.resident and n.handle is None and n not in keep)]
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


#: Resident leaves up to this size keep their value beside the handle, for ``value_of``.
SHADOW_BYTES = 64 * 1024
#: Bounds on a graph ``value_of`` computes here: steps, and bytes of inputs and results.
LOCAL_STEPS = 256
LOCAL_BYTES = 1 << 20
_LOCAL_CTX = OpContext(max_alloc_bytes=LOCAL_BYTES)


def _exact(t: Any) -> bool:
    return isinstance(t, torch.Tensor) and not (t.is_floating_point() or t.is_complex())


def _run_locally(node: LazyNode) -> bool:
    """Compute ``node`` here when exact and cheap (see the module docstring)."""
    try:
        leaves, order = _walk([node])
    except GenieError:
        return False
    if len(order) > LOCAL_STEPS or not all(_exact(leaf.value) for leaf in leaves):
        return False
    values: dict[int, torch.Tensor] = {id(leaf): leaf.value for leaf in leaves
                                       if leaf.value is not None}
    if sum(v.nbytes for v in values.values()) > LOCAL_BYTES:
        return False

    def resolve(v: Any) -> Any:
        if isinstance(v, LazyNode):
            return values[id(v)]
        if isinstance(v, (list, tuple)):
            return type(v)(resolve(x) for x in v)
        return v

    for step in order:
        op = step.op
        assert op is not None and step.kwargs is not None
        if op.factory and any(p.name == "seed" for p in op.params):
            return False  # random: the server's device generator draws it
        try:
            out = op({k: resolve(v) for k, v in step.kwargs.items()}, _LOCAL_CTX)
        except Exception:  # noqa: BLE001 - the server then runs it and reports its error
            return False
        if not _exact(out) or out.nbytes > LOCAL_BYTES:
            return False
        values[id(step)] = out
    result = values[id(node)]
    node.value = result.clone() if result._base is not None else result
    node.kwargs, node.deps = None, ()
    return True


def _keep_resident(node: LazyNode, client: Client, handle: RemoteTensor) -> None:
    """Release ``handle`` once nothing references ``node``: deferred, so it travels
    with the client's next request (a finalizer may run in any thread; the client's
    deferred list is locked)."""
    releaser = weakref.finalize(node, client.defer_release, handle)
    releaser.atexit = False  # at exit the server's session ends anyway
    node.releaser = releaser


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
            if node.resident:
                _keep_resident(node, chosen, handle)
            if not (node.resident and node.value is not None
                    and node.value.nbytes <= SHADOW_BYTES):
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
            if node.releaser is not None:
                node.releaser.detach()
                node.releaser = None
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
    """The cached CPU value of ``node`` (materializing it when needed, here when exact and
    cheap), NOT a copy: for reading only (``item``, ``tolist``, a mask).  What users keep
    gets ``.clone()``."""
    if node.value is None and not _run_locally(node):
        run_nodes([node], [], None)
    value = node.value
    assert value is not None
    return value
