"""The remote device's kernels: what torch runs to make a tensor on it or move one there.

Registered with ``torch.library`` for the PrivateUse1 dispatch key when Genie claims
it (``genie.lazy.device``), so they are reached exactly when torch's dispatcher
routes a call to the remote device: ``torch.randn(2, 3, device="remote_accelerator:0")``,
``torch.zeros(n, device=x.device)`` inside a library, ``t.to(remote)``,
``torch.tensor(data, device=remote)``, ``model.to(remote)``.  Ordinary CPU or CUDA
code never reaches them, so they cost it nothing, and they work in every thread
(a torch function mode would be thread-local and tax every call in the process).

A factory records its registry op (``randn``, ``zeros``, ``full``...) as a node with
no inputs.  A move is torch's own ``_to_copy``: an ``empty_strided`` on the device
(a node nothing will send) then ``copy_`` from the local tensor, which rebinds the
new LazyTensor to a *resident* snapshot of it (``genie.lazy.tensor.move_into``).
Random factories take their seed from the device's generator (see
``genie.lazy.device``), or from the ``generator=`` they were given.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from genie.client import Client
from genie.errors import UnsupportedOpError
from genie.lazy.device import RNG, on_claim
from genie.lazy.session import scoped_client
from genie.lazy.tensor import LazyTensor, move_into, record
from genie.ops import REGISTRY

__all__ = ["RANDOM_FACTORIES", "factory", "install"]

#: Registry factories that draw random numbers: they get a seed.
RANDOM_FACTORIES = frozenset({"randn", "rand"})


def factory(op_name: str, args: Sequence[Any], kwargs: dict[str, Any], *,
            client: Client | None = None, generator: torch.Generator | None = None
            ) -> LazyTensor:
    """A registry factory on the remote device (``genie.randn``, ``torch.randn(device=...)``).

    ``dtype=None`` means the client's default dtype (not the server's), or for ``full``
    and ``arange`` what torch infers from the values; a random factory without a
    ``seed`` draws one from ``generator`` or the device's generator.
    """
    kwargs = dict(kwargs)
    if kwargs.get("dtype") is None:
        kwargs["dtype"] = _default_dtype(op_name, args)
    if op_name in RANDOM_FACTORIES and kwargs.get("seed") is None:
        kwargs["seed"] = RNG.next_seed(generator)
    out = record(REGISTRY[op_name], args, kwargs)
    out._node.client = client or scoped_client.get()
    return out


def _default_dtype(op_name: str, args: Sequence[Any]) -> torch.dtype:
    if op_name == "full":
        return torch.full((), args[1], device="meta").dtype
    if op_name == "arange":
        return torch.arange(*[a for a in args if a is not None], device="meta").dtype
    return torch.get_default_dtype()


def _options(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """The keyword options torch passes a factory kernel, as registry arguments."""
    device = kwargs.get("device")
    if isinstance(device, torch.device) and device.index not in (None, 0):
        raise UnsupportedOpError(f"the remote device has one index, 0; {name} asked for "
                                 f"{device}")
    layout = kwargs.get("layout")
    if layout not in (None, torch.strided):
        raise UnsupportedOpError(f"{name}(layout={layout}) is not supported on the remote device")
    return {"dtype": kwargs.get("dtype")}


def _sized(op_name: str) -> Any:
    def kernel(size: Sequence[int], *rest: Any, **kwargs: Any) -> LazyTensor:
        generator = kwargs.pop("generator", None)
        return factory(op_name, (list(size), *rest), _options(op_name, kwargs),
                       generator=generator)
    return kernel


def _empty_strided(size: Sequence[int], stride: Sequence[int], **kwargs: Any) -> LazyTensor:
    # Contiguous whatever the strides asked: what is sent is contiguous, and meta
    # inference must describe what the server will hold.
    return factory("empty", (list(size),), _options("empty_strided", kwargs))


def _scalar_tensor(s: Any, **kwargs: Any) -> LazyTensor:
    options = _options("scalar_tensor", kwargs)
    options["dtype"] = options["dtype"] or torch.get_default_dtype()
    return factory("full", ([], s), options)


def _full(size: Sequence[int], fill_value: Any, **kwargs: Any) -> LazyTensor:
    return factory("full", (list(size), fill_value), _options("full", kwargs))


def _arange(*args: Any, **kwargs: Any) -> LazyTensor:
    start, end, step = (0, args[0], 1) if len(args) == 1 else (*args, 1)[:3]
    return factory("arange", (start, end, step), _options("arange", kwargs))


def _eye(n: int, m: int | None = None, **kwargs: Any) -> LazyTensor:
    return factory("eye", (n, m), _options("eye", kwargs))


def _copy_from(src: torch.Tensor, dst: torch.Tensor, non_blocking: bool = False) -> torch.Tensor:
    """``dst.copy_(src)`` across devices (torch's C++ paths, ``torch.tensor(device=)``)."""
    return move_into(dst, src)


#: aten overload -> kernel for the PrivateUse1 key.
_KERNELS: dict[str, Any] = {
    "empty.memory_format": _sized("empty"), "empty_strided": _empty_strided,
    "randn": _sized("randn"), "randn.generator": _sized("randn"),
    "rand": _sized("rand"), "rand.generator": _sized("rand"),
    "zeros": _sized("zeros"), "ones": _sized("ones"), "full": _full,
    "arange": _arange, "arange.start": _arange, "arange.start_step": _arange,
    "eye": _eye, "eye.m": _eye, "scalar_tensor": _scalar_tensor, "_copy_from": _copy_from,
}


class _Library:
    """The torch.library registration, alive for the process (dropping it unregisters)."""

    lib: torch.library.Library | None = None


def install() -> None:
    """Register the kernels for PrivateUse1 (once; called when Genie claims it)."""
    if _Library.lib is not None:
        return
    lib = torch.library.Library("aten", "IMPL")
    for name, kernel in _KERNELS.items():
        lib.impl(name, kernel, "PrivateUse1")
    _Library.lib = lib


on_claim(install)
