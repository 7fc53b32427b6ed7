"""The comprehensive report as a document: built from result files, written as its files.

Two ways in, one result: ``pytest --genie-report`` calls :func:`write_report` on the session
folder it just wrote, and ``genie-report`` (``cli.py``) combines result folders copied together
from several nodes. Both go through :func:`build_report`, which is pure, and :func:`save_report`,
which writes ``comprehensive_report.json``, ``test_analysis_report.md``,
``test_analysis_report.html`` and the charts (``chart_*.svg``, when matplotlib is installed)
atomically, like the result files themselves.

Figures carry the server they were measured against and where (``where.py``: the server node's
loopback, or across the network from a client host).  The files are grouped by server
(``servers.py``); when there are several (a fleet, or folders of several servers copied together),
``servers`` holds one entry per server (its own sections in the Markdown and HTML, a row in the
fleet and per-server tables), and the top-level performance sections describe the first (by URL).
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_genie.checks import Key
from pytest_genie.report.analysis import gpu_info, session_info, side_analysis, summarize
from pytest_genie.report.charts import MISSING_HINT, chart_file, render_charts
from pytest_genie.report.compat import original_layout
from pytest_genie.report.figures import rows_with
from pytest_genie.report.html import HTML_NAME, render_html
from pytest_genie.report.inputs import (
    CLIENT_GLOB,
    SERVER_GLOB,
    ReportInputError,
    find_result_files,
    load_result_file,
)
from pytest_genie.report.markdown import render_markdown
from pytest_genie.report.recommend import recommend
from pytest_genie.report.servers import entry, sections
from pytest_genie.report.trend import build_trend, discover_sessions, session_entry
from pytest_genie.results import installed_version, json_safe, write_text_atomic

__all__ = ["HTML_NAME", "JSON_NAME", "MARKDOWN_NAME", "build_report", "save_report", "write_report"]

JSON_NAME = "comprehensive_report.json"
MARKDOWN_NAME = "test_analysis_report.md"


def _server_row(perf: dict[str, Any], claims: list[dict[str, str]]) -> dict[str, Any]:
    """One server's headline figures, for the per-server table."""
    conc = perf.get("concurrency") or {}
    rates = [f for rows in conc.get("curves", {}).values() for _, f in rows_with(rows, Key.THROUGHPUT_RPS)]
    peak = max(rates, key=lambda f: f.value, default=None)
    be = perf["break_even"]
    verdict = (f"n={be[Key.BREAK_EVEN_N]}" if be.get(Key.BREAK_EVEN_N) is not None
               else (f"none up to n={be['largest_swept_n']}" if be.get("points") else "not measured"))
    return {"server": perf["server"], "device": perf["server_device"], "remote": perf["headline"]["remote"],
            "break_even": verdict,
            "http_mib_per_s": perf["transfer"]["http_tensor_transfer"][Key.MIB_PER_S],
            "large_mib_per_s": perf["transfer"]["large_tensor_handling"][Key.MIB_PER_S],
            "peak_rps": peak.to_dict() if peak else None, "claims": claims}


def build_report(result_files: list[Path], history_dirs: list[Path],
                 comparison: dict[str, Any] | None = None) -> dict[str, Any]:
    """The comprehensive report of ``result_files`` (one session, possibly from several folders).

    ``history_dirs`` are earlier session folders for the trend; the folders holding
    ``result_files`` are left out of them. ``comparison`` is the regression gate's result
    (``compare.py``), shown as its own section. Raises ReportInputError naming an unreadable file.
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
    info = {**session_info(files), "gpu": gpu}

    found, _host_level = sections(files)
    entries = [entry(section) for section in found]
    perf, claims = entries[0]["performance"], entries[0]["claims"]

    own_dirs = {Path(p).resolve().parent for p in result_files}
    label = " + ".join(sorted({d.name for d in own_dirs}))
    current = session_entry(files, label, None)
    earlier = [d for d in history_dirs if Path(d).resolve() not in own_dirs]
    generated_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
    report: dict[str, Any] = {
        "report_info": {
            "generator": f"genie-report {installed_version() or 'unknown'}",
            "generated_at": generated_at,
            "sources": [str(f.path) for f in files],
        },
        "session_info": info,
        "overall_summary": summary,
        "server_side": server,
        "client_side": client,
        "performance": perf,
        "claims": claims,
        "servers": [{**e, **_server_row(e["performance"], e["claims"])} for e in entries]
        if len(entries) > 1 else [],
        "comparison": comparison,
        "network": entries[0]["network"],
        "recommendations": recommend(server, client, gpu, perf, summary),
        "trend": build_trend(current, earlier),
        "charts": {"files": {}, "missing": None},
        # The original report's keys, for parsers written against it (compat.py).
        **original_layout(files, perf, info[Key.SERVER_URL], info["started"], generated_at),
    }
    return report


def save_report(report: dict[str, Any], output: Path) -> tuple[Path, ...]:
    """Write ``report`` as its JSON, Markdown and HTML files and its charts into ``output``.

    Returns the paths written, the JSON first.
    """
    output.mkdir(parents=True, exist_ok=True)
    svgs = render_charts(report)
    written: list[Path] = []
    report["charts"] = {"files": {name: chart_file(name) for name in svgs or {}},
                        "missing": MISSING_HINT if svgs is None else None}
    json_path, md_path, html_path = output / JSON_NAME, output / MARKDOWN_NAME, output / HTML_NAME
    # Strict JSON: a NaN or infinity computed from the inputs becomes null, never a bare NaN.
    text = json.dumps(json_safe(report), indent=2, ensure_ascii=False, allow_nan=False)
    write_text_atomic(json_path, text + "\n")
    write_text_atomic(md_path, render_markdown(report))
    write_text_atomic(html_path, render_html(report, svgs))
    written += [json_path, md_path, html_path]
    for name, svg in (svgs or {}).items():
        path = output / chart_file(name)
        write_text_atomic(path, svg)
        written.append(path)
    return tuple(written)


def write_report(session_dir: Path, history_root: Path | None = None,
                 comparison: dict[str, Any] | None = None) -> tuple[Path, ...]:
    """Write the report files into ``session_dir`` from the result files there.

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
    return save_report(build_report(files, history, comparison), session_dir)
