"""The trend across sessions: pass rate per result folder, and each comparable figure's history.

Like is compared with like only: a figure's change is against its previous value for the same
check, place and context (server device, host pair: ``metrics.py``), and the pass rate's against
the previous session of the same sides and hosts, so a server-only run never reads as a drop
from a full one.  A change inside both runs' measured noise (overlapping interquartile ranges)
is labelled "within noise", not shown as a change.

Earlier sessions are read from their raw result files (not from a report they may lack), so a
folder copied in from another node counts as soon as it holds results. A folder that cannot be
read is listed with its reason rather than stopping the report: history is context, not input.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from itertools import pairwise
from pathlib import Path
from typing import Any

from pytest_genie.checks import KINDS
from pytest_genie.report.analysis import round_to, summarize
from pytest_genie.report.figures import Figure
from pytest_genie.report.inputs import (
    ReportInputError,
    ResultFile,
    find_result_files,
    load_result_file,
    parse_time,
)
from pytest_genie.report.metrics import METRICS, Context, Metric, Point, context_of, points_of
from pytest_genie.results import FOLDER_PREFIX

__all__ = ["build_trend", "discover_sessions", "history_entry", "metric_label", "session_entry"]

#: A session folder's name as ``ResultsSession`` makes it: the start stamp, then ``_2``... on a clash.
_FOLDER_STAMP = re.compile(rf"^{re.escape(FOLDER_PREFIX)}(\d{{8}}_\d{{6}})(?:_(\d+))?$")

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
    """Pass rate, sides, hosts and comparable figures of one session's files."""
    by_kind = {kind: [t for f in files if f.side == kind for t in f.tests] for kind in KINDS}
    stamps = [s for f in files if (s := parse_time(f.test_info.get("timestamp"))) is not None]
    started = min(stamps) if stamps else fallback_time
    summary = summarize(by_kind["server"] + by_kind["client"])
    sides = [kind for kind in KINDS if any(f.side == kind for f in files)]
    points = points_of(files)
    hosts = " + ".join(context_of(files, side, None).hosts for side in sides)
    return {
        "session": label,
        "started": started.isoformat() if started else None,
        "summary": summary,
        "pass_rate": summary["success_rate"],
        "sides": sides,
        "hosts": hosts,
        "points": [{"metric": p.metric, "where": p.where, "device": p.context.device,
                    "hosts": p.context.hosts, "figure": p.figure.to_dict()} for p in points],
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


def _point(data: dict[str, Any]) -> Point | None:
    fig = Figure.from_dict(data.get("figure"))
    if fig is None or data.get("metric") not in METRICS:
        return None
    return Point(str(data["metric"]), str(data.get("where") or ""), fig,
                 Context(data.get("device"), str(data.get("hosts"))))


def _step(metric: Metric, previous: Figure, current: Figure) -> dict[str, Any]:
    """The change from ``previous`` to ``current``, and whether it is more than their noise."""
    delta = current.value - previous.value
    pct = 100.0 * delta / previous.value if previous.value else None
    if previous.spread is None or current.spread is None:
        label = "no spread recorded"
    elif previous.below(current) or current.below(previous):
        lower_better = metric.better == "lower"
        label = "worse" if (delta > 0) == lower_better else "better"
    else:
        label = "within noise"
    return {"delta": round_to(delta), "pct": round_to(pct, 2), "label": label}


def metric_label(metric: Metric, device: str | None) -> str:
    """What a figure is; the server's matmul benchmark on a CPU server is CPU time, not GPU time."""
    if metric.name == "gpu_time_ms" and device is not None and not str(device).startswith("cuda"):
        return f"{metric.label} (CPU time: the server has no GPU)"
    return metric.label


def _series(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each comparable figure across sessions, oldest first, with its change per step."""
    by_ident: dict[tuple[str, str, Context], list[dict[str, Any]]] = {}
    for entry in sessions:
        for data in entry.get("points", []):
            point = _point(data)
            if point is not None:
                by_ident.setdefault(point.ident, []).append(
                    {"session": entry["session"], "started": entry["started"], "current": entry["current"],
                     "figure": point.figure})
    out = []
    for (name, where, context), steps in by_ident.items():
        metric = METRICS[name]
        for before, after in pairwise(steps):
            after["change"] = _step(metric, before["figure"], after["figure"])
        out.append({"metric": name, "label": metric_label(metric, context.device), "unit": metric.unit,
                    "where": where, "context": context.label, "device": context.device,
                    "points": [{**s, "figure": s["figure"].to_dict(), "change": s.get("change")}
                               for s in steps]})
    return out


def build_trend(current: dict[str, Any], history_dirs: list[Path]) -> dict[str, Any]:
    """Sessions in time order (the current one flagged), and each comparable figure's series.

    A session's pass-rate change is against the previous session of the same sides and hosts;
    a figure's change is against its previous value in the same context (see ``metrics.py``).
    """
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
    last_like: dict[tuple[str, ...], dict[str, Any]] = {}
    for entry in sessions:
        like = (*entry["sides"], entry["hosts"])
        previous = last_like.get(like)
        entry["change"] = None if previous is None else {
            "compared_with": previous["session"],
            "pass_rate_pts": round_to(entry["pass_rate"] - previous["pass_rate"], 2)
            if entry["pass_rate"] is not None and previous["pass_rate"] is not None else None,
        }
        last_like[like] = entry
    return {"sessions": sessions, "earlier_sessions": len(sessions) - 1, "series": _series(sessions),
            "unreadable": unreadable}
