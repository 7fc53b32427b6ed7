"""The remote device: torch's PrivateUse1 backend, named ``remote_accelerator``.

torch lets one out-of-tree backend per process claim PrivateUse1 and give it a name.
Genie claims it (``claim``) the first time the remote device is needed: at ``import
genie`` when ``GENIE_SERVER_URL`` is set, at ``genie.connect()``, on entering
``genie.capture()``, on the first LazyTensor, or when ``genie.REMOTE_DEVICE`` is read.
A server, or a program that only uses ``genie.Client``, leaves the slot alone; until
then only a placeholder module is registered (``guard_unclaimed``), so that torch's
first use of ``"privateuseone"`` raises Genie's ``ConfigurationError`` naming the
ways to configure a server, not ``No module named 'torch.privateuseone'``, and a
backend imported later can still rename the slot.

Claiming makes it a device as torch understands one, with torch's own extension points:

- the backend is renamed, so ``torch.device("remote_accelerator:0")`` parses
  everywhere, and ``"privateuseone:0"`` (the guide's name) means the same device;
- a device module is registered (``torch.remote_accelerator``: ``is_available``,
  ``device_count``, ``manual_seed``...), which is what torch asks for before it
  creates a tensor on a PrivateUse1 device, and what ``torch.manual_seed`` seeds;
- where torch has it (2.7+), a device guard and backend hooks, so that C++ paths
  such as ``torch.tensor(data, device=...)`` work;
- ``Tensor.remote_accelerator()`` / ``Module.remote_accelerator()`` like ``.cuda()``;
- kernels for the factories and copies (``genie.lazy.backend``, registered through
  ``on_claim``), so ``torch.randn(..., device="remote_accelerator:0")``,
  ``t.to(device)`` and ``model.to(device)`` give LazyTensors in every thread, with
  no cost at all to code that never names the device.

Another PrivateUse1 backend (an NPU, HPU... library) imported *before* Genie keeps
the slot: Genie then registers nothing, ``"privateuseone"`` means that backend, a
LazyTensor's ``.device`` reports ``meta``, and torch cannot parse
``"remote_accelerator"``: ``genie.capture()`` then catches the factories and moves
that name the remote device by that string (see ``genie.lazy.capture``).  Imported
*after* Genie claimed the slot, such a backend fails to rename it (torch allows one
rename per process): import it first.

Random numbers.  The device has its own generator here, on the client, like every
torch device: seeded with torch's default seed, reseeded by ``torch.manual_seed``
(through ``manual_seed_all``) or ``torch.remote_accelerator.manual_seed``.  Each
random factory without an explicit seed draws one 63-bit seed from it (or from the
``generator=`` it was given) and sends it; the server draws the values from a fresh
generator of its own device seeded with it.  So the same seed gives the same numbers
run after run, and they are the numbers ``torch.Generator(device=D).manual_seed(s)``
gives on the server's device ``D``: a CPU server's and a CUDA server's differ, as
CPU and CUDA torch do for the same seed, and neither equals local ``torch.randn``
after the same ``torch.manual_seed``.  Drawing on the remote device does not move
the CPU generator, as drawing on CUDA does not.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from typing import Any

import torch

from genie.errors import ConfigurationError

__all__ = ["DEFAULT_SEED", "REMOTE_DEVICE_TYPE", "RNG", "RemoteRng", "claim", "guard_unclaimed",
           "is_remote_device", "on_claim", "owns_privateuse1", "remote_device"]

REMOTE_DEVICE_TYPE = "remote_accelerator"
#: torch's own default seed for a device generator (CPU and CUDA alike).
DEFAULT_SEED = 67280421310721
_META = torch.device("meta")
_SEED_BOUND = (1 << 63) - 1


class RemoteRng:
    """The remote device's generator: a CPU generator here that draws per-call seeds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._gen = torch.Generator()
        self._gen.manual_seed(DEFAULT_SEED)

    def manual_seed(self, seed: int) -> None:
        with self._lock:
            self._gen.manual_seed(int(seed))

    def seed(self) -> int:
        with self._lock:
            return int(self._gen.seed())

    def initial_seed(self) -> int:
        return int(self._gen.initial_seed())

    def get_state(self) -> torch.Tensor:
        with self._lock:
            return self._gen.get_state()

    def set_state(self, state: torch.Tensor) -> None:
        with self._lock:
            self._gen.set_state(state)

    def next_seed(self, generator: torch.Generator | None = None) -> int:
        """A seed for one random factory, from ``generator`` or the device's own."""
        if generator is not None:
            return int(torch.randint(0, _SEED_BOUND, (), generator=generator))
        with self._lock:
            return int(torch.randint(0, _SEED_BOUND, (), generator=self._gen))


#: The remote device's generator (one per process, like torch's per-device generators).
RNG = RemoteRng()


def _module() -> types.ModuleType:
    """``torch.remote_accelerator``: what torch (and users) ask of a device module."""
    mod = types.ModuleType(f"torch.{REMOTE_DEVICE_TYPE}",
                           "Genie's remote device (see genie.lazy.device).")

    def device_count() -> int:
        return 1

    def current_device() -> int:
        return 0

    def set_device(device: Any) -> None:
        index = device.index if isinstance(device, torch.device) else device
        if index not in (None, 0) and not (isinstance(device, str) and device.endswith(":0")):
            raise ValueError(f"the remote device has one index, 0; got {device!r}")

    def synchronize(device: Any = None) -> None:
        """Nothing to wait for: work runs when a value is asked for."""

    def is_available() -> bool:
        return True

    def manual_seed_all(seed: int) -> None:
        RNG.manual_seed(seed)

    def get_rng_state(device: Any = None) -> torch.Tensor:
        return RNG.get_state()

    def set_rng_state(new_state: torch.Tensor, device: Any = None) -> None:
        RNG.set_state(new_state)

    def seed_all() -> None:
        RNG.seed()

    functions: dict[str, Callable[..., Any]] = {
        "device_count": device_count, "current_device": current_device,
        "set_device": set_device, "synchronize": synchronize, "is_available": is_available,
        "is_initialized": is_available, "_lazy_init": synchronize,
        "_is_in_bad_fork": lambda: False, "manual_seed": manual_seed_all,
        "manual_seed_all": manual_seed_all, "seed": seed_all, "seed_all": seed_all,
        "initial_seed": RNG.initial_seed, "get_rng_state": get_rng_state,
        "set_rng_state": set_rng_state,
        "get_rng_state_all": lambda: [RNG.get_state()],
        "set_rng_state_all": lambda states: RNG.set_state(states[0]),
    }
    for name, fn in functions.items():
        setattr(mod, name, fn)
    return mod


def _register_hooks() -> None:
    """torch's device guard and backend hooks for a Python backend, where torch has
    them (``torch._C._acc``, 2.7+): C++ paths that guard the device (``torch.tensor(
    data, device=...)``) need them.  Older torch: those paths keep torch's error."""
    acc = getattr(torch._C, "_acc", None)
    if acc is None or not hasattr(acc, "register_python_privateuseone_device_guard"):
        return

    class Hooks(acc.PrivateUse1Hooks):  # type: ignore[misc, name-defined]
        def is_available(self) -> bool:
            return True

        def has_primary_context(self, dev_id: int) -> bool:
            return True

        def is_built(self) -> bool:
            return True

    class Guard(acc.DeviceGuard):  # type: ignore[misc, name-defined]
        def type_(self) -> Any:
            return torch._C._autograd.DeviceType.PrivateUse1

    acc.register_python_privateuseone_hook(Hooks())
    acc.register_python_privateuseone_device_guard(Guard())


class _Claim:
    """The outcome of claiming, once per process: torch's backend name is process-wide."""

    lock = threading.Lock()
    device: torch.device | None = None
    installers: list[Callable[[], None]] = []


def _claim_now() -> torch.device:
    name = torch._C._get_privateuse1_backend_name()
    if name == "privateuseone":
        torch.utils.rename_privateuse1_backend(REMOTE_DEVICE_TYPE)
        torch.utils.generate_methods_for_privateuse1_backend(
            for_tensor=True, for_module=True, for_packed_sequence=False, for_storage=False)
        torch._register_device_module(REMOTE_DEVICE_TYPE, _module())
        _register_hooks()
        for install in _Claim.installers:
            install()
    elif name != REMOTE_DEVICE_TYPE:  # another library owns PrivateUse1
        return _META
    return torch.device(REMOTE_DEVICE_TYPE, 0)


def claim() -> torch.device:
    """Claim PrivateUse1 for the remote device (once); what ``LazyTensor.device`` reports."""
    device = _Claim.device
    if device is None:
        with _Claim.lock:
            if _Claim.device is None:
                _Claim.device = _claim_now()
            device = _Claim.device
    return device


#: What ``LazyTensor.device`` reports (``remote_accelerator:0``); claims on first call.
remote_device = claim


def guard_unclaimed(message: str) -> None:
    """While nobody has named PrivateUse1: a placeholder ``torch.privateuseone`` module
    whose initialisation (torch's first step before making a tensor there) raises
    ``ConfigurationError(message)``.  Renaming the slot later is unaffected."""
    if torch._C._get_privateuse1_backend_name() != "privateuseone" or hasattr(torch, "privateuseone"):
        return
    mod = types.ModuleType("torch.privateuseone", "PrivateUse1 before any backend claims it.")

    def unavailable() -> None:
        raise ConfigurationError(message)

    mod._lazy_init = unavailable  # type: ignore[attr-defined]
    mod.is_available = lambda: False  # type: ignore[attr-defined]
    torch._register_device_module("privateuseone", mod)


def owns_privateuse1() -> bool:
    """Whether Genie has claimed PrivateUse1 (``"privateuseone"`` then means the remote device)."""
    return _Claim.device is not None and _Claim.device.type == REMOTE_DEVICE_TYPE


def on_claim(install: Callable[[], None]) -> None:
    """Run ``install`` (torch.library kernels) when Genie claims PrivateUse1, or now if it
    has: registration, so that this module need not import what the kernels build."""
    with _Claim.lock:
        _Claim.installers.append(install)
        claimed = owns_privateuse1()
    if claimed:
        install()


def is_remote_device(device: Any) -> bool:
    """True for ``"remote_accelerator"``, ``"remote_accelerator:0"``, that torch.device,
    and (while Genie owns PrivateUse1) ``"privateuseone[:0]"``."""
    if isinstance(device, torch.device):
        return device.type == REMOTE_DEVICE_TYPE
    if not isinstance(device, str):
        return False
    kind = device.split(":", 1)[0]
    return kind == REMOTE_DEVICE_TYPE or (kind == "privateuseone" and owns_privateuse1())
