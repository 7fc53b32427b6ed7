"""CI keeps ``benchmarks/ab.py`` working: two servers from source trees side by side
(here the same tree twice, one of them with the cold client, and AsyncClient),
every answer checked exact by the script itself.  No timing is asserted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
SCRIPT = ROOT / "benchmarks" / "ab.py"


@pytest.mark.timeout(300)
def test_ab_runs_two_trees_side_by_side() -> None:
    src = str(ROOT / "src")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--tree", f"a={src}", "--tree", f"b={src}",
                           "--cold", "a", "--async", "b", "--sizes", "10,300", "--repeats", "5",
                           "--levels", "1", "--window", "0.3", "--rounds", "1"],
                          capture_output=True, text=True, timeout=280, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "| n | raw_tight | a | b | b/async |" in out
    assert "| 10 | " in out and "| 300 | " in out
    assert "| 1 | a | " in out and "| 1 | b | " in out and "errors" not in out
