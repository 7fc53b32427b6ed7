"""The comprehensive report: figures recomputed from result files, Markdown sections, CLI, trend.

Result files are written here the way the plugin writes them (the contract's schema, realistic
figures), so each test checks what a user reads in comprehensive_report.json and
test_analysis_report.md.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.report import JSON_NAME, MARKDOWN_NAME, build_report, main, write_report
from pytest_genie.report.markdown import render_markdown

MB = 1 << 20


def record(
    name: str,
    status: str = "PASS",
    timing_ms: float = 12.5,
    ts: str = "2026-01-09T14:30:01+00:00",
    **details: Any,
) -> dict[str, Any]:
    return {"name": name, "status": status, "details": details, "timing_ms": timing_ms, "timestamp": ts}


def write_results(
    folder: Path,
    side: str,
    tests: list[dict[str, Any]],
    stamp: str = "20260109_143000",
    hostname: str | None = None,
    server_url: str | None = "http://127.0.0.1:8888",
    cuda: bool = True,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    iso = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}+00:00"
    data = {
        "test_info": {
            "hostname": hostname or f"{side}-node",
            "timestamp": iso,
            "test_type": f"{side}_side",
            "server_url": server_url,
            "python_version": "3.12.3",
            "torch_version": "2.13.0",
            "genie_version": "0.1.0",
            "platform": "Linux-6.8-x86_64",
            "gpu": {
                "cuda_available": cuda,
                "gpu_count": 1 if cuda else 0,
                "gpu_name": "Tesla T4" if cuda else None,
            },
        },
        "tests": tests,
    }
    path = folder / f"{side}_test_results_{stamp}.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def gpu_server_tests() -> list[dict[str, Any]]:
    return [
        record(
            "environment_setup",
            python_version="3.12.3",
            torch_version="2.13.0",
            genie_version="0.1.0",
            packages={"torch": "2.13.0"},
        ),
        record(
            "server_startup",
            timing_ms=850.0,
            startup_ms=812.4,
            shutdown_ms=35.0,
            pid=1234,
            port=8888,
            health_status="ok",
        ),
        record(
            "gpu_detection",
            timing_ms=150.0,
            cuda_available=True,
            gpu_count=1,
            gpu_name="Tesla T4",
            gpu_memory_total_bytes=15 * (1 << 30),
            device="cuda:0",
            gpu_time_ms=19.2,
        ),
        record(
            "server_operations",
            ops_checked=6,
            median_round_trip_ms=4.1,
            cases=[
                {"op": "relu", "dtype": "float32", "shape": [64, 64], "round_trip_ms": 4.1, "exact": True}
            ],
        ),
        record(
            "server_statistics",
            requests_before=3,
            requests_after=7,
            requests_made=4,
            failures_by_type={"UnsupportedOp": 1},
            error_rate=0.25,
        ),
    ]


SLOW_SWEEP = [  # remote slower than local CPU at every size: no break-even
    {"n": 256, "bytes": 256 * 256 * 4, "local_cpu_ms": 0.2, "remote_ms": 9.0, "server_compute_ms": 0.3},
    {"n": 1000, "bytes": 4_000_000, "local_cpu_ms": 1.5, "remote_ms": 105.3, "server_compute_ms": 19.2},
    {"n": 4096, "bytes": 64 * MB, "local_cpu_ms": 95.0, "remote_ms": 1016.0, "server_compute_ms": 60.0},
]


def gpu_client_tests(
    remote_ms: float = 105.3, sweep: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    return [
        record(
            "network_connectivity",
            host="127.0.0.1",
            port=8888,
            connect_ms_median=0.21,
            connect_ms_min=0.15,
            attempts=5,
        ),
        record(
            "server_connectivity",
            server_url="http://127.0.0.1:8888",
            device="cuda:0",
            cuda_available=True,
            gpu_name="Tesla T4",
            response_ms=2.3,
            protocol_version=1,
            genie_version="0.1.0",
        ),
        record(
            "http_tensor_transfer",
            http_code=200,
            bytes=4_000_000,
            round_trip_ms=107.5,
            mb_per_s=37.2,
            bit_exact=True,
        ),
        record(
            "remote_lazytensor_execution",
            shape=[1000, 1000],
            round_trip_ms=98.0,
            requests_made=1,
            max_abs_error=0.0,
            via="graph",
        ),
        record(
            "performance_comparison",
            timing_ms=2400.0,
            n=1000,
            op="matmul",
            local_cpu_ms=1.5,
            server_compute_ms=19.2,
            remote_ms=remote_ms,
            network_overhead_ms=remote_ms - 19.2,
            network_overhead_pct=(remote_ms - 19.2) / 19.2 * 100,
            slowdown_vs_local_pct=6920.0,
            sweep=SLOW_SWEEP if sweep is None else sweep,
            break_even_n=None,
            break_even_bytes=None,
        ),
        record(
            "multi_operation_chain",
            ops=["relu", "sigmoid", "tanh", "abs"],
            requests_made=1,
            round_trip_ms=90.0,
            max_abs_error=0.0,
        ),
        record(
            "error_handling",
            server_healthy_after=True,
            cases={
                "unsupported_op": {
                    "status": 400,
                    "type": "UnsupportedOp",
                    "expected_status": 400,
                    "expected_type": "UnsupportedOp",
                },
                "unknown_handle": {
                    "status": 404,
                    "type": "UnknownHandle",
                    "expected_status": 404,
                    "expected_type": "UnknownHandle",
                },
            },
        ),
        record(
            "large_tensor_handling[256]",
            timing_ms=14000.0,
            size_mb=256.0,
            bytes=256 * MB,
            round_trip_ms=13800.0,
            mb_per_s=37.1,
            bit_exact=True,
        ),
    ]


def cpu_server_tests() -> list[dict[str, Any]]:
    tests = [t for t in gpu_server_tests() if t["name"] != "gpu_detection"]
    tests.insert(
        2,
        record(
            "gpu_detection",
            status="SKIP",
            timing_ms=0.0,
            skip_reason="CUDA is not available on this server (device cpu)",
        ),
    )
    return tests


FAST_SWEEP = [  # a loopback CPU server where the remote side wins from n=2048 on
    {"n": 512, "bytes": 512 * 512 * 4, "local_cpu_ms": 2.0, "remote_ms": 6.0, "server_compute_ms": 1.0},
    {"n": 2048, "bytes": 16 * MB, "local_cpu_ms": 120.0, "remote_ms": 80.0, "server_compute_ms": 60.0},
    {"n": 4096, "bytes": 64 * MB, "local_cpu_ms": 900.0, "remote_ms": 400.0, "server_compute_ms": 300.0},
]


def cpu_client_tests() -> list[dict[str, Any]]:
    tests = gpu_client_tests(sweep=FAST_SWEEP)
    for t in tests:
        if t["name"] == "performance_comparison":
            t["details"].update(
                local_cpu_ms=40.0,
                server_compute_ms=20.0,
                remote_ms=30.0,
                break_even_n=2048,
                break_even_bytes=16 * MB,
            )
        if t["name"] == "server_connectivity":
            t["details"].update(device="cpu", cuda_available=False, gpu_name=None)
    return tests


def session(
    root: Path,
    stamp: str,
    server: list[dict[str, Any]] | None,
    client: list[dict[str, Any]] | None,
    cuda: bool = True,
) -> Path:
    folder = root / f"genie_test_results_{stamp}"
    if server is not None:
        write_results(folder, "server", server, stamp, cuda=cuda)
    if client is not None:
        write_results(folder, "client", client, stamp, cuda=cuda)
    return folder


def report_of(folder: Path) -> dict[str, Any]:
    return build_report(sorted(folder.glob("*_test_results_*.json")), [])


# ----------------------------------------------------------------------------- figures


def test_summary_counts_each_status_and_rate_ignores_skips(tmp_path: Path) -> None:
    client = gpu_client_tests()
    client[2] = record("http_tensor_transfer", status="FAIL", failure="assert 500 == 200")
    client[3] = record("remote_lazytensor_execution", status="ERROR", error="fixture 'genie_client' failed")
    report = report_of(session(tmp_path, "20260109_143000", cpu_server_tests(), client, cuda=False))

    summary = report["overall_summary"]
    assert (
        summary["total"],
        summary["passed"],
        summary["failed"],
        summary["skipped"],
        summary["errors"],
    ) == (13, 10, 1, 1, 1)
    assert summary["success_rate"] == pytest.approx(100 * 10 / 12, abs=0.01)
    assert report["server_side"]["summary"]["success_rate"] == 100.0  # 4 passed + 1 skipped
    assert report["client_side"]["summary"]["failed"] == 1
    per_test = {t["name"]: t for t in report["client_side"]["tests"]}
    assert per_test["http_tensor_transfer"]["message"] == "assert 500 == 200"
    assert per_test["large_tensor_handling[256]"]["timing_ms"] == 14000.0


def test_performance_figures_are_recomputed_from_the_measurements(tmp_path: Path) -> None:
    perf = report_of(session(tmp_path, "20260109_143000", gpu_server_tests(), gpu_client_tests()))[
        "performance"
    ]

    assert perf["server_time_ms"] == pytest.approx(19.2)
    assert perf["client_remote_ms"] == pytest.approx(105.3)
    assert perf["network_overhead_ms"] == pytest.approx(105.3 - 19.2)
    assert perf["network_overhead_pct_of_server"] == pytest.approx((105.3 - 19.2) / 19.2 * 100, abs=0.01)
    assert perf["client_cpu_baseline_ms"] == pytest.approx(1.5)
    assert perf["total_overhead_ms"] == pytest.approx(103.8)
    assert perf["total_overhead_pct_vs_local"] == pytest.approx(6920.0, abs=0.01)
    assert perf["transfer"]["http_tensor_transfer"]["mb_per_s"] == 37.2
    assert perf["transfer"]["large_tensor_handling"]["mb_per_s"] == 37.1  # parametrized name still found
    assert perf["connect_ms_median"] == 0.21
    be = perf["break_even"]
    assert (be["break_even_n"], be["largest_swept_n"], be["largest_swept_bytes"]) == (None, 4096, 64 * MB)


def test_overhead_pairs_remote_time_with_the_same_requests_compute(tmp_path: Path) -> None:
    client = gpu_client_tests()
    client[4]["details"].update(server_compute_ms=20.0, remote_ms=50.0, network_overhead_ms=999.0)
    server = gpu_server_tests()
    server[2]["details"]["gpu_time_ms"] = 10.0
    perf = report_of(session(tmp_path / "a", "20260109_143000", server, client))["performance"]
    assert perf["network_overhead_ms"] == pytest.approx(30.0)  # 50 - 20, not the recorded 999 nor 50 - 10
    assert perf["server_gpu_time_ms"] == 10.0

    del client[4]["details"]["server_compute_ms"]  # no Server-Timing: fall back to the server's benchmark
    perf = report_of(session(tmp_path / "b", "20260109_143000", server, client))["performance"]
    assert perf["network_overhead_ms"] == pytest.approx(40.0)
    assert perf["server_time_basis"] == "gpu_detection.gpu_time_ms"


def test_break_even_comes_from_the_sweep(tmp_path: Path) -> None:
    perf = report_of(session(tmp_path, "20260109_143000", cpu_server_tests(), cpu_client_tests(), False))[
        "performance"
    ]
    assert perf["break_even"]["break_even_n"] == 2048
    assert perf["break_even"]["break_even_bytes"] == 16 * MB
    assert perf["total_overhead_ms"] == pytest.approx(-10.0)  # remote faster than local here


# ----------------------------------------------------------------------------- Markdown


def test_markdown_has_the_guides_sections_and_lines(tmp_path: Path) -> None:
    folder = session(tmp_path, "20260109_143000", gpu_server_tests(), gpu_client_tests())
    json_path, md_path = write_report(folder)
    md = md_path.read_text(encoding="utf-8")

    headings = [line for line in md.splitlines() if line.startswith("#")]
    for section in (
        "## Session Information",
        "## Overall Summary",
        "## Server-Side Results",
        "## Client-Side Results",
        "## Performance Analysis",
        "### Network vs GPU Performance",
        "### End-to-End Performance",
        "### Break-even Size",
        "### Transfer Throughput and Latency",
        "## Recommendations",
        "## Trend Across Runs",
    ):
        assert section in headings, section
    assert "- **Server GPU Time**: 19.2ms" in md
    assert "- **Client Remote Time**: 105.3ms" in md
    assert "- **Network Overhead**: 86.1ms (448% of GPU time)" in md
    assert "- **Client CPU Baseline**: 1.5ms" in md
    assert "- **Total Overhead**: 103.8ms (6920% slower than local CPU)" in md
    assert "| gpu_detection | ✅ PASS | 150.0ms |" in md
    assert "2/2 cases as documented" in md
    assert json.loads(json_path.read_text(encoding="utf-8"))["overall_summary"]["total"] == 13
    assert not list(folder.glob("*.tmp"))


def test_guide_style_string_details_are_parsed_or_kept_as_text(tmp_path: Path) -> None:
    folder = tmp_path / "genie_test_results_20250109_143000"
    write_results(
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
    report = report_of(folder)
    assert report["performance"]["server_gpu_time_ms"] == 19.2
    assert report["session_info"]["gpu"]["gpu_name"] == "Tesla T4"
    assert report["server_side"]["tests"][1]["details"] == {"text": "HTTP tensor transfer successful"}
    assert "HTTP tensor transfer successful" in render_markdown(report)


def test_missing_figures_read_not_measured(tmp_path: Path) -> None:
    client = [
        t
        for t in gpu_client_tests()
        if t["name"] not in ("performance_comparison", "large_tensor_handling[256]")
    ]
    report = report_of(session(tmp_path, "20260109_143000", None, client))
    perf = report["performance"]
    assert perf["client_remote_ms"] is None and perf["network_overhead_ms"] is None
    assert perf["break_even"]["break_even_n"] is None and perf["break_even"]["source"] is None
    md = render_markdown(report)
    assert "- **Client CPU Baseline**: not measured" in md
    assert "- **Network Overhead**: not measured" in md
    assert "- **Break-even**: not measured" in md
    assert "- **Large tensor**: not measured" in md
    assert "No results for this side in this report" in md.split("## Server-Side Results")[1].split("##")[0]
    texts = " ".join(r["text"] for r in report["recommendations"])
    assert "No server-side results" in texts and "not measured" in texts


# ----------------------------------------------------------------------------- recommendations


def test_recommendations_follow_the_numbers(tmp_path: Path) -> None:
    slow = report_of(session(tmp_path / "slow", "20260109_143000", gpu_server_tests(), gpu_client_tests()))
    fast = report_of(
        session(tmp_path / "fast", "20260109_143000", cpu_server_tests(), cpu_client_tests(), False)
    )
    slow_text = " ".join(r["text"] for r in slow["recommendations"])
    fast_text = " ".join(r["text"] for r in fast["recommendations"])

    assert "keep tensors below 64.0 MiB local" in slow_text
    assert "4.48x the server compute" in slow_text and "batch ops into one /graph request" in slow_text
    assert "no GPU" not in slow_text

    assert "from n=2048 (16.0 MiB) upward" in fast_text
    assert "batch ops" not in fast_text  # overhead 10 ms vs 20 ms compute: the device dominates
    assert "The server has no GPU (CUDA is not available on this server (device cpu))" in fast_text
    assert "run genie-server on a CUDA node" in fast_text


def test_failed_tests_are_named_with_their_message(tmp_path: Path) -> None:
    client = gpu_client_tests()
    client[5] = record(
        "multi_operation_chain",
        status="FAIL",
        failure="AssertionError: requests_made 4 != 1",
        requests_made=4,
    )
    report = report_of(session(tmp_path, "20260109_143000", gpu_server_tests(), client))
    texts = [r["text"] for r in report["recommendations"]]
    assert "Fix `multi_operation_chain` (FAIL): AssertionError: requests_made 4 != 1" in texts
    assert any("took 4 requests" in t for t in texts)


# ----------------------------------------------------------------------------- CLI and trend


def test_main_combines_folders_copied_from_two_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gpu_node = tmp_path / "from-gpu" / "genie_test_results_20260109_143000"
    client_node = tmp_path / "from-client" / "genie_test_results_20260109_150000"
    write_results(gpu_node, "server", gpu_server_tests(), "20260109_143000", hostname="gpu-server")
    write_results(
        client_node,
        "client",
        gpu_client_tests(),
        "20260109_150000",
        hostname="laptop",
        server_url="http://10.0.0.5:8888",
    )
    out = tmp_path / "combined"

    assert main([str(gpu_node), str(client_node), "--output", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == [str(out / JSON_NAME), str(out / MARKDOWN_NAME)]
    report = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    info = report["session_info"]
    assert (info["server"]["hostname"], info["client"]["hostname"]) == ("gpu-server", "laptop")
    assert info["server_url"] == "http://10.0.0.5:8888"
    assert report["overall_summary"]["total"] == 13
    assert report["performance"]["network_overhead_ms"] == pytest.approx(86.1)
    md = (out / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "| gpu_detection | ✅ PASS" in md and "| performance_comparison | ✅ PASS" in md


def test_main_writes_into_the_first_dir_by_default(tmp_path: Path) -> None:
    folder = session(tmp_path, "20260109_143000", gpu_server_tests(), None)
    assert main([str(folder)]) == 0
    assert (folder / JSON_NAME).is_file() and (folder / MARKDOWN_NAME).is_file()
    md = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "- **Server GPU Time**: 19.2ms" in md  # server-only: still readable
    assert "## Client-Side Results\n\nNo results for this side" in md


def test_main_rejects_invalid_json_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = session(tmp_path, "20260109_143000", gpu_server_tests(), None)
    broken = good / "client_test_results_20260109_143000.json"
    broken.write_text('{"test_info": {}, "tests": [', encoding="utf-8")

    assert main([str(good)]) == 2
    err = capsys.readouterr().err
    assert "invalid JSON" in err and str(broken) in err
    assert not (good / JSON_NAME).exists()


def test_main_rejects_a_folder_without_results(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = session(tmp_path, "20260109_143000", gpu_server_tests(), None)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(good), str(empty)]) == 2
    assert f"{empty} holds no server_test_results_*.json" in capsys.readouterr().err


def test_trend_lists_earlier_sessions_in_time_order(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    two_failed = gpu_client_tests(remote_ms=140.0)
    two_failed[1]["status"] = two_failed[2]["status"] = "FAIL"
    one_failed = gpu_client_tests(remote_ms=120.0)
    one_failed[1]["status"] = "FAIL"
    # Created out of order on disk: the trend orders them by their recorded start time.
    session(root, "20260103_090000", gpu_server_tests(), one_failed)  # 12/13
    session(root, "20260101_090000", gpu_server_tests(), two_failed)  # 11/13
    session(root, "20260105_090000", gpu_server_tests(), gpu_client_tests(remote_ms=110.0))  # 13/13
    (root / "genie_test_results_20260104_090000").mkdir()  # an empty folder is not a session
    current = session(root, "20260109_090000", gpu_server_tests(), gpu_client_tests(remote_ms=99.0))

    json_path, md_path = write_report(current, history_root=root)
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
    assert sessions[3]["change"]["remote_ms"]["delta"] == pytest.approx(-11.0)
    assert sessions[3]["change"]["remote_ms"]["pct"] == pytest.approx(-10.0)

    md = md_path.read_text(encoding="utf-8")
    rows = [line for line in md.split("## Trend Across Runs")[1].splitlines() if line.startswith("| ")]
    assert [r.split("|")[4].strip() for r in rows[1:]] == ["84.6%", "92.3%", "100.0%", "100.0%"]
    assert "(this run)" in rows[-1] and "99.0 (-10.0%)" in rows[-1]


def test_unreadable_earlier_session_is_listed_not_fatal(tmp_path: Path) -> None:
    root = tmp_path / "reports"
    old = session(root, "20260101_090000", gpu_server_tests(), None)
    (old / "server_test_results_20260101_090000.json").write_text("{not json", encoding="utf-8")
    current = session(root, "20260109_090000", gpu_server_tests(), None)

    json_path, _ = write_report(current, history_root=root)
    trend = json.loads(json_path.read_text(encoding="utf-8"))["trend"]
    assert trend["earlier_sessions"] == 0
    assert trend["unreadable"][0]["session"] == old.name


def test_console_module_runs(tmp_path: Path) -> None:
    folder = session(tmp_path, "20260109_143000", None, gpu_client_tests())
    done = subprocess.run(
        [sys.executable, "-m", "pytest_genie.report", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == [str(folder / JSON_NAME), str(folder / MARKDOWN_NAME)]


# ----------------------------------------------------------------------------- with the real plugin

PLUGIN_TESTS = """
import pytest

@pytest.mark.server
def test_gpu_detection(genie_record):
    genie_record.update(cuda_available=False, gpu_count=0, device="cpu")
    pytest.skip("no CUDA GPU on this server")

@pytest.mark.server
def test_server_operations(genie_record):
    genie_record.update(ops_checked=3, median_round_trip_ms=2.5)

@pytest.mark.client
def test_performance_comparison(genie_record):
    genie_record.update(n=1000, op="matmul", local_cpu_ms=6.0, server_compute_ms=6.5, remote_ms=18.0)

@pytest.mark.client
def test_http_tensor_transfer(genie_record):
    genie_record.update(http_code=200, bytes=4000000, mb_per_s=800.0)
    assert genie_record["http_code"] == 500, "server answered 200"
"""


def _only_session(results_dir: Path) -> Path:
    (folder,) = results_dir.glob("genie_test_results_*")
    return folder


def test_report_from_plugin_results_run_on_two_nodes(pytester: pytest.Pytester) -> None:
    """`pytest -m server` and `pytest -m client` write separate folders; genie-report joins them."""
    pytester.makepyfile(test_nodes=PLUGIN_TESTS)
    server_dir, client_dir = pytester.path / "gpu-node", pytester.path / "client-node"
    pytester.runpytest("-m", "server", f"--genie-results-dir={server_dir}").assert_outcomes(
        passed=1, skipped=1
    )
    pytester.runpytest("-m", "client", f"--genie-results-dir={client_dir}").assert_outcomes(
        passed=1, failed=1
    )
    server_session, client_session = _only_session(server_dir), _only_session(client_dir)
    out = pytester.path / "combined"

    assert main([str(server_session), str(client_session), "--output", str(out)]) == 0
    report = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    summary = report["overall_summary"]
    assert (summary["total"], summary["passed"], summary["failed"], summary["skipped"]) == (4, 2, 1, 1)
    assert report["performance"]["network_overhead_ms"] == pytest.approx(18.0 - 6.5)
    texts = " ".join(r["text"] for r in report["recommendations"])
    assert "Fix `http_tensor_transfer` (FAIL)" in texts and "server answered 200" in texts
    assert "The server has no GPU (no CUDA GPU on this server)" in texts


def test_genie_report_option_writes_the_report_with_the_trend(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_nodes=PLUGIN_TESTS)
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


def _strict_json(path: Path) -> Any:
    """Parse as a strict JSON reader (jq, browsers) would: NaN/Infinity are not JSON."""

    def refuse(token: str) -> Any:
        raise ValueError(f"{path.name} holds {token}, which is not JSON")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=refuse)


def test_nan_and_infinity_in_result_files_become_null_not_invalid_json(tmp_path: Path) -> None:
    """Python's json reads NaN/Infinity (a hand-edited file, another tool's output); the report
    it writes must still be JSON that strict readers accept, and show the figure as not measured."""
    client = gpu_client_tests()
    for t in client:
        if t["name"] == "http_tensor_transfer":
            t["details"].update(mb_per_s=float("nan"), round_trip_ms=float("inf"))
        if t["name"] == "performance_comparison":
            t["details"]["remote_ms"] = float("-inf")
            t["timing_ms"] = float("nan")
    folder = session(tmp_path, "20260109_143000", gpu_server_tests(), client)
    text = (folder / "client_test_results_20260109_143000.json").read_text(encoding="utf-8")
    assert "NaN" in text and "Infinity" in text  # the input really holds them

    assert main([str(folder)]) == 0
    report = _strict_json(folder / JSON_NAME)
    by_name = {t["name"]: t for t in report["client_side"]["tests"]}
    transfer = by_name["http_tensor_transfer"]
    assert transfer["details"]["mb_per_s"] is None and transfer["details"]["round_trip_ms"] is None
    assert transfer["details"]["bytes"] > 0  # the finite figures are kept
    assert by_name["performance_comparison"]["timing_ms"] is None
    assert report["performance"]["client_remote_ms"] is None
    assert report["performance"]["transfer"]["http_tensor_transfer"]["mb_per_s"] is None

    md = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert not re.search(r"\b(nan|-?inf|-?infinity)(ms| |%|\b)", md, re.IGNORECASE)
    assert "- **HTTP tensor transfer**: not measured" in md
    assert "- **Client Remote Time**: not measured" in md
