"""Running ops and graphs (genie.server.executor): an op writes over its input only
when asked to."""

from __future__ import annotations

from collections.abc import Callable

import torch

from genie.ops import REGISTRY


def test_without_reuse_input_the_input_is_never_written(
        run_op: Callable[..., torch.Tensor]) -> None:
    x = torch.randn(5)
    before = x.clone()
    out = run_op(REGISTRY["relu"], REGISTRY["relu"].bind((x,)))
    assert torch.equal(x, before) and torch.equal(out, torch.relu(before))
