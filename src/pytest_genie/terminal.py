"""The "Genie" section of the terminal summary, shaped like the guide's expected output::

    Server-side tests (server_test_results_20250109_143000.json)
    ✅ gpu_detection (150.2 ms)
       Details: {"cuda_available": true, "gpu_count": 1, "gpu_name": "Tesla T4"}

A terminal that cannot encode the symbols gets ``[PASS]``-style labels instead of
a ``UnicodeEncodeError`` at the very end of a run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import pytest

from pytest_genie.checks import KINDS
from pytest_genie.results import STATUS_SYMBOLS, TEST_TYPES, ResultsSession, TestRecord

__all__ = ["format_record", "write_summary"]

SYMBOLS = STATUS_SYMBOLS
ASCII = {"PASS": "[PASS]", "FAIL": "[FAIL]", "SKIP": "[SKIP]", "ERROR": "[ERROR]"}
TITLES = {"server": "Server-side tests", "client": "Client-side tests"}
DETAILS_PREFIX = "   Details: "
#: Details lines are cut at the terminal width, but never below this many characters:
#: on a narrow terminal a wrapped line beats a details line cut to nothing.
MIN_WIDTH = 200


def _can_encode(text: str, encoding: str | None) -> bool:
    try:
        text.encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def format_record(record: TestRecord, *, width: int = 120, unicode: bool = True) -> list[str]:
    """The status line and, when there are any, the compact details truncated to ``width``."""
    symbol = (SYMBOLS if unicode else ASCII).get(record.status, record.status)
    lines = [f"{symbol} {record.name} ({record.timing_ms:.1f} ms)"]
    if record.details:
        text = json.dumps(record.details, separators=(", ", ": "), ensure_ascii=not unicode,
                          allow_nan=False, default=str)
        room = max(MIN_WIDTH, width) - len(DETAILS_PREFIX)
        if len(text) > room:
            text = text[: room - 3] + "..."
        lines.append(DETAILS_PREFIX + text)
    return lines


def _counts(records: Iterable[TestRecord]) -> str:
    totals: dict[str, int] = {}
    for record in records:
        totals[record.status] = totals.get(record.status, 0) + 1
    return ", ".join(f"{n} {status.lower()}" for status, n in totals.items())


def write_summary(reporter: pytest.TerminalReporter, results: ResultsSession,
                  report_files: list[Path], report_error: str | None,
                  write_error: str | None = None) -> None:
    """Print the Genie section: one block per kind of test, then where the files are."""
    if not results.records and report_error is None and write_error is None:
        return
    tw = reporter._tw  # the one public-enough handle on the terminal's encoding and width
    encoding = getattr(getattr(tw, "_file", None), "encoding", None)
    unicode = _can_encode("".join(SYMBOLS.values()), encoding)
    width = getattr(tw, "fullwidth", 120)
    reporter.write_sep("=", "Genie")
    for kind in KINDS:
        records = results.by_kind(kind)
        if not records:
            continue
        path = results.files.get(kind)
        where = f" ({path.name})" if path else ""
        reporter.write_line(f"{TITLES[kind]} [{TEST_TYPES[kind]}]{where}: {_counts(records)}", bold=True)
        for record in records:
            for line in format_record(record, width=width, unicode=unicode):
                reporter.write_line(line, red=record.status in ("FAIL", "ERROR"))
    if write_error is not None:
        reporter.write_line(f"Genie results could NOT be written: {write_error}", red=True)
    elif results.folder is not None:
        reporter.write_line(f"Genie results: {results.folder}")
    for path in report_files:
        reporter.write_line(f"Genie report: {path}")
    if report_error is not None:
        reporter.write_line(f"Genie report FAILED: {report_error}", red=True)
