"""The performance figures: local CPU vs server compute vs remote round trip, the break-even
size, transfers, the concurrency curve and the network baseline, each with its spread.

Pure, like ``analysis.py``.  Verdicts are made on interquartile ranges (``figures.verdict``):
"remote is faster" only where the remote round trip's upper quartile is under local CPU's lower
quartile, so noise cannot pass for a difference.  The break-even size is the smallest measured
size from which remote stays clearly faster at *every* larger measured size; nothing is said of
sizes the sweep did not measure.  The headline comparison is the sweep's own row at the headline
size, so the headline and the sweep can never disagree.

Where each figure was measured (``where.py``): every :class:`Figure` carries its result file's
path under ``measured``, and ``measured`` of the returned dict names both paths, the client
checks' (``client``) and the server checks' (``server``), and which plain figures are the
server node's (``server_figures``); every other figure is the client's.  The overhead pairs the
remote round trip with the server's compute *of the same requests* (``Server-Timing``); the
server's own matmul benchmark (``gpu_detection``, the guide's "Server GPU Time") stands in when
the client recorded none; measured on another path than the remote time, the overhead and its ratio
are then labelled as mixing two paths (``measured.overhead_across_paths``).
"""

from __future__ import annotations

from typing import Any

from pytest_genie.checks import (
    CONCURRENCY_SWEEP,
    GPU_DETECTION,
    HTTP_TENSOR_TRANSFER,
    LARGE_TENSOR_HANDLING,
    LLM_DECODE_COLOCATION,
    MULTI_OPERATION_CHAIN,
    NETWORK_CONNECTIVITY,
    PERFORMANCE_COMPARISON,
    REMOTE_LAZYTENSOR_EXECUTION,
    SERVER_CONNECTIVITY,
    SERVER_OPERATIONS,
    SERVER_STARTUP,
    Check,
    Key,
)
from pytest_genie.report.analysis import decode_colocation, detail, pick, round_to
from pytest_genie.report.figures import Figure, figure, verdict
from pytest_genie.report.inputs import number
from pytest_genie.report.where import PATH_NOT_RECORDED, Where
from pytest_genie.stats import break_even_start

__all__ = ["SERVER_FIGURES", "across_paths", "break_even", "performance", "sweep_rows"]

#: The plain figures of :func:`performance` that the server node measured (the rest: the client).
SERVER_FIGURES = ("server_gpu_time_ms", "server_startup_ms", "server_op_median_round_trip_ms")


def _disturbed(record: dict[str, Any] | None) -> dict[str, int] | None:
    value = record["details"].get(Key.DISTURBED) if record else None
    return value if isinstance(value, dict) and value else None


def _fig(record: dict[str, Any] | None, key: str, row: dict[str, Any] | None = None) -> Figure | None:
    if record is None:
        return None
    return figure(row if row is not None else record["details"], key,
                  server=record.get("server"), disturbed=_disturbed(record), measured=record.get("measured"))


def _dict(fig: Figure | None) -> dict[str, Any] | None:
    return None if fig is None else fig.to_dict()


def sweep_rows(record: dict[str, Any] | None) -> list[dict[str, Any]]:
    """The sweep's rows in size order, each with its three figures and its verdict."""
    raw = record["details"].get(Key.SWEEP) if record else None
    rows = []
    for point in raw if isinstance(raw, list) else []:
        if not isinstance(point, dict) or number(point.get(Key.N)) is None:
            continue
        local, remote = _fig(record, Key.LOCAL_CPU_MS, point), _fig(record, Key.REMOTE_MS, point)
        compute = _fig(record, Key.SERVER_COMPUTE_MS, point)
        size = number(point.get(Key.BYTES))
        rows.append({Key.N: int(float(point[Key.N])), Key.BYTES: int(size) if size is not None else None,
                     "local": local, "remote": remote, "compute": compute,
                     Key.VERDICT: verdict(local, remote) if local and remote else None})
    return sorted(rows, key=lambda r: r[Key.N])


def break_even(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The smallest measured size from which remote is clearly faster at every larger one."""
    judged = [r for r in rows if r[Key.VERDICT] is not None]
    index = break_even_start([r[Key.VERDICT] for r in judged])
    start = judged[index] if index is not None else None
    largest = judged[-1] if judged else None
    return {Key.BREAK_EVEN_N: start[Key.N] if start else None,
            Key.BREAK_EVEN_BYTES: start[Key.BYTES] if start else None,
            "largest_swept_n": largest[Key.N] if largest else None,
            "largest_swept_bytes": largest[Key.BYTES] if largest else None,
            "points": len(judged),
            "spread_recorded": bool(judged) and all(r["local"].spread and r["remote"].spread for r in judged)}


def _concurrency(record: dict[str, Any] | None) -> dict[str, Any] | None:
    raw = record["details"].get(Key.LEVELS) if record else None
    if not isinstance(raw, list):
        return None
    curves: dict[str, list[dict[str, Any]]] = {}
    for row in raw:
        if not isinstance(row, dict) or number(row.get(Key.CONCURRENCY)) is None:
            continue
        curves.setdefault(str(row.get(Key.PAYLOAD)), []).append({
            Key.CONCURRENCY: int(float(row[Key.CONCURRENCY])), Key.BYTES: number(row.get(Key.BYTES)),
            Key.REQUESTS: number(row.get(Key.REQUESTS)), Key.ERRORS: number(row.get(Key.ERRORS)),
            Key.THROUGHPUT_RPS: _dict(_fig(record, Key.THROUGHPUT_RPS, row)),
            Key.P50_MS: number(row.get(Key.P50_MS)), Key.P95_MS: number(row.get(Key.P95_MS))})
    for rows in curves.values():
        rows.sort(key=lambda r: r[Key.CONCURRENCY])
    return {"curves": curves, Key.SAME_PROCESS: record["details"].get(Key.SAME_PROCESS) if record else None,
            Key.WINDOW_S: number(record["details"].get(Key.WINDOW_S)) if record else None,
            "disturbed": _disturbed(record)}


def _transfer(tests: list[dict[str, Any]], check: Check) -> dict[str, Any]:
    record = pick(tests, check)
    values = record["details"] if record else {}
    return {"status": record["status"] if record else None,
            Key.MIB_PER_S: _dict(_fig(record, Key.MIB_PER_S)),
            Key.ROUND_TRIP_MS: _dict(_fig(record, Key.ROUND_TRIP_MS)),
            Key.BYTES: number(values.get(Key.BYTES)), Key.SIZE_MB: number(values.get(Key.SIZE_MB)),
            Key.BIT_EXACT: values.get(Key.BIT_EXACT), "disturbed": _disturbed(record)}


def across_paths(client: Where | None, server: Where | None) -> str:
    """The label of a figure formed from a client figure and a server-node figure: both paths named."""
    return (f"mixes two paths: the client's remote time ({client.label if client else PATH_NOT_RECORDED}) "
            f"minus the server node's own benchmark ({server.label if server else PATH_NOT_RECORDED})")


def _tagged(tests: list[dict[str, Any]], server: str | None, where: Where | None) -> list[dict[str, Any]]:
    """The tests with the server and the path their figures were measured on."""
    return [{**t, "server": server, "measured": where.to_dict() if where else None} for t in tests]


def performance(server_tests: list[dict[str, Any]], client_tests: list[dict[str, Any]],
                gpu: dict[str, Any], server_url: str | None = None, *,
                client_where: Where | None = None, server_where: Where | None = None) -> dict[str, Any]:
    """The performance figures of one server's results (``server_url``: the server measured;
    ``client_where`` / ``server_where``: where each side's figures were measured)."""
    client_tests = _tagged(client_tests, server_url, client_where)
    server_tests = _tagged(server_tests, server_url, server_where)
    comparison = pick(client_tests, PERFORMANCE_COMPARISON)
    details = comparison["details"] if comparison else {}
    rows = sweep_rows(comparison)
    main_n = number(details.get(Key.N))
    main_row = next((r for r in rows if main_n is not None and r[Key.N] == int(main_n)), None)
    if main_row is not None:
        local, remote, compute = main_row["local"], main_row["remote"], main_row["compute"]
    else:  # an older file: the headline was measured apart from the sweep
        local, remote = _fig(comparison, Key.LOCAL_CPU_MS), _fig(comparison, Key.REMOTE_MS)
        compute = _fig(comparison, Key.SERVER_COMPUTE_MS)
    gpu_time = detail(server_tests, GPU_DETECTION, Key.GPU_TIME_MS)
    # The overhead pairs the remote time with the compute time of the same requests (Server-Timing),
    # both from the client's file; the server's own matmul benchmark is the guide's fallback, and when
    # it was measured on another path than the remote time the overhead says so (``across_paths``).
    same_path = client_where is not None and client_where.same_path(server_where)
    server_time, basis, across = None, None, None
    if compute is not None:
        server_time, basis = compute.value, f"{PERFORMANCE_COMPARISON.name}.{Key.SERVER_COMPUTE_MS}"
    elif gpu_time is not None:
        server_time, basis = gpu_time, f"{GPU_DETECTION.name}.{Key.GPU_TIME_MS}"
        if not same_path and remote is not None:
            across = across_paths(client_where, server_where)
    overhead = remote.value - server_time if remote is not None and server_time is not None else None
    total = remote.value - local.value if remote is not None and local is not None else None
    lazy = pick(client_tests, REMOTE_LAZYTENSOR_EXECUTION)
    found = break_even(rows)
    return {
        Key.N: main_n,
        Key.OP: details.get(Key.OP),
        Key.LEVEL: details.get(Key.LEVEL),
        "server": server_url,
        "server_device": gpu.get(Key.DEVICE),
        "server_gpu_time_ms": round_to(gpu_time),
        Key.SERVER_COMPUTE_MS: round_to(compute.value) if compute else None,
        "server_time_ms": round_to(server_time),
        "server_time_basis": basis,
        "measured": {"client": client_where.to_dict() if client_where else None,
                     "server": server_where.to_dict() if server_where and server_tests else None,
                     "same_path": same_path, "server_figures": list(SERVER_FIGURES),
                     "overhead_across_paths": across},
        "client_remote_ms": round_to(remote.value) if remote else None,
        "client_cpu_baseline_ms": round_to(local.value) if local else None,
        Key.NETWORK_OVERHEAD_MS: round_to(overhead),
        "network_overhead_ratio": round_to(overhead / server_time, 3) if overhead is not None and server_time
        else None,
        "network_overhead_pct_of_server": round_to(100.0 * overhead / server_time, 2)
        if overhead is not None and server_time else None,
        "total_overhead_ms": round_to(total),
        "total_overhead_pct_vs_local": round_to(100.0 * total / local.value, 2)
        if total is not None and local and local.value else None,
        "headline": {"local": _dict(local), "remote": _dict(remote), "compute": _dict(compute),
                     Key.VERDICT: verdict(local, remote) if local and remote else None,
                     "from_sweep": main_row is not None},
        "disturbed": _disturbed(comparison),
        "break_even": {**found, "rows": [{**r, "local": _dict(r["local"]), "remote": _dict(r["remote"]),
                                          "compute": _dict(r["compute"])} for r in rows]},
        "transfer": {c.name: _transfer(client_tests, c)
                     for c in (HTTP_TENSOR_TRANSFER, LARGE_TENSOR_HANDLING)},
        "lazy": {Key.FIRST_CALL_MS: number(lazy["details"].get(Key.FIRST_CALL_MS)) if lazy else None,
                 Key.ROUND_TRIP_MS: _dict(_fig(lazy, Key.ROUND_TRIP_MS)), "disturbed": _disturbed(lazy)},
        "concurrency": _concurrency(pick(client_tests, CONCURRENCY_SWEEP)),
        Key.CONNECT_MS_MEDIAN: detail(client_tests, NETWORK_CONNECTIVITY, Key.CONNECT_MS_MEDIAN),
        "health_response_ms": detail(client_tests, SERVER_CONNECTIVITY, Key.RESPONSE_MS),
        "server_startup_ms": detail(server_tests, SERVER_STARTUP, Key.STARTUP_MS),
        "server_op_median_round_trip_ms": detail(server_tests, SERVER_OPERATIONS, Key.MEDIAN_ROUND_TRIP_MS),
        "chain_round_trip_ms": detail(client_tests, MULTI_OPERATION_CHAIN, Key.ROUND_TRIP_MS),
        "chain_requests": detail(client_tests, MULTI_OPERATION_CHAIN, Key.REQUESTS_MADE),
        LLM_DECODE_COLOCATION.name: decode_colocation(client_tests),
    }
