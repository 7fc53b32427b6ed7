"""The regression gate at the end of a session: ``--genie-compare`` and ``--genie-compare-fail``.

Runs on the process that writes the results (never an xdist worker), after the last record is
written, so it compares exactly what the result files hold.  The comparison itself is the
report's (``pytest_genie.report.compare``), loaded only when a comparison was asked for.

A session whose gate finds a regression exits non-zero, with one line per regression in the
terminal summary.  ``--genie-compare=latest`` with no earlier session is not a failure (the first
CI run has nothing to compare with and becomes the baseline); a named baseline folder without
result files is, since a misconfigured gate must not pass silently.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from pytest_genie.options import COMPARE_LATEST, GenieOptions
from pytest_genie.results import ResultsSession

__all__ = ["run_gate", "write_gate"]


def run_gate(options: GenieOptions, results: ResultsSession
             ) -> tuple[dict[str, Any] | None, str | None, bool]:
    """``(comparison, note, failed)``: the comparison (None if none ran), a line to show, and
    whether the gate fails the session."""
    from pytest_genie.report.compare import compare_sessions, latest_session
    from pytest_genie.report.inputs import ReportInputError, find_result_files
    from pytest_genie.report.trend import discover_sessions

    if options.compare is None or results.folder is None:
        return None, None, False
    current = find_result_files(results.folder)
    if options.compare == COMPARE_LATEST:
        baseline = latest_session(discover_sessions(options.results_dir, [results.folder]), current)
        if baseline is None:
            return None, (f"no earlier session in {options.results_dir} to compare with; this session "
                          "is the baseline of the next"), False
    else:
        baseline = Path(options.compare)
    thresholds: dict[str, float] = {}
    for threshold in options.compare_fail:  # a metric given twice: the stricter threshold holds
        thresholds[threshold.metric] = min(threshold.pct, thresholds.get(threshold.metric, threshold.pct))
    try:
        comparison = compare_sessions(current, baseline, thresholds)
    except ReportInputError as exc:
        return None, f"cannot compare: {exc}", bool(thresholds)
    return comparison, None, bool(comparison["regressions"])


def write_gate(reporter: pytest.TerminalReporter, comparison: dict[str, Any] | None,
               note: str | None) -> None:
    """The gate's lines in the terminal summary: one per regression, else a one-line verdict."""
    if note is not None:
        reporter.write_line(f"Genie compare: {note}", yellow=True)
    if comparison is None:
        return
    for line in comparison["regressions"]:
        reporter.write_line(f"Genie regression: {line}", red=True)
    if not comparison["regressions"]:
        gated = ", ".join(f"{m}:{p:g}%" for m, p in comparison["thresholds"].items()) or "no thresholds"
        reporter.write_line(f"Genie compare: {len(comparison['rows'])} figures compared with "
                            f"{comparison['baseline']} ({gated}): no regression", green=True)
    for metric in comparison["not_compared"]:
        reporter.write_line(f"Genie compare: {metric} was not measured in both sessions: not gated",
                            yellow=True)
