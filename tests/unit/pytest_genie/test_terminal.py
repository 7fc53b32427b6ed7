"""The "Genie" section of the terminal summary (``terminal.py``): the lines of a real run
(a line per test, why it did not pass, the guide's closing line), and one record's lines
on their own: details never cut inside a JSON value, however long.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from pytest_genie.results import TestRecord
from pytest_genie.terminal import DETAILS_PREFIX, closing_line, format_details, format_record

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
        "   Skipped: no GPU on this node",
        "Client-side tests [[]client_side[]]*",
        "❌ fails (*.* ms)",
        '   Details: {"measured": 3}',
        "   Failure: AssertionError: arithmetic is broken*",
        "⏭ skips_inside*",
        "   Skipped: server has no CUDA",
        "💥 setup_error*",
        "   Error: setup: RuntimeError: fixture exploded",
        "💥 teardown_error*",
        "✅ sweep[[]10[]]*",
        "✅ sweep[[]1000[]]*",
        f"Genie results: {folder}",
        "🎉 All server tests passed! (1 skipped: marked_skip)",
        "❌ Some client tests failed: fails (FAIL), setup_error (ERROR), teardown_error (ERROR)",
    ])


def test_format_record_like_the_guide(make_record: Callable[..., TestRecord]) -> None:
    lines = format_record(make_record(details={"cuda_available": True, "gpu_name": "Tesla T4"}))
    assert lines == ["✅ gpu_detection (150.0 ms)",
                     '   Details: {"cuda_available": true, "gpu_name": "Tesla T4"}']
    ascii_lines = format_record(make_record(status="SKIP", details={}), unicode=False)
    assert ascii_lines == ["[SKIP] gpu_detection (150.0 ms)"]
    failed = format_record(make_record(status="FAIL", details={"failure": "y" * 1000}), width=80)
    assert failed[0].startswith("❌ ") and failed[1].startswith("   Failure: yyy")
    assert failed[1].endswith("...") and len(failed[1]) == 200


def _shown(line: str) -> tuple[dict[str, object], str]:
    """The JSON object a details line shows, and the note after it."""
    text = line.removeprefix(DETAILS_PREFIX)
    end = text.rindex("}") + 1 if not text.endswith(")") else text.rindex("} (") + 1
    return json.loads(text[:end]), text[end:].strip()


def test_long_details_are_cut_between_fields_never_inside_a_value(
        make_record: Callable[..., TestRecord]) -> None:
    sweep = [{"n": n, "remote_ms": n * 0.5, "local_cpu_ms": n * 0.7} for n in range(60)]
    details = {"n": 1000, "op": "matmul", "sweep": sweep, "note": "é" * 20, "break_even_n": 512,
               "cases": {"relu": {"exact": True}, "x": "y" * 500}}
    for width in (80, 120, 250, 400):
        (_, line) = format_record(make_record(details=details), width=width)
        assert len(line) <= max(200, width)
        shown, note = _shown(line)  # whole, valid JSON: the fields that fit, in order
        assert shown == {k: v for k, v in details.items() if k in shown}
        assert list(shown) == [k for k in details if k in shown]
        dropped = [k for k in details if k not in shown]
        assert note == f"(+{len(dropped)} not shown: {', '.join(dropped)})"
    (_, line) = format_record(make_record(details=details), width=250)
    shown, note = _shown(line)
    # A long field is left out, the shorter ones after it still shown.
    assert set(shown) == {"n", "op", "note", "break_even_n"} and note == "(+2 not shown: sweep, cases)"


def test_details_that_fit_are_shown_whole(make_record: Callable[..., TestRecord]) -> None:
    details = {"k": "v" * 180}
    assert format_details(details, 200) == json.dumps(details, separators=(", ", ": "))
    assert format_details({"k": "v" * 300}, 150) == "{} (+1 not shown: k)"


def test_closing_line_like_the_guide(make_record: Callable[..., TestRecord]) -> None:
    passed = [make_record(), make_record("server_startup")]
    assert closing_line("server", passed) == "🎉 All server tests passed!"
    assert closing_line("client", passed, unicode=False) == "All client tests passed!"
    skipped = [*passed, make_record("gpu_detection", status="SKIP")]
    assert closing_line("server", skipped) == "🎉 All server tests passed! (1 skipped: gpu_detection)"
    broken = [*skipped, make_record("server_operations", status="FAIL"),
              make_record("environment_setup", status="ERROR")]
    assert closing_line("server", broken) == ("❌ Some server tests failed: server_operations (FAIL), "
                                              "environment_setup (ERROR)")
