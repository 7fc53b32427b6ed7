"""Factory ops (genie.ops.factories): seeded draws repeat and unseeded ones do not, and
sizes are checked against the allocation cap, and for sign, from the arguments alone."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from genie.errors import InvalidArgumentError
from genie.ops import REGISTRY, OpContext


def test_seeded_factories_are_deterministic() -> None:
    for name in ("randn", "rand"):
        op = REGISTRY[name]
        a = op(op.bind((3, 4), {"seed": 123}))
        b = op(op.bind((3, 4), {"seed": 123}))
        c = op(op.bind((3, 4), {"seed": 124}))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
        # Unseeded draws come from the global generator: different each time.
        assert not torch.equal(op(op.bind((64,))), op(op.bind((64,))))


@pytest.mark.parametrize(("name", "args", "kwargs"), [
    ("zeros", (1000, 1000), {}),
    ("ones", (2000,), {"dtype": "float64"}),
    ("empty", (500, 3), {}),
    ("randn", (33, 33), {"seed": 0}),
    ("rand", (1100,), {}),
    ("full", ([1001], 0.5), {}),
    ("arange", (0, 4000), {}),
    ("eye", (40,), {}),
])
def test_factory_allocation_cap(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    op = REGISTRY[name]
    ctx = OpContext(max_alloc_bytes=4000)
    with pytest.raises(InvalidArgumentError, match="4000-byte allocation limit"):
        op(op.bind(args, kwargs), ctx)
    small = op(op.bind(args, kwargs), OpContext(max_alloc_bytes=1 << 30))
    assert small.numel() * small.element_size() > 4000


def test_factories_refuse_negative_sizes() -> None:
    for name, args in (("zeros", (2, -1)), ("eye", (3, -1)), ("full", ([-2], 1.0))):
        op = REGISTRY[name]
        with pytest.raises(InvalidArgumentError, match="non-negative"):
            op(op.bind(args), OpContext())
