"""CI-native output (``ci.py``): each check's headline figures as junitxml properties, and, with
pytest-html installed, in a column of its results table.  Driven through ``pytester`` with
inner checks that record figures the way the real ones do (a median and its spread)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

CHECKS = """
import pytest

@pytest.mark.client
def test_performance_comparison(genie_record):
    genie_record.update(local_cpu_ms=1.5, remote_ms=105.3, server_compute_ms=19.2, break_even_n=None,
                        spread={"remote_ms": {"median": 105.3, "q1": 101.0, "q3": 110.0, "min": 99.0,
                                              "max": 120.0, "count": 15, "stable": False}})

@pytest.mark.client
def test_http_tensor_transfer(genie_record):
    genie_record.update(mib_per_s=37.2, bit_exact=True, disturbed={"retries": 1})

def test_not_a_check():
    pass
"""


def test_each_checks_figures_are_junitxml_properties(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CHECKS)
    xml = pytester.path / "junit.xml"
    pytester.runpytest(f"--junitxml={xml}", f"--genie-results-dir={pytester.path / 'r'}"
                       ).assert_outcomes(passed=3)
    cases = {case.get("name"): {p.get("name"): p.get("value") for p in case.iter("property")}
             for case in ET.parse(xml).iter("testcase")}
    perf = cases["test_performance_comparison"]
    assert perf["genie.status"] == "PASS"
    assert (perf["genie.remote_ms"], perf["genie.local_cpu_ms"]) == ("105.3", "1.5")
    assert (perf["genie.remote_ms.iqr"], perf["genie.remote_ms.count"]) == ("101.0-110.0", "15")
    assert perf["genie.break_even_n"] == "none"  # recorded as None: none in the measured range
    assert perf["genie.unstable"] == "remote_ms"
    transfer = cases["test_http_tensor_transfer"]
    assert transfer["genie.mib_per_s"] == "37.2" and transfer["genie.disturbed"] == "retries=1"
    assert cases["test_not_a_check"] == {}


def test_figures_fill_a_pytest_html_column(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_html", reason="pytest-html is an optional companion (the test extra has it)")
    pytester.makepyfile(CHECKS)
    page = pytester.path / "report.html"
    pytester.runpytest(f"--html={page}", "--self-contained-html", f"--genie-results-dir={pytester.path / 'r'}"
                       ).assert_outcomes(passed=3)
    html = page.read_text(encoding="utf-8")
    assert '<th class="col-genie">Genie figures</th>' in html
    assert "remote_ms=105.3" in html and "mib_per_s=37.2" in html and "disturbed=retries=1" in html
