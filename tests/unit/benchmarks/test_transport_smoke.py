"""CI keeps ``benchmarks/transport.py`` working: one ``--quick`` run, tiny sizes.

The benchmark starts its own Genie server, raw socket server and torch.rpc peers as
child processes on 127.0.0.1; this checks that the run completes, leaves a JSON
table with every path at every size, all results exact, and the targets evaluated.
No timing is asserted: figures from a shared CI machine mean nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "transport.py"
PATHS = {"execute", "graph", "echo", "raw", "rpc"}


@pytest.mark.timeout(120)
def test_quick_run_writes_a_complete_table(tmp_path: Path) -> None:
    out = tmp_path / "transport.json"
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--json", str(out)],
                          capture_output=True, text=True, timeout=110, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())

    assert [s["n"] for s in report["sizes"]] == [10, 100]
    for size in report["sizes"]:
        assert set(size["paths"]) == PATHS
        assert size["bytes"] == size["n"] ** 2 * 4
        for name, cell in size["paths"].items():
            assert cell["exact"], f"{name} at n={size['n']} returned a wrong result"
            assert cell["times_ms"] and all(t > 0 for t in cell["times_ms"])
            assert cell["median_ms"] > 0
        assert size["paths"]["raw"]["ratio_to_raw"] == 1.0
    memory = report["sizes"][-1]["memory"]
    assert memory["server"]["peak_mb"] >= memory["server"]["idle_mb"] > 0
    assert {t["target"] for t in report["targets"]} >= {
        "n=10 execute <= 1 ms", "every path returned the exact result"}
    assert "execute" in proc.stdout and "ratio to raw socket" in proc.stdout


def test_repeats_below_five_are_refused_outside_quick_runs() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--repeats", "2"],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert "--repeats must be >= 5" in proc.stderr
