"""The fixtures the documented tests use (``fixtures.py``), driven through ``pytester``:
``genie_client`` against the embedded server, ``--genie-server`` that starts none, and the
client's timeouts fitted to the link (``--genie-timeout``, ``genie_link``).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.fixtures import LINK_MARGIN, MeasuredLink

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

#: The readers conftest.py provides as fixtures.
Folders = Callable[[Path], list[Path]]
Load = Callable[[Path, str], dict[str, Any]]
Schema = Callable[[Any, str], None]


def test_genie_client_talks_to_the_embedded_server(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        check_schema: Schema, round_trip_tests: None) -> None:
    results = pytester.path / "results"
    pytester.runpytest(f"--genie-results-dir={results}", "--genie-large-mb=1").assert_outcomes(passed=6)
    doc = load_results(session_folders(results)[0], "client")
    check_schema(doc, "client_side")
    urls = {t["details"]["url"] for t in doc["tests"]}
    assert len(urls) == 1 and urls.pop().startswith("http://127.0.0.1:")
    assert doc["test_info"]["server_url"] == doc["tests"][0]["details"]["url"]
    assert {t["details"]["large_mb"] for t in doc["tests"]} == {1.0}


def test_genie_server_option_is_used_without_starting_a_local_server(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.client
        def test_url(genie_server_url, request):
            assert genie_server_url == "http://127.0.0.1:9"
            assert "genie_local_server" not in request.fixturenames
    """)
    results = pytester.path / "results"
    pytester.runpytest("--genie-server=127.0.0.1:9", f"--genie-results-dir={results}"
                       ).assert_outcomes(passed=1)
    assert load_results(session_folders(results)[0], "client")["test_info"]["server_url"] == "http://127.0.0.1:9"


def test_a_measured_link_only_ever_widens_the_timeout() -> None:
    unmeasured = MeasuredLink().timeout(None)
    assert (unmeasured.base_s, unmeasured.min_rate_mib_s) == (30.0, 1.0)  # the client's defaults
    slow = MeasuredLink(upload_mib_s=2.0, download_mib_s=8.0).timeout(5.0)
    assert (slow.base_s, slow.min_rate_mib_s) == (5.0, 2.0 / LINK_MARGIN)  # the slower way, with margin
    fast = MeasuredLink(upload_mib_s=1000.0, download_mib_s=1000.0).timeout(None)
    assert fast.min_rate_mib_s == 1.0  # never tighter than the default


def test_genie_client_takes_the_timeout_option_and_the_measured_link(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.client
        def test_before(genie_client):
            assert genie_client.timeouts.base_s == 7.5 and genie_client.timeouts.min_rate_mib_s == 1.0

        @pytest.mark.client
        def test_measure(genie_link):
            genie_link.upload_mib_s, genie_link.download_mib_s = 2.0, 3.0

        @pytest.mark.client
        def test_after(genie_client):
            assert genie_client.timeouts.min_rate_mib_s == 0.5  # 2 MiB/s / 4
            assert genie_client.timeout_s(2**20) == 7.5 + 2
    """)
    pytester.runpytest("--genie-timeout=7.5", "--genie-server=127.0.0.1:9",
                       f"--genie-results-dir={pytester.path / 'results'}").assert_outcomes(passed=3)


def test_a_client_that_retried_marks_its_check_disturbed(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        free_port: Callable[[], int]) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.client
        def test_server_went_away(genie_client, genie_record):
            genie_record["measured"] = 1.0
            genie_client.health()

        @pytest.mark.client
        def test_quiet(genie_make_client, genie_record):
            genie_record["clients"] = 2
            genie_make_client(), genie_make_client()
    """)
    results = pytester.path / "results"
    pytester.runpytest(f"--genie-server=127.0.0.1:{free_port()}", f"--genie-results-dir={results}"
                       ).assert_outcomes(passed=1, failed=1)
    tests = {t["name"]: t for t in load_results(session_folders(results)[0], "client")["tests"]}
    gone = tests["server_went_away"]["details"]
    assert gone["disturbed"] == {"retries": 3, "transport_errors": 4}  # the client's default 3 retries
    assert gone["measured"] == 1.0
    assert "disturbed" not in tests["quiet"]["details"]


def test_genie_level_sets_the_sizes(pytester: pytest.Pytester, session_folders: Folders,
                                    load_results: Load) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.client
        def test_level(genie_level, genie_options, genie_record):
            genie_record.update(level=genie_level.name, main_n=genie_level.main_n,
                                large=genie_options.large_tensor_mb)
    """)
    for args, want in ((["--genie-level=quick"], ("quick", 256, 16.0)),
                       (["--genie-level=quick", "--genie-large-mb=3"], ("quick", 256, 3.0)),
                       ([], ("standard", 1000, 256.0))):
        results = pytester.path / f"r{len(args)}"
        result = pytester.runpytest("--genie-server=127.0.0.1:9", "-p", "no:cacheprovider", *args,
                                    f"--genie-results-dir={results}", "-q")
        result.assert_outcomes(passed=1)
        doc = load_results(session_folders(results)[0], "client")
        details = doc["tests"][0]["details"]
        assert (details["level"], details["main_n"], details["large"]) == want
        assert doc["test_info"]["level"] == want[0]
    result = pytester.runpytest("--genie-level=huge")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--genie-level=huge: expected one of quick, standard, long*"])
