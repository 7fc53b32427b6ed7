"""Turn Genie result files into the comprehensive analysis (the data behind the report).

Everything here is pure: it reads result files and returns plain dicts, so the figures can be
checked in unit tests without rendering anything. ``report.py`` turns the dict into Markdown and
owns the files and the command line.

Result files follow the plugin contract (``test_info`` + ``tests[]``). ``details`` is normally an
object, but the original guide stored JSON *strings* there, so strings are parsed when they hold a
JSON object and otherwise kept as text. A figure that no test recorded stays ``None`` and is shown
as "not measured": the report never fills a gap with an estimate.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from pytest_genie.results import FOLDER_PREFIX, STATUSES, json_safe

SERVER_GLOB = "server_test_results_*.json"
CLIENT_GLOB = "client_test_results_*.json"
SESSION_PREFIX = FOLDER_PREFIX
NOT_MEASURED = "not measured"

# Network overhead above this multiple of the server's compute time means the wire, not the
# device, decides the speed: batching and keeping data on the server pay more than a faster GPU.
OVERHEAD_DOMINATES_RATIO = 2.0



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


# ----------------------------------------------------------------------------- loading


def find_result_files(folder: Path) -> list[Path]:
    """Result files of one session folder, server first, each kind in name order."""
    return sorted(folder.glob(SERVER_GLOB)) + sorted(folder.glob(CLIENT_GLOB))


def normalize_details(raw: Any) -> dict[str, Any]:
    """Details as a dict: objects as is, JSON-object strings parsed, other text under ``text``.

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
            return {"text": raw}
        if isinstance(parsed, dict):
            return dict(json_safe(parsed))
        return {"text": raw}
    return {"text": json.dumps(json_safe(raw))}


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
    info: dict[str, Any] = raw_info if isinstance(raw_info, dict) else {}
    tests = []
    for index, entry in enumerate(data["tests"]):
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ReportInputError(f"{path}: tests[{index}] has no 'name'")
        status = str(entry.get("status", "")).upper()
        timing = entry.get("timing_ms")
        tests.append(
            {
                "name": entry["name"],
                "status": status if status in STATUSES else "ERROR",
                "timing_ms": float(timing) if isinstance(timing, (int, float)) else None,
                "timestamp": entry.get("timestamp"),
                "details": normalize_details(entry.get("details")),
            }
        )
    return ResultFile(path=path, test_info=info, tests=tests)


# ----------------------------------------------------------------------------- small helpers


def number(value: Any) -> float | None:
    """A finite figure as float, else None (bools, text, NaN and infinities are not figures)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def round_to(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def parse_time(value: Any) -> datetime | None:
    """ISO 8601 to an aware datetime; naive stamps (as in the guide) are read as UTC."""
    if not isinstance(value, str):
        return None
    try:
        stamp = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)


def base_name(name: str) -> str:
    """The documented name of a record: parametrized ids (``name[id]``) are dropped."""
    return name.split("[", 1)[0]


def pick(tests: Iterable[dict[str, Any]], name: str) -> dict[str, Any] | None:
    """The record to take figures from: a passing one if any, the latest of those."""
    matches = [t for t in tests if base_name(t["name"]) == name]
    if not matches:
        return None
    passing = [t for t in matches if t["status"] == "PASS"] or matches
    return max(
        passing, key=lambda t: parse_time(t.get("timestamp")) or datetime.min.replace(tzinfo=timezone.utc)
    )


def detail(tests: list[dict[str, Any]], name: str, key: str) -> float | None:
    record = pick(tests, name)
    return None if record is None else number(record["details"].get(key))


def summarize(tests: list[dict[str, Any]]) -> dict[str, Any]:
    """Counts and success rate; skipped tests count neither for nor against the rate."""
    counts = {status: sum(1 for t in tests if t["status"] == status) for status in STATUSES}
    decided = counts["PASS"] + counts["FAIL"] + counts["ERROR"]
    return {
        "total": len(tests),
        "passed": counts["PASS"],
        "failed": counts["FAIL"],
        "skipped": counts["SKIP"],
        "errors": counts["ERROR"],
        "success_rate": round_to(100.0 * counts["PASS"] / decided, 2) if decided else None,
    }


def failure_message(test: dict[str, Any]) -> str | None:
    """Why a test did not pass, from the details key the plugin writes for its status."""
    details = test["details"]
    for key in {"FAIL": ("failure",), "ERROR": ("error", "failure"), "SKIP": ("skip_reason",)}.get(
        test["status"], ()
    ):
        if details.get(key):
            return str(details[key])
    if test["status"] != "PASS" and details.get("text"):
        return str(details["text"])
    return None


# ----------------------------------------------------------------------------- sections


def session_info(files: list[ResultFile]) -> dict[str, Any]:
    sides: dict[str, Any] = {}
    for side in ("server", "client"):
        infos = [f for f in files if f.side == side]
        if not infos:
            sides[side] = None
            continue
        info = infos[0].test_info
        sides[side] = {
            "hostname": info.get("hostname"),
            "timestamp": min(
                (str(f.test_info.get("timestamp")) for f in infos if f.test_info.get("timestamp")),
                default=None,
            ),
            "python_version": info.get("python_version"),
            "torch_version": info.get("torch_version"),
            "genie_version": info.get("genie_version"),
            "platform": info.get("platform"),
            "gpu": info.get("gpu"),
            "files": [str(f.path) for f in infos],
        }
    client_tests = [t for f in files if f.side == "client" for t in f.tests]
    server_url = next(
        (
            f.test_info.get("server_url")
            for f in files
            if f.side == "client" and f.test_info.get("server_url")
        ),
        None,
    )
    if server_url is None:
        record = pick(client_tests, "server_connectivity")
        server_url = record["details"].get("server_url") if record else None
    if server_url is None:
        server_url = next(
            (f.test_info.get("server_url") for f in files if f.test_info.get("server_url")), None
        )
    return {
        "server": sides["server"],
        "client": sides["client"],
        "server_url": server_url,
        "started": _session_start(files),
    }


def _session_start(files: list[ResultFile]) -> str | None:
    stamps = [
        (s, str(f.test_info.get("timestamp")))
        for f in files
        if (s := parse_time(f.test_info.get("timestamp"))) is not None
    ]
    return min(stamps)[1] if stamps else None


def gpu_info(
    files: list[ResultFile], server_tests: list[dict[str, Any]], client_tests: list[dict[str, Any]]
) -> dict[str, Any]:
    """What is known about the server's device, best source first (its own test, then the client's view)."""
    detection = pick(server_tests, "gpu_detection")
    connectivity = pick(client_tests, "server_connectivity")
    info_gpu = next(
        (
            f.test_info.get("gpu")
            for f in files
            if f.side == "server" and isinstance(f.test_info.get("gpu"), dict)
        ),
        None,
    )
    gpu: dict[str, Any] = {
        "cuda_available": None,
        "gpu_count": None,
        "gpu_name": None,
        "gpu_memory_total_bytes": None,
        "device": None,
        "source": None,
    }
    sources = [
        ("gpu_detection", detection["details"] if detection else None),
        ("server test_info", info_gpu),
        ("server_connectivity", connectivity["details"] if connectivity else None),
    ]
    for label, values in sources:
        if not values:
            continue
        for key in gpu:
            if gpu[key] is None and values.get(key) is not None and key != "source":
                gpu[key] = values[key]
                gpu["source"] = gpu["source"] or label
    gpu["detection_status"] = detection["status"] if detection else None
    gpu["detection_skip_reason"] = (
        failure_message(detection) if detection and detection["status"] == "SKIP" else None
    )
    return gpu


def side_analysis(tests: list[dict[str, Any]], files: list[str]) -> dict[str, Any] | None:
    if not files:
        return None
    timings = [t["timing_ms"] for t in tests if t["timing_ms"] is not None]
    return {
        "files": files,
        "summary": summarize(tests),
        "total_time_ms": round_to(sum(timings)) if timings else None,
        "tests": [{**t, "message": failure_message(t)} for t in tests],
    }


def break_even_from_sweep(sweep: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Smallest swept size where the remote round trip beats local CPU, from the raw sweep points."""
    points = sorted(
        (
            p
            for p in sweep
            if isinstance(p, dict)
            and number(p.get("n")) is not None
            and number(p.get("remote_ms")) is not None
            and number(p.get("local_cpu_ms")) is not None
        ),
        key=lambda p: float(p["n"]),
    )
    if not points:
        return None
    winner = next((p for p in points if float(p["remote_ms"]) < float(p["local_cpu_ms"])), None)
    largest = points[-1]
    return {
        "break_even_n": int(winner["n"]) if winner else None,
        "break_even_bytes": int(winner["bytes"])
        if winner and number(winner.get("bytes")) is not None
        else None,
        "largest_swept_n": int(largest["n"]),
        "largest_swept_bytes": int(largest["bytes"]) if number(largest.get("bytes")) is not None else None,
        "points": len(points),
    }


def performance(
    server_tests: list[dict[str, Any]], client_tests: list[dict[str, Any]], gpu: dict[str, Any]
) -> dict[str, Any]:
    """The guide's performance figures, recomputed from the raw measurements where they exist."""
    gpu_time = detail(server_tests, "gpu_detection", "gpu_time_ms")
    compute = detail(client_tests, "performance_comparison", "server_compute_ms")
    remote = detail(client_tests, "performance_comparison", "remote_ms")
    local = detail(client_tests, "performance_comparison", "local_cpu_ms")
    # The overhead pairs the remote time with the compute time of the same requests when the
    # client measured it (Server-Timing); the server's own matmul benchmark is the fallback.
    server_time, basis = (
        (compute, "performance_comparison.server_compute_ms")
        if compute is not None
        else ((gpu_time, "gpu_detection.gpu_time_ms") if gpu_time is not None else (None, None))
    )
    overhead = remote - server_time if remote is not None and server_time is not None else None
    if overhead is None:
        overhead = detail(client_tests, "performance_comparison", "network_overhead_ms")
        basis = "performance_comparison.network_overhead_ms (as recorded)" if overhead is not None else None
    total = remote - local if remote is not None and local is not None else None

    comparison = pick(client_tests, "performance_comparison")
    details = comparison["details"] if comparison else {}
    raw_sweep = details.get("sweep")
    sweep: list[dict[str, Any]] = raw_sweep if isinstance(raw_sweep, list) else []
    from_sweep = break_even_from_sweep(sweep)
    if from_sweep is not None:
        break_even = {**from_sweep, "source": "sweep"}
    else:
        recorded_n, recorded_bytes = (
            number(details.get("break_even_n")),
            number(details.get("break_even_bytes")),
        )
        break_even = {
            "break_even_n": int(recorded_n) if recorded_n is not None else None,
            "break_even_bytes": int(recorded_bytes) if recorded_bytes is not None else None,
            "largest_swept_n": None,
            "largest_swept_bytes": None,
            "points": 0,
            "source": "recorded"
            if comparison and ("break_even_n" in details or "break_even_bytes" in details)
            else None,
        }
    break_even["sweep"] = sweep

    def transfer(name: str) -> dict[str, Any]:
        record = pick(client_tests, name)
        values = record["details"] if record else {}
        return {
            "status": record["status"] if record else None,
            "mb_per_s": number(values.get("mb_per_s")),
            "bytes": number(values.get("bytes")),
            "size_mb": number(values.get("size_mb")),
            "round_trip_ms": number(values.get("round_trip_ms")),
            "bit_exact": values.get("bit_exact"),
        }

    return {
        "n": number(details.get("n")),
        "op": details.get("op"),
        "server_device": gpu.get("device"),
        "server_gpu_time_ms": round_to(gpu_time),
        "server_compute_ms": round_to(compute),
        "server_time_ms": round_to(server_time),
        "server_time_basis": basis,
        "client_remote_ms": round_to(remote),
        "network_overhead_ms": round_to(overhead),
        "network_overhead_pct_of_server": round_to(100.0 * overhead / server_time, 2)
        if overhead is not None and server_time
        else None,
        "network_overhead_ratio": round_to(overhead / server_time, 3)
        if overhead is not None and server_time
        else None,
        "client_cpu_baseline_ms": round_to(local),
        "total_overhead_ms": round_to(total),
        "total_overhead_pct_vs_local": round_to(100.0 * total / local, 2)
        if total is not None and local
        else None,
        "break_even": break_even,
        "transfer": {
            "http_tensor_transfer": transfer("http_tensor_transfer"),
            "large_tensor_handling": transfer("large_tensor_handling"),
        },
        "connect_ms_median": detail(client_tests, "network_connectivity", "connect_ms_median"),
        "health_response_ms": detail(client_tests, "server_connectivity", "response_ms"),
        "server_startup_ms": detail(server_tests, "server_startup", "startup_ms"),
        "server_op_median_round_trip_ms": detail(server_tests, "server_operations", "median_round_trip_ms"),
        "chain_round_trip_ms": detail(client_tests, "multi_operation_chain", "round_trip_ms"),
        "chain_requests": detail(client_tests, "multi_operation_chain", "requests_made"),
    }


# ------------------------------------------------------------------ formatting shared with report.py


def format_ms(value: Any) -> str:
    """Milliseconds as the guide writes them (``19.2ms``); small figures keep 3 significant digits."""
    value = number(value)
    if value is None:
        return NOT_MEASURED
    return f"{value:.3g}ms" if abs(value) < 1 else f"{value:.1f}ms"


def format_bytes(value: Any) -> str:
    value = number(value)
    if value is None:
        return NOT_MEASURED
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def format_pct(value: Any) -> str:
    value = number(value)
    return NOT_MEASURED if value is None else f"{value:.0f}%"


# ----------------------------------------------------------------------------- recommendations


def recommend(
    server: dict[str, Any] | None,
    client: dict[str, Any] | None,
    gpu: dict[str, Any],
    perf: dict[str, Any],
    summary: dict[str, Any],
) -> list[dict[str, str]]:
    """Advice that follows from the measured numbers; each item says which figures it rests on."""
    out: list[dict[str, str]] = []

    def add(topic: str, text: str) -> None:
        out.append({"topic": topic, "text": text})

    for side in (server, client):
        for test in side["tests"] if side else []:
            if test["status"] in ("FAIL", "ERROR"):
                add(
                    "failure",
                    f"Fix `{test['name']}` ({test['status']}): {test['message'] or 'no message recorded'}",
                )
    if server is None:
        add(
            "coverage",
            "No server-side results: run `pytest -m server` on the server node and pass its "
            "result folder to `genie-report` as well.",
        )
    if client is None:
        add(
            "coverage",
            "No client-side results: run `pytest -m client --genie-server=HOST` on a client node "
            "and pass its result folder to `genie-report` as well.",
        )
    if gpu.get("detection_status") == "SKIP" or gpu.get("cuda_available") is False:
        reason = f" ({gpu['detection_skip_reason']})" if gpu.get("detection_skip_reason") else ""
        add(
            "gpu",
            f"The server has no GPU{reason}: run genie-server on a CUDA node (and `pytest -m server "
            "--genie-require-gpu` there) before judging remote GPU performance.",
        )

    be = perf["break_even"]
    remote, local = perf["client_remote_ms"], perf["client_cpu_baseline_ms"]
    if be.get("break_even_n") is not None:
        size = (
            format_bytes(be.get("break_even_bytes"))
            if be.get("break_even_bytes") is not None
            else "that size"
        )
        add(
            "offload",
            f"Remote execution beats local CPU from n={be['break_even_n']} ({size}) upward: offload "
            f"work on tensors of at least {size}; keep smaller ones local.",
        )
    elif be.get("points"):
        size = format_bytes(be.get("largest_swept_bytes"))
        add(
            "offload",
            f"Remote execution was slower than local CPU at every swept size (up to "
            f"n={be['largest_swept_n']}, {size}): keep tensors below {size} local; offload only "
            "larger or batched work.",
        )
    elif remote is not None and local is not None:
        size = f"n={int(perf['n'])}" if perf.get("n") else "the measured size"
        if remote > local:
            add(
                "offload",
                f"At {size} the remote round trip ({format_ms(remote)}) is slower than local CPU "
                f"({format_ms(local)}): keep work of this size local unless it is batched.",
            )
        else:
            add(
                "offload",
                f"At {size} the remote round trip ({format_ms(remote)}) beats local CPU "
                f"({format_ms(local)}): offloading work of this size pays.",
            )
    elif client is not None:
        add(
            "coverage",
            "Remote vs local performance was not measured: `performance_comparison` recorded no "
            "remote_ms/local_cpu_ms, so no break-even size can be given.",
        )

    ratio = perf["network_overhead_ratio"]
    if ratio is not None and ratio > OVERHEAD_DOMINATES_RATIO:
        add(
            "network",
            f"Network and serialisation cost {ratio:.3g}x the server compute "
            f"({format_ms(perf['network_overhead_ms'])} vs {format_ms(perf['server_time_ms'])}): "
            "batch ops into one /graph request and keep intermediate tensors on the server as "
            "handles instead of fetching each result.",
        )
    elif ratio is not None:
        add(
            "network",
            f"Network overhead is {ratio:.3g}x the server compute: the device, not the wire, "
            "dominates; larger batches per request use the server better.",
        )
    chain = perf.get("chain_requests")
    if chain is not None and chain > 1:
        add(
            "network",
            f"The multi-operation chain took {int(chain)} requests; it should be one /graph request.",
        )
    large = perf["transfer"]["large_tensor_handling"]
    if large["mb_per_s"]:
        per_100mb = 100 * 1000 / large["mb_per_s"]
        add(
            "transfer",
            f"Large tensors move at {large['mb_per_s']:.1f} MB/s, about {per_100mb:.0f}ms per 100 MB: "
            "send big inputs once and reuse them as server-side handles.",
        )
    if not out and summary["total"] and summary["passed"] == summary["total"]:
        add("status", f"All {summary['total']} tests passed; no action needed.")
    return out
