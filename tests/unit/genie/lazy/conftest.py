"""What the LazyTensor tests share: a server of their own for each test module,
the default LazyTensor client on it (``genie.connect``), the server's count of
``POST /graph`` requests (and their bytes), and seeded random tensors.

Every test compares with the same code run eagerly on local tensors.  Request counts
come from the server's own ``/stats`` (``POST /graph`` count), bytes from the
client's counters.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

import genie
from genie.server.config import ServerConfig
from genie.server.runner import BackgroundServer


@pytest.fixture(scope="module")
def server() -> Iterator[BackgroundServer]:
    """Overrides tests/unit/conftest.py's: a server for each LazyTensor test module."""
    with BackgroundServer(ServerConfig(device="cpu")) as srv:
        yield srv


@pytest.fixture
def client(server: BackgroundServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[genie.Client]:
    """The default LazyTensor client for the test (``genie.connect``), env unset."""
    monkeypatch.delenv("GENIE_SERVER_URL", raising=False)
    c = genie.connect(server.url, retries=0)
    yield c
    genie.disconnect()


@pytest.fixture
def graph_requests(server: BackgroundServer) -> Iterator[Callable[[], int]]:
    """``POST /graph`` requests the server has counted since the test started."""
    with genie.Client(server.url, retries=0) as probe:
        def count() -> int:
            ep = probe.stats()["endpoints"].get("POST /graph", {})
            return int(ep.get("count", 0))
        start = count()
        yield lambda: count() - start


@pytest.fixture
def graph_traffic(server: BackgroundServer) -> Iterator[Callable[[], tuple[int, int]]]:
    """(``POST /graph`` requests, their body bytes) the server counted since the call
    before: what one forward cost, measured where it arrived."""
    with genie.Client(server.url, retries=0) as probe:
        def totals() -> tuple[int, int]:
            ep = probe.stats()["endpoints"].get("POST /graph", {})
            return int(ep.get("count", 0)), int(ep.get("bytes_in", 0))
        last = [totals()]

        def delta() -> tuple[int, int]:
            now = totals()
            count, nbytes = now[0] - last[0][0], now[1] - last[0][1]
            last[0] = now
            return count, nbytes
        yield delta


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.fixture(scope="session")
def randn() -> Callable[..., torch.Tensor]:
    """``randn(*shape, seed=0)``: a seeded standard normal tensor."""
    def randn(*shape: int, seed: int = 0) -> torch.Tensor:
        return torch.randn(*shape, generator=_gen(seed))
    return randn
