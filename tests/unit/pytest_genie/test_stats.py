"""The statistics every timed figure goes through (``stats.py``): spreads, the stabilisation loop,
and the verdicts the break-even size is made of.

The loop is driven by scripted samples and a scripted clock, so each test knows exactly which
windows it will see: a figure that settles stops early and says stable, one that keeps drifting
stops at the cap and says it did not.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from pytest_genie.checks import Key
from pytest_genie.stats import (
    LOCAL_FASTER,
    NO_CLEAR_DIFFERENCE,
    REMOTE_FASTER,
    Settings,
    Spread,
    break_even_start,
    measure,
    percentile,
    spreads_to_details,
    which_faster,
)


def _script(values: list[float]) -> Callable[[], float]:
    it: Iterator[float] = iter(values)
    return lambda: next(it)


def test_spread_of_samples() -> None:
    s = Spread.of([5.0, 1.0, 3.0, 2.0, 4.0])
    assert (s.median, s.q1, s.q3, s.min, s.max, s.count) == (3.0, 2.0, 4.0, 1.0, 5.0, 5)
    assert Spread.of([7.0]).iqr == 0.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5 and percentile([10.0], 95) == 10.0
    with pytest.raises(ValueError):
        Spread.of([])


def test_spread_round_trips_through_details_and_refuses_what_is_not_one() -> None:
    s = Spread.of([1.0, 2.0, 3.0], stable=True, windows=4)
    assert Spread.from_dict(s.to_dict()) == s
    assert Spread.from_dict({Key.MEDIAN: 1.0}) is None  # a hand edit that dropped the rest
    assert Spread.from_dict({**s.to_dict(), Key.Q1: 9.0}) is None  # quartiles out of order
    assert Spread.from_dict("3 ms") is None
    details = spreads_to_details({Key.REMOTE_MS: s})
    assert details[Key.REMOTE_MS] == 2.0 and details[Key.SPREAD][Key.REMOTE_MS][Key.COUNT] == 3


def test_measure_warms_up_then_stops_once_the_windows_agree() -> None:
    calls: list[float] = []
    samples = [100.0, 90.0] + [10.0, 10.2, 9.9] * 10  # two slow warm-up calls, then steady

    def step() -> float:
        calls.append(samples[len(calls)])
        return calls[-1]

    out = measure({"x": step}, Settings(warmup=2, window=3, agree=3, max_windows=10))
    spread = out["x"]
    assert spread.stable is True and spread.windows == 3
    assert spread.count == 9 and spread.max < 11  # the warm-up samples are not in the figure
    assert len(calls) == 2 + 9


def test_measure_stops_at_the_cap_and_says_it_did_not_settle() -> None:
    drifting = itertools.count(1.0, 1.0)  # every window slower than the last: never agrees
    settings = Settings(warmup=0, window=2, agree=3, max_windows=6, tolerance=0.05)
    spread = measure({"x": lambda: float(next(drifting))}, settings)["x"]
    assert spread.stable is False and spread.windows == 6
    assert spread.count == 6  # the last `agree` windows


def test_measure_stops_at_the_time_cap() -> None:
    ticks = itertools.count(0.0, 10.0)  # each clock reading 10 s later
    drifting = itertools.count(1.0, 1.0)
    spread = measure({"x": lambda: float(next(drifting))},
                     Settings(warmup=0, window=1, agree=2, max_windows=50, max_seconds=15.0),
                     clock=lambda: next(ticks))["x"]
    assert spread.stable is False and spread.windows == 2


def test_measure_interleaves_steps_window_by_window_and_keeps_named_samples() -> None:
    order: list[str] = []

    def local() -> float:
        order.append("local")
        return 1.0

    def remote() -> dict[str, float]:
        order.append("remote")
        return {"remote_ms": 5.0, "compute_ms": 2.0}

    out = measure({"local": local, "remote_ms": remote}, Settings(warmup=1, window=2, agree=2, max_windows=5))
    assert order[:2] == ["local", "remote"]  # warm-up on every side
    assert order[2:8] == ["local", "local", "remote", "remote", "local", "local"]
    assert set(out) == {"local", "remote_ms", "compute_ms"} and out["compute_ms"].median == 2.0


def test_settings_refuse_a_loop_that_could_never_settle() -> None:
    with pytest.raises(ValueError):
        Settings(agree=5, max_windows=3)


@pytest.mark.parametrize(("local", "remote", "verdict"), [
    ((10.0, 12.0), (4.0, 9.0), REMOTE_FASTER),
    ((4.0, 9.0), (10.0, 12.0), LOCAL_FASTER),
    ((4.0, 10.5), (10.0, 12.0), NO_CLEAR_DIFFERENCE),  # the ranges touch: noise, not a difference
])
def test_which_faster_needs_the_interquartile_ranges_apart(
        local: tuple[float, float], remote: tuple[float, float], verdict: str) -> None:
    assert which_faster(local, remote) == verdict


@pytest.mark.parametrize(("verdicts", "start"), [
    ([LOCAL_FASTER, LOCAL_FASTER, LOCAL_FASTER], None),
    ([LOCAL_FASTER, REMOTE_FASTER, REMOTE_FASTER], 1),
    # remote won at one size, then lost at larger ones: no break-even (the old report said n=128)
    ([REMOTE_FASTER, LOCAL_FASTER, LOCAL_FASTER], None),
    ([REMOTE_FASTER, NO_CLEAR_DIFFERENCE, REMOTE_FASTER], 2),
    ([], None),
])
def test_break_even_is_the_start_of_the_tail_where_remote_always_wins(
        verdicts: list[str], start: int | None) -> None:
    assert break_even_start(verdicts) == start
