"""The ``--genie-*`` options (``options.py``), driven through ``pytester``: defaults,
precedence CLI > environment > ini, and a bad value stopping the run with the fix.
"""

from __future__ import annotations

import os

import pytest

from pytest_genie.options import GenieOptions
from pytest_genie.state import STATE_KEY

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")


def _options(pytester: pytest.Pytester, *args: str) -> GenieOptions:
    return pytester.parseconfigure(*args).stash[STATE_KEY].options


def test_option_defaults(pytester: pytest.Pytester) -> None:
    opts = _options(pytester)
    assert opts == GenieOptions(results_dir=pytester.path / "reports")


def test_option_precedence_cli_over_env_over_ini(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
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


def test_genie_timeout_from_cli_env_or_ini(pytester: pytest.Pytester,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    assert _options(pytester).timeout_s is None  # the client's own default
    pytester.makeini("[pytest]\ngenie_timeout = 45\n")
    assert _options(pytester).timeout_s == 45.0
    monkeypatch.setenv("GENIE_TIMEOUT", "90")
    assert _options(pytester).timeout_s == 90.0
    assert _options(pytester, "--genie-timeout=600").timeout_s == 600.0


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
    (["--genie-timeout=0"], {}, "--genie-timeout=0: must be a finite number of seconds > 0, e.g. 120"),
    (["--genie-timeout=soon"], {}, "--genie-timeout=soon: expected a number of seconds, e.g. 120"),
    ([], {"GENIE_TIMEOUT": "inf"}, "environment variable GENIE_TIMEOUT=*finite number of seconds*"),
    (["--genie-server=http://:x"], {}, "--genie-server=http://:x:*expected HOST, HOST:PORT*"),
    (["--genie-server=ftp://host"], {}, "*scheme must be http or https*"),
    (["--genie-server=host:0"], {}, "*port 0*"),
    ([], {"GENIE_SERVER": "http://h/path"}, "environment variable GENIE_SERVER=*no path*"),
    (["--genie-server=http://"], {}, "--genie-server=http://: 'http://': no host*"),
    (["--genie-server=https:///"], {}, "--genie-server=https:///: *no host*"),
    ([], {"GENIE_REPORT": "maybe"}, "environment variable GENIE_REPORT=*expected a boolean*"),
    ([], {"GENIE_LARGE_MB": "-5"}, "environment variable GENIE_LARGE_MB=*> 0*"),
    (["-o", "genie_require_gpu=sometimes"], {}, "ini option genie_require_gpu*expected a boolean*"),
])
def test_bad_values_stop_the_run_naming_the_fix(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, args: list[str],
        env: dict[str, str], expected: str) -> None:
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    pytester.makepyfile("def test_never(): raise AssertionError('must not run')")
    result = pytester.runpytest(*args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: {expected}*Fix the value or unset it*"])
    assert "must not run" not in result.stdout.str()


def test_a_bad_environment_value_still_allows_help(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENIE_LARGE_MB", "-1")
    result = pytester.runpytest("--help")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["*--genie-large-mb=VALUE*"])


def test_a_results_dir_that_is_a_file_is_a_usage_error(pytester: pytest.Pytester) -> None:
    target = pytester.path / "taken"
    target.write_text("not a folder")
    result = pytester.runpytest(f"--genie-results-dir={target}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: --genie-results-dir: * exists and is not a folder*"])


def test_compare_options_from_the_cli_and_the_environment(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    baseline = pytester.mkdir("genie_test_results_20260101_000000")
    opts = _options(pytester, f"--genie-compare={baseline}", "--genie-compare-fail=remote_ms:10%",
                    "--genie-compare-fail=large_mib_per_s:15", "--genie-level=quick")
    assert opts.compare == str(baseline.resolve()) and opts.level == "quick"
    assert [str(t) for t in opts.compare_fail] == ["remote_ms:10%", "large_mib_per_s:15%"]
    monkeypatch.setenv("GENIE_COMPARE", "latest")
    monkeypatch.setenv("GENIE_COMPARE_FAIL", "lazy_ms:5%, chain_ms:7.5%")
    opts = _options(pytester)
    assert opts.compare == "latest"
    assert [(t.metric, t.pct) for t in opts.compare_fail] == [("lazy_ms", 5.0), ("chain_ms", 7.5)]
    monkeypatch.setenv("GENIE_COMPARE_FAIL", "lazy_ms:-5%")
    with pytest.raises(pytest.UsageError, match="environment variable GENIE_COMPARE_FAIL.*>= 0"):
        _options(pytester)


def test_several_servers_from_the_cli_the_environment_or_the_ini(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """``--genie-server`` repeatable (each use may be a comma list); env and ini take a comma list."""
    pytester.makeini("""
        [pytest]
        genie_server = gpu-a, gpu-b:9000
    """)
    opts = _options(pytester)
    assert opts.servers == ("http://gpu-a:8888", "http://gpu-b:9000") and opts.is_fleet
    assert opts.server_url == "http://gpu-a:8888"

    monkeypatch.setenv("GENIE_SERVER", "10.0.0.1,10.0.0.2,10.0.0.3")
    assert _options(pytester).servers == ("http://10.0.0.1:8888", "http://10.0.0.2:8888", "http://10.0.0.3:8888")

    opts = _options(pytester, "--genie-server=gpu-c", "--genie-server=https://gpu-d:8443,gpu-e")
    assert opts.servers == ("http://gpu-c:8888", "https://gpu-d:8443", "http://gpu-e:8888")

    one = _options(pytester, "--genie-server=gpu-c")
    assert (one.servers, one.server_url, one.is_fleet) == (("http://gpu-c:8888",), "http://gpu-c:8888", False)


def test_a_server_named_twice_is_refused(pytester: pytest.Pytester) -> None:
    """Two spellings of one server would check it twice, racing on its counters."""
    result = pytester.runpytest("--genie-server=gpu-a", "--genie-server=http://gpu-a:8888")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--genie-server*gpu-a:8888* a second time; give each server once*"])
