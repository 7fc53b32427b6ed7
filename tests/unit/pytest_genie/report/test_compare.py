"""The comparison behind the regression gate (``compare.py``): a figure regresses only when it
is worse than its baseline by more than the threshold *and* by more than both runs' noise, and
only figures measured alike (same metric, place and context) are paired.
"""

from __future__ import annotations

import pytest

from pytest_genie.report.compare import BETTER, NOISE, REGRESSED, WORSE, compare_points
from pytest_genie.report.figures import Figure
from pytest_genie.report.metrics import Context, Point
from pytest_genie.stats import Spread

HERE = Context("cpu", "client -> 127.0.0.1")


def _point(metric: str, value: float, width: float | None, where: str = "n=1000",
           context: Context = HERE) -> Point:
    spread = None if width is None else Spread(median=value, q1=value - width, q3=value + width,
                                                 min=value - 2 * width, max=value + 2 * width, count=15)
    return Point(metric, where, Figure(value, spread), context)


@pytest.mark.parametrize(("now", "width", "verdict"), [
    (130.0, 2.0, REGRESSED),   # 30 % worse, ranges apart
    (130.0, 31.0, NOISE),      # 30 % worse, but the ranges overlap: inside both runs' noise
    (105.0, 1.0, WORSE),       # clearly worse, but under the threshold
    (80.0, 2.0, BETTER),
    (130.0, None, REGRESSED),  # no spread recorded: the threshold alone decides
])
def test_a_regression_needs_the_threshold_and_the_noise(now: float, width: float | None,
                                                        verdict: str) -> None:
    baseline = [_point("remote_ms", 100.0, None if width is None else 2.0)]
    result = compare_points(baseline, [_point("remote_ms", now, width)], {"remote_ms": 10.0}, "base")
    (row,) = result["rows"]
    assert row["verdict"] == verdict
    assert len(result["regressions"]) == (verdict == REGRESSED)
    assert row["noise_known"] == (width is not None)


def test_higher_is_better_for_rates_and_a_metric_without_threshold_never_fails() -> None:
    base = [_point("large_mib_per_s", 400.0, 5.0, where=""), _point("remote_ms", 10.0, 0.1)]
    now = [_point("large_mib_per_s", 200.0, 5.0, where=""), _point("remote_ms", 50.0, 0.1)]
    result = compare_points(base, now, {"large_mib_per_s": 20.0}, "base")
    verdicts = {r["metric"]: r["verdict"] for r in result["rows"]}
    assert verdicts == {"large_mib_per_s": REGRESSED, "remote_ms": WORSE}
    (line,) = result["regressions"]
    assert line.startswith("large_mib_per_s: 200.0 MiB/s vs baseline 400.0 MiB/s (+50.0% worse, "
                           "threshold 20%;")


def test_only_like_is_compared_with_like() -> None:
    gpu = Context("cuda:0", "client -> gpu-box")
    base = [_point("remote_ms", 10.0, 0.1, context=gpu), _point("remote_ms", 10.0, 0.1, where="n=512")]
    now = [_point("remote_ms", 99.0, 0.1), _point("lazy_ms", 5.0, 0.1, where="")]
    result = compare_points(base, now, {"remote_ms": 10.0, "chain_ms": 10.0}, "base")
    assert result["rows"] == [] and result["regressions"] == []
    assert result["not_compared"] == ["chain_ms"]
