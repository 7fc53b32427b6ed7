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

from pytest_genie.levels import DEFAULT_LEVEL, LEVELS, Level

__all__ = ["COMPARE_LATEST", "DEFAULT_LARGE_MB", "DEFAULT_RESULTS_DIR", "OPTIONS", "GenieOptions",
           "Threshold", "add_options", "resolve_options"]

DEFAULT_RESULTS_DIR = "reports"
#: The large-tensor size of the default level (``standard``).
DEFAULT_LARGE_MB = LEVELS[DEFAULT_LEVEL].large_mb
#: ``--genie-compare=latest``: the newest earlier session in the results dir.
COMPARE_LATEST = "latest"

_T = TypeVar("_T")
_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})


@dataclass(frozen=True, kw_only=True)
class GenieOptions:
    """What the ``genie_options`` fixture returns; every field already validated.

    ``servers`` are normalized base URLs (``http://host:port``), in the order given; empty
    when the tests should run against the embedded local server.  Two or more are a fleet
    (``pytest_genie.fleet``): every check that talks to a server runs against each.
    ``server_url`` is the first of them (the only one outside a fleet), or ``None``: give
    either, the other follows.
    """

    server_url: str | None = None
    servers: tuple[str, ...] = ()
    token: str | None = None
    results_dir: Path = Path(DEFAULT_RESULTS_DIR)
    report: bool = False
    require_gpu: bool = False
    #: None: the level's size.
    large_mb: float | None = None
    level: str = DEFAULT_LEVEL
    #: A baseline session folder, ``COMPARE_LATEST``, or None (no comparison).
    compare: str | None = None
    compare_fail: tuple[Threshold, ...] = ()
    #: Base seconds of every client request (``genie.Timeout.base_s``); None: the client's own.
    timeout_s: float | None = None

    def __post_init__(self) -> None:
        if not self.servers and self.server_url is not None:
            object.__setattr__(self, "servers", (self.server_url,))
        elif self.servers and self.server_url != self.servers[0]:
            if self.server_url is not None:
                raise ValueError(f"server_url {self.server_url} is not the first of servers {self.servers}")
            object.__setattr__(self, "server_url", self.servers[0])

    @property
    def is_fleet(self) -> bool:
        """Whether several servers were given: the checks are parametrized by server."""
        return len(self.servers) > 1

    @property
    def level_settings(self) -> Level:
        return LEVELS[self.level]

    @property
    def large_tensor_mb(self) -> float:
        """The large-tensor size in MiB: ``--genie-large-mb`` if given, else the level's."""
        return self.large_mb if self.large_mb is not None else self.level_settings.large_mb


@dataclass(frozen=True)
class Threshold:
    """One ``--genie-compare-fail=METRIC:PCT``: fail when ``metric`` is worse by more than ``pct``."""

    metric: str
    pct: float

    def __str__(self) -> str:
        return f"{self.metric}:{self.pct:g}%"


@dataclass(frozen=True)
class _Option:
    """One setting in its three spellings.  A ``repeatable`` one collects every CLI use; from
    the environment or the ini file it is a comma-separated list."""

    dest: str
    flag: str
    ini: str
    env: str
    help: str
    is_bool: bool = False
    repeatable: bool = False


OPTIONS: tuple[_Option, ...] = (
    _Option("genie_server", "--genie-server", "genie_server", "GENIE_SERVER",
            "Genie server to test: HOST, HOST:PORT or http(s)://HOST:PORT (default port 8888); "
            "repeatable (a fleet: every check that talks to a server runs against each). "
            "Without it, tests run against an embedded server on 127.0.0.1.", repeatable=True),
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
            "size in MiB of the large-tensor round trip (default: the level's, "
            + ", ".join(f"{lv.name} {lv.large_mb:g}" for lv in LEVELS.values()) + ")."),
    _Option("genie_level", "--genie-level", "genie_level", "GENIE_LEVEL",
            f"how thorough the client checks are: {' | '.join(LEVELS)} (sizes, repeats, large "
            f"tensor size; default {DEFAULT_LEVEL}; quick finishes in seconds, for CI)."),
    _Option("genie_compare", "--genie-compare", "genie_compare", "GENIE_COMPARE",
            f"compare this session's figures with a baseline: a genie_test_results_* folder, or "
            f"'{COMPARE_LATEST}' for the newest earlier session in the results dir."),
    _Option("genie_compare_fail", "--genie-compare-fail", "genie_compare_fail", "GENIE_COMPARE_FAIL",
            "METRIC:PCT, repeatable (e.g. remote_ms:10%%): with --genie-compare, exit non-zero when "
            "METRIC is worse than the baseline by more than PCT and by more than both runs' noise.",
            repeatable=True),
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
        elif opt.repeatable:
            group.addoption(opt.flag, action="append", default=None, dest=opt.dest, metavar="VALUE",
                            help=opt.help + env_hint)
            parser.addini(opt.ini, opt.help, type="string", default=None)
        else:
            group.addoption(opt.flag, action="store", default=None, dest=opt.dest, metavar="VALUE",
                            help=opt.help + env_hint)
            parser.addini(opt.ini, opt.help, type="string", default=None)


def _parse_servers(text: str) -> tuple[str, ...]:
    """A comma-separated list of servers, each normalized; one named twice is refused (two
    spellings of one server would be checked twice, racing on its counters)."""
    from genie.protocol import normalize_url  # genie's package init imports torch: keep it lazy

    servers: list[str] = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        try:
            url = normalize_url(part)
        except ValueError as exc:
            raise ValueError(f"{exc} (e.g. 192.168.1.100, 127.0.0.1:8888 or http://gpu-box:8888)") from None
        if url in servers:
            raise ValueError(f"{part!r} names {url} a second time; give each server once")
        servers.append(url)
    return tuple(servers)


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


def _parse_level(text: str) -> str:
    value = text.strip().lower()
    if value not in LEVELS:
        raise ValueError(f"expected one of {', '.join(LEVELS)}")
    return value


def _parse_compare(text: str) -> str | None:
    value = text.strip()
    if not value:
        return None
    if value == COMPARE_LATEST:
        return value
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder: name a genie_test_results_* session folder "
                         f"or '{COMPARE_LATEST}'")
    return str(folder.resolve())


def _parse_thresholds(text: str) -> tuple[Threshold, ...]:
    # Only loaded when a threshold is given: a plain run does not import the report.
    from pytest_genie.report.metrics import METRICS

    out = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        metric, sep, pct = part.partition(":")
        metric = metric.strip()
        if not sep or metric not in METRICS:
            raise ValueError(f"{part!r}: expected METRIC:PCT with METRIC one of {', '.join(METRICS)}")
        try:
            value = float(pct.strip().removesuffix("%"))
        except ValueError:
            raise ValueError(f"{part!r}: PCT must be a number of percent, e.g. {metric}:10%") from None
        if not (math.isfinite(value) and value >= 0):
            raise ValueError(f"{part!r}: PCT must be a finite percentage >= 0")
        out.append(Threshold(metric, value))
    return tuple(out)


def _parse_path(text: str) -> Path:
    if not text.strip():
        raise ValueError("must name a folder, e.g. reports")
    return Path(text).expanduser()


def _lookup(config: pytest.Config, opt: _Option) -> tuple[str, str] | None:
    """The raw value and a description of its source, by precedence; None if unset."""
    cli = config.getoption(opt.dest, default=None)
    if isinstance(cli, list):  # a repeatable option: every use, as one comma-separated list
        return ",".join(str(c) for c in cli), " ".join(f"{opt.flag}={c!s}" for c in cli)
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
    compare = _resolve(config, by_name["genie_compare"], _parse_compare, None)
    no_thresholds: tuple[Threshold, ...] = ()
    no_servers: tuple[str, ...] = ()
    thresholds = _resolve(config, by_name["genie_compare_fail"], _parse_thresholds, no_thresholds)
    if thresholds and compare is None:
        raise pytest.UsageError("--genie-compare-fail needs a baseline: add --genie-compare=DIR or "
                                f"--genie-compare={COMPARE_LATEST}.")
    return GenieOptions(
        servers=_resolve(config, by_name["genie_server"], _parse_servers, no_servers),
        token=_resolve(config, by_name["genie_token"], _parse_token, None),
        results_dir=results_dir,
        report=_resolve(config, by_name["genie_report"], _parse_bool, False),
        require_gpu=_resolve(config, by_name["genie_require_gpu"], _parse_bool, False),
        large_mb=_resolve(config, by_name["genie_large_mb"], _parse_large_mb, None),
        level=_resolve(config, by_name["genie_level"], _parse_level, DEFAULT_LEVEL),
        compare=compare,
        compare_fail=thresholds,
        timeout_s=_resolve(config, by_name["genie_timeout"], _parse_seconds, None),
    )
