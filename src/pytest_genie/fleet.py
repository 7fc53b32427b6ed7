"""A fleet: several ``--genie-server`` given, every check that talks to a server run against each.

How a check is run per server
    A test that uses ``genie_server_url`` (directly or through ``genie_client``,
    ``genie_make_client``...) is parametrized by server (:func:`parametrize`, called from
    ``pytest_generate_tests``): ``genie_server_url`` is a session fixture, parametrized
    indirectly with session scope, so its value and the measured link (``genie_link``) are
    each set up once per server, and pytest runs the checks of one server before those of the
    next, each server's in the usual order (so ``network_throughput`` sizes the timeouts of
    that server's later checks).  The test id names the server:
    ``test_http_tensor_transfer[gpu-a:8888]`` (:func:`server_id`).  The record keeps the
    documented name (``http_tensor_transfer``, :func:`record_name`): it goes to that server's
    result file, which says which server it is.  Checks that talk to no server
    (``environment_setup``, ``server_startup``) run once.  With one ``--genie-server`` or none
    nothing is parametrized: ids, records and files are as they always were.

Result files: one per kind and server
    ``<kind>_test_results_<stamp>_<slug>.json`` (:func:`server_slug`: ``gpu-a_8888``), each
    in the guide's schema with its own ``test_info`` (``server_url``, ``measured``), so a
    reader of the original layout reads each as the one file it knew, and
    ``pytest_genie.report`` makes a section per server of them.  Records of checks that talk
    to no server go to the unsuffixed ``<kind>_test_results_<stamp>.json``.

Under pytest-xdist, see ``pytest_genie.scheduling``: a server's checks run on one worker at a
time, and a fleet's servers on different workers at once.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

if TYPE_CHECKING:  # the report names files through this module: it must not need pytest
    import pytest

__all__ = ["LOCK_DIR_INPUT", "SERVER_FIXTURE", "parametrize", "record_name", "server_id", "server_in",
           "server_of", "server_slug", "uses_server"]

#: The fixture that names the server under test: what a fleet parametrizes.
SERVER_FIXTURE = "genie_server_url"
#: xdist ``workerinput`` key: the run's folder of server locks (``pytest_genie.scheduling``).
LOCK_DIR_INPUT = "genie_lock_dir"
_SLUG_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")


def server_id(url: str) -> str:
    """``host:port`` of a server URL (``[v6]:port`` for IPv6; a scheme other than http kept):
    its test id and its name in the terminal and the report."""
    parts = urlsplit(url)
    host = parts.hostname or url
    shown = f"[{host}]" if ":" in host else host
    name = f"{shown}:{parts.port}" if parts.port else shown
    return name if parts.scheme == "http" else f"{parts.scheme}://{name}"


def server_slug(url: str) -> str:
    """The server as a file-name suffix: ``gpu-a_8888``, ``127.0.0.1_40001``."""
    return _SLUG_UNSAFE.sub("_", server_id(url).replace("://", "_")).strip("_")


def parametrize(metafunc: pytest.Metafunc, servers: tuple[str, ...]) -> None:
    """Run a test that talks to a server once per server of a fleet (nothing otherwise)."""
    if len(servers) < 2 or SERVER_FIXTURE not in metafunc.fixturenames:
        return
    metafunc.parametrize(SERVER_FIXTURE, list(servers), ids=[server_id(u) for u in servers],
                         indirect=True, scope="session")


def uses_server(item: pytest.Item) -> bool:
    """Whether ``item`` talks to the server under test (asks for its URL, or a client of it)."""
    return SERVER_FIXTURE in getattr(item, "fixturenames", ())


def server_of(item: pytest.Item) -> str | None:
    """The fleet server an item runs against (None: not parametrized by server)."""
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get(SERVER_FIXTURE) if callspec is not None else None
    return value if isinstance(value, str) else None


def _split_params(params: str, ident: str) -> str | None:
    """``params`` (a test id's bracketed part) without ``ident``; None when it has no ``ident``.

    pytest joins the ids of several parameters with ``-``, and a host name may hold ``-`` too,
    so the server's id is matched whole, at either end or between two separators.
    """
    if params == ident:
        return ""
    if params.startswith(f"{ident}-"):
        return params[len(ident) + 1:]
    if params.endswith(f"-{ident}"):
        return params[: -len(ident) - 1]
    if f"-{ident}-" in params:
        return params.replace(f"-{ident}-", "-", 1)
    return None


def server_in(nodeid: str, servers: tuple[str, ...]) -> str | None:
    """Which of ``servers`` a test's node id names (its id's bracketed part), if any: how the
    xdist controller, which collects nothing, tells a fleet's checks apart."""
    name = nodeid.rsplit("::", 1)[-1]
    if "[" not in name:
        return None
    params = name.split("[", 1)[1].rsplit("]", 1)[0]
    for url in sorted(servers, key=lambda u: -len(server_id(u))):  # the longest id first
        if _split_params(params, server_id(url)) is not None:
            return url
    return None


def record_name(item: pytest.Item) -> str:
    """The record's name: the test's without ``test_`` and, in a fleet, without the server's id
    (the server's own result file says which server it is)."""
    name = item.name.removeprefix("test_")
    server = server_of(item)
    if server is None or "[" not in name:
        return name
    base, _, params = name.partition("[")
    rest = _split_params(params.removesuffix("]"), server_id(server))
    if rest is None:
        return name
    return f"{base}[{rest}]" if rest else base
