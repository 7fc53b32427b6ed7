"""The remote device's identity (genie.lazy.device): importing genie leaves torch's one
PrivateUse1 slot free until a LazyTensor is made, which then names it
``remote_accelerator``."""

from __future__ import annotations

import subprocess
import sys


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
