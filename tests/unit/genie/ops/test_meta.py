"""Meta inference and the allocation cap (genie.ops.meta): the result inferred on meta
before an op runs is the real one for every op in the table, a cap one byte below it
refuses the op, and arguments too large to make a cache key are inferred uncached
(seen through LazyTensor, whose session owns a cache)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch

import genie
from genie.errors import InvalidArgumentError
from genie.lazy.session import SESSION
from genie.ops import REGISTRY, MetaFailure, OpContext, infer
from genie.ops.meta import check_output


def test_allocation_cap_sees_the_real_result_size(name: str, op_case: Any,
                                                  run_op: Callable[..., torch.Tensor]) -> None:
    # The cap judges every op by its result inferred on meta before it runs: that
    # inference must give the real shape and dtype (or admit it cannot tell), and a
    # cap one byte below the real size plus the working memory estimated for it
    # (genie.ops.work) must refuse the op while the exact sum passes.
    op = REGISTRY[name]
    bound = op.bind(op_case.args, op_case.kwargs)
    real = op(bound, OpContext())
    size = infer(op, bound, None)
    if isinstance(size, MetaFailure):  # data-dependent (boolean-mask indexing): measured after the run
        return
    assert (size.shape, size.dtype) == (tuple(real.shape), real.dtype)
    nbytes = real.numel() * real.element_size()
    assert size.nbytes == nbytes
    need = nbytes + size.working
    assert check_output(op, bound, OpContext(max_alloc_bytes=need), None, materialized=True) == size
    if need:
        with pytest.raises(InvalidArgumentError, match="allocation limit"):
            run_op(op, bound, limit=need - 1)


def test_meta_inference_of_arguments_too_large_for_a_key_caches_nothing() -> None:
    """Arguments too large to make a key (300 tensors to cat are data, not a key) are
    inferred uncached: no entry that would hold them, and none that could be hit."""
    parts = [genie.remote(torch.ones(2, 3)) for _ in range(300)]
    before = len(SESSION.meta)
    for _ in range(3):
        out = torch.cat(parts)
        assert out.shape == (600, 3) and out.dtype == torch.float32
    assert len(SESSION.meta) == before
    small = torch.cat(parts[:2])  # a small argument list is a key: cached once
    assert small.shape == (4, 3) and len(SESSION.meta) == before + 1
