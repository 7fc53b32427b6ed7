"""The allowlist (genie.ops.table): every registered op agrees with eager PyTorch,
binds by keyword, leaves its inputs alone, refuses what would draw training-mode
randomness, and has an in-place form that gives the out-of-place bits; names outside
the allowlist are unsupported.

``CASES`` (conftest.py) has an entry for every op in ``REGISTRY``;
``test_every_op_has_a_case`` fails when an op is added without one, so the table cannot
silently fall behind.
"""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from genie.errors import InvalidArgumentError, UnsupportedOpError
from genie.ops import REGISTRY, OpContext, get_op, op_names


def test_every_op_has_a_case(op_cases: dict[str, list[Any]]) -> None:
    missing = sorted(set(REGISTRY) - set(op_cases))
    assert not missing, f"ops without a test case in tests/unit/genie/ops/conftest.py: {missing}"
    assert not sorted(set(op_cases) - set(REGISTRY)), "cases for ops that are not registered"


def test_op_matches_eager_torch(name: str, op_case: Any) -> None:
    op = REGISTRY[name]
    out = op(op.bind(op_case.args, op_case.kwargs), OpContext())
    expected = op_case.expected()
    assert isinstance(out, torch.Tensor)
    assert out.dtype == expected.dtype
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected, equal_nan=True, rtol=1e-6, atol=1e-6)


def test_unary_ops_bind_by_keyword_too(
        name: str, unary: tuple[torch.Tensor, Callable[[torch.Tensor], torch.Tensor]]) -> None:
    op = REGISTRY[name]
    x, f = unary
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


@pytest.mark.parametrize("name", ["getattr", "__import__", "save", "load", "from_file",
                                  "set_default_device", "Tensor.__reduce_ex__", "", "RELU"])
def test_unknown_op_is_unsupported_and_lists_the_ops(name: str) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        get_op(name)
    assert info.value.status == 422 and info.value.error_type == "unsupported_op"
    assert "relu" in info.value.message and "matmul" in info.value.message
    assert repr(name) in info.value.message


@pytest.mark.parametrize(("name", "first"), [("RELU", "relu"), ("relux", "relu"),
                                             ("softmx", "softmax"), ("matmull", "matmul")])
def test_unknown_op_names_the_closest_first(name: str, first: str) -> None:
    with pytest.raises(UnsupportedOpError) as info:
        get_op(name)
    assert info.value.message.startswith(f"unsupported op {name!r}; did you mean {first}")
    assert f"supported ops ({len(op_names())}" in info.value.message


def test_non_string_op_names_are_unsupported() -> None:
    for name in (None, 3, ["relu"]):
        with pytest.raises(UnsupportedOpError):
            get_op(name)


def test_training_mode_randomness_is_refused(op_inputs: SimpleNamespace,
                                             bind: Callable[..., dict[str, Any]]) -> None:
    X, IMG, Q, K, V = op_inputs.X, op_inputs.IMG, op_inputs.Q, op_inputs.K, op_inputs.V
    with pytest.raises(InvalidArgumentError, match="evaluation mode"):
        REGISTRY["dropout"](bind("dropout", X, 0.5, True))
    with pytest.raises(InvalidArgumentError, match=r"p must be in \[0, 1\]"):
        REGISTRY["dropout"](bind("dropout", X, 1.5))
    with pytest.raises(InvalidArgumentError, match="evaluation mode"):
        op = REGISTRY["batch_norm"]
        op(op.bind((IMG, torch.zeros(3), torch.ones(3)), {"training": True}))
    with pytest.raises(InvalidArgumentError, match="only 0.0"):
        bind("scaled_dot_product_attention", Q, K, V, dropout_p=0.1)


def test_ops_do_not_modify_their_inputs(op_cases: dict[str, list[Any]]) -> None:
    # The server may hold an input as a handle: an op must never write into it.
    for name, cs in op_cases.items():
        for c in cs:
            tensors = [a for a in c.args if isinstance(a, torch.Tensor)]
            before = [t.clone() for t in tensors]
            op = REGISTRY[name]
            op(op.bind(c.args, c.kwargs))
            for t, b in zip(tensors, before, strict=True):
                assert torch.equal(t, b) or (t.is_floating_point() and torch.equal(
                    t.nan_to_num(), b.nan_to_num())), name


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
def test_in_place_run_is_bit_identical_and_reuses_the_input(
        name: str, dtype: torch.dtype, op_inputs: SimpleNamespace,
        run_op: Callable[..., torch.Tensor]) -> None:
    op = REGISTRY[name]
    # 1031 elements: not a multiple of any vector width, so the kernels' tails run too;
    # values across [-6, 6] plus specials reach every branch (NaN from log(-x) included).
    x = torch.cat([torch.linspace(-6, 6, 1026), op_inputs.SPECIAL]).to(dtype)
    for kwargs in ([{"approximate": "none"}, {"approximate": "tanh"}] if name == "gelu"
                   else [{}]):
        expected = op(op.bind((x.clone(),), kwargs))
        mine = x.clone()
        out = run_op(op, op.bind((mine,), kwargs), reuse_input=True)
        assert out.dtype == expected.dtype == dtype
        assert torch.equal(_raw(out), _raw(expected))
        assert out.data_ptr() == mine.data_ptr()  # written in place: nothing allocated


def test_max_pool2d_refuses_padding_wider_than_its_input() -> None:
    # torch's CPU kernel steps each window over the padding one dilation at a time: a
    # [1, 1, 1, 1] input with a 2e9 kernel and 1e9 padding took 0.5 s for 4 bytes.
    pool = REGISTRY["max_pool2d"]
    tiny = torch.ones(1, 1, 1, 1)
    with pytest.raises(InvalidArgumentError, match="wider than the input"):
        pool.fn(**pool.bind([tiny], {"kernel_size": [2_000_000_000] * 2,
                                     "padding": [1_000_000_000] * 2}))
    # Padding up to the input's own size, as models use it, still pools like torch.
    img = torch.randn(1, 2, 3, 3)
    out = pool.fn(**pool.bind([img], {"kernel_size": 3, "stride": 1, "padding": 1}))
    assert torch.equal(out, F.max_pool2d(img, 3, 1, 1))
