"""The captured-graph format shared by ``POST /graph``, the client and LazyTensor.

A graph is JSON carried in the safetensors body's metadata under ``genie.graph``;
the body's tensors are its inline inputs::

    {"nodes": [{"id": "a", "op": "relu", "args": [{"input": "x"}]},
               {"id": "b", "op": "add", "args": [{"node": "a"}, {"handle": "h1"}],
                "kwargs": {"alpha": 2}}],
     "outputs": ["b"],          # node ids to hand back
     "keep": []}                # of those, ids to keep on the server as handles

Argument values are JSON, with tagged objects for what JSON lacks:
``{"input": NAME}`` a tensor of the request body, ``{"handle": ID}`` a tensor held
on the server, ``{"node": ID}`` an earlier node's result, ``{"dtype": "float32"}``,
``{"slice": [start, stop, step]}`` and ``{"ellipsis": true}``.  A node can refer only
to nodes listed before it, so a graph is a DAG by construction and runs in list
order.  Intermediates stay on the server and are freed after their last use.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from genie.errors import InvalidArgumentError, MalformedRequestError
from genie.ops import Op, OpContext, get_op
from genie.wire import dtype_from_name, dtype_name

__all__ = ["GRAPH_METADATA_KEY", "Graph", "Node", "Ref", "from_wire", "to_wire"]

#: The safetensors metadata key holding the graph JSON.
GRAPH_METADATA_KEY = "genie.graph"
#: The metadata key a /graph reply uses to describe kept handles.
HANDLES_METADATA_KEY = "genie.handles"
MAX_NODES = 100_000


@dataclass(frozen=True)
class Ref:
    """A tensor reference inside a graph: ``kind`` is input, handle or node."""

    kind: str
    name: str


def to_wire(value: Any) -> Any:
    """Encode an argument value (Refs, dtypes, slices, nested lists) as graph JSON."""
    if isinstance(value, Ref):
        return {value.kind: value.name}
    if isinstance(value, torch.dtype):
        return {"dtype": dtype_name(value)}
    if isinstance(value, slice):
        return {"slice": [to_wire(value.start), to_wire(value.stop), to_wire(value.step)]}
    if value is Ellipsis:
        return {"ellipsis": True}
    if isinstance(value, (list, tuple)):
        return [to_wire(v) for v in value]
    if value is None or type(value) in (bool, int, float, str):
        return value
    if isinstance(value, torch.Size):
        return list(value)
    raise InvalidArgumentError(f"cannot send a {type(value).__name__} as an op argument")


def from_wire(value: Any, resolve: Callable[[Ref], Any]) -> Any:
    """Decode graph JSON into Python values; tensor references go through ``resolve``."""
    if isinstance(value, list):
        return [from_wire(v, resolve) for v in value]
    if isinstance(value, dict):
        if len(value) != 1:
            raise MalformedRequestError(f"a tagged argument has exactly one key, got {value!r}")
        (tag, payload), = value.items()
        if tag in ("input", "handle", "node"):
            if not isinstance(payload, str):
                raise MalformedRequestError(f"{{{tag!r}: ...}} takes a string, got {payload!r}")
            return resolve(Ref(tag, payload))
        if tag == "dtype":
            return dtype_from_name(payload)
        if tag == "slice":
            if not (isinstance(payload, list) and len(payload) == 3):
                raise MalformedRequestError("{'slice': [start, stop, step]} takes three values")
            return slice(*payload)
        if tag == "ellipsis":
            return Ellipsis
        raise MalformedRequestError(f"unknown argument tag {tag!r}")
    return value


@dataclass(frozen=True)
class Node:
    """One op application; ``args``/``kwargs`` are still in wire form, and ``refs``
    lists the tensor references in them, found once when the graph is parsed."""

    id: str
    op: Op
    args: list[Any]
    kwargs: dict[str, Any]
    refs: tuple[Ref, ...] = ()


@dataclass
class Graph:
    """A parsed, checked graph ready to run."""

    nodes: list[Node]
    outputs: list[str]
    keep: list[str] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str) -> Graph:
        """Parse and check a graph; structural problems are 400, unknown ops 422."""
        try:
            spec = json.loads(text)
        except (ValueError, RecursionError) as exc:  # also: huge ints, deep nesting
            raise MalformedRequestError(f"graph is not valid JSON: {exc}") from exc
        if not isinstance(spec, dict) or not isinstance(spec.get("nodes"), list):
            raise MalformedRequestError("graph must be an object with a 'nodes' list")
        if len(spec["nodes"]) > MAX_NODES:
            raise MalformedRequestError(f"graph has over {MAX_NODES} nodes")
        nodes: list[Node] = []
        seen: set[str] = set()
        for i, raw in enumerate(spec["nodes"]):
            if not isinstance(raw, dict) or not isinstance(raw.get("id"), str):
                raise MalformedRequestError(f"node {i} must be an object with a string 'id'")
            node_id = raw["id"]
            if node_id in seen:
                raise MalformedRequestError(f"node id {node_id!r} is used twice")
            args, kwargs = raw.get("args", []), raw.get("kwargs", {})
            if not isinstance(args, list) or not isinstance(kwargs, dict):
                raise MalformedRequestError(f"node {node_id!r}: args is a list, kwargs an object")
            refs = tuple(_walk_refs([args, kwargs]))
            _check_node_refs(node_id, refs, seen)
            nodes.append(Node(node_id, get_op(raw.get("op")), args, kwargs, refs))
            seen.add(node_id)
        outputs = spec.get("outputs", [nodes[-1].id] if nodes else [])
        keep = spec.get("keep", [])
        if keep is True:  # every output; a malformed outputs is reported below
            keep = list(outputs) if isinstance(outputs, list) else []
        for name, ids in (("outputs", outputs), ("keep", keep)):
            if not (isinstance(ids, list) and all(isinstance(i, str) for i in ids)):
                raise MalformedRequestError(f"graph {name!r} must be a list of node ids")
            missing = [i for i in ids if i not in seen]
            if missing:
                raise MalformedRequestError(f"graph {name!r} names unknown nodes {missing}")
        if not set(keep) <= set(outputs):
            outputs = outputs + [k for k in keep if k not in outputs]
        return cls(nodes=nodes, outputs=list(dict.fromkeys(outputs)), keep=list(keep))

    def input_names(self) -> set[str]:
        """The request-body tensor names the graph refers to."""
        return _refs_of_kind(self.nodes, "input")

    def handle_ids(self) -> set[str]:
        """The server handles the graph refers to."""
        return _refs_of_kind(self.nodes, "handle")

    def run(self, inputs: Mapping[str, torch.Tensor], handles: Mapping[str, torch.Tensor],
            ctx: OpContext) -> dict[str, torch.Tensor]:
        """Execute in order; return the output nodes' tensors.

        ``inputs`` and ``handles`` must already be on ``ctx.device``.  Values are
        dropped after their last use, so peak memory follows the live set, not the
        whole graph.  Each node must fit the allocation cap (checked on meta before
        it runs, see ``genie.op_limits``), and so must the results alive at once.
        """
        last_use: dict[str, int] = {}
        for i, node in enumerate(self.nodes):
            for ref in node.refs:
                if ref.kind == "node":
                    last_use[ref.name] = i
        wanted = set(self.outputs)
        values: dict[str, torch.Tensor] = {}
        live = _LiveBytes(inputs.values(), handles.values())

        def resolve(ref: Ref) -> torch.Tensor:
            if ref.kind == "node":
                return values[ref.name]
            source = inputs if ref.kind == "input" else handles
            return source[ref.name]

        for i, node in enumerate(self.nodes):
            args = from_wire(node.args, resolve)
            kwargs = {k: from_wire(v, resolve) for k, v in node.kwargs.items()}
            # An output is laid out whole for the reply, so a view counts in full.
            result = node.op.run(node.op.bind(args, kwargs), ctx,
                                 materialized=node.id in wanted, already=live.total)
            if not isinstance(result, torch.Tensor):
                raise InvalidArgumentError(f"node {node.id!r} ({node.op.name}) did not produce "
                                           "a tensor")
            if node.id in last_use or node.id in wanted:
                values[node.id] = result  # else nothing reads it again: free it now
                live.add(result)
                if live.total > ctx.max_alloc_bytes:
                    raise InvalidArgumentError(
                        f"graph: after node {node.id!r} ({node.op.name}) its live results "
                        f"hold {live.total} bytes, over the server's {ctx.max_alloc_bytes}-byte "
                        "allocation limit; return or keep fewer outputs, or split the graph")
            for ref in node.refs:
                if (ref.kind == "node" and last_use.get(ref.name) == i
                        and ref.name not in wanted and ref.name in values):
                    live.remove(values.pop(ref.name))  # no local name: it would pin the tensor
        return {name: values[name] for name in self.outputs}


class _LiveBytes:
    """Bytes held by a running graph's results, each storage counted once.

    Results that share storage with an input, a handle or another result (views,
    ``dropout``) add nothing; a storage leaves the count when its last result is
    dropped.  Storages are told apart by address, which cannot be reused while a
    result holding them is alive.
    """

    def __init__(self, *outside: Iterable[torch.Tensor]) -> None:
        self._outside = {t.untyped_storage().data_ptr() for ts in outside for t in ts}
        self._held: dict[int, list[int]] = {}  # address -> [bytes, results using it]
        self.total = 0

    def add(self, tensor: torch.Tensor) -> None:
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr in self._outside:
            return
        entry = self._held.get(ptr)
        if entry is None:
            self._held[ptr] = [storage.nbytes(), 1]
            self.total += storage.nbytes()
        else:
            entry[1] += 1

    def remove(self, tensor: torch.Tensor) -> None:
        ptr = tensor.untyped_storage().data_ptr()
        entry = self._held.get(ptr)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            del self._held[ptr]
            self.total -= entry[0]


def _walk_refs(value: Any) -> list[Ref]:
    found: list[Ref] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            if len(v) == 1:
                (tag, payload), = v.items()
                if tag in ("input", "handle", "node") and isinstance(payload, str):
                    found.append(Ref(tag, payload))
                    continue
            stack.extend(v.values())
    return found


def _check_node_refs(node_id: str, refs: Iterable[Ref], seen: set[str]) -> None:
    for ref in refs:
        if ref.kind == "node" and ref.name not in seen:
            raise MalformedRequestError(
                f"node {node_id!r} refers to node {ref.name!r}, which is not listed before it")


def _refs_of_kind(nodes: list[Node], kind: str) -> set[str]:
    return {r.name for n in nodes for r in n.refs if r.kind == kind}
