"""The Genie pytest plugin's hooks (``plugin.py``), driven through ``pytester``: markers,
records and result files, interrupted and crashing runs, xdist and pytest-json-report,
and the report step.

Most runs are in-process (``inline_run``: fast); the ones that need a real
process (a crash, xdist workers) run pytest as a subprocess.  Every run writes under
the pytester temp folder, never into the repository's ``reports/``.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

#: The readers conftest.py provides as fixtures.
Folders = Callable[[Path], list[Path]]
Load = Callable[[Path, str], dict[str, Any]]
Schema = Callable[[Any, str], None]


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in doc["tests"]}


# ---- markers ----------------------------------------------------------------------


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.server: documented server-side*",
                                 "@pytest.mark.client: documented client-side*"])


def test_without_the_plugin_the_suite_collects_and_the_checks_skip_saying_why() -> None:
    """``-p no:genie``: the markers come from pyproject.toml, and tests/conftest.py skips the
    documented checks (their fixtures are the plugin's) instead of erroring on each."""
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:genie", "-p", "no:cacheprovider",
                           "-rs", "tests/client", "tests/server"], cwd=repo, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
    closing = done.stdout.strip().splitlines()[-1]
    assert re.search(r"\d+ skipped", closing) and not re.search(r"passed|failed|error", closing), closing
    assert "the Genie plugin is disabled (-p no:genie)" in done.stdout
    assert "fixture 'genie_" not in done.stdout


# ---- records and result files ------------------------------------------------------


def test_status_mapping_and_details(
        mixed_run: tuple[pytest.RunResult, Path], session_folders: Folders, load_results: Load,
        check_schema: Schema) -> None:
    result, results = mixed_run
    result.assert_outcomes(passed=5, failed=1, skipped=2, errors=2)
    (folder,) = session_folders(results)
    server, client = load_results(folder, "server"), load_results(folder, "client")
    check_schema(server, "server_side")
    check_schema(client, "client_side")

    srv = _by_name(server)
    assert list(srv) == ["alpha", "marked_skip"]
    assert srv["alpha"]["status"] == "PASS"
    assert srv["alpha"]["details"]["value"] == 1.5
    assert srv["alpha"]["details"]["dtype"].startswith("<object object at")
    assert srv["alpha"]["details"]["nan"] is None
    assert srv["marked_skip"]["status"] == "SKIP"
    assert srv["marked_skip"]["details"] == {"skip_reason": "no GPU on this node"}

    cli = _by_name(client)
    assert list(cli) == ["fails", "skips_inside", "setup_error", "teardown_error", "sweep[10]",
                         "sweep[1000]"]  # run order; unmarked tests are not recorded
    assert cli["fails"]["status"] == "FAIL"
    assert cli["fails"]["details"]["measured"] == 3  # what the test recorded survives a failure
    assert "AssertionError: arithmetic is broken" in cli["fails"]["details"]["failure"]
    assert cli["skips_inside"]["status"] == "SKIP"
    assert cli["skips_inside"]["details"]["skip_reason"] == "server has no CUDA"
    assert cli["setup_error"]["status"] == "ERROR"
    assert "RuntimeError: fixture exploded" in cli["setup_error"]["details"]["error"]
    assert cli["teardown_error"]["status"] == "ERROR"
    assert "RuntimeError: teardown exploded" in cli["teardown_error"]["details"]["error"]
    assert cli["sweep[1000]"]["details"] == {"n": 1000}
    assert server["test_info"]["timestamp"] == client["test_info"]["timestamp"]  # one session


def test_xfail_outcomes_are_mapped_as_pytest_reports_them(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load) -> None:
    pytester.makepyfile("""
        import pytest

        @pytest.mark.server
        @pytest.mark.xfail(reason="known bug")
        def test_expected_failure():
            assert 0

        @pytest.mark.server
        @pytest.mark.xfail(reason="fixed?", strict=True)
        def test_strict_xpass():
            pass

        @pytest.mark.server
        def test_imperative_xfail():
            pytest.xfail("not today")
    """)
    results = pytester.path / "results"
    pytester.runpytest(f"--genie-results-dir={results}").assert_outcomes(xfailed=2, failed=1)
    tests = _by_name(load_results(session_folders(results)[0], "server"))
    assert tests["expected_failure"]["status"] == "SKIP"
    assert tests["expected_failure"]["details"] == {"skip_reason": "xfail: known bug"}
    assert tests["strict_xpass"]["status"] == "FAIL"
    assert "XPASS(strict)" in tests["strict_xpass"]["details"]["failure"]
    assert tests["imperative_xfail"]["details"] == {"skip_reason": "xfail: not today"}


def test_marker_selection_writes_only_that_file(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        mixed_tests: None) -> None:
    results = pytester.path / "results"
    result = pytester.runpytest("-m", "server", f"--genie-results-dir={results}")
    result.assert_outcomes(passed=1, skipped=1, deselected=7)
    (folder,) = session_folders(results)
    assert [p.name.split("_")[0] for p in folder.iterdir()] == ["server"]
    assert list(_by_name(load_results(folder, "server"))) == ["alpha", "marked_skip"]


def test_no_documented_tests_leave_no_folder(pytester: pytest.Pytester, mixed_tests: None) -> None:
    pytester.makepyfile(test_plain="def test_plain(): pass")
    results = pytester.path / "results"
    pytester.runpytest("test_plain.py", f"--genie-results-dir={results}").assert_outcomes(passed=1)
    assert not results.exists()
    # Nor does collecting documented tests without running them.
    pytester.runpytest("--collect-only", f"--genie-results-dir={results}")
    assert not results.exists()


def test_a_run_killed_in_its_first_test_leaves_each_kinds_file(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load) -> None:
    pytester.makepyfile("""
        import os, signal, pytest

        @pytest.mark.server
        def test_killed():
            os.kill(os.getpid(), signal.SIGKILL)

        @pytest.mark.client
        def test_never_run():
            pass
    """)
    results = pytester.path / "results"
    result = pytester.runpytest_subprocess(f"--genie-results-dir={results}")
    assert result.ret == -signal.SIGKILL
    (folder,) = session_folders(results)
    for kind, test_type in (("server", "server_side"), ("client", "client_side")):
        doc = load_results(folder, kind)
        assert doc["tests"] == [] and doc["test_info"]["test_type"] == test_type


def test_a_check_selection_that_collects_nothing_says_where_the_checks_live(
        pytester: pytest.Pytester) -> None:
    """``pytest -m client --genie-server=...`` run outside the repository."""
    pytester.makepyfile("def test_plain(): pass")
    result = pytester.runpytest("-m", "client", "--genie-server=127.0.0.1:9",
                                f"--genie-results-dir={pytester.path / 'r'}")
    assert result.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    checks = Path(__file__).resolve().parents[2]  # this checkout's tests/
    result.stdout.fnmatch_lines([
        "Genie: -m client collected no documented check (pytest exit status 5).",
        f"The checks live in {checks}/server and {checks}/client. Run from the repository: "
        f"cd {checks.parent} && pytest -m client ...",
        f"or name the folder: pytest -m client {checks / 'client'} ...",
    ])
    # A run that selects no check kind says nothing of the kind.
    plain = pytester.runpytest("-k", "nothing_matches", f"--genie-results-dir={pytester.path / 'r'}")
    assert plain.ret == pytest.ExitCode.NO_TESTS_COLLECTED
    assert "Genie:" not in plain.stdout.str()


def test_test_info_hook_extends_the_envelope(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load) -> None:
    pytester.makeconftest("""
        def pytest_genie_test_info(config, test_info):
            test_info["rack"] = "b4"
            test_info["test_type_seen"] = test_info["test_type"]
    """)
    pytester.makepyfile("""
        import pytest
        @pytest.mark.server
        def test_s(): pass
    """)
    results = pytester.path / "results"
    pytester.runpytest(f"--genie-results-dir={results}").assert_outcomes(passed=1)
    info = load_results(session_folders(results)[0], "server")["test_info"]
    assert (info["rack"], info["test_type_seen"]) == ("b4", "server_side")


# ---- interrupted and crashing runs ---------------------------------------------------


STOPS = """
import os, pytest

@pytest.mark.client
def test_first(genie_record):
    genie_record["ok"] = True

@pytest.mark.client
def test_second():
    {stop}

@pytest.mark.client
def test_never_reached():
    pass
"""


def _ctrl_c_mid_test(pytester: pytest.Pytester, *args: str) -> tuple[int, bytes, Path]:
    """Run ``STOPS`` in a real pytest process and send it SIGINT while ``test_second`` runs.

    Returns the exit status, the output and the results dir.
    """
    started, seen = pytester.path / "started", pytester.path / "seen"
    pytester.makepyfile(STOPS.format(
        stop=f"open({str(started)!r}, 'w').close()\n    import time\n    time.sleep(60)"))
    # The process that writes the results (the xdist controller, or the only one) marks
    # when it has heard that test_second started: a worker's reports reach the
    # controller later, and a Ctrl-C before that has nothing to record.
    pytester.makeconftest(f"""
        import os, pytest
        @pytest.hookimpl(trylast=True)
        def pytest_runtest_logreport(report):
            if (report.when == "setup" and report.nodeid.endswith("test_second")
                    and "PYTEST_XDIST_WORKER" not in os.environ):
                open({str(seen)!r}, "w").close()
    """)
    results = pytester.path / "results"
    proc = pytester.popen([sys.executable, "-m", "pytest", *args, "-p", "no:cacheprovider",
                           f"--genie-results-dir={results}"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not (started.exists() and seen.exists()) and proc.poll() is None \
                and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists() and seen.exists(), proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    return proc.returncode, out, results


def test_ctrl_c_leaves_valid_json_of_every_test_that_ran(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        check_schema: Schema) -> None:
    pytester.makepyfile(STOPS.format(stop="raise KeyboardInterrupt"))
    results = pytester.path / "results"
    reprec = pytester.inline_run(f"--genie-results-dir={results}", no_reraise_ctrlc=True)
    assert reprec.ret == pytest.ExitCode.INTERRUPTED
    doc = load_results(session_folders(results)[0], "client")
    check_schema(doc, "client_side")
    tests = _by_name(doc)
    assert list(tests) == ["first", "second"]
    assert tests["second"]["status"] == "ERROR"
    assert tests["second"]["details"]["error"] == "interrupted by KeyboardInterrupt during the test"


def test_sigint_from_outside_leaves_valid_json(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        check_schema: Schema) -> None:
    """A real Ctrl-C: SIGINT sent to a pytest process while a test is running."""
    returncode, _, results = _ctrl_c_mid_test(pytester)
    assert returncode == pytest.ExitCode.INTERRUPTED
    doc = load_results(session_folders(results)[0], "client")
    check_schema(doc, "client_side")
    assert [(t["name"], t["status"]) for t in doc["tests"]] == [("first", "PASS"), ("second", "ERROR")]
    assert doc["tests"][1]["timing_ms"] > 0  # the time it ran before the interrupt


def test_runs_without_pytest_json_report(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load) -> None:
    pytester.makepyfile(ONE_SERVER_TEST)
    results = pytester.path / "results"
    pytester.runpytest("-p", "no:pytest_jsonreport", f"--genie-results-dir={results}"
                       ).assert_outcomes(passed=1)
    tests = _by_name(load_results(session_folders(results)[0], "server"))
    assert tests["environment_setup"]["status"] == "PASS"


def test_exit_first_leaves_valid_json(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load) -> None:
    pytester.makepyfile(STOPS.format(stop="assert False"))
    results = pytester.path / "results"
    pytester.runpytest("-x", f"--genie-results-dir={results}").assert_outcomes(passed=1, failed=1)
    doc = load_results(session_folders(results)[0], "client")
    assert [(t["name"], t["status"]) for t in doc["tests"]] == [("first", "PASS"), ("second", "FAIL")]


def test_a_crashing_test_process_leaves_valid_json(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        check_schema: Schema) -> None:
    pytester.makepyfile(STOPS.format(stop="os._exit(3)"))
    results = pytester.path / "results"
    result = pytester.runpytest_subprocess(f"--genie-results-dir={results}")
    assert result.ret == 3
    (folder,) = session_folders(results)
    doc = load_results(folder, "client")
    check_schema(doc, "client_side")
    assert [(t["name"], t["status"]) for t in doc["tests"]] == [("first", "PASS")]
    assert not list(folder.glob(".*.tmp"))  # no temp file left half-written


# ---- xdist, json-report ---------------------------------------------------------------


def test_xdist_controller_writes_one_complete_file(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        check_schema: Schema, round_trip_tests: None) -> None:
    results = pytester.path / "results"
    json_report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--genie-large-mb=1",
                                           f"--genie-results-dir={results}", "--json-report",
                                           f"--json-report-file={json_report}")
    result.assert_outcomes(passed=6)
    metadata = [t["metadata"]["genie"] for t in json.loads(json_report.read_text())["tests"]]
    assert sorted(m["details"]["i"] for m in metadata) == list(range(6))  # relayed by the workers
    (folder,) = session_folders(results)
    assert [p.name.split("_")[0] for p in folder.iterdir()] == ["client"]
    doc = load_results(folder, "client")
    check_schema(doc, "client_side")
    assert sorted(t["details"]["i"] for t in doc["tests"]) == list(range(6))
    assert {t["details"]["worker"] for t in doc["tests"]} == {"gw0", "gw1"}
    result.stdout.fnmatch_lines(["*= Genie =*", "Client-side tests [[]client_side[]]*: 6 pass"])


CRASHES = """
import os, pytest

@pytest.mark.client
def test_first(genie_record):
    genie_record["ok"] = True

@pytest.mark.server
@pytest.mark.parametrize("how", ["exit", "abort"])
def test_crash(how, genie_record):
    genie_record["lost"] = True  # the worker dies with it
    os._exit(1) if how == "exit" else os.abort()

def test_unmarked_crash():
    os._exit(1)

@pytest.mark.client
def test_after(genie_record):
    genie_record["ok"] = True
"""


def test_xdist_worker_crash_is_recorded_as_error(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        check_schema: Schema) -> None:
    """A documented test that kills its xdist worker (os._exit, a native abort) is in the
    file as ERROR saying so; the replacement worker's tests are recorded as usual."""
    pytester.makepyfile(CRASHES)
    results = pytester.path / "results"
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                           f"--genie-results-dir={results}")
    result.assert_outcomes(passed=2, failed=3)
    (folder,) = session_folders(results)
    server = load_results(folder, "server")
    check_schema(server, "server_side")
    crashed = _by_name(server)
    assert set(crashed) == {"crash[exit]", "crash[abort]"}  # the unmarked crash is not recorded
    for name, test in crashed.items():
        assert test["status"] == "ERROR", name
        error = test["details"]["error"]
        assert "crashed while running" in error and f"test_crash[{name[6:-1]}]" in error
        assert "during call" in error and "worker down:" in error
        assert "lost" not in test["details"]
        assert test["timing_ms"] >= 0 and "upper bound" in test["details"]["timing_note"]
        assert datetime.fromisoformat(test["timestamp"]).utcoffset() is not None
    client = load_results(folder, "client")
    check_schema(client, "client_side")
    assert {(t["name"], t["status"]) for t in client["tests"]} == {("first", "PASS"), ("after", "PASS")}
    result.stdout.fnmatch_lines(["*= Genie =*", "Server-side tests*2 error*"])


def test_sigint_under_xdist_records_the_tests_in_flight_on_workers(
        pytester: pytest.Pytester, session_folders: Folders, load_results: Load,
        check_schema: Schema) -> None:
    """Ctrl-C to the xdist controller mid-test: the file holds the test that was running."""
    _, out, results = _ctrl_c_mid_test(pytester, "-n", "1")
    doc = load_results(session_folders(results)[0], "client")
    check_schema(doc, "client_side")
    assert [(t["name"], t["status"]) for t in doc["tests"]] == [("first", "PASS"), ("second", "ERROR")], out
    assert "stopped during call" in doc["tests"][1]["details"]["error"]


def test_json_report_metadata_holds_the_record(pytester: pytest.Pytester, mixed_tests: None) -> None:
    pytest.importorskip("pytest_jsonreport")
    report = pytester.path / "report.json"
    pytester.runpytest(f"--genie-results-dir={pytester.path / 'results'}", "--json-report",
                       f"--json-report-file={report}")
    tests = {t["nodeid"].split("::")[1]: t for t in json.loads(report.read_text())["tests"]}
    assert "genie" not in tests["test_unmarked"].get("metadata", {})
    genie = tests["test_fails"]["metadata"]["genie"]
    assert (genie["name"], genie["status"], genie["kinds"]) == ("fails", "FAIL", ["client"])
    assert genie["details"]["measured"] == 3
    assert tests["test_marked_skip"]["metadata"]["genie"]["status"] == "SKIP"


# ---- the report step and failures to write -------------------------------------------


ONE_SERVER_TEST = """
import pytest
@pytest.mark.server
def test_environment_setup(genie_record):
    genie_record["python_version"] = "3.11"
"""


def test_genie_report_writes_into_the_session_folder(
        pytester: pytest.Pytester, session_folders: Folders) -> None:
    pytester.makepyfile(ONE_SERVER_TEST)
    results = pytester.path / "results"
    result = pytester.runpytest("--genie-report", f"--genie-results-dir={results}")
    result.assert_outcomes(passed=1)
    (folder,) = session_folders(results)
    assert json.loads((folder / "comprehensive_report.json").read_text(encoding="utf-8"))
    assert (folder / "test_analysis_report.md").read_text(encoding="utf-8").strip()
    result.stdout.fnmatch_lines([f"Genie report: {folder / 'comprehensive_report.json'}",
                                 f"Genie report: {folder / 'test_analysis_report.md'}"])


def test_genie_report_without_the_report_module_is_a_usage_error(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pytest_genie.report", None)  # find_spec() -> None
    pytester.makepyfile(ONE_SERVER_TEST)
    result = pytester.runpytest("--genie-report", f"--genie-results-dir={pytester.path / 'r'}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --genie-report: the report module pytest_genie.report is not*"])
    assert pytester.runpytest(f"--genie-results-dir={pytester.path / 'r'}").ret == pytest.ExitCode.OK


def test_results_that_cannot_be_written_fail_the_run_but_not_the_tests(pytester: pytest.Pytester) -> None:
    (pytester.path / "file").write_text("a file, so no folder can be made below it")
    pytester.makepyfile(ONE_SERVER_TEST + "\n@pytest.mark.server\ndef test_second(): pass\n")
    result = pytester.runpytest(f"--genie-results-dir={pytester.path / 'file' / 'sub'}")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["Genie results could NOT be written: *Error: *"])
