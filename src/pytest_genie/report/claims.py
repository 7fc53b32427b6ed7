"""The report's sentences about performance, each stating only what its numbers show.

Rules every sentence here keeps (``tests/unit/pytest_genie/report/test_claims.py`` parses the
written report and holds each sentence to its own tables):

* a figure is its median with its interquartile range and count, and says when its stabilisation
  loop hit a cap ("not stable") or when the client was disturbed during its check;
* "faster"/"slower" only where the interquartile ranges do not overlap, otherwise "no clear
  difference";
* nothing about sizes the sweep did not measure: the break-even size is a measured size, and
  "none in the measured range (up to X)" names the largest one;
* "dominates" only past a stated ratio (:data:`DOMINATES_RATIO` either way).

Each claim is ``{"topic", "text"}``; the Markdown and the HTML render the same texts.
"""

from __future__ import annotations

from typing import Any

from pytest_genie.checks import (
    CONCURRENCY_SWEEP,
    HTTP_TENSOR_TRANSFER,
    LARGE_TENSOR_HANDLING,
    Key,
)
from pytest_genie.report.figures import (
    LOCAL_FASTER,
    NO_CLEAR_DIFFERENCE,
    REMOTE_FASTER,
    Figure,
    disturbance_text,
    rows_with,
)
from pytest_genie.report.formatting import format_bytes, format_ms, format_spread, format_value

__all__ = ["DOMINATES_RATIO", "device_label", "disturbed_note", "figure_text", "performance_claims",
           "verdict_text"]

#: Overhead above this multiple of the server compute: the wire dominates; below its inverse:
#: the device dominates; in between, neither does.
DOMINATES_RATIO = 2.0

VERDICT_WORDS = {REMOTE_FASTER: "remote faster", LOCAL_FASTER: "local faster",
                 NO_CLEAR_DIFFERENCE: "no clear difference"}


def verdict_text(verdict: str | None) -> str:
    return VERDICT_WORDS.get(verdict or "", "—")


def figure_text(data: dict[str, Any] | None, unit: str = "ms") -> str:
    """``4.8ms (IQR 4.6ms-5.1ms, n=15)``, from a ``Figure.to_dict``."""
    fig = Figure.from_dict(data)
    if fig is None:
        return "not measured"
    return f"{format_value(fig.value, unit)} ({format_spread(fig.spread, unit)})"


def disturbed_note(disturbed: dict[str, Any] | None) -> str:
    """`` ⚠ disturbed: 1 retry (the client retried, reconnected or timed out during the check).``"""
    text = disturbance_text(disturbed)
    return "" if text is None else (f" ⚠ Disturbed: {text} during this check, so these figures "
                                    "include recovery time; rerun before relying on them.")


def device_label(device: Any, on_gpu: bool) -> str:
    """What the server's compute time is: GPU time, CPU time, or unknown device time."""
    if on_gpu:
        return "GPU time"
    if device is None:
        return "device time: the server's device was not recorded"
    return f"CPU time: the server computes on {device}, not a GPU"


def _headline(perf: dict[str, Any], on_gpu: bool) -> list[str]:
    n = perf.get(Key.N)
    head = perf["headline"]
    local, remote, compute = (Figure.from_dict(head[k]) for k in ("local", "remote", "compute"))
    if n is None or local is None or remote is None:
        return []
    at = f"at n={int(n)}"
    out = [f"Local CPU {at}: {figure_text(head['local'])}.",
           f"Remote round trip {at}: {figure_text(head['remote'])}."]
    if compute is not None:
        out.append(f"Server compute {at} ({device_label(perf.get('server_device'), on_gpu)}): "
                   f"{figure_text(head['compute'])}.")
    ratio, overhead = perf.get("network_overhead_ratio"), perf.get(Key.NETWORK_OVERHEAD_MS)
    if ratio is not None and overhead is not None and compute is not None:
        if ratio > DOMINATES_RATIO:
            judged = f"above {DOMINATES_RATIO:g}x, so the wire, not the device, dominates"
        elif ratio < 1 / DOMINATES_RATIO:
            judged = f"below {1 / DOMINATES_RATIO:g}x, so the device, not the wire, dominates"
        else:
            judged = f"between {1 / DOMINATES_RATIO:g}x and {DOMINATES_RATIO:g}x, so neither dominates"
        out.append(f"Network and serialisation overhead {at}: {format_ms(overhead)}, {ratio:.3g}x the "
                   f"server compute: {judged}.")
    total, pct = perf.get("total_overhead_ms"), perf.get("total_overhead_pct_vs_local")
    if head[Key.VERDICT] == NO_CLEAR_DIFFERENCE or total is None:
        out.append(f"Remote vs local CPU {at}: no clear difference: the interquartile ranges overlap "
                   f"(remote {format_ms(remote.value)} vs local {format_ms(local.value)}).")
    else:
        word = "slower" if head[Key.VERDICT] == LOCAL_FASTER else "faster"
        share = f" ({abs(pct):.0f}%)" if pct is not None else ""
        out.append(f"Remote vs local CPU {at}: remote is {format_ms(abs(total))}{share} {word}; the "
                   "interquartile ranges do not overlap.")
    return out


def _break_even(be: dict[str, Any]) -> str | None:
    if not be.get("points"):
        return None
    largest = f"n={be['largest_swept_n']}, {format_bytes(be.get('largest_swept_bytes'))}"
    basis = "" if be.get("spread_recorded") else " (no spread recorded: judged on single numbers)"
    if be.get(Key.BREAK_EVEN_N) is not None:
        return (f"Break-even: n={be[Key.BREAK_EVEN_N]} ({format_bytes(be.get(Key.BREAK_EVEN_BYTES))}): from "
                f"this size up to the largest measured ({largest}) remote was clearly faster at every "
                f"measured size{basis}.")
    everywhere = all(r[Key.VERDICT] == LOCAL_FASTER for r in be["rows"] if r[Key.VERDICT])
    tail = "remote was clearly slower at every measured size" if everywhere else \
        "remote was not clearly faster from any measured size onward"
    return f"Break-even: none in the measured range (up to {largest}): {tail}{basis}."


def _transfer(label: str, t: dict[str, Any]) -> str | None:
    if t.get(Key.MIB_PER_S) is None:
        return f"{label}: not measured."
    moved = format_bytes(t[Key.BYTES]) if t.get(Key.BYTES) is not None else "size not recorded"
    return (f"{label}: {figure_text(t[Key.MIB_PER_S], 'MiB/s')}, {moved} each way, round trip "
            f"{figure_text(t.get(Key.ROUND_TRIP_MS))}.{disturbed_note(t.get('disturbed'))}")


def _concurrency(conc: dict[str, Any] | None) -> list[str]:
    if not conc or not conc["curves"]:
        return []
    out = []
    for payload, rows in conc["curves"].items():
        rated = rows_with(rows, Key.THROUGHPUT_RPS)
        if not rated:
            continue
        first, first_fig = rated[0]
        peak, peak_fig = max(rated, key=lambda rf: rf[1].value)
        size = f", {format_bytes(first[Key.BYTES])}" if first.get(Key.BYTES) is not None else ""
        clients = "client" if first[Key.CONCURRENCY] == 1 else "clients"
        out.append(f"Concurrency ({payload}{size}): {first_fig.value:.0f} req/s at {first[Key.CONCURRENCY]} "
                   f"{clients} (p50 {format_ms(first[Key.P50_MS])}, p95 {format_ms(first[Key.P95_MS])}); "
                   f"highest {peak_fig.value:.0f} req/s at {peak[Key.CONCURRENCY]} clients "
                   f"(p50 {format_ms(peak[Key.P50_MS])}, p95 {format_ms(peak[Key.P95_MS])}).")
    if conc.get(Key.SAME_PROCESS):
        out.append(f"{CONCURRENCY_SWEEP.name} ran its clients in the server's own process (the embedded "
                   "server): one interpreter lock is shared, so the curve shows that process's limit, "
                   "not the server's.")
    note = disturbed_note(conc.get("disturbed"))
    if note and out:
        out[-1] += note
    return out


def performance_claims(perf: dict[str, Any], on_gpu: bool) -> list[dict[str, str]]:
    """Every sentence of the performance section, in reading order."""
    out: list[dict[str, str]] = []

    def add(topic: str, text: str | None) -> None:
        if text:
            out.append({"topic": topic, "text": text})

    for text in _headline(perf, on_gpu):
        add("headline", text)
    if perf.get("disturbed") and out:
        out[-1]["text"] += disturbed_note(perf["disturbed"])
    add("break_even", _break_even(perf["break_even"]))
    add("transfer", _transfer("HTTP tensor transfer", perf["transfer"][HTTP_TENSOR_TRANSFER.name]))
    add("transfer", _transfer("Large tensor transfer", perf["transfer"][LARGE_TENSOR_HANDLING.name]))
    lazy = perf["lazy"]
    if lazy[Key.ROUND_TRIP_MS] is not None:
        first = lazy.get(Key.FIRST_CALL_MS)
        first_text = f"first call {format_ms(first)} (set-up included); " if first is not None else ""
        add("lazy", f"LazyTensor: {first_text}steady state {figure_text(lazy[Key.ROUND_TRIP_MS])}."
            + disturbed_note(lazy.get("disturbed")))
    for text in _concurrency(perf.get("concurrency")):
        add("concurrency", text)
    return out
