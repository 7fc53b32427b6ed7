"""Handlers for torch calls that need more than "one registry op, same arguments".

``OpCall`` is the common case (bind torch's arguments to a registry op, with
torch-only parameters accepted at their defaults).  The rest are small
translations: ``Tensor.to`` and the cast methods, reflected operators
(``1 - x`` is ``neg`` then ``add``; ``2 / x`` is ``reciprocal`` then ``mul``, as
torch defines it), ``max(dim=...)`` returning (values, indices), ``chunk``/``split``
as ``narrow`` nodes, indexing with lists and boolean masks, ``fill_``/``copy_``,
``new_zeros`` and friends, and the calls that need a value (``item``, ``bool``,
``repr``...), which materialize.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from genie.errors import InvalidArgumentError, UnsupportedOpError
from genie.lazy.backend import factory
from genie.lazy.device import is_remote_device, remote_device
from genie.lazy.node import contiguous_strides
from genie.lazy.tensor import (
    AUTOGRAD_MESSAGE,
    Handler,
    LazyTensor,
    alias,
    copy_of,
    lift,
    local_value,
    move_into,
    record,
    refill,
    refused,
)
from genie.ops import REGISTRY, Op

__all__ = ["GETTERS", "OpCall", "func_name", "getitem", "pieces", "rsub",
           "scaled_dot_product_attention", "special_handlers"]


def func_name(func: Any) -> str:
    """``torch.Tensor.add_``, ``torch.nn.functional.relu``: how users spell it."""
    if getattr(func, "__name__", None) in ("__get__", "__set__"):
        owner = getattr(func, "__self__", None)
        return f"torch.Tensor.{getattr(owner, '__name__', '?')}"
    name = getattr(func, "__name__", repr(func))
    objclass = getattr(func, "__objclass__", None)
    qual = getattr(func, "__qualname__", "")
    if objclass is not None or qual.startswith(("Tensor.", "TensorBase.")):
        return f"torch.Tensor.{name}"
    module = getattr(func, "__module__", None) or ""
    if module.startswith("torch.nn.functional") or func is getattr(F, name, None):
        return f"torch.nn.functional.{name}"
    if module.startswith("torch._C._nn"):
        return f"torch.nn.functional.{name}"
    if name.startswith("linalg_"):
        return f"torch.linalg.{name[len('linalg_'):]}"
    return f"torch.{name}"


class OpCall:
    """A torch function that is one registry op: bind, check, capture."""

    __slots__ = ("extras", "inplace", "names", "op", "prefill")

    def __init__(self, op: Op, *, names: Sequence[str] | None = None,
                 extras: Mapping[str, Any] | None = None, inplace: bool = False,
                 prefill: Mapping[str, Any] | None = None) -> None:
        self.op = op
        self.names = tuple(names) if names is not None else None
        self.extras = dict(extras or {})
        self.inplace = inplace
        self.prefill = dict(prefill or {})

    def __call__(self, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        if self.names is None and not self.extras:
            return record(self.op, args, kwargs, inplace=self.inplace)
        if self.names is None:
            kw = dict(kwargs)
            pos: Sequence[Any] = args
        else:
            if len(args) > len(self.names):
                raise refused(InvalidArgumentError(f"{func_name(func)} takes at most "
                                                   f"{len(self.names)} positional arguments"))
            kw = dict(self.prefill)
            kw.update(zip(self.names, args, strict=False))
            kw.update(kwargs)
            pos = ()
        inplace = self.inplace or bool(kw.pop("inplace", False))
        kw.pop("_stacklevel", None)
        for name, default in self.extras.items():
            if name in kw:
                value = kw.pop(name)
                if not (value is default or value == default
                        or (name == "device" and is_remote_device(value))):
                    raise refused(UnsupportedOpError(
                        f"{func_name(func)}({name}={value!r}) is not supported remotely; "
                        f"only {name}={default!r}"))
        return record(self.op, pos, kw, inplace=inplace)


# --- special handlers ---

def _first_lazy(args: Sequence[Any]) -> LazyTensor:
    t = args[0]
    return t if isinstance(t, LazyTensor) else lift(t)


def _spec_dtype(t: Any) -> torch.dtype:
    return t._spec[2] if isinstance(t, LazyTensor) else t.dtype


def _cast(t: LazyTensor, dtype: torch.dtype) -> LazyTensor:
    return t if t._spec[2] == dtype else record(REGISTRY["to"], (t, dtype), {})


def _to(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``Tensor.to``: a dtype is captured, the remote device is a no-op, cpu fetches."""
    self = _first_lazy(args)
    device: Any = None
    dtype: torch.dtype | None = None
    for a in args[1:]:
        if isinstance(a, torch.dtype):
            dtype = a
        elif isinstance(a, (str, torch.device)):
            device = a
        elif isinstance(a, torch.Tensor):
            dtype = _spec_dtype(a)
            device = a.device
    dtype = kwargs.get("dtype", dtype)
    device = kwargs.get("device", device)
    if device is not None and not is_remote_device(device):
        # a fresh tensor, as from a device-to-host copy: never the cache later graphs send
        return local_value(self).to(device=device, dtype=dtype, copy=True)
    return self if dtype is None else _cast(self, dtype)


def _cast_method(dtype: torch.dtype) -> Handler:
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return _cast(_first_lazy(args), dtype)
    return handler


def _type_as(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    other = args[1] if len(args) > 1 else kwargs["other"]
    return _cast(_first_lazy(args), _spec_dtype(other))


def _fetching(method: Callable[..., Any], *, fresh: bool = False) -> Handler:
    """Anything that needs a value (item, bool, print...): materialize, then ask the CPU.

    ``fresh``: the result shares memory with its input (``cpu``, ``numpy``), so the
    method gets a copy, as a device-to-host transfer would: the cached value is what
    later graphs send, and a caller editing what it got must not change them.
    """
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        values = [(local_value(a).clone() if fresh else local_value(a))
                  if isinstance(a, LazyTensor) else a for a in args]
        return method(*values, **kwargs)
    return handler


def _repr(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    return repr(local_value(args[0])).replace("tensor(", "LazyTensor(", 1) \
        + f"  # on {remote_device()}"


def _detach(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return alias(args[0])


def _self(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return args[0]


def _contiguous(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    t: LazyTensor = args[0]
    shape, stride, _ = t._spec
    if stride == contiguous_strides(shape):
        return t
    return record(REGISTRY["contiguous"], (t,), {})


def _binary_swapped(op_name: str) -> Handler:
    """``other OP self`` for a commutative op or matmul (``__rmatmul__``)."""
    op = REGISTRY[op_name]

    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        self, other = args[0], args[1]
        if op_name == "matmul":
            return record(op, (other, self), {})
        return record(op, (self, other), {})
    return handler


def rsub(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    # other - alpha*self == (-self)*alpha + other, exactly (negation is exact).
    self, other = _first_lazy(args), args[1]
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    neg = record(REGISTRY["neg"], (self,), {})
    if alpha != 1:
        neg = record(REGISTRY["mul"], (neg, alpha), {})
    return record(REGISTRY["add"], (neg, other), {})


def _rdiv(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    # torch's own definition: self.reciprocal() * other
    recip = record(REGISTRY["reciprocal"], (_first_lazy(args),), {})
    return record(REGISTRY["mul"], (recip, args[1]), {})


def _rpow(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    self, base = _first_lazy(args), args[1]
    if isinstance(base, torch.Tensor):
        return record(REGISTRY["pow"], (base, self), {})
    meta = torch.empty((), dtype=self._spec[2], device="meta")
    dtype = torch.result_type(base, meta) if not isinstance(base, bool) else self._spec[2]
    filled = record(REGISTRY["full_like"], (self, base), {"dtype": dtype})
    return record(REGISTRY["pow"], (filled, self), {})


def _max_min(name: str) -> Handler:
    values_op, index_op, pair_op = REGISTRY[name], REGISTRY[f"arg{name}"], \
        REGISTRY["maximum" if name == "max" else "minimum"]
    result_type = torch.return_types.max if name == "max" else torch.return_types.min

    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        kw = dict(kwargs)
        rest = list(args[1:])
        other = rest[0] if rest else kw.get("other")
        if isinstance(other, torch.Tensor):
            return record(pair_op, (args[0], other), {})
        dim = rest.pop(0) if rest else kw.pop("dim", None)
        keepdim = rest.pop(0) if rest else kw.pop("keepdim", False)
        if dim is None:
            return record(values_op, (args[0],), kw)
        values = record(values_op, (args[0], dim, keepdim), kw)
        indices = record(index_op, (args[0], dim, keepdim), kw)
        return result_type((values, indices))
    return handler


def _where_method(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    self = args[0]
    condition = args[1] if len(args) > 1 else kwargs["condition"]
    other = args[2] if len(args) > 2 else kwargs["other"]
    return record(REGISTRY["where"], (condition, self, other), {})


def _norm(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    names = ("input", "p", "dim", "keepdim", "dtype") if func is not torch.linalg.vector_norm \
        else ("input", "ord", "dim", "keepdim", "dtype")
    kw = dict(zip(names, args, strict=False))
    kw.update(kwargs)
    if "ord" in kw:
        kw["p"] = kw.pop("ord")
    if kw.pop("dtype", None) is not None:
        raise UnsupportedOpError(f"{func_name(func)}(dtype=...) is not supported remotely")
    if kw.get("p", "fro") == "fro":
        kw["p"] = 2
    dim = kw.get("dim")
    if isinstance(kw["p"], str) or (func is not torch.linalg.vector_norm and dim is not None
                                    and not isinstance(dim, int) and len(dim) > 2):
        raise UnsupportedOpError(f"{func_name(func)}(p={kw['p']!r}, dim={dim!r}) is not "
                                 "supported remotely; vector norms are")
    return record(REGISTRY["norm"], (), kw)


def _index_item(item: Any) -> Any:
    if isinstance(item, list):  # x[[0, 2]] is advanced indexing, not a tuple index
        return torch.tensor(item)
    if isinstance(item, torch.Tensor) and _spec_dtype(item) == torch.bool:
        # A mask's result shape depends on its values: fetch it, index by position.
        mask = local_value(item) if isinstance(item, LazyTensor) else item
        return mask.nonzero(as_tuple=True)
    return item


def _index(index: Any) -> Any:
    """A Python index as the ``getitem``/``setitem`` ops take it (lists and masks become
    position tensors)."""
    items = list(index) if isinstance(index, tuple) else [index]
    flat: list[Any] = []
    for item in items:
        converted = _index_item(item)
        if isinstance(converted, tuple):
            flat.extend(converted)
        else:
            flat.append(converted)
    return tuple(flat) if len(flat) != 1 or isinstance(index, tuple) else flat[0]


def getitem(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return record(REGISTRY["getitem"], (_first_lazy(args), _index(args[1])), {})


def pieces(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any], *,
           view: bool = True) -> Any:
    """chunk / split / unbind (torch's or aten's) as ``narrow``/``select`` nodes; sizes
    from meta.  ``view=False`` for aten's ``unsafe_split``: not tracked as views."""
    self = _first_lazy(args)
    shape, stride, dtype = self._spec
    meta = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    with torch._C.DisableTorchFunctionSubclass():
        parts = func(meta, *args[1:], **kwargs)
    name = getattr(func, "__name__", "").split(".")[0]
    if name == "unbind":
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        return tuple(record(REGISTRY["select"], (self, dim, i), {}, view=view)
                     for i in range(len(parts)))
    dim = kwargs.get("dim", args[2] if len(args) > 2 else 0)
    dim = dim + len(shape) if dim < 0 else dim
    out, start = [], 0
    for part in parts:
        length = part.shape[dim]
        out.append(record(REGISTRY["narrow"], (self, dim, start, length), {}, view=view))
        start += length
    return tuple(out)


def _transpose_all(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    t: LazyTensor = args[0]
    return record(REGISTRY["permute"], (t, list(range(len(t._spec[0]) - 1, -1, -1))), {})


def _matrix_transpose(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return record(REGISTRY["transpose"], (args[0], -2, -1), {})


def _fill(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    self = args[0]
    value = args[1] if len(args) > 1 else kwargs["value"]
    if isinstance(value, torch.Tensor):
        raise refused(UnsupportedOpError("torch.Tensor.fill_ with a tensor value is not "
                                         "supported remotely; pass a number"))
    return refill(self, value)


def _zero(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return refill(args[0], 0)


def _copy(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``dst.copy_(src)``: a local src is a resident snapshot (``load_state_dict`` into a
    moved model uploads once)."""
    return move_into(args[0], args[1])


def _type(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    dtype = args[1] if len(args) > 1 else kwargs.get("dtype")
    if not isinstance(dtype, torch.dtype):
        raise UnsupportedOpError("torch.Tensor.type on a LazyTensor takes a torch.dtype; "
                                 "use .dtype to read the type")
    return _cast(_first_lazy(args), dtype)


def _new_factory(op_name: str) -> Handler:
    """``t.new_zeros(size)`` and friends: a server-side factory with ``t``'s dtype."""
    op = REGISTRY[op_name]

    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        self: LazyTensor = args[0]
        kw = dict(kwargs)
        if "device" in kw and not is_remote_device(kw.pop("device")):
            raise UnsupportedOpError(f"{func_name(func)}(device=...): only the remote device")
        if kw.pop("requires_grad", False):
            raise UnsupportedOpError(f"{func_name(func)}(requires_grad=True) is not supported")
        kw["dtype"] = kw.get("dtype") or self._spec[2]
        rest = list(args[1:])
        if op_name == "full":
            size = rest.pop(0) if rest else kw.pop("size")
            value = rest.pop(0) if rest else kw.pop("fill_value")
            return factory("full", (list(size), value), kw)
        if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
            rest = list(rest[0])  # new_ones(()) is a 0-d size, not no size
        if "size" in kw:
            rest = list(kw.pop("size"))
        return factory(op.name, (list(rest),), kw)
    return handler


_LIKE_EXTRAS = {"layout": None, "device": None, "requires_grad": False,
                "memory_format": torch.preserve_format, "pin_memory": False}


def _like(op_name: str) -> Handler:
    return OpCall(REGISTRY[op_name], extras=_LIKE_EXTRAS)


def _random_like(op_name: str) -> Handler:
    """``randn_like``/``rand_like``/``empty_like``: a factory with ``t``'s shape and dtype
    (seeded from the device's generator, like ``torch.randn(device=...)``)."""
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        self: LazyTensor = _first_lazy(args)
        kw = dict(kwargs)
        dtype = kw.pop("dtype", None) or self._spec[2]
        for name, default in _LIKE_EXTRAS.items():
            value = kw.pop(name, default)
            if not (value is default or value == default
                    or (name == "device" and is_remote_device(value))):
                raise refused(UnsupportedOpError(f"{func_name(func)}({name}={value!r}) is not "
                                                 "supported remotely"))
        if kw:
            raise refused(UnsupportedOpError(f"{func_name(func)}({', '.join(kw)}=...) is not "
                                             "supported remotely"))
        return factory(op_name, (list(self._spec[0]),), {"dtype": dtype})
    return handler


def scaled_dot_product_attention(func: Any, args: Sequence[Any],
                                 kwargs: Mapping[str, Any]) -> Any:
    """``F.scaled_dot_product_attention``; ``enable_gqa=True`` (grouped-query attention,
    HF Llama's default) repeats each key/value head for its group of query heads, as
    torch does, then runs the one op."""
    names = ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale",
             "enable_gqa")
    if len(args) > len(names):
        raise refused(InvalidArgumentError(f"{func_name(func)} takes at most {len(names)} "
                                           "positional arguments"))
    kw = dict(zip(names, args, strict=False))
    kw.update(kwargs)
    if kw.pop("enable_gqa", False):
        query, key = _first_lazy([kw["query"]]), _first_lazy([kw["key"]])
        heads, kv_heads = query._spec[0][-3], key._spec[0][-3]
        if kv_heads != heads:
            if kv_heads == 0 or heads % kv_heads:
                raise InvalidArgumentError(f"enable_gqa: {heads} query heads are not a "
                                           f"multiple of {kv_heads} key/value heads")
            kw["key"], kw["value"] = (_repeat_heads(_first_lazy([kw[n]]), heads // kv_heads)
                                      for n in ("key", "value"))
    return record(REGISTRY["scaled_dot_product_attention"], (), kw)


def _repeat_heads(t: LazyTensor, times: int) -> LazyTensor:
    """``t.repeat_interleave(times, dim=-3)`` as expand + reshape (no copy until needed)."""
    shape = list(t._spec[0])
    grown = record(REGISTRY["unsqueeze"], (t, -3), {})
    grown = record(REGISTRY["expand"], (grown, [*shape[:-2], times, *shape[-2:]]), {})
    return record(REGISTRY["reshape"], (grown, [*shape[:-3], shape[-3] * times, *shape[-2:]]),
                  {})


def _setitem(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``x[idx] = v``, functionalized: ``x`` now names a copy with the slice replaced."""
    self, index, value = args[0], args[1], args[2]
    if not isinstance(self, LazyTensor):
        raise UnsupportedOpError("assigning a LazyTensor into a local tensor: materialize it "
                                 "first (x[idx] = v.materialize())")
    record(REGISTRY["setitem"], (self, _index(index), value), {}, inplace=True)


def _backward(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    raise UnsupportedOpError(AUTOGRAD_MESSAGE.format(what=f"{func_name(func)} was called: it")
                             .replace(" requires grad and grad mode is on", " needs autograd"))


def special_handlers() -> dict[Any, Handler]:
    """The calls that are not one registry op with torch's own arguments."""
    T = torch.Tensor  # noqa: N806
    specials: dict[Any, Handler] = {
        T.__rmatmul__: _binary_swapped("matmul"), T.__rsub__: rsub, torch.rsub: rsub,
        T.__rtruediv__: _rdiv, T.__rdiv__: _rdiv, T.__rpow__: _rpow,
        T.__pos__: _self, torch.positive: _self, T.positive: _self,
        T.to: _to, T.type_as: _type_as, T.detach: _detach, T.detach_: _self,
        T.contiguous: _contiguous, T.__getitem__: getitem,
        T.max: _max_min("max"), torch.max: _max_min("max"),
        T.min: _max_min("min"), torch.min: _max_min("min"),
        T.where: _where_method, torch.where: OpCall(REGISTRY["where"]),
        T.norm: _norm, torch.norm: _norm, torch.linalg.vector_norm: _norm,
        T.chunk: pieces, torch.chunk: pieces, T.split: pieces, torch.split: pieces,
        T.unbind: pieces, torch.unbind: pieces,
        T.fill_: _fill, T.zero_: _zero, T.copy_: _copy, T.type: _type,
        T.__deepcopy__: lambda func, args, kwargs: copy_of(args[0]),
        T.new_zeros: _new_factory("zeros"), T.new_ones: _new_factory("ones"),
        T.new_empty: _new_factory("empty"), T.new_full: _new_factory("full"),
        torch.zeros_like: _like("zeros_like"), torch.ones_like: _like("ones_like"),
        torch.full_like: _like("full_like"), torch.randn_like: _random_like("randn"),
        torch.rand_like: _random_like("rand"), torch.empty_like: _random_like("empty"),
        F.scaled_dot_product_attention: scaled_dot_product_attention,
        T.__setitem__: _setitem, T.backward: _backward, torch.autograd.backward: _backward,
        torch.autograd.grad: _backward,
        torch.concat: OpCall(REGISTRY["cat"]), torch.multiply: OpCall(REGISTRY["mul"]),
        T.multiply: OpCall(REGISTRY["mul"]), torch.subtract: OpCall(REGISTRY["sub"]),
        T.subtract: OpCall(REGISTRY["sub"]), torch.divide: OpCall(REGISTRY["div"]),
        T.divide: OpCall(REGISTRY["div"]), torch.true_divide: OpCall(REGISTRY["div"]),
        T.true_divide: OpCall(REGISTRY["div"]), torch.clip: OpCall(REGISTRY["clamp"]),
        T.clip: OpCall(REGISTRY["clamp"]), T.clip_: OpCall(REGISTRY["clamp"], inplace=True),
        torch.negative: OpCall(REGISTRY["neg"]), T.negative: OpCall(REGISTRY["neg"]),
        torch.absolute: OpCall(REGISTRY["abs"]), T.absolute: OpCall(REGISTRY["abs"]),
        torch.greater: OpCall(REGISTRY["gt"]), torch.less: OpCall(REGISTRY["lt"]),
        F.sigmoid: OpCall(REGISTRY["sigmoid"]), F.tanh: OpCall(REGISTRY["tanh"]),
        T.__repr__: _repr, T.__format__: _fetching(format),
        T.item: _fetching(torch.Tensor.item), T.tolist: _fetching(torch.Tensor.tolist),
        T.numpy: _fetching(torch.Tensor.numpy, fresh=True),
        T.cpu: _fetching(lambda t: t, fresh=True),
        T.__bool__: _fetching(bool), T.__float__: _fetching(float), T.__int__: _fetching(int),
        T.__index__: _fetching(torch.Tensor.__index__), T.__array__: _fetching(
            torch.Tensor.__array__, fresh=True), T.__complex__: _fetching(complex),
    }
    casts = {"float": torch.float32, "double": torch.float64, "half": torch.float16,
             "bfloat16": torch.bfloat16, "int": torch.int32, "long": torch.int64,
             "short": torch.int16, "bool": torch.bool, "byte": torch.uint8,
             "char": torch.int8}
    for method, dtype in casts.items():
        specials[getattr(T, method)] = _cast_method(dtype)

    return specials


#: Tensor attributes whose getter computes a new tensor.
GETTERS: dict[str, Handler] = {
    "T": _transpose_all, "mT": _matrix_transpose, "data": _detach,
}
