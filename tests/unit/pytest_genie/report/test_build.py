"""The report's two files (``build.py``): strict JSON whatever the inputs hold."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_genie.report import JSON_NAME, MARKDOWN_NAME, ReportInputError, main, write_report

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time


def _strict_json(path: Path) -> Any:
    """Parse as a strict JSON reader (jq, browsers) would: NaN/Infinity are not JSON."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{path.name} holds {token}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_nan_and_infinity_in_result_files_become_null_not_invalid_json(
    tmp_path: Path, samples: Samples
) -> None:
    """Python's json reads NaN/Infinity (a hand-edited file, another tool's output); the report
    it writes must still be JSON that strict readers accept, and show the figure as not measured."""
    client = samples.gpu_client_tests()
    for t in client:
        if t["name"] == "http_tensor_transfer":
            t["details"].update(mib_per_s=float("nan"), round_trip_ms=float("inf"))
        if t["name"] == "performance_comparison":
            t["details"]["sweep"] = [{**row, "remote_ms": float("-inf")} for row in t["details"]["sweep"]]
            t["timing_ms"] = float("nan")
    folder = samples.session(tmp_path, "20260109_143000", samples.gpu_server_tests(), client)
    text = (folder / "client_test_results_20260109_143000.json").read_text(encoding="utf-8")
    assert "NaN" in text and "Infinity" in text  # the input really holds them

    assert main([str(folder)]) == 0
    report = _strict_json(folder / JSON_NAME)
    by_name = {t["name"]: t for t in report["client_side"]["tests"]}
    transfer = by_name["http_tensor_transfer"]
    assert transfer["details"]["mib_per_s"] is None and transfer["details"]["round_trip_ms"] is None
    assert transfer["details"]["bytes"] > 0  # the finite figures are kept
    assert by_name["performance_comparison"]["timing_ms"] is None
    assert report["performance"]["client_remote_ms"] is None
    assert report["performance"]["transfer"]["http_tensor_transfer"]["mib_per_s"] is None
    assert report["performance"]["break_even"]["points"] == 0  # no remote figure, no verdict

    md = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert not re.search(r"\b(nan|-?inf|-?infinity)(ms| |%|\b)", md, re.IGNORECASE)
    assert "- HTTP tensor transfer: not measured." in md
    assert "- **Client Remote Time**: not measured" in md


def test_write_report_names_a_folder_without_results(tmp_path: Path) -> None:
    """What ``pytest --genie-report`` shows as its report error when the session wrote no results."""
    with pytest.raises(
        ReportInputError, match="holds no server_test_results_\\*.json or client_test_results_"
    ):
        write_report(tmp_path)
