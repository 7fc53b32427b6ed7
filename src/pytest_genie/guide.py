"""The guide's own commands, as thin fronts of ``pytest -m ...`` and ``genie-report``.

``scripts/week1_server_tests.sh``, ``week1_client_tests.sh SERVER_IP``,
``week1_comprehensive_tests.sh SERVER_IP`` and ``parse_test_results.py DIR`` call
:func:`main`, which prints the guide's header (the node's information block), shows the
exact pytest command, runs it, and returns its exit status.  The per-test lines and the
closing "All ... tests passed" line are the plugin's own terminal summary, so a plain
``pytest -m server`` prints them too.  Paths are relative to ``root``, the repository the
scripts belong to (they change into it first, so they work from any folder).

Which server each command checks:

* ``server``: ``--genie-server`` / ``$GENIE_SERVER`` when given; else the ``genie-server``
  answering on 127.0.0.1:8888 (the guide starts one before running the script); else a
  server the plugin embeds for the run.
* ``client SERVER_IP``: that server (``HOST``, ``HOST:PORT`` or a URL; port 8888 by default).
* ``comprehensive SERVER_IP``: the client checks against it, and the server checks too when
  SERVER_IP is this machine (:func:`pytest_genie.host.is_this_host`: a loopback address,
  this hostname, or an address a socket can be bound to here); all in one session, so one
  folder and one merged report.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from pytest_genie import host

__all__ = ["COMMANDS", "DEFAULT_LOCAL_SERVER", "main"]

#: Where the guide's server runs: ``genie-server --host 0.0.0.0 --port 8888`` on this node.
DEFAULT_LOCAL_SERVER = "127.0.0.1:8888"
PROBE_TIMEOUT_S = 2.0
RULE = "==============================="
USAGE = {
    "server": "bash scripts/week1_server_tests.sh [PYTEST_ARGS...]",
    "client": "bash scripts/week1_client_tests.sh SERVER_IP [PYTEST_ARGS...]",
    "comprehensive": "bash scripts/week1_comprehensive_tests.sh SERVER_IP [PYTEST_ARGS...]",
    "parse": "python scripts/parse_test_results.py [genie_test_results_DIR ...] [--output DIR]",
}
#: ``genie-report`` options that take a value (which is a folder, never a session name).
_VALUED = ("--output", "--history")


def _say(line: str = "") -> None:
    print(line, flush=True)  # before pytest writes to the same terminal


def _url(target: str) -> str:
    from genie.protocol import normalize_url  # genie's package init imports torch: keep it lazy

    return normalize_url(target)


def _health(url: str) -> dict[str, Any] | None:
    """``/health`` of ``url`` when a server answers there; ``{}`` when it wants a token."""
    try:
        with urllib.request.urlopen(f"{url}/health", timeout=PROBE_TIMEOUT_S) as reply:
            data = json.loads(reply.read())
    except urllib.error.HTTPError as exc:  # 401: a server with a token is still a server
        return {} if exc.code == 401 else None
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _gpu(health: dict[str, Any] | None) -> tuple[object, object]:
    """CUDA availability and the GPU's name: the server's own word, else this machine's."""
    if health and "cuda_available" in health:
        return health["cuda_available"], health.get("gpu_name") or "None"
    try:
        import torch
    except ImportError:
        return False, "None (torch is not installed)"
    available = torch.cuda.is_available()
    return available, torch.cuda.get_device_name(0) if available else "None"


def _given_server(args: Sequence[str]) -> str | None:
    for i, arg in enumerate(args):
        if arg.startswith("--genie-server="):
            return arg.split("=", 1)[1]
        if arg == "--genie-server" and i + 1 < len(args):
            return args[i + 1]
    return os.environ.get("GENIE_SERVER") or None


def _run(args: list[str]) -> int:
    """``pytest ARGS`` in a fresh process (this one has imported Genie, which pytest could
    then not rewrite for its asserts), its exit status returned as is."""
    _say(f"$ pytest {' '.join(shlex.quote(a) for a in args)}")
    _say()
    with subprocess.Popen([sys.executable, "-m", "pytest", *args]) as proc:
        try:
            return proc.wait()
        except KeyboardInterrupt:  # pytest got the Ctrl-C too: let it finish its files
            return proc.wait()


def _server(extra: list[str], root: Path) -> int:
    given = _given_server(extra)
    args = list(extra)
    try:
        url = _url(given or DEFAULT_LOCAL_SERVER)
    except ValueError as exc:  # pytest would refuse it too, after a slower start
        print(f"--genie-server / GENIE_SERVER: {exc}\nusage: {USAGE['server']}", file=sys.stderr)
        return int(pytest.ExitCode.USAGE_ERROR)
    health = _health(url)
    if given is None and health is not None:
        args.append(f"--genie-server={url}")
    checked = url if given or health is not None else (
        f"embedded on 127.0.0.1 for this run (no server answered at {url})")
    cuda, gpu = _gpu(health)
    _say("🚀 Genie Server-Side Testing")
    _say(RULE)
    _say("📋 Server Information:")
    _say(f"   Hostname: {host.hostname()}")
    _say(f"   IP Addresses: {' '.join(host.ip_addresses()) or 'none found'}")
    _say(f"   CUDA Available: {cuda}")
    _say(f"   GPU: {gpu}")
    _say(f"   Server checked: {checked}")
    _say()
    return _run(["-m", "server", str(root / "tests" / "server"), "-q", *args])


def _target(extra: list[str], command: str) -> tuple[str, str, list[str]] | None:
    """SERVER_IP, its URL and the remaining arguments; None (after saying why) when missing."""
    if not extra or extra[0].startswith("-"):
        print(f"usage: {USAGE[command]}  (e.g. SERVER_IP 192.168.1.100)", file=sys.stderr)
        return None
    try:
        return extra[0], _url(extra[0]), extra[1:]
    except ValueError as exc:
        print(f"SERVER_IP: {exc}\nusage: {USAGE[command]}", file=sys.stderr)
        return None


def _client(extra: list[str], root: Path) -> int:
    found = _target(extra, "client")
    if found is None:
        return int(pytest.ExitCode.USAGE_ERROR)
    server_ip, url, rest = found
    _say("🚀 Genie Client-Side Testing")
    _say(RULE)
    _say("📋 Client Information:")
    _say(f"   Hostname: {host.hostname()}")
    _say(f"   Server IP: {server_ip}")
    _say(f"   Server URL: {url}")
    _say()
    return _run(["-m", "client", str(root / "tests" / "client"), "-q", f"--genie-server={url}",
                 *rest])


def _comprehensive(extra: list[str], root: Path) -> int:
    found = _target(extra, "comprehensive")
    if found is None:
        return int(pytest.ExitCode.USAGE_ERROR)
    server_ip, url, rest = found
    here = host.is_this_host(urlsplit(url).hostname or "")
    _say("🚀 Genie Comprehensive Multi-Node Testing")
    _say(RULE)
    _say("📋 Test Configuration:")
    _say(f"   Server IP: {server_ip}")
    _say(f"   Client Hostname: {host.hostname()}")
    if here:
        _say(f"   Server checks: run here too ({server_ip} is this machine)")
    else:
        _say(f"   Server checks: not here ({server_ip} is another machine). Run "
             "bash scripts/week1_server_tests.sh there, copy its reports/genie_test_results_* "
             "folder here, then: python scripts/parse_test_results.py SERVER_FOLDER CLIENT_FOLDER")
    _say()
    tests = root / "tests"
    selection = (["-m", "server or client", str(tests / "server"), str(tests / "client")]
                 if here else ["-m", "client", str(tests / "client")])
    return _run([*selection, "-q", f"--genie-server={url}", "--genie-report", *rest])


def _session_dir(name: str, root: Path) -> str:
    """A session folder as the guide names it (``genie_test_results_YYYYMMDD_HHMMSS/``):
    where it is, else in the repository's results folder, where the plugin writes it."""
    given = Path(name)
    if given.is_dir() or given.is_absolute():
        return name
    for base in (root / "reports", root):
        if (base / given).is_dir():
            return str(base / given)
    return name  # genie-report says it is not a folder


def _parse(extra: list[str], root: Path) -> int:
    from pytest_genie.report.build import MARKDOWN_NAME
    from pytest_genie.report.cli import main as genie_report
    from pytest_genie.results import FOLDER_PREFIX

    args: list[str] = []
    folders: list[str] = []
    output: str | None = None
    i = 0
    while i < len(extra):
        arg = extra[i]
        if arg in _VALUED and i + 1 < len(extra):
            args += extra[i:i + 2]
            output = extra[i + 1] if arg == "--output" else output
            i += 2
            continue
        if arg.startswith("-"):
            args.append(arg)
            output = arg.split("=", 1)[1] if arg.startswith("--output=") else output
        else:
            folders.append(_session_dir(arg, root))
        i += 1
    if not folders:  # the guide's CI step: the newest session (by the time in its name:
        # writing a report into a folder would make it the newest by mtime)
        sessions = sorted(p for p in (root / "reports").glob(f"{FOLDER_PREFIX}*") if p.is_dir())
        if not sessions:
            print(f"parse_test_results.py: no {FOLDER_PREFIX}* folder in {root / 'reports'}\n"
                  f"usage: {USAGE['parse']}", file=sys.stderr)
            return 2
        folders = [str(sessions[-1])]
    code = genie_report([*folders, *args])
    markdown = Path(output or folders[0]) / MARKDOWN_NAME
    if code == 0 and markdown.is_file():
        _say()
        _say(markdown.read_text(encoding="utf-8"))
    return code


COMMANDS: dict[str, Callable[[list[str], Path], int]] = {
    "server": _server, "client": _client, "comprehensive": _comprehensive, "parse": _parse}


def main(argv: Sequence[str] | None = None, root: Path | None = None) -> int:
    """``python -m pytest_genie.guide COMMAND ARGS...``; ``root`` defaults to the current folder."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(f"usage: python -m pytest_genie.guide {{{','.join(COMMANDS)}}} ...", file=sys.stderr)
        return int(pytest.ExitCode.USAGE_ERROR)
    return COMMANDS[args[0]](args[1:], Path.cwd() if root is None else root)


if __name__ == "__main__":
    sys.exit(main())
