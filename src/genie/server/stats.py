"""Request statistics: one source of truth for ``/stats``, ``/health`` and ``/metrics``.

Counts are kept per endpoint (method plus route template, e.g. ``POST /execute``)
so that a test can check that a request moved exactly the counter it should.
Latency percentiles come from a bounded window of recent requests per endpoint:
exact over the window, constant memory however long the server runs.

``/metrics`` is produced by a prometheus-client collector that reads these same
counters at scrape time, in a registry owned by the app (never the global one),
so two apps in one process never mix their numbers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    SummaryMetricFamily,
)
from prometheus_client.registry import Collector

__all__ = ["EndpointStats", "Stats", "StatsCollector"]

LATENCY_WINDOW = 4096


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an already sorted list (None when empty)."""
    if not sorted_values:
        return None
    rank = max(0, min(len(sorted_values) - 1, round(q / 100.0 * len(sorted_values)) - 1))
    return sorted_values[rank]


@dataclass
class EndpointStats:
    count: int = 0
    successes: int = 0
    failures: Counter[str] = field(default_factory=Counter)
    bytes_in: int = 0
    bytes_out: int = 0
    latency_sum_ms: float = 0.0
    compute_ms: float = 0.0
    latencies_ms: deque[float] = field(default_factory=lambda: deque(maxlen=LATENCY_WINDOW))

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self.latencies_ms)
        failed = sum(self.failures.values())
        return {
            "count": self.count,
            "successes": self.successes,
            "failures": failed,
            "failures_by_type": dict(self.failures),
            "error_rate": failed / self.count if self.count else 0.0,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out,
            "latency_ms": {
                "p50": percentile(ordered, 50),
                "p95": percentile(ordered, 95),
                "p99": percentile(ordered, 99),
                "mean": self.latency_sum_ms / self.count if self.count else None,
            },
            "compute_ms_total": self.compute_ms,
        }


class Stats:
    """Thread-safe counters for one app; compute threads and the event loop both write."""

    def __init__(self, held: Callable[[], tuple[int, int]]) -> None:
        self._lock = threading.Lock()
        self._endpoints: dict[str, EndpointStats] = {}
        self._held = held  # () -> (tensors held, bytes held), read at snapshot time
        self.started = time.monotonic()

    def record(self, endpoint: str, *, status: int, error_type: str | None,
               bytes_in: int, bytes_out: int, latency_ms: float, compute_ms: float) -> None:
        with self._lock:
            ep = self._endpoints.setdefault(endpoint, EndpointStats())
            ep.count += 1
            if error_type is None and status < 400:
                ep.successes += 1
            else:
                ep.failures[error_type or f"http_{status}"] += 1
            ep.bytes_in += bytes_in
            ep.bytes_out += bytes_out
            ep.latency_sum_ms += latency_ms
            ep.compute_ms += compute_ms
            ep.latencies_ms.append(latency_ms)

    def held(self) -> tuple[int, int]:
        """(tensors, bytes) currently held as handles."""
        return self._held()

    def uptime_s(self) -> float:
        return time.monotonic() - self.started

    def totals(self) -> dict[str, int]:
        """Request totals, for /health."""
        with self._lock:
            eps = list(self._endpoints.values())
            return {
                "total": sum(e.count for e in eps),
                "succeeded": sum(e.successes for e in eps),
                "failed": sum(sum(e.failures.values()) for e in eps),
            }

    def snapshot(self) -> dict[str, Any]:
        """Everything /stats reports."""
        with self._lock:
            endpoints = {name: ep.snapshot() for name, ep in sorted(self._endpoints.items())}
        errors: Counter[str] = Counter()
        for ep in endpoints.values():
            errors.update(ep["failures_by_type"])
        total = sum(ep["count"] for ep in endpoints.values())
        failed = sum(errors.values())
        tensors, nbytes = self.held()
        return {
            "uptime_s": self.uptime_s(),
            "requests": {
                "total": total,
                "succeeded": total - failed,
                "failed": failed,
                "error_rate": failed / total if total else 0.0,
            },
            "errors_by_type": dict(errors),
            "bytes_in": sum(ep["bytes_in"] for ep in endpoints.values()),
            "bytes_out": sum(ep["bytes_out"] for ep in endpoints.values()),
            "compute_ms_total": sum(ep["compute_ms_total"] for ep in endpoints.values()),
            "held": {"tensors": tensors, "bytes": nbytes},
            "endpoints": endpoints,
        }

    def endpoints(self) -> dict[str, EndpointStats]:
        """A consistent copy of the per-endpoint counters (for the collector)."""
        with self._lock:
            return {
                k: EndpointStats(v.count, v.successes, Counter(v.failures), v.bytes_in,
                                 v.bytes_out, v.latency_sum_ms, v.compute_ms)
                for k, v in self._endpoints.items()
            }


class StatsCollector(Collector):
    """Exposes a ``Stats`` to prometheus-client at scrape time."""

    def __init__(self, stats: Stats) -> None:
        self._stats = stats

    def collect(self) -> Iterator[Any]:
        eps = self._stats.endpoints()
        requests = CounterMetricFamily("genie_requests", "Requests handled",
                                       labels=["endpoint"])
        failures = CounterMetricFamily("genie_request_failures", "Failed requests by error type",
                                       labels=["endpoint", "type"])
        bytes_in = CounterMetricFamily("genie_request_bytes", "Request body bytes received",
                                       labels=["endpoint"])
        bytes_out = CounterMetricFamily("genie_response_bytes", "Response body bytes sent",
                                        labels=["endpoint"])
        compute = CounterMetricFamily("genie_compute_seconds", "Synchronized compute time",
                                      labels=["endpoint"])
        latency = SummaryMetricFamily("genie_request_latency_seconds",
                                      "Request latency, headers in to body out",
                                      labels=["endpoint"])
        for name, ep in sorted(eps.items()):
            requests.add_metric([name], ep.count)
            for kind, n in sorted(ep.failures.items()):
                failures.add_metric([name, kind], n)
            bytes_in.add_metric([name], ep.bytes_in)
            bytes_out.add_metric([name], ep.bytes_out)
            compute.add_metric([name], ep.compute_ms / 1000.0)
            latency.add_metric([name], count_value=ep.count, sum_value=ep.latency_sum_ms / 1000.0)
        tensors, nbytes = self._stats.held()
        held_t = GaugeMetricFamily("genie_held_tensors", "Tensors held as handles")
        held_t.add_metric([], tensors)
        held_b = GaugeMetricFamily("genie_held_bytes", "Bytes held as handles")
        held_b.add_metric([], nbytes)
        uptime = GaugeMetricFamily("genie_uptime_seconds", "Seconds since the app started")
        uptime.add_metric([], self._stats.uptime_s())
        yield from (requests, failures, bytes_in, bytes_out, compute, latency, held_t, held_b,
                    uptime)
