"""The report rendered as the testing guide's Markdown (``test_analysis_report.md``).

Rendering only: every figure is already in the report dict (``build.py``), so what the Markdown
shows is exactly what the JSON holds.  A figure nobody measured reads "not measured"; a table cell
is escaped so a message with a ``|`` cannot break the table.
"""

from __future__ import annotations

import json
from datetime import timezone
from pathlib import Path
from typing import Any

from pytest_genie.checks import (
    ENVIRONMENT_SETUP,
    ERROR_HANDLING,
    GPU_DETECTION,
    HTTP_TENSOR_TRANSFER,
    LARGE_TENSOR_HANDLING,
    LLM_DECODE_COLOCATION,
    MULTI_OPERATION_CHAIN,
    NETWORK_CONNECTIVITY,
    NETWORK_THROUGHPUT,
    PERFORMANCE_COMPARISON,
    REMOTE_LAZYTENSOR_EXECUTION,
    SERVER_CONNECTIVITY,
    SERVER_OPERATIONS,
    SERVER_STARTUP,
    SERVER_STATISTICS,
    Key,
)
from pytest_genie.report.analysis import base_name
from pytest_genie.report.formatting import NOT_MEASURED, format_bytes, format_ms, format_pct
from pytest_genie.report.inputs import parse_time
from pytest_genie.report.trend import TREND_METRICS
from pytest_genie.results import STATUS_SYMBOLS

__all__ = ["KEY_DETAILS", "key_details", "render_markdown"]

STATUS_EMOJI = STATUS_SYMBOLS

# The details worth a table cell, per documented test (the rest stay in the JSON).
KEY_DETAILS: dict[str, tuple[str, ...]] = {
    ENVIRONMENT_SETUP.name: (Key.PYTHON_VERSION, Key.TORCH_VERSION, Key.GENIE_VERSION),
    SERVER_STARTUP.name: (Key.STARTUP_MS, Key.SHUTDOWN_MS, Key.HEALTH_STATUS, Key.PORT),
    GPU_DETECTION.name: (Key.DEVICE, Key.GPU_NAME, Key.GPU_COUNT, Key.GPU_TIME_MS),
    SERVER_OPERATIONS.name: (Key.OPS_CHECKED, Key.MEDIAN_ROUND_TRIP_MS),
    SERVER_STATISTICS.name: (Key.REQUESTS_MADE, Key.ERROR_RATE),
    NETWORK_CONNECTIVITY.name: (Key.HOST, Key.PORT, Key.CONNECT_MS_MEDIAN),
    NETWORK_THROUGHPUT.name: (Key.UPLOAD_MIB_PER_S, Key.DOWNLOAD_MIB_PER_S, Key.UPLOAD_FIXED_MS,
                              Key.DOWNLOAD_FIXED_MS),
    SERVER_CONNECTIVITY.name: (Key.DEVICE, Key.CUDA_AVAILABLE, Key.RESPONSE_MS, Key.PROTOCOL_VERSION),
    HTTP_TENSOR_TRANSFER.name: (Key.HTTP_CODE, Key.BYTES, Key.ROUND_TRIP_MS, Key.MIB_PER_S, Key.BIT_EXACT),
    REMOTE_LAZYTENSOR_EXECUTION.name: (Key.VIA, Key.ROUND_TRIP_MS, Key.REQUESTS_MADE, Key.MAX_ABS_ERROR),
    PERFORMANCE_COMPARISON.name: (
        Key.LOCAL_CPU_MS, Key.SERVER_COMPUTE_MS, Key.REMOTE_MS, Key.BREAK_EVEN_BYTES,
    ),
    MULTI_OPERATION_CHAIN.name: (Key.REQUESTS_MADE, Key.ROUND_TRIP_MS, Key.MAX_ABS_ERROR),
    ERROR_HANDLING.name: (Key.SERVER_HEALTHY_AFTER,),
    LARGE_TENSOR_HANDLING.name: (Key.SIZE_MB, Key.ROUND_TRIP_MS, Key.MIB_PER_S, Key.BIT_EXACT),
    LLM_DECODE_COLOCATION.name: (Key.STEPS, Key.BYTES_RATIO, Key.TIME_RATIO, Key.TOKENS_MATCH_EAGER),
}


def _when(stamp: Any) -> str:
    """An ISO timestamp shortened for a table (seconds, UTC); anything else as is."""
    when = parse_time(stamp)
    return when.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC") if when else str(stamp or "—")


def _cell(text: Any) -> str:
    """Table-safe text: pipes escaped, one line."""
    return str(text).replace("|", "\\|").replace("\n", " ").strip()


def _value(key: str, value: Any) -> str:
    if isinstance(value, float) and key.endswith("_ms"):
        return format_ms(value)
    if key == Key.BYTES or key.endswith("_bytes"):
        return format_bytes(value) if isinstance(value, (int, float)) else str(value)
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (list, dict)):
        return f"{len(value)} items" if isinstance(value, list) else json.dumps(value, sort_keys=True)
    return str(value)


def key_details(test: dict[str, Any]) -> str:
    """The short 'key details' of a test: why it did not pass, else its headline figures."""
    if test.get("message"):
        return test["message"][:300]
    details = test["details"]
    keys = KEY_DETAILS.get(base_name(test["name"]))
    if keys is None:
        keys = tuple(k for k, v in details.items() if isinstance(v, (str, int, float, bool)))[:4]
    parts = [f"{k}={_value(k, details[k])}" for k in keys if k in details and details[k] is not None]
    if test["name"] == ERROR_HANDLING.name and isinstance(details.get(Key.CASES), dict):
        cases = details[Key.CASES].values()
        ok = sum(
            1 for c in cases if isinstance(c, dict) and c.get(Key.CASE_STATUS) == c.get(Key.EXPECTED_STATUS)
        )
        parts.insert(0, f"{ok}/{len(details[Key.CASES])} cases as documented")
    if not parts and details.get(Key.TEXT):
        parts.append(str(details[Key.TEXT])[:300])
    return ", ".join(parts) or "—"


def _side_section(title: str, side: dict[str, Any] | None, how_to_get: str) -> list[str]:
    lines = [f"## {title}", ""]
    if side is None:
        return [*lines, f"No results for this side in this report ({how_to_get}).", ""]
    s = side["summary"]
    rate = f"{s['success_rate']:.1f}%" if s["success_rate"] is not None else NOT_MEASURED
    lines += [
        f"{s['total']} tests: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped, "
        f"{s['errors']} errors — success rate {rate} (total test time {format_ms(side['total_time_ms'])}).",
        "",
        "| Test | Status | Time | Key details |",
        "|---|---|---|---|",
    ]
    for test in side["tests"]:
        status = f"{STATUS_EMOJI[test['status']]} {test['status']}"
        lines.append(
            f"| {_cell(test['name'])} | {status} | {format_ms(test['timing_ms'])} | "
            f"{_cell(key_details(test))} |"
        )
    lines += ["", f"Source: {', '.join(f'`{p}`' for p in side['files'])}", ""]
    return lines


def _session_section(report: dict[str, Any]) -> list[str]:
    info = report["session_info"]
    sides = [("Server node", info["server"]), ("Client node", info["client"])]
    rows = [
        ("Hostname", "hostname"),
        ("Started", "timestamp"),
        ("Python", Key.PYTHON_VERSION),
        ("PyTorch", Key.TORCH_VERSION),
        ("Genie", Key.GENIE_VERSION),
        ("Platform", "platform"),
    ]
    lines = ["## Session Information", "", "| | Server node | Client node |", "|---|---|---|"]
    for label, key in rows:
        cells = [
            (
                _cell(_when(side[key]) if key == "timestamp" else side[key])
                if side and side.get(key)
                else ("—" if side is None else NOT_MEASURED)
            )
            for _, side in sides
        ]
        lines.append(f"| {label} | {cells[0]} | {cells[1]} |")
    gpu = info["gpu"]
    device = gpu.get(Key.DEVICE) or (
        "cuda"
        if gpu.get(Key.CUDA_AVAILABLE)
        else ("cpu" if gpu.get(Key.CUDA_AVAILABLE) is False else NOT_MEASURED)
    )
    extra = [str(gpu[Key.GPU_NAME])] if gpu.get(Key.GPU_NAME) else []
    if gpu.get(Key.GPU_COUNT):
        extra.append(f"{gpu[Key.GPU_COUNT]} GPU(s)")
    if gpu.get(Key.GPU_MEMORY_TOTAL_BYTES):
        extra.append(format_bytes(gpu[Key.GPU_MEMORY_TOTAL_BYTES]))
    if gpu.get("detection_skip_reason"):
        extra.append(f"{GPU_DETECTION.name} skipped: {gpu['detection_skip_reason']}")
    lines += [
        "",
        f"- **Server URL**: {info[Key.SERVER_URL] or NOT_MEASURED}",
        f"- **Server device**: {device}" + (f" ({'; '.join(extra)})" if extra else ""),
        f"- **Session started**: {_when(info['started']) if info['started'] else NOT_MEASURED}",
        "",
    ]
    return lines


def _summary_section(summary: dict[str, Any]) -> list[str]:
    rate = f"{summary['success_rate']:.1f}%" if summary["success_rate"] is not None else NOT_MEASURED
    return [
        "## Overall Summary",
        "",
        f"- **Total tests**: {summary['total']}",
        f"- **Passed**: {summary['passed']} ✅",
        f"- **Failed**: {summary['failed']} ❌",
        f"- **Skipped**: {summary['skipped']} ⏭",
        f"- **Errors**: {summary['errors']}",
        f"- **Success rate**: {rate} (skipped tests are not counted as failures)",
        "",
    ]


def _performance_section(report: dict[str, Any]) -> list[str]:
    perf = report["performance"]
    gpu = report["session_info"]["gpu"]
    device = str(perf.get("server_device") or "")
    on_gpu = device.startswith("cuda") or gpu.get(Key.CUDA_AVAILABLE) is True
    kind = "GPU" if on_gpu else "Device"
    where = "" if on_gpu or not device else f" ({device})"
    overhead = format_ms(perf[Key.NETWORK_OVERHEAD_MS])
    if perf["network_overhead_pct_of_server"] is not None:
        basis = "GPU" if on_gpu else "server device"
        overhead += f" ({format_pct(perf['network_overhead_pct_of_server'])} of {basis} time)"
    total = format_ms(perf["total_overhead_ms"])
    if perf["total_overhead_pct_vs_local"] is not None:
        pct = perf["total_overhead_pct_vs_local"]
        total += f" ({format_pct(abs(pct))} {'slower' if pct >= 0 else 'faster'} than local CPU)"
    lines = ["## Performance Analysis", "", "### Network vs GPU Performance"]
    if perf.get(Key.N):
        n = int(perf[Key.N])
        lines.append(f"Measured on {n}×{n} fp32 `{perf.get(Key.OP) or 'op'}`.")
    if not on_gpu:
        lines.append(
            f"The server ran on {device or 'an unknown device'}, not a GPU: its figures are device time."
        )
    lines += [
        f"- **Server {kind} Time{where}**: {format_ms(perf['server_time_ms'])}",
        f"- **Client Remote Time**: {format_ms(perf['client_remote_ms'])}",
        f"- **Network Overhead**: {overhead}",
    ]
    if perf["server_time_basis"]:
        lines.append(
            f"- Server time from `{perf['server_time_basis']}`"
            + (
                f"; server's own matmul benchmark: {format_ms(perf['server_gpu_time_ms'])}"
                if perf["server_gpu_time_ms"] is not None and perf[Key.SERVER_COMPUTE_MS] is not None
                else ""
            )
        )
    lines += [
        "",
        "### End-to-End Performance",
        f"- **Client CPU Baseline**: {format_ms(perf['client_cpu_baseline_ms'])}",
        f"- **Remote {kind} Execution{where}**: {format_ms(perf['client_remote_ms'])}",
        f"- **Total Overhead**: {total}",
        "",
        "### Break-even Size",
    ]
    be = perf["break_even"]
    if be.get(Key.BREAK_EVEN_N) is not None:
        lines.append(
            f"- **Break-even**: n={be[Key.BREAK_EVEN_N]} ({format_bytes(be.get(Key.BREAK_EVEN_BYTES))}): "
            "from this size up the remote round trip beats local CPU"
        )
    elif be.get("points"):
        lines.append(
            f"- **Break-even**: none up to n={be['largest_swept_n']} "
            f"({format_bytes(be.get('largest_swept_bytes'))}): remote was slower at every swept size"
        )
    else:
        lines.append(f"- **Break-even**: {NOT_MEASURED}")
    if be.get(Key.SWEEP):
        lines += [
            "",
            "| n | size | local CPU | remote | server compute | remote faster |",
            "|---|---|---|---|---|---|",
        ]
        for p in be[Key.SWEEP]:
            if not isinstance(p, dict):
                continue
            remote, local = p.get(Key.REMOTE_MS), p.get(Key.LOCAL_CPU_MS)
            faster = (
                ("yes" if remote < local else "no")
                if isinstance(remote, (int, float)) and isinstance(local, (int, float))
                else "—"
            )
            lines.append(
                f"| {p.get(Key.N, '—')} | {format_bytes(p.get(Key.BYTES))} | {format_ms(local)} "
                f"| {format_ms(remote)} | {format_ms(p.get(Key.SERVER_COMPUTE_MS))} | {faster} |"
            )
    lines += ["", "### Transfer Throughput and Latency"]
    for label, check in (
        ("HTTP tensor transfer", HTTP_TENSOR_TRANSFER),
        ("Large tensor", LARGE_TENSOR_HANDLING),
    ):
        t = perf["transfer"][check.name]
        if t[Key.MIB_PER_S] is None:
            lines.append(f"- **{label}**: {NOT_MEASURED}")
            continue
        moved = (
            format_bytes(t[Key.BYTES])
            if t[Key.BYTES] is not None
            else (f"{t[Key.SIZE_MB]:g} MiB" if t[Key.SIZE_MB] is not None else "size not recorded")
        )
        round_trip = format_ms(t[Key.ROUND_TRIP_MS])
        lines.append(f"- **{label}**: {t[Key.MIB_PER_S]:.1f} MiB/s ({moved}, round trip {round_trip})")
    lines += [
        f"- **TCP connect latency (median)**: {format_ms(perf[Key.CONNECT_MS_MEDIAN])}",
        f"- **/health response**: {format_ms(perf['health_response_ms'])}",
        f"- **Server startup**: {format_ms(perf['server_startup_ms'])}",
        f"- **Server op round trip (median)**: {format_ms(perf['server_op_median_round_trip_ms'])}",
        f"- **Multi-op chain round trip**: {format_ms(perf['chain_round_trip_ms'])}",
        "",
    ]
    return lines


def _network_section(network: dict[str, Any] | None) -> list[str]:
    """The network baseline (``network.py``): the probe's rates, tensor transfer efficiency,
    and the remote time split into network, server work and the rest."""
    lines = ["### Network Baseline"]
    probe = (network or {}).get("probe") or {}
    up, down = probe.get(Key.UPLOAD_MIB_PER_S), probe.get(Key.DOWNLOAD_MIB_PER_S)
    if network is None or up is None or down is None:
        return [*lines, f"- **Probe throughput**: {NOT_MEASURED} ({NETWORK_THROUGHPUT.name} did not run)", ""]
    sizes = " and ".join(format_bytes(n) for n in probe[Key.PROBE_SIZES]) or "sizes not recorded"
    lines.append(
        f"- **Probe throughput** (`/probe`, no tensor work, {sizes} each way): upload {up:.1f} MiB/s, "
        f"download {down:.1f} MiB/s, round trip {probe['round_trip_mib_per_s']:.1f} MiB/s"
    )
    # The large tensor only: a bulk transfer like the probes.  A few-MiB one is not comparable
    # (on a busy host it can beat a long stream's rate; across a WAN its round trip dominates).
    large = network["efficiency"][LARGE_TENSOR_HANDLING.name]
    efficiency = (f"{large['efficiency']:.2f} ({large[Key.MIB_PER_S]:.1f} MiB/s for the large tensor)"
                  if large["efficiency"] is not None else NOT_MEASURED)
    lines.append(f"- **Tensor transfer efficiency** (tensor MiB/s ÷ probe round trip): {efficiency}")
    split = network["remote_split"]
    if split["network_ms"] is not None:
        n = int(split[Key.N]) if split[Key.N] is not None else "?"
        lines.append(
            f"- **Remote time split** ({n}×{n} `matmul`, {format_ms(split[Key.REMOTE_MS])}): network "
            f"{format_ms(split['network_ms'])} (RTT {format_ms(network['rtt_ms'])}, "
            f"{format_bytes(split[Key.BYTES_SENT])} up and {format_bytes(split[Key.BYTES_RECEIVED])} down "
            f"at the probe's rates), server work {format_ms(split[Key.SERVER_WORK_MS])} (`Server-Timing`), "
            f"client and HTTP {format_ms(split['client_and_http_ms'])}"
        )
    return [*lines, ""]


def _trend_cell(entry: dict[str, Any], metric: str) -> str:
    value = entry["metrics"].get(metric)
    if value is None:
        return "—"
    text = f"{value:.1f}"
    change = (entry.get("change") or {}).get(metric)
    if change and change.get("pct") is not None:
        text += f" ({change['pct']:+.1f}%)"
    return text


def _trend_section(trend: dict[str, Any]) -> list[str]:
    lines = ["## Trend Across Runs", ""]
    if not trend["earlier_sessions"]:
        lines += ["No earlier sessions found: this is the first run in the results folder.", ""]
    columns = [m for m, _, _ in TREND_METRICS]
    lines += [
        "| Session | Started | Tests | Pass rate | Δ pass rate | " + " | ".join(columns) + " |",
        "|" + "---|" * (5 + len(columns)),
    ]
    for entry in trend["sessions"]:
        name = f"**{entry['session']}** (this run)" if entry["current"] else entry["session"]
        rate = f"{entry['pass_rate']:.1f}%" if entry["pass_rate"] is not None else "—"
        delta = (entry.get("change") or {}).get("pass_rate_pts")
        cells = [
            _cell(name),
            _when(entry["started"]),
            str(entry["summary"]["total"]),
            rate,
            f"{delta:+.1f} pts" if delta is not None else "—",
        ]
        cells += [_trend_cell(entry, m) for m in columns]
        lines.append("| " + " | ".join(cells) + " |")
    for bad in trend["unreadable"]:
        lines.append(f"\nSkipped unreadable session {bad['session']}: {bad['reason']}")
    return [*lines, ""]


def render_markdown(report: dict[str, Any]) -> str:
    """The human-readable report, section by section as in the guide's example."""
    info = report["report_info"]
    lines = [
        "# Genie Test Analysis Report",
        "",
        f"Generated {info['generated_at']} by {info['generator']} from "
        + ", ".join(f"`{Path(p).name}`" for p in info["sources"])
        + ".",
        "",
    ]
    lines += _session_section(report)
    lines += _summary_section(report["overall_summary"])
    lines += _side_section(
        "Server-Side Results", report["server_side"], "run `pytest -m server` on the server"
    )
    lines += _side_section(
        "Client-Side Results", report["client_side"], "run `pytest -m client --genie-server=HOST` on a client"
    )
    lines += _performance_section(report)
    lines += _network_section(report.get("network"))
    lines += _decode_section(report["performance"].get(LLM_DECODE_COLOCATION.name))
    lines += ["## Recommendations", ""]
    lines += [f"{i}. {rec['text']}" for i, rec in enumerate(report["recommendations"], 1)] or ["None."]
    lines += [""]
    lines += _trend_section(report["trend"])
    return "\n".join(lines)


def _decode_section(decode: dict[str, Any] | None) -> list[str]:
    """The decode check: a KV cache kept on the server as handles vs shipped every step."""
    lines = ["### LLM Decode Co-location"]
    if decode is None:
        return [*lines, f"- **KV cache kept vs shipped**: {NOT_MEASURED}", ""]
    steps, match = decode[Key.STEPS], decode[Key.TOKENS_MATCH_EAGER]
    lines += [
        f"{int(steps) if steps else NOT_MEASURED} greedy decode steps of a "
        f"{int(decode['layers']) if decode['layers'] else '?'}-layer GPT-2-style model after a "
        f"{int(decode[Key.PROMPT_TOKENS]) if decode[Key.PROMPT_TOKENS] else '?'}-token prompt "
        f"({decode['status']}; tokens equal eager: {'yes' if match else 'no' if match is False else '?'}); "
        f"final KV cache {format_bytes(decode[Key.KV_CACHE_BYTES])}.",
        "",
        "| KV cache | requests per step | sent | received | per step, both ways | median step | total |",
        "|---|---|---|---|---|---|---|",
    ]
    for label, key in (("kept on the server", Key.KV_KEPT), ("shipped each step", Key.KV_SHIPPED)):
        w = decode[key]
        per = w[Key.REQUESTS_PER_STEP]
        lines.append(
            f"| {label} | {f'{per:g}' if per is not None else NOT_MEASURED} "
            f"| {format_bytes(w[Key.BYTES_SENT])} | {format_bytes(w[Key.BYTES_RECEIVED])} "
            f"| {format_bytes(w['bytes_per_step'])} "
            f"| {format_ms(w[Key.STEP_MS_MEDIAN])} | {format_ms(w[Key.TOTAL_MS])} |"
        )
    ratio, saved, faster = decode[Key.BYTES_RATIO], decode[Key.BYTES_SAVED_PCT], decode[Key.TIME_RATIO]
    lines += [
        "",
        "- **Co-location saves**: "
        + (f"{format_pct(saved)} of the bytes ({ratio:.2f}× fewer)" if ratio is not None else NOT_MEASURED)
        + (f"; shipping the cache makes the median step {faster:.2f}× as long" if faster is not None else ""),
        "",
    ]
    return lines
