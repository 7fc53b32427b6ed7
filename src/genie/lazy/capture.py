"""Ways into the remote device: ``genie.capture()``, factories, ``remote_module``.

``with genie.capture():`` installs a torch function mode for the block, so that
plain torch code that *names* the remote device is captured too:
``torch.randn(2, 3, device="remote_accelerator:0")``, ``torch.tensor(data,
device=...)``, ``cpu_tensor.to("remote_accelerator:0")`` and
``model.to("remote_accelerator:0")``.  Outside a block those calls reach torch's
dispatcher, which has no kernels for the device: use ``genie.randn(...)``,
``genie.remote(t)`` and ``genie.remote_module(model)`` there.  The block also
chooses the client (``client=``) and the policy for unsupported ops
(``fallback="local"`` runs them on the CPU, logged once per op).

``remote_module(model)`` swaps every parameter and buffer for a LazyTensor kept on
the server (uploaded in one request), so ``model(x)`` captures and each forward
sends only ``x``.
"""

from __future__ import annotations

import contextvars
from collections.abc import Mapping, Sequence
from types import TracebackType
from typing import Any

import torch
from torch.overrides import TorchFunctionMode

from genie.client import Client
from genie.errors import ConfigurationError
from genie.lazy.device import is_remote_device, remote_device
from genie.lazy.session import FALLBACKS, fallback_mode, scoped_client
from genie.lazy.tensor import LazyTensor, persist, record, remote
from genie.ops import REGISTRY

__all__ = ["arange", "capture", "eye", "full", "ones", "rand", "randn", "remote_module",
           "zeros"]


def _factory(op_name: str, args: Sequence[Any], kwargs: dict[str, Any],
             client: Client | None) -> LazyTensor:
    if kwargs.get("dtype") is None and op_name not in ("arange", "full"):
        kwargs["dtype"] = torch.get_default_dtype()  # the client's default, not the server's
    out = record(REGISTRY[op_name], args, kwargs)
    out._node.client = client
    return out


def randn(*size: Any, dtype: torch.dtype | None = None, seed: int | None = None,
          client: Client | None = None) -> LazyTensor:
    """Normal samples drawn on the server (``seed`` makes them repeatable there)."""
    return _factory("randn", size, {"dtype": dtype, "seed": seed}, client)


def rand(*size: Any, dtype: torch.dtype | None = None, seed: int | None = None,
         client: Client | None = None) -> LazyTensor:
    """Uniform [0, 1) samples drawn on the server."""
    return _factory("rand", size, {"dtype": dtype, "seed": seed}, client)


def zeros(*size: Any, dtype: torch.dtype | None = None, client: Client | None = None
          ) -> LazyTensor:
    return _factory("zeros", size, {"dtype": dtype}, client)


def ones(*size: Any, dtype: torch.dtype | None = None, client: Client | None = None
         ) -> LazyTensor:
    return _factory("ones", size, {"dtype": dtype}, client)


def full(size: Sequence[int], fill_value: float, *, dtype: torch.dtype | None = None,
         client: Client | None = None) -> LazyTensor:
    return _factory("full", (list(size), fill_value), {"dtype": dtype}, client)


def arange(start: float, end: float | None = None, step: float = 1, *,
           dtype: torch.dtype | None = None, client: Client | None = None) -> LazyTensor:
    return _factory("arange", (start, end, step), {"dtype": dtype}, client)


def eye(n: int, m: int | None = None, *, dtype: torch.dtype | None = None,
        client: Client | None = None) -> LazyTensor:
    return _factory("eye", (n, m), {"dtype": dtype}, client)


_TORCH_FACTORIES = {torch.randn: "randn", torch.rand: "rand", torch.zeros: "zeros",
                    torch.ones: "ones", torch.empty: "empty", torch.full: "full",
                    torch.arange: "arange", torch.eye: "eye"}
#: torch factory keywords that carry no meaning remotely when left at their default.
_FACTORY_DEFAULTS = {"requires_grad": False, "layout": torch.strided, "pin_memory": False,
                     "generator": None, "out": None, "names": None}


class _RemoteDeviceMode(TorchFunctionMode):
    """Inside ``capture()``: torch calls naming the remote device become LazyTensors."""

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
                    raise ConfigurationError(f"torch.{op_name}({key}=...) is not supported on "
                                             "the remote device")
            if op_name in ("randn", "rand"):
                kwargs.setdefault("seed", None)
            return _factory(op_name, args, kwargs, self.client)
        if func in (torch.tensor, torch.as_tensor) and is_remote_device(kwargs.get("device")):
            kwargs.pop("device")
            return remote(func(*args, **kwargs), client=self.client)
        if func is torch.Tensor.to and args and not isinstance(args[0], LazyTensor):
            target = kwargs.get("device", next((a for a in args[1:]
                                                if isinstance(a, (str, torch.device))), None))
            if is_remote_device(target):
                dtype = kwargs.get("dtype", next((a for a in args[1:]
                                                  if isinstance(a, torch.dtype)), None))
                local = args[0] if dtype is None else args[0].to(dtype)
                return remote(local, client=self.client)
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
        remote_device()  # torch parses "remote_accelerator:0" only once PrivateUse1 is named
        self._tokens = [(fallback_mode, fallback_mode.set(self.fallback))]
        if self.client is not None:
            self._tokens.append((scoped_client, scoped_client.set(self.client)))
        self._mode = _RemoteDeviceMode(self.client)
        self._mode.__enter__()
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._mode is not None
        self._mode.__exit__(exc_type, exc, tb)
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
    lazies = {key: remote(t.detach(), client=client) for key, t in tensors.items()}
    if keep and lazies:
        persist(*lazies.values(), client=client)
    for table, name, is_param in slots:
        lz = lazies[id(table[name])]
        table[name] = torch.nn.Parameter(lz, requires_grad=False) if is_param else lz
    return module
