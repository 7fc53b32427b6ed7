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
    CHECKS,
    ERROR_HANDLING,
    GPU_DETECTION,
    LARGE_TENSOR_HANDLING,
    LLM_DECODE_COLOCATION,
    NETWORK_THROUGHPUT,
    Key,
)
from pytest_genie.report.analysis import base_name
from pytest_genie.report.charts import CHARTS
from pytest_genie.report.figures import LOCAL_FASTER, NO_CLEAR_DIFFERENCE, disturbance_text
from pytest_genie.report.formatting import NOT_MEASURED, format_bytes, format_ms, format_pct
from pytest_genie.report.inputs import parse_time
from pytest_genie.report.tables import (
    Table,
    comparison_table,
    concurrency_table,
    fleet_table,
    servers_table,
    sweep_table,
    trend_table,
)
from pytest_genie.report.where import where_label
from pytest_genie.results import STATUS_SYMBOLS

__all__ = ["KEY_DETAILS", "key_details", "on_gpu", "render_markdown", "render_table"]

STATUS_EMOJI = STATUS_SYMBOLS

# The details worth a table cell, per documented test (the rest stay in the JSON).
KEY_DETAILS: dict[str, tuple[str, ...]] = {
    check.name: check.figures for check in (*CHECKS, NETWORK_THROUGHPUT)
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
    disturbed = disturbance_text(details.get(Key.DISTURBED))
    if disturbed:
        parts.append(f"⚠ disturbed: {disturbed}")
    if test["name"] == ERROR_HANDLING.name and isinstance(details.get(Key.CASES), dict):
        cases = details[Key.CASES].values()
        ok = sum(
            1 for c in cases if isinstance(c, dict) and c.get(Key.CASE_STATUS) == c.get(Key.EXPECTED_STATUS)
        )
        parts.insert(0, f"{ok}/{len(details[Key.CASES])} cases as documented")
    if not parts and details.get(Key.TEXT):
        parts.append(str(details[Key.TEXT])[:300])
    return ", ".join(parts) or "—"


def _side_section(title: str, side: dict[str, Any] | None, how_to_get: str,
                  where: str | None = None, level: str = "##", per_test: bool = True) -> list[str]:
    """A side's counts and (``per_test``) its table of checks; a fleet's top-level sections have
    only the counts, since one check's name would stand for several servers' records."""
    lines = [f"{level} {title}", ""]
    if side is None:
        return [*lines, f"No results for this side in this report ({how_to_get}).", ""]
    if where:
        lines += [f"Figures measured {where}.", ""]
    s = side["summary"]
    rate = f"{s['success_rate']:.1f}%" if s["success_rate"] is not None else NOT_MEASURED
    lines += [
        f"{s['total']} tests: {s['passed']} passed, {s['failed']} failed, {s['skipped']} skipped, "
        f"{s['errors']} errors — success rate {rate} (total test time {format_ms(side['total_time_ms'])}).",
        "",
    ]
    if not per_test:
        return [*lines, "Each server's checks are in its section under Servers.", ""]
    lines += [
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


def render_table(table: Table | None) -> list[str]:
    if table is None:
        return []
    lines = [f"#### {table.title}", "", "| " + " | ".join(table.headers) + " |",
             "|" + "---|" * len(table.headers)]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in table.rows]
    if table.note:
        lines += ["", table.note]
    return [*lines, ""]


def on_gpu(report: dict[str, Any]) -> bool:
    return ran_on_gpu(report["performance"], report["session_info"]["gpu"])


def ran_on_gpu(perf: dict[str, Any], gpu: dict[str, Any]) -> bool:
    """Whether one server's figures are GPU time: its recorded device, else what its files say."""
    device = str(perf.get("server_device") or "")
    return device.startswith("cuda") or (not device and gpu.get(Key.CUDA_AVAILABLE) is True)


def _chart(report: dict[str, Any], name: str) -> list[str]:
    charts = report.get("charts") or {}
    if name in charts.get("files", {}):
        return [f"![{CHARTS[name]}]({charts['files'][name]})", ""]
    return []


def _guide_lines(perf: dict[str, Any], gpu: bool, level: str = "###") -> list[str]:
    """The guide's example lines, with the verdict on the spreads where the guide had a sign, each
    figure with where it was measured (the server's time may be the server node's own)."""
    measured = perf.get("measured") or {}
    client_where = where_label(measured.get("client"))
    device = str(perf.get("server_device") or "")
    kind = "GPU" if gpu else ("CPU" if device else "Device")
    where = "" if gpu or not device else f" ({device})"
    overhead = format_ms(perf[Key.NETWORK_OVERHEAD_MS])
    if perf["network_overhead_pct_of_server"] is not None:
        basis = kind if kind != "Device" else "device"
        overhead += f" ({format_pct(perf['network_overhead_pct_of_server'])} of {basis} time)"
    total = format_ms(perf["total_overhead_ms"])
    verdict = perf["headline"][Key.VERDICT]
    if verdict == NO_CLEAR_DIFFERENCE:
        total += " (no clear difference from local CPU: the interquartile ranges overlap)"
    elif perf["total_overhead_pct_vs_local"] is not None and verdict is not None:
        pct = perf["total_overhead_pct_vs_local"]
        word = "slower" if verdict == LOCAL_FASTER else "faster"
        total += f" ({format_pct(abs(pct))} {word} than local CPU)"
    lines = [f"{level} Network vs GPU Performance"]
    if perf.get(Key.N):
        n = int(perf[Key.N])
        lines.append(f"Measured on {n}×{n} fp32 `{perf.get(Key.OP) or 'op'}` (medians).")
    if not gpu and device:
        lines.append(f"The server ran on {device}, not a GPU: its figures are CPU time.")
    elif not gpu:
        lines.append("The server's device was not recorded (run server_connectivity or the server "
                     "checks): its figures are device time.")
    lines += [
        f"- **Server {kind} Time{where}**: {format_ms(perf['server_time_ms'])}",
        f"- **Client Remote Time**: {format_ms(perf['client_remote_ms'])}",
        f"- **Network Overhead**: {overhead}",
    ]
    if perf["server_time_basis"]:
        lines.append(f"- Server time from `{perf['server_time_basis']}`")
    # Where each figure was measured, under the figures (a bullet holds its figure and nothing else).
    if perf["server_time_basis"] == f"{GPU_DETECTION.name}.{Key.GPU_TIME_MS}":
        server_where = where_label(measured.get("server"))
        lines += ["", f"Server {kind} Time measured on the server node, {server_where}; "
                  f"Client Remote Time {client_where}."]
    elif perf["server_time_basis"]:
        lines += ["", f"Server {kind} Time is the Server-Timing of the client's own requests: both figures "
                  f"measured {client_where}."]
    if measured.get("overhead_across_paths"):
        lines.append(f"⚠ The Network Overhead {measured['overhead_across_paths']}: not one path's figure.")
    lines += [
        "",
        f"{level} End-to-End Performance",
        f"- **Client CPU Baseline**: {format_ms(perf['client_cpu_baseline_ms'])}",
        f"- **Remote {kind} Execution{where}**: {format_ms(perf['client_remote_ms'])}",
        f"- **Total Overhead**: {total}",
        "",
        f"Client CPU Baseline measured on the client host; Remote {kind} Execution {client_where}.",
        "",
    ]
    return lines


def _paths_lines(perf: dict[str, Any]) -> list[str]:
    """Where this section's figures were measured: the client checks' path and the server node's."""
    measured = perf.get("measured") or {}
    lines = [f"Where measured: client checks {where_label(measured.get('client'))}"]
    if measured.get("server"):
        lines[0] += f"; server checks on the server node, {where_label(measured['server'])}"
    lines[0] += (". A figure is compared only with figures of its own path; one that mixes the two says so."
                 if measured.get("server") and not measured.get("same_path") else ".")
    return [*lines, ""]


def _performance_section(report: dict[str, Any]) -> list[str]:
    perf = report["performance"]
    lines = ["## Performance Analysis", ""]
    if len(report.get("servers", [])) > 1:
        lines += [f"Several servers were measured; this section describes {perf['server']}, the per-server "
                  "table below compares them all.", ""]
    lines += _paths_lines(perf)
    lines += _guide_lines(perf, on_gpu(report))
    claims = report["claims"]
    lines += ["### Measured Figures", ""]
    lines += [f"- {c['text']}" for c in claims if c["topic"] == "headline"] or [f"- {NOT_MEASURED}"]
    lines += ["", "### Break-even Size"]
    be = [c["text"] for c in claims if c["topic"] == "break_even"]
    lines += [f"- {be[0]}" if be else f"- **Break-even**: {NOT_MEASURED}", ""]
    lines += render_table(sweep_table(perf))
    lines += _chart(report, "latency")
    server_node = f", {where_label((perf.get('measured') or {}).get('server'))}"
    lines += ["### Transfer Throughput and Latency"]
    lines += [f"- {c['text']}" for c in claims if c["topic"] in ("transfer", "lazy")]
    lines += [
        f"- **TCP connect latency (median)**: {format_ms(perf[Key.CONNECT_MS_MEDIAN])}",
        f"- **/health response**: {format_ms(perf['health_response_ms'])}",
        f"- **Server startup**: {format_ms(perf['server_startup_ms'])}",
        f"- **Server op round trip (median)**: {format_ms(perf['server_op_median_round_trip_ms'])}",
        f"- **Multi-op chain round trip**: {format_ms(perf['chain_round_trip_ms'])}",
        "",
        f"Server startup and server op round trip measured on the server node{server_node}; the others "
        f"{where_label((perf.get('measured') or {}).get('client'))}.",
        "",
    ]
    lines += _chart(report, "throughput")
    conc = [c["text"] for c in claims if c["topic"] == "concurrency"]
    if conc or perf.get("concurrency"):
        lines += ["### Concurrency", ""] + [f"- {t}" for t in conc] + [""]
        lines += render_table(concurrency_table(perf))
        lines += _chart(report, "concurrency")
    lines += render_table(servers_table(report.get("servers", [])))
    charts = report.get("charts") or {}
    if charts.get("missing"):
        lines += [f"**Charts**: {charts['missing']}", ""]
    return lines


def _comparison_section(comparison: dict[str, Any] | None) -> list[str]:
    if not comparison:
        return []
    lines = ["## Comparison with Baseline", ""]
    thresholds = ", ".join(f"{m}:{p:g}%" for m, p in comparison["thresholds"].items()) or "none (report only)"
    lines += [f"Baseline: `{comparison.get('baseline_folder', comparison['baseline'])}`; thresholds: "
              f"{thresholds}.", ""]
    lines += [f"- **Regression**: {line}" for line in comparison["regressions"]]
    if comparison["regressions"]:
        lines.append("")
    return lines + render_table(comparison_table(comparison))


def _network_section(network: dict[str, Any] | None, level: str = "###") -> list[str]:
    """The network baseline (``network.py``): the probe's rates, tensor transfer efficiency,
    and the remote time split into network, server work and the rest."""
    lines = [f"{level} Network Baseline"]
    if network and network.get("measured"):
        lines.append(f"Measured {where_label(network['measured'])}.")
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


def _servers_section(report: dict[str, Any]) -> list[str]:
    """A fleet (several servers): the fleet table, then one section per server with its own checks
    and figures, each labelled with where it was measured."""
    servers = report.get("servers", [])
    if len(servers) < 2:
        return []
    lines = ["## Servers", "", f"{len(servers)} servers were measured; each has its section below.", ""]
    lines += render_table(fleet_table(servers))
    for s in servers:
        lines += [f"### Server {s['id']}: {s['result']}", ""]
        lines += [f"- **URL**: {s['server'] or NOT_MEASURED}"]
        lines += [f"- **Failed**: {f['name']} ({f['status']}): {_cell(f['reason'])[:300]}"
                  for f in s["failures"]]
        lines += [""] + _paths_lines(s["performance"])
        lines += _side_section(f"Server-side checks of {s['id']}", s["server_side"], "no server checks ran",
                               where_label(s["measured"]["server"]), level="####")
        lines += _side_section(f"Client-side checks of {s['id']}", s["client_side"], "no client checks ran",
                               where_label(s["measured"]["client"]), level="####")
        lines += _guide_lines(s["performance"], ran_on_gpu(s["performance"], s["gpu"]), level="####")
        lines += _network_section(s["network"], level="####")
    return lines


def _trend_section(report: dict[str, Any]) -> list[str]:
    trend = report["trend"]
    lines = ["## Trend Across Runs", ""]
    if not trend["earlier_sessions"]:
        lines += ["No earlier sessions found: this is the first run in the results folder.", ""]
    lines += [
        "| Session | Started | Sides | Tests | Pass rate | Δ pass rate (vs same sides and hosts) |",
        "|---|---|---|---|---|---|",
    ]
    for entry in trend["sessions"]:
        name = f"**{entry['session']}** (this run)" if entry["current"] else entry["session"]
        rate = f"{entry['pass_rate']:.1f}%" if entry["pass_rate"] is not None else "—"
        delta = (entry.get("change") or {}).get("pass_rate_pts")
        cells = [_cell(name), _when(entry["started"]), "+".join(entry["sides"]) or "—",
                 str(entry["summary"]["total"]), rate, f"{delta:+.1f} pts" if delta is not None else "—"]
        lines.append("| " + " | ".join(cells) + " |")
    lines.append("")
    for bad in trend["unreadable"]:
        lines += [f"Skipped unreadable session {bad['session']}: {bad['reason']}", ""]
    lines += render_table(trend_table(trend, report["performance"].get(Key.N)))
    lines += _chart(report, "trend")
    return lines


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
    several = len(report.get("servers", [])) > 1
    perf_where = report["performance"].get("measured") or {}
    lines += _side_section(
        "Server-Side Results", report["server_side"], "run `pytest -m server` on the server",
        "on each server node (see each server's section)" if several
        else where_label(perf_where.get("server")), per_test=not several,
    )
    lines += _side_section(
        "Client-Side Results", report["client_side"],
        "run `pytest -m client --genie-server=HOST` on a client",
        "against several servers (see each server's section)" if several
        else where_label(perf_where.get("client")), per_test=not several,
    )
    lines += _servers_section(report)
    lines += _performance_section(report)
    lines += _network_section(report.get("network"))
    lines += _decode_section(report["performance"].get(LLM_DECODE_COLOCATION.name))
    lines += _comparison_section(report.get("comparison"))
    lines += ["## Recommendations", ""]
    lines += [f"{i}. {rec['text']}" for i, rec in enumerate(report["recommendations"], 1)] or ["None."]
    lines += [""]
    lines += _trend_section(report)
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
