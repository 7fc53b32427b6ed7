"""The "Genie" section of the terminal summary (``terminal.py``): the lines of a real run,
and one record's lines on their own.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_genie.results import TestRecord
from pytest_genie.terminal import format_record

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

#: The readers conftest.py provides as fixtures.
Folders = Callable[[Path], list[Path]]


def test_terminal_summary_lists_every_record(
        mixed_run: tuple[pytest.RunResult, Path], session_folders: Folders) -> None:
    result, results = mixed_run
    (folder,) = session_folders(results)
    result.stdout.fnmatch_lines([
        "*= Genie =*",
        "Server-side tests [[]server_side[]] (server_test_results_*.json): 1 pass, 1 skip",
        "✅ alpha (*.* ms)",
        '   Details: {"value": 1.5, "dtype": "<object object at *", "nan": null}',
        "⏭ marked_skip (*.* ms)",
        "Client-side tests [[]client_side[]]*",
        "❌ fails (*.* ms)",
        "*Details: {*\"failure\": \"AssertionError: arithmetic is broken*",
        "⏭ skips_inside*",
        "💥 setup_error*",
        "💥 teardown_error*",
        "✅ sweep[[]10[]]*",
        "✅ sweep[[]1000[]]*",
        f"Genie results: {folder}",
    ])


def test_format_record_like_the_guide(make_record: Callable[..., TestRecord]) -> None:
    lines = format_record(make_record(details={"cuda_available": True, "gpu_name": "Tesla T4"}))
    assert lines == ["✅ gpu_detection (150.0 ms)",
                     '   Details: {"cuda_available": true, "gpu_name": "Tesla T4"}']
    ascii_lines = format_record(make_record(status="SKIP", details={}), unicode=False)
    assert ascii_lines == ["[SKIP] gpu_detection (150.0 ms)"]
    long = format_record(make_record(status="FAIL", details={"x": "y" * 1000}), width=80)
    assert long[0].startswith("❌ ") and long[1].endswith("...") and len(long[1]) == 200
