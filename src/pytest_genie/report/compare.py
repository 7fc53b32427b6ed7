"""The regression gate: this session's figures against a baseline session's.

``--genie-compare=DIR|latest`` names the baseline; ``--genie-compare-fail=METRIC:PCT`` (repeatable)
makes the run fail when a figure of METRIC is worse than its baseline by more than PCT percent
*and* by more than the two runs' measured noise: the current figure's interquartile range lies
wholly on the worse side of the baseline's.  On a shared machine a median moves by 10 % between
two identical runs; a gate on the percentage alone would fail at random, and one on the noise
alone would fail on a 0.1 % change that happens to be consistent.  Both together are a
regression.  A figure with no recorded spread (an older result file) has no measured noise:
it is judged on the threshold alone, and the table says so.

Figures are paired by metric, place (sweep size, payload and clients) and context (server device
and hosts, see ``metrics.py``); a figure with no partner is listed, never failed.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_genie.report.formatting import format_value
from pytest_genie.report.inputs import ReportInputError, find_result_files, load_result_file, parse_time
from pytest_genie.report.metrics import METRICS, Point, points_of

__all__ = ["REGRESSED", "compare_points", "compare_sessions", "latest_session"]

REGRESSED = "regressed"
WORSE = "worse, within threshold"
BETTER = "better"
NOISE = "within noise"


def _worse_pct(better: str, base: float, cur: float) -> float | None:
    if base == 0:
        return None
    return 100.0 * ((cur - base) if better == "lower" else (base - cur)) / abs(base)


def _clearly_worse(better: str, base: Point, cur: Point) -> bool:
    if better == "lower":
        return base.figure.high < cur.figure.low
    return cur.figure.high < base.figure.low


def _clearly_better(better: str, base: Point, cur: Point) -> bool:
    return _clearly_worse(better, cur, base)


def _span(point: Point) -> str:
    spread = point.figure.spread
    return "no spread" if spread is None else f"{spread.q1:.4g}-{spread.q3:.4g}"


def compare_points(baseline: list[Point], current: list[Point], thresholds: dict[str, float],
                   baseline_label: str) -> dict[str, Any]:
    """The comparison table and the regressions (one line each) of ``current`` vs ``baseline``."""
    base_by = {p.ident: p for p in baseline}
    rows, regressions = [], []
    for cur in current:
        base = base_by.get(cur.ident)
        if base is None:
            continue
        metric = METRICS[cur.metric]
        pct = _worse_pct(metric.better, base.figure.value, cur.figure.value)
        threshold = thresholds.get(cur.metric)
        worse = _clearly_worse(metric.better, base, cur)
        if worse and threshold is not None and pct is not None and pct > threshold:
            verdict = REGRESSED
        elif worse:
            verdict = WORSE
        elif _clearly_better(metric.better, base, cur):
            verdict = BETTER
        else:
            verdict = NOISE
        where = f" at {cur.where}" if cur.where else ""
        row = {"metric": cur.metric, "where": cur.where, "context": cur.context.label,
               "unit": metric.unit, "baseline": base.figure.to_dict(), "current": cur.figure.to_dict(),
               "worse_pct": None if pct is None else round(pct, 2), "threshold_pct": threshold,
               "noise_known": base.figure.spread is not None and cur.figure.spread is not None,
               "verdict": verdict}
        rows.append(row)
        if verdict == REGRESSED:
            regressions.append(
                f"{cur.metric}{where}: {format_value(cur.figure.value, metric.unit)} vs baseline "
                f"{format_value(base.figure.value, metric.unit)} ({pct:+.1f}% worse, threshold "
                f"{threshold:g}%; IQR now {_span(cur)} vs baseline {_span(base)}) "
                f"[{cur.context.label}, baseline {baseline_label}]")
    measured = {p.metric for p in current} & {p.metric for p in baseline}
    unmatched = sorted(m for m in thresholds if m not in measured)
    return {"baseline": baseline_label, "thresholds": dict(thresholds), "rows": rows,
            "regressions": regressions, "not_compared": unmatched}


def _session_time(folder: Path) -> datetime:
    stamps = []
    for path in find_result_files(folder):
        try:
            stamp = parse_time(load_result_file(path).test_info.get("timestamp"))
        except ValueError:
            continue
        if stamp is not None:
            stamps.append(stamp)
    return min(stamps) if stamps else datetime.fromtimestamp(folder.stat().st_mtime, tz=timezone.utc)


def latest_session(candidates: list[Path], current: list[Path]) -> Path | None:
    """The newest of ``candidates`` holding a figure comparable with ``current``'s, else the
    newest at all; None when there are none."""
    ranked = sorted((c for c in candidates if find_result_files(c)), key=_session_time, reverse=True)
    if not ranked:
        return None
    mine = {p.ident for p in points_of([load_result_file(f) for f in current])}
    for folder in ranked:
        try:
            theirs = {p.ident for p in points_of([load_result_file(f) for f in find_result_files(folder)])}
        except ValueError:
            continue
        if mine & theirs:
            return folder
    return ranked[0]


def compare_sessions(current: list[Path], baseline_dir: Path, thresholds: dict[str, float]
                     ) -> dict[str, Any]:
    """:func:`compare_points` of the result files ``current`` against the folder ``baseline_dir``.

    Raises ``ReportInputError`` when the baseline holds no readable result file.
    """
    base_files = find_result_files(baseline_dir)
    if not base_files:
        raise ReportInputError(f"{baseline_dir} holds no result files: name a genie_test_results_* "
                               "folder a run wrote, or 'latest'")
    baseline = points_of([load_result_file(p) for p in base_files])
    now = points_of([load_result_file(p) for p in current])
    result = compare_points(baseline, now, thresholds, baseline_dir.name)
    result["baseline_folder"] = str(baseline_dir)
    return result
