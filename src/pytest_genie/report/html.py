"""The report as one self-contained HTML page (``test_analysis_report.html``), for CI artifacts.

One file, no JavaScript, no external resource: the styles are inline and the charts are inline
SVG (``charts.py``), so the page opens the same from a downloaded artifact, offline, in any
browser.  Everything on it comes from the same report dict, claims and tables as the Markdown.
"""

from __future__ import annotations

from html import escape
from typing import Any

from pytest_genie.checks import Key
from pytest_genie.report.charts import CHARTS, inline_svg
from pytest_genie.report.markdown import key_details
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

__all__ = ["HTML_NAME", "render_html"]

HTML_NAME = "test_analysis_report.html"

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 70em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; vertical-align: top; }
th { background: #f3f3f3; }
figure.chart { margin: 1em 0; }
figure.chart svg { max-width: 100%; height: auto; }
.note { color: #555; font-size: 0.9em; }
.regression { color: #b00; font-weight: bold; }
.missing { background: #fff4d6; padding: 0.5em; }
"""


def _table(table: Table | None) -> list[str]:
    if table is None:
        return []
    out = [f'<table id="table-{escape(table.name)}"><caption>{escape(table.title)}</caption><tr>']
    out += [f"<th>{escape(h)}</th>" for h in table.headers]
    out.append("</tr>")
    for row in table.rows:
        out.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>")
    out.append("</table>")
    if table.note:
        out.append(f'<p class="note">{escape(table.note)}</p>')
    return out


def _chart(svgs: dict[str, str], name: str) -> list[str]:
    if name not in svgs:
        return []
    return [f'<figure class="chart" id="chart-{name}">', inline_svg(svgs[name]),
            f"<figcaption>{escape(CHARTS[name])}</figcaption></figure>"]


def _list(texts: list[str], ordered: bool = False) -> list[str]:
    if not texts:
        return []
    tag = "ol" if ordered else "ul"
    return [f"<{tag}>", *(f"<li>{escape(t)}</li>" for t in texts), f"</{tag}>"]


def _side(title: str, side: dict[str, Any] | None, where: str | None = None, tag: str = "h2") -> list[str]:
    out = [f"<{tag}>{escape(title)}</{tag}>"]
    if side is None:
        return [*out, "<p>No results for this side in this report.</p>"]
    if where:
        out.append(f'<p class="where">Figures measured {escape(where)}.</p>')
    table = Table(title, ["test", "status", "time", "key details"], name=title.split()[0].lower())
    for test in side["tests"]:
        time = "—" if test["timing_ms"] is None else f"{test['timing_ms']:.1f} ms"
        table.rows.append([test["name"], f"{STATUS_SYMBOLS[test['status']]} {test['status']}", time,
                           key_details(test)])
    return out + _table(table)


def _servers(servers: list[dict[str, Any]]) -> list[str]:
    """A fleet: its table, then each server's checks, labelled with where they were measured."""
    if len(servers) < 2:
        return []
    out = ["<h2>Servers</h2>", *_table(fleet_table(servers))]
    for s in servers:
        out.append(f'<h3 id="server-{escape(s["id"])}">Server {escape(s["id"])}: {escape(s["result"])}</h3>')
        out += _list([f"{f['name']} ({f['status']}): {f['reason']}" for f in s["failures"]])
        for side in ("server", "client"):
            out += _side(f"{side.capitalize()}-side checks of {s['id']}", s[f"{side}_side"],
                         where_label(s["measured"][side]), "h4")
    return out


def render_html(report: dict[str, Any], svgs: dict[str, str] | None) -> str:
    """The page; ``svgs`` are the rendered charts (None: matplotlib is missing, and the page says so)."""
    charts = svgs or {}
    perf = report["performance"]
    claims = report["claims"]
    summary = report["overall_summary"]
    info = report["report_info"]

    def texts(*topics: str) -> list[str]:
        return [c["text"] for c in claims if c["topic"] in topics]

    body = [f"<h1>Genie Test Analysis Report</h1><p class=\"note\">Generated {escape(info['generated_at'])} "
            f"by {escape(info['generator'])}.</p>",
            "<h2>Overall Summary</h2>",
            f"<p>{summary['total']} tests: {summary['passed']} passed, {summary['failed']} failed, "
            f"{summary['skipped']} skipped, {summary['errors']} errors.</p>"]
    if svgs is None:
        body.append(f'<p class="missing" id="charts-missing">{escape(report["charts"]["missing"])}</p>')
    body += _servers(report.get("servers", []))
    measured = perf.get("measured") or {}
    body += ["<h2>Performance Analysis</h2>",
             f'<p class="where">Client checks measured {escape(where_label(measured.get("client")))}'
             + (f"; server checks on the server node, {escape(where_label(measured['server']))}"
                if measured.get("server") else "") + ".</p>",
             *_list(texts("headline", "break_even"))]
    if measured.get("overhead_across_paths"):
        across = escape(measured["overhead_across_paths"])
        body.append(f'<p class="where">⚠ The network overhead {across}.</p>')
    body += _table(sweep_table(perf)) + _chart(charts, "latency")
    body += ["<h3>Transfer Throughput</h3>", *_list(texts("transfer", "network", "lazy"))]
    body += _chart(charts, "throughput")
    body += ["<h3>Concurrency</h3>", *_list(texts("concurrency"))]
    body += _table(concurrency_table(perf)) + _chart(charts, "concurrency")
    body += _table(servers_table(report.get("servers", [])))
    comparison = report.get("comparison")
    if comparison:
        body.append("<h2>Comparison with Baseline</h2>")
        body += [f'<p class="regression">Regression: {escape(line)}</p>'
                 for line in comparison["regressions"]]
        body += _table(comparison_table(comparison))
    body += ["<h2>Recommendations</h2>", *_list([r["text"] for r in report["recommendations"]], True)]
    body += ["<h2>Trend Across Runs</h2>", *_table(trend_table(report["trend"], perf.get(Key.N)))]
    body += _chart(charts, "trend")
    if len(report.get("servers", [])) < 2:  # a fleet's checks are in its servers' sections
        where = {side: where_label(measured.get(side)) if measured.get(side) else None
                 for side in ("server", "client")}
        body += _side("Server-Side Results", report["server_side"], where["server"])
        body += _side("Client-Side Results", report["client_side"], where["client"])
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<title>Genie Test Analysis Report</title>"
            f"<style>{_STYLE}</style></head><body>\n" + "\n".join(body) + "\n</body></html>\n")
