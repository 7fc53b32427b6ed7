"""Recommendations: advice that follows from the measured numbers, each naming what it rests on.

Only figures the report measured lead to advice; a missing figure leads to advice on how to
measure it (which side to run), never to an estimate.
"""

from __future__ import annotations

from typing import Any

from pytest_genie.checks import LARGE_TENSOR_HANDLING, PERFORMANCE_COMPARISON, Key
from pytest_genie.report.formatting import format_bytes, format_ms

__all__ = ["OVERHEAD_DOMINATES_RATIO", "recommend"]

# Network overhead above this multiple of the server's compute time means the wire, not the
# device, decides the speed: batching and keeping data on the server pay more than a faster GPU.
OVERHEAD_DOMINATES_RATIO = 2.0


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
    if gpu.get("detection_status") == "SKIP" or gpu.get(Key.CUDA_AVAILABLE) is False:
        reason = f" ({gpu['detection_skip_reason']})" if gpu.get("detection_skip_reason") else ""
        add(
            "gpu",
            f"The server has no GPU{reason}: run genie-server on a CUDA node (and `pytest -m server "
            "--genie-require-gpu` there) before judging remote GPU performance.",
        )

    be = perf["break_even"]
    remote, local = perf["client_remote_ms"], perf["client_cpu_baseline_ms"]
    if be.get(Key.BREAK_EVEN_N) is not None:
        size = (
            format_bytes(be.get(Key.BREAK_EVEN_BYTES))
            if be.get(Key.BREAK_EVEN_BYTES) is not None
            else "that size"
        )
        add(
            "offload",
            f"Remote execution beats local CPU from n={be[Key.BREAK_EVEN_N]} ({size}) upward: offload "
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
        size = f"n={int(perf[Key.N])}" if perf.get(Key.N) else "the measured size"
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
            f"Remote vs local performance was not measured: `{PERFORMANCE_COMPARISON.name}` recorded no "
            f"{Key.REMOTE_MS}/{Key.LOCAL_CPU_MS}, so no break-even size can be given.",
        )

    ratio = perf["network_overhead_ratio"]
    if ratio is not None and ratio > OVERHEAD_DOMINATES_RATIO:
        add(
            "network",
            f"Network and serialisation cost {ratio:.3g}x the server compute "
            f"({format_ms(perf[Key.NETWORK_OVERHEAD_MS])} vs {format_ms(perf['server_time_ms'])}): "
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
    large = perf["transfer"][LARGE_TENSOR_HANDLING.name]
    if large[Key.MIB_PER_S]:
        per_100mib = 100 * 1000 / large[Key.MIB_PER_S]
        add(
            "transfer",
            f"Large tensors move at {large[Key.MIB_PER_S]:.1f} MiB/s, about {per_100mib:.0f}ms per 100 MiB: "
            "send big inputs once and reuse them as server-side handles.",
        )
    if not out and summary["total"] and summary["passed"] == summary["total"]:
        add("status", f"All {summary['total']} tests passed; no action needed.")
    return out
