"""The trend across sessions: pass rate and key timings per result folder, with the change per step.

Earlier sessions are read from their raw result files (not from a report they may lack), so a
folder copied in from another node counts as soon as it holds results. A folder that cannot be
read is listed with its reason rather than stopping the report: history is context, not input.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_genie.checks import (
    GPU_DETECTION,
    HTTP_TENSOR_TRANSFER,
    KINDS,
    LARGE_TENSOR_HANDLING,
    PERFORMANCE_COMPARISON,
    Check,
    Key,
)
from pytest_genie.report.analysis import detail, round_to, summarize
from pytest_genie.report.inputs import (
    ReportInputError,
    ResultFile,
    find_result_files,
    load_result_file,
    parse_time,
)
from pytest_genie.results import FOLDER_PREFIX

__all__ = ["TREND_METRICS", "build_trend", "discover_sessions", "history_entry", "session_entry"]

#: A session folder's name as ``ResultsSession`` makes it: the start stamp, then ``_2``... on a clash.
_FOLDER_STAMP = re.compile(rf"^{re.escape(FOLDER_PREFIX)}(\d{{8}}_\d{{6}})(?:_(\d+))?$")

#: The figures followed across runs, as (metric, the check that records it, its details key).
TREND_METRICS: tuple[tuple[str, Check, str], ...] = (
    (Key.REMOTE_MS, PERFORMANCE_COMPARISON, Key.REMOTE_MS),
    (Key.SERVER_COMPUTE_MS, PERFORMANCE_COMPARISON, Key.SERVER_COMPUTE_MS),
    (Key.GPU_TIME_MS, GPU_DETECTION, Key.GPU_TIME_MS),
    ("http_mib_per_s", HTTP_TENSOR_TRANSFER, Key.MIB_PER_S),
    ("large_mib_per_s", LARGE_TENSOR_HANDLING, Key.MIB_PER_S),
)


def discover_sessions(root: Path, exclude: list[Path]) -> list[Path]:
    """Session folders under ``root`` (``genie_test_results_*``), leaving out the ones being reported."""
    if not root.is_dir():
        return []
    skip = {p.resolve() for p in exclude}
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir() and p.name.startswith(FOLDER_PREFIX) and p.resolve() not in skip
    )


def _folder_time(folder: Path) -> datetime:
    """Fallback start time of a session without readable timestamps: its folder name, else its mtime."""
    match = _FOLDER_STAMP.match(folder.name)
    if match:
        return datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").replace(tzinfo=timezone.utc)
    return datetime.fromtimestamp(folder.stat().st_mtime, tz=timezone.utc)


def session_entry(files: list[ResultFile], label: str, fallback_time: datetime | None) -> dict[str, Any]:
    """Pass rate and key timings of one session's files."""
    by_kind = {kind: [t for f in files if f.side == kind for t in f.tests] for kind in KINDS}
    stamps = [s for f in files if (s := parse_time(f.test_info.get("timestamp"))) is not None]
    started = min(stamps) if stamps else fallback_time
    summary = summarize(by_kind["server"] + by_kind["client"])
    metrics = {metric: detail(by_kind[check.kind], check, key) for metric, check, key in TREND_METRICS}
    return {
        "session": label,
        "started": started.isoformat() if started else None,
        "summary": summary,
        "pass_rate": summary["success_rate"],
        "metrics": metrics,
        "current": False,
    }


def history_entry(folder: Path) -> dict[str, Any] | None:
    """One earlier session, or a dict with ``error`` when its files cannot be read; None if empty."""
    paths = find_result_files(folder)
    if not paths:
        return None
    try:
        files = [load_result_file(p) for p in paths]
    except ReportInputError as exc:
        return {"session": folder.name, "folder": str(folder), "error": str(exc)}
    entry = session_entry(files, folder.name, _folder_time(folder))
    entry["folder"] = str(folder)
    return entry


def _change(previous: float | None, current: float | None) -> dict[str, float | None] | None:
    if previous is None or current is None:
        return None
    delta = current - previous
    return {"delta": round_to(delta), "pct": round_to(100.0 * delta / previous, 2) if previous else None}


def build_trend(current: dict[str, Any], history_dirs: list[Path]) -> dict[str, Any]:
    """Sessions in time order (the current one flagged), each with its change vs the one before."""
    sessions, unreadable = [], []
    for folder in history_dirs:
        entry = history_entry(folder)
        if entry is None:
            continue
        if "error" in entry:
            unreadable.append({"session": entry["session"], "reason": entry["error"]})
        else:
            sessions.append(entry)
    sessions.append({**current, "current": True})
    sessions.sort(
        key=lambda e: (parse_time(e["started"]) or datetime.min.replace(tzinfo=timezone.utc), e["session"])
    )
    previous: dict[str, Any] | None = None
    for entry in sessions:
        if previous is None:
            entry["change"] = None
        else:
            entry["change"] = {
                "pass_rate_pts": round_to(entry["pass_rate"] - previous["pass_rate"], 2)
                if entry["pass_rate"] is not None and previous["pass_rate"] is not None
                else None,
                **{
                    metric: _change(previous["metrics"][metric], entry["metrics"][metric])
                    for metric, _, _ in TREND_METRICS
                },
            }
        previous = entry
    return {"sessions": sessions, "earlier_sessions": len(sessions) - 1, "unreadable": unreadable}
