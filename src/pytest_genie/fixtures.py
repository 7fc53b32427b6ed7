"""The fixtures the documented tests use; registered by ``plugin.py``.

``genie_local_server`` runs the real Starlette app under uvicorn on 127.0.0.1
(socket bound first, port 0) only when some test asks for it, so ``pytest -m
server`` on a GPU node or ``pytest -m client --genie-server=...`` on a client never
start one they do not need.  Without ``--genie-server``, ``genie_server_url`` is that
local server, so plain ``pytest`` on one machine runs everything.

The clients these fixtures hand out (``genie_client``, ``genie_make_client``) are watched:
when one retried, reconnected or timed out during the test, the record's details get
``Key.DISTURBED`` with the counters that moved, and the report marks the check's figures
as measured under disturbance.  In a terminal they also draw a progress line for large
transfers (``progress.py``).

``genie_client`` fits its timeouts to the link: once ``network_throughput`` has measured
the link (``genie_link``), each request's budget grows by its bytes at the slower direction's
rate divided by ``LINK_MARGIN`` (never faster than the client's default rate), on top of
``--genie-timeout`` seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from pytest_genie.checks import Key
from pytest_genie.levels import Level
from pytest_genie.options import GenieOptions
from pytest_genie.progress import terminal_progress
from pytest_genie.state import DETAILS_KEY, SERVER_URL_KEY, get_state

if TYPE_CHECKING:
    import genie
    from genie.client import Disturbances
    from genie.client.timeout import Timeout
    from genie.server.runner import BackgroundServer

__all__ = ["LINK_MARGIN", "MeasuredLink", "genie_client", "genie_level", "genie_link", "genie_local_server",
           "genie_make_client", "genie_options", "genie_record", "genie_server_url", "note_disturbances"]

#: Bounded readiness wait of the embedded server: a server that cannot start in this
#: time fails the tests that need it instead of hanging the session.
STARTUP_TIMEOUT_S = 30.0
SHUTDOWN_TIMEOUT_S = 10.0
#: Body-size headroom over two large tensors (request and reply share the limit).
BODY_HEADROOM_MB = 64.0
#: A measured link rate is divided by this before it sizes timeouts: a link shared with other
#: traffic, or a server busy with other requests, can run well below what its probe showed.
LINK_MARGIN = 4.0


@dataclass
class MeasuredLink:
    """The link to the server as ``network_throughput`` measured it (MiB/s; None until then)."""

    upload_mib_s: float | None = None
    download_mib_s: float | None = None

    def timeout(self, base_s: float | None) -> Timeout:
        """The client timeout for this link: ``base_s`` (None: the client's default) plus each
        request's bytes at the slower measured direction / ``LINK_MARGIN``, or at the client's
        default rate when that is slower or nothing was measured yet."""
        from genie.client.timeout import DEFAULT_MIN_RATE_MIB_S, DEFAULT_TIMEOUT, Timeout

        measured = [r for r in (self.upload_mib_s, self.download_mib_s) if r]
        rate = min([DEFAULT_MIN_RATE_MIB_S, *(r / LINK_MARGIN for r in measured)])
        return Timeout(base_s=DEFAULT_TIMEOUT if base_s is None else base_s, min_rate_mib_s=rate)


@pytest.fixture(scope="session")
def genie_options(pytestconfig: pytest.Config) -> GenieOptions:
    """The validated ``--genie-*`` options (CLI > env > ini > default)."""
    return get_state(pytestconfig).options


@pytest.fixture(scope="session")
def genie_local_server(genie_options: GenieOptions) -> Iterator[BackgroundServer]:
    """A real Genie server on 127.0.0.1 (ephemeral port), for the whole session.

    ``device="auto"``: the GPU when this machine has one, else the CPU.  Its body
    limit leaves room for the ``--genie-large-mb`` round trip.
    """
    from genie.errors import GenieError
    from genie.server.config import DEFAULT_MAX_BODY_MB, ServerConfig
    from genie.server.runner import BackgroundServer

    max_body = max(DEFAULT_MAX_BODY_MB, 2 * genie_options.large_tensor_mb + BODY_HEADROOM_MB)
    config = ServerConfig(device="auto", token=genie_options.token, max_body_mb=max_body)
    server = BackgroundServer(config, host="127.0.0.1", port=0, startup_timeout=STARTUP_TIMEOUT_S,
                              shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    try:
        server.start()
    except GenieError as exc:
        pytest.fail(f"the embedded Genie server did not start: {exc}", pytrace=False)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def genie_server_url(request: pytest.FixtureRequest, genie_options: GenieOptions) -> str:
    """``--genie-server`` when given, else the embedded local server's URL.  In a fleet (several
    ``--genie-server``) it is parametrized: one value per server (``pytest_genie.fleet``)."""
    fleet_server = getattr(request, "param", None)
    if isinstance(fleet_server, str):
        return fleet_server
    if genie_options.server_url is not None:
        url = genie_options.server_url
    else:
        url = request.getfixturevalue("genie_local_server").url
    request.config.stash[SERVER_URL_KEY] = url
    return url


@pytest.fixture(scope="session")
def genie_level(genie_options: GenieOptions) -> Level:
    """The ``--genie-level`` in force: the sizes and repeats the client checks use."""
    return genie_options.level_settings


@pytest.fixture(scope="session")
def genie_link(genie_server_url: str) -> MeasuredLink:
    """The link to the server under test, as ``network_throughput`` measured it (it fills
    this in); until then, nothing is known and timeouts keep the client's defaults.  One per
    server: in a fleet, each server's link is its own."""
    del genie_server_url
    return MeasuredLink()


def note_disturbances(node: pytest.Item, moved: Disturbances) -> None:
    """Add what ``moved`` during a test to its record's ``Key.DISTURBED`` (nothing if quiet)."""
    if not moved:
        return
    details = node.stash.setdefault(DETAILS_KEY, {})
    seen = details.setdefault(Key.DISTURBED, {})
    names = {"retries": Key.RETRIES, "reconnects": Key.RECONNECTS, "timeouts": Key.TIMEOUTS,
             "transport_errors": Key.TRANSPORT_ERRORS}
    for name, count in moved.as_dict().items():
        if count:
            seen[names[name]] = seen.get(names[name], 0) + count


@pytest.fixture
def genie_make_client(request: pytest.FixtureRequest, genie_server_url: str, genie_options: GenieOptions,
                      genie_link: MeasuredLink) -> Iterator[Callable[[], genie.Client]]:
    """``make()``: another ``genie.Client`` for the server under test (one per thread of a
    concurrency check), with timeouts fitted to the link (``--genie-timeout`` and
    ``genie_link``); all are closed after the test, their disturbances noted."""
    from genie import Client

    made: list[Client] = []
    progress = terminal_progress(request.config, request.node.name)

    def make() -> Client:
        made.append(Client(genie_server_url, token=genie_options.token, progress=progress,
                           timeout=genie_link.timeout(genie_options.timeout_s)))
        return made[-1]

    try:
        yield make
    finally:
        if progress is not None:
            progress.close()
        for client in made:
            note_disturbances(request.node, client.disturbances)
            client.close()


@pytest.fixture
def genie_client(genie_make_client: Callable[[], genie.Client]) -> genie.Client:
    """A ``genie.Client`` for the server under test, closed after the test."""
    return genie_make_client()


@pytest.fixture
def genie_record(request: pytest.FixtureRequest) -> dict[str, Any]:
    """A dict the test fills with what it measured; it becomes the record's ``details``.

    Filled values may be any type: the plugin copies them to JSON-safe values when
    the test ends (numbers stay numbers, other objects become their ``str``).
    """
    details: dict[str, Any] = request.node.stash.setdefault(DETAILS_KEY, {})
    return details
