"""Decomposition (genie.lazy.aten): a torch function with no handler runs down to aten
ops that are captured as registry ops, so Python functions and C++ composites work
without handlers of their own; in-place aten ops rebind, including the ones that
change a tensor's shape; what still cannot be captured names the aten op; and
``fallback="local"`` also covers arguments a handler refuses."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import genie


def test_python_functions_and_cpp_composites_decompose(
        client: genie.Client, graph_requests: Callable[[], int],
        randn: Callable[..., torch.Tensor]) -> None:
    x = randn(3, 4)

    def f(t: Any) -> tuple[Any, ...]:
        return (torch.kron(t[:2, :2], t[:2, :2]), F.cosine_similarity(t, t.flip(0)),
                torch.diff(t, dim=1), F.pairwise_distance(t, t * 2), F.softmin(t, dim=1),
                F.local_response_norm(t[None], 2), t.swapaxes(0, 1), torch.movedim(t, 0, 1),
                F.triplet_margin_loss(t, t * 2, t * 3), F.l1_loss(t, t * 2),
                torch.tensordot(t, t, dims=([1], [1])), torch.hstack([t, t]),
                torch.atleast_3d(t), torch.inner(t, t))

    got = genie.materialize(*f(genie.remote(x)))
    assert graph_requests() == 1
    for g, e in zip(got, f(x), strict=True):
        assert_close(g, e)


def test_inplace_aten_ops_rebind_even_when_they_reshape(client: genie.Client) -> None:
    t = torch.arange(6.0).reshape(2, 3)
    r = genie.remote(t)
    r.transpose_(0, 1)
    r.unsqueeze_(0)
    assert r.shape == (1, 3, 2)
    r.squeeze_(0)
    r.t_()
    r.clamp_min_(1.0)
    assert r.shape == (2, 3)
    assert r.tolist() == t.clamp_min(1.0).tolist()


def test_what_cannot_be_captured_names_the_aten_op(client: genie.Client,
                                                   graph_requests: Callable[[], int]) -> None:
    x = genie.remote(torch.tensor([3.0, 1.0, 2.0]))
    with pytest.raises(genie.UnsupportedOpError,
                       match=r"torch\.topk.*aten\.topk.*fallback='local'"):
        torch.topk(x, 2)
    assert graph_requests() == 0


def test_local_fallback_covers_refused_arguments(client: genie.Client,
                                                 caplog: pytest.LogCaptureFixture,
                                                 randn: Callable[..., torch.Tensor]) -> None:
    """A handled function whose arguments are refused (here avg_pool2d's
    divisor_override) runs locally under fallback='local', and raises without it."""
    img = randn(1, 2, 4, 4)
    with pytest.raises(genie.UnsupportedOpError, match="divisor_override"):
        F.avg_pool2d(genie.remote(img), 2, divisor_override=3)
    with caplog.at_level(logging.WARNING, logger="genie.lazy"), genie.capture(fallback="local"):
        got = F.avg_pool2d(genie.remote(img), 2, divisor_override=3) + 1
    assert_close(got.materialize(), F.avg_pool2d(img, 2, divisor_override=3) + 1)
    assert any("avg_pool2d" in rec.getMessage() for rec in caplog.records)
