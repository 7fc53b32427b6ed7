"""Which torch calls are captured as which op (genie.lazy.mapping): models and random
chains of captured calls give eager PyTorch's numbers in one request, the documented
calls are covered, an unsupported call is refused at capture naming it, and the opt-in
local fallback runs it locally (logged once) with eager's in-place and view semantics."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

import genie
from genie.lazy.mapping import supported_functions


def test_three_layer_mlp_matches_eager_in_one_request(client: genie.Client, graph_requests: Callable[[], int],
                                                      randn: Callable[..., torch.Tensor]) -> None:
    x = randn(16, 32)
    ws = [randn(64, 32, seed=1), randn(64, 64, seed=2), randn(10, 64, seed=3)]
    bs = [randn(64, seed=4), randn(64, seed=5), randn(10, seed=6)]

    def mlp(h: torch.Tensor) -> torch.Tensor:
        h = F.relu(F.linear(h, ws[0], bs[0]))
        h = torch.tanh(h @ ws[1].T + bs[1])
        return F.linear(h, ws[2], bs[2]).softmax(dim=-1)

    out = mlp(genie.remote(x))
    assert out.shape == (16, 10) and graph_requests() == 0
    assert_close(genie.materialize(out), mlp(x))
    assert graph_requests() == 1


def _attention_block(x: torch.Tensor, p: dict[str, torch.Tensor], heads: int,
                     use_sdpa: bool) -> torch.Tensor:
    b, t, d = x.shape
    h = F.layer_norm(x, (d,), p["ln_w"], p["ln_b"])
    q, k, v = (F.linear(h, p[f"w{n}"], p[f"b{n}"]).reshape(b, t, heads, d // heads)
               .transpose(1, 2) for n in "qkv")
    if use_sdpa:
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        scores = q @ k.transpose(-2, -1) / (d // heads) ** 0.5
        mask = torch.ones(t, t, dtype=torch.bool).triu(1)
        a = scores.masked_fill(mask, float("-inf")).softmax(-1) @ v
    a = a.transpose(1, 2).reshape(b, t, d)
    return x + F.linear(a, p["wo"], p["bo"])


@pytest.mark.parametrize("use_sdpa", [True, False], ids=["sdpa", "softmax_qk_v"])
def test_transformer_attention_block_matches_eager(client: genie.Client, graph_requests: Callable[[], int],
                                                   use_sdpa: bool,
                                                   randn: Callable[..., torch.Tensor]) -> None:
    d, heads = 32, 4
    p = {f"w{n}": randn(d, d, seed=i) * 0.2 for i, n in enumerate("qkvo")}
    p |= {f"b{n}": randn(d, seed=10 + i) for i, n in enumerate("qkvo")}
    p |= {"ln_w": randn(d, seed=20), "ln_b": randn(d, seed=21)}
    x = randn(2, 6, d, seed=30)
    out = _attention_block(genie.remote(x), p, heads, use_sdpa)
    assert out.shape == (2, 6, d)
    assert_close(genie.materialize(out), _attention_block(x, p, heads, use_sdpa))
    assert graph_requests() == 1


def test_conv2d_and_pooling_block_matches_eager(client: genie.Client,
                                                randn: Callable[..., torch.Tensor]) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 4, 3, stride=2), nn.AvgPool2d(2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    x = randn(2, 3, 16, 16)
    expected = net(x).detach()
    with torch.no_grad():  # the parameters require grad: autograd is local-only
        out = net(genie.remote(x))
    assert out.shape == (2, 2)
    assert_close(out.materialize(), expected)


_CHAIN_OPS: list[Callable[[Any], Any]] = [
    torch.relu, torch.sigmoid, torch.tanh, lambda t: t * 2.5, lambda t: 1 - t,
    lambda t: t - t.mean(dim=-1, keepdim=True), lambda t: t.transpose(0, 1),
    lambda t: t.exp().clamp(max=10.0), lambda t: t.abs().sqrt(), lambda t: t.softmax(-1),
    lambda t: t @ t.T / 4, lambda t: t / (t.norm(dim=0) + 1), lambda t: t.flip(0),
    lambda t: torch.cat([t[:, 2:], t[:, :2]], dim=1), lambda t: F.layer_norm(t, (4,)),
]


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.integers(0, len(_CHAIN_OPS) - 1), min_size=1, max_size=12),
       st.integers(0, 2**16))
def test_random_op_chains_match_eager(client: genie.Client, randn: Callable[..., torch.Tensor],
                                      chain: list[int], seed: int) -> None:
    x = randn(4, 4, seed=seed)
    lazy, eager = genie.remote(x), x
    for i in chain:
        lazy, eager = _CHAIN_OPS[i](lazy), _CHAIN_OPS[i](eager)
    before = client.requests
    assert_close(genie.materialize(lazy), eager)
    assert client.requests == before + 1


def test_supported_functions_cover_the_documented_calls() -> None:
    names = set(supported_functions())
    for expected in ("torch.relu", "torch.Tensor.relu", "torch.nn.functional.relu",
                     "torch.Tensor.__add__", "torch.Tensor.__radd__", "torch.Tensor.__matmul__",
                     "torch.Tensor.__getitem__", "torch.cat", "torch.nn.functional.linear",
                     "torch.nn.functional.layer_norm",
                     "torch.nn.functional.scaled_dot_product_attention",
                     "torch.nn.functional.conv2d", "torch.nn.functional.max_pool2d",
                     "torch.Tensor.sum", "torch.Tensor.mean", "torch.Tensor.float",
                     "torch.Tensor.to", "torch.Tensor.bfloat16", "torch.Tensor.add_",
                     "torch.Tensor.relu_", "torch.Tensor.mul_"):
        assert expected in names, expected


def test_unsupported_op_raises_at_capture_naming_it(client: genie.Client, graph_requests: Callable[[], int],
                                                    randn: Callable[..., torch.Tensor]) -> None:
    x = genie.remote(randn(4))
    with pytest.raises(genie.UnsupportedOpError, match=r"torch\.sort"):
        torch.sort(x)
    with pytest.raises(genie.UnsupportedOpError, match=r"torch\.Tensor\.nonzero.*aten\.nonzero"):
        x.nonzero()  # decomposed: the aten op it reaches is named too
    with pytest.raises(genie.InvalidArgumentError, match="dropout_p.*only 0.0"):
        F.scaled_dot_product_attention(x[None, None, None], x[None, None, None],
                                       x[None, None, None], dropout_p=0.5)
    assert graph_requests() == 0


def test_local_fallback_is_opt_in_and_logged_once(client: genie.Client, caplog: pytest.LogCaptureFixture,
                                                  randn: Callable[..., torch.Tensor]) -> None:
    x = randn(6)
    with caplog.at_level(logging.WARNING, logger="genie.lazy"), genie.capture(fallback="local"):
        r = genie.remote(x)
        s1 = torch.sort(r).values * 2
        s2 = torch.sort(r + 1).values
    assert isinstance(s1, genie.LazyTensor)
    assert_close(s1.materialize(), torch.sort(x).values * 2)
    assert_close(genie.materialize(s2), torch.sort(x + 1).values)
    assert sum("torch.sort" in rec.getMessage() for rec in caplog.records) == 1
    with pytest.raises(genie.UnsupportedOpError):  # the opt-in ended with the block
        torch.sort(r)
    with pytest.raises(genie.ConfigurationError):
        genie.capture(fallback="silently")


def test_local_fallback_keeps_in_place_and_view_semantics(client: genie.Client) -> None:
    """A function run locally works on copies: an in-place one rebinds the tensor it
    changed (never the user's input or the cache), a view it returns is tracked."""
    t = torch.zeros(3, 3)
    eager = t.clone()
    with genie.capture(fallback="local"):
        x = genie.remote(t)
        assert x.fill_diagonal_(5) is x
        eager.fill_diagonal_(5)
        assert x.tolist() == eager.tolist() and t.tolist() == [[0.0] * 3] * 3
        d = x.diagonal()
        assert d.tolist() == eager.diagonal().tolist()
        with pytest.raises(genie.UnsupportedOpError, match="view"):
            x.add_(1)  # eager would change d too
        alias = x.detach()
        with pytest.raises(genie.UnsupportedOpError, match="alias"):
            x.fill_diagonal_(0)
        assert x.tolist() == eager.tolist() == alias.tolist()
        del d, alias
        x.add_(1)
        eager.add_(1)
    assert_close(x.materialize(), eager)
