"""What the ops tests share: ``CASES``, a call for every op in ``REGISTRY`` with eager
PyTorch's answer, the tensors those calls take, and ``bind``.

The cases are served as parameters: a test that asks for ``op_case`` runs once per case
(``name`` is the op), one that asks for ``unary`` once per unary op (its input and
eager function).  ``test_table.py`` checks each op against eager with them,
``test_meta.py`` the allocation cap's view of each result.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from genie.ops import REGISTRY


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
MASKED = X.masked_fill(torch.tensor([[True] * 4, [False, True, False, True], [False] * 4]),
                       float("-inf"))  # a fully masked row: 0, not NaN
TGT = torch.tensor([1, 0, 3])


def _assigned(t: torch.Tensor, index: Any, value: Any) -> torch.Tensor:
    out = t.clone()
    out[index] = value
    return out


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
    "baddbmm": [case(ROW[:1], SEQ, SEQ.transpose(1, 2), beta=0.5, alpha=2,
                     expected=lambda: torch.baddbmm(ROW[:1], SEQ, SEQ.transpose(1, 2),
                                                    beta=0.5, alpha=2))],
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
    "safe_softmax": [case(MASKED, -1, expected=lambda: torch._safe_softmax(MASKED, -1)),
                     case(X, 0, dtype="float64", expected=lambda: X.softmax(0, dtype=torch.float64))],
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
    "setitem": [case(X, 1, 0.5, expected=lambda: _assigned(X, 1, 0.5)),
                case(X, [slice(None), slice(1, 3)], Y[:, :2],
                     expected=lambda: _assigned(X, (slice(None), slice(1, 3)), Y[:, :2])),
                case(X, [IDX], ROW, expected=lambda: _assigned(X, (IDX,), ROW))],
    "isin": [case(INTS, NONZERO, expected=lambda: torch.isin(INTS, NONZERO)),
             case(INTS, 3, invert=True, expected=lambda: torch.isin(INTS, 3, invert=True))],
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

def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "op_case" in metafunc.fixturenames:
        metafunc.parametrize(("name", "op_case"), ALL_CASES)
    if "unary" in metafunc.fixturenames:
        metafunc.parametrize(("name", "unary"), [pytest.param(n, _UNARY_INPUTS[n], id=n)
                                                 for n in sorted(_UNARY_INPUTS)])


@pytest.fixture(scope="session")
def op_cases() -> dict[str, list[Case]]:
    """Every case, by op name."""
    return CASES


@pytest.fixture(scope="session")
def op_inputs() -> SimpleNamespace:
    """The tensors the cases take, by the names they have here (``X``, ``SPECIAL``...)."""
    return SimpleNamespace(X=X, Y=Y, ROW=ROW, POS=POS, INTS=INTS, NONZERO=NONZERO, B1=B1, B2=B2,
                           CPLX=CPLX, SPECIAL=SPECIAL, IMG=IMG, SEQ=SEQ, W45=W45, M45=M45,
                           Q=Q, K=K, V=V)


@pytest.fixture(scope="session")
def bind() -> Callable[..., dict[str, Any]]:
    """``bind(name, *args, **kwargs)``: the op's arguments bound and checked."""
    def bind(name: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        return REGISTRY[name].bind(args, kwargs)
    return bind
