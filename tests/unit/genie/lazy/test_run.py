"""Materialization (genie.lazy.run): one request per materialization with a shared
subgraph sent once and results cached, each local tensor sent once and not kept alive,
a decode loop whose kept cache grows on the server so each step sends only its new
data, and costs one request per step with last step's cache released in it; releases
that do not wait are one request for many tensors."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Callable
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from torch.testing import assert_close

import genie
from genie.errors import GenieError
from genie.lazy.run import build_graph
from genie.server.runner import BackgroundServer


def test_one_request_per_materialization_shared_subgraph_once(
        client: genie.Client, graph_requests: Callable[[], int], randn: Callable[..., torch.Tensor]) -> None:
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


def test_local_tensors_travel_once_and_are_not_kept_alive(client: genie.Client,
                                                          randn: Callable[..., torch.Tensor]) -> None:
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


def test_decode_loop_sends_only_new_data_per_step(client: genie.Client,
                                                  randn: Callable[..., torch.Tensor]) -> None:
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


def test_decode_step_with_deferred_release_is_one_request(
        client: genie.Client, server: BackgroundServer, graph_requests: Callable[[], int],
        randn: Callable[..., torch.Tensor]) -> None:
    d, steps = 8, 6
    wq, wk = randn(d, d, seed=1), randn(d, d, seed=2)
    tokens = [randn(1, d, seed=10 + s) for s in range(steps)]

    def step(x: Any, wq: Any, wk: Any, cache: Any) -> tuple[Any, Any]:
        k = x @ wk if cache is None else torch.cat([cache, x @ wk])
        return torch.softmax((x @ wq) @ k.t(), dim=-1) @ k, k

    eager, want = None, []
    for x in tokens:
        out, eager = step(x, wq, wk, eager)
        want.append(out)
    remote_wq, remote_wk = genie.remote(wq, keep=True), genie.remote(wk, keep=True)
    with genie.Client(server.url, session=None) as probe:
        def requests() -> int:
            return int(probe.session_info(client.session)["requests"])

        start, graphs, cache = requests(), graph_requests(), None
        old_caches = []
        for s, x in enumerate(tokens):
            out, new_cache = step(genie.remote(x), remote_wq, remote_wk, cache)
            if cache is not None:
                genie.release(cache, defer=True)  # travels with this step's graph
                old_caches.append(cache)
            assert_close(genie.materialize(out, keep=[new_cache]), want[s])
            cache = new_cache
            assert requests() - start == s + 1  # every request the client made, counted
        assert graph_requests() - graphs == steps  # ...and each was the step's one graph
        held = probe.session_info(client.session)["handles"]
        assert held == 3  # the two weights and the last cache: every older cache was freed
    with pytest.raises(GenieError, match="released"):
        (old_caches[0] + 1).materialize()  # its release went out with the next step


def test_release_without_defer_is_one_request_for_many(
        client: genie.Client, server: BackgroundServer, randn: Callable[..., torch.Tensor]) -> None:
    kept = [genie.remote(randn(2, 2, seed=i), keep=True) for i in range(4)]
    kept[0].materialize()  # a fetched value survives the release of its handle
    with genie.Client(server.url, session=None) as probe:
        def releases() -> int:
            eps = probe.stats()["endpoints"]
            return int(eps.get("POST /tensors/release", {}).get("count", 0))

        before = releases()
        genie.release(*kept)
        assert releases() - before == 1
        assert probe.session_info(client.session)["handles"] == 0
    assert all(t.remote_handle is None for t in kept)
    assert_close((kept[0] * 2).materialize(), randn(2, 2, seed=0) * 2)


def test_moved_tensors_upload_once_stay_and_are_released_when_dropped(
        server: BackgroundServer, client: genie.Client, graph_traffic: Any) -> None:
    """model.to(remote) is like .to("cuda"): the first forward uploads the weights and
    keeps them; later forwards send handles; dropping the model frees them."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 64), torch.nn.ReLU(),
                                torch.nn.Linear(64, 8)).eval()
    weights = sum(p.numel() * 4 for p in model.parameters())
    x = torch.randn(2, 64)
    expected = model(x).detach()
    with genie.Client(server.url) as probe:
        held = probe.stats()["held"]["tensors"]
        with genie.capture():  # the block no longer changes how weights travel
            model.to("remote_accelerator:0")
        graph_traffic()
        sent = []
        for _ in range(3):
            with torch.no_grad():
                assert_close(model(x.to("remote_accelerator")).materialize(), expected)
            sent.append(graph_traffic())
        assert [n for n, _ in sent] == [1, 1, 1]
        assert sent[0][1] > weights and sent[1][1] < weights / 4 and sent[2][1] < weights / 4
        assert probe.stats()["held"]["tensors"] >= held + 4
        del model
        gc.collect()
        assert len(client.pending_releases) >= 4  # deferred: sent with the next request
        client.release()  # (or the next graph): one request for all of them
        assert probe.stats()["held"]["tensors"] <= held + 1  # (the last input, still queued)


def test_integer_checks_on_local_values_need_no_request(
        client: genie.Client, graph_requests: Callable[[], int]) -> None:
    """A library's data-dependent branch on a mask or ids it just moved (HF asks
    ``attention_mask.all()``) is answered here: exact, and no round trip."""
    mask = torch.ones(2, 6, dtype=torch.long)
    mask[1, :2] = 0
    remote_mask = mask.to("remote_accelerator")
    assert bool(remote_mask.bool().all()) is False
    assert (remote_mask[:, 2:] == 1).all().item() is True
    assert int(remote_mask.sum()) == 10
    assert graph_requests() == 0
    floats = genie.remote(torch.ones(3)).sum()  # floating point: the server computes it
    assert floats.item() == 3.0
    assert graph_requests() == 1
