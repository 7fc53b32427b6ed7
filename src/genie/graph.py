"""The captured-graph wire format shared by ``POST /graph``, the client and LazyTensor.

A graph is JSON carried in the safetensors body's metadata under ``genie.graph``;
the body's tensors are its inline inputs::

    {"nodes": [{"id": "a", "op": "relu", "args": [{"input": "x"}]},
               {"id": "b", "op": "add", "args": [{"node": "a"}, {"handle": "h1"}],
                "kwargs": {"alpha": 2}}],
     "outputs": ["b"],          # node ids to hand back
     "keep": [],                # of those, ids to keep on the server as handles
     "release": ["9f1c..."]}    # handles to free once the graph has run

Argument values are JSON, with tagged objects for what JSON lacks:
``{"input": NAME}`` a tensor of the request body, ``{"handle": ID}`` a tensor held
on the server, ``{"node": ID}`` an earlier node's result, ``{"dtype": "float32"}``,
``{"slice": [start, stop, step]}`` and ``{"ellipsis": true}``.  A node can refer only
to nodes listed before it, so a graph is a DAG by construction and runs in list
order.  How the server parses and runs one is ``genie.server.executor``.

``"release"`` lists handles to free *after* the graph ran and its reply was laid
out: a decode step reads last step's KV cache, keeps the new one and frees the old
in one request.  A graph that fails frees nothing, so the step can be retried.  Ids
that are not held are reported missing, not refused: a release is idempotent.  The
reply says what was freed under ``genie.released``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from genie.errors import InvalidArgumentError, MalformedRequestError
from genie.wire import dtype_from_name, dtype_name

__all__ = ["GRAPH_METADATA_KEY", "HANDLES_METADATA_KEY", "MAX_ARG_DEPTH", "MAX_RELEASE",
           "REF_KINDS", "RELEASED_METADATA_KEY", "Ref", "from_wire", "handle_ids", "refs_in",
           "to_wire"]

#: The safetensors metadata key holding the graph JSON.
GRAPH_METADATA_KEY = "genie.graph"
#: The metadata key a /graph reply uses to describe kept handles.
HANDLES_METADATA_KEY = "genie.handles"
#: The metadata key a /graph reply uses to say which ``"release"`` handles it freed.
RELEASED_METADATA_KEY = "genie.released"
#: The most handle ids one release (a graph's ``"release"``, ``POST /tensors/release``)
#: may name.
MAX_RELEASE = 100_000
#: The tags that refer to a tensor.
REF_KINDS = ("input", "handle", "node")
#: How deep argument values may nest (lists, tagged objects); the ops need three or so.
MAX_ARG_DEPTH = 32


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


def from_wire(value: Any, resolve: Callable[[Ref], Any], depth: int = 0) -> Any:
    """Decode graph JSON into Python values; tensor references go through ``resolve``.

    Nesting is bounded (``MAX_ARG_DEPTH``): no op takes arguments nested more than a
    few levels, and every later step (checkers, meta inference, error messages) walks
    the value recursively, so a sender's 500-deep list must stop here, as a 400.
    """
    if depth > MAX_ARG_DEPTH:
        raise MalformedRequestError(f"an argument value nests lists or tagged objects more "
                                    f"than {MAX_ARG_DEPTH} levels deep")
    if isinstance(value, list):
        return [from_wire(v, resolve, depth + 1) for v in value]
    if isinstance(value, dict):
        if len(value) != 1:
            raise MalformedRequestError(f"a tagged argument has exactly one key, got {value!r}")
        (tag, payload), = value.items()
        if tag in REF_KINDS:
            if not isinstance(payload, str):
                raise MalformedRequestError(f"{{{tag!r}: ...}} takes a string, got {payload!r}")
            return resolve(Ref(tag, payload))
        if tag == "dtype":
            return dtype_from_name(payload)
        if tag == "slice":
            if not (isinstance(payload, list) and len(payload) == 3):
                raise MalformedRequestError("{'slice': [start, stop, step]} takes three values")
            return slice(*(from_wire(p, resolve, depth + 1) for p in payload))
        if tag == "ellipsis":
            return Ellipsis
        raise MalformedRequestError(f"unknown argument tag {tag!r}")
    return value


def refs_in(value: Any) -> list[Ref]:
    """Every tensor reference in a wire value, found without recursion (nesting depth
    is the sender's choice)."""
    found: list[Ref] = []
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            if len(v) == 1:
                (tag, payload), = v.items()
                if tag in REF_KINDS and isinstance(payload, str):
                    found.append(Ref(tag, payload))
                    continue
            stack.extend(v.values())
    return found


def handle_ids(value: Any, where: str) -> list[str]:
    """``value`` checked as a list of handle ids to release (at most ``MAX_RELEASE``)."""
    if not (isinstance(value, list) and all(isinstance(i, str) for i in value)):
        raise MalformedRequestError(f"{where} must be a list of handle id strings")
    if len(value) > MAX_RELEASE:
        raise MalformedRequestError(f"{where} names {len(value)} handles; at most "
                                    f"{MAX_RELEASE} per request")
    return value
