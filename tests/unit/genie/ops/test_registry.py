"""What an op is (genie.ops.registry): ``Op.bind`` refuses unknown, missing, extra and
duplicate arguments naming the signature; running turns torch's own failures into a
422 that names the shapes, whatever arguments arrive; ``Op.run_inplace`` writes over
its input only where that keeps the dtype and layout."""

from __future__ import annotations

from collections.abc import Callable
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genie.errors import InvalidArgumentError
from genie.ops import REGISTRY, OpContext

#: Any float tensor: what fails here is the rest of the call.
T = torch.ones(3, 4)


def test_unknown_missing_extra_and_duplicate_arguments(bind: Callable[..., dict[str, Any]]) -> None:
    with pytest.raises(InvalidArgumentError, match=r"no argument 'dims'.*sum\(input, dim=None"):
        bind("sum", T, dims=1)
    with pytest.raises(InvalidArgumentError, match="missing argument 'other'"):
        bind("add", T)
    with pytest.raises(InvalidArgumentError, match="missing argument 'input'"):
        bind("relu")
    with pytest.raises(InvalidArgumentError, match="at most 1 positional"):
        bind("relu", T, T)
    with pytest.raises(InvalidArgumentError, match="'other' twice"):
        bind("add", T, T, other=T)


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
    ("getitem", (T, slice(0, 3, 0))),
    ("pow", (torch.tensor([2]), -1)),
    ("softmax", (torch.tensor([1, 2]), 0)),
    ("embedding", (torch.tensor([9]), T)),
    ("remainder", (torch.tensor([3]), 0)),
    ("clamp", (T,)),
])
def test_runtime_failures_are_invalid_arguments_not_crashes(name: str,
                                                            args: tuple[Any, ...]) -> None:
    op = REGISTRY[name]
    kwargs = {"seed": 2**70} if name == "randn" else {}
    with pytest.raises(InvalidArgumentError):
        op(op.bind(args, kwargs), OpContext())


# --- fuzz: whatever arguments arrive, an op answers with a tensor or a 422 ---------------

_SMALL = (st.integers(-3, 6) | st.booleans() | st.none() | st.floats(-4, 4)
          | st.sampled_from(["float32", "int64", "bool", "x", "none", "mean", "same"]))


@pytest.fixture(scope="module")
def arg_values(op_inputs: SimpleNamespace) -> st.SearchStrategy[Any]:
    """Argument values: small scalars, names, slices and some of the cases' tensors,
    nested in lists."""
    return st.recursive(
        _SMALL | st.sampled_from([op_inputs.X, op_inputs.INTS, op_inputs.B1, op_inputs.ROW,
                                  torch.tensor(2.0), torch.zeros(0, 4)])
        | st.builds(slice, st.integers(-3, 3) | st.none(), st.integers(-3, 3) | st.none(),
                    st.integers(1, 2) | st.none()),
        lambda inner: st.lists(inner, max_size=3), max_leaves=6)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_random_arguments_never_escape_the_error_tree(arg_values: st.SearchStrategy[Any],
                                                      data: st.DataObject) -> None:
    name = data.draw(st.sampled_from(sorted(REGISTRY)))
    op = REGISTRY[name]
    names = [p.name for p in op.params]
    args = data.draw(st.lists(arg_values, max_size=3))
    kwargs = data.draw(st.dictionaries(st.sampled_from([*names, "bogus"]), arg_values, max_size=3))
    try:
        out = op(op.bind(args, kwargs), OpContext(max_alloc_bytes=1 << 20))
    except InvalidArgumentError:
        return  # 422, with its subclasses: what the server answers
    assert isinstance(out, torch.Tensor), name


# --- in-place: only over a caller-owned input, and only where the bits come out the same ---


@pytest.mark.parametrize("make", [
    lambda: torch.randn(4, 6).t(),                       # not contiguous
    lambda: torch.randint(-5, 5, (4, 6)),                # integer: sigmoid would change dtype
    lambda: torch.randn(4, 6, dtype=torch.complex64),    # complex: abs would change dtype
], ids=["transposed", "int64", "complex64"])
def test_in_place_only_where_it_keeps_dtype_and_layout(
        make: Callable[[], torch.Tensor], run_op: Callable[..., torch.Tensor]) -> None:
    for name in ("abs", "neg", "sigmoid"):
        op = REGISTRY[name]
        x = make()
        before = x.clone()
        out = run_op(op, op.bind((x,)), reuse_input=True)
        assert torch.equal(x, before)  # the input is untouched
        assert torch.equal(out, op(op.bind((before,))))
