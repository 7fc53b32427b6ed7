"""Which torch functions a LazyTensor captures, and as which allowlisted op.

Most entries are generated from the registry: for an op ``name``, ``torch.name``,
``Tensor.name`` and ``torch.nn.functional.name`` map to it, ``Tensor.name_`` (and
``F.name(..., inplace=True)``) to its in-place form.  The registry's parameter
names and order are PyTorch's, so positional arguments bind the same way; Python
functions of ``torch.nn.functional`` are bound by their own signature, and a
parameter torch has but the registry lacks (``inplace``, ``_stacklevel``,
``enable_gqa``...) is accepted only at its default.  The few calls that are not
one op with the same arguments (``Tensor.to``, ``max(dim=...)``, ``__rsub__``,
``chunk``...) have small handlers below.

Anything else raises ``UnsupportedOpError`` naming the function, unless the
caller opted in with ``genie.capture(fallback="local")``: then the inputs are
materialized, the function runs locally, and its tensor results travel back as
inline inputs; each such function is logged once.
"""

from __future__ import annotations

import contextvars
import inspect
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from genie import lazy
from genie.errors import InvalidArgumentError, UnsupportedOpError
from genie.lazy import (
    REGISTRY,
    LazyTensor,
    alias,
    capture,
    is_remote_device,
    lift,
    local_value,
    materialize,
)
from genie.ops import Op

__all__ = ["fallback_mode", "supported_functions"]

log = logging.getLogger("genie.lazy")

#: "error" (default) or "local", set by ``genie.capture(fallback=...)``.
fallback_mode: contextvars.ContextVar[str] = contextvars.ContextVar("genie_fallback",
                                                                    default="error")
_logged_fallbacks: set[str] = set()

Handler = Callable[[Any, Sequence[Any], Mapping[str, Any]], Any]
HANDLERS = lazy.HANDLERS


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
            return capture(self.op, args, kwargs, inplace=self.inplace)
        if self.names is None:
            kw = dict(kwargs)
            pos: Sequence[Any] = args
        else:
            if len(args) > len(self.names):
                raise InvalidArgumentError(f"{func_name(func)} takes at most "
                                           f"{len(self.names)} positional arguments")
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
                    raise UnsupportedOpError(
                        f"{func_name(func)}({name}={value!r}) is not supported remotely; "
                        f"only {name}={default!r}")
        return capture(self.op, pos, kw, inplace=inplace)


def _register(func: Any, handler: Handler) -> None:
    if func is not None and func not in HANDLERS:
        HANDLERS[func] = handler


# --- special handlers ---

def _first_lazy(args: Sequence[Any]) -> LazyTensor:
    t = args[0]
    return t if isinstance(t, LazyTensor) else lift(t)


def _spec_dtype(t: Any) -> torch.dtype:
    return t._spec[2] if isinstance(t, LazyTensor) else t.dtype


def _cast(t: LazyTensor, dtype: torch.dtype) -> LazyTensor:
    return t if t._spec[2] == dtype else capture(REGISTRY["to"], (t, dtype), {})


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
        value = local_value(self)
        return value.to(device=device, dtype=dtype)
    return self if dtype is None else _cast(self, dtype)


def _cast_method(dtype: torch.dtype) -> Handler:
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return _cast(_first_lazy(args), dtype)
    return handler


def _type_as(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    other = args[1] if len(args) > 1 else kwargs["other"]
    return _cast(_first_lazy(args), _spec_dtype(other))


def _fetching(method: Callable[..., Any]) -> Handler:
    """Anything that needs a value (item, bool, print...): materialize, then ask the CPU."""
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        values = [local_value(a) if isinstance(a, LazyTensor) else a for a in args]
        return method(*values, **kwargs)
    return handler


def _repr(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> str:
    return repr(local_value(args[0])).replace("tensor(", "LazyTensor(", 1) \
        + f"  # on {lazy.REMOTE_DEVICE}"


def _detach(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return alias(args[0])


def _self(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return args[0]


def _contiguous(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    t: LazyTensor = args[0]
    shape, stride, _ = t._spec
    if stride == lazy._contiguous_strides(shape):
        return t
    return capture(REGISTRY["contiguous"], (t,), {})


def _binary_swapped(op_name: str) -> Handler:
    """``other OP self`` for a commutative op or matmul (``__rmatmul__``)."""
    op = REGISTRY[op_name]

    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        self, other = args[0], args[1]
        if op_name == "matmul":
            return capture(op, (other, self), {})
        return capture(op, (self, other), {})
    return handler


def _rsub(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    # other - alpha*self == (-self)*alpha + other, exactly (negation is exact).
    self, other = _first_lazy(args), args[1]
    alpha = kwargs.get("alpha", args[2] if len(args) > 2 else 1)
    neg = capture(REGISTRY["neg"], (self,), {})
    if alpha != 1:
        neg = capture(REGISTRY["mul"], (neg, alpha), {})
    return capture(REGISTRY["add"], (neg, other), {})


def _rdiv(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    # torch's own definition: self.reciprocal() * other
    recip = capture(REGISTRY["reciprocal"], (_first_lazy(args),), {})
    return capture(REGISTRY["mul"], (recip, args[1]), {})


def _rpow(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    self, base = _first_lazy(args), args[1]
    if isinstance(base, torch.Tensor):
        return capture(REGISTRY["pow"], (base, self), {})
    meta = torch.empty((), dtype=self._spec[2], device="meta")
    dtype = torch.result_type(base, meta) if not isinstance(base, bool) else self._spec[2]
    filled = capture(REGISTRY["full_like"], (self, base), {"dtype": dtype})
    return capture(REGISTRY["pow"], (filled, self), {})


def _max_min(name: str) -> Handler:
    values_op, index_op, pair_op = REGISTRY[name], REGISTRY[f"arg{name}"], \
        REGISTRY["maximum" if name == "max" else "minimum"]
    result_type = torch.return_types.max if name == "max" else torch.return_types.min

    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        kw = dict(kwargs)
        rest = list(args[1:])
        other = rest[0] if rest else kw.get("other")
        if isinstance(other, torch.Tensor):
            return capture(pair_op, (args[0], other), {})
        dim = rest.pop(0) if rest else kw.pop("dim", None)
        keepdim = rest.pop(0) if rest else kw.pop("keepdim", False)
        if dim is None:
            return capture(values_op, (args[0],), kw)
        values = capture(values_op, (args[0], dim, keepdim), kw)
        indices = capture(index_op, (args[0], dim, keepdim), kw)
        return result_type((values, indices))
    return handler


def _where_method(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    self = args[0]
    condition = args[1] if len(args) > 1 else kwargs["condition"]
    other = args[2] if len(args) > 2 else kwargs["other"]
    return capture(REGISTRY["where"], (condition, self, other), {})


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
    return capture(REGISTRY["norm"], (), kw)


def _index_item(item: Any) -> Any:
    if isinstance(item, list):  # x[[0, 2]] is advanced indexing, not a tuple index
        return torch.tensor(item)
    if isinstance(item, torch.Tensor) and _spec_dtype(item) == torch.bool:
        # A mask's result shape depends on its values: fetch it, index by position.
        mask = local_value(item) if isinstance(item, LazyTensor) else item
        return mask.nonzero(as_tuple=True)
    return item


def _getitem(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    self, index = _first_lazy(args), args[1]
    items = list(index) if isinstance(index, tuple) else [index]
    flat: list[Any] = []
    for item in items:
        converted = _index_item(item)
        if isinstance(converted, tuple):
            flat.extend(converted)
        else:
            flat.append(converted)
    return capture(REGISTRY["getitem"], (self, tuple(flat) if len(flat) != 1 or isinstance(
        index, tuple) else flat[0]), {})


def _pieces(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """chunk / split / unbind as ``narrow``/``select`` nodes; sizes from meta."""
    self = _first_lazy(args)
    shape, stride, dtype = self._spec
    meta = torch.empty_strided(shape, stride, dtype=dtype, device="meta")
    with torch._C.DisableTorchFunctionSubclass():
        parts = func(meta, *args[1:], **kwargs)
    name = getattr(func, "__name__", "")
    if name == "unbind":
        dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
        return tuple(capture(REGISTRY["select"], (self, dim, i), {})
                     for i in range(len(parts)))
    dim = kwargs.get("dim", args[2] if len(args) > 2 else 0)
    dim = dim + len(shape) if dim < 0 else dim
    out, start = [], 0
    for part in parts:
        length = part.shape[dim]
        out.append(capture(REGISTRY["narrow"], (self, dim, start, length), {}))
        start += length
    return tuple(out)


def _transpose_all(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    t: LazyTensor = args[0]
    return capture(REGISTRY["permute"], (t, list(range(len(t._spec[0]) - 1, -1, -1))), {})


def _matrix_transpose(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return capture(REGISTRY["transpose"], (args[0], -2, -1), {})


def _fill(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    self = args[0]
    value = args[1] if len(args) > 1 else kwargs["value"]
    if isinstance(value, torch.Tensor):
        raise UnsupportedOpError("torch.Tensor.fill_ with a tensor value is not supported "
                                 "remotely; pass a number")
    return capture(REGISTRY["full_like"], (self, value), {}, inplace=True)


def _zero(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return capture(REGISTRY["zeros_like"], (args[0],), {}, inplace=True)


def _copy(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``dst.copy_(src)``: src broadcast to dst's shape and cast to its dtype."""
    dst, src = args[0], args[1]
    if not isinstance(dst, LazyTensor):
        raise UnsupportedOpError("copying into a local tensor from a LazyTensor: use "
                                 "dst.copy_(src.materialize())")
    src = src if isinstance(src, LazyTensor) else lift(src)
    shape, _, dtype = dst._spec
    expanded = capture(REGISTRY["expand"], (src, list(shape)), {})
    return capture(REGISTRY["to"], (expanded, dtype), {}, inplace=True) \
        if dst._view_base is None else lazy._rebind(REGISTRY["to"], dst, expanded._node,
                                                    expanded._spec)


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
            return capture(op, (list(size), value), kw)
        if len(rest) == 1 and isinstance(rest[0], (list, tuple)):
            rest = list(rest[0])
        if "size" in kw:
            rest = list(kw.pop("size"))
        return capture(op, rest, kw)
    return handler


def _like(op_name: str) -> Handler:
    op = REGISTRY[op_name]
    extras = {"layout": None, "device": None, "requires_grad": False,
              "memory_format": torch.preserve_format, "pin_memory": False}
    return OpCall(op, extras=extras)


def _local_fallback(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    name = func_name(func)
    if name not in _logged_fallbacks:
        _logged_fallbacks.add(name)
        log.warning("genie: %s is not supported remotely; running it locally "
                    "(genie.capture(fallback='local'))", name)
    found: list[LazyTensor] = []

    def collect(v: Any) -> None:
        if isinstance(v, LazyTensor):
            found.append(v)
        elif isinstance(v, (list, tuple)):
            for x in v:
                collect(x)
        elif isinstance(v, dict):
            for x in v.values():
                collect(x)
    collect(args)
    collect(kwargs)
    if found:
        materialize(*found)

    def local(v: Any) -> Any:
        if isinstance(v, LazyTensor):
            return v._node.value if v._node.value is not None else local_value(v)
        if isinstance(v, list):
            return [local(x) for x in v]
        if isinstance(v, tuple):
            return tuple(local(x) for x in v)
        if isinstance(v, dict):
            return {k: local(x) for k, x in v.items()}
        return v

    result = func(*local(list(args)), **local(dict(kwargs)))

    def back(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and not isinstance(v, LazyTensor):
            return lazy.remote(v)
        if isinstance(v, (list, tuple)) and not hasattr(v, "_fields"):
            return type(v)(back(x) for x in v)
        return v
    return back(result)


_PASSTHROUGH_NAMES = frozenset({
    "size", "dim", "ndimension", "numel", "nelement", "element_size", "is_floating_point",
    "is_complex", "is_signed", "is_contiguous", "stride", "__len__", "requires_grad_",
    "get_device", "is_inference", "is_nonzero_shape", "storage_offset", "__hash__",
    "__reduce_ex__", "__setstate__", "_is_view", "is_pinned", "is_shared",
    "__dir__", "__sizeof__", "dim_order", "_has_compatible_shallow_copy_type", "is_same_size",
    "has_names", "_is_zerotensor", "is_neg", "is_conj", "_nested_tensor_size",
})
_GETTERS: dict[str, Handler] = {
    "T": _transpose_all, "mT": _matrix_transpose, "data": _detach,
}


def _passthrough(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    with torch._C.DisableTorchFunctionSubclass():
        return func(*args, **kwargs)


def unhandled(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """No handler: metadata passes through, value getters map, anything else is refused."""
    name = getattr(func, "__name__", "")
    if name == "__get__":
        attr = getattr(getattr(func, "__self__", None), "__name__", "")
        special = _GETTERS.get(attr)
        if special is not None:
            return special(func, args, kwargs)
        if attr in ("real", "imag"):
            return capture(REGISTRY[attr], args, {})
        return _passthrough(func, args, kwargs)
    if name == "__set__" or name in _PASSTHROUGH_NAMES:
        return _passthrough(func, args, kwargs)
    if fallback_mode.get() == "local":
        return _local_fallback(func, args, kwargs)
    raise UnsupportedOpError(
        f"{func_name(func)} is not supported on LazyTensor (no allowlisted Genie op for it). "
        "Use a supported op, materialize first (x.materialize()), or opt in to running it "
        "locally with `with genie.capture(fallback='local'):`")


lazy.unhandled = unhandled


# --- the table ---

#: Names in torch's own namespaces whose torch.* form has a different signature.
_TORCH_NS_SKIP = frozenset({"batch_norm", "embedding", "max", "min", "norm", "where",
                            "layer_norm", "group_norm", "dropout", "to", "contiguous",
                            "getitem", "rms_norm"})
_TENSOR_SKIP = frozenset({"max", "min", "norm", "where", "to", "contiguous", "getitem"})
#: Builtins of torch.nn.functional (no signature): positional names and torch-only extras.
_BUILTIN_EXTRAS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "avg_pool2d": (("input", "kernel_size", "stride", "padding", "ceil_mode",
                    "count_include_pad", "divisor_override"),
                   {"count_include_pad": True, "divisor_override": None}),
    "scaled_dot_product_attention": (
        ("query", "key", "value", "attn_mask", "dropout_p", "is_causal", "scale", "enable_gqa"),
        {"enable_gqa": False}),
    "max_pool2d": (("input", "kernel_size", "stride", "padding", "dilation", "ceil_mode",
                    "return_indices"), {"return_indices": False}),
}
_METHOD_EXTRAS: dict[str, dict[str, Any]] = {
    "clone": {"memory_format": torch.preserve_format},
    "round": {"decimals": 0},
}
_IGNORED_PARAMS = frozenset({"inplace", "_stacklevel"})


def _functional_call(op: Op, fn: Any, name: str) -> OpCall:
    if name in _BUILTIN_EXTRAS:
        names, extras = _BUILTIN_EXTRAS[name]
        return OpCall(op, names=names, extras=extras)
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return OpCall(op, extras=_METHOD_EXTRAS.get(name))
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return OpCall(op)
    ours = {p.name: p.default for p in op.params}
    extras, prefill = {}, {}
    for p in params:
        if p.name in _IGNORED_PARAMS:
            continue
        if p.name not in ours:
            extras[p.name] = p.default
        elif p.default is not p.empty and ours[p.name] is not p.default and \
                not _same_default(ours[p.name], p.default):
            prefill[p.name] = p.default
    return OpCall(op, names=[p.name for p in params], extras=extras, prefill=prefill)


def _same_default(a: Any, b: Any) -> bool:
    try:
        return bool(type(a) is type(b) and a == b)
    except Exception:
        return False


def _build() -> None:
    for name, op in REGISTRY.items():
        if op.factory:
            continue
        if name not in _TENSOR_SKIP:
            method = getattr(torch.Tensor, name, None)
            if callable(method):
                _register(method, OpCall(op, extras=_METHOD_EXTRAS.get(name)))
            method_ = getattr(torch.Tensor, name + "_", None)
            if callable(method_):
                _register(method_, OpCall(op, inplace=True))
        fn = getattr(F, name, None)
        if callable(fn) and name not in ("max", "min", "norm", "where"):
            _register(fn, _functional_call(op, fn, name))
            fn_ = getattr(F, name + "_", None)
            if callable(fn_):
                _register(fn_, OpCall(op, inplace=True))
        if name not in _TORCH_NS_SKIP:
            fn = getattr(torch, name, None)
            if callable(fn) and not isinstance(fn, type):
                _register(fn, _functional_call(op, fn, name))
            fn_ = getattr(torch, name + "_", None)
            if callable(fn_):
                _register(fn_, OpCall(op, inplace=True))

    T = torch.Tensor  # noqa: N806
    dunders = {
        "__add__": "add", "__radd__": "add", "__sub__": "sub", "__mul__": "mul",
        "__rmul__": "mul", "__truediv__": "div", "__div__": "div", "__floordiv__": "floor_divide",
        "__mod__": "remainder", "__pow__": "pow", "__matmul__": "matmul", "__neg__": "neg",
        "__abs__": "abs", "__invert__": "bitwise_not", "__eq__": "eq", "__ne__": "ne",
        "__lt__": "lt", "__le__": "le", "__gt__": "gt", "__ge__": "ge",
        "__and__": "bitwise_and", "__or__": "bitwise_or", "__xor__": "bitwise_xor",
        "__rand__": "bitwise_and", "__ror__": "bitwise_or", "__rxor__": "bitwise_xor",
    }
    for dunder, op_name in dunders.items():
        _register(getattr(T, dunder, None), OpCall(REGISTRY[op_name]))
    inplace = {"__iadd__": "add", "__isub__": "sub", "__imul__": "mul", "__itruediv__": "div",
               "__idiv__": "div", "__ifloordiv__": "floor_divide", "__imod__": "remainder",
               "__ipow__": "pow", "__iand__": "bitwise_and", "__ior__": "bitwise_or",
               "__ixor__": "bitwise_xor"}
    for dunder, op_name in inplace.items():
        _register(getattr(T, dunder, None), OpCall(REGISTRY[op_name], inplace=True))
    specials: dict[Any, Handler] = {
        T.__rmatmul__: _binary_swapped("matmul"), T.__rsub__: _rsub, torch.rsub: _rsub,
        T.__rtruediv__: _rdiv, T.__rdiv__: _rdiv, T.__rpow__: _rpow,
        T.__pos__: _self, torch.positive: _self, T.positive: _self,
        T.to: _to, T.type_as: _type_as, T.detach: _detach, T.detach_: _self,
        T.contiguous: _contiguous, T.__getitem__: _getitem,
        T.max: _max_min("max"), torch.max: _max_min("max"),
        T.min: _max_min("min"), torch.min: _max_min("min"),
        T.where: _where_method, torch.where: OpCall(REGISTRY["where"]),
        T.norm: _norm, torch.norm: _norm, torch.linalg.vector_norm: _norm,
        T.chunk: _pieces, torch.chunk: _pieces, T.split: _pieces, torch.split: _pieces,
        T.unbind: _pieces, torch.unbind: _pieces,
        T.fill_: _fill, T.zero_: _zero, T.copy_: _copy, T.type: _type,
        T.__deepcopy__: lambda func, args, kwargs: alias(args[0]),
        T.new_zeros: _new_factory("zeros"), T.new_ones: _new_factory("ones"),
        T.new_empty: _new_factory("empty"), T.new_full: _new_factory("full"),
        torch.zeros_like: _like("zeros_like"), torch.ones_like: _like("ones_like"),
        torch.full_like: _like("full_like"),
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
        F.dropout: _functional_call(REGISTRY["dropout"], F.dropout, "dropout"),
        T.__repr__: _repr, T.__format__: _fetching(format),
        T.item: _fetching(torch.Tensor.item), T.tolist: _fetching(torch.Tensor.tolist),
        T.numpy: _fetching(torch.Tensor.numpy), T.cpu: _fetching(lambda t: t),
        T.__bool__: _fetching(bool), T.__float__: _fetching(float), T.__int__: _fetching(int),
        T.__index__: _fetching(torch.Tensor.__index__), T.__array__: _fetching(
            torch.Tensor.__array__), T.__complex__: _fetching(complex),
    }
    for func, handler in specials.items():
        HANDLERS[func] = handler
    casts = {"float": torch.float32, "double": torch.float64, "half": torch.float16,
             "bfloat16": torch.bfloat16, "int": torch.int32, "long": torch.int64,
             "short": torch.int16, "bool": torch.bool, "byte": torch.uint8,
             "char": torch.int8}
    for method, dtype in casts.items():
        HANDLERS[getattr(T, method)] = _cast_method(dtype)


_build()


def supported_functions() -> list[str]:
    """Every torch function LazyTensor captures, as users spell it (sorted)."""
    return sorted({func_name(f) for f in HANDLERS})

