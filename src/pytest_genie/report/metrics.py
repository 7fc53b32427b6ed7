"""The figures followed across sessions and held to a baseline: what each is, and how to find it.

The trend and the regression gate (``--genie-compare-fail=METRIC:PCT``) compare only like with
like: the same metric at the same place (``where``: the sweep size, or the payload and number of
clients), measured in the same *context* (the server's device and the pair of hosts, from the
result files' ``test_info``).  A figure from a CPU server is never the baseline of one from a GPU
server, nor a loopback run of a run across the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

from pytest_genie.checks import (
    CONCURRENCY_SWEEP,
    GPU_DETECTION,
    HTTP_TENSOR_TRANSFER,
    LARGE_TENSOR_HANDLING,
    MULTI_OPERATION_CHAIN,
    NETWORK_CONNECTIVITY,
    PERFORMANCE_COMPARISON,
    REMOTE_LAZYTENSOR_EXECUTION,
    Check,
    Key,
)
from pytest_genie.report.analysis import gpu_info, pick
from pytest_genie.report.figures import Figure, figure
from pytest_genie.report.inputs import ResultFile, number

__all__ = ["METRICS", "Context", "Metric", "Point", "collect", "context_of", "points_of"]


@dataclass(frozen=True)
class Metric:
    """A comparable figure: recorded by ``check`` under ``key`` (per row of ``rows`` if set)."""

    name: str
    check: Check
    key: str
    better: Literal["lower", "higher"]
    unit: str
    label: str
    rows: str | None = None


METRICS: dict[str, Metric] = {m.name: m for m in (
    Metric("remote_ms", PERFORMANCE_COMPARISON, Key.REMOTE_MS, "lower", "ms", "remote round trip", Key.SWEEP),
    Metric("local_cpu_ms", PERFORMANCE_COMPARISON, Key.LOCAL_CPU_MS, "lower", "ms", "local CPU", Key.SWEEP),
    Metric("server_compute_ms", PERFORMANCE_COMPARISON, Key.SERVER_COMPUTE_MS, "lower", "ms",
           "server compute", Key.SWEEP),
    Metric("gpu_time_ms", GPU_DETECTION, Key.GPU_TIME_MS, "lower", "ms", "server matmul benchmark"),
    Metric("http_mib_per_s", HTTP_TENSOR_TRANSFER, Key.MIB_PER_S, "higher", "MiB/s",
           "HTTP tensor transfer"),
    Metric("large_mib_per_s", LARGE_TENSOR_HANDLING, Key.MIB_PER_S, "higher", "MiB/s",
           "large tensor transfer"),
    Metric("lazy_ms", REMOTE_LAZYTENSOR_EXECUTION, Key.ROUND_TRIP_MS, "lower", "ms",
           "LazyTensor round trip (steady state)"),
    Metric("chain_ms", MULTI_OPERATION_CHAIN, Key.ROUND_TRIP_MS, "lower", "ms", "multi-op chain round trip"),
    Metric("connect_ms", NETWORK_CONNECTIVITY, Key.CONNECT_MS_MEDIAN, "lower", "ms", "TCP connect"),
    Metric("throughput_rps", CONCURRENCY_SWEEP, Key.THROUGHPUT_RPS, "higher", "req/s",
           "throughput", Key.LEVELS),
)}


@dataclass(frozen=True)
class Context:
    """What must match for two figures to be comparable: the server's device and the hosts."""

    device: str | None
    hosts: str

    @property
    def label(self) -> str:
        return f"{self.hosts} ({self.device or 'device unknown'})"


@dataclass(frozen=True)
class Point:
    """One figure of one session: ``metric`` at ``where`` (``""``: the check's one figure)."""

    metric: str
    where: str
    figure: Figure
    context: Context

    @property
    def ident(self) -> tuple[str, str, Context]:
        return self.metric, self.where, self.context


def _server_host(url: Any) -> str:
    """The server's host without its port: the embedded server listens on a new ephemeral port
    every session, and is still the same machine."""
    if not isinstance(url, str) or not url:
        return "server unknown"
    return urlsplit(url).hostname or url


def context_of(files: list[ResultFile], side: str, device: str | None) -> Context:
    """The context of ``side``'s figures: client figures depend on both hosts, server ones on the
    server host alone."""
    infos = [f.test_info for f in files if f.side == side]
    info = infos[0] if infos else {}
    host = str(info.get("hostname") or f"{side} host unknown")
    if side == "server":
        return Context(device, host)
    return Context(device, f"{host} -> {_server_host(info.get(Key.SERVER_URL))}")


def _where(metric: Metric, row: dict[str, Any]) -> str | None:
    if metric.rows == Key.SWEEP:
        n = number(row.get(Key.N))
        return None if n is None else f"n={int(n)}"
    payload, clients = row.get(Key.PAYLOAD), number(row.get(Key.CONCURRENCY))
    return None if payload is None or clients is None else f"{payload} x{int(clients)}"


def collect(files: list[ResultFile], device: str | None) -> list[Point]:
    """Every comparable figure these files hold, each with its context."""
    points: list[Point] = []
    for metric in METRICS.values():
        side = metric.check.kind
        tests = [t for f in files if f.side == side for t in f.tests]
        record = pick(tests, metric.check)
        if record is None or record["status"] != "PASS":
            continue
        details = record["details"]
        context = context_of(files, side, device)
        server = next((f.test_info.get(Key.SERVER_URL) for f in files if f.side == side), None)
        disturbed = details.get(Key.DISTURBED) if isinstance(details.get(Key.DISTURBED), dict) else None
        rows: list[tuple[str, dict[str, Any]]] = []
        if metric.rows is None:
            rows = [("", details)]
        elif isinstance(details.get(metric.rows), list):
            rows = [(w, r) for r in details[metric.rows]
                    if isinstance(r, dict) and (w := _where(metric, r)) is not None]
        for where, row in rows:
            fig = figure(row, metric.key, server=server, disturbed=disturbed)
            if fig is not None:
                points.append(Point(metric.name, where, fig, context))
    return points


def points_of(files: list[ResultFile]) -> list[Point]:
    """:func:`collect` with the server's device as the report reads it from these files."""
    server_tests = [t for f in files if f.side == "server" for t in f.tests]
    client_tests = [t for f in files if f.side == "client" for t in f.tests]
    device = gpu_info(files, server_tests, client_tests).get(Key.DEVICE)
    return collect(files, str(device) if device is not None else None)
