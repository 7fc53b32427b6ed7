"""Which torch functions a LazyTensor captures, and as which allowlisted op.

Most entries are generated from the registry: for an op ``name``, ``torch.name``,
``Tensor.name`` and ``torch.nn.functional.name`` map to it, ``Tensor.name_`` (and
``F.name(..., inplace=True)``) to its in-place form.  The registry's parameter
names and order are PyTorch's, so positional arguments bind the same way; Python
functions of ``torch.nn.functional`` are bound by their own signature, and a
parameter torch has but the registry lacks (``inplace``, ``_stacklevel``,
``enable_gqa``...) is accepted only at its default.  The few calls that are not
one op with the same arguments (``Tensor.to``, ``max(dim=...)``, ``__rsub__``,
``chunk``...) have small handlers in ``genie.lazy.handlers``.

Anything else is decomposed: it runs with subclass torch_function disabled, so a
Python function (``F.multi_head_attention_forward``) runs its own code and a C++
composite (``torch.lstm``, ``torch.gru``, ``Tensor.__contains__``) its own, down to
aten ops, which ``genie.lazy.aten`` captures as registry ops.  A handled call whose
arguments its handler refuses (``clone(memory_format=...)``) is decomposed the same
way.  What still cannot be captured raises ``UnsupportedOpError`` naming the
function, unless the caller opted in with ``genie.capture(fallback="local")``: then
the inputs are materialized, the function runs locally, and its tensor results
travel back as inline inputs; each such function is logged once.  It runs on copies of the
fetched values; an input it changed in place is rebound to the new value, and a
result that is a view of an input counts as one (see ``genie.lazy.tensor``: in-place ops
on data a live view or alias shares are refused).

Two calls fetch a value on their own, because their result's shape depends on
data: indexing with a boolean mask (``x[x > 0]``: the mask is materialized, then
used as positions) and anything that needs a Python value (``item``, ``bool``...).
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F

from genie.errors import InvalidArgumentError, UnsupportedOpError
from genie.lazy.aten import register_aten
from genie.lazy.handlers import GETTERS, OpCall, func_name, special_handlers
from genie.lazy.node import LazyNode, contiguous_strides
from genie.lazy.session import SESSION, fallback_mode, scoped_client
from genie.lazy.tensor import (
    DISPATCH,
    VIEW_OPS,
    Handler,
    LazyTensor,
    adopt,
    check_unshared,
    fetch,
    is_refusal,
    local_value,
    make_lazy,
    rebind,
    record,
    refused,
)
from genie.ops import REGISTRY, Op

__all__ = ["refused_call", "supported_functions", "unhandled"]

log = logging.getLogger("genie.lazy")



def _register(func: Any, handler: Handler) -> None:
    DISPATCH.register(func, handler)


def _local_fallback(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    name = func_name(func)
    if name not in SESSION.logged_fallbacks:
        SESSION.logged_fallbacks.add(name)
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
    fetch(*found)
    # The function gets private copies: the cache is what later graphs send, and a
    # view of a LazyTensor must not change behind its back.
    copies: dict[int, tuple[LazyTensor, torch.Tensor]] = {}
    for t in found:
        if id(t) not in copies:
            copies[id(t)] = (t, local_value(t).clone())

    def local(v: Any) -> Any:
        if isinstance(v, LazyTensor):
            return copies[id(v)][1]
        if isinstance(v, list):
            return [local(x) for x in v]
        if isinstance(v, tuple):
            return tuple(local(x) for x in v)
        if isinstance(v, dict):
            return {k: local(x) for k, x in v.items()}
        return v

    local_args, local_kwargs = local(list(args)), local(dict(kwargs))
    versions = {key: copy._version for key, (_, copy) in copies.items()}
    result = func(*local_args, **local_kwargs)
    # What it changed in place is rebound to the new value, as a captured in-place op
    # is: refused while a view or alias of it is alive, since those would go stale.
    changed = [(t, copy) for key, (t, copy) in copies.items() if copy._version != versions[key]]
    short = getattr(func, "__name__", name)
    for t, _ in changed:
        check_unshared(short, t)
    for t, copy in changed:
        rebind(short, t, LazyNode(None, None, (), value=copy, client=t._node.client),
                     (tuple(copy.shape), tuple(copy.stride()), copy.dtype))
    client = next((t._node.client for t in found if t._node.client is not None),
                  scoped_client.get())

    def back(v: Any) -> Any:
        if isinstance(v, torch.Tensor) and not isinstance(v, LazyTensor):
            owner = None
            for t, copy in copies.values():
                if v is copy:
                    return t  # an in-place function returned its input
                if v.numel() and copy.numel() and (v.untyped_storage().data_ptr()
                                                   == copy.untyped_storage().data_ptr()):
                    owner = t  # a view of an input: tracked as one (see genie.lazy.tensor.Sharers)
            shape = tuple(v.shape)
            return make_lazy(LazyNode(None, None, (), value=v, client=client),
                             (shape, contiguous_strides(shape), v.dtype), owner)
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


def _passthrough(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    with torch._C.DisableTorchFunctionSubclass():
        return func(*args, **kwargs)


def _decompose(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """Run ``func`` down to aten ops, which ``genie.lazy.aten`` captures."""
    try:
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)
    except (RuntimeError, NotImplementedError) as exc:  # torch refused to decompose it
        raise refused(UnsupportedOpError(f"{type(exc).__name__}: {exc}")) from exc


def _cannot_capture(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
                    exc: Exception) -> Any:
    """What a call neither handled nor decomposed gets: a local run, or the refusal."""
    if fallback_mode.get() == "local":
        return _local_fallback(func, args, kwargs)
    raise exc


def refused_call(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any],
                 exc: Exception) -> Any:
    """A handled call whose handler refused an argument: decompose it instead."""
    try:
        return _decompose(func, args, kwargs)
    except InvalidArgumentError as inner:
        if not is_refusal(inner):
            raise
    return _cannot_capture(func, args, kwargs, exc)


def unhandled(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """No handler: metadata passes through, value getters map, anything else decomposes."""
    name = getattr(func, "__name__", "")
    if name == "__get__":
        attr = getattr(getattr(func, "__self__", None), "__name__", "")
        special = GETTERS.get(attr)
        if special is not None:
            return special(func, args, kwargs)
        if attr in ("real", "imag"):
            return record(REGISTRY[attr], args, {})
        return _passthrough(func, args, kwargs)
    if name == "__set__":
        return _set_attribute(func, args, kwargs)
    if name in _PASSTHROUGH_NAMES:
        return _passthrough(func, args, kwargs)
    try:
        return _decompose(func, args, kwargs)
    except InvalidArgumentError as exc:
        if not is_refusal(exc):
            raise
        message = (f"{func_name(func)} is not supported on LazyTensor (it decomposes to "
                   f"{exc.message}). Use a supported op, materialize first (x.materialize()), "
                   "or opt in to running it locally with "
                   "`with genie.capture(fallback='local'):`")
        return _cannot_capture(func, args, kwargs, UnsupportedOpError(message))


def _set_attribute(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``t.data = other`` (``model.half()`` on a moved model) rebinds ``t`` to ``other``'s
    node as well: torch swaps the wrapper's metadata, the node must follow it."""
    attr = getattr(getattr(func, "__self__", None), "__name__", "")
    target, value = (args[0], args[1]) if len(args) > 1 else (args[0], None)
    result = _passthrough(func, args, kwargs)
    if attr == "data" and isinstance(target, LazyTensor) and isinstance(value, LazyTensor):
        adopt(target, value)
    return result



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
            if callable(method_) and name not in VIEW_OPS:  # t_, squeeze_: reshape in place
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
    specials = special_handlers()
    specials[F.dropout] = _functional_call(REGISTRY["dropout"], F.dropout, "dropout")
    for func, handler in specials.items():
        DISPATCH.register(func, handler, replace=True)
    DISPATCH.set_fallback(unhandled)
    DISPATCH.on_refusal = refused_call
    register_aten()


_build()


def supported_functions() -> list[str]:
    """Every torch function LazyTensor captures, as users spell it (sorted)."""
    return sorted({func_name(f) for f in DISPATCH.handlers})

