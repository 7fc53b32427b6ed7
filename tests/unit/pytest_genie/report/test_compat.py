"""The original comprehensive_report.json layout (``compat.py``), read the way a user's own
parser, written for the original report, reads it; and genie-report on the result files
the original scripts wrote (top-level server_info / client_info, details as JSON strings).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.report import JSON_NAME, MARKDOWN_NAME, main
from pytest_genie.report.compat import ORIGINAL_KEYS, original_summary

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def original_parser(path: Path) -> dict[str, Any]:
    """A consumer of the original report, as a user wrote it against the original keys:
    it knows nothing of Genie's own keys, nor of SKIP and ERROR."""
    report = json.loads(path.read_text(encoding="utf-8"))
    summary = report["summary"]
    counts = {side: (summary[side]["passed"], summary[side]["failed"], summary[side]["total"])
              for side in ("server_tests", "client_tests", "overall")}
    verdict = "All tests passed" if summary["overall"]["failed"] == 0 else "Some tests failed"
    return {"counts": counts, "verdict": verdict,
            "server_names": [t["name"] for t in report["server_results"].get("tests", [])],
            "client_names": [t["name"] for t in report["client_results"].get("tests", [])],
            "server_host": report["server_results"].get("server_info", {}).get("hostname"),
            "performance": report["analysis"].get("performance", {}),
            "session": report["test_session"]}


def test_a_parser_of_the_original_layout_reads_our_counts(
        pytester: pytest.Pytester, mixed_tests: None) -> None:
    """A FAIL, a SKIP and two ERRORs: none of them read as passed."""
    results = pytester.path / "results"
    pytester.runpytest("--genie-report", f"--genie-results-dir={results}")
    (folder,) = results.glob("genie_test_results_*")
    read = original_parser(folder / JSON_NAME)
    # server: alpha PASS, marked_skip SKIP; client: fails FAIL, skips_inside SKIP,
    # setup_error and teardown_error ERROR, sweep[10] and sweep[1000] PASS.
    assert read["counts"] == {"server_tests": (1, 0, 2), "client_tests": (2, 3, 6),
                              "overall": (3, 3, 8)}
    assert read["verdict"] == "Some tests failed"
    report = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
    assert report["summary"]["client_tests"] == {"passed": 2, "failed": 3, "skipped": 1,
                                                 "errors": 2, "total": 6}
    for side, names in (("server", read["server_names"]), ("client", read["client_names"])):
        (own,) = folder.glob(f"{side}_test_results_*.json")
        assert names == [t["name"] for t in json.loads(own.read_text(encoding="utf-8"))["tests"]]
    assert read["server_host"] == report["session_info"]["server"]["hostname"]
    assert read["session"]["client_hostname"] == report["session_info"]["client"]["hostname"]
    # Genie's own keys are all still there.
    for key in ("report_info", "session_info", "overall_summary", "server_side", "client_side",
                "performance", "recommendations", "trend"):
        assert key in report, key
    assert set(ORIGINAL_KEYS) <= set(report)


def test_a_run_that_all_passed_reads_as_passed(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.server
        def test_gpu_detection(genie_record):
            genie_record["gpu_time_ms"] = 19.2

        @pytest.mark.client
        def test_performance_comparison(genie_record):
            genie_record.update(local_cpu_ms=1.5, server_compute_ms=19.2, remote_ms=105.3)
    """)
    results = pytester.path / "results"
    pytester.runpytest("--genie-report", f"--genie-results-dir={results}").assert_outcomes(passed=2)
    (folder,) = results.glob("genie_test_results_*")
    read = original_parser(folder / JSON_NAME)
    assert read["counts"]["overall"] == (2, 0, 2) and read["verdict"] == "All tests passed"
    assert read["performance"] == {
        "server_gpu_time_ms": 19.2, "client_remote_time_ms": 105.3, "client_cpu_time_ms": 1.5,
        "network_overhead_ms": 86.1, "total_overhead_ms": 103.8,
        "network_overhead_basis": "performance_comparison.server_compute_ms"}


def test_counts_add_up_and_never_call_a_skip_or_an_error_passed() -> None:
    tests = [{"status": s} for s in ("PASS", "PASS", "FAIL", "SKIP", "ERROR", "SKIP")]
    counts = original_summary(tests)
    assert counts == {"passed": 2, "failed": 2, "skipped": 2, "errors": 1, "total": 6}
    assert counts["passed"] + counts["failed"] + counts["skipped"] == counts["total"]
    assert original_summary([]) == {"passed": 0, "failed": 0, "skipped": 0, "errors": 0, "total": 0}


def _original_file(path: Path, info_key: str, info: dict[str, Any],
                   tests: list[tuple[str, str, Any]]) -> None:
    """A result file as the original scripts wrote it (record_result with jq)."""
    path.write_text(json.dumps({info_key: info, "tests": [
        {"name": name, "status": status, "details": details, "timing_ms": 10,
         "timestamp": "2025-01-09T14:30:01"} for name, status, details in tests]}, indent=2),
        encoding="utf-8")


def test_genie_report_reads_the_original_scripts_files(tmp_path: Path) -> None:
    folder = tmp_path / "genie_test_results_20250109_143000"
    folder.mkdir()
    _original_file(folder / "server_test_results_20250109_143000.json", "server_info",
                   {"hostname": "gpu-server", "timestamp": "2025-01-09T14:30:00",
                    "test_type": "server_side"}, [
        ("environment_setup", "PASS", "Dependencies: torch, fastapi, uvicorn available"),
        ("server_startup", "PASS", "Server PID: 1234, listening on 0.0.0.0:8888"),
        ("health_endpoint", "PASS", {"device": "cuda:0", "cuda_available": True}),
        ("gpu_detection", "PASS", '{"cuda_available": true, "gpu_count": 1, "gpu_name": '
                                  '"Tesla T4", "gpu_time_ms": 19.2}'),
        ("server_stats", "FAIL", "Could not retrieve server statistics"),
    ])
    _original_file(folder / "client_test_results_20250109_143100.json", "client_info",
                   {"hostname": "client-machine", "server_ip": "192.168.1.100",
                    "timestamp": "2025-01-09T14:31:00", "test_type": "client_side"}, [
        ("network_connectivity", "PASS", "Ping successful to 192.168.1.100"),
        ("server_connectivity", "PASS", {"server_url": "http://192.168.1.100:8888",
                                         "device": "cuda:0", "cuda_available": True}),
        ("remote_execution", "PASS", {"remote_time_ms": 105.3,
                                      "server_url": "http://192.168.1.100:8888"}),
        ("performance_comparison", "PASS", {"cpu_time_ms": 1.5, "remote_time_ms": 105.3,
                                            "overhead_ms": 103.8, "overhead_pct": 6920}),
    ])
    assert main([str(folder)]) == 0
    report = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
    sides = report["session_info"]
    assert sides["server"]["hostname"] == "gpu-server"
    assert sides["client"]["hostname"] == "client-machine"
    markdown = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "| Hostname | gpu-server | client-machine |" in markdown
    read = original_parser(folder / JSON_NAME)
    assert read["counts"] == {"server_tests": (4, 1, 5), "client_tests": (4, 0, 4),
                              "overall": (8, 1, 9)}
    assert read["server_host"] == "gpu-server"
    assert read["session"]["server_ip"] == "192.168.1.100"
    assert read["session"]["client_hostname"] == "client-machine"
    # The guide's own example figures, computed the original way from the original checks.
    perf = read["performance"]
    assert (perf["server_gpu_time_ms"], perf["client_remote_time_ms"], perf["client_cpu_time_ms"],
            perf["network_overhead_ms"], perf["total_overhead_ms"]) == (19.2, 105.3, 1.5, 86.1, 103.8)
