"""The op allowlist (genie.ops): every registered op agrees with eager PyTorch, and
arguments that do not fit are refused with the documented errors before they run.

``CASES`` has an entry for every op in ``REGISTRY``; ``test_every_op_has_a_case``
fails when an op is added without one, so the table cannot silently fall behind.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genie.errors import InvalidArgumentError, UnsupportedDTypeError, UnsupportedOpError
from genie.ops import REGISTRY, MetaCache, MetaFailure, Op, OpContext, get_op, infer, op_names
from genie.ops.meta import check_output
from genie.server.executor import Executor


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


X = torch.randn(3, 4, generator=_gen(0))
Y = torch.randn(3, 4, generator=_gen(1))
ROW = torch.randn(4, generator=_gen(2))
POS = torch.rand(3, 4, generator=_gen(3)) * 0.8 + 0.1  # inside (0, 1): log, asin, acos...
INTS = torch.randint(-9, 10, (3, 4), generator=_gen(4))
NONZERO = torch.randint(1, 5, (3, 4), generator=_gen(5)) * torch.tensor([1, -1, 1, -1])
B1 = torch.tensor([[True, False], [True, True]])
B2 = torch.tensor([[False, False], [True, False]])
CPLX = torch.randn(3, 2, dtype=torch.complex64, generator=_gen(6))
SPECIAL = torch.tensor([1.0, float("nan"), float("inf"), -float("inf"), -0.0])
IMG = torch.randn(2, 3, 8, 8, generator=_gen(7))
SEQ = torch.randn(2, 3, 5, generator=_gen(8))
W45 = torch.randn(5, 4, generator=_gen(9))
M45 = torch.randn(4, 5, generator=_gen(10))
Q = torch.randn(2, 2, 5, 8, generator=_gen(11))
K = torch.randn(2, 2, 6, 8, generator=_gen(12))
V = torch.randn(2, 2, 6, 8, generator=_gen(13))


@dataclass
class Case:
    """``op(*args, **kwargs)`` on the allowlist must equal ``expected()`` in eager torch."""

    args: tuple[Any, ...]
    expected: Callable[[], torch.Tensor]
    kwargs: dict[str, Any] = field(default_factory=dict)
    id: str = ""


def case(*args: Any, expected: Callable[[], torch.Tensor], id: str = "", **kwargs: Any) -> Case:
    return Case(args, expected, kwargs, id)


_UNARY_INPUTS: dict[str, tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]] = {
    "relu": (X, torch.relu), "sigmoid": (X, torch.sigmoid), "tanh": (X, torch.tanh),
    "abs": (X, torch.abs), "neg": (X, torch.neg), "exp": (X, torch.exp),
    "exp2": (X, torch.exp2), "expm1": (X, torch.expm1), "log": (POS, torch.log),
    "log2": (POS, torch.log2), "log10": (POS, torch.log10), "log1p": (POS, torch.log1p),
    "sqrt": (POS, torch.sqrt), "rsqrt": (POS, torch.rsqrt), "square": (X, torch.square),
    "sin": (X, torch.sin), "cos": (X, torch.cos), "tan": (X, torch.tan),
    "asin": (POS, torch.asin), "acos": (POS, torch.acos), "atan": (X, torch.atan),
    "sinh": (X, torch.sinh), "cosh": (X, torch.cosh), "erf": (X, torch.erf),
    "erfc": (X, torch.erfc), "reciprocal": (POS, torch.reciprocal), "sign": (X, torch.sign),
    "floor": (X * 3, torch.floor), "ceil": (X * 3, torch.ceil), "round": (X * 3, torch.round),
    "trunc": (X * 3, torch.trunc), "frac": (X * 3, torch.frac), "silu": (X, F.silu),
    "mish": (X, F.mish), "relu6": (X * 8, F.relu6), "selu": (X, F.selu),
    "softsign": (X, F.softsign), "hardswish": (X * 4, F.hardswish),
    "hardsigmoid": (X * 4, F.hardsigmoid), "logsigmoid": (X, F.logsigmoid),
    "tanhshrink": (X, F.tanhshrink), "logical_not": (B1, torch.logical_not),
    "bitwise_not": (INTS, torch.bitwise_not), "isnan": (SPECIAL, torch.isnan),
    "isinf": (SPECIAL, torch.isinf), "isfinite": (SPECIAL, torch.isfinite),
    "clone": (X, torch.clone), "contiguous": (X.t(), lambda t: t.contiguous()),
    "t": (X, torch.t), "real": (CPLX, torch.real), "imag": (CPLX, torch.imag),
    "conj": (CPLX, lambda t: t.conj().resolve_conj()), "angle": (CPLX, torch.angle),
}

_BINARY_INPUTS: dict[str, tuple[Any, Any, Callable[..., torch.Tensor]]] = {
    "mul": (X, ROW, torch.mul), "maximum": (X, Y, torch.maximum),
    "minimum": (X, Y, torch.minimum), "remainder": (INTS, NONZERO, torch.remainder),
    "fmod": (INTS, NONZERO, torch.fmod), "atan2": (X, Y, torch.atan2),
    "floor_divide": (INTS, NONZERO, torch.floor_divide), "eq": (INTS, NONZERO, torch.eq),
    "ne": (INTS, NONZERO, torch.ne), "lt": (X, Y, torch.lt), "le": (X, ROW, torch.le),
    "gt": (X, 0.0, torch.gt), "ge": (X, Y, torch.ge), "logical_and": (B1, B2, torch.logical_and),
    "logical_or": (B1, B2, torch.logical_or), "logical_xor": (B1, B2, torch.logical_xor),
    "bitwise_and": (INTS, NONZERO, torch.bitwise_and), "bitwise_or": (INTS, NONZERO, torch.bitwise_or),
    "bitwise_xor": (INTS, NONZERO, torch.bitwise_xor), "matmul": (X, M45, torch.matmul),
    "mm": (X, M45, torch.mm), "bmm": (SEQ, SEQ.transpose(1, 2), torch.bmm),
    "dot": (ROW, ROW * 2, torch.dot), "outer": (ROW, X[0], torch.outer),
    "hypot": (X, Y, torch.hypot),
}

IDX = torch.tensor([2, 0])
TGT = torch.tensor([1, 0, 3])
def _applied(f: Callable[..., torch.Tensor], *args: Any) -> Callable[[], torch.Tensor]:
    return lambda: f(*args)


CASES: dict[str, list[Case]] = {
    **{n: [case(x, expected=_applied(f, x))] for n, (x, f) in _UNARY_INPUTS.items()},
    **{n: [case(a, b, expected=_applied(f, a, b))] for n, (a, b, f) in _BINARY_INPUTS.items()},
    "add": [case(X, Y, expected=lambda: X + Y),
            case(X, ROW, alpha=2, expected=lambda: torch.add(X, ROW, alpha=2)),
            case(INTS, 3, expected=lambda: INTS + 3)],
    "sub": [case(X, Y, alpha=0.5, expected=lambda: torch.sub(X, Y, alpha=0.5))],
    "div": [case(X, Y, expected=lambda: X / Y),
            case(INTS, NONZERO, rounding_mode="floor",
                 expected=lambda: torch.div(INTS, NONZERO, rounding_mode="floor")),
            case(INTS, NONZERO, rounding_mode="trunc",
                 expected=lambda: torch.div(INTS, NONZERO, rounding_mode="trunc"))],
    "pow": [case(POS, 2.5, expected=lambda: POS**2.5), case(POS, Y, expected=lambda: POS**Y)],
    "clamp": [case(X, -0.5, 0.5, expected=lambda: X.clamp(-0.5, 0.5)),
              case(X, max=0.1, expected=lambda: X.clamp(max=0.1))],
    "where": [case(X > 0, X, Y, expected=lambda: torch.where(X > 0, X, Y)),
              case(X > 0, X, 0.0, expected=lambda: torch.where(X > 0, X, 0.0))],
    "masked_fill": [case(X, X < 0, -1.0, expected=lambda: X.masked_fill(X < 0, -1.0))],
    "lerp": [case(X, Y, 0.25, expected=lambda: torch.lerp(X, Y, 0.25))],
    "gelu": [case(X, expected=lambda: F.gelu(X)),
             case(X, approximate="tanh", expected=lambda: F.gelu(X, approximate="tanh"))],
    "leaky_relu": [case(X, 0.2, expected=lambda: F.leaky_relu(X, 0.2))],
    "elu": [case(X, alpha=0.5, expected=lambda: F.elu(X, 0.5))],
    "softplus": [case(X, beta=2, threshold=1, expected=lambda: F.softplus(X, 2, 1))],
    "hardtanh": [case(X, -0.3, 0.3, expected=lambda: F.hardtanh(X, -0.3, 0.3))],
    "to": [case(X, "float16", expected=lambda: X.half()),
           case(X * 10, dtype="int32", expected=lambda: (X * 10).int()),
           case(X, "bfloat16", expected=lambda: X.bfloat16())],
    "linear": [case(X, W45, expected=lambda: X @ W45.t()),
               case(X, W45, ROW[:1].expand(5).contiguous(),
                    expected=lambda: F.linear(X, W45, ROW[:1].expand(5)))],
    "addmm": [case(ROW[:1], X, M45, beta=0.5, alpha=2,
                   expected=lambda: torch.addmm(ROW[:1], X, M45, beta=0.5, alpha=2))],
    "einsum": [case("ij,jk->ik", X, M45, expected=lambda: X @ M45),
               case("bij->bji", [SEQ], expected=lambda: SEQ.transpose(1, 2))],
    "sum": [case(X, expected=lambda: X.sum()), case(X, 1, expected=lambda: X.sum(1)),
            case(SEQ, [0, 2], keepdim=True, expected=lambda: SEQ.sum((0, 2), keepdim=True)),
            case(INTS, dtype="float64", expected=lambda: INTS.sum(dtype=torch.float64))],
    "mean": [case(X, expected=lambda: X.mean()), case(X, dim=0, expected=lambda: X.mean(0))],
    "prod": [case(POS, expected=lambda: POS.prod()),
             case(POS, 1, True, expected=lambda: POS.prod(1, keepdim=True))],
    "max": [case(X, expected=lambda: X.max()), case(X, 1, expected=lambda: X.max(1).values)],
    "min": [case(X, expected=lambda: X.min()),
            case(X, dim=0, keepdim=True, expected=lambda: X.min(0, keepdim=True).values)],
    "amax": [case(SEQ, [1, 2], expected=lambda: SEQ.amax((1, 2)))],
    "amin": [case(SEQ, expected=lambda: SEQ.amin())],
    "argmax": [case(X, expected=lambda: X.argmax()), case(X, 1, expected=lambda: X.argmax(1))],
    "argmin": [case(X, dim=0, keepdim=True, expected=lambda: X.argmin(0, keepdim=True))],
    "var": [case(X, expected=lambda: X.var()),
            case(X, 1, correction=0, expected=lambda: X.var(1, correction=0))],
    "std": [case(X, [0], keepdim=True, expected=lambda: X.std(0, keepdim=True))],
    "logsumexp": [case(X, 1, expected=lambda: X.logsumexp(1))],
    "norm": [case(X, expected=lambda: torch.linalg.vector_norm(X)),
             case(X, 1, 1, expected=lambda: torch.linalg.vector_norm(X, 1, 1))],
    "all": [case(B1, expected=lambda: B1.all()), case(B1, 1, expected=lambda: B1.all(1))],
    "any": [case(B2, expected=lambda: B2.any()), case(B2, 0, expected=lambda: B2.any(0))],
    "cumsum": [case(X, 1, expected=lambda: X.cumsum(1))],
    "softmax": [case(X, -1, expected=lambda: X.softmax(-1)),
                case(X.half(), 0, dtype="float32",
                     expected=lambda: X.half().softmax(0, dtype=torch.float32))],
    "log_softmax": [case(X, 1, expected=lambda: X.log_softmax(1))],
    "reshape": [case(X, 2, 6, expected=lambda: X.reshape(2, 6)),
                case(X, [6, -1], expected=lambda: X.reshape(6, 2)),
                case(X.t(), -1, expected=lambda: X.t().reshape(-1))],
    "view": [case(X, 12, expected=lambda: X.view(12)),
             case(X, shape=[4, 3], expected=lambda: X.view(4, 3))],
    "expand": [case(ROW, 3, 4, expected=lambda: ROW.expand(3, 4))],
    "repeat": [case(ROW, 2, 1, expected=lambda: ROW.repeat(2, 1))],
    "permute": [case(SEQ, 2, 0, 1, expected=lambda: SEQ.permute(2, 0, 1))],
    "transpose": [case(SEQ, 0, 2, expected=lambda: SEQ.transpose(0, 2))],
    "flatten": [case(SEQ, expected=lambda: SEQ.flatten()),
                case(SEQ, 1, expected=lambda: SEQ.flatten(1))],
    "unflatten": [case(X, 1, [2, 2], expected=lambda: X.unflatten(1, (2, 2)))],
    "squeeze": [case(X[None, :, None], expected=lambda: X),
                case(X[None, :, None], 0, expected=lambda: X[:, None])],
    "unsqueeze": [case(X, 1, expected=lambda: X.unsqueeze(1))],
    "flip": [case(X, [0, 1], expected=lambda: X.flip(0, 1))],
    "roll": [case(X, 1, 1, expected=lambda: X.roll(1, 1)), case(X, 5, expected=lambda: X.roll(5))],
    "tril": [case(X, expected=lambda: X.tril())],
    "triu": [case(X, 1, expected=lambda: X.triu(1))],
    "narrow": [case(X, 1, 1, 2, expected=lambda: X.narrow(1, 1, 2))],
    "select": [case(X, 0, -1, expected=lambda: X[-1])],
    "getitem": [case(X, 1, expected=lambda: X[1]),
                case(X, [slice(None, None, 2), slice(1, 3)], expected=lambda: X[::2, 1:3]),
                case(SEQ, [Ellipsis, None, 0], expected=lambda: SEQ[..., None, 0]),
                case(X, X > 0, expected=lambda: X[X > 0]),
                case(X, IDX, expected=lambda: X[IDX])],
    "gather": [case(X, 1, torch.tensor([[0], [3], [1]]),
                    expected=lambda: X.gather(1, torch.tensor([[0], [3], [1]])))],
    "index_select": [case(X, 1, IDX, expected=lambda: X.index_select(1, IDX))],
    "cat": [case([X, Y], expected=lambda: torch.cat([X, Y])),
            case([X, Y, X], 1, expected=lambda: torch.cat([X, Y, X], 1))],
    "stack": [case([X, Y], -1, expected=lambda: torch.stack([X, Y], -1))],
    "layer_norm": [case(SEQ, [5], expected=lambda: F.layer_norm(SEQ, [5])),
                   case(SEQ, [3, 5], torch.ones(3, 5) * 2, torch.ones(3, 5),
                        expected=lambda: F.layer_norm(SEQ, [3, 5], torch.ones(3, 5) * 2,
                                                      torch.ones(3, 5)))],
    "rms_norm": [case(SEQ, [5], expected=lambda: F.rms_norm(SEQ, [5])),
                 case(SEQ, [5], ROW[:1].expand(5).contiguous(), eps=1e-3,
                      expected=lambda: F.rms_norm(SEQ, [5], ROW[:1].expand(5), 1e-3))],
    "group_norm": [case(IMG, 3, expected=lambda: F.group_norm(IMG, 3))],
    "batch_norm": [case(IMG, torch.zeros(3), torch.ones(3) * 2, torch.ones(3), torch.zeros(3),
                        expected=lambda: F.batch_norm(IMG, torch.zeros(3), torch.ones(3) * 2,
                                                      torch.ones(3), torch.zeros(3)))],
    "conv1d": [case(SEQ, torch.ones(4, 3, 2), padding=1,
                    expected=lambda: F.conv1d(SEQ, torch.ones(4, 3, 2), padding=1))],
    "conv2d": [case(IMG, W := torch.randn(6, 3, 3, 3, generator=_gen(14)), ROW[:1].expand(6).clone(),
                    stride=2, padding=1,
                    expected=lambda: F.conv2d(IMG, W, ROW[:1].expand(6), stride=2, padding=1)),
               case(IMG, torch.randn(3, 1, 3, 3, generator=_gen(15)), padding="same", groups=3,
                    expected=lambda: F.conv2d(IMG, torch.randn(3, 1, 3, 3, generator=_gen(15)),
                                              padding="same", groups=3))],
    "max_pool2d": [case(IMG, 2, expected=lambda: F.max_pool2d(IMG, 2)),
                   case(IMG, [3, 2], 1, 1, expected=lambda: F.max_pool2d(IMG, (3, 2), 1, 1))],
    "avg_pool2d": [case(IMG, 2, expected=lambda: F.avg_pool2d(IMG, 2))],
    "adaptive_avg_pool2d": [case(IMG, [2, 3], expected=lambda: F.adaptive_avg_pool2d(IMG, (2, 3)))],
    "embedding": [case(TGT, X.t(), expected=lambda: F.embedding(TGT, X.t())),
                  case(TGT, X.t(), padding_idx=0, expected=lambda: F.embedding(TGT, X.t(), 0))],
    "dropout": [case(X, 0.3, expected=lambda: X)],
    "scaled_dot_product_attention": [
        case(Q, K, V, expected=lambda: F.scaled_dot_product_attention(Q, K, V)),
        case(Q, Q, Q, is_causal=True, scale=0.5,
             expected=lambda: F.scaled_dot_product_attention(Q, Q, Q, is_causal=True, scale=0.5))],
    "normalize": [case(X, dim=0, expected=lambda: F.normalize(X, dim=0))],
    "pad": [case(X, [1, 2], expected=lambda: F.pad(X, (1, 2))),
            case(IMG, [1, 1, 2, 0], "reflect", expected=lambda: F.pad(IMG, (1, 1, 2, 0), "reflect")),
            case(X, [1, 1], value=7.0, expected=lambda: F.pad(X, (1, 1), value=7.0))],
    "mse_loss": [case(X, Y, expected=lambda: F.mse_loss(X, Y)),
                 case(X, Y, reduction="none", expected=lambda: F.mse_loss(X, Y, reduction="none"))],
    "cross_entropy": [case(X, TGT, expected=lambda: F.cross_entropy(X, TGT)),
                      case(X, TGT, reduction="sum", expected=lambda: F.cross_entropy(X, TGT,
                                                                                   reduction="sum"))],
    "randn": [case(2, 3, seed=7, expected=lambda: torch.randn(2, 3, generator=_gen(7)))],
    "rand": [case([4], seed=1, dtype="float64",
                  expected=lambda: torch.rand(4, generator=_gen(1), dtype=torch.float64))],
    "zeros": [case(2, 3, expected=lambda: torch.zeros(2, 3)),
              case([0, 2], dtype="int8", expected=lambda: torch.zeros(0, 2, dtype=torch.int8))],
    "ones": [case(3, dtype="bool", expected=lambda: torch.ones(3, dtype=torch.bool))],
    "empty": [case(2, 2, expected=lambda: torch.zeros(2, 2))],  # documented: zero-filled
    "full": [case([2, 2], 1.5, expected=lambda: torch.full((2, 2), 1.5)),
             case([3], 4, dtype="int64", expected=lambda: torch.full((3,), 4))],
    "arange": [case(5, expected=lambda: torch.arange(5)),
               case(1, 2, 0.25, expected=lambda: torch.arange(1, 2, 0.25)),
               case(5, 0, -2, dtype="float32", expected=lambda: torch.arange(5, 0, -2.0))],
    "eye": [case(3, expected=lambda: torch.eye(3)),
            case(2, 4, dtype="int32", expected=lambda: torch.eye(2, 4, dtype=torch.int32))],
    "zeros_like": [case(X, expected=lambda: torch.zeros_like(X))],
    "ones_like": [case(X, dtype="int8", expected=lambda: torch.ones_like(X, dtype=torch.int8))],
    "full_like": [case(INTS, 3, expected=lambda: torch.full_like(INTS, 3))],
}

ALL_CASES = [pytest.param(name, c, id=f"{name}-{i}")
             for name, cs in sorted(CASES.items()) for i, c in enumerate(cs)]


def test_every_op_has_a_case() -> None:
    missing = sorted(set(REGISTRY) - set(CASES))
    assert not missing, f"ops without a test case in tests/unit/genie/ops/test_table.py: {missing}"
    assert not sorted(set(CASES) - set(REGISTRY)), "cases for ops that are not registered"


@pytest.mark.parametrize(("name", "c"), ALL_CASES)
def test_op_matches_eager_torch(name: str, c: Case) -> None:
    op = REGISTRY[name]
    out = op(op.bind(c.args, c.kwargs), OpContext())
    expected = c.expected()
    assert isinstance(out, torch.Tensor)
    assert out.dtype == expected.dtype
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, equal_nan=True, rtol=1e-6, atol=1e-6)


def _run(op: Op, bound: dict[str, Any], *, limit: int = 1 << 34,
         reuse_input: bool = False) -> torch.Tensor:
    """``op`` run as the server runs it: within an allocation cap of ``limit`` bytes."""
    executor = Executor(torch.device("cpu"), max_alloc_bytes=limit, compute_threads=1,
                        max_inflight=1)
    return executor.run_op(op, bound, cache=MetaCache(), reuse_input=reuse_input)


@pytest.mark.parametrize(("name", "c"), ALL_CASES)
def test_allocation_cap_sees_the_real_result_size(name: str, c: Case) -> None:
    # The cap judges every op by its result inferred on meta before it runs: that
    # inference must give the real shape and dtype (or admit it cannot tell), and a
    # cap one byte below the real size must refuse the op while the exact size passes.
    op = REGISTRY[name]
    bound = op.bind(c.args, c.kwargs)
    real = op(bound, OpContext())
    size = infer(op, bound, None)
    if isinstance(size, MetaFailure):  # data-dependent (boolean-mask indexing): measured after the run
        return
    assert (size.shape, size.dtype) == (tuple(real.shape), real.dtype)
    nbytes = real.numel() * real.element_size()
    assert size.nbytes == nbytes
    assert check_output(op, bound, OpContext(max_alloc_bytes=nbytes), None, materialized=True) == size
    if nbytes:
        with pytest.raises(InvalidArgumentError, match="allocation limit"):
            _run(op, bound, limit=nbytes - 1)


@pytest.mark.parametrize("name", sorted(_UNARY_INPUTS))
def test_unary_ops_bind_by_keyword_too(name: str) -> None:
    op = REGISTRY[name]
    x, f = _UNARY_INPUTS[name]
    torch.testing.assert_close(op(op.bind((), {"input": x})), f(x), equal_nan=True)


def test_registry_names_and_signatures() -> None:
    names = op_names()
    assert names == sorted(REGISTRY)
    for required in ("relu", "sigmoid", "tanh", "abs", "neg", "exp", "log", "sqrt", "gelu",
                     "silu", "add", "sub", "mul", "div", "pow", "maximum", "minimum", "matmul",
                     "mm", "bmm", "linear", "sum", "mean", "max", "min", "argmax", "softmax",
                     "log_softmax", "reshape", "view", "transpose", "permute", "flatten",
                     "squeeze", "unsqueeze", "cat", "stack", "getitem", "contiguous", "to",
                     "layer_norm", "conv2d", "max_pool2d", "embedding", "dropout",
                     "scaled_dot_product_attention", "randn", "rand", "zeros", "ones",
                     "arange", "full"):
        assert required in REGISTRY, required
    assert REGISTRY["add"].signature() == "add(input, other, alpha=1)"
    assert REGISTRY["reshape"].signature() == "reshape(input, *shape)"


# --- argument validation ---------------------------------------------------------------


def bind(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    return REGISTRY[name].bind(args, kwargs)


@pytest.mark.parametrize(("name", "args", "kwargs", "words"), [
    ("relu", ("x",), {}, "must be a tensor"),
    ("relu", (3.0,), {}, "must be a tensor"),
    ("add", (X, "two"), {}, "must be a number"),
    ("add", (X, None), {}, "must be a number"),
    ("add", (X, Y), {"alpha": "2"}, "must be a number"),
    ("sum", (X,), {"dim": "1"}, "integer"),
    ("sum", (X,), {"dim": 1.0}, "integer"),
    ("sum", (X,), {"keepdim": 1}, "true or false"),
    ("unsqueeze", (X, True), {}, "must be an integer"),
    ("reshape", (X, 1.5), {}, "integer"),
    ("reshape", (X, [2, "6"]), {}, "integer"),
    ("cat", ([],), {}, "non-empty list of tensors"),
    ("cat", ([X, 1],), {}, "non-empty list of tensors"),
    ("gelu", (X,), {"approximate": "fast"}, "one of 'none', 'tanh'"),
    ("getitem", (X, 1.5), {}, "an index"),
    ("getitem", (X, X), {}, "an index"),
    ("getitem", (X, slice(0.5, 2)), {}, "slice of integers"),
    ("einsum", (3, X), {}, "a string"),
    ("pad", (X, [1]), {"mode": "wrap"}, "one of"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_wrong_argument_types_are_refused(name: str, args: tuple[Any, ...],
                                          kwargs: dict[str, Any], words: str) -> None:
    with pytest.raises(InvalidArgumentError, match=words) as info:
        bind(name, *args, **kwargs)
    assert info.value.status == 422
    assert name in info.value.message


def test_unknown_missing_extra_and_duplicate_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match=r"no argument 'dims'.*sum\(input, dim=None"):
        bind("sum", X, dims=1)
    with pytest.raises(InvalidArgumentError, match="missing argument 'other'"):
        bind("add", X)
    with pytest.raises(InvalidArgumentError, match="missing argument 'input'"):
        bind("relu")
    with pytest.raises(InvalidArgumentError, match="at most 1 positional"):
        bind("relu", X, X)
    with pytest.raises(InvalidArgumentError, match="'other' twice"):
        bind("add", X, Y, other=Y)


def test_dtype_arguments_accept_names_only_of_wire_dtypes() -> None:
    assert bind("to", X, "bf16")["dtype"] is torch.bfloat16
    assert bind("to", X, torch.int8)["dtype"] is torch.int8
    for bad in ("float128", "complex128", "str", 3):
        with pytest.raises(UnsupportedDTypeError):
            bind("to", X, bad)


@pytest.mark.parametrize("name", ["getattr", "__import__", "save", "load", "from_file",
                                  "set_default_device", "Tensor.__reduce_ex__", "", "RELU"])
def test_unknown_op_is_unsupported_and_lists_the_ops(name: str) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        get_op(name)
    assert info.value.status == 422 and info.value.error_type == "unsupported_op"
    assert "relu" in info.value.message and "matmul" in info.value.message
    assert repr(name) in info.value.message


def test_non_string_op_names_are_unsupported() -> None:
    for name in (None, 3, ["relu"]):
        with pytest.raises(UnsupportedOpError):
            get_op(name)


@pytest.mark.parametrize(("name", "args", "shapes"), [
    ("matmul", (torch.ones(3, 4), torch.ones(5, 6)), ["[3, 4]", "[5, 6]"]),
    ("mm", (torch.ones(2, 3), torch.ones(2, 3)), ["[2, 3]"]),
    ("bmm", (torch.ones(2, 3, 4), torch.ones(3, 4, 5)), ["[2, 3, 4]", "[3, 4, 5]"]),
    ("dot", (torch.ones(3), torch.ones(4)), ["[3]", "[4]"]),
    ("add", (torch.ones(2, 3), torch.ones(4)), ["[2, 3]", "[4]"]),
    ("cat", ([torch.ones(2, 3), torch.ones(2, 4)],), ["[2, 3]", "[2, 4]"]),
    ("reshape", (torch.ones(2, 3), 4), ["[2, 3]"]),
    ("linear", (torch.ones(2, 3), torch.ones(5, 4)), ["[2, 3]", "[5, 4]"]),
])
def test_torch_shape_errors_become_422_naming_the_shapes(name: str, args: tuple[Any, ...],
                                                         shapes: list[str]) -> None:
    op = REGISTRY[name]
    with pytest.raises(InvalidArgumentError) as info:
        op(op.bind(args))
    assert info.value.status == 422
    assert type(info.value) is InvalidArgumentError
    for shape in shapes:
        assert shape in info.value.message


@pytest.mark.parametrize(("name", "args"), [
    ("arange", (0, float("inf"))),  # JSON's Infinity: OverflowError inside arange
    ("arange", (0, float("nan"))),
    ("randn", (2,), ),
    ("getitem", (X, slice(0, 3, 0))),
    ("pow", (torch.tensor([2]), -1)),
    ("softmax", (torch.tensor([1, 2]), 0)),
    ("embedding", (torch.tensor([9]), X)),
    ("remainder", (torch.tensor([3]), 0)),
    ("clamp", (X,)),
])
def test_runtime_failures_are_invalid_arguments_not_crashes(name: str,
                                                            args: tuple[Any, ...]) -> None:
    op = REGISTRY[name]
    kwargs = {"seed": 2**70} if name == "randn" else {}
    with pytest.raises(InvalidArgumentError):
        op(op.bind(args, kwargs), OpContext())


def test_seeded_factories_are_deterministic() -> None:
    for name in ("randn", "rand"):
        op = REGISTRY[name]
        a = op(op.bind((3, 4), {"seed": 123}))
        b = op(op.bind((3, 4), {"seed": 123}))
        c = op(op.bind((3, 4), {"seed": 124}))
        assert torch.equal(a, b)
        assert not torch.equal(a, c)
        # Unseeded draws come from the global generator: different each time.
        assert not torch.equal(op(op.bind((64,))), op(op.bind((64,))))


@pytest.mark.parametrize(("name", "args", "kwargs"), [
    ("zeros", (1000, 1000), {}),
    ("ones", (2000,), {"dtype": "float64"}),
    ("empty", (500, 3), {}),
    ("randn", (33, 33), {"seed": 0}),
    ("rand", (1100,), {}),
    ("full", ([1001], 0.5), {}),
    ("arange", (0, 4000), {}),
    ("eye", (40,), {}),
])
def test_factory_allocation_cap(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    op = REGISTRY[name]
    ctx = OpContext(max_alloc_bytes=4000)
    with pytest.raises(InvalidArgumentError, match="4000-byte allocation limit"):
        op(op.bind(args, kwargs), ctx)
    small = op(op.bind(args, kwargs), OpContext(max_alloc_bytes=1 << 30))
    assert small.numel() * small.element_size() > 4000


def test_factories_refuse_negative_sizes() -> None:
    for name, args in (("zeros", (2, -1)), ("eye", (3, -1)), ("full", ([-2], 1.0))):
        op = REGISTRY[name]
        with pytest.raises(InvalidArgumentError, match="non-negative"):
            op(op.bind(args), OpContext())


def test_training_mode_randomness_is_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="evaluation mode"):
        REGISTRY["dropout"](bind("dropout", X, 0.5, True))
    with pytest.raises(InvalidArgumentError, match=r"p must be in \[0, 1\]"):
        REGISTRY["dropout"](bind("dropout", X, 1.5))
    with pytest.raises(InvalidArgumentError, match="evaluation mode"):
        op = REGISTRY["batch_norm"]
        op(op.bind((IMG, torch.zeros(3), torch.ones(3)), {"training": True}))
    with pytest.raises(InvalidArgumentError, match="only 0.0"):
        bind("scaled_dot_product_attention", Q, K, V, dropout_p=0.1)


def test_ops_do_not_modify_their_inputs() -> None:
    # The server may hold an input as a handle: an op must never write into it.
    for name, cs in CASES.items():
        for c in cs:
            tensors = [a for a in c.args if isinstance(a, torch.Tensor)]
            before = [t.clone() for t in tensors]
            op = REGISTRY[name]
            op(op.bind(c.args, c.kwargs))
            for t, b in zip(tensors, before, strict=True):
                assert torch.equal(t, b) or (t.is_floating_point() and torch.equal(
                    t.nan_to_num(), b.nan_to_num())), name


# --- fuzz: whatever arguments arrive, an op answers with a tensor or a 422 ---------------

_SMALL = (st.integers(-3, 6) | st.booleans() | st.none() | st.floats(-4, 4)
          | st.sampled_from(["float32", "int64", "bool", "x", "none", "mean", "same"]))
_VALUE = st.recursive(
    _SMALL | st.sampled_from([X, INTS, B1, ROW, torch.tensor(2.0), torch.zeros(0, 4)])
    | st.builds(slice, st.integers(-3, 3) | st.none(), st.integers(-3, 3) | st.none(),
                st.integers(1, 2) | st.none()),
    lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_arguments_never_escape_the_error_tree(data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(REGISTRY)))
    op = REGISTRY[name]
    names = [p.name for p in op.params]
    args = data.draw(st.lists(_VALUE, max_size=3))
    kwargs = data.draw(st.dictionaries(st.sampled_from([*names, "bogus"]), _VALUE, max_size=3))
    try:
        out = op(op.bind(args, kwargs), OpContext(max_alloc_bytes=1 << 20))
    except InvalidArgumentError:
        return  # 422, with its subclasses: what the server answers
    assert isinstance(out, torch.Tensor), name


# --- in-place forms: the server may write a result over a body tensor it owns ---------

INPLACE_OPS = sorted(name for name, op in REGISTRY.items() if op.inplace is not None)
FLOATS = (torch.float32, torch.float64, torch.bfloat16, torch.float16)


def _raw(t: torch.Tensor) -> torch.Tensor:
    """The bits, so NaN payloads and -0.0 compare exactly."""
    return t.contiguous().reshape(-1).view(torch.uint8)


def test_the_common_unary_ops_have_in_place_forms() -> None:
    assert {"relu", "sigmoid", "tanh", "abs", "neg", "exp", "log", "sqrt", "silu",
            "gelu"} <= set(INPLACE_OPS)


@pytest.mark.parametrize("dtype", FLOATS, ids=str)
@pytest.mark.parametrize("name", INPLACE_OPS)
def test_in_place_run_is_bit_identical_and_reuses_the_input(name: str, dtype: torch.dtype) -> None:
    op = REGISTRY[name]
    # 1031 elements: not a multiple of any vector width, so the kernels' tails run too;
    # values across [-6, 6] plus specials reach every branch (NaN from log(-x) included).
    x = torch.cat([torch.linspace(-6, 6, 1026), SPECIAL]).to(dtype)
    for kwargs in ([{"approximate": "none"}, {"approximate": "tanh"}] if name == "gelu"
                   else [{}]):
        expected = op(op.bind((x.clone(),), kwargs))
        mine = x.clone()
        out = _run(op, op.bind((mine,), kwargs), reuse_input=True)
        assert out.dtype == expected.dtype == dtype
        assert torch.equal(_raw(out), _raw(expected))
        assert out.data_ptr() == mine.data_ptr()  # written in place: nothing allocated


@pytest.mark.parametrize("make", [
    lambda: torch.randn(4, 6).t(),                       # not contiguous
    lambda: torch.randint(-5, 5, (4, 6)),                # integer: sigmoid would change dtype
    lambda: torch.randn(4, 6, dtype=torch.complex64),    # complex: abs would change dtype
], ids=["transposed", "int64", "complex64"])
def test_in_place_only_where_it_keeps_dtype_and_layout(make: Callable[[], torch.Tensor]) -> None:
    for name in ("abs", "neg", "sigmoid"):
        op = REGISTRY[name]
        x = make()
        before = x.clone()
        out = _run(op, op.bind((x,)), reuse_input=True)
        assert torch.equal(x, before)  # the input is untouched
        assert torch.equal(out, op(op.bind((before,))))


def test_without_reuse_input_the_input_is_never_written() -> None:
    x = torch.randn(5)
    before = x.clone()
    out = _run(REGISTRY["relu"], REGISTRY["relu"].bind((x,)))
    assert torch.equal(x, before) and torch.equal(out, torch.relu(before))
