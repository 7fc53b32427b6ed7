"""The figures recomputed from result files (``analysis.py``): counts and rates, the
performance figures, the overhead and the break-even size.

Result files are written here the way the plugin writes them (the contract's schema, realistic
figures, see ``conftest.py``), so each test checks a figure a user reads in the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time


def test_summary_counts_each_status_and_rate_ignores_skips(tmp_path: Path, samples: Samples) -> None:
    client = samples.gpu_client_tests()
    client[2] = samples.record("http_tensor_transfer", status="FAIL", failure="assert 500 == 200")
    client[3] = samples.record(
        "remote_lazytensor_execution", status="ERROR", error="fixture 'genie_client' failed"
    )
    report = samples.report_of(
        samples.session(tmp_path, "20260109_143000", samples.cpu_server_tests(), client, cuda=False)
    )

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


def test_performance_figures_are_recomputed_from_the_measurements(tmp_path: Path, samples: Samples) -> None:
    perf = samples.report_of(
        samples.session(tmp_path, "20260109_143000", samples.gpu_server_tests(), samples.gpu_client_tests())
    )["performance"]

    assert perf["server_time_ms"] == pytest.approx(19.2)
    assert perf["client_remote_ms"] == pytest.approx(105.3)
    assert perf["network_overhead_ms"] == pytest.approx(105.3 - 19.2)
    assert perf["network_overhead_pct_of_server"] == pytest.approx((105.3 - 19.2) / 19.2 * 100, abs=0.01)
    assert perf["client_cpu_baseline_ms"] == pytest.approx(1.5)
    assert perf["total_overhead_ms"] == pytest.approx(103.8)
    assert perf["total_overhead_pct_vs_local"] == pytest.approx(6920.0, abs=0.01)
    assert perf["transfer"]["http_tensor_transfer"]["mib_per_s"]["value"] == 37.2
    assert perf["transfer"]["large_tensor_handling"]["mib_per_s"]["value"] == 37.1  # parametrized name found
    assert perf["transfer"]["http_tensor_transfer"]["mib_per_s"]["server"] == "http://127.0.0.1:8888"
    assert perf["connect_ms_median"] == 0.21
    be = perf["break_even"]
    assert (be["break_even_n"], be["largest_swept_n"], be["largest_swept_bytes"]) == (
        None,
        4096,
        64 * samples.MB,
    )


def test_overhead_pairs_remote_time_with_the_same_requests_compute(tmp_path: Path, samples: Samples) -> None:
    client = samples.gpu_client_tests()
    headline = next(row for row in client[4]["details"]["sweep"] if row["n"] == 1000)
    headline.update(server_compute_ms=20.0, remote_ms=50.0)  # the headline is the sweep's own row
    client[4]["details"].update(network_overhead_ms=999.0)
    server = samples.gpu_server_tests()
    server[2]["details"]["gpu_time_ms"] = 10.0
    perf = samples.report_of(samples.session(tmp_path / "a", "20260109_143000", server, client))[
        "performance"
    ]
    assert perf["network_overhead_ms"] == pytest.approx(30.0)  # 50 - 20, not the recorded 999 nor 50 - 10
    assert perf["server_gpu_time_ms"] == 10.0

    for row in client[4]["details"]["sweep"]:  # no Server-Timing: fall back to the server's benchmark
        del row["server_compute_ms"]
    perf = samples.report_of(samples.session(tmp_path / "b", "20260109_143000", server, client))[
        "performance"
    ]
    assert perf["network_overhead_ms"] == pytest.approx(40.0)
    assert perf["server_time_basis"] == "gpu_detection.gpu_time_ms"


def test_break_even_comes_from_the_sweep(tmp_path: Path, samples: Samples) -> None:
    perf = samples.report_of(
        samples.session(
            tmp_path, "20260109_143000", samples.cpu_server_tests(), samples.cpu_client_tests(), False
        )
    )["performance"]
    assert perf["break_even"]["break_even_n"] == 2048
    assert perf["break_even"]["break_even_bytes"] == 16 * samples.MB
    assert perf["total_overhead_ms"] == pytest.approx(-10.0)  # remote faster than local here


def test_decode_colocation_figures_come_from_each_ways_totals(tmp_path: Path, samples: Samples) -> None:
    client = [*samples.gpu_client_tests(), samples.decode_colocation_record()]
    client[-1]["details"].update(bytes_ratio=99.0, time_ratio=99.0)  # recomputed, not read back
    decode = samples.report_of(samples.session(tmp_path, "20260109_143000", None, client))["performance"][
        "llm_decode_colocation"
    ]
    kept, shipped = decode["kv_kept"], decode["kv_shipped"]
    assert kept["bytes_per_step"] == pytest.approx((368640 + 35360) / 24, abs=0.1)
    assert shipped["bytes_per_step"] == pytest.approx((1718368 + 1416168) / 24, abs=0.1)
    assert decode["bytes_ratio"] == pytest.approx(3134536 / 404000, abs=0.01)
    assert decode["bytes_saved_pct"] == pytest.approx(100 * (1 - 404000 / 3134536), abs=0.1)
    assert decode["time_ratio"] == pytest.approx(21.8 / 19.3, abs=0.01)
    assert (kept["requests_per_step"], kept["server_requests"]) == (1, 24)
    assert (decode["steps"], decode["layers"], decode["tokens_match_eager"]) == (24, 4, True)


def test_decode_colocation_absent_is_none(tmp_path: Path, samples: Samples) -> None:
    report = samples.report_of(samples.session(tmp_path, "20260109_143000", None, samples.gpu_client_tests()))
    assert report["performance"]["llm_decode_colocation"] is None
