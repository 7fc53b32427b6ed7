"""Fixtures for the unit tests: real uvicorn servers on 127.0.0.1, real clients.

Every server here is ``genie.server.runner.BackgroundServer``: a socket bound to an
ephemeral port before uvicorn starts, the app built by ``create_app`` exactly as the
command line builds it.  Nothing is mocked; requests cross a real loopback socket.

The plain ``server`` is shared by the whole session (starting one costs a few hundred
ms); tests that need a particular configuration (a token, a tiny body limit, a tiny
held budget) ask ``make_server`` for their own, which is stopped after the test.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import torch

# pytester's inline runs (test_plugin.py) drop every module first imported inside them.
# torch.testing.assert_close imports torch.distributed.tensor lazily, and torch refuses
# to register its operator libraries twice, so a later assert_close would fail if an
# inline run got there first: import it now, outside any inline run.
if torch.distributed.is_available():
    import torch.distributed.tensor  # noqa: F401

import genie
from genie.ops.meta import warm_up
from genie.server.config import ServerConfig
from genie.server.runner import BackgroundServer

# The same for torch's meta kernels: the first meta dispatch imports some 800 modules
# (torch._inductor among them, which registers an operator library), so it must not
# happen for the first time inside an inline run either.
warm_up()


@pytest.fixture(scope="session")
def server() -> Iterator[BackgroundServer]:
    """One CPU server for the session, default limits, no token."""
    with BackgroundServer(ServerConfig(device="cpu")) as srv:
        yield srv


@pytest.fixture
def make_server() -> Iterator[Callable[..., BackgroundServer]]:
    """Start a server with the given ``ServerConfig`` fields; stopped after the test."""
    started: list[BackgroundServer] = []

    def start(**fields: Any) -> BackgroundServer:
        fields.setdefault("device", "cpu")
        srv = BackgroundServer(ServerConfig(**fields)).start()
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """``free_port()``: a 127.0.0.1 port with nothing listening (bound, then released)."""
    return _free_port


class GenieProcess:
    """``python -m MODULE`` (``genie.server`` by default) with ``flags`` in a child process
    on a free 127.0.0.1 port: the real command line, its memory its own.  Ready once
    ``/health`` answers 200; if it exits first, the failure quotes its stderr (kept in a
    temporary file, which never fills up and blocks it as an unread pipe could)."""

    def __init__(self, *flags: str, module: str = "genie.server", timeout_s: float = 120.0
                 ) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._stderr = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 - closed by stop()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", module, "--host", "127.0.0.1", "--port", str(self.port),
             "--device", "cpu", "--log-level", "warning", *flags],
            stdout=subprocess.DEVNULL, stderr=self._stderr, text=True)
        try:
            self._wait_healthy(time.monotonic() + timeout_s, timeout_s)
        except BaseException:
            self.stop()  # a server that never became healthy is not left running
            raise

    def _wait_healthy(self, deadline: float, timeout_s: float) -> None:
        while True:
            if self.proc.poll() is not None:
                self._stderr.seek(0)
                raise AssertionError(f"genie-server exited: {self._stderr.read()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, f"genie-server not healthy within {timeout_s:g} s"
            time.sleep(0.1)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it has not ended within 30 s."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._stderr.close()


@pytest.fixture(scope="session")
def genie_process() -> type[GenieProcess]:
    """``genie_process(*flags, module=...)``: a ready :class:`GenieProcess`; the caller stops it."""
    return GenieProcess


@pytest.fixture
def http(server: BackgroundServer) -> Iterator[httpx.Client]:
    """Raw HTTP to the shared server, for what the Genie client would never send."""
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        yield client


@pytest.fixture
def client(server: BackgroundServer) -> Iterator[genie.Client]:
    """The real Genie client on the shared server; no retries, so failures show at once."""
    with genie.Client(server.url, retries=0) as c:
        yield c
