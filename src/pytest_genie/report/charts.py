"""The report's charts, as SVG: latency vs size, throughput vs size, the concurrency curve, the trend.

Why matplotlib, drawing SVG: a CI artifact is opened days later, offline, from a zip file, often
in a viewer that runs no script.  matplotlib's SVG is plain vector markup with its text kept as
text (``svg.fonttype: none``): it embeds inline in one self-contained HTML page with no
JavaScript at all, shows as an image in Markdown viewers, diffs as text, and the library is a
wheel on every platform CI uses.  plotly's offline HTML needs several MB of JavaScript per page
and pygal's interactivity loads scripts; neither suits a static artifact.  matplotlib is used
through ``matplotlib.figure.Figure`` only (never pyplot), so no global figure state or GUI
backend is touched inside a pytest process.

matplotlib is the ``report`` extra: without it the report is still written, and says how to get
the charts (:data:`MISSING_HINT`).
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable
from typing import Any

from pytest_genie.checks import HTTP_TENSOR_TRANSFER, LARGE_TENSOR_HANDLING, NETWORK_THROUGHPUT, Key
from pytest_genie.report.figures import Figure, rows_with

__all__ = ["CHARTS", "MISSING_HINT", "chart_file", "charts_available", "inline_svg", "render_charts",
           "trend_series"]

MISSING_HINT = ("Charts need matplotlib, which is not installed: pip install 'pytest-genie[report]' "
                "(or pip install matplotlib), then rerun `genie-report` on this folder.")

#: Every chart: its name (file ``chart_<name>.svg``, HTML id ``chart-<name>``) and its title.
CHARTS: dict[str, str] = {
    "latency": "Latency vs size (matmul, median with interquartile range)",
    "throughput": "Throughput vs size",
    "concurrency": "Throughput vs latency under concurrency",
    "trend": "Trend across sessions",
}
COLORS = {"local": "#1f77b4", "compute": "#2ca02c", "remote": "#d62728"}
LABELS = {"local": "local CPU", "compute": "server compute", "remote": "remote round trip"}


def chart_file(name: str) -> str:
    return f"chart_{name}.svg"


def charts_available() -> bool:
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return False
    return True


def _errorbar(ax: Any, xs: list[float], figs: list[Figure], marker: str = "o", **style: Any) -> None:
    values = [f.value for f in figs]
    low = [f.value - f.low for f in figs]
    high = [f.high - f.value for f in figs]
    ax.errorbar(xs, values, yerr=[low, high], capsize=3, marker=marker, markersize=4, **style)


def _latency(report: dict[str, Any], ax: Any) -> bool:
    be = report["performance"]["break_even"]
    rows = be["rows"]
    if not rows:
        return False
    for side in ("local", "compute", "remote"):
        pairs = rows_with(rows, side)
        if pairs:
            _errorbar(ax, [float(r[Key.N]) for r, _ in pairs], [f for _, f in pairs], color=COLORS[side],
                      label=LABELS[side])
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("matrix size n (n x n fp32)")
    ax.set_ylabel("ms per matmul")
    ax.set_xticks([float(r[Key.N]) for r in rows], [str(r[Key.N]) for r in rows])
    ax.set_xticks([], minor=True)
    if be.get(Key.BREAK_EVEN_N) is not None:
        ax.axvline(be[Key.BREAK_EVEN_N], color="black", linestyle="--",
                   label=f"break-even n={be[Key.BREAK_EVEN_N]}")
    else:
        ax.text(0.02, 0.97, f"no break-even in the measured range (up to n={be['largest_swept_n']})",
                transform=ax.transAxes, va="top", fontsize=8)
    return True


def _throughput(report: dict[str, Any], ax: Any) -> bool:
    perf = report["performance"]
    drawn = False
    for check, marker in ((HTTP_TENSOR_TRANSFER, "o"), (LARGE_TENSOR_HANDLING, "s")):
        t = perf["transfer"][check.name]
        rate = Figure.from_dict(t[Key.MIB_PER_S])
        if rate is None or t.get(Key.BYTES) is None:
            continue
        _errorbar(ax, [float(t[Key.BYTES])], [rate], marker=marker, linestyle="none", label=check.name)
        drawn = True
    rows = [(r, f) for r, f in rows_with(perf["break_even"]["rows"], "remote") if r.get(Key.BYTES)]
    if rows:
        # A matmul request moves its two inputs out and one output back (1.5x the inputs' bytes).
        xs = [float(r[Key.BYTES]) for r, _ in rows]
        rates = [1.5 * r[Key.BYTES] / 2**20 / (f.value / 1000) for r, f in rows]
        ax.plot(xs, rates, marker=".", color=COLORS["remote"], label="matmul requests (compute included)")
        drawn = True
    if not drawn:
        return False
    probe = (report.get("network") or {}).get("probe") or {}
    baseline = probe.get("round_trip_mib_per_s")
    if baseline:
        # An echo sends N bytes then receives N: the probe's comparable rate is the harmonic
        # mean of its two directions (network.py).
        ax.axhline(baseline, color="black", linestyle="--",
                   label=f"network baseline: {NETWORK_THROUGHPUT.name} round trip")
    else:
        ax.text(0.02, 0.97, f"no network baseline measured ({NETWORK_THROUGHPUT.name} did not run)",
                transform=ax.transAxes, va="top", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("bytes sent per request")
    ax.set_ylabel("MiB/s")
    return True


def _concurrency(report: dict[str, Any], ax: Any) -> bool:
    conc = report["performance"].get("concurrency")
    if not conc or not conc["curves"]:
        return False
    drawn = False
    for payload, rows in conc["curves"].items():
        points = [(r, f) for r, f in rows_with(rows, Key.THROUGHPUT_RPS) if r.get(Key.P50_MS) is not None]
        if not points:
            continue
        xs = [f.value for _, f in points]
        ax.plot(xs, [r[Key.P50_MS] for r, _ in points], marker="o", label=f"{payload}: p50")
        ax.plot(xs, [r[Key.P95_MS] for r, _ in points], marker="^", linestyle=":", label=f"{payload}: p95")
        for (r, f) in points:
            ax.annotate(f"x{r[Key.CONCURRENCY]}", (f.value, r[Key.P50_MS]), fontsize=7,
                        textcoords="offset points", xytext=(3, 3))
        drawn = True
    ax.set_xlabel("throughput (requests/s)")
    ax.set_ylabel("latency (ms)")
    ax.set_yscale("log")
    return drawn


#: The series the trend chart follows, when they have at least two sessions.
_TREND_METRICS = ("remote_ms", "lazy_ms", "http_mib_per_s", "large_mib_per_s")


def trend_series(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The series the trend chart shows: the headline size's remote time and the transfer rates."""
    n = report["performance"].get(Key.N)
    keep = []
    for series in report["trend"].get("series", []):
        if series["metric"] not in _TREND_METRICS or len(series["points"]) < 2:
            continue
        if series["metric"] == "remote_ms" and (n is None or series["where"] != f"n={int(n)}"):
            continue
        keep.append(series)
    return keep[:4]


def _trend(report: dict[str, Any], fig: Any) -> bool:
    series = trend_series(report)
    if not series:
        return False
    axes = fig.subplots(len(series), 1, squeeze=False)
    for ax, one in zip((a[0] for a in axes), series, strict=True):
        figs = [f for _, f in rows_with(one["points"], "figure")]
        xs = list(range(len(figs)))
        _errorbar(ax, [float(x) for x in xs], figs, color="#444444")
        current = [i for i, p in enumerate(one["points"]) if p["current"]]
        for i in current:
            ax.plot([i], [figs[i].value], marker="*", markersize=12, color=COLORS["remote"])
        where = f" at {one['where']}" if one["where"] else ""
        ax.set_title(f"{one['label']}{where} [{one['context']}]", fontsize=8)
        ax.set_ylabel(one["unit"])
        ax.set_xticks(xs, [str(p["started"] or p["session"])[5:16].replace("T", " ") for p in one["points"]],
                      fontsize=7)
    return True


def _svg(draw: Callable[[Any], bool], title: str, per_axes: bool, height: float) -> str | None:
    from matplotlib import rc_context
    from matplotlib.figure import Figure as MplFigure

    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "genie-report", "font.size": 9}):
        fig = MplFigure(figsize=(7.5, height), layout="constrained")
        if per_axes:
            ax = fig.add_subplot()
            if not draw(ax):
                return None
            ax.grid(True, which="both", alpha=0.3)
            ax.legend(fontsize=7, loc="lower right")
            ax.set_title(title, fontsize=10)
        elif not draw(fig):
            return None
        else:
            fig.suptitle(title, fontsize=10)
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    return out.getvalue()


def render_charts(report: dict[str, Any]) -> dict[str, str] | None:
    """``{name: svg}`` of every chart the report has data for; None without matplotlib."""
    if not charts_available():
        return None
    trend_rows = max(1, len(trend_series(report)))
    drawn = {
        "latency": _svg(lambda ax: _latency(report, ax), CHARTS["latency"], True, 4.2),
        "throughput": _svg(lambda ax: _throughput(report, ax), CHARTS["throughput"], True, 4.0),
        "concurrency": _svg(lambda ax: _concurrency(report, ax), CHARTS["concurrency"], True, 4.0),
        "trend": _svg(lambda fig: _trend(report, fig), CHARTS["trend"], False, 1.8 + 1.6 * trend_rows),
    }
    return {name: svg for name, svg in drawn.items() if svg is not None}


_PROLOG = re.compile(r"^.*?(?=<svg\b)", re.S)


def inline_svg(svg: str) -> str:
    """The ``<svg>`` element alone (no XML prolog or DOCTYPE), to embed in HTML."""
    return _PROLOG.sub("", svg, count=1)
