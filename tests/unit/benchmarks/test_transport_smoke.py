"""CI keeps ``benchmarks/transport.py`` working: one ``--quick`` run, tiny sizes.

The benchmark starts its own Genie server, HTTP floor, two raw socket servers,
torch.rpc peers and load-generator processes on 127.0.0.1; this checks that the run
completes and leaves a JSON report with every path at every size and at every
concurrency level, all results exact, and the issue's targets evaluated.  No timing
is asserted: figures from a shared CI machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "transport.py"
SIZE_PATHS = {"execute", "async", "graph", "echo", "floor", "raw_tight", "raw_naive", "rpc"}
CONCURRENCY_PATHS = {"floor", "execute", "async", "rpc"}


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, str, str]:
    out = tmp_path_factory.mktemp("transport")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out / "t.json"),
                           "--markdown", str(out / "t.md")],
                          capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads((out / "t.json").read_text()), (out / "t.md").read_text(), proc.stdout


@pytest.mark.timeout(300)
def test_quick_run_times_every_path_at_every_size(quick_run: tuple[dict, str, str]) -> None:
    report, _, stdout = quick_run
    assert [s["n"] for s in report["sizes"]] == [10, 100]
    for size in report["sizes"]:
        assert set(size["paths"]) == SIZE_PATHS
        assert size["bytes"] == size["n"] ** 2 * 4
        for name, cell in size["paths"].items():
            assert cell["exact"], f"{name} at n={size['n']} returned a wrong result"
            assert cell["times_ms"] and all(t > 0 for t in cell["times_ms"])
            assert cell["median_ms"] > 0
            assert cell["server_minflt"] >= 0 and cell["client_minflt"] >= 0
        assert size["paths"]["raw_tight"]["ratio_to_tight"] == 1.0
    memory = report["sizes"][-1]["memory"]
    assert memory["server"]["peak_mb"] >= memory["server"]["idle_mb"] > 0
    assert "HTTP floor" in stdout and "raw (tight)" in stdout and "raw (naive)" in stdout
    assert "ratio to raw (tight)" in stdout and "load average start" in stdout


@pytest.mark.timeout(300)
def test_quick_run_measures_each_concurrency_level(quick_run: tuple[dict, str, str]) -> None:
    report, _, stdout = quick_run
    rows = report["concurrency"]
    assert [(r["payload"], r["clients"]) for r in rows] == [
        ("small", 1), ("small", 2), ("4mb", 1), ("4mb", 2)]
    for row in rows:
        assert set(row["paths"]) == CONCURRENCY_PATHS
        for name, cell in row["paths"].items():
            where = f"{name} {row['payload']} x{row['clients']}"
            assert cell["exact"], f"{where}: wrong result"
            assert cell["errors"] == 0, f"{where}: {cell['errors']} failed requests"
            assert cell["requests"] > 0 and cell["requests_per_s"] > 0, where
            assert 0 < cell["p50_ms"] <= cell["p99_ms"], where
    assert "requests/s, p50/p99 ms" in stdout


@pytest.mark.timeout(300)
def test_quick_run_evaluates_the_targets(quick_run: tuple[dict, str, str]) -> None:
    report, md, _ = quick_run
    names = {t["target"] for t in report["targets"]}
    assert {"n=10 execute <= 0.1 ms", "every path returned the exact result"} <= names
    exact = next(t for t in report["targets"] if t["target"].startswith("every path"))
    assert exact["met"], exact["detail"]
    assert "| n | MB | execute |" in md and "| payload | clients |" in md
    assert report["environment"]["load_avg_start"] and report["environment"]["load_avg_end"]


def test_repeats_below_five_are_refused_outside_quick_runs() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "2"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "--repeats must be >= 5" in proc.stderr
