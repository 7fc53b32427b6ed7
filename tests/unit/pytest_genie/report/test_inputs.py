"""Reading result files (``inputs.py``): the guide's string details, and odd but valid files
that must still give a report.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_genie.report import JSON_NAME, MARKDOWN_NAME, main
from pytest_genie.report.markdown import render_markdown

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time


def test_guide_style_string_details_are_parsed_or_kept_as_text(tmp_path: Path, samples: Samples) -> None:
    folder = tmp_path / "genie_test_results_20250109_143000"
    samples.write_results(
        folder,
        "server",
        [
            {
                "name": "gpu_detection",
                "status": "PASS",
                "timing_ms": 150,
                "timestamp": "2025-01-09T14:30:01",
                "details": '{"cuda_available": true, "gpu_count": 1, "gpu_name": "Tesla T4", '
                '"gpu_time_ms": 19.2}',
            },
            {
                "name": "server_operations",
                "status": "PASS",
                "timing_ms": 85,
                "timestamp": "2025-01-09T14:30:02",
                "details": "HTTP tensor transfer successful",
            },
        ],
        "20250109_143000",
    )
    report = samples.report_of(folder)
    assert report["performance"]["server_gpu_time_ms"] == 19.2
    assert report["session_info"]["gpu"]["gpu_name"] == "Tesla T4"
    assert report["server_side"]["tests"][1]["details"] == {"text": "HTTP tensor transfer successful"}
    assert "HTTP tensor transfer successful" in render_markdown(report)


def test_odd_but_valid_files_still_give_a_report(tmp_path: Path) -> None:
    """Hand-edited or older files: no test_info, lowercase status, odd details, a broken sweep."""
    folder = tmp_path / "genie_test_results_20260109_143000"
    folder.mkdir()
    (folder / "client_test_results_20260109_143000.json").write_text(
        json.dumps(
            {
                "tests": [
                    {"name": "network_connectivity", "status": "pass", "details": ["not", "an", "object"]},
                    {
                        "name": "performance_comparison",
                        "status": "PASS",
                        "timing_ms": "fast",
                        "details": {"remote_ms": "n/a", "local_cpu_ms": 2.0, "sweep": [{"n": "big"}, 7]},
                    },
                    {"name": "custom_check", "status": "WEIRD", "details": '{"answer": 42}'},
                ]
            }
        ),
        encoding="utf-8",
    )
    assert main([str(folder)]) == 0
    report = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
    statuses = [t["status"] for t in report["client_side"]["tests"]]
    assert statuses == ["PASS", "PASS", "ERROR"]  # an unknown status is not counted as a pass
    assert report["performance"]["client_remote_ms"] is None
    assert report["performance"]["client_cpu_baseline_ms"] == 2.0
    md = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "answer=42" in md and "| Hostname | — | not measured |" in md
