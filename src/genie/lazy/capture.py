"""Ways into the remote device: ``genie.capture()``, the genie factories, ``remote_module``.

The remote device is a torch device (``genie.lazy.device``, ``genie.lazy.backend``):
``torch.randn(2, 3, device="remote_accelerator:0")``, ``t.to(remote)`` and
``model.to(remote)`` give LazyTensors anywhere once Genie has claimed PrivateUse1.
``with genie.capture():`` scopes the rest: which client a block's graphs run on
(``client=``), and the policy for unsupported calls (``fallback="local"`` runs them
on the CPU, logged once per function).  It also claims the device, and where another
library owns PrivateUse1 (so torch cannot parse ``"remote_accelerator"``) it installs
a torch function mode for the block that catches the factories and moves naming the
remote device by that name, with the same factories as the kernels.  The block's
settings are context variables and the mode is torch's thread-local mode stack, so
both hold for the thread (or asyncio task) that entered the block; the device itself
works in every thread.

``remote_module(model)`` swaps every parameter and buffer for a LazyTensor kept on
the server (uploaded in one request now), so ``model(x)`` captures and each forward
sends only ``x``; ``model.to(remote)`` does the same lazily, with the first forward.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from genie.client import Client
from genie.errors import ConfigurationError, UnsupportedOpError
from genie.lazy.backend import factory
from genie.lazy.device import claim, is_remote_device, owns_privateuse1
from genie.lazy.session import FALLBACKS, fallback_mode, scoped_client
from genie.lazy.tensor import LazyTensor, leaf, persist, remote, snapshot

__all__ = ["arange", "capture", "eye", "full", "ones", "rand", "randn", "remote_module",
           "zeros"]


def randn(*size: Any, dtype: torch.dtype | None = None, seed: int | None = None,
          client: Client | None = None) -> LazyTensor:
    """Normal samples drawn on the server; ``seed`` (else one from the device's generator,
    which ``torch.manual_seed`` seeds) makes them repeatable."""
    return factory("randn", size, {"dtype": dtype, "seed": seed}, client=client)


def rand(*size: Any, dtype: torch.dtype | None = None, seed: int | None = None,
         client: Client | None = None) -> LazyTensor:
    """Uniform [0, 1) samples drawn on the server (seeded as ``randn``)."""
    return factory("rand", size, {"dtype": dtype, "seed": seed}, client=client)


def zeros(*size: Any, dtype: torch.dtype | None = None, client: Client | None = None
          ) -> LazyTensor:
    return factory("zeros", size, {"dtype": dtype}, client=client)


def ones(*size: Any, dtype: torch.dtype | None = None, client: Client | None = None
         ) -> LazyTensor:
    return factory("ones", size, {"dtype": dtype}, client=client)


def full(size: Sequence[int], fill_value: float, *, dtype: torch.dtype | None = None,
         client: Client | None = None) -> LazyTensor:
    return factory("full", (list(size), fill_value), {"dtype": dtype}, client=client)


def arange(start: float, end: float | None = None, step: float = 1, *,
           dtype: torch.dtype | None = None, client: Client | None = None) -> LazyTensor:
    return factory("arange", (start, end, step), {"dtype": dtype}, client=client)


def eye(n: int, m: int | None = None, *, dtype: torch.dtype | None = None,
        client: Client | None = None) -> LazyTensor:
    return factory("eye", (n, m), {"dtype": dtype}, client=client)


_TORCH_FACTORIES = {torch.randn: "randn", torch.rand: "rand", torch.zeros: "zeros",
                    torch.ones: "ones", torch.empty: "empty", torch.full: "full",
                    torch.arange: "arange", torch.eye: "eye"}
#: torch factory keywords that carry no meaning remotely when left at their default.
_FACTORY_DEFAULTS = {"requires_grad": False, "layout": torch.strided, "pin_memory": False,
                     "out": None, "names": None}


class _RemoteDeviceMode(TorchFunctionMode):
    """Inside ``capture()`` where another library owns PrivateUse1: torch calls naming
    ``"remote_accelerator"`` (which torch cannot parse then) become LazyTensors."""

    def __init__(self, client: Client | None) -> None:
        super().__init__()
        self.client = client

    def __torch_function__(self, func: Any, types: Any, args: Sequence[Any] = (),
                           kwargs: Mapping[str, Any] | None = None) -> Any:
        kwargs = dict(kwargs or {})
        op_name = _TORCH_FACTORIES.get(func)
        if op_name is not None and is_remote_device(kwargs.get("device")):
            kwargs.pop("device")
            for key, default in _FACTORY_DEFAULTS.items():
                if key in kwargs and kwargs.pop(key) not in (default, None):
                    raise UnsupportedOpError(f"torch.{op_name}({key}=...) is not supported on "
                                             "the remote device")
            generator = kwargs.pop("generator", None)
            if op_name in ("full", "arange", "eye"):
                return factory(op_name, args, kwargs, client=self.client)
            size = list(args[0]) if len(args) == 1 and isinstance(args[0], (list, tuple)) \
                else list(args)
            return factory(op_name, (size,), kwargs, client=self.client, generator=generator)
        if func in (torch.tensor, torch.as_tensor) and is_remote_device(kwargs.get("device")):
            kwargs.pop("device")
            return remote(func(*args, **kwargs), client=self.client)
        if func is torch.Tensor.to and args and not isinstance(args[0], LazyTensor):
            target = kwargs.get("device", next((a for a in args[1:]
                                                if isinstance(a, (str, torch.device))), None))
            if is_remote_device(target):
                dtype = kwargs.get("dtype", next((a for a in args[1:]
                                                  if isinstance(a, torch.dtype)), None))
                return leaf(snapshot(args[0], dtype), client=self.client, resident=True,
                            requires_grad=args[0].requires_grad)
        return func(*args, **kwargs)


class capture:  # noqa: N801 - used like a function: ``with genie.capture():``
    """Capture the block's torch calls that name the remote device; choose client and
    the policy for unsupported ops (``"error"``, the default, or ``"local"``)."""

    def __init__(self, *, client: Client | None = None, fallback: str = "error") -> None:
        if fallback not in FALLBACKS:
            raise ConfigurationError(f"capture(fallback={fallback!r}): expected one of "
                                     f"{', '.join(map(repr, FALLBACKS))}")
        self.client = client
        self.fallback = fallback
        self._mode: _RemoteDeviceMode | None = None
        self._tokens: list[tuple[contextvars.ContextVar[Any], contextvars.Token[Any]]] = []

    def __enter__(self) -> capture:
        claim()  # torch parses "remote_accelerator:0" only once PrivateUse1 is named
        self._tokens = [(fallback_mode, fallback_mode.set(self.fallback))]
        if self.client is not None:
            self._tokens.append((scoped_client, scoped_client.set(self.client)))
        if not owns_privateuse1():
            self._mode = _RemoteDeviceMode(self.client)
            self._mode.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self._mode is not None:
            self._mode.__exit__(exc_type, exc, tb)
            self._mode = None
        for var, token in reversed(self._tokens):
            var.reset(token)
        self._tokens = []


def remote_module(module: torch.nn.Module, *, keep: bool = True,
                  client: Client | None = None) -> torch.nn.Module:
    """Move ``module``'s parameters and buffers to the remote device, in place.

    With ``keep`` (the default) they are uploaded once, in one request, and every
    later forward refers to them by handle.  Parameters stop requiring grad: the
    remote device runs inference only.  Returns ``module``.
    """
    slots: list[tuple[dict[str, Any], str, bool]] = []  # (module table, name, is a parameter)
    tensors: dict[int, torch.Tensor] = {}
    for mod in module.modules():
        tables: tuple[tuple[dict[str, Any], bool], ...] = ((mod._parameters, True),
                                                            (mod._buffers, False))
        for table, is_param in tables:
            for name, t in table.items():
                if t is None or isinstance(t, LazyTensor):
                    continue
                slots.append((table, name, is_param))
                tensors.setdefault(id(t), t)
    # Kept: uploaded right now, before anyone can change them, so no snapshot is needed.
    lazies = {key: leaf(t.detach(), client=client) if keep else remote(t.detach(), client=client)
              for key, t in tensors.items()}
    if keep and lazies:
        persist(*lazies.values(), client=client)
    for table, name, is_param in slots:
        lz = lazies[id(table[name])]
        table[name] = torch.nn.Parameter(lz, requires_grad=False) if is_param else lz
    return module
