"""The report's data tables, built once and rendered by both the Markdown and the HTML.

A :class:`Table` is plain text cells; ``markdown.py`` writes it with pipes and ``html.py`` as a
``<table>``, so the two files can never show different numbers.  Figure cells read
``median [q1-q3]`` (``~`` marks a figure whose stabilisation loop hit its cap, ``⚠`` one
measured while the client was disturbed), the form the claims test parses.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pytest_genie.checks import Key
from pytest_genie.report.claims import verdict_text
from pytest_genie.report.figures import Figure, disturbance_text
from pytest_genie.report.formatting import NOT_MEASURED, format_bytes, format_value
from pytest_genie.report.where import where_label

__all__ = ["Table", "comparison_table", "concurrency_table", "figure_cell", "fleet_table", "servers_table",
           "sweep_table", "trend_table"]

#: How much of the first failure's reason a fleet row shows (the section below has all of it).
REASON_CHARS = 160


@dataclass
class Table:
    """A titled table of text cells; ``note`` is a sentence shown under it."""

    title: str
    headers: list[str]
    rows: list[list[str]] = field(default_factory=list)
    note: str | None = None
    #: The HTML id (``table-<name>``) tests and readers can find it by.
    name: str = ""


def figure_cell(data: dict[str, Any] | None, unit: str = "ms") -> str:
    """``4.8ms [4.6ms-5.1ms]``; ``~`` when not stable; ``⚠`` when disturbed; "—" when absent."""
    fig = Figure.from_dict(data)
    if fig is None:
        return "—"
    text = format_value(fig.value, unit)
    if fig.spread is not None:
        text += f" [{format_value(fig.spread.q1, unit)}-{format_value(fig.spread.q3, unit)}]"
    if fig.stable is False:
        text += " ~"
    if fig.disturbed:
        text += " ⚠"
    return text


def sweep_table(perf: dict[str, Any]) -> Table | None:
    rows = perf["break_even"]["rows"]
    if not rows:
        return None
    table = Table("Sweep: local CPU vs remote (median [interquartile range])",
                  ["n", "size", "local CPU", "remote", "server compute", "verdict"], name="sweep")
    for r in rows:
        table.rows.append([str(r[Key.N]), format_bytes(r[Key.BYTES]), figure_cell(r["local"]),
                           figure_cell(r["remote"]), figure_cell(r["compute"]), verdict_text(r[Key.VERDICT])])
    table.note = ("verdict: which side is clearly faster; \"no clear difference\" where the interquartile "
                  "ranges overlap. ~ = did not stabilise within the cap.")
    if perf.get("disturbed"):
        table.note += f" ⚠ = measured while the client was disturbed ({disturbance_text(perf['disturbed'])})."
    return table


def concurrency_table(perf: dict[str, Any]) -> Table | None:
    conc = perf.get("concurrency")
    if not conc or not conc["curves"]:
        return None
    table = Table("Concurrency sweep", ["payload", "clients", "requests", "errors", "throughput",
                                        "p50", "p95"], name="concurrency")
    for payload, rows in conc["curves"].items():
        for r in rows:
            table.rows.append([payload, str(r[Key.CONCURRENCY]), _int(r[Key.REQUESTS]), _int(r[Key.ERRORS]),
                               figure_cell(r[Key.THROUGHPUT_RPS], "req/s"),
                               format_value(r[Key.P50_MS], "ms"), format_value(r[Key.P95_MS], "ms")])
    window = conc.get(Key.WINDOW_S)
    table.note = (f"Each level ran for a fixed {window:g} s window; throughput is requests completed per "
                  "second, [q1-q3] across its sub-windows." if window else None)
    return table


def _int(value: Any) -> str:
    return "—" if value is None else str(int(value))


def comparison_table(comparison: dict[str, Any] | None) -> Table | None:
    if not comparison:
        return None
    table = Table(f"Comparison with baseline {comparison['baseline']}",
                  ["metric", "where", "baseline", "now", "worse by", "threshold", "verdict"],
                  name="comparison")
    for row in comparison["rows"]:
        pct = row["worse_pct"]
        table.rows.append([row["metric"], row["where"] or "—", figure_cell(row["baseline"], row["unit"]),
                           figure_cell(row["current"], row["unit"]),
                           "—" if pct is None else f"{pct:+.1f}%",
                           "—" if row["threshold_pct"] is None else f"{row['threshold_pct']:g}%",
                           row["verdict"] + ("" if row["noise_known"] else " (no spread recorded)")])
    notes = []
    if comparison["regressions"]:
        notes.append(f"{len(comparison['regressions'])} regression(s) past the threshold and the noise.")
    if comparison["not_compared"]:
        notes.append("No figure in both sessions for: " + ", ".join(comparison["not_compared"]) + ".")
    if not comparison["rows"]:
        notes.append("No figure of this session has a comparable one (same check, place, device and "
                     "hosts) in the baseline.")
    table.note = " ".join(notes) or None
    return table


def servers_table(servers: list[dict[str, Any]]) -> Table | None:
    """One row per server measured: shown only when there are several."""
    if len(servers) < 2:
        return None
    table = Table("Per server", ["server", "device", "remote at headline n", "break-even",
                                 "HTTP transfer", "large transfer", "peak throughput"], name="servers")
    for s in servers:
        table.rows.append([s["server"] or "unknown", str(s["device"] or NOT_MEASURED),
                           figure_cell(s["remote"]), s["break_even"],
                           figure_cell(s["http_mib_per_s"], "MiB/s"),
                           figure_cell(s["large_mib_per_s"], "MiB/s"), figure_cell(s["peak_rps"], "req/s")])
    return table


def _result_cell(server: dict[str, Any]) -> str:
    """``PASS``, or ``FAIL`` with how many checks failed and why the first did."""
    failed = server["failures"]
    if not failed:
        return str(server["result"])
    first = failed[0]
    reason = str(first["reason"])
    if len(reason) > REASON_CHARS:
        reason = reason[: REASON_CHARS - 3] + "..."
    total = server["summary"]["total"]
    return f"{server['result']}: {len(failed)} of {total} checks; {first['name']}: {reason}"


def _health_cell(health: dict[str, Any]) -> str:
    status = health["status"]
    if status is None:
        return "not checked"
    if status != "PASS":
        return f"{status} (unhealthy or unreachable)"
    version = health.get(Key.GENIE_VERSION)
    return f"healthy {figure_cell(health[Key.RESPONSE_MS])}" + (f", genie {version}" if version else "")


def _gpu_cell(gpu: dict[str, Any]) -> str:
    device = gpu.get(Key.DEVICE) or ("cuda" if gpu.get(Key.CUDA_AVAILABLE) else
                                     "cpu" if gpu.get(Key.CUDA_AVAILABLE) is False else None)
    if device is None:
        return NOT_MEASURED
    return f"{device} ({gpu[Key.GPU_NAME]})" if gpu.get(Key.GPU_NAME) else str(device)


def _rate(value: Any) -> str:
    return "—" if value is None else f"{value:.1f}"


def fleet_table(servers: list[dict[str, Any]]) -> Table | None:
    """One row per server of a fleet (``servers.entry``): did it pass, and its link's figures."""
    if len(servers) < 2:
        return None
    table = Table("Fleet", ["server", "result", "health", "GPU", "RTT", "probe up / down",
                            "large transfer", "efficiency", "client checks measured"], name="fleet")
    for s in servers:
        through = s["throughput"]
        up, down = through[Key.UPLOAD_MIB_PER_S], through[Key.DOWNLOAD_MIB_PER_S]
        probe = "—" if up is None and down is None else f"{_rate(up)} / {_rate(down)} MiB/s"
        efficiency = s["efficiency"]
        where = where_label(s["measured"]["client"])
        table.rows.append([s["id"], _result_cell(s), _health_cell(s["health"]), _gpu_cell(s["gpu"]),
                           figure_cell(s["rtt_ms"]), probe, figure_cell(through["large_mib_per_s"], "MiB/s"),
                           "—" if efficiency is None else f"{efficiency:.2f}", where])
    table.note = ("RTT: median TCP connect time; probe: /probe MiB/s without tensor work; efficiency: large "
                  "tensor MiB/s ÷ the probe's round-trip MiB/s. Every figure of a row was measured from "
                  "the client host its last column names, against that server.")
    return table


def trend_table(trend: dict[str, Any], headline_n: Any = None) -> Table | None:
    """Each headline figure's latest value and its change against its previous comparable one
    (every sweep size and concurrency level is in the JSON; here: the headline size and one
    client)."""
    keep = {"", f"n={int(headline_n)}" if headline_n is not None else ""}
    series = [s for s in trend.get("series", []) if s["where"] in keep or s["where"].endswith(" x1")]
    if not series:
        return None
    table = Table("Figures across sessions (like with like)",
                  ["figure", "where", "context", "sessions", "latest", "change vs previous"], name="trend")
    for s in series:
        last = s["points"][-1]
        change = last.get("change")
        moved = "first measurement" if change is None else (
            f"{change['pct']:+.1f}% ({change['label']})" if change["pct"] is not None else change["label"])
        table.rows.append([s["label"], s["where"] or "—", s["context"], str(len(s["points"])),
                           figure_cell(last["figure"], s["unit"]), moved])
    table.note = ("A change is against the previous session with the same check, place, server device "
                  "and hosts; \"within noise\" where the two interquartile ranges overlap.")
    return table
