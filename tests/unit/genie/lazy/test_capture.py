"""Ways into the remote device (genie.lazy.capture): ``remote_module`` uploads a
model's parameters in one request, ``model.to("remote_accelerator:0")`` and factories
naming the device are captured inside ``genie.capture()``, and the genie factory
helpers match torch's."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn as nn
from torch.testing import assert_close

import genie


def test_nn_sequential_with_parameters_moved_remote(client: genie.Client, graph_requests: Callable[[], int],
                                                    randn: Callable[..., torch.Tensor]) -> None:
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


def test_module_to_remote_device_inside_capture(client: genie.Client,
                                                randn: Callable[..., torch.Tensor]) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 5), nn.GELU(), nn.LayerNorm(5)).eval()
    x = randn(3, 6)
    expected = model(x).detach()
    with genie.capture(), torch.no_grad():
        model.to("remote_accelerator:0")
        out = model(x.to("remote_accelerator:0"))
    assert isinstance(model[0].weight, genie.LazyTensor)
    assert_close(out.materialize(), expected)


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
