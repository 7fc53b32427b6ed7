"""The allowlist: every operation a client may ask the server to run, by name.

A name from the wire is looked up in ``REGISTRY`` and nowhere else; there is no
``getattr(torch, name)`` path, so a request can only ever reach the callables
listed here.  Checkers accept only what JSON can carry plus tensors, dtypes,
slices and Ellipsis, which is also what the graph wire format can express.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F

from genie.errors import InvalidArgumentError, UnsupportedOpError
from genie.ops import factories
from genie.ops.args import (
    BOOL,
    CONV_PADDING,
    DTYPE,
    INDEX,
    INT,
    INT_OR_INTS,
    INTS,
    NUMBER,
    OPT_DTYPE,
    OPT_INT,
    OPT_INTS,
    OPT_NUMBER,
    OPT_TENSOR,
    OPT_TENSOR_OR_NUMBER,
    SIZE,
    STRING,
    TENSOR,
    TENSOR_OR_NUMBER,
    TENSORS,
    ZERO_ONLY,
    choice,
    optional,
)
from genie.ops.registry import Op, Param

__all__ = ["REGISTRY", "WINDOWED", "get_op", "op_names"]

#: Ops whose time follows their window arguments (kernel, padding, dilation), not the
#: bytes they read and write: a tiny tensor with a huge window can take seconds.
WINDOWED = frozenset({"conv1d", "conv2d", "max_pool2d", "avg_pool2d", "adaptive_avg_pool2d"})


def _max_pool2d(input: torch.Tensor, kernel_size: int | list[int], stride: Any,
                padding: int | list[int], dilation: int | list[int], ceil_mode: bool
                ) -> torch.Tensor:
    """``F.max_pool2d``, refusing padding wider than the input: torch's CPU kernel steps
    each window's start over the padding one dilation at a time, so a [1, 1, 1, 1] input
    with a 2e9 kernel and 1e9 padding took 0.5 s for a 4-byte result (and more windows
    take hours).  No model pads past its input."""
    pads = [padding] * 2 if isinstance(padding, int) else list(padding)
    if len(pads) == 1:
        pads *= 2
    sizes = list(input.shape[-2:])
    if any(p > n for p, n in zip(pads, sizes, strict=False)):
        raise InvalidArgumentError(f"max_pool2d: padding {pads} is wider than the input "
                                   f"({sizes[0]} x {sizes[1]})")
    return F.max_pool2d(input, kernel_size, stride, padding, dilation, ceil_mode=ceil_mode)


def _dropout(input: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    if training:
        raise InvalidArgumentError(
            "dropout: only evaluation mode (training=False) runs remotely; "
            "training-mode dropout would draw server-side randomness the client cannot replay")
    if not 0.0 <= p <= 1.0:
        raise InvalidArgumentError(f"dropout: p must be in [0, 1], got {p}")
    return input


def _batch_norm(input: torch.Tensor, running_mean: torch.Tensor | None,
                running_var: torch.Tensor | None, weight: torch.Tensor | None,
                bias: torch.Tensor | None, training: bool, momentum: float,
                eps: float) -> torch.Tensor:
    if training:
        raise InvalidArgumentError("batch_norm: only evaluation mode (training=False) is "
                                   "supported; it would update running statistics in place")
    return F.batch_norm(input, running_mean, running_var, weight, bias, False, momentum, eps)


def _reduce(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """max/min/etc. with an optional dim: without dim, over everything."""
    def run(input: torch.Tensor, dim: int | None, keepdim: bool) -> torch.Tensor:
        if dim is None:
            return fn(input)
        out = fn(input, dim, keepdim)
        return out if isinstance(out, torch.Tensor) else out.values
    return run


def _sum_like(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def run(input: torch.Tensor, dim: list[int] | None, keepdim: bool,
            dtype: torch.dtype | None) -> torch.Tensor:
        if dim is None:
            return fn(input, dtype=dtype)
        return fn(input, dim, keepdim, dtype=dtype)
    return run


def _var_like(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    def run(input: torch.Tensor, dim: list[int] | None, correction: int | float,
            keepdim: bool) -> torch.Tensor:
        return fn(input, dim, correction=correction, keepdim=keepdim)
    return run


def _setitem(input: torch.Tensor, index: Any, value: torch.Tensor | float) -> torch.Tensor:
    """``input[index] = value`` out of place: a copy with the indexed part replaced."""
    out = input.clone()
    out[index] = value
    return out


def _safe_softmax(input: torch.Tensor, dim: int, dtype: torch.dtype | None) -> torch.Tensor:
    """Softmax whose fully masked rows (all -inf) are 0, not NaN: what attention with a
    padding mask computes (torch's ``_safe_softmax``; composed where torch lacks it)."""
    fn = getattr(torch, "_safe_softmax", None)
    if fn is not None:
        return fn(input, dim, dtype)
    out = torch.softmax(input, dim, dtype=dtype)
    return out.masked_fill((input == float("-inf")).all(dim, keepdim=True), 0)


def _squeeze(input: torch.Tensor, dim: list[int] | None) -> torch.Tensor:
    return input.squeeze() if dim is None else input.squeeze(tuple(dim))


_T = Param("input", TENSOR)
_OTHER = Param("other", TENSOR_OR_NUMBER)
_KEEPDIM = Param("keepdim", BOOL, False)


def _unary(name: str, fn: Callable[[torch.Tensor], torch.Tensor]) -> Op:
    inplace = _INPLACE.get(name)
    return Op(name, lambda input: fn(input), (_T,),
              inplace=None if inplace is None else (lambda input: inplace(input)))


def _binary(name: str, fn: Callable[..., torch.Tensor]) -> Op:
    return Op(name, lambda input, other: fn(input, other), (_T, _OTHER))


_UNARY: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh, "abs": torch.abs,
    "neg": torch.neg, "exp": torch.exp, "exp2": torch.exp2, "expm1": torch.expm1,
    "log": torch.log, "log2": torch.log2, "log10": torch.log10, "log1p": torch.log1p,
    "sqrt": torch.sqrt, "rsqrt": torch.rsqrt, "square": torch.square, "sin": torch.sin,
    "cos": torch.cos, "tan": torch.tan, "asin": torch.asin, "acos": torch.acos,
    "atan": torch.atan, "sinh": torch.sinh, "cosh": torch.cosh, "erf": torch.erf,
    "erfc": torch.erfc, "reciprocal": torch.reciprocal, "sign": torch.sign,
    "floor": torch.floor, "ceil": torch.ceil, "round": torch.round, "trunc": torch.trunc,
    "frac": torch.frac, "silu": F.silu, "mish": F.mish, "relu6": F.relu6, "selu": F.selu,
    "softsign": F.softsign, "hardswish": F.hardswish, "hardsigmoid": F.hardsigmoid,
    "logsigmoid": F.logsigmoid, "tanhshrink": F.tanhshrink,
    "logical_not": torch.logical_not, "bitwise_not": torch.bitwise_not,
    "isnan": torch.isnan, "isinf": torch.isinf, "isfinite": torch.isfinite,
    "clone": torch.clone, "contiguous": lambda t: t.contiguous(), "t": torch.t,
    "real": torch.real, "imag": torch.imag, "conj": lambda t: t.conj().resolve_conj(),
    "angle": torch.angle,
}

_BINARY: dict[str, Callable[..., torch.Tensor]] = {
    "mul": torch.mul, "maximum": torch.maximum, "minimum": torch.minimum,
    "remainder": torch.remainder, "fmod": torch.fmod, "atan2": torch.atan2,
    "floor_divide": torch.floor_divide, "eq": torch.eq, "ne": torch.ne, "lt": torch.lt,
    "le": torch.le, "gt": torch.gt, "ge": torch.ge, "logical_and": torch.logical_and,
    "logical_or": torch.logical_or, "logical_xor": torch.logical_xor,
    "bitwise_and": torch.bitwise_and, "bitwise_or": torch.bitwise_or,
    "bitwise_xor": torch.bitwise_xor, "matmul": torch.matmul, "mm": torch.mm,
    "bmm": torch.bmm, "dot": torch.dot, "outer": torch.outer, "hypot": torch.hypot,
}


#: In-place forms of unary ops: the same kernels writing over their input, so a
#: server that owns the input (decoded from this request's body) skips allocating
#: and page-faulting a fresh result, the dominant cost for large tensors.  Used only
#: on contiguous floating inputs, where every one of these keeps the dtype; the
#: results are bit-identical to the out-of-place op (tests/unit/test_ops.py).
_INPLACE: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    **{name: getattr(torch.Tensor, f"{name}_") for name in (
        "relu", "sigmoid", "tanh", "abs", "neg", "exp", "exp2", "expm1", "log", "log2",
        "log10", "log1p", "sqrt", "rsqrt", "square", "sin", "cos", "tan", "asin", "acos",
        "atan", "sinh", "cosh", "erf", "erfc", "reciprocal", "sign", "floor", "ceil",
        "round", "trunc", "frac")},
    "silu": lambda t: F.silu(t, inplace=True), "mish": lambda t: F.mish(t, inplace=True),
    "hardswish": lambda t: F.hardswish(t, inplace=True),
    "hardsigmoid": lambda t: F.hardsigmoid(t, inplace=True),
    "relu6": lambda t: F.relu6(t, inplace=True), "selu": lambda t: F.selu(t, inplace=True),
}


def _build() -> dict[str, Op]:
    ops: list[Op] = [_unary(n, f) for n, f in _UNARY.items()]
    ops += [_binary(n, f) for n, f in _BINARY.items()]
    ops += [
        # elementwise with options
        Op("add", lambda input, other, alpha: torch.add(input, other, alpha=alpha),
           (_T, _OTHER, Param("alpha", NUMBER, 1))),
        Op("sub", lambda input, other, alpha: torch.sub(input, other, alpha=alpha),
           (_T, _OTHER, Param("alpha", NUMBER, 1))),
        Op("div", lambda input, other, rounding_mode: torch.div(
            input, other, rounding_mode=rounding_mode),
           (_T, _OTHER, Param("rounding_mode", optional(choice("trunc", "floor")), None))),
        Op("pow", lambda input, exponent: torch.pow(input, exponent),
           (_T, Param("exponent", TENSOR_OR_NUMBER))),
        Op("clamp", lambda input, min, max: torch.clamp(input, min, max),
           (_T, Param("min", OPT_TENSOR_OR_NUMBER, None), Param("max", OPT_TENSOR_OR_NUMBER, None))),
        Op("where", lambda condition, input, other: torch.where(condition, input, other),
           (Param("condition", TENSOR), Param("input", TENSOR_OR_NUMBER), _OTHER)),
        Op("masked_fill", lambda input, mask, value: input.masked_fill(mask, value),
           (_T, Param("mask", TENSOR), Param("value", TENSOR_OR_NUMBER))),
        Op("lerp", lambda input, end, weight: torch.lerp(input, end, weight),
           (_T, Param("end", TENSOR), Param("weight", TENSOR_OR_NUMBER))),
        Op("gelu", lambda input, approximate: F.gelu(input, approximate=approximate),
           (_T, Param("approximate", choice("none", "tanh"), "none")),
           inplace=lambda input, approximate: torch.ops.aten.gelu_(
               input, approximate=approximate)),
        Op("leaky_relu", lambda input, negative_slope: F.leaky_relu(input, negative_slope),
           (_T, Param("negative_slope", NUMBER, 0.01))),
        Op("elu", lambda input, alpha: F.elu(input, alpha), (_T, Param("alpha", NUMBER, 1.0))),
        Op("softplus", lambda input, beta, threshold: F.softplus(input, beta, threshold),
           (_T, Param("beta", NUMBER, 1.0), Param("threshold", NUMBER, 20.0))),
        Op("hardtanh", lambda input, min_val, max_val: F.hardtanh(input, min_val, max_val),
           (_T, Param("min_val", NUMBER, -1.0), Param("max_val", NUMBER, 1.0))),
        Op("to", lambda input, dtype: input.to(dtype), (_T, Param("dtype", DTYPE))),
        # linear algebra
        Op("linear", lambda input, weight, bias: F.linear(input, weight, bias),
           (_T, Param("weight", TENSOR), Param("bias", OPT_TENSOR, None))),
        Op("addmm", lambda input, mat1, mat2, beta, alpha: torch.addmm(
            input, mat1, mat2, beta=beta, alpha=alpha),
           (_T, Param("mat1", TENSOR), Param("mat2", TENSOR), Param("beta", NUMBER, 1),
            Param("alpha", NUMBER, 1))),
        Op("baddbmm", lambda input, batch1, batch2, beta, alpha: torch.baddbmm(
            input, batch1, batch2, beta=beta, alpha=alpha),
           (_T, Param("batch1", TENSOR), Param("batch2", TENSOR), Param("beta", NUMBER, 1),
            Param("alpha", NUMBER, 1))),
        Op("einsum", lambda equation, operands: torch.einsum(equation, *operands),
           (Param("equation", STRING), Param("operands", TENSORS, variadic=True))),
        # reductions
        Op("sum", _sum_like(torch.sum), (_T, Param("dim", OPT_INTS, None), _KEEPDIM,
                                         Param("dtype", OPT_DTYPE, None))),
        Op("mean", _sum_like(torch.mean), (_T, Param("dim", OPT_INTS, None), _KEEPDIM,
                                           Param("dtype", OPT_DTYPE, None))),
        Op("prod", lambda input, dim, keepdim, dtype: torch.prod(input, dtype=dtype)
           if dim is None else torch.prod(input, dim, keepdim, dtype=dtype),
           (_T, Param("dim", OPT_INT, None), _KEEPDIM, Param("dtype", OPT_DTYPE, None))),
        Op("max", _reduce(torch.max), (_T, Param("dim", OPT_INT, None), _KEEPDIM)),
        Op("min", _reduce(torch.min), (_T, Param("dim", OPT_INT, None), _KEEPDIM)),
        Op("amax", lambda input, dim, keepdim: torch.amax(input, dim, keepdim),
           (_T, Param("dim", INTS, []), _KEEPDIM)),
        Op("amin", lambda input, dim, keepdim: torch.amin(input, dim, keepdim),
           (_T, Param("dim", INTS, []), _KEEPDIM)),
        Op("argmax", lambda input, dim, keepdim: torch.argmax(input, dim, keepdim),
           (_T, Param("dim", OPT_INT, None), _KEEPDIM)),
        Op("argmin", lambda input, dim, keepdim: torch.argmin(input, dim, keepdim),
           (_T, Param("dim", OPT_INT, None), _KEEPDIM)),
        Op("var", _var_like(torch.var), (_T, Param("dim", OPT_INTS, None),
                                         Param("correction", NUMBER, 1), _KEEPDIM)),
        Op("std", _var_like(torch.std), (_T, Param("dim", OPT_INTS, None),
                                         Param("correction", NUMBER, 1), _KEEPDIM)),
        Op("logsumexp", lambda input, dim, keepdim: torch.logsumexp(input, dim, keepdim),
           (_T, Param("dim", INTS), _KEEPDIM)),
        Op("norm", lambda input, p, dim, keepdim: torch.linalg.vector_norm(
            input, p, dim, keepdim), (_T, Param("p", NUMBER, 2), Param("dim", OPT_INTS, None),
                                      _KEEPDIM)),
        Op("all", lambda input, dim, keepdim: torch.all(input) if dim is None
           else torch.all(input, dim, keepdim), (_T, Param("dim", OPT_INT, None), _KEEPDIM)),
        Op("any", lambda input, dim, keepdim: torch.any(input) if dim is None
           else torch.any(input, dim, keepdim), (_T, Param("dim", OPT_INT, None), _KEEPDIM)),
        Op("cumsum", lambda input, dim, dtype: torch.cumsum(input, dim, dtype=dtype),
           (_T, Param("dim", INT), Param("dtype", OPT_DTYPE, None))),
        Op("softmax", lambda input, dim, dtype: torch.softmax(input, dim, dtype=dtype),
           (_T, Param("dim", INT), Param("dtype", OPT_DTYPE, None))),
        Op("log_softmax", lambda input, dim, dtype: torch.log_softmax(input, dim, dtype=dtype),
           (_T, Param("dim", INT), Param("dtype", OPT_DTYPE, None))),
        Op("safe_softmax", _safe_softmax,
           (_T, Param("dim", INT), Param("dtype", OPT_DTYPE, None))),
        # shape and indexing
        Op("reshape", lambda input, shape: input.reshape(shape),
           (_T, Param("shape", INTS, variadic=True))),
        Op("view", lambda input, shape: input.view(shape),
           (_T, Param("shape", INTS, variadic=True))),
        Op("expand", lambda input, size: input.expand(size),
           (_T, Param("size", INTS, variadic=True))),
        Op("repeat", lambda input, repeats: input.repeat(repeats),
           (_T, Param("repeats", INTS, variadic=True))),
        Op("permute", lambda input, dims: input.permute(dims),
           (_T, Param("dims", INTS, variadic=True))),
        Op("transpose", lambda input, dim0, dim1: input.transpose(dim0, dim1),
           (_T, Param("dim0", INT), Param("dim1", INT))),
        Op("flatten", lambda input, start_dim, end_dim: input.flatten(start_dim, end_dim),
           (_T, Param("start_dim", INT, 0), Param("end_dim", INT, -1))),
        Op("unflatten", lambda input, dim, sizes: input.unflatten(dim, sizes),
           (_T, Param("dim", INT), Param("sizes", INTS))),
        Op("squeeze", _squeeze, (_T, Param("dim", OPT_INTS, None))),
        Op("unsqueeze", lambda input, dim: input.unsqueeze(dim), (_T, Param("dim", INT))),
        Op("flip", lambda input, dims: input.flip(dims), (_T, Param("dims", INTS))),
        Op("roll", lambda input, shifts, dims: input.roll(shifts, dims),
           (_T, Param("shifts", INTS), Param("dims", OPT_INTS, None))),
        Op("tril", lambda input, diagonal: input.tril(diagonal), (_T, Param("diagonal", INT, 0))),
        Op("triu", lambda input, diagonal: input.triu(diagonal), (_T, Param("diagonal", INT, 0))),
        Op("narrow", lambda input, dim, start, length: input.narrow(dim, start, length),
           (_T, Param("dim", INT), Param("start", INT), Param("length", INT))),
        Op("select", lambda input, dim, index: input.select(dim, index),
           (_T, Param("dim", INT), Param("index", INT))),
        Op("getitem", lambda input, index: input[index], (_T, Param("index", INDEX))),
        Op("setitem", _setitem, (_T, Param("index", INDEX), Param("value", TENSOR_OR_NUMBER))),
        Op("isin", lambda elements, test_elements, assume_unique, invert: torch.isin(
            elements, test_elements, assume_unique=assume_unique, invert=invert),
           (Param("elements", TENSOR), Param("test_elements", TENSOR_OR_NUMBER),
            Param("assume_unique", BOOL, False), Param("invert", BOOL, False))),
        Op("gather", lambda input, dim, index: torch.gather(input, dim, index),
           (_T, Param("dim", INT), Param("index", TENSOR))),
        Op("index_select", lambda input, dim, index: torch.index_select(input, dim, index),
           (_T, Param("dim", INT), Param("index", TENSOR))),
        Op("cat", lambda tensors, dim: torch.cat(tensors, dim),
           (Param("tensors", TENSORS), Param("dim", INT, 0))),
        Op("stack", lambda tensors, dim: torch.stack(tensors, dim),
           (Param("tensors", TENSORS), Param("dim", INT, 0))),
        # nn.functional
        Op("layer_norm", lambda input, normalized_shape, weight, bias, eps: F.layer_norm(
            input, normalized_shape, weight, bias, eps),
           (_T, Param("normalized_shape", INTS), Param("weight", OPT_TENSOR, None),
            Param("bias", OPT_TENSOR, None), Param("eps", NUMBER, 1e-5))),
        Op("rms_norm", lambda input, normalized_shape, weight, eps: F.rms_norm(
            input, normalized_shape, weight, eps),
           (_T, Param("normalized_shape", INTS), Param("weight", OPT_TENSOR, None),
            Param("eps", OPT_NUMBER, None))),
        Op("group_norm", lambda input, num_groups, weight, bias, eps: F.group_norm(
            input, num_groups, weight, bias, eps),
           (_T, Param("num_groups", INT), Param("weight", OPT_TENSOR, None),
            Param("bias", OPT_TENSOR, None), Param("eps", NUMBER, 1e-5))),
        Op("batch_norm", _batch_norm,
           (_T, Param("running_mean", OPT_TENSOR), Param("running_var", OPT_TENSOR),
            Param("weight", OPT_TENSOR, None), Param("bias", OPT_TENSOR, None),
            Param("training", BOOL, False), Param("momentum", NUMBER, 0.1),
            Param("eps", NUMBER, 1e-5))),
        Op("conv1d", lambda input, weight, bias, stride, padding, dilation, groups: F.conv1d(
            input, weight, bias, stride, padding, dilation, groups), _conv_params()),
        Op("conv2d", lambda input, weight, bias, stride, padding, dilation, groups: F.conv2d(
            input, weight, bias, stride, padding, dilation, groups), _conv_params()),
        Op("max_pool2d", _max_pool2d,
           (_T, Param("kernel_size", INT_OR_INTS), Param("stride", optional(INT_OR_INTS), None),
            Param("padding", INT_OR_INTS, 0), Param("dilation", INT_OR_INTS, 1),
            Param("ceil_mode", BOOL, False))),
        Op("avg_pool2d", lambda input, kernel_size, stride, padding, ceil_mode:
           F.avg_pool2d(input, kernel_size, stride, padding, ceil_mode),
           (_T, Param("kernel_size", INT_OR_INTS), Param("stride", optional(INT_OR_INTS), None),
            Param("padding", INT_OR_INTS, 0), Param("ceil_mode", BOOL, False))),
        Op("adaptive_avg_pool2d", lambda input, output_size: F.adaptive_avg_pool2d(
            input, output_size), (_T, Param("output_size", INT_OR_INTS))),
        Op("embedding", lambda input, weight, padding_idx: F.embedding(
            input, weight, padding_idx), (_T, Param("weight", TENSOR),
                                          Param("padding_idx", OPT_INT, None))),
        Op("dropout", _dropout, (_T, Param("p", NUMBER, 0.5), Param("training", BOOL, False))),
        Op("scaled_dot_product_attention",
           lambda query, key, value, attn_mask, dropout_p, is_causal, scale:
           F.scaled_dot_product_attention(query, key, value, attn_mask, dropout_p,
                                          is_causal, scale=scale),
           (Param("query", TENSOR), Param("key", TENSOR), Param("value", TENSOR),
            Param("attn_mask", OPT_TENSOR, None), Param("dropout_p", ZERO_ONLY, 0.0),
            Param("is_causal", BOOL, False), Param("scale", OPT_NUMBER, None))),
        Op("normalize", lambda input, p, dim, eps: F.normalize(input, p, dim, eps),
           (_T, Param("p", NUMBER, 2.0), Param("dim", INT, 1), Param("eps", NUMBER, 1e-12))),
        Op("pad", lambda input, pad, mode, value: F.pad(input, pad, mode, value),
           (_T, Param("pad", INTS), Param("mode", choice("constant", "reflect", "replicate",
                                                  "circular"), "constant"),
            Param("value", OPT_NUMBER, None))),
        Op("mse_loss", lambda input, target, reduction: F.mse_loss(
            input, target, reduction=reduction),
           (_T, Param("target", TENSOR), Param("reduction", choice("mean", "sum", "none"), "mean"))),
        Op("cross_entropy", lambda input, target, reduction: F.cross_entropy(
            input, target, reduction=reduction),
           (_T, Param("target", TENSOR), Param("reduction", choice("mean", "sum", "none"), "mean"))),
        # factories: allocate on the server device
        Op("randn", factories.random(torch.randn), _factory_params(seeded=True), factory=True),
        Op("rand", factories.random(torch.rand), _factory_params(seeded=True), factory=True),
        Op("zeros", factories.filled(torch.zeros), _factory_params(), factory=True),
        Op("ones", factories.filled(torch.ones), _factory_params(), factory=True),
        Op("empty", factories.filled(torch.zeros), _factory_params(), factory=True),
        Op("full", factories.full, (Param("size", SIZE), Param("fill_value", NUMBER),
                           Param("dtype", OPT_DTYPE, None)), factory=True),
        Op("arange", factories.arange, (Param("start", NUMBER), Param("end", OPT_NUMBER, None),
                               Param("step", NUMBER, 1), Param("dtype", OPT_DTYPE, None)),
           factory=True),
        Op("eye", factories.eye,
           (Param("n", INT), Param("m", OPT_INT, None), Param("dtype", OPT_DTYPE, None)),
           factory=True),
        Op("zeros_like", lambda input, dtype: torch.zeros_like(input, dtype=dtype),
           (_T, Param("dtype", OPT_DTYPE, None))),
        Op("ones_like", lambda input, dtype: torch.ones_like(input, dtype=dtype),
           (_T, Param("dtype", OPT_DTYPE, None))),
        Op("full_like", lambda input, fill_value, dtype: torch.full_like(
            input, fill_value, dtype=dtype),
           (_T, Param("fill_value", NUMBER), Param("dtype", OPT_DTYPE, None))),
    ]
    registry = {op.name: op for op in ops}
    assert len(registry) == len(ops), "duplicate op name"
    return registry


def _conv_params() -> tuple[Param, ...]:
    return (_T, Param("weight", TENSOR), Param("bias", OPT_TENSOR, None),
            Param("stride", INT_OR_INTS, 1),
            Param("padding", CONV_PADDING, 0), Param("dilation", INT_OR_INTS, 1),
            Param("groups", INT, 1))


def _factory_params(*, seeded: bool = False) -> tuple[Param, ...]:
    size = Param("size", SIZE, variadic=True)
    dtype = Param("dtype", OPT_DTYPE, None)
    if seeded:
        return (size, Param("seed", OPT_INT, None), dtype)
    return (size, dtype)


#: name -> Op; the one place a name from the wire is resolved.
REGISTRY: Mapping[str, Op] = _build()


def op_names() -> list[str]:
    """Every supported op name, sorted (what ``GET /ops`` lists)."""
    return sorted(REGISTRY)


def get_op(name: object) -> Op:
    """The allowlisted op called ``name``, or ``UnsupportedOpError`` naming the choices.

    The closest names come first (a typo or ``RELU`` is the usual cause), then all of
    them, so the fix is in the first words of the message.
    """
    if isinstance(name, str) and name in REGISTRY:
        return REGISTRY[name]
    names = op_names()
    close = (difflib.get_close_matches(name.lower(), names, n=3, cutoff=0.6)
             if isinstance(name, str) else [])
    hint = f"did you mean {', '.join(close)}? " if close else ""
    raise UnsupportedOpError(
        f"unsupported op {name!r}; {hint}supported ops ({len(names)}, with signatures at "
        f"GET /ops): {', '.join(names)}")
