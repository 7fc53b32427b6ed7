"""The allocation cap: how many bytes one op may allocate on the server.

Every op a request runs is first run on the ``meta`` device, which computes the
result's shape, strides and dtype without touching memory; a result over
``OpContext.max_alloc_bytes`` is refused with a 422 before anything real is
allocated.  Without this, ``repeat``, ``pad``, ``outer``, ``expand`` followed by
``contiguous``, broadcasting arithmetic or ``full_like`` can each turn a one-element
request into gigabytes, which on a CPU server ends in the OOM killer, not a 503.

Meta kernels cost 20-200 µs per call, so the outcome is cached by a key made of the
op name, every tensor's shape, strides and dtype, and every other argument's type and
value: the same key gives the same result shape by construction, and a hit costs a
few µs.  The cache is per process, like torch's own kernel caches, and bounded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from genie.errors import InvalidArgumentError
from genie.wire import DIM_LIMIT, MAX_RANK, dtype_name

if TYPE_CHECKING:
    from genie.ops import Op

__all__ = ["OpContext", "OutputSize", "check_alloc", "check_output", "infer_output",
           "nbytes_within", "warm_up"]

_META = torch.device("meta")
_MAX_CACHE = 65536


@dataclass(frozen=True)
class OpContext:
    """What ops need from the server: where to allocate, and how much at most."""

    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    max_alloc_bytes: int = 1 << 34


def nbytes_within(shape: Sequence[int], itemsize: int, limit: int) -> int | None:
    """``prod(shape) * itemsize``, or ``None`` once it passes ``limit``.

    Stops multiplying as soon as the running product passes the limit, so the work
    stays small whatever the dims are (a product of hundreds of huge integers is
    quadratic big-integer arithmetic).  A zero dim anywhere makes the product 0.
    """
    if 0 in shape:
        return 0
    total = itemsize
    for d in shape:
        total *= d
        if total > limit:
            return None
    return total


def check_alloc(shape: Sequence[int], dtype: torch.dtype | None, ctx: OpContext) -> None:
    """Refuse a factory size whose tensor would pass the cap (sizes are already bounded
    by ``genie.op_args.SIZE``; checked again here for callers that skip it)."""
    if len(shape) > MAX_RANK or any(not 0 <= d < DIM_LIMIT for d in shape):
        raise InvalidArgumentError("size must be at most 64 non-negative dimensions, each below 2**63")
    itemsize = (dtype or torch.get_default_dtype()).itemsize
    if nbytes_within(shape, itemsize, ctx.max_alloc_bytes) is None:
        raise InvalidArgumentError(
            f"a {_shape_text(shape)} tensor needs more than the server's "
            f"{ctx.max_alloc_bytes}-byte allocation limit")


def _shape_text(shape: Sequence[int]) -> str:
    return str(list(shape)) if len(shape) <= 8 else f"{len(shape)}-dimensional"


@dataclass(frozen=True)
class OutputSize:
    """What running an op would produce: its shape, dtype, and bytes.

    ``nbytes`` is the result's logical size (what encoding it for a reply costs);
    ``allocates`` is the fresh memory it takes, 0 when the result is a view of (or
    is) one of its inputs, as ``expand``/``reshape``/``dropout`` results are.
    """

    shape: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    allocates: int


#: key -> OutputSize, or None when meta cannot say (data-dependent shapes and the
#: like): the op then runs, and its real result is measured instead.
_cache: dict[Any, OutputSize | None] = {}


def _key_part(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return (value.shape, value.stride(), value.dtype)
    if isinstance(value, (list, tuple)):
        return (type(value), tuple(_key_part(v) for v in value))
    if isinstance(value, slice):
        return ("slice", value.start, value.stop, value.step)
    return (type(value), value)


def _to_meta(value: Any, metas: list[torch.Tensor]) -> Any:
    if isinstance(value, torch.Tensor):
        meta = torch.empty_strided(value.shape, value.stride(), dtype=value.dtype, device=_META)
        metas.append(meta)
        return meta
    if isinstance(value, list):
        return [_to_meta(v, metas) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_meta(v, metas) for v in value)
    return value


def infer_output(op: Op, bound: Mapping[str, Any]) -> OutputSize | None:
    """The op's result size on ``bound``, inferred on meta and cached; ``None`` when
    meta cannot tell (the op's own error, if any, then comes from the real run)."""
    key = (op.name, tuple(_key_part(v) for v in bound.values()))
    try:
        return _cache[key]
    except KeyError:
        pass
    except TypeError:  # an unhashable argument: infer without caching
        return _infer(op, bound)
    size = _infer(op, bound)
    if len(_cache) >= _MAX_CACHE:
        _cache.clear()
    _cache[key] = size
    return size


def _infer(op: Op, bound: Mapping[str, Any]) -> OutputSize | None:
    inputs: list[torch.Tensor] = []
    metas = {k: _to_meta(v, inputs) for k, v in bound.items()}
    if op.factory and metas.get("seed") is not None:
        metas["seed"] = None  # the seed changes values, never the shape
    try:
        out = op(metas, OpContext(device=_META, max_alloc_bytes=1 << 62))
    except Exception:  # noqa: BLE001 - the real run reports the op's own error
        return None
    if not isinstance(out, torch.Tensor):
        return None
    nbytes = out.numel() * out.element_size()
    aliases = out._base if out._base is not None else out
    allocates = 0 if any(aliases is t for t in inputs) else out.untyped_storage().nbytes()
    return OutputSize(tuple(out.shape), out.dtype, nbytes, allocates)


def check_output(op: Op, bound: Mapping[str, Any], ctx: OpContext, *,
                 materialized: bool, already: int = 0) -> OutputSize | None:
    """Refuse (422) running ``op`` when its result would pass the allocation cap.

    ``materialized``: the result will be encoded for a reply, so a view costs its
    full logical size; otherwise only fresh memory counts.  ``already`` is memory
    the caller holds for this request (a graph's live intermediates).
    """
    size = infer_output(op, bound)
    if size is None:
        return None
    cost = size.nbytes if materialized else size.allocates
    if cost + already > ctx.max_alloc_bytes:
        held = f" with {already} bytes already live in this graph" if already else ""
        raise InvalidArgumentError(
            f"op {op.name!r} would produce a {_shape_text(size.shape)} "
            f"{dtype_name(size.dtype)} tensor of {size.nbytes} bytes{held}, "
            f"over the server's {ctx.max_alloc_bytes}-byte allocation limit")
    return size


def warm_up() -> None:
    """Pay the first meta dispatch now: it imports torch's Python meta kernels, about
    1.5 s once per process, which would otherwise land on the first request."""
    torch.relu(torch.empty(1, device=_META))
