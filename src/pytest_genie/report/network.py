"""The network baseline: how fast the link itself is, and what that explains of the remote time.

``network_throughput`` moves bytes through ``/probe`` with no tensor work, at two sizes: the
slope between them is the link's streaming rate each way (what the link and HTTP can stream),
the intercept what each request costs once.  From them:

* **tensor transfer efficiency** = a transfer check's MiB/s ÷ the probe's round-trip MiB/s.
  An echo sends N bytes and then receives N, so the comparable probe figure is the harmonic
  mean of the two directions, ``2 / (1/up + 1/down)``: what an echo would reach with no
  tensor work.  1.0 means tensors cost nothing over raw bytes.
* **remote time split** of the performance comparison's request: network = one RTT (the
  median TCP connect time of ``network_connectivity``) + its bytes sent at the upload rate +
  its bytes received at the download rate; server work = its ``Server-Timing`` phases
  (decode + compute + encode); the rest is the client's own work and HTTP (encoding,
  decoding, Python), which may come out slightly negative when the estimates overlap.

Pure, like ``analysis.py``: parsed tests in, a plain dict out, ``None`` for what was not measured.
"""

from __future__ import annotations

from typing import Any

from pytest_genie.checks import (
    HTTP_TENSOR_TRANSFER,
    LARGE_TENSOR_HANDLING,
    NETWORK_CONNECTIVITY,
    NETWORK_THROUGHPUT,
    PERFORMANCE_COMPARISON,
    Key,
)
from pytest_genie.report.analysis import detail, pick, round_to
from pytest_genie.report.inputs import number

__all__ = ["network_baseline"]

MIB = 2**20


def _ratio(part: float | None, whole: float | None) -> float | None:
    return round_to(part / whole, 3) if part is not None and whole else None


def _whole(value: float | None) -> int | None:
    return None if value is None else int(value)


def _sizes(record: dict[str, Any] | None) -> list[int]:
    sizes = record["details"].get(Key.PROBE_SIZES) if record else None
    return [int(n) for n in sizes if number(n) is not None] if isinstance(sizes, list) else []


def network_baseline(client_tests: list[dict[str, Any]]) -> dict[str, Any]:
    """The probe's rates, each transfer check's efficiency against them, and the split of
    the performance comparison's remote time into network, server work and the rest."""
    up = detail(client_tests, NETWORK_THROUGHPUT, Key.UPLOAD_MIB_PER_S)
    down = detail(client_tests, NETWORK_THROUGHPUT, Key.DOWNLOAD_MIB_PER_S)
    round_trip = 2 / (1 / up + 1 / down) if up and down else None
    efficiency = {}
    for check in (LARGE_TENSOR_HANDLING, HTTP_TENSOR_TRANSFER):
        rate = detail(client_tests, check, Key.MIB_PER_S)
        efficiency[check.name] = {Key.MIB_PER_S: rate, "efficiency": _ratio(rate, round_trip)}

    rtt = detail(client_tests, NETWORK_CONNECTIVITY, Key.CONNECT_MS_MEDIAN)
    remote = detail(client_tests, PERFORMANCE_COMPARISON, Key.REMOTE_MS)
    work = detail(client_tests, PERFORMANCE_COMPARISON, Key.SERVER_WORK_MS)
    sent = detail(client_tests, PERFORMANCE_COMPARISON, Key.BYTES_SENT)
    received = detail(client_tests, PERFORMANCE_COMPARISON, Key.BYTES_RECEIVED)
    network = None
    if rtt is not None and sent is not None and received is not None and up and down:
        network = rtt + 1000 * (sent / MIB / up + received / MIB / down)
    other = None
    if remote is not None and network is not None and work is not None:
        other = remote - network - work
    return {
        "probe": {Key.UPLOAD_MIB_PER_S: up, Key.DOWNLOAD_MIB_PER_S: down,
                  "round_trip_mib_per_s": round_to(round_trip, 2),
                  Key.UPLOAD_FIXED_MS: detail(client_tests, NETWORK_THROUGHPUT, Key.UPLOAD_FIXED_MS),
                  Key.DOWNLOAD_FIXED_MS: detail(client_tests, NETWORK_THROUGHPUT, Key.DOWNLOAD_FIXED_MS),
                  Key.PROBE_SIZES: _sizes(pick(client_tests, NETWORK_THROUGHPUT))},
        "rtt_ms": rtt,
        "efficiency": efficiency,
        "remote_split": {
            Key.N: _whole(detail(client_tests, PERFORMANCE_COMPARISON, Key.N)),
            Key.REMOTE_MS: remote, Key.BYTES_SENT: _whole(sent), Key.BYTES_RECEIVED: _whole(received),
            "network_ms": round_to(network, 3), Key.SERVER_WORK_MS: work,
            "client_and_http_ms": round_to(other, 3),
            "network_share": _ratio(network, remote), "server_work_share": _ratio(work, remote),
        },
    }
