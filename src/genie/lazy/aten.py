"""The aten ops a LazyTensor meets below torch_function, captured as registry ops.

A torch function with no handler of its own is not refused at once: it runs with
subclass torch_function disabled (``genie.lazy.mapping.unhandled``), so a Python
function (``F.multi_head_attention_forward``) runs its own code and a C++ composite
(``torch.lstm``, ``torch.gru``, ``Tensor.__contains__``) decomposes, down to aten
ops, which reach ``LazyTensor.__torch_dispatch__`` and are recorded here as the same
allowlisted ops the torch_function path records (``genie.lazy.tensor.record``: bound
with the server's own ``Op.bind``, shapes from meta inference).  In-place aten ops
rebind, as in-place torch calls do.

Most aten ops are one registry op with torch's argument names, ``self`` spelled
``input``: those are found by name, the first time they are met (``_generic``), and
an aten argument the registry op lacks is accepted only at its default.  The rest
(multi-output ops, ``_softmax``'s ``half_to_float``, ``convolution``, ``slice``,
``split``...) have small translations below.  An aten op with neither is refused with
``UnsupportedOpError`` naming it (``genie.capture(fallback="local")`` then runs the
whole torch function locally).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch

from genie.errors import UnsupportedOpError
from genie.lazy.backend import factory
from genie.lazy.device import is_remote_device
from genie.lazy.handlers import getitem, pieces, rsub, scaled_dot_product_attention
from genie.lazy.tensor import (
    ATEN,
    Handler,
    LazyTensor,
    alias,
    check_unshared,
    lift,
    local_value,
    move_into,
    record,
    refill,
    refused,
)
from genie.ops import REGISTRY, Op
from genie.ops.args import OPT_TENSOR_OR_NUMBER, TENSOR_OR_NUMBER

__all__ = ["bind_schema", "register_aten"]

aten = torch.ops.aten
_NUMBER_CHECKS = (TENSOR_OR_NUMBER, OPT_TENSOR_OR_NUMBER)
#: Per-op spellings: aten argument name -> registry parameter name.
_RENAMES: dict[str, dict[str, str]] = {
    "mm": {"mat2": "other"}, "bmm": {"mat2": "other"}, "dot": {"tensor": "other"},
    "outer": {"vec2": "other"}, "view": {"size": "shape"}, "_unsafe_view": {"size": "shape"},
    "reshape": {"size": "shape"}, "full_like": {"value": "fill_value"},
}
#: aten ops with another registry name.
_ALIASES = {"_unsafe_view": "reshape", "_reshape_alias": "reshape", "fill": "full_like",
            "_safe_softmax": "safe_softmax", "lift_fresh_copy": "clone", "alias_copy": "clone"}
#: aten arguments that mean nothing remotely at any value.
_IGNORED = frozenset({"implicit", "non_blocking", "sparse_grad"})


def bind_schema(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> dict[str, Any]:
    """``func``'s arguments by schema name, defaults filled in."""
    schema = func._schema
    bound: dict[str, Any] = {}
    positional = [a for a in schema.arguments if not a.kwarg_only]
    for arg, value in zip(positional, args, strict=False):
        bound[arg.name] = value
    bound.update(kwargs)
    for arg in schema.arguments:
        if arg.name not in bound and arg.has_default_value():
            bound[arg.name] = arg.default_value
    return bound


def _scalar(value: Any) -> Any:
    """A 0-d CPU tensor of a Python-number dtype as that number: C++ wraps the scalars
    of ``x * 0.5`` so, and a number keeps torch's promotion rules for them."""
    if (isinstance(value, torch.Tensor) and not isinstance(value, LazyTensor)
            and value.dim() == 0 and value.dtype in (torch.float64, torch.int64, torch.bool,
                                                     torch.complex128)):
        return value.item()
    return value


class AtenCall:
    """An aten op that is one registry op with the same arguments (renamed)."""

    __slots__ = ("defaults", "inplace", "op", "params", "renames", "view")

    def __init__(self, func: Any, op: Op, *, inplace: bool, view: bool = True) -> None:
        self.op = op
        self.inplace = inplace
        self.view = view
        self.renames = _RENAMES.get(op.name, {})
        self.params = {p.name: p for p in op.params}
        self.defaults = {a.name: a.default_value for a in func._schema.arguments
                         if a.has_default_value()}

    def __call__(self, func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        kw: dict[str, Any] = {}
        for name, value in bind_schema(func, args, kwargs).items():
            target = self.renames.get(name, "input" if name == "self" else name)
            param = self.params.get(target)
            if param is not None:
                kw[target] = _scalar(value) if param.check in _NUMBER_CHECKS else value
            elif name not in _IGNORED and not _same(value, self.defaults.get(name, _MISSING)):
                raise refused(UnsupportedOpError(
                    f"{func}({name}={value!r}), not supported remotely (Genie's "
                    f"{self.op.name!r} has no such argument)"))
        return record(self.op, (), kw, inplace=self.inplace, view=self.view)


_MISSING = object()


def _same(value: Any, default: Any) -> bool:
    try:
        return bool(value is default or (default is not _MISSING and value == default))
    except Exception:  # noqa: BLE001 - a tensor compared with a default
        return False


def _generic(func: Any) -> Handler | None:
    """The handler for an aten op that is one registry op by name, or ``None``."""
    name = func.overloadpacket.__name__
    inplace = func._schema.is_mutable and name.endswith("_") and not name.startswith("_")
    base = name[:-1] if inplace else name
    copy = base.endswith("_copy") and base[:-5] in REGISTRY  # unsqueeze_copy: not a view
    base = _ALIASES.get(base, base[:-5] if copy else base)
    op = REGISTRY.get(base)
    if op is None or op.factory:
        return None
    return AtenCall(func, op, inplace=inplace, view=not copy)


def _unsupported(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    handler = _BY_PACKET.get(func.overloadpacket.__name__) or _generic(func)
    if handler is None:
        raise refused(UnsupportedOpError(f"{func}, which has no allowlisted Genie op"))
    ATEN.register(func, handler)
    return handler(func, args, kwargs)


# --- translations ---

def _lazy(t: Any) -> LazyTensor:
    return t if isinstance(t, LazyTensor) else lift(t)


def _softmax(op_name: str) -> Handler:
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        b = bind_schema(func, args, kwargs)
        dtype = torch.float32 if b["half_to_float"] else None
        return record(REGISTRY[op_name], (b["self"], b["dim"]), {"dtype": dtype})
    return handler


def _slice(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    self = _lazy(b["self"])
    dim = b["dim"] % max(self.dim(), 1)
    index = (slice(None),) * dim + (slice(b["start"], b["end"], b["step"]),)
    return record(REGISTRY["getitem"], (self, index), {})


def _split(unsafe: bool) -> Handler:
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return list(pieces(func, args, kwargs, view=not unsafe))
    return handler


def _layer_norm(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    x, shape, eps = _lazy(b["input"]), list(b["normalized_shape"]), b["eps"]
    out = record(REGISTRY["layer_norm"], (x, shape, b["weight"], b["bias"], eps), {})
    dims = list(range(x.dim() - len(shape), x.dim()))
    mean = record(REGISTRY["mean"], (x, dims, True), {})
    var = record(REGISTRY["var"], (x, dims), {"correction": 0, "keepdim": True})
    rstd = record(REGISTRY["rsqrt"], (record(REGISTRY["add"], (var, eps), {}),), {})
    return out, mean, rstd


def _batch_norm(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    if b.get("training", False):
        raise UnsupportedOpError(f"{func} in training mode is not supported remotely")
    out = record(REGISTRY["batch_norm"], (b["input"], b["running_mean"], b["running_var"],
                                          b["weight"], b["bias"], False, b["momentum"],
                                          b["eps"]), {})
    empty = record(REGISTRY["zeros"], ([0],), {"dtype": out.dtype})
    return out, empty, empty


def _group_norm(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    out = record(REGISTRY["group_norm"], (b["input"], b["group"], b["weight"], b["bias"],
                                          b["eps"]), {})
    stats = record(REGISTRY["zeros"], ([b["N"], b["group"]],), {"dtype": out.dtype})
    return out, stats, stats  # mean/rstd: for backward only


def _convolution(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    dims = _lazy(b["weight"]).dim() - 2
    if b["transposed"] or dims not in (1, 2):
        raise UnsupportedOpError(f"{func} (transposed={b['transposed']}, {dims}-d) is not "
                                 "supported remotely; conv1d and conv2d are")
    return record(REGISTRY[f"conv{dims}d"], (b["input"], b["weight"], b["bias"],
                                             list(b["stride"]), list(b["padding"]),
                                             list(b["dilation"]), b["groups"]), {})


def _to_copy(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    self: LazyTensor = b["self"]
    device = b.get("device")
    if device is not None and device.type != self.device.type:
        return local_value(self).to(device=device, dtype=b.get("dtype"), copy=True)
    dtype = b.get("dtype") or self.dtype
    return record(REGISTRY["to" if dtype != self.dtype else "clone"],
                  (self, dtype) if dtype != self.dtype else (self,), {})


def _clone(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    out = record(REGISTRY["clone"], (b["self"],), {})
    if b.get("memory_format") == torch.contiguous_format and not out.is_contiguous():
        out = record(REGISTRY["contiguous"], (out,), {})
    return out


def _index(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    index = tuple(slice(None) if i is None else i for i in b["indices"])
    return getitem(func, (b["self"], index), {})


def _index_put(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    if b["accumulate"]:
        raise UnsupportedOpError(f"{func}(accumulate=True) is not supported remotely")
    index = tuple(slice(None) if i is None else i for i in b["indices"])
    return record(REGISTRY["setitem"], (b["self"], index, _scalar(b["values"])), {},
                  inplace=True)


def _embedding(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    padding = None if b["padding_idx"] < 0 else b["padding_idx"]
    return record(REGISTRY["embedding"], (b["indices"], b["weight"], padding), {})


def _max_min(name: str) -> Handler:
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        b = bind_schema(func, args, kwargs)
        values = record(REGISTRY[name], (b["self"], b["dim"], b["keepdim"]), {})
        indices = record(REGISTRY[f"arg{name}"], (b["self"], b["dim"], b["keepdim"]), {})
        return values, indices
    return handler


def _var_std(name: str) -> Handler:
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        b = bind_schema(func, args, kwargs)
        correction = 1 if b.get("correction") is None else b["correction"]
        return record(REGISTRY[name], (b["self"], b.get("dim")),
                      {"correction": correction, "keepdim": b.get("keepdim", False)})
    return handler


def _fill(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    value = args[1] if len(args) > 1 else kwargs["value"]
    if isinstance(value, torch.Tensor):
        value = local_value(value).item() if isinstance(value, LazyTensor) else value.item()
    return refill(args[0], value)


def _pad(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    return record(REGISTRY["pad"], (b["self"], list(b["pad"]), "constant", b["value"]), {})


def _pow_scalar(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    exponent = _lazy(b["exponent"])
    dtype = torch.result_type(b["self"], torch.empty((), dtype=exponent.dtype, device="meta"))
    base = record(REGISTRY["full_like"], (exponent, b["self"]), {"dtype": dtype})
    return record(REGISTRY["pow"], (base, exponent), {})


def _clamp_bound(which: str) -> Handler:
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        b = bind_schema(func, args, kwargs)
        inplace = func.overloadpacket.__name__.endswith("_")
        return record(REGISTRY["clamp"], (b["self"],), {which: _scalar(b[which])},
                      inplace=inplace)
    return handler


def _sdpa(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    out = scaled_dot_product_attention(
        func, (b["query"], b["key"], b["value"]),
        {"attn_mask": b.get("attn_mask"), "dropout_p": b.get("dropout_p", 0.0),
         "is_causal": b.get("is_causal", False), "scale": b.get("scale"),
         "enable_gqa": b.get("enable_gqa", False)})
    return out if func is aten.scaled_dot_product_attention.default else (out, None)


def _fused_sdp_choice(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> int:
    return 0  # torch's "math" choice: decompose (then captured as the one op, _sdpa)


def _fetching(fn: Callable[[torch.Tensor], Any]) -> Handler:
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        return fn(local_value(args[0]))
    return handler


def _self(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return args[0]


def _alias(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    return alias(args[0])


def _rsub(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    return rsub(func, (b["self"], _scalar(b["other"])), {"alpha": b.get("alpha", 1)})


def _isin(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    elements, test = b["elements"], b["test_elements"]
    if not isinstance(elements, torch.Tensor):
        raise UnsupportedOpError(f"{func} with a scalar element is not supported remotely")
    return record(REGISTRY["isin"], (elements, _scalar(test)),
                  {"assume_unique": b["assume_unique"], "invert": b["invert"]})


_INPLACE_VIEWS = (aten.transpose_.default, aten.t_.default, aten.unsqueeze_.default,
                  aten.squeeze_.default, aten.squeeze_.dim, aten.squeeze_.dims)


def _inplace_view(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``transpose_``, ``squeeze_``...: an in-place op that changes the tensor's shape.
    The tensor names the out-of-place result, and torch's own kernel, run with the
    Python key excluded, updates its sizes and strides (the wrapper has no data)."""
    self: LazyTensor = args[0]
    name = func.overloadpacket.__name__
    result = record(REGISTRY[name[:-1]], args, kwargs, view=False)
    check_unshared(name, self)
    keys = torch._C.DispatchKeySet(torch._C.DispatchKey.Python)
    with torch._C._ExcludeDispatchKeyGuard(keys), torch._C.DisableTorchFunctionSubclass():
        func(*args, **kwargs)
    self._node, self._spec = result._node, result._spec
    return self


def _vector_norm(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    b = bind_schema(func, args, kwargs)
    if b.get("dtype") is not None:
        raise refused(UnsupportedOpError(f"{func}(dtype=...), not supported remotely"))
    return record(REGISTRY["norm"], (b["self"], b["ord"], b["dim"], b["keepdim"]), {})


def _factory_options(func: Any, b: Mapping[str, Any]) -> None:
    layout, device = b.get("layout"), b.get("device")
    if layout not in (None, torch.strided) or (device is not None and not is_remote_device(device)):
        raise refused(UnsupportedOpError(f"{func}(layout={layout}, device={device}), not "
                                         "supported remotely"))


def _like(op_name: str) -> Handler:
    """``zeros_like``... as aten reaches them: a factory with the tensor's shape and dtype
    (nothing of the tensor itself is needed)."""
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        b = bind_schema(func, args, kwargs)
        self = _lazy(b["self"])
        _factory_options(func, b)
        shape, dtype = list(self._spec[0]), b.get("dtype") or self._spec[2]
        rest = (b["fill_value"],) if op_name == "full" else ()
        return factory(op_name, (shape, *rest), {"dtype": dtype})
    return handler


def _new(op_name: str) -> Handler:
    """``new_zeros``... as aten reaches them: a factory with the tensor's dtype."""
    def handler(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        b = bind_schema(func, args, kwargs)
        _factory_options(func, b)
        dtype = b.get("dtype") or _lazy(b["self"])._spec[2]
        rest = (b["fill_value"],) if op_name == "full" else ()
        return factory(op_name, (list(b["size"]), *rest), {"dtype": dtype})
    return handler


def _op(name: str, *args: Any, **kwargs: Any) -> LazyTensor:
    return record(REGISTRY[name], args, kwargs)


def _gates(input_gates: Any, hidden_gates: Any, input_bias: Any, hidden_bias: Any,
           chunks: int) -> tuple[list[LazyTensor], list[LazyTensor]]:
    """The input and hidden gate pre-activations of a fused RNN cell, biases added."""
    ig, hg = _lazy(input_gates), _lazy(hidden_gates)
    if input_bias is not None:
        ig = _op("add", ig, input_bias)
    if hidden_bias is not None:
        hg = _op("add", hg, hidden_bias)
    size = ig._spec[0][1] // chunks
    return ([_op("narrow", ig, 1, i * size, size) for i in range(chunks)],
            [_op("narrow", hg, 1, i * size, size) for i in range(chunks)])


def _lstm_cell(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``_thnn_fused_lstm_cell``, the cell torch's LSTM uses on an accelerator."""
    b = bind_schema(func, args, kwargs)
    ig, hg = _gates(b["input_gates"], b["hidden_gates"], b["input_bias"], b["hidden_bias"], 4)
    i, f, g, o = (_op(act, _op("add", x, h))
                  for act, x, h in zip(("sigmoid", "sigmoid", "tanh", "sigmoid"), ig, hg,
                                       strict=True))
    cy = _op("add", _op("mul", f, b["cx"]), _op("mul", i, g))
    hy = _op("mul", o, _op("tanh", cy))
    return hy, cy, cy  # the workspace is for backward only


def _gru_cell(func: Any, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
    """``_thnn_fused_gru_cell``, the cell torch's GRU uses on an accelerator."""
    b = bind_schema(func, args, kwargs)
    (ir, iz, inew), (hr, hz, hnew) = _gates(b["input_gates"], b["hidden_gates"],
                                            b["input_bias"], b["hidden_bias"], 3)
    reset = _op("sigmoid", _op("add", hr, ir))
    update = _op("sigmoid", _op("add", hz, iz))
    new = _op("tanh", _op("add", inew, _op("mul", hnew, reset)))
    hy = _op("add", _op("mul", _op("sub", b["hx"], new), update), new)
    return hy, hy  # the workspace is for backward only


#: Handlers for every overload of an aten op (``clamp_min.Tensor`` and ``.default``).
_BY_PACKET: dict[str, Handler] = {
    "clamp_min": _clamp_bound("min"), "clamp_max": _clamp_bound("max"),
    "clamp_min_": _clamp_bound("min"), "clamp_max_": _clamp_bound("max"),
}


def register_aten() -> None:
    """Fill ``ATEN`` (``genie.lazy.tensor``) with the translations above."""
    table: dict[Any, Handler] = {
        aten._softmax.default: _softmax("softmax"),
        aten._log_softmax.default: _softmax("log_softmax"),
        aten.slice.Tensor: _slice,
        aten.split.Tensor: _split(False), aten.split_with_sizes.default: _split(False),
        aten.unbind.int: _split(False), aten.unsafe_split.Tensor: _split(True),
        aten.unsafe_split_with_sizes.default: _split(True),
        aten.native_layer_norm.default: _layer_norm,
        aten._native_batch_norm_legit_no_training.default: _batch_norm,
        aten.native_batch_norm.default: _batch_norm,
        aten.convolution.default: _convolution, aten.native_group_norm.default: _group_norm,
        aten._to_copy.default: _to_copy,
        aten.copy_.default: lambda func, args, kwargs: move_into(args[0], args[1]),
        aten.clone.default: _clone,
        aten.index.Tensor: _index, aten.index_put_.default: _index_put,
        aten.index_put.default: lambda func, args, kwargs: _index_put(
            aten.index_put_.default, (local_clone(args[0]), *args[1:]), kwargs),
        aten.embedding.default: _embedding,
        aten.max.dim: _max_min("max"), aten.min.dim: _max_min("min"),
        aten.var.correction: _var_std("var"), aten.std.correction: _var_std("std"),
        aten.fill_.Scalar: _fill, aten.fill_.Tensor: _fill,
        aten.zero_.default: lambda func, args, kwargs: refill(args[0], 0),
        aten.constant_pad_nd.default: _pad, aten.pow.Scalar: _pow_scalar,
        aten.scaled_dot_product_attention.default: _sdpa,
        aten._scaled_dot_product_flash_attention_for_cpu.default: _sdpa,
        aten._fused_sdp_choice.default: _fused_sdp_choice,
        aten._local_scalar_dense.default: _fetching(lambda t: t.item()),
        aten.is_nonzero.default: _fetching(lambda t: bool(t)),
        aten.equal.default: lambda func, args, kwargs: torch.equal(
            *(local_value(a) if isinstance(a, LazyTensor) else a for a in args)),
        aten.lift_fresh.default: _self, aten.detach.default: _alias,
        aten.alias.default: _alias,
        aten.rsub.Scalar: _rsub, aten.rsub.Tensor: _rsub,
        aten.isin.Tensor_Tensor: _isin, aten.isin.Tensor_Scalar: _isin,
        **dict.fromkeys(_INPLACE_VIEWS, _inplace_view),
        aten.linalg_vector_norm.default: _vector_norm,
        aten.zeros_like.default: _like("zeros"), aten.ones_like.default: _like("ones"),
        aten.full_like.default: _like("full"), aten.empty_like.default: _like("empty"),
        aten.randn_like.default: _like("randn"), aten.rand_like.default: _like("rand"),
        aten.new_zeros.default: _new("zeros"), aten.new_ones.default: _new("ones"),
        aten.new_empty.default: _new("empty"), aten.new_full.default: _new("full"),
        aten._thnn_fused_lstm_cell.default: _lstm_cell,
        aten._thnn_fused_gru_cell.default: _gru_cell,
    }
    for func, handler in table.items():
        ATEN.register(func, handler)
    ATEN.set_fallback(_unsupported)


def local_clone(t: LazyTensor) -> LazyTensor:
    """An out-of-place aten op written as clone + its in-place form."""
    return record(REGISTRY["clone"], (t,), {})
