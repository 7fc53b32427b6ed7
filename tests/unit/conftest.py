"""Fixtures for the unit tests: real uvicorn servers on 127.0.0.1, real clients.

Every server here is ``genie.server.runner.BackgroundServer``: a socket bound to an
ephemeral port before uvicorn starts, the app built by ``create_app`` exactly as the
command line builds it.  Nothing is mocked; requests cross a real loopback socket.

The plain ``server`` is shared by the whole session (starting one costs a few hundred
ms); tests that need a particular configuration (a token, a tiny body limit, a tiny
held budget) ask ``make_server`` for their own, which is stopped after the test.
"""

from __future__ import annotations

import socket
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


@pytest.fixture
def free_port() -> Callable[[], int]:
    """``free_port()``: a 127.0.0.1 port with nothing listening (bound, then released)."""
    def free() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])
    return free


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
