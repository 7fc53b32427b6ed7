"""The guide's four commands (``scripts/``, fronts of ``guide.py``), run as the guide runs
them: from the repository's root, in a shell where no venv is activated, against a real
``genie-server`` on 127.0.0.1.  Each prints the guide's header and a line per check, ends
with the guide's closing line, exits with pytest's (or genie-report's) status, and leaves
what the original parsers read.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from pytest_genie.checks import CHECKS
from pytest_genie.guide import main

REPO = Path(__file__).resolve().parents[3]
SCRIPTS = REPO / "scripts"
BASH = shutil.which("bash")
pytestmark = [pytest.mark.skipif(BASH is None, reason="the guide's scripts are bash scripts"),
              pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")]

Run = Callable[..., subprocess.CompletedProcess[str]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def genie_server(genie_process: Callable[..., Any]) -> Iterator[str]:
    """``genie-server --host 127.0.0.1 --port P`` in its own process, as the guide starts it."""
    srv = genie_process(module="genie.runtime.simple_server")
    try:
        yield f"127.0.0.1:{srv.port}"
    finally:
        srv.stop()


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("guide-results")


@pytest.fixture(scope="module")
def fresh_shell(results_dir: Path) -> Run:
    """Run a command from the repository's root in an environment like a new terminal's:
    no activated venv, the system's PATH with this Python's ``python``/``python3`` first
    (what a user has on PATH), results kept out of the repository's reports/."""
    env = {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": str(results_dir),
           "LANG": "C.UTF-8", "GENIE_RESULTS_DIR": str(results_dir)}
    if os.environ.get("PYTHONPATH"):  # a developer's checkout run without installing it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]

    def run(*command: str, **extra_env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(list(command), cwd=REPO, env={**env, **extra_env},
                              capture_output=True, text=True, timeout=600,
                              stdin=subprocess.DEVNULL)
    return run


def _lines(out: str) -> list[str]:
    return out.splitlines()


def _newest(results_dir: Path) -> Path:
    return max(results_dir.glob("genie_test_results_*"), key=lambda p: p.stat().st_mtime)


def test_week1_server_tests(fresh_shell: Run, genie_server: str) -> None:
    done = fresh_shell("bash", "scripts/week1_server_tests.sh", "-k", "not server_startup",
                       GENIE_SERVER=genie_server)
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    assert lines[:3] == ["🚀 Genie Server-Side Testing", "===============================",
                         "📋 Server Information:"]
    assert f"   Hostname: {socket.gethostname()}" in lines
    assert any(line.startswith("   IP Addresses: ") for line in lines)
    assert f"   CUDA Available: {torch.cuda.is_available()}" in lines
    assert f"   Server checked: http://{genie_server}" in lines
    for name in ("environment_setup", "server_operations", "server_statistics"):
        assert any(line.startswith(f"✅ {name} (") for line in lines), name
    assert any(line.startswith("⏭ gpu_detection (") for line in lines)
    assert "🎉 All server tests passed! (1 skipped: gpu_detection)" in lines


def test_week1_client_tests(fresh_shell: Run, genie_server: str, free_port: int) -> None:
    done = fresh_shell("bash", "scripts/week1_client_tests.sh", genie_server, "-k",
                       "connectivity or http_tensor_transfer")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    assert lines[:4] == ["🚀 Genie Client-Side Testing", "===============================",
                         "📋 Client Information:", f"   Hostname: {socket.gethostname()}"]
    assert f"   Server IP: {genie_server}" in lines
    for name in ("network_connectivity", "server_connectivity", "http_tensor_transfer"):
        assert any(line.startswith(f"✅ {name} (") for line in lines), name
    assert lines.count("🎉 All client tests passed!") == 1
    # A server that is not there: pytest's status, and the failures named.
    down = fresh_shell("bash", "scripts/week1_client_tests.sh", f"127.0.0.1:{free_port}",
                       "-k", "network_connectivity")
    assert down.returncode == pytest.ExitCode.TESTS_FAILED
    assert "❌ Some client tests failed: network_connectivity (FAIL)" in _lines(down.stdout)
    # No SERVER_IP: pytest's usage error, and the usage.
    usage = fresh_shell("bash", "scripts/week1_client_tests.sh")
    assert usage.returncode == pytest.ExitCode.USAGE_ERROR
    assert "usage: bash scripts/week1_client_tests.sh SERVER_IP" in usage.stderr


@pytest.fixture(scope="module")
def free_port() -> int:
    return _free_port()


def test_week1_comprehensive_tests_then_parse(fresh_shell: Run, genie_server: str,
                                              results_dir: Path) -> None:
    done = fresh_shell("bash", "scripts/week1_comprehensive_tests.sh", genie_server,
                       "--genie-large-mb=1", "--genie-level=quick")
    assert done.returncode == 0, done.stdout + done.stderr
    lines = _lines(done.stdout)
    assert lines[:3] == ["🚀 Genie Comprehensive Multi-Node Testing",
                         "===============================", "📋 Test Configuration:"]
    assert f"   Server checks: run here too ({genie_server} is this machine)" in lines
    assert "🎉 All server tests passed! (1 skipped: gpu_detection)" in lines
    assert "🎉 All client tests passed!" in lines
    folder = _newest(results_dir)
    assert {p.name.split("_test")[0] for p in folder.glob("*_test_results_*.json")} == {
        "server", "client"}
    report = json.loads((folder / "comprehensive_report.json").read_text(encoding="utf-8"))
    summary = report["summary"]  # as the original report's readers read it
    servers = sum(1 for c in CHECKS if c.kind == "server")  # gpu_detection skips on a CPU
    clients = sum(1 for c in CHECKS if c.kind == "client")
    assert (summary["server_tests"]["passed"], summary["server_tests"]["total"]) == (
        servers - 1, servers)
    assert (summary["client_tests"]["passed"], summary["client_tests"]["failed"]) == (clients, 0)
    assert summary["overall"] == {"passed": servers + clients - 1, "failed": 0, "skipped": 1,
                                  "errors": 0, "total": servers + clients}
    assert report["test_session"]["server_ip"] == "127.0.0.1"
    assert report["analysis"]["performance"]["client_remote_time_ms"] > 0

    (folder / "comprehensive_report.json").unlink()
    parsed = fresh_shell("python", "scripts/parse_test_results.py", f"{folder}/")
    assert parsed.returncode == 0, parsed.stderr
    assert "# Genie Test Analysis Report" in parsed.stdout
    assert "## Performance Analysis" in parsed.stdout
    assert (folder / "comprehensive_report.json").is_file()
    missing = fresh_shell("python", "scripts/parse_test_results.py", "genie_test_results_nope/")
    assert missing.returncode == 2 and "is not a directory" in missing.stderr


def test_parse_finds_the_guides_folder_names(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    """``parse_test_results.py genie_test_results_X/`` from the repository's root finds the
    folder in reports/, where the plugin writes it; with no folder, the newest session."""
    reports = tmp_path / "reports"
    for stamp, host in (("20250109_143000", "older-node"), ("20250110_090000", "newer-node")):
        folder = reports / f"genie_test_results_{stamp}"
        folder.mkdir(parents=True)
        (folder / f"server_test_results_{stamp}.json").write_text(json.dumps({
            "test_info": {"hostname": host, "timestamp": "2025-01-09T14:30:00+00:00",
                          "test_type": "server_side"},
            "tests": [{"name": "environment_setup", "status": "PASS", "details": {},
                       "timing_ms": 1.0, "timestamp": "2025-01-09T14:30:01+00:00"}]}))
        os.utime(folder, (1e9 + int(stamp[:8]), 1e9 + int(stamp[:8])))
    assert main(["parse", "genie_test_results_20250109_143000/"], root=tmp_path) == 0
    assert "older-node" in capsys.readouterr().out
    assert main(["parse"], root=tmp_path) == 0
    assert "newer-node" in capsys.readouterr().out
    assert (reports / "genie_test_results_20250110_090000" / "comprehensive_report.json").is_file()


def test_a_bad_server_address_is_a_usage_error_before_any_run(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("GENIE_SERVER", "http://")
    assert main(["server"]) == pytest.ExitCode.USAGE_ERROR
    assert "'http://': no host" in capsys.readouterr().err
    assert main(["client", "ftp://x"]) == pytest.ExitCode.USAGE_ERROR
    assert "SERVER_IP: 'ftp://x': scheme must be http or https" in capsys.readouterr().err
    assert main(["nonsense"]) == pytest.ExitCode.USAGE_ERROR
