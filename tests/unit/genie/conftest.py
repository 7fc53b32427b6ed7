"""Fixtures that tests of more than one genie package use."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

from genie.ops import MetaCache, Op
from genie.server.executor import Executor


@pytest.fixture
def x() -> torch.Tensor:
    """A small float tensor with negatives, so that ``relu`` of it means something."""
    return torch.tensor([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]])


@pytest.fixture
def run_op() -> Callable[..., torch.Tensor]:
    """``run_op(op, bound, limit=..., reuse_input=False)``: ``op`` run as the server runs
    it (``Executor.run_op``), within an allocation cap of ``limit`` bytes."""
    def run(op: Op, bound: dict[str, Any], *, limit: int = 1 << 34,
            reuse_input: bool = False) -> torch.Tensor:
        executor = Executor(torch.device("cpu"), max_alloc_bytes=limit, compute_threads=1,
                            max_inflight=1)
        return executor.run_op(op, bound, cache=MetaCache(), reuse_input=reuse_input)
    return run

