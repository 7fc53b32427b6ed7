"""The Genie pytest plugin, driven through ``pytester``: options, markers, records,
result files, terminal summary, xdist and pytest-json-report.

Most runs are in-process (``inline_run``: fast); the ones that need a real
process (a crash, xdist workers) run pytest as a subprocess.  Every run writes under
the pytester temp folder, never into the repository's ``reports/``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.options import OPTIONS, GenieOptions
from pytest_genie.state import STATE_KEY

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

STATUSES = {"PASS", "FAIL", "SKIP", "ERROR"}
TEST_INFO_KEYS = {"hostname": str, "timestamp": str, "test_type": str, "python_version": str,
                  "platform": str, "gpu": dict}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GENIE_* variable in the developer's shell must not leak into the inner runs."""
    for opt in OPTIONS:
        monkeypatch.delenv(opt.env, raising=False)


def _options(pytester: pytest.Pytester, *args: str) -> GenieOptions:
    return pytester.parseconfigure(*args).stash[STATE_KEY].options


def _session_folders(results: Path) -> list[Path]:
    return sorted(p for p in results.glob("genie_test_results_*") if p.is_dir())


def _load(folder: Path, kind: str) -> dict[str, Any]:
    (path,) = folder.glob(f"{kind}_test_results_*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _by_name(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in doc["tests"]}


def check_schema(doc: Any, test_type: str) -> None:
    """The guide's schema, as the contract fixes it (fails with the offending path)."""
    assert isinstance(doc, dict) and set(doc) == {"test_info", "tests"}
    info = doc["test_info"]
    for key, kind in TEST_INFO_KEYS.items():
        assert isinstance(info.get(key), kind), f"test_info.{key}: {info.get(key)!r}"
    assert info["test_type"] == test_type
    assert datetime.fromisoformat(info["timestamp"]).utcoffset() is not None
    assert info["server_url"] is None or info["server_url"].startswith("http")
    for key in ("torch_version", "genie_version"):
        assert info[key] is None or isinstance(info[key], str)
    gpu = info["gpu"]
    assert isinstance(gpu["cuda_available"], bool) and isinstance(gpu["gpu_count"], int)
    assert gpu["gpu_name"] is None or isinstance(gpu["gpu_name"], str)
    assert isinstance(doc["tests"], list) and doc["tests"]
    for test in doc["tests"]:
        assert set(test) == {"name", "status", "details", "timing_ms", "timestamp"}, test
        assert isinstance(test["name"], str) and not test["name"].startswith("test_")
        assert test["status"] in STATUSES
        assert isinstance(test["details"], dict)
        assert isinstance(test["timing_ms"], (int, float)) and not isinstance(test["timing_ms"], bool)
        assert math.isfinite(test["timing_ms"]) and test["timing_ms"] >= 0
        assert datetime.fromisoformat(test["timestamp"]).utcoffset() is not None


MIXED = """
import pytest

@pytest.mark.server
def test_alpha(genie_record):
    genie_record["value"] = 1.5
    genie_record["dtype"] = object()          # not JSON: recorded as its str
    genie_record["nan"] = float("nan")        # not JSON: recorded as null

@pytest.mark.server
@pytest.mark.skipif(True, reason="no GPU on this node")
def test_marked_skip():
    pass

@pytest.mark.client
def test_fails(genie_record):
    genie_record["measured"] = 3
    assert 1 + 1 == 3, "arithmetic is broken"

@pytest.mark.client
def test_skips_inside():
    pytest.skip("server has no CUDA")

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown exploded")

@pytest.mark.client
def test_setup_error(broken):
    pass

@pytest.mark.client
def test_teardown_error(broken_teardown):
    pass

@pytest.mark.client
@pytest.mark.parametrize("n", [10, 1000])
def test_sweep(n, genie_record):
    genie_record["n"] = n

def test_unmarked():
    pass
"""


@pytest.fixture
def mixed_run(pytester: pytest.Pytester) -> tuple[pytest.RunResult, Path]:
    pytester.makepyfile(test_mixed=MIXED)
    results = pytester.path / "results"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--genie-results-dir={results}")
    return result, results


# ---- options and markers ------------------------------------------------------------


def test_markers_are_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--markers")
    result.stdout.fnmatch_lines(["@pytest.mark.server: documented server-side*",
                                 "@pytest.mark.client: documented client-side*"])


def test_option_defaults(pytester: pytest.Pytester) -> None:
    opts = _options(pytester)
    assert opts == GenieOptions(results_dir=pytester.path / "reports")


def test_option_precedence_cli_over_env_over_ini(pytester: pytest.Pytester,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    pytester.makeini("""
        [pytest]
        genie_server = 10.0.0.1
        genie_large_mb = 8
        genie_token = from-ini
        genie_report = true
        genie_results_dir = ini-out
    """)
    opts = _options(pytester)
    assert opts.server_url == "http://10.0.0.1:8888"
    assert (opts.large_mb, opts.token, opts.report) == (8.0, "from-ini", True)
    assert opts.results_dir == pytester.path / "ini-out"  # ini: relative to the rootdir

    monkeypatch.setenv("GENIE_SERVER", "10.0.0.2:9000")
    monkeypatch.setenv("GENIE_LARGE_MB", "16")
    monkeypatch.setenv("GENIE_REPORT", "no")
    opts = _options(pytester)
    assert (opts.server_url, opts.large_mb, opts.report) == ("http://10.0.0.2:9000", 16.0, False)
    assert opts.token == "from-ini"

    opts = _options(pytester, "--genie-server=https://[::1]:7000", "--genie-large-mb=0.5",
                    "--genie-report", "--genie-require-gpu", "--genie-token=cli")
    assert opts == GenieOptions(server_url="https://[::1]:7000", token="cli", report=True,
                                require_gpu=True, large_mb=0.5, results_dir=pytester.path / "ini-out")


def test_results_dir_from_cli_is_relative_to_the_invocation_dir(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    sub = pytester.mkdir("sub")
    os.chdir(sub)  # pytester restores the cwd
    opts = _options(pytester, f"--rootdir={pytester.path}", "--genie-results-dir=mine")
    assert opts.results_dir == sub / "mine"


@pytest.mark.parametrize(("args", "env", "expected"), [
    (["--genie-large-mb=-1"], {}, "--genie-large-mb=-1: must be a finite number of MiB > 0"),
    (["--genie-large-mb=0"], {}, "--genie-large-mb=0: must be*> 0"),
    (["--genie-large-mb=nan"], {}, "*finite*"),
    (["--genie-large-mb=big"], {}, "--genie-large-mb=big: expected a number of MiB, e.g. 256"),
    (["--genie-server=http://:x"], {}, "--genie-server=http://:x:*expected HOST, HOST:PORT*"),
    (["--genie-server=ftp://host"], {}, "*scheme must be http or https*"),
    (["--genie-server=host:0"], {}, "*port 0*"),
    ([], {"GENIE_SERVER": "http://h/path"}, "environment variable GENIE_SERVER=*no path*"),
    ([], {"GENIE_REPORT": "maybe"}, "environment variable GENIE_REPORT=*expected a boolean*"),
    ([], {"GENIE_LARGE_MB": "-5"}, "environment variable GENIE_LARGE_MB=*> 0*"),
    (["-o", "genie_require_gpu=sometimes"], {}, "ini option genie_require_gpu*expected a boolean*"),
])
def test_bad_values_stop_the_run_naming_the_fix(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch,
                                                args: list[str], env: dict[str, str],
                                                expected: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}*Fix the value or unset it*"])
    assert "must not run" not in result.stdout.str()


def test_a_bad_environment_value_still_allows_help(pytester: pytest.Pytester,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENIE_LARGE_MB", "-1")
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*--genie-large-mb=VALUE*"])


# ---- records and result files ------------------------------------------------------


def test_status_mapping_and_details(mixed_run: tuple[pytest.RunResult, Path]) -> None:
    result, results = mixed_run
    result.assert_outcomes(passed=5, failed=1, skipped=2, errors=2)
    (folder,) = _session_folders(results)
    server, client = _load(folder, "server"), _load(folder, "client")
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


def test_xfail_outcomes_are_mapped_as_pytest_reports_them(pytester: pytest.Pytester) -> None:
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
    tests = _by_name(_load(_session_folders(results)[0], "server"))
    assert tests["expected_failure"]["status"] == "SKIP"
    assert tests["expected_failure"]["details"] == {"skip_reason": "xfail: known bug"}
    assert tests["strict_xpass"]["status"] == "FAIL"
    assert "XPASS(strict)" in tests["strict_xpass"]["details"]["failure"]
    assert tests["imperative_xfail"]["details"] == {"skip_reason": "xfail: not today"}


def test_terminal_summary_lists_every_record(mixed_run: tuple[pytest.RunResult, Path]) -> None:
    result, results = mixed_run
    (folder,) = _session_folders(results)
    result.stdout.fnmatch_lines([
        "*= Genie =*",
        "Server-side tests [[]server_side[]] (server_test_results_*.json): 1 pass, 1 skip",
        "✅ alpha (*.* ms)",
        '   Details: {"value": 1.5, "dtype": "<object object at *", "nan": null}',
        "⏭ marked_skip (*.* ms)",
        "Client-side tests [[]client_side[]]*",
        "❌ fails (*.* ms)",
        "*Details: {*\"failure\": \"AssertionError: arithmetic is broken*",
        "⏭ skips_inside*",
        "💥 setup_error*",
        "💥 teardown_error*",
        "✅ sweep[[]10[]]*",
        "✅ sweep[[]1000[]]*",
        f"Genie results: {folder}",
    ])


def test_marker_selection_writes_only_that_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mixed=MIXED)
    results = pytester.path / "results"
    result = pytester.runpytest("-m", "server", f"--genie-results-dir={results}")
    result.assert_outcomes(passed=1, skipped=1, deselected=7)
    (folder,) = _session_folders(results)
    assert [p.name.split("_")[0] for p in folder.iterdir()] == ["server"]
    assert list(_by_name(_load(folder, "server"))) == ["alpha", "marked_skip"]


def test_no_documented_tests_leave_no_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("def test_plain(): pass")
    results = pytester.path / "results"
    pytester.runpytest(f"--genie-results-dir={results}").assert_outcomes(passed=1)
    assert not results.exists()


def test_sessions_never_overwrite_each_other(pytester: pytest.Pytester) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.client
        def test_one(genie_record):
            genie_record["run"] = 1
    """)
    results = pytester.path / "results"
    pytester.runpytest(f"--genie-results-dir={results}").assert_outcomes(passed=1)
    (first,) = _session_folders(results)
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    # The next session starts in the same second: its folder name is taken already.
    stamp = first.name.removeprefix("genie_test_results_")
    (results / f"genie_test_results_{stamp}_2").mkdir()
    from pytest_genie.results import ResultsSession, TestRecord

    started = datetime.strptime(stamp + "+0000", "%Y%m%d_%H%M%S%z").timestamp()
    again = ResultsSession(results_dir=results, started=started)
    again.add(TestRecord(name="one", status="PASS", details={}, timing_ms=1.0,
                         timestamp="2025-01-09T14:30:00+00:00", kinds=["client"]))
    assert again.folder == results / f"genie_test_results_{stamp}_3"
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before

    pytester.runpytest(f"--genie-results-dir={results}").assert_outcomes(passed=1)
    assert len(_session_folders(results)) == 4
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


def test_test_info_hook_extends_the_envelope(pytester: pytest.Pytester) -> None:
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
    info = _load(_session_folders(results)[0], "server")["test_info"]
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


def test_ctrl_c_leaves_valid_json_of_every_test_that_ran(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STOPS.format(stop="raise KeyboardInterrupt"))
    results = pytester.path / "results"
    reprec = pytester.inline_run(f"--genie-results-dir={results}", no_reraise_ctrlc=True)
    assert reprec.ret == pytest.ExitCode.INTERRUPTED
    doc = _load(_session_folders(results)[0], "client")
    check_schema(doc, "client_side")
    tests = _by_name(doc)
    assert list(tests) == ["first", "second"]
    assert tests["second"]["status"] == "ERROR"
    assert tests["second"]["details"]["error"] == "interrupted by KeyboardInterrupt during the test"


def test_sigint_from_outside_leaves_valid_json(pytester: pytest.Pytester) -> None:
    """A real Ctrl-C: SIGINT sent to a pytest process while a test is running."""
    started = pytester.path / "started"
    pytester.makepyfile(STOPS.format(
        stop=f"open({str(started)!r}, 'w').close()\n    import time\n    time.sleep(60)"))
    results = pytester.path / "results"
    proc = pytester.popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider",
                           f"--genie-results-dir={results}"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), proc.communicate()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == pytest.ExitCode.INTERRUPTED
    doc = _load(_session_folders(results)[0], "client")
    check_schema(doc, "client_side")
    assert [(t["name"], t["status"]) for t in doc["tests"]] == [("first", "PASS"), ("second", "ERROR")]
    assert doc["tests"][1]["timing_ms"] > 0  # the time it ran before the interrupt


def test_runs_without_pytest_json_report(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ONE_SERVER_TEST)
    results = pytester.path / "results"
    pytester.runpytest("-p", "no:pytest_jsonreport", f"--genie-results-dir={results}"
                       ).assert_outcomes(passed=1)
    assert _by_name(_load(_session_folders(results)[0], "server"))["environment_setup"]["status"] == "PASS"


def test_exit_first_leaves_valid_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STOPS.format(stop="assert False"))
    results = pytester.path / "results"
    pytester.runpytest("-x", f"--genie-results-dir={results}").assert_outcomes(passed=1, failed=1)
    doc = _load(_session_folders(results)[0], "client")
    assert [(t["name"], t["status"]) for t in doc["tests"]] == [("first", "PASS"), ("second", "FAIL")]


def test_a_crashing_test_process_leaves_valid_json(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(STOPS.format(stop="os._exit(3)"))
    results = pytester.path / "results"
    result = pytester.runpytest_subprocess(f"--genie-results-dir={results}")
    assert result.ret == 3
    (folder,) = _session_folders(results)
    doc = _load(folder, "client")
    check_schema(doc, "client_side")
    assert [(t["name"], t["status"]) for t in doc["tests"]] == [("first", "PASS")]
    assert not list(folder.glob(".*.tmp"))  # no temp file left half-written


# ---- embedded server, xdist, json-report ---------------------------------------------

CLIENT_TESTS = """
import os, pytest, torch

@pytest.mark.client
@pytest.mark.parametrize("i", range(6))
def test_round_trip(i, genie_client, genie_server_url, genie_options, genie_record):
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4) - i
    assert torch.equal(genie_client.execute("relu", x), x.relu())
    genie_record.update(i=i, url=genie_server_url, large_mb=genie_options.large_mb,
                        worker=os.environ.get("PYTEST_XDIST_WORKER", "main"),
                        torch=torch.__version__)  # a str subclass: must still cross to xdist's controller
"""


def test_genie_client_talks_to_the_embedded_server(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CLIENT_TESTS)
    results = pytester.path / "results"
    pytester.runpytest(f"--genie-results-dir={results}", "--genie-large-mb=1").assert_outcomes(passed=6)
    doc = _load(_session_folders(results)[0], "client")
    check_schema(doc, "client_side")
    urls = {t["details"]["url"] for t in doc["tests"]}
    assert len(urls) == 1 and urls.pop().startswith("http://127.0.0.1:")
    assert doc["test_info"]["server_url"] == doc["tests"][0]["details"]["url"]
    assert {t["details"]["large_mb"] for t in doc["tests"]} == {1.0}


def test_genie_server_option_is_used_without_starting_a_local_server(pytester: pytest.Pytester) -> None:
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
    assert _load(_session_folders(results)[0], "client")["test_info"]["server_url"] == "http://127.0.0.1:9"


def test_xdist_controller_writes_one_complete_file(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(CLIENT_TESTS)
    results = pytester.path / "results"
    json_report = pytester.path / "report.json"
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider", "--genie-large-mb=1",
                                           f"--genie-results-dir={results}", "--json-report",
                                           f"--json-report-file={json_report}")
    result.assert_outcomes(passed=6)
    metadata = [t["metadata"]["genie"] for t in json.loads(json_report.read_text())["tests"]]
    assert sorted(m["details"]["i"] for m in metadata) == list(range(6))  # relayed by the workers
    (folder,) = _session_folders(results)
    assert [p.name.split("_")[0] for p in folder.iterdir()] == ["client"]
    doc = _load(folder, "client")
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


def test_xdist_worker_crash_is_recorded_as_error(pytester: pytest.Pytester) -> None:
    """A documented test that kills its xdist worker (os._exit, a native abort) is in the
    file as ERROR saying so; the replacement worker's tests are recorded as usual."""
    pytester.makepyfile(CRASHES)
    results = pytester.path / "results"
    result = pytester.runpytest_subprocess("-n", "2", "-p", "no:cacheprovider",
                                           f"--genie-results-dir={results}")
    result.assert_outcomes(passed=2, failed=3)
    (folder,) = _session_folders(results)
    server = _load(folder, "server")
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
    client = _load(folder, "client")
    check_schema(client, "client_side")
    assert {(t["name"], t["status"]) for t in client["tests"]} == {("first", "PASS"), ("after", "PASS")}
    result.stdout.fnmatch_lines(["*= Genie =*", "Server-side tests*2 error*"])


def test_sigint_under_xdist_records_the_tests_in_flight_on_workers(pytester: pytest.Pytester) -> None:
    """Ctrl-C to the xdist controller mid-test: the file holds the test that was running."""
    started = pytester.path / "started"
    pytester.makepyfile(STOPS.format(
        stop=f"open({str(started)!r}, 'w').close()\n    import time\n    time.sleep(60)"))
    results = pytester.path / "results"
    proc = pytester.popen([sys.executable, "-m", "pytest", "-n", "1", "-p", "no:cacheprovider",
                           f"--genie-results-dir={results}"], stdin=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while not started.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert started.exists(), proc.communicate()
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    doc = _load(_session_folders(results)[0], "client")
    check_schema(doc, "client_side")
    assert [(t["name"], t["status"]) for t in doc["tests"]] == [("first", "PASS"), ("second", "ERROR")], out
    assert "stopped during call" in doc["tests"][1]["details"]["error"]


def test_json_report_metadata_holds_the_record(pytester: pytest.Pytester) -> None:
    pytest.importorskip("pytest_jsonreport")
    pytester.makepyfile(test_mixed=MIXED)
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


def test_genie_report_writes_into_the_session_folder(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(ONE_SERVER_TEST)
    results = pytester.path / "results"
    result = pytester.runpytest("--genie-report", f"--genie-results-dir={results}")
    result.assert_outcomes(passed=1)
    (folder,) = _session_folders(results)
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


def test_a_results_dir_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    target = pytester.path / "taken"
    target.write_text("not a folder")
    result = pytester.runpytest(f"--genie-results-dir={target}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --genie-results-dir: * exists and is not a folder*"])


def test_results_that_cannot_be_written_fail_the_run_but_not_the_tests(pytester: pytest.Pytester) -> None:
    (pytester.path / "file").write_text("a file, so no folder can be made below it")
    pytester.makepyfile(ONE_SERVER_TEST + "\n@pytest.mark.server\ndef test_second(): pass\n")
    result = pytester.runpytest(f"--genie-results-dir={pytester.path / 'file' / 'sub'}")
    result.assert_outcomes(passed=2)
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["Genie results could NOT be written: *Error: *"])
