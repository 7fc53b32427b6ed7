"""The torch calls that are not one op (genie.lazy.handlers) match eager PyTorch:
reflected operators, indexing with slices, lists and masks, chunk/split/unbind,
reductions with dims (max/min values and indices), dtype casts, copy_ into a
LazyTensor, new_zeros and friends, and the calls that need a value (item, bool,
tolist, numpy, repr, format), which materialize."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

import genie


def test_broadcasting_and_reflected_operators(client: genie.Client,
                                              randn: Callable[..., torch.Tensor]) -> None:
    a, b, c = randn(4, 1, 3), randn(2, 3, seed=1), randn(3, seed=2)

    def f(a: Any, b: Any, c: Any) -> tuple[Any, ...]:
        return (a + b, a * c - b, 1 - a, 2 / (b.abs() + 1), 2 ** b, a @ b.T,
                torch.maximum(a, c), (a > b) & (b < 0.5), torch.where(a > 0, a, b))

    lazy = f(genie.remote(a), genie.remote(b), c)  # c stays local: it travels inline
    expected = f(a, b, c)
    got = genie.materialize(*lazy)
    for g, e in zip(got, expected, strict=True):
        assert_close(g, e)


def test_slicing_and_indexing_match_eager(client: genie.Client, randn: Callable[..., torch.Tensor]) -> None:
    x = randn(4, 5, 6)
    idx = torch.tensor([3, 0, 2])

    def f(t: Any) -> tuple[Any, ...]:
        return (t[1:, ::2], t[..., 0], t[None, 2], t[idx], t[[0, 3]], t[:, -1, 1:4],
                t[t > 1.0], t.narrow(2, 1, 3), t.select(1, 2), t.chunk(3, dim=-1)[2],
                t.split([2, 3], dim=1)[1], t.unbind(0)[3], t[0].T, t.flatten(1), t.permute(2, 0, 1),
                t[:, 0].mT)

    got = genie.materialize(*f(genie.remote(x)))
    for g, e in zip(got, f(x), strict=True):
        assert_close(g, e)


def test_reductions_with_dims_match_eager(client: genie.Client, randn: Callable[..., torch.Tensor]) -> None:
    x = randn(3, 4, 5)

    def f(t: Any) -> tuple[Any, ...]:
        mx = t.max(dim=1)
        return (t.sum(), t.sum(dim=(0, 2)), t.mean(-1, keepdim=True), mx.values, mx.indices,
                torch.min(t, 2).values, t.amax(dim=(1, 2)), t.argmax(dim=0), t.var(dim=1),
                t.std(dim=-1, keepdim=True), t.logsumexp(dim=2), t.norm(dim=1), t.prod(dim=2),
                t.cumsum(dim=1), (t > 0).any(dim=1), (t > -5).all(), torch.softmax(t, dim=0))

    got = genie.materialize(*f(genie.remote(x)))
    for g, e in zip(got, f(x), strict=True):
        assert_close(g, e)


def test_dtype_casts_including_bfloat16(client: genie.Client, randn: Callable[..., torch.Tensor]) -> None:
    x, w = randn(8, 16), randn(16, 4, seed=1)

    def f(t: Any) -> tuple[Any, ...]:
        h = t.bfloat16() @ w.to(torch.bfloat16)
        return (h, h.float() * 3, t.to(torch.float16), t.double().sum(), (t * 10).long(),
                (t > 0).int(), t.to(dtype=torch.bfloat16).type_as(t), t.half().float())

    got = genie.materialize(*f(genie.remote(x)))
    for g, e in zip(got, f(x), strict=True):
        assert g.dtype == e.dtype
        assert_close(g, e)
    assert genie.remote(randn(2)).bfloat16().dtype == torch.bfloat16


def test_copy_into_a_lazy_tensor_changes_it(client: genie.Client) -> None:
    dst, eager = genie.remote(torch.zeros(2, 3)), torch.zeros(2, 3)
    src = torch.arange(3)  # broadcast, and cast from int64 to float32
    assert dst.copy_(src) is dst
    eager.copy_(src)
    assert dst.dtype == torch.float32
    assert_close(dst.materialize(), eager)


def test_common_idioms_match_eager(client: genie.Client, randn: Callable[..., torch.Tensor]) -> None:
    torch.manual_seed(0)
    emb, ln = nn.Embedding(10, 4), nn.LayerNorm(4)
    ids, x = torch.tensor([[1, 7, 3]]), randn(3, 4)

    def f(t: Any, tokens: Any) -> tuple[Any, ...]:
        h = ln(emb(tokens)) + t
        rows = [r.sum() for r in t]  # iteration unbinds
        return (nn.Softmax(dim=-1)(h), torch.einsum("bij,kj->bik", h, t), torch.stack(rows),
                torch.cat([t, torch.ones(1, 4)]), t.new_zeros(2, 2), t.new_full((3,), 2.5),
                copy.deepcopy(t) * 2, t.type(torch.float64), nn.Dropout(0.3).eval()(t),
                F.gelu(t, approximate="tanh"), t.where(t > 0, 0.0), x.masked_fill(t > 0.5, -1))

    with torch.no_grad():  # the modules' parameters require grad: autograd is local-only
        got = genie.materialize(*f(genie.remote(x), genie.remote(ids)))
        for g, e in zip(got, f(x, ids), strict=True):
            assert_close(g, e)


def test_implicit_materialization(client: genie.Client,
                                  graph_requests: Callable[[], int]) -> None:
    x = torch.tensor([[1.5, -2.0], [3.0, 4.0]])
    t = genie.remote(x) * 2
    assert t.sum().item() == pytest.approx(13.0)
    assert bool(t.max() > 7) is True
    if (t < -10).any():
        pytest.fail("an if on a LazyTensor must see the real value")
    assert t.tolist() == (x * 2).tolist()
    assert (t.numpy() == (x * 2).numpy()).all()
    assert_close(t.cpu(), x * 2)
    assert_close(t.to("cpu"), x * 2)
    assert float(t[0, 0]) == 3.0 and int(t[1, 1]) == 8
    assert "8." in repr(t) and "remote_accelerator" in repr(t)
    assert f"{t[1, 0]:.1f}" == "6.0"


def test_calls_libraries_make_match_eager(client: genie.Client,
                                          randn: Callable[..., torch.Tensor]) -> None:
    """The calls HF transformers and torch.nn make that used to be refused."""
    x = randn(2, 3)
    q, k, v = randn(1, 4, 3, 8, seed=1), randn(1, 2, 3, 8, seed=2), randn(1, 2, 3, 8, seed=3)

    def f(t: Any, q: Any, k: Any, v: Any) -> tuple[Any, ...]:
        u = t.clone()
        u[0, 1:] = 9.0
        u[:, 0] = t[:, 1]
        u[t > 0.5] = -1.0
        return (t.new_ones(()), t.new_zeros(()), t.new_full((), 2.0) + t,
                F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True),
                torch.isin(t.argmax(dim=1), torch.tensor([0, 2])),
                t.t().clone(memory_format=torch.contiguous_format),
                torch.clone(t, memory_format=torch.preserve_format), torch.empty_like(t) * 0, u)

    with torch.no_grad():
        got = genie.materialize(*f(genie.remote(x), genie.remote(q), genie.remote(k),
                                   genie.remote(v)))
    for g, e in zip(got, f(x, q, k, v), strict=True):
        assert g.shape == e.shape and g.dtype == e.dtype
        assert_close(g, e)
    r = genie.remote(x)
    assert (float(x[1, 2]) in r) and (123.0 not in r)  # Tensor.__contains__
    assert r.t().clone(memory_format=torch.contiguous_format).is_contiguous()
    like = torch.randn_like(r), torch.rand_like(r, dtype=torch.float64)
    assert like[0].shape == (2, 3) and like[1].dtype == torch.float64
    assert float(like[1].min()) >= 0.0 and float(like[1].max()) < 1.0
