"""The Markdown report (``markdown.py``): the guide's sections and lines, and "not measured"
wherever a figure is missing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_genie.report import write_report
from pytest_genie.report.markdown import render_markdown

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time


def test_markdown_has_the_guides_sections_and_lines(tmp_path: Path, samples: Samples) -> None:
    folder = samples.session(
        tmp_path, "20260109_143000", samples.gpu_server_tests(), samples.gpu_client_tests()
    )
    json_path, md_path, *_ = write_report(folder)
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


def test_missing_figures_read_not_measured(tmp_path: Path, samples: Samples) -> None:
    client = [
        t
        for t in samples.gpu_client_tests()
        if t["name"] not in ("performance_comparison", "large_tensor_handling[256]")
    ]
    report = samples.report_of(samples.session(tmp_path, "20260109_143000", None, client))
    perf = report["performance"]
    assert perf["client_remote_ms"] is None and perf["network_overhead_ms"] is None
    assert perf["break_even"]["break_even_n"] is None and perf["break_even"]["points"] == 0
    md = render_markdown(report)
    assert "- **Client CPU Baseline**: not measured" in md
    assert "- **Network Overhead**: not measured" in md
    assert "- **Break-even**: not measured" in md
    assert "- Large tensor transfer: not measured." in md
    assert "No results for this side in this report" in md.split("## Server-Side Results")[1].split("##")[0]
    texts = " ".join(r["text"] for r in report["recommendations"])
    assert "No server-side results" in texts and "not measured" in texts


def test_markdown_shows_the_decode_check(tmp_path: Path, samples: Samples) -> None:
    client = [*samples.gpu_client_tests(), samples.decode_colocation_record()]
    md = render_markdown(samples.report_of(samples.session(tmp_path, "20260109_143000", None, client)))
    section = md.split("### LLM Decode Co-location")[1].split("##")[0]
    assert "24 greedy decode steps of a 4-layer GPT-2-style model after a 16-token prompt" in section
    assert "tokens equal eager: yes" in section and "final KV cache 80.0 KiB" in section
    assert "| kept on the server | 1 | 360.0 KiB | 34.5 KiB | 16.4 KiB | 19.3ms | 617.0ms |" in section
    assert "| shipped each step | 1 | 1.6 MiB | 1.4 MiB | 127.5 KiB | 21.8ms | 542.0ms |" in section
    assert ("- **Co-location saves**: 87% of the bytes (7.76× fewer); shipping the cache makes the "
            "median step 1.13× as long") in section
    assert "| llm_decode_colocation | ✅ PASS |" in md
    bare = render_markdown(samples.report_of(samples.session(tmp_path / "b", "20260109_143000", None,
                                                             samples.gpu_client_tests())))
    assert "- **KV cache kept vs shipped**: not measured" in bare
