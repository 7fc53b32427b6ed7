"""The network baseline (``network.py``): the probe's rates, tensor transfer efficiency against
them, and the split of the remote time into network, server work and the rest; in the JSON
report and as one Markdown block, with "not measured" when the probe did not run.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_genie.report.markdown import render_markdown

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time

MIB = 1 << 20


def _with_probe(samples: Samples, up: float = 100.0, down: float = 50.0) -> list[dict[str, Any]]:
    tests = samples.gpu_client_tests()
    for t in tests:
        if t["name"] == "performance_comparison":
            t["details"].update(server_work_ms=20.0, bytes_sent=8 * MIB, bytes_received=4 * MIB)
    tests.insert(1, samples.record("network_throughput", probe_sizes=[10 * MIB, 30 * MIB],
                                   upload_ms=[101.0, 301.0], download_ms=[201.0, 601.0],
                                   upload_mib_per_s=up, download_mib_per_s=down,
                                   upload_fixed_ms=1.0, download_fixed_ms=1.0))
    return tests


def test_efficiency_is_tensor_throughput_over_the_probes_round_trip_rate(tmp_path: Path,
                                                                          samples: Samples) -> None:
    report = samples.report_of(samples.session(tmp_path, "20260109_143000", None, _with_probe(samples)))
    network = report["network"]
    round_trip = 2 / (1 / 100.0 + 1 / 50.0)  # an echo: N up, then N down
    assert network["probe"]["round_trip_mib_per_s"] == pytest.approx(round_trip, abs=0.01)
    assert network["probe"]["probe_sizes"] == [10 * MIB, 30 * MIB]
    large = network["efficiency"]["large_tensor_handling"]
    assert large == {"mib_per_s": 37.1, "efficiency": pytest.approx(37.1 / round_trip, abs=0.001)}
    assert network["efficiency"]["http_tensor_transfer"]["efficiency"] == pytest.approx(37.2 / round_trip,
                                                                                      abs=0.001)


def test_remote_time_splits_into_network_server_work_and_the_rest(tmp_path: Path, samples: Samples) -> None:
    report = samples.report_of(samples.session(tmp_path, "20260109_143000", None, _with_probe(samples)))
    split = report["network"]["remote_split"]
    network = 0.21 + 1000 * (8 / 100.0 + 4 / 50.0)  # one RTT + 8 MiB up at 100 + 4 MiB down at 50
    assert split["network_ms"] == pytest.approx(network, abs=0.001)
    assert split["server_work_ms"] == 20.0 and split["remote_ms"] == 105.3
    assert split["client_and_http_ms"] == pytest.approx(105.3 - network - 20.0, abs=0.001)
    assert (split["n"], split["bytes_sent"], split["bytes_received"]) == (1000, 8 * MIB, 4 * MIB)
    md = render_markdown(report)
    block = md.split("### Network Baseline")[1].split("##")[0]
    assert "upload 100.0 MiB/s, download 50.0 MiB/s, round trip 66.7 MiB/s" in block
    assert "10.0 MiB and 30.0 MiB each way" in block
    assert "efficiency** (tensor MiB/s ÷ probe round trip): 0.56 (37.1 MiB/s for the large tensor)" in block
    assert f"network {network:.1f}ms" in block and "server work 20.0ms" in block


def test_without_the_probe_the_baseline_reads_not_measured(tmp_path: Path, samples: Samples) -> None:
    report = samples.report_of(samples.session(tmp_path, "20260109_143000", None, samples.gpu_client_tests()))
    network = report["network"]
    assert network["probe"]["upload_mib_per_s"] is None
    assert network["efficiency"]["large_tensor_handling"] == {"mib_per_s": 37.1, "efficiency": None}
    assert network["remote_split"]["network_ms"] is None
    md = render_markdown(report)
    assert "- **Probe throughput**: not measured (network_throughput did not run)" in md


def test_figures_recorded_as_mb_per_s_by_earlier_versions_still_read(tmp_path: Path,
                                                                      samples: Samples) -> None:
    """``mb_per_s`` was MiB/s all along; files written before the rename keep their figures."""
    tests = _with_probe(samples)
    for t in tests:
        if "mib_per_s" in t["details"]:
            t["details"]["mb_per_s"] = t["details"].pop("mib_per_s")
    report = samples.report_of(samples.session(tmp_path, "20260109_143000", None, tests))
    assert report["performance"]["transfer"]["large_tensor_handling"]["mib_per_s"]["value"] == 37.1
    assert report["network"]["efficiency"]["large_tensor_handling"]["mib_per_s"] == 37.1
    (large,) = [s for s in report["trend"]["series"] if s["metric"] == "large_mib_per_s"]
    assert large["points"][0]["figure"]["value"] == 37.1
