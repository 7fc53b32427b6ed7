"""LazyTensor (genie.lazy.tensor): metadata answers without a request, a shape error
is raised at the line that made it, in-place ops rebind the tensor and are refused on
one that shares data with a live view or alias, values handed out are fresh copies,
and tensors kept on the server are reused by handle and released."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.testing import assert_close

import genie
from genie.server.runner import BackgroundServer


def test_metadata_answers_without_any_request(client: genie.Client,
                                              randn: Callable[..., torch.Tensor]) -> None:
    x = genie.remote(randn(4, 8))
    y = (x @ randn(8, 3, seed=1)).relu().unsqueeze(0).to(torch.bfloat16)
    assert isinstance(y, genie.LazyTensor) and isinstance(y, torch.Tensor)
    assert y.shape == (1, 4, 3) and y.dim() == 3 and y.size(-1) == 3 and y.numel() == 12
    assert y.dtype == torch.bfloat16
    assert str(y.device) == "remote_accelerator:0" and y.device == genie.REMOTE_DEVICE
    assert client.requests == 0


def test_shape_error_is_raised_at_the_line_that_made_it(client: genie.Client,
                                                        randn: Callable[..., torch.Tensor]) -> None:
    a = genie.remote(randn(3, 4))
    with pytest.raises(genie.InvalidArgumentError, match=r"matmul.*\[3, 4\].*\[5, 6\]"):
        a @ randn(5, 6)
    with pytest.raises(genie.InvalidArgumentError, match=r"reshape.*\[5, 5\]"):
        a.reshape(5, 5)
    assert client.requests == 0


def test_inplace_forms_rebind_the_tensor(client: genie.Client, randn: Callable[..., torch.Tensor]) -> None:
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


def test_handles_are_reused_and_released(server: BackgroundServer, client: genie.Client,
                                         randn: Callable[..., torch.Tensor]) -> None:
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


def test_a_local_value_is_the_value_at_capture(client: genie.Client) -> None:
    """Mutating a local tensor after it was captured never changes the result (eager's
    answer), whichever way it entered: genie.remote, an operand, .to(remote)."""
    x = torch.ones(3)
    y = genie.remote(x) + 1
    x.add_(100)
    assert y.tolist() == [2.0, 2.0, 2.0]
    w = torch.ones(3)
    z = genie.remote(torch.zeros(3)) + w
    w.numpy()[:] = 7  # a write the version counter cannot see
    assert z.tolist() == [1.0, 1.0, 1.0]
    m = torch.ones(2)
    moved = m.to("remote_accelerator")
    m.mul_(5)
    assert moved.tolist() == [1.0, 1.0]
    v = torch.ones(2)
    a = genie.remote(torch.zeros(2)) + v
    v.add_(1)  # changed between two captures: the second sees the new value
    b = genie.remote(torch.zeros(2)) + v
    assert a.tolist() == [1.0, 1.0] and b.tolist() == [2.0, 2.0]


def test_autograd_is_refused_clearly_and_inference_works(client: genie.Client) -> None:
    p = torch.ones(3, requires_grad=True)
    lp = genie.remote(p)
    assert lp.requires_grad  # not silently detached
    with pytest.raises(genie.UnsupportedOpError, match=r"autograd.*torch\.no_grad\(\).*inference_mode"):
        lp * 2
    with torch.no_grad():
        assert (lp * 2).tolist() == [2.0] * 3
    with torch.inference_mode():
        assert (lp + 1).tolist() == [2.0] * 3
    model = nn.Linear(3, 2)
    expected = model(torch.ones(1, 3)).detach()
    model.to("remote_accelerator:0")
    assert model.weight.requires_grad and isinstance(model.weight, nn.Parameter)
    with pytest.raises(genie.UnsupportedOpError, match="Parameter"):
        model(torch.ones(1, 3).to("remote_accelerator"))
    with torch.no_grad():
        assert_close(model(torch.ones(1, 3).to("remote_accelerator")).materialize(), expected)
    model.requires_grad_(False)
    assert_close(model(torch.ones(1, 3).to("remote_accelerator")).materialize(), expected)
    with pytest.raises(genie.UnsupportedOpError, match="autograd"):
        genie.remote(torch.ones(2)).sum().backward()


@pytest.mark.filterwarnings("ignore::UserWarning", "ignore::DeprecationWarning")  # dynamo
def test_torch_compile_of_a_lazy_program_runs_it(client: genie.Client) -> None:
    """Dynamo cannot trace into a LazyTensor: it graph-breaks and the calls are captured
    as usual, so the compiled function gives eager's answer (with no speed-up)."""
    def f(t: Any) -> Any:
        return (t.relu() * 2).sum(dim=0)

    x = torch.randn(4, 3, generator=torch.Generator().manual_seed(0))
    got = torch.compile(f)(genie.remote(x))
    assert isinstance(got, genie.LazyTensor)
    assert_close(got.materialize(), f(x))
