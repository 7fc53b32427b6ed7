"""Recommendations: advice that follows from the measured numbers, each naming what it rests on.

Only figures the report measured lead to advice; a missing figure leads to advice on how to
measure it (which side to run), never to an estimate.  Advice on offloading follows the break-even
verdict (``performance.py``) and says nothing of sizes the sweep did not reach; network advice
is given only when the overhead is past ``claims.DOMINATES_RATIO`` times the server compute.
"""

from __future__ import annotations

from typing import Any

from pytest_genie.checks import HTTP_TENSOR_TRANSFER, LARGE_TENSOR_HANDLING, PERFORMANCE_COMPARISON, Key
from pytest_genie.report.claims import DOMINATES_RATIO, disturbed_note
from pytest_genie.report.figures import Figure
from pytest_genie.report.formatting import format_bytes

__all__ = ["recommend"]


def _unstable(perf: dict[str, Any]) -> list[dict[str, str]]:
    """The figures whose stabilisation loop hit its cap, by name."""
    out = []
    for row in perf["break_even"]["rows"]:
        for side in ("local", "remote", "compute"):
            if (row.get(side) or {}).get(Key.STABLE) is False:
                out.append({"figure": f"{side} at n={row[Key.N]}"})
    for check in (HTTP_TENSOR_TRANSFER, LARGE_TENSOR_HANDLING):
        if (perf["transfer"][check.name].get(Key.ROUND_TRIP_MS) or {}).get(Key.STABLE) is False:
            out.append({"figure": check.name})
    return out


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
    if be.get(Key.BREAK_EVEN_N) is not None:
        size = format_bytes(be.get(Key.BREAK_EVEN_BYTES))
        add(
            "offload",
            f"Offload work on tensors from n={be[Key.BREAK_EVEN_N]} ({size}) upward: from there remote was "
            f"clearly faster at every measured size up to n={be['largest_swept_n']}; keep smaller ones "
            "local. Sizes past the sweep were not measured.",
        )
    elif be.get("points"):
        size = format_bytes(be.get("largest_swept_bytes"))
        add(
            "offload",
            f"Keep work of the measured sizes local: remote was not clearly faster than local CPU from any "
            f"measured size onward (up to n={be['largest_swept_n']}, {size}). Larger or batched work was "
            "not measured; measure it (--genie-level=long) before offloading it.",
        )
    elif client is not None:
        add(
            "coverage",
            f"Remote vs local performance was not measured: `{PERFORMANCE_COMPARISON.name}` recorded no "
            f"sweep of {Key.REMOTE_MS}/{Key.LOCAL_CPU_MS}, so no break-even size can be given.",
        )

    ratio = perf["network_overhead_ratio"]
    if ratio is not None and ratio > DOMINATES_RATIO:
        at = f" at n={int(perf[Key.N])}" if perf.get(Key.N) else ""
        add(
            "network",
            f"Network and serialisation cost {ratio:.3g}x the server compute (above "
            f"{DOMINATES_RATIO:g}x){at}: batch ops into one /graph request and keep intermediate "
            "tensors on the server as handles instead of fetching each result.",
        )
    chain = perf.get("chain_requests")
    if chain is not None and chain > 1:
        add(
            "network",
            f"The multi-operation chain took {int(chain)} requests; it should be one /graph request.",
        )
    large = perf["transfer"][LARGE_TENSOR_HANDLING.name]
    rate = Figure.from_dict(large[Key.MIB_PER_S])
    if rate is not None and rate.value > 0:
        add(
            "transfer",
            f"Large tensors moved at {rate.value:.1f} MiB/s ({format_bytes(large[Key.BYTES])} each way): "
            "send big inputs once and reuse them as server-side handles."
            + disturbed_note(large.get("disturbed")),
        )
    unstable = sorted({r["figure"] for r in _unstable(perf)})
    if unstable:
        add(
            "noise",
            f"{len(unstable)} figure(s) did not settle within the stabilisation cap ({', '.join(unstable)}): "
            "they are marked 'not stable'; rerun on a quieter machine or with --genie-level=long.",
        )
    if not out and summary["total"] and summary["passed"] == summary["total"]:
        add("status", f"All {summary['total']} tests passed; no action needed.")
    return out
