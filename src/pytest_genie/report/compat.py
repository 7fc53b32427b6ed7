"""The original ``comprehensive_report.json`` layout, beside the report's own keys.

The guide's ``week1_comprehensive_tests.sh`` wrote a report that users' parsers read::

    {"test_session": {"timestamp", "server_ip", "client_hostname", "report_generated"},
     "summary": {"server_tests": {"passed", "failed", "total"}, "client_tests": {...},
                 "overall": {...}},
     "server_results": <the server's result file>, "client_results": <the client's>,
     "analysis": {"performance": {"server_gpu_time_ms", "client_remote_time_ms",
                                  "client_cpu_time_ms", "network_overhead_ms",
                                  "total_overhead_ms"}}}

:func:`original_layout` fills those keys from what the report already read, with the same
meanings, so such a parser reads the right counts from a Genie report.  The counts say
more than the original's (which knew PASS and FAIL only) without misleading its readers:

* ``failed`` counts every test that did not pass and was not skipped, FAIL and ERROR
  alike: a parser that calls a run good when ``failed == 0`` must not call a run with
  errors good.  ``errors`` says how many of them were ERROR.
* ``skipped`` counts SKIP; a skipped test is never counted as passed.
* ``total`` counts every test, so ``passed + failed + skipped == total``.

``analysis.performance`` takes the report's own figures (``performance.py``'s basis: the
remote round trip minus the server's compute time of the same requests); for the original
scripts' result files, whose checks recorded ``remote_execution.remote_time_ms`` and
``performance_comparison.cpu_time_ms``, it takes those, as the original did.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from pytest_genie.checks import KINDS, Key
from pytest_genie.report.analysis import base_name, round_to
from pytest_genie.report.inputs import ResultFile, number

__all__ = ["ORIGINAL_KEYS", "original_layout", "original_summary"]

#: The top-level keys the original report had.
ORIGINAL_KEYS = ("test_session", "summary", "server_results", "client_results", "analysis")
#: The original scripts' names: their remote check, and the figures they recorded.
_ORIGINAL_REMOTE = "remote_execution"
_ORIGINAL_REMOTE_MS = "remote_time_ms"
_ORIGINAL_CPU_MS = "cpu_time_ms"


def original_summary(tests: list[dict[str, Any]]) -> dict[str, int]:
    """``{passed, failed, total}`` as the original counted them, plus skipped and errors."""
    def count(*statuses: str) -> int:
        return sum(1 for t in tests if t["status"] in statuses)

    return {"passed": count("PASS"), "failed": count("FAIL", "ERROR"), "skipped": count("SKIP"),
            "errors": count("ERROR"), "total": len(tests)}


def _results(files: list[ResultFile], side: str) -> dict[str, Any]:
    """One side's result file as the original embedded it (several files: their tests joined)."""
    if not files:
        return {}
    info = files[0].test_info
    merged: dict[str, Any] = {}
    side_info = info.get(f"{side}_info")
    if isinstance(side_info, dict):
        merged[f"{side}_info"] = side_info
    merged["test_info"] = info
    merged["tests"] = [t for f in files for t in f.tests]
    if len(files) > 1:
        merged["merged_from"] = [str(f.path) for f in files]
    return merged


def _recorded(tests: list[dict[str, Any]], name: str, key: str) -> float | None:
    """A figure an original script recorded (the latest passing record of ``name``)."""
    for test in reversed(tests):
        if base_name(test["name"]) == name and test["status"] == "PASS":
            value = number(test["details"].get(key))
            if value is not None:
                return value
    return None


def _difference(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round_to(a - b)


def _performance(perf: dict[str, Any], client_tests: list[dict[str, Any]]) -> dict[str, Any]:
    gpu = number(perf.get("server_gpu_time_ms"))
    remote = number(perf.get("client_remote_ms"))
    cpu = number(perf.get("client_cpu_baseline_ms"))
    overhead = number(perf.get(Key.NETWORK_OVERHEAD_MS))
    basis = perf.get("server_time_basis")
    total = number(perf.get("total_overhead_ms"))
    if remote is None:  # an original client file: its own checks' figures
        remote = _recorded(client_tests, _ORIGINAL_REMOTE, _ORIGINAL_REMOTE_MS)
        cpu = cpu if cpu is not None else _recorded(client_tests, "performance_comparison",
                                                    _ORIGINAL_CPU_MS)
        overhead, basis = _difference(remote, gpu), "client_remote_time_ms - server_gpu_time_ms"
        total = _difference(remote, cpu)
    return {"server_gpu_time_ms": gpu, "client_remote_time_ms": remote, "client_cpu_time_ms": cpu,
            "network_overhead_ms": overhead, "total_overhead_ms": total,
            "network_overhead_basis": basis if overhead is not None else None}


def original_layout(files: list[ResultFile], perf: dict[str, Any], server_url: str | None,
                    started: str | None, generated_at: str) -> dict[str, Any]:
    """The original report's top-level keys, from the parsed result files and the
    report's ``performance`` section."""
    by_side = {side: [f for f in files if f.side == side] for side in KINDS}
    tests = {side: [t for f in by_side[side] for t in f.tests] for side in KINDS}
    client_hostname = next((f.test_info.get("hostname") for f in by_side["client"]
                            if f.test_info.get("hostname")), None)
    server_ip = urlsplit(server_url).hostname if server_url else None
    if server_ip is None:  # an original client file named the server it tested
        server_ip = next((f.test_info["client_info"].get("server_ip") for f in by_side["client"]
                          if isinstance(f.test_info.get("client_info"), dict)), None)
    return {
        "test_session": {"timestamp": started, "server_ip": server_ip,
                         "client_hostname": client_hostname, "report_generated": generated_at},
        "summary": {"server_tests": original_summary(tests["server"]),
                    "client_tests": original_summary(tests["client"]),
                    "overall": original_summary(tests["server"] + tests["client"])},
        "server_results": _results(by_side["server"], "server"),
        "client_results": _results(by_side["client"], "client"),
        "analysis": {"performance": _performance(perf, tests["client"])},
    }
