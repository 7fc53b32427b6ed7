"""The plugin's options, resolved once into a frozen :class:`GenieOptions`.

One ``genie`` group; each option is also an ini key and an environment variable.

Precedence is CLI > environment > ini > default, so a CI job can pin a value in
``pyproject.toml`` and a person can still override it for one run.  Every value is
validated here, at configure time, and a bad one raises :class:`pytest.UsageError`
that names where the value came from and what to write instead: a typo must stop
the run before a single test spends a minute against the wrong server.

Relative results directories: from the command line or the environment they are
relative to the directory pytest was invoked from (like ``--junitxml``); from the
ini file or the default, relative to the rootdir (like ``cache_dir``).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

__all__ = ["DEFAULT_LARGE_MB", "DEFAULT_RESULTS_DIR", "OPTIONS", "GenieOptions", "add_options",
           "resolve_options"]

DEFAULT_RESULTS_DIR = "reports"
DEFAULT_LARGE_MB = 256.0

_T = TypeVar("_T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, kw_only=True)
class GenieOptions:
    """What the ``genie_options`` fixture returns; every field already validated.

    ``server_url`` is a normalized base URL (``http://host:port``) or ``None`` when
    the tests should run against the embedded local server.
    """

    server_url: str | None = None
    token: str | None = None
    results_dir: Path = Path(DEFAULT_RESULTS_DIR)
    report: bool = False
    require_gpu: bool = False
    large_mb: float = DEFAULT_LARGE_MB
    #: Base seconds of every client request (``genie.Timeout.base_s``); None: the client's own.
    timeout_s: float | None = None


@dataclass(frozen=True)
class _Option:
    """One setting in its three spellings."""

    dest: str
    flag: str
    ini: str
    env: str
    help: str
    is_bool: bool = False


OPTIONS: tuple[_Option, ...] = (
    _Option("genie_server", "--genie-server", "genie_server", "GENIE_SERVER",
            "Genie server to test: HOST, HOST:PORT or http(s)://HOST:PORT (default port 8888). "
            "Without it, tests run against an embedded server on 127.0.0.1."),
    _Option("genie_token", "--genie-token", "genie_token", "GENIE_TOKEN",
            "bearer token for the Genie server (and for the embedded one)."),
    _Option("genie_results_dir", "--genie-results-dir", "genie_results_dir", "GENIE_RESULTS_DIR",
            f"folder that receives genie_test_results_<timestamp>/ session folders "
            f"(default: {DEFAULT_RESULTS_DIR}/ under the rootdir)."),
    _Option("genie_report", "--genie-report", "genie_report", "GENIE_REPORT",
            "write comprehensive_report.json and test_analysis_report.md into the session folder.",
            is_bool=True),
    _Option("genie_require_gpu", "--genie-require-gpu", "genie_require_gpu", "GENIE_REQUIRE_GPU",
            "fail (instead of skip) GPU checks when the server has no usable GPU.", is_bool=True),
    _Option("genie_large_mb", "--genie-large-mb", "genie_large_mb", "GENIE_LARGE_MB",
            f"size in MiB of the large-tensor round trip (default {DEFAULT_LARGE_MB:g})."),
    _Option("genie_timeout", "--genie-timeout", "genie_timeout", "GENIE_TIMEOUT",
            "base timeout in seconds of each client request (default 30); each request's "
            "budget adds its bytes at the link rate network_throughput measured (with margin), "
            "or at 1 MiB/s before it has."),
)


def add_options(parser: pytest.Parser) -> None:
    """Register the ``genie`` group.  CLI defaults are ``None`` so that "not given"
    is distinguishable from a value and the environment/ini can fill in."""
    group = parser.getgroup("genie", "Genie remote-GPU testing")
    for opt in OPTIONS:
        env_hint = f" [env {opt.env}, ini {opt.ini}]"
        if opt.is_bool:
            group.addoption(opt.flag, action="store_true", default=None, dest=opt.dest,
                            help=opt.help + env_hint)
            parser.addini(opt.ini, opt.help, type="string", default=None)
        else:
            group.addoption(opt.flag, action="store", default=None, dest=opt.dest, metavar="VALUE",
                            help=opt.help + env_hint)
            parser.addini(opt.ini, opt.help, type="string", default=None)


def _parse_server(text: str) -> str | None:
    from genie.protocol import normalize_url  # genie's package init imports torch: keep it lazy

    if not text.strip():
        return None
    try:
        return normalize_url(text)
    except ValueError as exc:
        raise ValueError(f"{exc} (e.g. 192.168.1.100, 127.0.0.1:8888 or http://gpu-box:8888)") from None


def _parse_token(text: str) -> str | None:
    return text or None


def _parse_bool(text: str) -> bool:
    value = text.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError("expected a boolean: 1/true/yes/on or 0/false/no/off")


def _positive(unit: str, example: str) -> Callable[[str], float]:
    """A parser of a finite number of ``unit`` > 0 (NaN, inf, 0 and text refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"expected a number of {unit}, e.g. {example}") from None
        if not math.isfinite(value) or value <= 0:
            raise ValueError(f"must be a finite number of {unit} > 0, e.g. {example}")
        return value

    return parse


_parse_large_mb = _positive("MiB", "256")
_parse_seconds = _positive("seconds", "120")


def _parse_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("must name a folder, e.g. reports")
    return Path(text).expanduser()


def _lookup(config: pytest.Config, opt: _Option) -> tuple[str, str] | None:
    """The raw value and a description of its source, by precedence; None if unset."""
    cli = config.getoption(opt.dest, default=None)
    if cli is not None:
        return ("1" if cli is True else str(cli)), f"{opt.flag}={cli!s}"
    env = os.environ.get(opt.env)
    if env is not None:
        return env, f"environment variable {opt.env}={env!r}"
    ini = config.getini(opt.ini)
    if ini is not None and ini != "":
        where = config.inipath or "the ini file or -o"
        return str(ini), f"ini option {opt.ini} = {ini!r} in {where}"
    return None


def _resolve(config: pytest.Config, opt: _Option, parse: Callable[[str], _T], default: _T) -> _T:
    found = _lookup(config, opt)
    if found is None:
        return default
    raw, source = found
    try:
        return parse(raw)
    except ValueError as exc:
        raise pytest.UsageError(f"{source}: {exc}. Fix the value or unset it "
                                f"(it is also read from {opt.flag}, ${opt.env} and ini {opt.ini}).") from None


def _results_dir(config: pytest.Config) -> Path:
    by_name = {o.dest: o for o in OPTIONS}
    opt = by_name["genie_results_dir"]
    path = _resolve(config, opt, _parse_path, Path(DEFAULT_RESULTS_DIR))
    if path.is_absolute():
        return path
    from_cli_or_env = (config.getoption(opt.dest, default=None) is not None
                       or os.environ.get(opt.env) is not None)
    base = config.invocation_params.dir if from_cli_or_env else config.rootpath
    return Path(base) / path


def resolve_options(config: pytest.Config) -> GenieOptions:
    """Resolve every option by precedence; raises ``pytest.UsageError`` on a bad value."""
    by_name = {o.dest: o for o in OPTIONS}
    results_dir = _results_dir(config)
    if results_dir.exists() and not results_dir.is_dir():
        raise pytest.UsageError(f"--genie-results-dir: {results_dir} exists and is not a folder; "
                                "name a folder (it is created when missing).")
    return GenieOptions(
        server_url=_resolve(config, by_name["genie_server"], _parse_server, None),
        token=_resolve(config, by_name["genie_token"], _parse_token, None),
        results_dir=results_dir,
        report=_resolve(config, by_name["genie_report"], _parse_bool, False),
        require_gpu=_resolve(config, by_name["genie_require_gpu"], _parse_bool, False),
        large_mb=_resolve(config, by_name["genie_large_mb"], _parse_large_mb, DEFAULT_LARGE_MB),
        timeout_s=_resolve(config, by_name["genie_timeout"], _parse_seconds, None),
    )
