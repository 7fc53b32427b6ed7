"""The regression gate (``gate.py``, ``--genie-compare`` / ``--genie-compare-fail``) on real runs:
the real ``performance_comparison`` check, run by pytester against real servers, one of them
deliberately slowed with the server's test-only ``debug_delay_ms``.

A normal run compared with a normal baseline passes; a run against the slowed server fails with
one line per regressed figure, and its report shows the comparison table.  The threshold is wide
(500 %) and the delay large (200 ms against a few ms): on this shared machine two normal runs
differ by up to 4x now and then, and the gate must not fail them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from genie.server.runner import BackgroundServer
from pytest_genie.report import JSON_NAME, MARKDOWN_NAME

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CLIENT_CHECKS = Path(__file__).resolve().parents[2] / "client" / "test_client_side.py"
GATE = "--genie-compare-fail=remote_ms:500%"


def _run(pytester: pytest.Pytester, results: Path, url: str, *extra: str) -> pytest.RunResult:
    return pytester.runpytest("-p", "no:cacheprovider", "-k", "performance_comparison", "--genie-level=quick",
                              f"--genie-server={url}", f"--genie-results-dir={results}", *extra)


def test_a_slowed_server_fails_the_gate_and_a_normal_run_passes_it(
        pytester: pytest.Pytester, make_server: Callable[..., BackgroundServer],
        session_folders: Callable[[Path], list[Path]]) -> None:
    pytester.makepyfile(test_client_side=CLIENT_CHECKS.read_text(encoding="utf-8"))
    results = pytester.path / "results"
    normal = make_server()
    _run(pytester, results, normal.url).assert_outcomes(passed=1)
    (baseline,) = session_folders(results)

    again = _run(pytester, results, normal.url, "--genie-compare=latest", GATE)
    again.assert_outcomes(passed=1)
    assert again.ret == 0
    again.stdout.fnmatch_lines([f"Genie compare: * figures compared with {baseline.name} (remote_ms:500%): "
                                "no regression"])

    slow = make_server(debug_delay_ms=200)
    slowed = _run(pytester, results, slow.url, f"--genie-compare={baseline}", GATE, "--genie-report")
    slowed.assert_outcomes(passed=1)  # every check passed: only the gate fails the run
    assert slowed.ret == pytest.ExitCode.TESTS_FAILED
    lines = [line for line in slowed.outlines if line.startswith("Genie regression: ")]
    assert len(lines) == 4, lines  # one per swept size, each on its own line
    for line, n in zip(lines, (64, 128, 256, 512), strict=True):
        assert re.match(rf"Genie regression: remote_ms at n={n}: \S+ vs baseline \S+ \(\+\d+\.\d% worse, "
                        r"threshold 500%; IQR now .* vs baseline .*\)", line), line
    folder = session_folders(results)[-1]
    comparison = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))["comparison"]
    assert comparison["baseline"] == baseline.name and len(comparison["regressions"]) == 4
    regressed = {r["where"] for r in comparison["rows"]
                 if r["metric"] == "remote_ms" and r["verdict"] == "regressed"}
    assert regressed == {"n=64", "n=128", "n=256", "n=512"}
    md = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "## Comparison with Baseline" in md and "| remote_ms | n=64 |" in md


def test_latest_with_no_earlier_session_is_a_note_not_a_failure(
        pytester: pytest.Pytester, make_server: Callable[..., BackgroundServer]) -> None:
    pytester.makepyfile(test_client_side=CLIENT_CHECKS.read_text(encoding="utf-8"))
    result = _run(pytester, pytester.path / "results", make_server().url, "--genie-compare=latest", GATE)
    assert result.ret == 0
    result.stdout.fnmatch_lines(["Genie compare: no earlier session in * to compare with; *"])


def test_gate_options_are_checked_before_anything_runs(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_nothing(): pass")
    result = pytester.runpytest("--genie-compare-fail=remote_ms:10%")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--genie-compare-fail needs a baseline: add --genie-compare=DIR*"])
    result = pytester.runpytest("--genie-compare=latest", "--genie-compare-fail=remote_msec:10%")
    result.stderr.fnmatch_lines(["*'remote_msec:10%': expected METRIC:PCT with METRIC one of remote_ms,*"])
    result = pytester.runpytest("--genie-compare=no/such/folder")
    result.stderr.fnmatch_lines(["*no/such/folder is not a folder*"])
