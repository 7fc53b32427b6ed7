"""Working memory (genie.ops.work): for every op of the table, the estimate made on meta
covers what the op really allocates while it runs, beyond its result, as torch's
profiler sees every allocation: with its inputs scaled up, with a strided (expanded)
input, and with an input of a wider dtype; and the documented formulas hold.  (That the
server refuses what would pass its cap: tests/unit/genie/server/test_executor.py.)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from torch.profiler import ProfilerActivity, profile

from genie.errors import InvalidArgumentError
from genie.ops import REGISTRY, MetaResult, Op, OpContext, infer
from genie.ops.work import ELEMENTWISE, RULES

#: Allocations that do not grow with the tensors (scalars wrapped as tensors, a
#: reduction's few partial results) are below this.
SLACK = 16 * 1024
#: Inputs are scaled up by repeating along their first dim, so that what grows with
#: them dominates what does not.
SCALE = 256


def peak_working(fn: Callable[[], torch.Tensor]) -> int:
    """Peak bytes allocated through torch's allocator while ``fn`` runs, minus its result:
    the profiler's memory events replayed in order (alloc > 0, free < 0)."""
    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        out = fn()
    events = sorted((e.start_ns(), e.nbytes()) for e in prof.profiler.kineto_results.events()
                    if e.name() == "[memory]")
    live = peak = 0
    for _, nbytes in events:
        live += nbytes
        peak = max(peak, live)
    return peak - out.untyped_storage().nbytes()


def _scaled(args: tuple[Any, ...]) -> Iterator[tuple[Any, ...]]:
    """Ways to scale the arguments up, most thorough first: every tensor repeated along
    its first dim, or the first tensor only (what a binary op or a matmul accepts)."""
    def grow(t: Any) -> Any:
        return t.repeat(SCALE, *([1] * (t.dim() - 1))) if isinstance(t, torch.Tensor) \
            and t.dim() else t
    first = next((i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and a.dim()),
                 None)
    yield tuple(grow(a) for a in args)
    if first is not None:
        yield (*args[:first], grow(args[first]), *args[first + 1:])
    yield args


def variants(op: Op, args: tuple[Any, ...], kwargs: dict[str, Any]
             ) -> Iterator[tuple[str, dict[str, Any]]]:
    """The case's arguments scaled up, then with the first tensor also made strided (its
    first row expanded), then also widened (float64, or int64 for integers); each bound,
    and only those the op accepts."""
    def runs(candidate: tuple[Any, ...]) -> dict[str, Any] | None:
        try:
            bound = op.bind(candidate, kwargs)
            op(bound, OpContext())
        except InvalidArgumentError:
            return None
        return bound

    big = next((b for b in map(runs, _scaled(args)) if b is not None), None)
    if big is None:
        return
    yield "scaled", big
    name = next((k for k, v in big.items() if isinstance(v, torch.Tensor) and v.dim()), None)
    if name is None:
        return
    t = big[name]
    wider = (t.double() if t.is_floating_point() else None if t.is_complex()
             or t.dtype is torch.bool else t.long())
    for variant, v in (("strided", t[:1].expand(t.shape)), ("widened", wider)):
        if v is None:
            continue
        bound = {**big, name: v}
        try:
            op(bound, OpContext())
        except InvalidArgumentError:
            continue
        yield variant, bound


def test_every_op_has_a_working_memory_rule() -> None:
    unknown = (set(RULES) | ELEMENTWISE) - set(REGISTRY)
    assert not unknown, f"rules for ops the table does not have: {sorted(unknown)}"
    assert set(REGISTRY) <= set(RULES) | ELEMENTWISE, (
        f"ops with no rule (they get the conservative DEFAULT): "
        f"{sorted(set(REGISTRY) - set(RULES) - ELEMENTWISE)}")


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's notes on mixed dtypes and shapes
def test_the_estimate_covers_what_the_op_allocates(name: str, op_case: Any) -> None:
    op = REGISTRY[name]
    checked = 0
    for variant, bound in variants(op, op_case.args, op_case.kwargs):
        outcome = infer(op, bound, None)
        if not isinstance(outcome, MetaResult):
            continue  # data-dependent: bounded by data_dependent_bound instead
        measured = peak_working(lambda b=bound: op(b, OpContext()))  # type: ignore[misc]
        assert outcome.working + SLACK >= measured, (
            f"{name} ({variant}): estimated {outcome.working} bytes of working memory, "
            f"the kernel allocated {measured}")
        checked += 1
    assert checked or name == "getitem", f"no variant of the {name} case ran"


@pytest.mark.filterwarnings("ignore::UserWarning")  # mse_loss's note on broadcasting
def test_the_estimates_match_the_documented_formulas() -> None:
    # conv2d in float64: C_in x kH x kW x H_out x W_out x itemsize x batch (im2col),
    # and one more output (oneDNN's own layout, on float32).
    bound = REGISTRY["conv2d"].bind((torch.ones(2, 3, 64, 64, dtype=torch.float64),
                                     torch.ones(4, 3, 5, 5, dtype=torch.float64)))
    outcome = infer(REGISTRY["conv2d"], bound, None)
    assert isinstance(outcome, MetaResult)
    assert outcome.working == 2 * 3 * 5 * 5 * 60 * 60 * 8 + outcome.nbytes
    # mse_loss of [n, 1] against [1, n]: the n x n difference, and its square.
    bound = REGISTRY["mse_loss"].bind((torch.ones(300, 1), torch.ones(1, 300)))
    outcome = infer(REGISTRY["mse_loss"], bound, None)
    assert isinstance(outcome, MetaResult) and outcome.working == 2 * 300 * 300 * 4
