"""The HTML report and its charts (``html.py``, ``charts.py``): one self-contained page that a
real browser renders with every chart, the same charts as SVG files beside the Markdown, a page
that says how to get the charts when matplotlib is missing, and a per-server table when several
servers were measured.

The browser is Debian's ``chromium``, headless (CI installs it; elsewhere the rendering test is
skipped, saying so).  The page has no script of its own; the test renders a copy with a probe
script appended that measures every chart's drawn size and counts its shapes, and reads the
browser's console log for script errors.  The probe is itself checked against a broken page.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_genie.report import HTML_NAME, JSON_NAME, MARKDOWN_NAME, build_report, write_report
from pytest_genie.report.build import save_report
from pytest_genie.report.charts import CHARTS, MISSING_HINT, chart_file

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_chromium = pytest.mark.skipif(CHROMIUM is None, reason="headless Chromium is not installed "
                                    "(Debian: apt-get install -y chromium); CI installs it")
#: Appended to a copy of the page: once it has loaded, what each chart drew, as JSON in the DOM.
PROBE = """<script>
window.addEventListener('load', () => {
  const charts = [...document.querySelectorAll('figure.chart')].map(f => {
    const svg = f.querySelector('svg');
    const box = svg ? svg.getBoundingClientRect() : {width: 0, height: 0};
    return {id: f.id, width: box.width, height: box.height,
            shapes: svg ? svg.querySelectorAll('path, line, use, rect, text').length : 0};
  });
  const out = document.createElement('pre');
  out.id = 'genie-probe';
  out.textContent = JSON.stringify(charts);
  document.body.appendChild(out);
});
</script>"""
PROBE_OUT = re.compile(r'<pre id="genie-probe">(.*?)</pre>', re.S)


def _render(page: Path, tmp: Path) -> tuple[list[dict[str, Any]], list[str]]:
    """Load ``page`` (plus the probe) in headless Chromium: what each chart drew, and the
    console's script errors."""
    assert CHROMIUM is not None
    probed = tmp / f"probed_{page.name}"
    page_text = page.read_text(encoding="utf-8")
    probed.write_text(page_text.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp / f"chromium-profile-{page.stem}"
    done = subprocess.run(
        [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={profile}",
         "--enable-logging=stderr", "--v=0", "--virtual-time-budget=5000", "--window-size=1280,4000",
         "--dump-dom", probed.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    found = PROBE_OUT.search(done.stdout)
    assert found, f"chromium rendered nothing (exit {done.returncode}): {done.stderr[-2000:]}"
    errors = [line for line in done.stderr.splitlines()
              if "CONSOLE" in line and ("Uncaught" in line or "Error" in line)]
    return json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&")), errors


@pytest.fixture
def full_report(tmp_path: Path, samples: Samples) -> Path:
    """A session with every chart's data: a sweep, transfers, a concurrency sweep, an earlier run."""
    root = tmp_path / "reports"

    def client(remote_ms: float) -> list[dict[str, Any]]:
        tests = samples.gpu_client_tests(remote_ms=remote_ms)
        tests.append(samples.record("concurrency_sweep", window_s=1.0, levels=[
            {"payload": p, "bytes": b, "concurrency": c, "requests": int(r), "errors": 0, "throughput_rps": r,
             "p50_ms": 1000 * c / r, "p95_ms": 2000 * c / r} for p, b, base in (("small", 16384, 500.0),
                                                                                ("medium", 1 << 20, 90.0))
            for c, r in ((1, base), (2, base * 1.6), (4, base * 1.9), (8, base * 1.9))]))
        return tests

    samples.session(root, "20260101_090000", samples.gpu_server_tests(), client(120.0))
    folder = samples.session(root, "20260109_090000", samples.gpu_server_tests(), client(99.0))
    write_report(folder, history_root=root)
    return folder


@needs_chromium
def test_the_html_report_renders_every_chart_in_headless_chromium(full_report: Path, tmp_path: Path) -> None:
    page = full_report / HTML_NAME
    html = page.read_text(encoding="utf-8")
    assert "<script" not in html, "the report page must need no JavaScript"
    assert not re.search(r"""(src|href)=["']https?://""", html), "the page must load nothing from outside"
    charts, errors = _render(page, tmp_path)
    assert not errors, errors
    assert sorted(c["id"] for c in charts) == sorted(f"chart-{name}" for name in CHARTS)
    for chart in charts:
        assert chart["width"] > 300 and chart["height"] > 150, chart  # laid out, not collapsed
        assert chart["shapes"] > 20, chart  # axes, ticks, lines and labels were drawn


@needs_chromium
def test_the_render_check_catches_a_missing_chart_and_a_script_error(tmp_path: Path) -> None:
    broken = tmp_path / "broken.html"
    broken.write_text('<!DOCTYPE html><html><body><figure class="chart" id="chart-latency"></figure>'
                      "<script>undefinedFunction();</script></body></html>", encoding="utf-8")
    charts, errors = _render(broken, tmp_path)
    assert charts == [{"id": "chart-latency", "width": 0, "height": 0, "shapes": 0}]
    assert errors and "undefinedFunction" in errors[0]


def test_the_markdown_shows_the_same_charts_as_svg_files(full_report: Path) -> None:
    md = (full_report / MARKDOWN_NAME).read_text(encoding="utf-8")
    html = (full_report / HTML_NAME).read_text(encoding="utf-8")
    for name, title in CHARTS.items():
        svg = full_report / chart_file(name)
        assert svg.read_text(encoding="utf-8").lstrip().startswith("<?xml"), name
        assert f"![{title}]({chart_file(name)})" in md
        assert f'id="chart-{name}"' in html
    assert MISSING_HINT not in md


def test_without_matplotlib_the_report_says_how_to_get_the_charts(tmp_path: Path, samples: Samples) -> None:
    folder = samples.session(tmp_path, "20260109_143000", samples.gpu_server_tests(),
                             samples.gpu_client_tests())
    # A fresh interpreter in which matplotlib cannot be imported, as on a machine without the extra.
    code = ("import sys; sys.modules['matplotlib'] = None; from pytest_genie.report import main; "
            f"sys.exit(main([{str(folder)!r}]))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert not list(folder.glob("chart_*.svg"))
    assert MISSING_HINT in (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    html = (folder / HTML_NAME).read_text(encoding="utf-8")
    assert 'id="charts-missing"' in html and "pip install" in html and "<svg" not in html
    assert json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))["charts"]["missing"] == MISSING_HINT


def test_several_servers_get_a_table_row_each(tmp_path: Path, samples: Samples) -> None:
    folder = tmp_path / "genie_test_results_20260109_143000"
    fast = samples.cpu_client_tests()
    samples.write_results(folder / "a", "client", samples.gpu_client_tests(), "20260109_143000",
                          server_url="http://gpu-a:8888")
    samples.write_results(folder / "b", "client", fast, "20260109_143001", server_url="http://cpu-b:8888")
    files = sorted(folder.glob("*/client_test_results_*.json"))
    report = build_report(files, [])
    save_report(report, folder)
    servers = {s["server"]: s for s in report["servers"]}
    assert set(servers) == {"http://gpu-a:8888", "http://cpu-b:8888"}
    assert servers["http://cpu-b:8888"]["break_even"] == "n=2048"
    assert servers["http://gpu-a:8888"]["break_even"] == "none up to n=4096"
    assert report["performance"]["server"] == "http://cpu-b:8888"  # the first by URL
    md = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
    assert "#### Per server" in md and "| http://gpu-a:8888 |" in md and "| http://cpu-b:8888 |" in md
    assert "Several servers were measured" in md
    assert 'id="table-servers"' in (folder / HTML_NAME).read_text(encoding="utf-8")


def test_one_server_gets_no_per_server_table(full_report: Path) -> None:
    report = json.loads((full_report / JSON_NAME).read_text(encoding="utf-8"))
    assert report["servers"] == []
    assert "Per server" not in (full_report / MARKDOWN_NAME).read_text(encoding="utf-8")
