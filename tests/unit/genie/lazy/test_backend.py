"""The remote device's kernels (genie.lazy.backend): torch factories and moves that
name the device, by any of its names, give LazyTensors equal to eager's tensors."""

from __future__ import annotations

import pytest
import torch
from torch.testing import assert_close

import genie


def test_factories_and_moves_name_the_device_any_way(client: genie.Client) -> None:
    lazy = genie.remote(torch.ones(1))
    made = [torch.zeros(2, 3, device="remote_accelerator:0", dtype=torch.float16),
            torch.ones(2, device=lazy.device), torch.full((2,), 7, device="privateuseone"),
            torch.arange(1, 7, 2, device=genie.REMOTE_DEVICE), torch.eye(2, 3, device=lazy.device),
            torch.tensor([[1, 2]], device="remote_accelerator"),
            torch.empty(2, device="remote_accelerator"),
            torch.arange(4.0).reshape(2, 2).t().to(lazy.device)]
    assert all(isinstance(t, genie.LazyTensor) for t in made)
    expected = [torch.zeros(2, 3, dtype=torch.float16), torch.ones(2), torch.full((2,), 7),
                torch.arange(1, 7, 2), torch.eye(2, 3), torch.tensor([[1, 2]]), torch.zeros(2),
                torch.arange(4.0).reshape(2, 2).t()]
    for got, want in zip(genie.materialize(*made), expected, strict=True):
        assert got.dtype == want.dtype
        assert_close(got, want)
    with pytest.raises(genie.UnsupportedOpError, match="one index"):
        torch.zeros(2, device="remote_accelerator:1")
