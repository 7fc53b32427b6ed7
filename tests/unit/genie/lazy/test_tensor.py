"""LazyTensor: captured PyTorch code gives eager PyTorch's numbers, in one request.

Every test runs against a real server (``BackgroundServer`` on 127.0.0.1, CPU
device) and compares with the same code run eagerly on local tensors.  Request
counts come from the server's own ``/stats`` (``POST /graph`` count), bytes from
the client's counters.
"""

from __future__ import annotations

import copy
import gc
import logging
import subprocess
import sys
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch.testing import assert_close

import genie
from genie.lazy.mapping import supported_functions
from genie.lazy.run import build_graph
from genie.lazy.session import SESSION
from genie.server.config import ServerConfig
from genie.server.runner import BackgroundServer


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    with BackgroundServer(ServerConfig(device="cpu")) as srv:
        yield srv


@pytest.fixture
def client(server: BackgroundServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[genie.Client]:
    """The default LazyTensor client for the test (``genie.connect``), env unset."""
    monkeypatch.delenv("GENIE_SERVER_URL", raising=False)
    c = genie.connect(server.url, retries=0)
    yield c
    genie.disconnect()


@pytest.fixture
def graph_requests(server: BackgroundServer) -> Iterator[Callable[[], int]]:
    """``POST /graph`` requests the server has counted since the test started."""
    with genie.Client(server.url, retries=0) as probe:
        def count() -> int:
            ep = probe.stats()["endpoints"].get("POST /graph", {})
            return int(ep.get("count", 0))
        start = count()
        yield lambda: count() - start


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=_gen(seed))


# --- metadata and capture ---

def test_metadata_answers_without_any_request(client: genie.Client) -> None:
    x = genie.remote(randn(4, 8))
    y = (x @ randn(8, 3, seed=1)).relu().unsqueeze(0).to(torch.bfloat16)
    assert isinstance(y, genie.LazyTensor) and isinstance(y, torch.Tensor)
    assert y.shape == (1, 4, 3) and y.dim() == 3 and y.size(-1) == 3 and y.numel() == 12
    assert y.dtype == torch.bfloat16
    assert str(y.device) == "remote_accelerator:0" and y.device == genie.REMOTE_DEVICE
    assert client.requests == 0


def test_shape_error_is_raised_at_the_line_that_made_it(client: genie.Client) -> None:
    a = genie.remote(randn(3, 4))
    with pytest.raises(genie.InvalidArgumentError, match=r"matmul.*\[3, 4\].*\[5, 6\]"):
        a @ randn(5, 6)
    with pytest.raises(genie.InvalidArgumentError, match=r"reshape.*\[5, 5\]"):
        a.reshape(5, 5)
    assert client.requests == 0


# --- correctness against eager PyTorch ---

def test_three_layer_mlp_matches_eager_in_one_request(
        client: genie.Client, graph_requests: Callable[[], int]) -> None:
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
def test_transformer_attention_block_matches_eager(
        client: genie.Client, graph_requests: Callable[[], int], use_sdpa: bool) -> None:
    d, heads = 32, 4
    p = {f"w{n}": randn(d, d, seed=i) * 0.2 for i, n in enumerate("qkvo")}
    p |= {f"b{n}": randn(d, seed=10 + i) for i, n in enumerate("qkvo")}
    p |= {"ln_w": randn(d, seed=20), "ln_b": randn(d, seed=21)}
    x = randn(2, 6, d, seed=30)
    out = _attention_block(genie.remote(x), p, heads, use_sdpa)
    assert out.shape == (2, 6, d)
    assert_close(genie.materialize(out), _attention_block(x, p, heads, use_sdpa))
    assert graph_requests() == 1


def test_conv2d_and_pooling_block_matches_eager(client: genie.Client) -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                        nn.Conv2d(8, 4, 3, stride=2), nn.AvgPool2d(2),
                        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()
    x = randn(2, 3, 16, 16)
    expected = net(x).detach()
    out = net(genie.remote(x))
    assert out.shape == (2, 2)
    assert_close(out.materialize(), expected)


def test_broadcasting_and_reflected_operators(client: genie.Client) -> None:
    a, b, c = randn(4, 1, 3), randn(2, 3, seed=1), randn(3, seed=2)

    def f(a: Any, b: Any, c: Any) -> tuple[Any, ...]:
        return (a + b, a * c - b, 1 - a, 2 / (b.abs() + 1), 2 ** b, a @ b.T,
                torch.maximum(a, c), (a > b) & (b < 0.5), torch.where(a > 0, a, b))

    lazy = f(genie.remote(a), genie.remote(b), c)  # c stays local: it travels inline
    expected = f(a, b, c)
    got = genie.materialize(*lazy)
    for g, e in zip(got, expected, strict=True):
        assert_close(g, e)


def test_inplace_forms_rebind_the_tensor(client: genie.Client) -> None:
    def f(x: Any, y: Any) -> Any:
        x = x.clone()
        x.add_(y)
        x.mul_(2)
        x += 1
        x.relu_()
        F.relu(x, inplace=True)
        x.clamp_(max=5.0)
        x.masked_fill_(x > 4.5, 0.0)
        x.sub_(y, alpha=0.5)
        return x

    x, y = randn(3, 4), randn(4, seed=1)
    rx = genie.remote(x)
    same = rx
    out = f(rx, y)
    assert_close(out.materialize(), f(x, y))
    assert same is rx  # clone() made a new tensor; rx itself is untouched
    assert_close(rx.materialize(), x)

    z = genie.remote(torch.zeros(2, 3))
    alias = z
    z.add_(1.5)
    assert alias is z and z.tolist() == [[1.5] * 3] * 2
    ints = genie.remote(torch.arange(3))
    with pytest.raises(genie.InvalidArgumentError, match="can't be cast"):
        ints.add_(0.5)
    with pytest.raises(genie.InvalidArgumentError, match="broadcast shape"):
        genie.remote(torch.zeros(3)).add_(torch.ones(2, 3))


def test_inplace_on_a_live_view_is_refused(client: genie.Client) -> None:
    base = genie.remote(torch.zeros(3, 4))
    row = base[0]
    with pytest.raises(genie.UnsupportedOpError, match="view"):
        row.add_(1)
    t = genie.remote(torch.ones(2, 3)).reshape(6)  # its base is gone: nothing to go stale
    t.mul_(3)
    assert t.tolist() == [3.0] * 6


def test_views_and_aliases_never_go_stale(client: genie.Client) -> None:
    """An in-place op on a tensor that shares data with a live view or alias is refused
    (eager would change both); once nothing shares it, the op runs and matches eager."""
    eager = torch.zeros(3)
    b = genie.remote(eager.clone())
    v = b[0:2]
    with pytest.raises(genie.UnsupportedOpError, match=r"view.*out-of-place.*clone\(\)"):
        b.add_(5)
    with pytest.raises(genie.UnsupportedOpError, match="view"):
        v.add_(5)  # the other way round
    assert b.tolist() == [0.0] * 3 and v.tolist() == [0.0] * 2  # the refused op changed nothing
    v2 = b[0:2][0]  # a view of a view still shares b's data
    del v
    with pytest.raises(genie.UnsupportedOpError):
        b.add_(5)
    del v2
    b.add_(5)  # nothing shares it any more
    eager.add_(5)
    assert b.tolist() == eager.tolist()

    d = b.detach()
    with pytest.raises(genie.UnsupportedOpError, match="alias"):
        b.mul_(2)
    with pytest.raises(genie.UnsupportedOpError, match="alias"):
        d.mul_(2)
    with pytest.raises(genie.UnsupportedOpError, match="alias"):
        b.data.mul_(2)  # .data is an alias too
    assert d.tolist() == eager.tolist()
    del d
    # copies are not views: eager leaves them alone, so does a LazyTensor
    kept, picked, snapshot = b[1:].clone(), b[torch.tensor([0, 2])], copy.deepcopy(b)
    eager_kept, eager_picked = eager[1:].clone(), eager[torch.tensor([0, 2])]
    b.mul_(2)
    eager.mul_(2)
    got = genie.materialize(b, kept, picked, snapshot)
    for g, e in zip(got, (eager, eager_kept, eager_picked, eager / 2), strict=True):
        assert_close(g, e)


def test_copy_into_a_lazy_tensor_changes_it(client: genie.Client) -> None:
    dst, eager = genie.remote(torch.zeros(2, 3)), torch.zeros(2, 3)
    src = torch.arange(3)  # broadcast, and cast from int64 to float32
    assert dst.copy_(src) is dst
    eager.copy_(src)
    assert dst.dtype == torch.float32
    assert_close(dst.materialize(), eager)


def test_slicing_and_indexing_match_eager(client: genie.Client) -> None:
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


def test_reductions_with_dims_match_eager(client: genie.Client) -> None:
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


def test_dtype_casts_including_bfloat16(client: genie.Client) -> None:
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


def test_nn_sequential_with_parameters_moved_remote(
        client: genie.Client, graph_requests: Callable[[], int]) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 8)).eval()
    x = randn(4, 64)
    expected = model(x).detach()
    weight_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    genie.remote_module(model)
    assert graph_requests() == 1  # all parameters uploaded in one request
    assert all(isinstance(p, genie.LazyTensor) and isinstance(p, nn.Parameter)
               for p in model.parameters())
    out = model(genie.remote(x))
    assert_close(out.materialize(), expected)
    assert graph_requests() == 2
    assert client.last.bytes_sent < weight_bytes / 10  # the weights went by handle


def test_module_to_remote_device_inside_capture(client: genie.Client) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.LayerNorm(5)).eval()
    x = randn(3, 6)
    expected = model(x).detach()
    with genie.capture():
        model.to("remote_accelerator:0")
        out = model(x.to("remote_accelerator:0"))
    assert isinstance(model[0].weight, genie.LazyTensor)
    assert_close(out.materialize(), expected)


def test_common_idioms_match_eager(client: genie.Client) -> None:
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

    got = genie.materialize(*f(genie.remote(x), genie.remote(ids)))
    with torch.no_grad():
        for g, e in zip(got, f(x, ids), strict=True):
            assert_close(g, e)


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
def test_random_op_chains_match_eager(client: genie.Client, chain: list[int], seed: int) -> None:
    x = randn(4, 4, seed=seed)
    lazy, eager = genie.remote(x), x
    for i in chain:
        lazy, eager = _CHAIN_OPS[i](lazy), _CHAIN_OPS[i](eager)
    before = client.requests
    assert_close(genie.materialize(lazy), eager)
    assert client.requests == before + 1


# --- requests, caching, implicit materialization ---

def test_one_request_per_materialization_shared_subgraph_once(
        client: genie.Client, graph_requests: Callable[[], int]) -> None:
    x = randn(5, 5)
    h = genie.remote(x).exp() @ randn(5, 5, seed=1)  # shared by a and b
    a: Any = h.relu()
    b: Any = h.sum(dim=0)
    graph, _, _, _ = build_graph([a._node, b._node], [])
    assert [n["op"] for n in graph["nodes"]].count("matmul") == 1
    ra, rb = genie.materialize(a, b)
    assert graph_requests() == 1
    h_eager = x.exp() @ randn(5, 5, seed=1)
    assert_close(ra, h_eager.relu())
    assert_close(rb, h_eager.sum(dim=0))
    assert_close(a.materialize(), ra)  # cached: no request
    assert_close(genie.materialize(a, b)[1], rb)
    assert graph_requests() == 1
    c = (a + 1).materialize()  # a's cached value travels inline, h is not recomputed
    assert_close(c, h_eager.relu() + 1)
    assert graph_requests() == 2


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


def test_local_tensors_travel_once_and_are_not_kept_alive(client: genie.Client) -> None:
    w = randn(4, 4)
    x = genie.remote(randn(2, 4, seed=1))
    y = (x @ w) @ w + w[0]  # w used twice (w[0] is computed locally): two inputs
    inputs = build_graph([y._node], [])[1]  # type: ignore[attr-defined]
    assert len(inputs) == 3
    assert_close(genie.materialize(y), (randn(2, 4, seed=1) @ w) @ w + w[0])
    gone = weakref.ref(w)
    del w, y, inputs
    gc.collect()
    assert gone() is None


def test_values_handed_out_do_not_alias_what_later_graphs_send(
        client: genie.Client, graph_requests: Callable[[], int]) -> None:
    """Like a CUDA tensor's ``.cpu()``: every value a user gets is a fresh tensor, so
    editing it changes neither the LazyTensor nor graphs that use its cached value."""
    x = torch.tensor([-1.0, 1.0, 2.0, 3.0])
    h = genie.remote(x).relu()
    h.cpu().mul_(0)  # fetches h (one request), then edits the copy
    genie.materialize(h).mul_(0)
    genie.materialize(h, h)[1][0:2].mul_(0)
    h.to("cpu").mul_(0)
    h.numpy()[:] = 0
    np.asarray(h)[:] = 0
    assert graph_requests() == 1
    assert h.tolist() == [0.0, 1.0, 2.0, 3.0]
    assert (h + 1).tolist() == [1.0, 2.0, 3.0, 4.0]
    r = genie.remote(x)  # an inline input: its value is the user's tensor
    r.materialize().add_(100)
    assert x.tolist() == [-1.0, 1.0, 2.0, 3.0] and (r * 1).tolist() == x.tolist()


def test_computed_tensors_run_where_their_inputs_were_made(
        server: BackgroundServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """No default client: a tensor made with ``client=``, what is computed from it and
    what was fetched through it (or through ``materialize(client=)``) run there."""
    monkeypatch.delenv("GENIE_SERVER_URL", raising=False)
    genie.disconnect()
    with genie.Client(server.url, retries=0) as c:
        lx = genie.remote(torch.tensor([-1.0, 0.0, 1.0, 2.0]), client=c)
        h = lx.relu()
        assert h.cpu().tolist() == [0.0, 0.0, 1.0, 2.0]
        assert_close(genie.materialize(h + 1), torch.tensor([1.0, 1.0, 2.0, 3.0]))
        y = genie.remote(torch.ones(2)) * 3
        assert genie.materialize(y, client=c).tolist() == [3.0, 3.0]
        assert (y - 1).tolist() == [2.0, 2.0]
        assert c.requests == 4
    with pytest.raises(genie.ConfigurationError, match="GENIE_SERVER_URL"):
        genie.materialize(genie.remote(torch.ones(1)) + 1)  # nothing named a client


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


# --- errors ---

def test_unsupported_op_raises_at_capture_naming_it(
        client: genie.Client, graph_requests: Callable[[], int]) -> None:
    x = genie.remote(randn(4))
    with pytest.raises(genie.UnsupportedOpError, match=r"torch\.sort"):
        torch.sort(x)
    with pytest.raises(genie.UnsupportedOpError, match=r"Tensor\.__setitem__"):
        x[0] = 1.0
    with pytest.raises(genie.UnsupportedOpError, match="is_causal|dropout|only"):
        F.scaled_dot_product_attention(x[None, None, None], x[None, None, None],
                                       x[None, None, None], enable_gqa=True)
    assert graph_requests() == 0


def test_local_fallback_is_opt_in_and_logged_once(
        client: genie.Client, caplog: pytest.LogCaptureFixture) -> None:
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


def test_no_server_configured_names_the_three_ways(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENIE_SERVER_URL", raising=False)
    genie.disconnect()
    t: Any = genie.remote(torch.ones(3)) + 1  # capturing needs no server
    assert t.shape == (3,)
    with pytest.raises(genie.ConfigurationError) as info:
        t.materialize()
    message = str(info.value)
    assert "GENIE_SERVER_URL" in message and "genie.connect" in message and "client=" in message


def test_server_from_environment_and_explicit_client(
        server: BackgroundServer, monkeypatch: pytest.MonkeyPatch) -> None:
    genie.disconnect()
    monkeypatch.setenv("GENIE_SERVER_URL", server.url)
    assert (genie.remote(torch.ones(2)) * 3).tolist() == [3.0, 3.0]
    monkeypatch.delenv("GENIE_SERVER_URL")
    with genie.Client(server.url) as explicit:
        t = genie.remote(torch.ones(2)) + 1
        assert genie.materialize(t, client=explicit).tolist() == [2.0, 2.0]
        assert explicit.requests == 1
        with genie.capture(client=explicit):
            assert (genie.remote(torch.ones(1)) - 1).item() == 0.0
        assert explicit.requests == 2


# --- keeping data on the server ---

def test_handles_are_reused_and_released(server: BackgroundServer, client: genie.Client) -> None:
    w_local = randn(256, 256)
    w = genie.remote(w_local, keep=True)
    assert w.remote_handle is not None
    x = randn(1, 256, seed=1)
    for _ in range(3):
        out = genie.materialize(genie.remote(x) @ w)
        assert_close(out, x @ w_local)
        assert client.last.bytes_sent < w_local.nbytes / 20
    before = client.requests
    assert_close(genie.materialize(w), w_local)  # the server copy is the value now
    assert client.requests == before + 1
    with genie.Client(server.url) as probe:
        held = probe.stats()["held"]["tensors"]
        w.release()
        assert probe.stats()["held"]["tensors"] == held - 1
    y: Any = genie.remote(randn(4, seed=2)).exp()
    y.persist()
    assert y.remote_handle is not None
    assert_close((y + 0).materialize(), randn(4, seed=2).exp())
    y.release()


def test_decode_loop_sends_only_new_data_per_step(client: genie.Client) -> None:
    """The guide's LLM decode co-location: weights and a growing KV cache stay remote."""
    d, steps = 128, 6
    weights = {n: randn(d, d, seed=i) / d ** 0.5 for i, n in enumerate("qkvo")}
    weight_bytes = sum(w.nbytes for w in weights.values())
    tokens = [randn(1, 1, d, seed=100 + s) for s in range(steps)]

    def step(x: Any, w: dict[str, Any], cache: tuple[Any, Any] | None
             ) -> tuple[Any, tuple[Any, Any]]:
        q, k, v = (F.linear(x, w[n]) for n in "qkv")
        if cache is not None:
            k, v = torch.cat([cache[0], k], dim=1), torch.cat([cache[1], v], dim=1)
        a = F.scaled_dot_product_attention(q, k, v)
        return F.linear(a, w["o"]) + x, (k, v)

    eager_cache, expected = None, []
    for x in tokens:
        out, eager_cache = step(x, weights, eager_cache)
        expected.append(out)

    remote_w = dict(zip(weights, [genie.remote(w, keep=True) for w in weights.values()],
                        strict=True))
    cache: tuple[Any, Any] | None = None
    sent = []
    for s, x in enumerate(tokens):
        out, new_cache = step(genie.remote(x), remote_w, cache)
        got = genie.materialize(out, keep=new_cache)
        sent.append(client.last.bytes_sent)
        assert_close(got, expected[s])
        assert new_cache[0].remote_handle is not None
        if cache is not None:
            genie.release(*cache)
        cache = new_cache
    per_step = sent[1:]  # step 0 has no cache to concatenate
    assert max(per_step) - min(per_step) <= 16, sent  # flat: the cache grows on the server
    assert max(sent) < weight_bytes / 20, (sent, weight_bytes)


# --- creation ---

def test_factories_inside_capture_and_genie_helpers(client: genie.Client) -> None:
    with genie.capture():
        r = torch.randn(100, 100, device="remote_accelerator:0")
        z = torch.zeros(2, 3, device="remote_accelerator:0", dtype=torch.float16)
        a = torch.arange(5, device=genie.REMOTE_DEVICE)
        t = torch.tensor([1.0, 2.0], device="remote_accelerator:0")
    assert isinstance(r, genie.LazyTensor) and r.shape == (100, 100)
    assert_close(genie.materialize(z), torch.zeros(2, 3, dtype=torch.float16))
    assert a.tolist() == [0, 1, 2, 3, 4] and t.tolist() == [1.0, 2.0]
    assert 0.9 < float(r.std()) < 1.1
    s1, s2 = genie.randn(3, 3, seed=7), genie.randn(3, 3, seed=7)
    assert_close(s1.materialize(), s2.materialize())
    assert_close(genie.full((2, 2), 3.5).materialize(), torch.full((2, 2), 3.5))
    assert_close(genie.eye(3).materialize(), torch.eye(3))
    assert genie.ones(4, dtype=torch.int64).sum().item() == 4


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


def test_importing_genie_leaves_privateuse1_free_until_a_lazy_tensor_is_made() -> None:
    # A server, or a program using only genie.Client, must not take torch's one
    # PrivateUse1 slot: an NPU/HPU backend imported later needs it.
    code = (
        "import torch, genie\n"
        "before = torch._C._get_privateuse1_backend_name()\n"
        "y = genie.remote(torch.ones(2))\n"
        "print(before, torch._C._get_privateuse1_backend_name(), y.device)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=True).stdout.split()
    assert out == ["privateuseone", "remote_accelerator", "remote_accelerator:0"]
