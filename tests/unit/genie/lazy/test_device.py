"""The remote device (genie.lazy.device): the guide's own snippet after ``import genie``
with ``GENIE_SERVER_URL`` set; PrivateUse1 left to others until Genie needs it (and a
Genie error, not torch's, before that); torch's device-module protocol; every thread;
``torch.manual_seed`` making remote random numbers reproducible; and what happens
when another library owns PrivateUse1.

The subprocess tests run a fresh interpreter: torch names PrivateUse1 once per process.
"""

from __future__ import annotations

import subprocess
import sys
import threading

import torch
from torch.testing import assert_close

import genie
from genie.server.runner import BackgroundServer


def _python(code: str, env: dict[str, str] | None = None) -> list[str]:
    import os

    full_env = {k: v for k, v in os.environ.items() if k != "GENIE_SERVER_URL"}
    full_env.update(env or {})
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, env=full_env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip().splitlines()


def test_the_guides_snippet_runs_unchanged(server: BackgroundServer) -> None:
    """``import genie`` with GENIE_SERVER_URL set, then the guide's exact lines."""
    code = (
        "import torch\n"
        "import genie\n"
        "x = torch.randn(100, 100, device='privateuseone:0')\n"
        "y = x.relu().sigmoid()\n"
        "r = y.materialize()\n"
        "print(r.shape, y.device, type(y).__name__)\n"
        "print(float(r.min()) >= 0.5, float(r.max()) < 1.0, bool((r > 0.5).any()))\n"
    )
    out = _python(code, {"GENIE_SERVER_URL": server.url})
    assert out == ["torch.Size([100, 100]) remote_accelerator:0 LazyTensor", "True True True"]


def test_privateuseone_is_left_free_and_named_factories_fail_in_genies_words() -> None:
    # A server, or a program using only genie.Client, must not take torch's one
    # PrivateUse1 slot; before Genie needs it, naming the device is Genie's error.
    code = (
        "import torch, genie\n"
        "print(torch._C._get_privateuse1_backend_name())\n"
        "try:\n"
        "    torch.randn(2, device='privateuseone:0')\n"
        "except genie.ConfigurationError as exc:\n"
        "    print('ConfigurationError', 'GENIE_SERVER_URL' in str(exc), 'genie.connect' in str(exc))\n"
        "y = genie.remote(torch.ones(2))\n"
        "print(torch._C._get_privateuse1_backend_name(), y.device)\n"
        "z = torch.zeros(2, device='remote_accelerator')  # claimed: a factory works, and\n"
        "try:\n"
        "    z.tolist()  # needs a server: the same error, when the value is needed\n"
        "except genie.ConfigurationError:\n"
        "    print('needs a server')\n"
    )
    assert _python(code) == ["privateuseone", "ConfigurationError True True",
                             "remote_accelerator remote_accelerator:0", "needs a server"]


def test_another_privateuse1_backend_keeps_the_slot(server: BackgroundServer) -> None:
    """Imported first, another backend owns PrivateUse1: "privateuseone" is theirs,
    LazyTensor reports meta, and genie.capture() still catches "remote_accelerator"."""
    code = (
        "import torch\n"
        "torch.utils.rename_privateuse1_backend('other_npu')\n"
        "import genie\n"
        f"genie.connect({server.url!r})\n"
        "print(torch.device('privateuseone:0'), genie.remote(torch.ones(2)).device)\n"
        "with genie.capture():\n"
        "    z = torch.ones(2, 3, device='remote_accelerator:0')\n"
        "    w = torch.arange(3.0).to('remote_accelerator')\n"
        "print(type(z).__name__, (z.sum() + w.sum()).item())\n"
    )
    assert _python(code) == ["other_npu:0 meta", "LazyTensor 9.0"]


def test_device_module_answers_what_torch_asks(client: genie.Client) -> None:
    mod = torch.remote_accelerator  # type: ignore[attr-defined]
    assert torch.get_device_module("remote_accelerator") is mod
    assert mod.is_available() and mod.device_count() == 1 and mod.current_device() == 0
    assert torch.device("privateuseone:0") == genie.REMOTE_DEVICE
    t = torch.ones(3).remote_accelerator()  # generated like .cuda()
    assert isinstance(t, genie.LazyTensor) and t.is_remote_accelerator
    with torch.random.fork_rng(device_type="remote_accelerator"):
        inner = torch.randn(4, device="remote_accelerator").tolist()
    assert torch.randn(4, device="remote_accelerator").tolist() == inner  # state restored


def test_manual_seed_makes_remote_random_factories_reproducible(client: genie.Client) -> None:
    def draw() -> list[torch.Tensor]:
        return genie.materialize(torch.randn(3, 4, device="privateuseone:0"),
                                 torch.rand(5, device=genie.REMOTE_DEVICE),
                                 genie.randn(2), torch.randn_like(genie.zeros(2, 2)))

    torch.manual_seed(123)
    first = draw()
    cpu_after = torch.rand(1)
    torch.manual_seed(123)
    second = draw()
    assert torch.rand(1).item() == cpu_after.item()  # the CPU stream did not move
    for a, b in zip(first, second, strict=True):
        assert_close(a, b, rtol=0, atol=0)
    assert not torch.equal(first[0][0], first[0][1])
    torch.manual_seed(124)
    assert not torch.equal(draw()[0], first[0])
    # generator= is honoured: the seed is drawn from it
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(torch.randn(3, device="remote_accelerator", generator=g1).materialize(),
                       torch.randn(3, device="remote_accelerator", generator=g2).materialize())


def test_the_device_works_in_every_thread(client: genie.Client) -> None:
    results: list[list[float]] = []

    def work() -> None:
        x = torch.full((2,), 1.5, device="privateuseone:0")
        results.append((x * torch.ones(2).to("remote_accelerator")).tolist())

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == [[1.5, 1.5]] * 3
