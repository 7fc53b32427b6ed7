"""The ``genie-report`` command: one report from result folders copied together from several nodes.

A typical multi-node run leaves server results on the GPU node and client results on a client
node; copy both ``genie_test_results_*`` folders to one machine and pass them here. Errors in the
inputs exit with status 2 and one line naming the file and the fix, never a traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_genie.report.build import build_report, save_report
from pytest_genie.report.inputs import CLIENT_GLOB, SERVER_GLOB, ReportInputError, find_result_files
from pytest_genie.report.trend import discover_sessions

__all__ = ["main"]


def _collect(dirs: Sequence[Path]) -> list[Path]:
    files: list[Path] = []
    seen: set[Path] = set()
    for folder in dirs:
        if not folder.is_dir():
            raise ReportInputError(f"{folder} is not a directory")
        found = find_result_files(folder)
        if not found:
            raise ReportInputError(
                f"{folder} holds no {SERVER_GLOB} or {CLIENT_GLOB}; "
                "pass the genie_test_results_* folder a test run wrote"
            )
        for f in found:
            if f.resolve() not in seen:
                seen.add(f.resolve())
                files.append(f)
    return files


def main(argv: list[str] | None = None) -> int:
    """``genie-report DIR [DIR ...]``: one report from result folders copied together from several nodes."""
    parser = argparse.ArgumentParser(
        prog="genie-report",
        description="Build comprehensive_report.json and test_analysis_report.md from Genie result folders "
        "(e.g. server results from the GPU node and client results from a client node).",
    )
    parser.add_argument(
        "dirs",
        nargs="+",
        type=Path,
        metavar="DIR",
        help="a genie_test_results_* folder holding server_/client_test_results_*.json",
    )
    parser.add_argument("--output", type=Path, help="where to write the report (default: the first DIR)")
    parser.add_argument(
        "--history",
        type=Path,
        metavar="ROOT",
        help="folder holding earlier genie_test_results_* sessions for the trend "
        "(default: the parent of the first DIR)",
    )
    args = parser.parse_args(argv)
    output: Path = args.output or args.dirs[0]
    history_root: Path = args.history or args.dirs[0].resolve().parent
    try:
        files = _collect(args.dirs)
        report = build_report(files, discover_sessions(history_root, [*args.dirs, output]))
        paths = save_report(report, output)
    except ReportInputError as exc:
        print(f"genie-report: error: {exc}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0
