"""Reading result files: the plugin's contract as the report accepts it.

Result files follow the plugin contract (``test_info`` + ``tests[]``). ``details`` is normally an
object, but the original guide stored JSON *strings* there, so strings are parsed when they hold a
JSON object and otherwise kept as text (under ``Key.TEXT``). The original scripts wrote no
``test_info`` but a top-level ``server_info`` / ``client_info`` (hostname, timestamp, test_type):
that is read as the test_info, and kept in it under its own name, as the plugin writes it.
Anything a hand edit or another tool may leave (NaN, an unknown status, a timing that is not a
number) is read as "not measured" or ERROR rather than stopping the report; only a file that is
not a result file at all raises :class:`ReportInputError`, naming the file.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_genie.checks import Key
from pytest_genie.results import STATUSES, json_safe, result_file_name

__all__ = ["CLIENT_GLOB", "ORIGINAL_INFO_KEYS", "SERVER_GLOB", "ReportInputError", "ResultFile",
           "find_result_files", "load_result_file", "normalize_details", "number", "parse_time"]

#: Where the original scripts kept what test_info holds (and where the plugin copies it).
ORIGINAL_INFO_KEYS = ("server_info", "client_info")
SERVER_GLOB = result_file_name("server", "*")
CLIENT_GLOB = result_file_name("client", "*")


class ReportInputError(ValueError):
    """A result folder or file cannot be read; the message names the path and the fix."""


@dataclass
class ResultFile:
    """One parsed result file: its path, its ``test_info`` and its normalised tests."""

    path: Path
    test_info: dict[str, Any]
    tests: list[dict[str, Any]] = field(default_factory=list)

    @property
    def side(self) -> str:
        """``server`` or ``client``: the file name decides, test_info.test_type backs it up."""
        if self.path.name.startswith("server_"):
            return "server"
        if self.path.name.startswith("client_"):
            return "client"
        return "server" if self.test_info.get("test_type") == "server_side" else "client"



def find_result_files(folder: Path) -> list[Path]:
    """Result files of one session folder, server first, each kind in name order."""
    return sorted(folder.glob(SERVER_GLOB)) + sorted(folder.glob(CLIENT_GLOB))


def normalize_details(raw: Any) -> dict[str, Any]:
    """Details as a dict: objects as is, JSON-object strings parsed, other text under ``Key.TEXT``.

    NaN and infinities (which Python's json reads) become None, i.e. "not measured".
    """
    if isinstance(raw, dict):
        return dict(json_safe(raw))
    if raw is None:
        return {}
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return {Key.TEXT: raw}
        if isinstance(parsed, dict):
            return dict(json_safe(parsed))
        return {Key.TEXT: raw}
    return {Key.TEXT: json.dumps(json_safe(raw))}


def load_result_file(path: Path) -> ResultFile:
    """Parse one result file; invalid JSON or a wrong shape raises ReportInputError naming it.

    Python's json accepts ``NaN`` and ``Infinity``, which are not JSON: they are read as None
    (not measured), so no figure computed from them and nothing written from them carries them.
    """
    try:
        data = json_safe(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportInputError(f"cannot read {path}: {exc}") from exc
    except ValueError as exc:
        raise ReportInputError(f"invalid JSON in {path}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise ReportInputError(f"{path} is not a Genie result file: expected an object with a 'tests' list")
    raw_info = data.get("test_info")
    info: dict[str, Any] = dict(raw_info) if isinstance(raw_info, dict) else {}
    for key in ORIGINAL_INFO_KEYS:
        side_info = info.get(key, data.get(key))
        if isinstance(side_info, dict):
            info[key] = side_info
            for name in ("hostname", "timestamp", "test_type"):
                if info.get(name) is None and side_info.get(name) is not None:
                    info[name] = side_info[name]
    tests = []
    for index, entry in enumerate(data["tests"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ReportInputError(f"{path}: tests[{index}] has no 'name'")
        status = str(entry.get("status", "")).upper()
        timing = entry.get("timing_ms")
        details = normalize_details(entry.get("details"))
        if Key.LEGACY_MB_PER_S in details and Key.MIB_PER_S not in details:
            details[Key.MIB_PER_S] = details[Key.LEGACY_MB_PER_S]  # renamed, same unit (MiB/s)
        tests.append(
            {
                "name": entry["name"],
                "status": status if status in STATUSES else "ERROR",
                "timing_ms": float(timing) if isinstance(timing, (int, float)) else None,
                "timestamp": entry.get("timestamp"),
                "details": details,
            }
        )
    return ResultFile(path=path, test_info=info, tests=tests)


def number(value: Any) -> float | None:
    """A finite figure as float, else None (bools, text, NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 to an aware datetime; naive stamps (as in the guide) are read as UTC."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
