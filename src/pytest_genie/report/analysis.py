"""What the report knows of a session: its tests, counts, hosts and the server's device.

Everything here is pure: it takes parsed result files (``inputs.py``) and returns plain dicts, so
the figures can be checked in unit tests without rendering anything. A figure that no test
recorded stays ``None`` and is shown as "not measured": the report never fills a gap with an
estimate. The performance figures are in ``performance.py``.

Checks and details keys are spelled through ``pytest_genie.checks``; where the report carries a
recorded figure under its recorded name (``n``, ``break_even_n``, the transfer figures...), that
name is the same ``Key``, so the JSON report reads like the result files.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timezone
from typing import Any

from pytest_genie.checks import GPU_DETECTION, KINDS, LLM_DECODE_COLOCATION, SERVER_CONNECTIVITY, Check, Key
from pytest_genie.report.inputs import ResultFile, number, parse_time
from pytest_genie.results import STATUSES

__all__ = ["base_name", "decode_colocation", "detail", "failure_message", "gpu_info", "pick", "round_to",
           "session_info", "side_analysis", "summarize"]


def round_to(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)


def base_name(name: str) -> str:
    """The documented name of a record: parametrized ids (``name[id]``) are dropped."""
    return name.split("[", 1)[0]


def pick(tests: Iterable[dict[str, Any]], check: Check) -> dict[str, Any] | None:
    """The record of ``check`` to take figures from: a passing one if any, the latest of those."""
    matches = [t for t in tests if base_name(t["name"]) == check.name]
    if not matches:
        return None
    passing = [t for t in matches if t["status"] == "PASS"] or matches
    return max(
        passing, key=lambda t: parse_time(t.get("timestamp")) or datetime.min.replace(tzinfo=timezone.utc)
    )


def detail(tests: list[dict[str, Any]], check: Check, key: str) -> float | None:
    """The figure ``key`` that ``check`` recorded, or None when it recorded none."""
    record = pick(tests, check)
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


#: Where the plugin says why a record has its status (an ERROR may be a failed test whose
#: teardown failed too: then the failure says more).
_WHY: dict[str, tuple[str, ...]] = {
    "FAIL": (Key.FAILURE,),
    "ERROR": (Key.ERROR, Key.FAILURE),
    "SKIP": (Key.SKIP_REASON,),
}


def failure_message(test: dict[str, Any]) -> str | None:
    """Why a test did not pass, from the details key the plugin writes for its status."""
    details = test["details"]
    for key in _WHY.get(test["status"], ()):
        if details.get(key):
            return str(details[key])
    if test["status"] != "PASS" and details.get(Key.TEXT):
        return str(details[Key.TEXT])
    return None


def session_info(files: list[ResultFile]) -> dict[str, Any]:
    sides: dict[str, Any] = {}
    for side in KINDS:
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
            Key.PYTHON_VERSION: info.get(Key.PYTHON_VERSION),
            Key.TORCH_VERSION: info.get(Key.TORCH_VERSION),
            Key.GENIE_VERSION: info.get(Key.GENIE_VERSION),
            "platform": info.get("platform"),
            "gpu": info.get("gpu"),
            "files": [str(f.path) for f in infos],
        }
    client_tests = [t for f in files if f.side == "client" for t in f.tests]
    server_url = next(
        (
            f.test_info.get(Key.SERVER_URL)
            for f in files
            if f.side == "client" and f.test_info.get(Key.SERVER_URL)
        ),
        None,
    )
    if server_url is None:
        record = pick(client_tests, SERVER_CONNECTIVITY)
        server_url = record["details"].get(Key.SERVER_URL) if record else None
    if server_url is None:
        server_url = next(
            (f.test_info.get(Key.SERVER_URL) for f in files if f.test_info.get(Key.SERVER_URL)), None
        )
    return {
        "server": sides["server"],
        "client": sides["client"],
        Key.SERVER_URL: server_url,
        "started": _session_start(files),
    }


def _session_start(files: list[ResultFile]) -> str | None:
    stamps = [
        (s, str(f.test_info.get("timestamp")))
        for f in files
        if (s := parse_time(f.test_info.get("timestamp"))) is not None
    ]
    return min(stamps)[1] if stamps else None


#: The server's device as gpu_info reports it, each fact from the first source that states it.
_GPU_FACTS = (Key.CUDA_AVAILABLE, Key.GPU_COUNT, Key.GPU_NAME, Key.GPU_MEMORY_TOTAL_BYTES, Key.DEVICE)


def gpu_info(
    files: list[ResultFile], server_tests: list[dict[str, Any]], client_tests: list[dict[str, Any]]
) -> dict[str, Any]:
    """What is known about the server's device, best source first (its own test, then the client's view)."""
    detection = pick(server_tests, GPU_DETECTION)
    connectivity = pick(client_tests, SERVER_CONNECTIVITY)
    info_gpu = next(
        (
            f.test_info.get("gpu")
            for f in files
            if f.side == "server" and isinstance(f.test_info.get("gpu"), dict)
        ),
        None,
    )
    gpu: dict[str, Any] = {key: None for key in _GPU_FACTS}
    gpu["source"] = None
    sources = [
        (GPU_DETECTION.name, detection["details"] if detection else None),
        ("server test_info", info_gpu),
        (SERVER_CONNECTIVITY.name, connectivity["details"] if connectivity else None),
    ]
    for label, values in sources:
        if not values:
            continue
        for key in _GPU_FACTS:
            if gpu[key] is None and values.get(key) is not None:
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


#: What the report shows of each way of the decode check (the cache kept, the cache shipped).
_DECODE_FIGURES = (Key.REQUESTS_PER_STEP, Key.SERVER_REQUESTS, Key.BYTES_SENT, Key.BYTES_RECEIVED,
                   Key.TOTAL_MS, Key.STEP_MS_MEDIAN)


def decode_colocation(client_tests: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The decode check's figures: each way's totals, and what keeping the KV cache on the server
    saves, recomputed from those totals (bytes both ways; the median step's time).  None when no
    test recorded it."""
    record = pick(client_tests, LLM_DECODE_COLOCATION)
    if record is None:
        return None
    details = record["details"]

    def way(key: str) -> dict[str, float | None]:
        values = details.get(key)
        return {k: number(values.get(k)) if isinstance(values, dict) else None for k in _DECODE_FIGURES}

    kept, shipped = way(Key.KV_KEPT), way(Key.KV_SHIPPED)
    steps = number(details.get(Key.STEPS))
    for figures in (kept, shipped):
        sent, received = figures[Key.BYTES_SENT], figures[Key.BYTES_RECEIVED]
        both = sent + received if sent is not None and received is not None else None
        figures["bytes_per_step"] = round_to(both / steps, 1) if both is not None and steps else None
    kept_bytes, shipped_bytes = kept["bytes_per_step"], shipped["bytes_per_step"]
    model = details.get(Key.MODEL)
    return {
        "status": record["status"],
        Key.STEPS: steps,
        Key.PROMPT_TOKENS: number(details.get(Key.PROMPT_TOKENS)),
        "layers": number(model.get("layers")) if isinstance(model, dict) else None,
        Key.TOKENS_MATCH_EAGER: details.get(Key.TOKENS_MATCH_EAGER),
        Key.KV_CACHE_BYTES: number(details.get(Key.KV_CACHE_BYTES)),
        Key.KV_KEPT: kept,
        Key.KV_SHIPPED: shipped,
        Key.BYTES_RATIO: _ratio(shipped_bytes, kept_bytes),
        Key.BYTES_SAVED_PCT: _ratio(
            100.0 * (shipped_bytes - kept_bytes) if shipped_bytes is not None and kept_bytes is not None
            else None, shipped_bytes, 1),
        Key.TIME_RATIO: _ratio(shipped[Key.STEP_MS_MEDIAN], kept[Key.STEP_MS_MEDIAN]),
    }


def _ratio(num: float | None, den: float | None, digits: int = 2) -> float | None:
    return round_to(num / den, digits) if num is not None and den else None
