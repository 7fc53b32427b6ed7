"""The comprehensive report as a document: built from result files, written as its two files.

Two ways in, one result: ``pytest --genie-report`` calls :func:`write_report` on the session
folder it just wrote, and ``genie-report`` (``cli.py``) combines result folders copied together
from several nodes. Both go through :func:`build_report`, which is pure, and :func:`save_report`,
which writes ``comprehensive_report.json`` and ``test_analysis_report.md`` atomically, like the
result files themselves.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_genie.checks import Key
from pytest_genie.report.analysis import gpu_info, performance, session_info, side_analysis, summarize
from pytest_genie.report.compat import original_layout
from pytest_genie.report.inputs import (
    CLIENT_GLOB,
    SERVER_GLOB,
    ReportInputError,
    find_result_files,
    load_result_file,
)
from pytest_genie.report.markdown import render_markdown
from pytest_genie.report.network import network_baseline
from pytest_genie.report.recommend import recommend
from pytest_genie.report.trend import build_trend, discover_sessions, session_entry
from pytest_genie.results import installed_version, json_safe, write_text_atomic

__all__ = ["JSON_NAME", "MARKDOWN_NAME", "build_report", "save_report", "write_report"]

JSON_NAME = "comprehensive_report.json"
MARKDOWN_NAME = "test_analysis_report.md"


def build_report(result_files: list[Path], history_dirs: list[Path]) -> dict[str, Any]:
    """The comprehensive report of ``result_files`` (one session, possibly from several folders).

    ``history_dirs`` are earlier session folders for the trend; the folders holding
    ``result_files`` are left out of them. Raises ReportInputError naming an unreadable file.
    """
    files = [load_result_file(Path(p)) for p in result_files]
    server_files = [f for f in files if f.side == "server"]
    client_files = [f for f in files if f.side == "client"]
    server_tests = [t for f in server_files for t in f.tests]
    client_tests = [t for f in client_files for t in f.tests]
    server = side_analysis(server_tests, [str(f.path) for f in server_files])
    client = side_analysis(client_tests, [str(f.path) for f in client_files])
    summary = summarize(server_tests + client_tests)
    gpu = gpu_info(files, server_tests, client_tests)
    perf = performance(server_tests, client_tests, gpu)

    own_dirs = {Path(p).resolve().parent for p in result_files}
    label = " + ".join(sorted({d.name for d in own_dirs}))
    current = session_entry(files, label, None)
    earlier = [d for d in history_dirs if Path(d).resolve() not in own_dirs]
    generated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    info = session_info(files)
    return {
        "report_info": {
            "generator": f"genie-report {installed_version() or 'unknown'}",
            "generated_at": generated_at,
            "sources": [str(f.path) for f in files],
        },
        "session_info": {**info, "gpu": gpu},
        "overall_summary": summary,
        "server_side": server,
        "client_side": client,
        "performance": perf,
        "network": network_baseline(client_tests),
        "recommendations": recommend(server, client, gpu, perf, summary),
        "trend": build_trend(current, earlier),
        # The original report's keys, for parsers written against it (compat.py).
        **original_layout(files, perf, info[Key.SERVER_URL], info["started"], generated_at),
    }


def save_report(report: dict[str, Any], output: Path) -> tuple[Path, Path]:
    """Write ``report`` as its JSON and Markdown files into ``output`` (created when missing)."""
    output.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output / JSON_NAME, output / MARKDOWN_NAME
    # Strict JSON: a NaN or infinity computed from the inputs becomes null, never a bare NaN.
    text = json.dumps(json_safe(report), indent=2, ensure_ascii=False, allow_nan=False)
    write_text_atomic(json_path, text + "\n")
    write_text_atomic(md_path, render_markdown(report))
    return json_path, md_path


def write_report(session_dir: Path, history_root: Path | None = None) -> tuple[Path, Path]:
    """Write both report files into ``session_dir`` from the result files there.

    ``history_root`` is searched for earlier ``genie_test_results_*`` folders for the trend
    (the plugin passes its results dir); None means no trend beyond this session.
    """
    session_dir = Path(session_dir)
    files = find_result_files(session_dir)
    if not files:
        raise ReportInputError(
            f"{session_dir} holds no {SERVER_GLOB} or {CLIENT_GLOB}"
        )
    history = discover_sessions(Path(history_root), [session_dir]) if history_root is not None else []
    return save_report(build_report(files, history), session_dir)
