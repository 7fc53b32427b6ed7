"""Factory ops: tensors made from arguments alone, on the server device, within its cap.

Factories are the ops whose output size comes from arguments alone (``zeros``,
``randn``, ``arange``...), so their size is checked against the cap from those
arguments before torch is called, with the bounded arithmetic of
``genie.ops.meta``.  Random factories take an optional ``seed`` so that a client
can reproduce a draw; without one they use the server's global generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from genie.errors import InvalidArgumentError
from genie.ops.meta import check_alloc
from genie.ops.registry import OpContext

__all__ = ["arange", "eye", "filled", "full", "random"]

Factory = Callable[..., torch.Tensor]


def _generator(seed: int | None, device: torch.device) -> torch.Generator | None:
    if seed is None:
        return None
    return torch.Generator(device=device).manual_seed(seed)


def random(kind: Factory) -> Factory:
    """``randn``/``rand``: ``size``, an optional ``seed``, an optional ``dtype``."""
    def make(size: list[int], seed: int | None, dtype: torch.dtype | None,
             ctx: OpContext) -> torch.Tensor:
        check_alloc(size, dtype, ctx)
        return kind(size, generator=_generator(seed, ctx.device), dtype=dtype,
                    device=ctx.device)
    return make


def filled(kind: Factory) -> Factory:
    """``zeros``/``ones``: ``size`` and an optional ``dtype``."""
    def make(size: list[int], dtype: torch.dtype | None, ctx: OpContext) -> torch.Tensor:
        check_alloc(size, dtype, ctx)
        return kind(size, dtype=dtype, device=ctx.device)
    return make


def full(size: list[int], fill_value: Any, dtype: torch.dtype | None,
         ctx: OpContext) -> torch.Tensor:
    check_alloc(size, dtype, ctx)
    return torch.full(size, fill_value, dtype=dtype, device=ctx.device)


def arange(start: Any, end: Any, step: Any, dtype: torch.dtype | None,
           ctx: OpContext) -> torch.Tensor:
    if end is None:
        start, end = 0, start
    if step == 0:
        raise InvalidArgumentError("arange: step must be non-zero")
    # Float division: huge ints raise OverflowError (a 422), never big-int work.
    count = max(0, math.ceil((end - start) / step))
    check_alloc([min(count, (1 << 63) - 1)], dtype, ctx)
    return torch.arange(start, end, step, dtype=dtype, device=ctx.device)


def eye(n: int, m: int | None, dtype: torch.dtype | None, ctx: OpContext) -> torch.Tensor:
    check_alloc([n, n if m is None else m], dtype, ctx)
    return torch.eye(n, n if m is None else m, dtype=dtype, device=ctx.device)
