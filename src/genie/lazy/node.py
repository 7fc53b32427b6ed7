"""A node of the client-side graph that LazyTensors record: one captured op, or a leaf."""

from __future__ import annotations

import weakref
from collections.abc import Sequence
from typing import Any

import torch

from genie.client import Client, RemoteTensor
from genie.ops import Op

__all__ = ["LazyNode", "contiguous_strides"]


class LazyNode:
    """One captured op, or a leaf: a local value (sent inline) or a server handle.

    ``kwargs`` holds the op's bound arguments with tensors replaced by their nodes;
    ``deps`` lists those nodes for the walk.  Once materialized, ``value``/``handle``
    is set and ``kwargs``/``deps`` are dropped: the node is a leaf from then on, and
    its history can be freed.  ``client`` is where it ran or was made to run.
    ``resident``: a local value moved to the device (``t.to(remote)``), which the
    first graph that sends it keeps on the server, so later graphs send its handle.
    """

    __slots__ = ("__weakref__", "client", "deps", "handle", "kwargs", "op", "releaser",
                 "resident", "value")

    def __init__(self, op: Op | None, kwargs: dict[str, Any] | None,
                 deps: tuple[LazyNode, ...], value: torch.Tensor | None = None,
                 handle: RemoteTensor | None = None, client: Client | None = None,
                 resident: bool = False) -> None:
        self.op = op
        self.kwargs = kwargs
        self.deps = deps
        self.value = value
        self.handle = handle
        self.client = client
        self.resident = resident
        #: Queues ``handle`` for release when the node is collected (resident leaves).
        self.releaser: weakref.finalize | None = None

    @property
    def is_leaf(self) -> bool:
        return self.value is not None or self.handle is not None


def contiguous_strides(shape: Sequence[int]) -> tuple[int, ...]:
    """The strides of a contiguous tensor of ``shape``."""
    strides = []
    acc = 1
    for d in reversed(shape):
        strides.append(acc)
        acc *= max(d, 1)
    return tuple(reversed(strides))
