"""The ``genie-report`` command (``cli.py``, ``__main__.py``): folders copied together from
several nodes, and errors that name the file and the fix.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from pytest_genie.report import HTML_NAME, JSON_NAME, MARKDOWN_NAME, main

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time


def test_main_combines_folders_copied_from_two_nodes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], samples: Samples
) -> None:
    gpu_node = tmp_path / "from-gpu" / "genie_test_results_20260109_143000"
    client_node = tmp_path / "from-client" / "genie_test_results_20260109_150000"
    samples.write_results(
        gpu_node, "server", samples.gpu_server_tests(), "20260109_143000", hostname="gpu-server"
    )
    samples.write_results(
        client_node,
        "client",
        samples.gpu_client_tests(),
        "20260109_150000",
        hostname="laptop",
        server_url="http://10.0.0.5:8888",
    )
    out = tmp_path / "combined"

    assert main([str(gpu_node), str(client_node), "--output", str(out)]) == 0
    printed = capsys.readouterr().out.split()
    assert printed[:3] == [str(out / JSON_NAME), str(out / MARKDOWN_NAME), str(out / HTML_NAME)]
    assert {Path(p).name for p in printed[3:]} == {"chart_latency.svg", "chart_throughput.svg"}
    report = json.loads((out / JSON_NAME).read_text(encoding="utf-8"))
    info = report["session_info"]
    assert (info["server"]["hostname"], info["client"]["hostname"]) == ("gpu-server", "laptop")
    assert info["server_url"] == "http://10.0.0.5:8888"
    assert report["overall_summary"]["total"] == 13
    assert report["performance"]["network_overhead_ms"] == pytest.approx(86.1)
    md = (out / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "| gpu_detection | ✅ PASS" in md and "| performance_comparison | ✅ PASS" in md


def test_main_writes_into_the_first_dir_by_default(tmp_path: Path, samples: Samples) -> None:
    folder = samples.session(tmp_path, "20260109_143000", samples.gpu_server_tests(), None)
    assert main([str(folder)]) == 0
    assert (folder / JSON_NAME).is_file() and (folder / MARKDOWN_NAME).is_file()
    md = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "- **Server GPU Time**: 19.2ms" in md  # server-only: still readable
    assert "## Client-Side Results\n\nNo results for this side" in md


def test_main_rejects_invalid_json_naming_the_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], samples: Samples
) -> None:
    good = samples.session(tmp_path, "20260109_143000", samples.gpu_server_tests(), None)
    broken = good / "client_test_results_20260109_143000.json"
    broken.write_text('{"test_info": {}, "tests": [', encoding="utf-8")

    assert main([str(good)]) == 2
    err = capsys.readouterr().err
    assert "invalid JSON" in err and str(broken) in err
    assert not (good / JSON_NAME).exists()


def test_main_rejects_a_folder_without_results(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], samples: Samples
) -> None:
    good = samples.session(tmp_path, "20260109_143000", samples.gpu_server_tests(), None)
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main([str(good), str(empty)]) == 2
    assert f"{empty} holds no server_test_results_*.json" in capsys.readouterr().err


def test_console_module_runs(tmp_path: Path, samples: Samples) -> None:
    folder = samples.session(tmp_path, "20260109_143000", None, samples.gpu_client_tests())
    done = subprocess.run(
        [sys.executable, "-m", "pytest_genie.report", str(folder)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split()[:3] == [str(folder / JSON_NAME), str(folder / MARKDOWN_NAME),
                                       str(folder / HTML_NAME)]


def _only_session(results_dir: Path) -> Path:
    (folder,) = results_dir.glob("genie_test_results_*")
    return folder


def test_report_from_plugin_results_run_on_two_nodes(pytester: pytest.Pytester, two_node_tests: None) -> None:
    """`pytest -m server` and `pytest -m client` write separate folders; genie-report joins them."""
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
