"""Two hosts on one machine: network namespaces joined by a veth pair, the link shaped with tbf.

::

    netns gmn-<pid>-<tag>-srv, hostname gpu-node-<pid>   netns gmn-<pid>-<tag>-cli, hostname client-node-<pid>
    10.210.0.1/24 on gmn<pid>-<tag>s ═══ veth pair ═══ gmn<pid>-<tag>c on 10.210.0.2/24
    tbf on its egress: the client's downloads            tbf on its egress: the client's uploads

Each namespace has its own loopback, routes and hostname (every process is started under
``unshare --uts`` with its own), so ``genie-server --host 0.0.0.0`` in one and
``pytest -m client --genie-server=10.210.0.1`` in the other talk across a real, shaped
link, and each side's result files name its own host.  Addresses exist only inside these
namespaces; nothing else on the machine can reach them.

Teardown is certain as far as a process can make it: the fixture's ``finally``, an
``atexit`` hook for an interpreter that exits without finalizers, ``PR_SET_PDEATHSIG`` on
every child (killed when this process dies, even by SIGKILL), and names carrying this
process's pid, so the next run deletes what a run killed with -9 left behind (namespaces
of a pid that is gone, and their processes).

No root, no ``ip`` (Debian: ``apt-get install -y iproute2``), no ``unshare`` or no permission
to make namespaces (an unprivileged container): the tests are skipped with that reason.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "gmn"
SERVER_IP, CLIENT_IP = "10.210.0.1", "10.210.0.2"
SERVER_PORT, VICTIM_PORT = 8888, 8889
#: What the suite needs, and the Debian package that brings it.
TOOLS = {"ip": "iproute2", "tc": "iproute2", "unshare": "util-linux", "hostname": "hostname"}
#: Environment a child must not inherit: another server, token or results folder, or a
#: proxy that cannot be reached from inside a namespace.
_DROP_ENV = re.compile(r"^(GENIE_.*|(https?|all|no)_proxy)$", re.IGNORECASE)
_PR_SET_PDEATHSIG = 1
_STARTED = "Application startup complete"
LOG_KEY = pytest.StashKey[list[str]]()


def _die_with_parent() -> None:
    """In the child before exec: SIGKILL it when the process that started it dies."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


def _run(argv: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(list(argv), capture_output=True, text=True, timeout=60)
    if check and done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")
    return done


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_namespace(ns: str) -> None:
    """Kill what still runs in ``ns`` (ours: only our runs make these names), then delete it."""
    pids = _run(["ip", "netns", "pids", ns], check=False).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _run(["ip", "netns", "del", ns], check=False)


def _owner(name: str) -> int | None:
    """The pid a name of ours carries (``gmn-<pid>-<tag>-srv``, ``gmn<pid>-<tag>s``)."""
    match = re.match(rf"^{PREFIX}-?(\d+)-", name)
    return int(match[1]) if match else None


def remove_stale() -> list[str]:
    """Delete namespaces and veth ends that an earlier run left behind (those named for a pid
    that is gone), with whatever still runs in them.  Returns what was removed."""
    removed = []
    for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines():
        name = line.split()[0] if line.split() else ""
        pid = _owner(name)
        if pid is not None and not _alive(pid):
            _kill_namespace(name)
            removed.append(name)
    for line in _run(["ip", "-o", "link", "show"], check=False).stdout.splitlines():
        name = line.split(":")[1].strip().split("@")[0] if line.count(":") >= 2 else ""
        pid = _owner(name)
        if pid is not None and not _alive(pid):
            _run(["ip", "link", "del", name], check=False)
            removed.append(name)
    return removed


def why_no_namespaces() -> str | None:
    """Why this machine cannot run the two-host tests, or None when it can."""
    if not sys.platform.startswith("linux"):
        return f"network namespaces are Linux-only (this is {sys.platform})"
    if os.geteuid() != 0:
        return f"making network namespaces needs root (this runs as uid {os.geteuid()})"
    missing = {tool: pkg for tool, pkg in TOOLS.items() if shutil.which(tool) is None}
    if missing:
        return (f"missing {', '.join(missing)}: apt-get install -y "
                f"{' '.join(sorted(set(missing.values())))}")
    return None


class NamespacesUnavailable(Exception):
    """This process may not make network namespaces (an unprivileged container, a sandbox)."""


class TwoHosts:
    """The two namespaces, the veth pair between them and the shape of that link."""

    def __init__(self) -> None:
        pid, tag = os.getpid(), secrets.token_hex(2)[:3]  # veth names: 15 characters at most
        self.ns = {"server": f"{PREFIX}-{pid}-{tag}-srv", "client": f"{PREFIX}-{pid}-{tag}-cli"}
        self.dev = {"server": f"{PREFIX}{pid}-{tag}s", "client": f"{PREFIX}{pid}-{tag}c"}
        self.ip = {"server": SERVER_IP, "client": CLIENT_IP}
        self.hostname = {"server": f"gpu-node-{pid}", "client": f"client-node-{pid}"}
        self.rate_mbit: float | None = None
        self.children: list[subprocess.Popen[Any]] = []
        self.made = False

    def create(self) -> None:
        """Make both hosts and the link; ``NamespacesUnavailable`` if the first namespace
        cannot be made at all (no permission), any later failure is an error."""
        self.made = True  # from the first command on: destroy() undoes whatever part exists
        srv, cli = self.ns["server"], self.ns["client"]
        first = _run(["ip", "netns", "add", srv], check=False)
        if first.returncode != 0:
            raise NamespacesUnavailable(first.stderr.strip() or f"ip netns add exited {first.returncode}")
        _run(["ip", "netns", "add", cli])
        _run(["ip", "link", "add", self.dev["server"], "type", "veth", "peer", "name", self.dev["client"]])
        for side in ("server", "client"):
            ns, dev = self.ns[side], self.dev[side]
            _run(["ip", "link", "set", dev, "netns", ns])
            _run(["ip", "-n", ns, "addr", "add", f"{self.ip[side]}/24", "dev", dev])
            _run(["ip", "-n", ns, "link", "set", "lo", "up"])
            _run(["ip", "-n", ns, "link", "set", dev, "up"])

    def destroy(self) -> None:
        for child in self.children:
            if child.poll() is None:
                child.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    child.wait(timeout=10)
        if self.made:
            for ns in self.ns.values():
                _kill_namespace(ns)
            _run(["ip", "link", "del", self.dev["server"]], check=False)  # if never moved
            self.made = False

    def shape(self, rate_mbit: float | None) -> None:
        """Limit each direction to ``rate_mbit`` (tbf on both veth ends), or lift the limit.

        The burst is 1 ms of traffic, at least 16 KiB: tbf runs on high-resolution timers,
        so it need not cover a scheduler tick, and splits a GSO packet larger than it.  A
        burst lets a request's first bytes pass at once, so keep it small.
        """
        for side in ("server", "client"):
            tc = ["ip", "netns", "exec", self.ns[side], "tc", "qdisc"]
            if rate_mbit is None:
                _run([*tc, "del", "dev", self.dev[side], "root"], check=False)
                continue
            burst = self.burst_bytes(rate_mbit)
            _run([*tc, "replace", "dev", self.dev[side], "root", "tbf", "rate", f"{rate_mbit:g}mbit",
                  "burst", str(burst), "latency", "50ms"])
        self.rate_mbit = rate_mbit

    def burst_bytes(self, rate_mbit: float | None = None) -> int:
        """The tbf bucket, in bytes, at ``rate_mbit`` (default: the link's current rate)."""
        rate = self.rate_mbit if rate_mbit is None else rate_mbit
        assert rate is not None
        return max(int(rate * 1e6 / 8 / 1000), 16 * 1024)

    def command(self, side: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run in ``side``'s namespace, under that host's own hostname."""
        return ["ip", "netns", "exec", self.ns[side], "unshare", "--uts", "--", "sh", "-c",
                'hostname "$0" && exec "$@"', self.hostname[side], *argv]

    @staticmethod
    def env() -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not _DROP_ENV.match(k)}
        env["PYTHONUNBUFFERED"] = "1"
        return env

    def popen(self, side: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen[Any]:
        child = subprocess.Popen(self.command(side, argv), cwd=ROOT, env=self.env(),
                                 preexec_fn=_die_with_parent, **kwargs)
        self.children.append(child)
        return child

    def run(self, side: str, argv: Sequence[str], timeout: float) -> subprocess.CompletedProcess[str]:
        """``argv`` in ``side``'s namespace to its end, output captured (stderr into stdout)."""
        child = self.popen(side, argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            out, _ = child.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            child.kill()
            out, _ = child.communicate()
            raise AssertionError(f"{argv[:4]}... in {side} ran past {timeout} s:\n{out[-4000:]}") from None
        return subprocess.CompletedProcess(child.args, child.returncode, out, "")

    @staticmethod
    def checks(marker: str, results_dir: Path, *extra: str) -> list[str]:
        """``pytest -m MARKER`` over the documented checks of ``tests/<marker>``."""
        return [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", f"tests/{marker}",
                "-m", marker, f"--genie-results-dir={results_dir}", *extra]

    def pytest(self, side: str, marker: str, results_dir: Path, *extra: str,
               timeout: float = 300) -> subprocess.CompletedProcess[str]:
        """The documented checks of ``marker`` run on ``side``'s host, to their end."""
        return self.run(side, self.checks(marker, results_dir, *extra), timeout)

    def start_servers(self, ports: Sequence[int], logs: Path, timeout: float = 120
                      ) -> dict[int, subprocess.Popen[Any]]:
        """The real ``genie-server --host 0.0.0.0`` on each port of the server host, started
        side by side (each takes seconds to import torch), returned once all of them serve."""
        script = Path(sys.executable).with_name("genie-server")
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "genie.runtime.simple_server"]
        started: dict[int, subprocess.Popen[Any]] = {}
        for port in ports:
            with (logs / f"server-{port}.log").open("w") as out:
                started[port] = self.popen("server", [*cmd, "--host", "0.0.0.0", "--port", str(port),
                                                      "--device", "cpu", "--log-level", "info"],
                                           stdout=out, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        for port, child in started.items():
            log = logs / f"server-{port}.log"
            while _STARTED not in log.read_text(errors="replace"):
                if child.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(f"genie-server on port {port} did not start (exit "
                                         f"{child.poll()}):\n{log.read_text(errors='replace')[-4000:]}")
                time.sleep(0.1)
        return started

    def describe(self) -> str:
        return (f"namespaces {self.ns['server']} ({self.hostname['server']}, {SERVER_IP}) and "
                f"{self.ns['client']} ({self.hostname['client']}, {CLIENT_IP}), veth "
                f"{self.dev['server']}<->{self.dev['client']}")


@pytest.fixture(scope="session")
def multinode_log(pytestconfig: pytest.Config) -> list[str]:
    """Lines the two-host tests want in the run's output (shown by ``pytest_terminal_summary``
    below, passing or not): what was built, and each run's checks and figures."""
    return pytestconfig.stash.setdefault(LOG_KEY, [])


class Cleanup:
    """What a test of the stale-namespace clean-up needs: the listing, and the clean-up."""

    remove_stale = staticmethod(remove_stale)

    @staticmethod
    def listed() -> list[str]:
        return [line.split()[0] for line in _run(["ip", "netns", "list"], check=False).stdout.splitlines()
                if line.strip()]


@pytest.fixture(scope="session")
def netns_cleanup() -> Cleanup:
    """The stale-namespace clean-up, where namespaces can be made at all (else skipped)."""
    reason = why_no_namespaces()
    if reason:
        pytest.skip(reason)
    return Cleanup()


@pytest.fixture(scope="session")
def two_hosts(netns_cleanup: Cleanup, multinode_log: list[str]) -> Iterator[TwoHosts]:
    """Two namespaced hosts joined by a veth pair (unshaped until a test shapes it)."""
    stale = netns_cleanup.remove_stale()
    if stale:
        multinode_log.append(f"removed what an earlier run left: {', '.join(stale)}")
    hosts = TwoHosts()
    atexit.register(hosts.destroy)
    try:
        try:
            hosts.create()
        except NamespacesUnavailable as exc:
            pytest.skip(f"cannot make network namespaces here: {exc}")
        multinode_log.append(f"made {hosts.describe()}")
        yield hosts
    finally:
        hosts.destroy()
        atexit.unregister(hosts.destroy)
        left = sorted(set(hosts.ns.values()) & set(Cleanup.listed()))
        multinode_log.append(f"removed {', '.join(hosts.ns.values())}" + (f"; LEFT {left}" if left else ""))


@pytest.fixture(scope="session")
def servers(two_hosts: TwoHosts, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[dict[int, subprocess.Popen[Any]]]:
    """``genie-server --host 0.0.0.0`` on the server host, on SERVER_PORT (for the checks) and
    on VICTIM_PORT (for a test to kill), by port."""
    started = two_hosts.start_servers([SERVER_PORT, VICTIM_PORT], tmp_path_factory.mktemp("server-node"))
    try:
        yield started
    finally:
        for server in started.values():
            server.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                server.wait(timeout=15)


@pytest.fixture(scope="session")
def server_node(servers: dict[int, subprocess.Popen[Any]]) -> str:
    """The URL, from the client host, of the server the checks run against."""
    return f"http://{SERVER_IP}:{SERVER_PORT}"


@pytest.fixture
def victim_server(servers: dict[int, subprocess.Popen[Any]]) -> tuple[subprocess.Popen[Any], int]:
    """The second server (its process and port), for a test that kills it."""
    return servers[VICTIM_PORT], VICTIM_PORT


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    lines = terminalreporter.config.stash.get(LOG_KEY, [])
    if lines:
        terminalreporter.section("two hosts (tests/multinode)")
        for line in lines:
            terminalreporter.write_line(line)
