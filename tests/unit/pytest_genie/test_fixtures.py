"""The fixtures the documented tests use (``fixtures.py``), driven through ``pytester``:
``genie_client`` against the embedded server, and ``--genie-server`` that starts none.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

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
