"""The trend across runs (``trend.py``): earlier session folders in time order, with the
change per step, and an unreadable one listed rather than fatal.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_genie.report import JSON_NAME, MARKDOWN_NAME, write_report

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time


def test_trend_lists_earlier_sessions_in_time_order(tmp_path: Path, samples: Samples) -> None:
    root = tmp_path / "reports"
    two_failed = samples.gpu_client_tests(remote_ms=140.0)
    two_failed[1]["status"] = two_failed[2]["status"] = "FAIL"
    one_failed = samples.gpu_client_tests(remote_ms=120.0)
    one_failed[1]["status"] = "FAIL"
    # Created out of order on disk: the trend orders them by their recorded start time.
    samples.session(root, "20260103_090000", samples.gpu_server_tests(), one_failed)  # 12/13
    samples.session(root, "20260101_090000", samples.gpu_server_tests(), two_failed)  # 11/13
    samples.session(
        root, "20260105_090000", samples.gpu_server_tests(), samples.gpu_client_tests(remote_ms=110.0)
    )  # 13/13
    (root / "genie_test_results_20260104_090000").mkdir()  # an empty folder is not a session
    current = samples.session(
        root, "20260109_090000", samples.gpu_server_tests(), samples.gpu_client_tests(remote_ms=99.0)
    )

    json_path, md_path, *_ = write_report(current, history_root=root)
    trend = json.loads(json_path.read_text(encoding="utf-8"))["trend"]
    sessions = trend["sessions"]
    assert [s["session"] for s in sessions] == [
        "genie_test_results_20260101_090000",
        "genie_test_results_20260103_090000",
        "genie_test_results_20260105_090000",
        "genie_test_results_20260109_090000",
    ]
    assert [s["pass_rate"] for s in sessions] == pytest.approx(
        [100 * 11 / 13, 100 * 12 / 13, 100.0, 100.0], abs=0.01
    )
    assert [s["current"] for s in sessions] == [False, False, False, True]
    assert trend["earlier_sessions"] == 3
    assert sessions[0]["change"] is None
    assert sessions[1]["change"]["pass_rate_pts"] == pytest.approx(100 / 13, abs=0.01)
    (remote,) = [s for s in trend["series"] if s["metric"] == "remote_ms" and s["where"] == "n=1000"]
    assert [p["figure"]["value"] for p in remote["points"]] == [140.0, 120.0, 110.0, 99.0]
    assert remote["points"][3]["change"]["delta"] == pytest.approx(-11.0)
    assert remote["points"][3]["change"]["pct"] == pytest.approx(-10.0)
    assert remote["points"][3]["change"]["label"] == "no spread recorded"  # these files hold numbers only

    md = md_path.read_text(encoding="utf-8")
    rows = [line for line in md.split("## Trend Across Runs")[1].splitlines() if line.startswith("| ")]
    assert [r.split("|")[5].strip() for r in rows[1:5]] == ["84.6%", "92.3%", "100.0%", "100.0%"]
    assert "(this run)" in rows[4]
    assert any("remote round trip | n=1000 |" in r and "-10.0% (no spread recorded)" in r for r in rows)


def test_unreadable_earlier_session_is_listed_not_fatal(tmp_path: Path, samples: Samples) -> None:
    root = tmp_path / "reports"
    old = samples.session(root, "20260101_090000", samples.gpu_server_tests(), None)
    (old / "server_test_results_20260101_090000.json").write_text("{not json", encoding="utf-8")
    current = samples.session(root, "20260109_090000", samples.gpu_server_tests(), None)

    json_path, *_ = write_report(current, history_root=root)
    trend = json.loads(json_path.read_text(encoding="utf-8"))["trend"]
    assert trend["earlier_sessions"] == 0
    assert trend["unreadable"][0]["session"] == old.name


def test_genie_report_option_writes_the_report_with_the_trend(
    pytester: pytest.Pytester, two_node_tests: None
) -> None:
    results = pytester.path / "reports"
    pytester.runpytest(f"--genie-results-dir={results}").assert_outcomes(passed=2, failed=1, skipped=1)
    pytester.runpytest(f"--genie-results-dir={results}", "--genie-report")

    sessions = sorted(results.glob("genie_test_results_*"))
    assert len(sessions) == 2
    assert not (sessions[0] / JSON_NAME).exists()
    trend = json.loads((sessions[1] / JSON_NAME).read_text(encoding="utf-8"))["trend"]
    assert [s["session"] for s in trend["sessions"]] == [sessions[0].name, sessions[1].name]
    assert [s["current"] for s in trend["sessions"]] == [False, True]
    assert "## Trend Across Runs" in (sessions[1] / MARKDOWN_NAME).read_text(encoding="utf-8")
