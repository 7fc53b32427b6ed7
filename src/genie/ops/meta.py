"""Meta inference: what an op would produce, found without running it, and the allocation cap.

One inference serves two users.  The server checks every op a request runs against
its allocation cap before allocating anything: without that, ``repeat``, ``pad``,
``outer``, ``expand`` then ``contiguous``, broadcasting or ``full_like`` turn a
one-element request into gigabytes, which on a CPU server ends in the OOM killer.
LazyTensor needs the shape, strides and dtype of each captured op at once, and
whether the result is a view of an input (as eager torch would make it).  Both run
the same registry op on the ``meta`` device, which computes all of that without
touching memory.

Meta kernels cost 20-200 µs per call, so outcomes are cached by a key made of the op
name, every tensor's shape, strides and dtype, and every other argument's type and
value: the same key gives the same outcome by construction, and a hit costs a few µs.
The cache belongs to its user (the server's state, the LazyTensor session); it is an
LRU bounded by entries and by bytes, and arguments too large to be a key (a
15,000-element list is data, not a key) are inferred without caching.  A request
can stage what it learns (``MetaCache.stage``) and commit it only if it succeeds, so
nothing from a refused request stays.
"""

from __future__ import annotations

import functools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from genie.errors import GenieError, InvalidArgumentError
from genie.ops.registry import Op, OpContext
from genie.ops.work import DEFAULT, logical_bytes, mask_index_bytes, tensors_in, working_bytes
from genie.wire import DIM_LIMIT, MAX_RANK, dtype_name

__all__ = ["DEFAULT_CACHE_BYTES", "DEFAULT_CACHE_ENTRIES", "MetaCache", "MetaFailure",
           "MetaResult", "Spec", "SpecOf", "StagedCache", "check_alloc", "check_output",
           "data_dependent_bound", "infer", "meta_key", "nbytes_within", "shape_text",
           "tensor_spec", "warm_up"]

META = torch.device("meta")
_META_CTX = OpContext(device=META, max_alloc_bytes=1 << 62)
DEFAULT_CACHE_ENTRIES = 4096
DEFAULT_CACHE_BYTES = 8 * 1024 * 1024
#: A key holding more scalars than this (list elements, tensor dims) is data: not cached.
MAX_KEY_ITEMS = 256
#: Strings longer than this (an einsum equation) are not cached either.
MAX_KEY_TEXT = 256
#: Rough bytes per key item and per entry, for the cache's byte bound.
_ITEM_BYTES = 72
_ENTRY_BYTES = 512

#: (shape, strides, dtype) of a tensor.
Spec = tuple[tuple[int, ...], tuple[int, ...], torch.dtype]
#: How a caller's tensors are described: a Spec for a tensor, ``None`` for anything else.
SpecOf = Callable[[Any], "Spec | None"]


def tensor_spec(value: Any) -> Spec | None:
    """The spec of a real tensor (shape, strides, dtype); ``None`` for non-tensors."""
    if isinstance(value, torch.Tensor):
        return tuple(value.shape), tuple(value.stride()), value.dtype
    return None


@dataclass(frozen=True)
class MetaResult:
    """What running an op would produce.

    ``nbytes`` is the result's logical size (what encoding it for a reply costs);
    ``allocates`` is the fresh memory it takes, 0 when the result is (a view of) an
    input, whose parameter ``view_of`` names (``expand``, ``reshape``, ``dropout``).
    ``working`` is what the op allocates while it runs besides its result
    (``genie.ops.work``); ``broadcast`` the bytes its inputs present beyond the memory
    they hold (an expanded view reads as its full size), a measure of its work.
    """

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    nbytes: int
    allocates: int
    view_of: str | None
    working: int | None = 0  # None: not estimated (``infer(cost=False)``)
    broadcast: int | None = 0

    @property
    def spec(self) -> Spec:
        return self.shape, self.stride, self.dtype


@dataclass(frozen=True)
class MetaFailure:
    """Meta could not produce a result.  ``error`` is the Genie error the op raised
    (its arguments are wrong, and a real run fails the same way); ``None`` means meta
    cannot tell (no meta kernel, a data-dependent shape) and only running it can."""

    message: str
    error: type[GenieError] | None = None

    def raise_(self) -> None:
        raise (self.error or InvalidArgumentError)(self.message)


Outcome = MetaResult | MetaFailure


class MetaCache:
    """An LRU of meta outcomes, bounded by entries and by (estimated) bytes; thread-safe."""

    def __init__(self, max_entries: int = DEFAULT_CACHE_ENTRIES,
                 max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Any, tuple[Outcome, int]] = OrderedDict()
        self._lock = threading.Lock()
        self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Any) -> Outcome | None:
        with self._lock:
            hit = self._entries.get(key)
            if hit is None:
                return None
            self._entries.move_to_end(key)
            return hit[0]

    def put(self, key: Any, outcome: Outcome, cost: int) -> None:
        if cost > self.max_bytes:
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.nbytes -= old[1]
            self._entries[key] = (outcome, cost)
            self.nbytes += cost
            while len(self._entries) > self.max_entries or self.nbytes > self.max_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self.nbytes -= dropped

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def stage(self) -> StagedCache:
        """A view for one request: reads go through, writes wait for ``commit``."""
        return StagedCache(self)


class StagedCache:
    """What one request learned, kept aside until it succeeds (``commit``); a refused
    request's entries are dropped with it."""

    def __init__(self, parent: MetaCache) -> None:
        self.parent = parent
        self._new: dict[Any, tuple[Outcome, int]] = {}

    def get(self, key: Any) -> Outcome | None:
        hit = self._new.get(key)
        return hit[0] if hit is not None else self.parent.get(key)

    def put(self, key: Any, outcome: Outcome, cost: int) -> None:
        if cost <= self.parent.max_bytes and len(self._new) < self.parent.max_entries:
            self._new[key] = (outcome, cost)

    def commit(self) -> None:
        for key, (outcome, cost) in self._new.items():
            self.parent.put(key, outcome, cost)
        self._new.clear()


Cache = MetaCache | StagedCache


class _TooBig(Exception):
    """An argument is data, not a key."""


def meta_key(op: Op, bound: Mapping[str, Any], spec: SpecOf = tensor_spec
             ) -> tuple[Any, int] | None:
    """(key, number of scalars in it) for ``op`` on ``bound``, or ``None`` when the
    arguments are too large (or unhashable) to make a key of."""
    count = [0]

    def part(value: Any) -> Any:
        s = spec(value)
        if s is not None:
            count[0] += len(s[0]) + 1
            return s
        if isinstance(value, (list, tuple)):
            count[0] += len(value)
            if count[0] > MAX_KEY_ITEMS:
                raise _TooBig
            return (type(value), tuple(part(v) for v in value))
        count[0] += 1
        if isinstance(value, slice):
            return ("slice", value.start, value.stop, value.step)
        if isinstance(value, str) and len(value) > MAX_KEY_TEXT:
            raise _TooBig
        if type(value) is int and not -DIM_LIMIT <= value < DIM_LIMIT:
            raise _TooBig
        return (type(value), value)

    try:
        # A factory's seed changes the values drawn, never the shape: not in the key.
        parts = tuple(part(None if op.factory and name == "seed" else v)
                      for name, v in bound.items())
        key = (op.name, parts)
        hash(key)
    except (_TooBig, TypeError):
        return None
    if count[0] > MAX_KEY_ITEMS:
        return None
    return key, count[0]


def _to_meta(value: Any, spec: SpecOf) -> Any:
    s = spec(value)
    if s is not None:
        return torch.empty_strided(s[0], s[1], dtype=s[2], device=META)
    if isinstance(value, list):
        return [_to_meta(v, spec) for v in value]
    if isinstance(value, tuple):
        return tuple(_to_meta(v, spec) for v in value)
    return value


def _run_on_meta(op: Op, bound: Mapping[str, Any], spec: SpecOf, cost: bool) -> Outcome:
    """``_meta_outcome``, never compiled: in a torch.compile region (a LazyTensor
    program), dynamo resuming there after a graph break once built a broken graph of
    these meta ops.  ``torch.compiler.disable`` imports dynamo (about a second of every
    ``import genie``), so the guard is made only once something has loaded dynamo:
    before that, nothing can be compiling."""
    if "torch._dynamo" in sys.modules:
        return _uncompiled()(op, bound, spec, cost)
    return _meta_outcome(op, bound, spec, cost)


@functools.cache
def _uncompiled() -> Callable[[Op, Mapping[str, Any], SpecOf, bool], Outcome]:
    return torch.compiler.disable(_meta_outcome)


def _meta_outcome(op: Op, bound: Mapping[str, Any], spec: SpecOf, cost: bool) -> Outcome:
    metas = {k: _to_meta(v, spec) for k, v in bound.items()}
    if op.factory and metas.get("seed") is not None:
        metas["seed"] = None
    try:
        out = op(metas, _META_CTX)
    except GenieError as exc:
        return MetaFailure(exc.message, type(exc))
    except Exception as exc:  # noqa: BLE001 - no meta kernel, data-dependent shape, ...
        return MetaFailure(f"{type(exc).__name__}: {exc}")
    if not isinstance(out, torch.Tensor):
        return MetaFailure(f"op {op.name!r} did not produce a tensor", InvalidArgumentError)
    view_of = None
    for name, value in metas.items():
        candidates = value if isinstance(value, (list, tuple)) else (value,)
        if any(isinstance(m, torch.Tensor) and (out is m or out._base is m) for m in candidates):
            view_of = name
            break
    nbytes = out.numel() * out.element_size()
    allocates = 0 if view_of is not None else out.untyped_storage().nbytes()
    working: int | None
    broadcast: int | None
    if not cost:
        working = broadcast = None
    elif view_of is not None:
        working = broadcast = 0  # a view runs no kernel
    else:
        try:
            working = working_bytes(op.name, metas, out)
        except Exception:  # noqa: BLE001 - a rule that does not fit these arguments
            working = DEFAULT(metas, out)
        broadcast = sum(max(0, logical_bytes(t) - t.untyped_storage().nbytes())
                        for _, t in tensors_in(metas))
    return MetaResult(tuple(out.shape), tuple(out.stride()), out.dtype, nbytes, allocates,
                      view_of, working, broadcast)


def infer(op: Op, bound: Mapping[str, Any], cache: Cache | None, *,
          spec: SpecOf = tensor_spec, cost: bool = True) -> Outcome:
    """The outcome of ``op`` on ``bound`` (tensors described by ``spec``), inferred on
    meta and cached in ``cache`` when the arguments make a key.

    ``cost``: also estimate its working memory and broadcast reads, what the allocation
    cap needs (LazyTensor, which only wants shapes, asks without).
    """
    keyed = meta_key(op, bound, spec) if cache is not None else None
    if keyed is not None:
        assert cache is not None
        hit = cache.get(keyed[0])
        if hit is not None and not (cost and isinstance(hit, MetaResult)
                                    and hit.working is None):
            return hit
    outcome = _run_on_meta(op, bound, spec, cost)
    if keyed is not None:
        assert cache is not None
        cache.put(keyed[0], outcome, _ENTRY_BYTES + _ITEM_BYTES * keyed[1])
    return outcome


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


def shape_text(shape: Sequence[int]) -> str:
    return str(list(shape)) if len(shape) <= 8 else f"{len(shape)}-dimensional"


def check_alloc(shape: Sequence[int], dtype: torch.dtype | None, ctx: OpContext) -> None:
    """Refuse a factory size whose tensor would pass the cap (sizes are already bounded
    by ``genie.ops.args.SIZE``; checked again here for callers that skip it)."""
    if len(shape) > MAX_RANK or any(not 0 <= d < DIM_LIMIT for d in shape):
        raise InvalidArgumentError(
            f"size must be at most {MAX_RANK} non-negative dimensions, each below 2**63")
    itemsize = (dtype or torch.get_default_dtype()).itemsize
    if nbytes_within(shape, itemsize, ctx.max_alloc_bytes) is None:
        raise InvalidArgumentError(
            f"a {shape_text(shape)} tensor needs more than the server's "
            f"{ctx.max_alloc_bytes}-byte allocation limit")


def check_output(op: Op, bound: Mapping[str, Any], ctx: OpContext, cache: Cache | None, *,
                 materialized: bool, already: int = 0) -> MetaResult | None:
    """Refuse (422) running ``op`` when its result and its working memory would pass
    the allocation cap, or when it would read more through broadcast inputs than the
    cap (an expanded view costs no memory, but the op does the work of its full size).

    ``materialized``: the result will be encoded for a reply, so a view costs its
    full logical size; otherwise only fresh memory counts.  ``already`` is memory
    the caller holds for this request (a graph's live intermediates).  ``None`` when
    meta cannot tell (a data-dependent result): the caller checks
    ``data_dependent_bound`` first, runs the op and measures the real result.
    """
    outcome = infer(op, bound, cache)
    if isinstance(outcome, MetaFailure):
        return None  # the real run reports the op's own error
    if len(outcome.shape) > MAX_RANK:  # no reader (ours, safetensors) would take it back
        raise InvalidArgumentError(
            f"op {op.name!r} would produce a {len(outcome.shape)}-dimensional tensor; "
            f"at most {MAX_RANK} dimensions travel on the wire")
    cost = outcome.nbytes if materialized else outcome.allocates
    limit = ctx.max_alloc_bytes
    working, broadcast = outcome.working or 0, outcome.broadcast or 0
    if cost + working + already > limit:
        held = f" with {already} bytes already live in this graph" if already else ""
        note = (f" and about {working} bytes of working memory while it runs"
                if working else "")
        raise InvalidArgumentError(
            f"op {op.name!r} would produce a {shape_text(outcome.shape)} "
            f"{dtype_name(outcome.dtype)} tensor of {outcome.nbytes} bytes{note}{held}, "
            f"over the server's {limit}-byte allocation limit (--max-compute-mb)")
    if broadcast > limit:
        raise InvalidArgumentError(
            f"op {op.name!r} would read {broadcast} bytes through broadcast "
            f"(expanded) inputs, more than the server's {limit}-byte allocation limit "
            "(--max-compute-mb) allows an op to read or write")
    return outcome


def data_dependent_bound(bound: Mapping[str, Any]) -> int:
    """An upper bound of what an op whose result meta cannot size (boolean-mask
    indexing) allocates: a result no larger than its inputs, a working copy, and the
    int64 indices of a mask's selected elements."""
    total = 0
    for _, t in tensors_in(bound):
        total += 2 * logical_bytes(t) + mask_index_bytes(t)
    return total


def warm_up() -> None:
    """Pay the first meta dispatch now: it imports torch's Python meta kernels, about
    1.5 s once per process, which would otherwise land on the first request."""
    torch.relu(torch.empty(1, device=META))
