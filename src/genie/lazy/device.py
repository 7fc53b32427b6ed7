"""The remote device's identity: torch's PrivateUse1 backend, named ``remote_accelerator``.

torch lets one out-of-tree backend per process claim PrivateUse1 and give it a name;
then ``torch.device("remote_accelerator:0")`` parses everywhere and is what a
LazyTensor's ``.device`` reports.  Genie claims it on first use (a LazyTensor made,
``genie.capture()`` entered), not on import, so that a server or a program that only
uses ``genie.Client`` leaves the slot free.  If another library already owns
PrivateUse1, Genie does not take it: ``.device`` then reports ``meta``.
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["REMOTE_DEVICE_TYPE", "is_remote_device", "remote_device"]

REMOTE_DEVICE_TYPE = "remote_accelerator"
_META = torch.device("meta")


def _claim() -> torch.device:
    name = torch._C._get_privateuse1_backend_name()
    if name == "privateuseone":
        torch.utils.rename_privateuse1_backend(REMOTE_DEVICE_TYPE)
    elif name != REMOTE_DEVICE_TYPE:  # another library owns PrivateUse1
        return _META
    return torch.device(REMOTE_DEVICE_TYPE, 0)


class _Claim:
    """The outcome of claiming, once per process: torch's backend name is process-wide."""

    device: torch.device | None = None


def remote_device() -> torch.device:
    """What ``LazyTensor.device`` reports (``remote_accelerator:0``); claims on first call."""
    if _Claim.device is None:
        _Claim.device = _claim()
    return _Claim.device


def is_remote_device(device: Any) -> bool:
    """True for ``"remote_accelerator"``, ``"remote_accelerator:0"`` or that torch.device."""
    if isinstance(device, torch.device):
        return device.type == REMOTE_DEVICE_TYPE
    return isinstance(device, str) and device.split(":", 1)[0] == REMOTE_DEVICE_TYPE
