"""Working memory: what an op allocates while it runs, beyond the result it returns.

The allocation cap judges an op by its result, but kernels allocate more: ``mse_loss``
of ``[16384, 1]`` against ``[1, 16384]`` builds the 1 GiB broadcast difference to return
4 bytes, ``conv2d`` in float64 unfolds its input (im2col: ``C_in x kH x kW`` values per
output position, for the whole batch), ``sum(dtype=float64)`` of float32 first copies
its whole input as float64, a CPU kernel copies an input of another dtype to the common
one (or a strided input to a contiguous one), and a batched ``matmul`` copies both
operands expanded to the broadcast batch.  ``working_bytes`` estimates that, per op,
from the meta tensors the op was inferred with (shapes, strides, dtypes), so the cap
can count it before anything runs.

The estimates are upper bounds of what torch's CPU kernels allocate through its
allocator, as measured by the profiler's memory events
(``tests/unit/genie/ops/test_work.py`` checks every op of the table, plain, strided
and promoted); CUDA kernels allocate no more, except where a rule says so.  An op
without a rule here gets the conservative ``DEFAULT`` (every input copied, plus one
temporary as large as the largest tensor involved).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import torch

__all__ = ["DEFAULT", "ELEMENTWISE", "RULES", "WorkModel", "logical_bytes", "mask_index_bytes",
           "tensors_in", "working_bytes"]

#: (the op's bound arguments as meta tensors and plain values, its meta result) -> bytes.
WorkModel = Callable[[Mapping[str, Any], torch.Tensor], int]

#: What the CPU flash-attention kernel keeps per thread: query and key/value blocks of
#: 256 x 512 scores, a few float32 buffers of them (torch's sdp_utils / FlashAttentionKernel).
_SDPA_BLOCK_BYTES = 4 * 256 * 512 * 4


def logical_bytes(t: torch.Tensor, dtype: torch.dtype | None = None) -> int:
    """What a contiguous copy of ``t`` (in ``dtype``) takes: every element, broadcast
    (stride 0) dimensions included."""
    return t.numel() * (dtype or t.dtype).itemsize


def tensors_in(args: Mapping[str, Any]) -> Iterator[tuple[str, torch.Tensor]]:
    """Each tensor argument with its name, a list or tuple of tensors included."""
    for name, value in args.items():
        for v in value if isinstance(value, (list, tuple)) else (value,):
            if isinstance(v, torch.Tensor):
                yield name, v


def _dense(t: torch.Tensor) -> bool:
    return t.is_contiguous() or t.numel() <= 1


def _strided_copies(args: Mapping[str, Any]) -> int:
    """Kernels that need dense inputs copy a strided one (an expanded view, a
    transpose) to a contiguous tensor first."""
    return sum(logical_bytes(t) for _, t in tensors_in(args) if not _dense(t))


def _common_dtype(args: Mapping[str, Any], out: torch.Tensor,
                  skip: Sequence[str] = ()) -> torch.dtype:
    dtype = out.dtype
    if dtype is torch.bool:  # a comparison: computed in the inputs' common dtype
        inputs = [t.dtype for name, t in tensors_in(args) if name not in skip]
        for d in inputs:
            dtype = d if dtype is torch.bool else torch.promote_types(dtype, d)
    return dtype


def _promotions(args: Mapping[str, Any], dtype: torch.dtype, skip: Sequence[str] = ()) -> int:
    """CPU kernels copy every input whose dtype is not the one they compute in (a
    0-dim tensor is read as a scalar instead)."""
    return sum(logical_bytes(t, dtype) for name, t in tensors_in(args)
               if name not in skip and t.dim() > 0 and t.dtype != dtype)


def elementwise(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """TensorIterator kernels read strided and broadcast inputs in place; only inputs of
    another dtype are copied first."""
    skip = ("condition", "mask")
    return _promotions(args, _common_dtype(args, out, skip), skip)


def temporaries(k: float, *, of: str = "input") -> WorkModel:
    """Composite ops that build ``k`` temporaries the size of ``of`` (its logical size,
    in the result's dtype when that is wider), besides copying strided inputs."""
    def model(args: Mapping[str, Any], out: torch.Tensor) -> int:
        t = args[of]
        itemsize = max(t.dtype.itemsize, out.dtype.itemsize)
        return (math.ceil(k * t.numel() * itemsize) + _strided_copies(args)
                + elementwise(args, out))
    return model


def reduction(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """Reductions read strided inputs in place but copy their input to the type they
    accumulate in: float32 for half types on the CPU, else the result's (``sum`` of
    int32 is int64, ``sum(dtype=float64)``, ``any`` of floats is bool)."""
    t = args["input"]
    if t.dtype in (torch.float16, torch.bfloat16):
        return logical_bytes(t, torch.float32)
    return logical_bytes(t, out.dtype) if out.dtype != t.dtype else 0


def dense_reduction(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """``softmax``, ``log_softmax``, ``cumsum``: a reduction over a dense copy of a
    strided input."""
    return reduction(args, out) + _strided_copies(args)


def indexed_reduction(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """``max``/``min``/``argmax``/``argmin``: a strided input is flattened (copied); along a
    dim, the values and their int64 indices are both made."""
    t = args["input"]
    indices = out.numel() * max(8, t.dtype.itemsize) if args.get("dim") is not None else 0
    return indices + _strided_copies(args)


def views(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """Shape ops and copies: nothing besides the result."""
    return 0


def dense_inputs(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """Kernels that make strided inputs contiguous, and allocate nothing else."""
    return _strided_copies(args)


def _broadcast_bytes(args: Mapping[str, Any], out: torch.Tensor, a: str, b: str) -> int:
    shape = torch.broadcast_shapes(args[a].shape, args[b].shape)
    return math.prod(shape) * max(out.dtype.itemsize, args[a].dtype.itemsize,
                                  args[b].dtype.itemsize)


def mse_loss(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """The elementwise loss over the broadcast shape, then its reduction; inputs of
    different dtypes are first copied to the common one."""
    full = _broadcast_bytes(args, out, "input", "target")
    dtype = torch.promote_types(args["input"].dtype, args["target"].dtype)
    loss = 0 if args["reduction"] == "none" else 2 * full
    return loss + _promotions(args, dtype) + _strided_copies(args)


def cross_entropy(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """``log_softmax`` of the input, and with class probabilities their product too."""
    t = args["input"]
    k = 2 if args["target"].is_floating_point() else 1
    return k * logical_bytes(t) + _strided_copies(args)


def convolution(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """The portable kernel (float64, half types, CPUs without oneDNN) unfolds the whole
    batch: ``C_in x prod(kernel) x prod(output spatial)`` values per sample (im2col),
    after padding a copy of the input."""
    x, w = args["input"], args["weight"]
    n = w.dim() - 2
    batch = x.shape[0] if x.dim() == n + 2 else 1
    c_in = x.shape[-n - 1]
    columns = batch * c_in * math.prod(w.shape[2:]) * math.prod(out.shape[-n:])
    padding = args.get("padding", 0)
    padded = 0 if padding in (0, "valid") or padding == [0] * n else logical_bytes(x)
    # oneDNN (float32 on the CPU) needs no columns but writes the output in its own
    # layout first, then reorders it: one more output.
    return (columns * x.dtype.itemsize + padded + logical_bytes(out)
            + _strided_copies(args))


def normalization(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """``layer_norm``/``group_norm``/``batch_norm``: the mean and inverse deviation of
    every normalized group (one per row for ``layer_norm`` over its last dim), in float64
    at most, and a dense copy of a strided input."""
    t = args["input"]
    if "normalized_shape" in args:
        groups = t.numel() // max(1, math.prod(args["normalized_shape"]))
    elif "num_groups" in args:
        groups = (t.shape[0] if t.dim() else 1) * args["num_groups"]
    else:
        groups = t.shape[1] if t.dim() > 1 else 1
    return 2 * groups * 8 + _strided_copies(args)


def max_pool(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """The argmax of every window, as int64 indices, alongside the values."""
    return out.numel() * 8 + _strided_copies(args)


def mask_index_bytes(t: torch.Tensor) -> int:
    """What indexing with ``t`` allocates first when it is a mask (bool or uint8): the
    int64 indices of every element it could select, one per dimension (at least one)."""
    if t.dtype not in (torch.bool, torch.uint8):
        return 0
    return t.numel() * max(t.dim(), 1) * 8


def getitem(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """A boolean mask index becomes int64 indices of every selected element first."""
    index = args["index"]
    items = index if isinstance(index, (list, tuple)) else (index,)
    return sum(mask_index_bytes(t) for t in items if isinstance(t, torch.Tensor)) + _strided_copies(
        {"input": args["input"]})


def setitem(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """``input[index] = value`` out of place: the copy is the result; a mask index's
    int64 indices, and a value of another dtype converted, besides."""
    value = args["value"]
    converted = (logical_bytes(value, out.dtype) if isinstance(value, torch.Tensor)
                 and value.dtype != out.dtype else 0)
    return getitem(args, out) + converted


def isin(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """torch compares every element with every test element when the test elements are
    few (fewer than ``10 * n ** 0.145``): an ``n x m`` bool tensor; else it sorts both
    together (values and int64 indices, a few copies)."""
    e, t = args["elements"], args["test_elements"]
    n, m = e.numel(), t.numel() if isinstance(t, torch.Tensor) else 1
    if m < int(10.0 * max(n, 1) ** 0.145):
        return n * m + _strided_copies(args)
    itemsize = max(e.dtype.itemsize, t.dtype.itemsize if isinstance(t, torch.Tensor) else 8)
    return (n + m) * (3 * itemsize + 16) + _strided_copies(args)


def matmul(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """Batched operands are expanded to the broadcast batch and copied to fold it into
    one ``bmm``; a 2-D operand against a batch is folded without copying."""
    a, b = args["input"], args["other"]
    if a.dim() <= 2 and b.dim() <= 2:
        return _strided_copies(args) + elementwise(args, out)
    batch = torch.broadcast_shapes(a.shape[:-2] if a.dim() > 2 else (),
                                   b.shape[:-2] if b.dim() > 2 else ())
    copies = 0
    for t in (a, b):
        if t.dim() > 2 and (tuple(t.shape[:-2]) != tuple(batch) or not _dense(t)):
            copies += math.prod(batch) * math.prod(t.shape[-2:]) * t.dtype.itemsize
        elif t.dim() <= 2 and not _dense(t):
            copies += logical_bytes(t)
    if a.dim() <= 2 < b.dim():  # folded by transposing the batched operand
        copies += logical_bytes(b)
    return copies + elementwise(args, out)


_EINSUM_TERM = re.compile(r"[A-Za-z]|\.\.\.")


def einsum(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """Operands are permuted and copied, then contracted left to right (torch's order
    without opt_einsum): each step's result holds every index still needed later, and
    that intermediate can dwarf operands and output alike (``ia,jb,ab->ij``)."""
    operands: list[torch.Tensor] = list(args["operands"])
    copies = sum(logical_bytes(t) for t in operands) + logical_bytes(out)
    lhs, _, rhs = args["equation"].replace(" ", "").partition("->")
    terms = lhs.split(",")
    if (len(terms) != len(operands) or any(not _EINSUM_TERM.fullmatch(c) for t in terms
                                           for c in _EINSUM_TERM.findall(t))
            or "..." in args["equation"] or torch.backends.opt_einsum.enabled and
            torch.backends.opt_einsum.is_available()):
        return copies + _einsum_bound(operands, out)
    sizes: dict[str, int] = {}
    for term, t in zip(terms, operands, strict=True):
        for letter, size in zip(term, t.shape, strict=False):
            sizes[letter] = max(sizes.get(letter, 1), size)
    output = set(rhs) if "->" in args["equation"] else {c for c in lhs if lhs.count(c) == 1}
    itemsize = out.dtype.itemsize
    peak = 0
    running = set(terms[0])
    for i in range(1, len(terms)):
        later = set(output).union(*terms[i + 1:])
        running = {c for c in running | set(terms[i]) if c in later}
        peak = max(peak, math.prod(sizes[c] for c in running) * itemsize)
    return copies + 2 * peak


def _einsum_bound(operands: Sequence[torch.Tensor], out: torch.Tensor) -> int:
    """Whatever the contraction order: no intermediate exceeds the product of every
    operand's size."""
    total = 1
    for t in operands:
        total *= max(t.numel(), 1)
        if total > 1 << 62:
            break
    return min(total, 1 << 62) * out.dtype.itemsize


def attention(args: Mapping[str, Any], out: torch.Tensor) -> int:
    """On the CPU, and on CUDA for half types and float32, fused kernels work in blocks;
    elsewhere (float64 on CUDA) the math path materialises every score, twice.  A
    boolean mask is converted to an additive float mask first."""
    q, k = args["query"], args["key"]
    scores = math.prod(q.shape[:-1]) * k.shape[-2] * max(q.dtype.itemsize, 4)
    mask = args.get("attn_mask")
    work = 2 * logical_bytes(out) + _strided_copies(args)
    if isinstance(mask, torch.Tensor):
        work += math.prod(torch.broadcast_shapes(mask.shape, (*q.shape[:-1], k.shape[-2]))) * 4
    if q.dtype is torch.float64:
        work += 2 * scores
    return work + torch.get_num_threads() * _SDPA_BLOCK_BYTES


def DEFAULT(args: Mapping[str, Any], out: torch.Tensor) -> int:  # noqa: N802 - a model
    """An op without a rule: every input copied, and one temporary as large as the
    largest tensor involved."""
    largest = max([logical_bytes(t) for _, t in tensors_in(args)] + [logical_bytes(out)])
    return sum(logical_bytes(t) for _, t in tensors_in(args)) + largest


_UNARY_TEMP = {"logsigmoid": 1, "softsign": 1, "tanhshrink": 1, "isinf": 1, "isfinite": 2,
               "logsumexp": 2, "normalize": 1}

#: op name -> its working-memory model.  Checked against the profiler for every op of
#: the table (``tests/unit/genie/ops/test_work.py``).
RULES: Mapping[str, WorkModel] = {
    **{name: temporaries(k) for name, k in _UNARY_TEMP.items()},
    "angle": lambda args, out: (logical_bytes(args["input"]) if args["input"].is_complex()
                                else 0),
    "mse_loss": mse_loss, "cross_entropy": cross_entropy,
    "conv1d": convolution, "conv2d": convolution, "max_pool2d": max_pool,
    "getitem": getitem, "setitem": setitem, "isin": isin, "matmul": matmul, "einsum": einsum,
    "safe_softmax": lambda args, out: (dense_reduction(args, out) + args["input"].numel()
                                       + logical_bytes(out)),
    **dict.fromkeys(("layer_norm", "group_norm", "batch_norm"), normalization),
    "rms_norm": lambda args, out: temporaries(2)(args, out) + normalization(args, out),
    "scaled_dot_product_attention": attention,
    **dict.fromkeys(("sum", "mean", "prod", "amax", "amin", "var", "std", "norm", "all", "any"),
                    reduction),
    **dict.fromkeys(("cumsum", "softmax", "log_softmax"), dense_reduction),
    **dict.fromkeys(("max", "min", "argmax", "argmin"), indexed_reduction),
    **dict.fromkeys(("mm", "bmm", "baddbmm", "dot", "outer", "linear", "addmm", "avg_pool2d",
                     "adaptive_avg_pool2d",
                     "embedding", "index_select", "gather", "roll", "pad", "cat", "stack",
                     "flip", "tril", "triu", "repeat"), dense_inputs),
    **dict.fromkeys(("reshape", "view", "expand", "permute", "transpose", "flatten",
                     "unflatten", "squeeze", "unsqueeze", "narrow", "select", "t", "to",
                     "clone", "contiguous", "real", "imag", "conj", "dropout",
                     "zeros_like", "ones_like", "full_like", "randn", "rand", "zeros", "ones",
                     "empty", "full", "arange", "eye"), views),
}


#: Ops computed by one TensorIterator pass over their (broadcast) inputs.
ELEMENTWISE = frozenset((
    "relu", "sigmoid", "tanh", "abs", "neg", "exp", "exp2", "expm1", "log", "log2", "log10",
    "log1p", "sqrt", "rsqrt", "square", "sin", "cos", "tan", "asin", "acos", "atan", "sinh",
    "cosh", "erf", "erfc", "reciprocal", "sign", "floor", "ceil", "round", "trunc", "frac",
    "silu", "mish", "relu6", "selu", "hardswish", "hardsigmoid", "logical_not", "bitwise_not",
    "isnan", "gelu", "leaky_relu", "elu", "softplus", "hardtanh", "add", "sub", "mul", "div",
    "pow", "maximum", "minimum", "remainder", "fmod", "atan2", "floor_divide", "hypot", "eq",
    "ne", "lt", "le", "gt", "ge", "logical_and", "logical_or", "logical_xor", "bitwise_and",
    "bitwise_or", "bitwise_xor", "clamp", "where", "masked_fill", "lerp",
))


def working_bytes(name: str, args: Mapping[str, Any], out: torch.Tensor) -> int:
    """The working memory of op ``name`` on ``args`` (meta tensors) producing ``out``:
    its rule, dtype promotions for an elementwise op, else the conservative ``DEFAULT``."""
    model = RULES.get(name) or (elementwise if name in ELEMENTWISE else DEFAULT)
    return model(args, out)
