"""The guide's figures, recomputed from the result files (the data behind the report).

Everything here is pure: it takes parsed result files (``inputs.py``) and returns plain dicts, so
the figures can be checked in unit tests without rendering anything. A figure that no test
recorded stays ``None`` and is shown as "not measured": the report never fills a gap with an
estimate. Where a test recorded both the raw measurements and a figure derived from them (the
break-even size, the network overhead), the figure is recomputed from the measurements.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from pytest_genie.report.inputs import ResultFile, number, parse_time
from pytest_genie.results import STATUSES

__all__ = ["base_name", "break_even_from_sweep", "detail", "failure_message", "gpu_info", "performance",
           "pick", "round_to", "session_info", "side_analysis", "summarize"]


def round_to(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


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
