"""Where LazyTensor graphs run: the client a materialization uses.

First match wins: an explicit ``client=``; the client of the innermost
``genie.capture(client=...)`` block; the one ``genie.connect(url)`` set; one made
from env ``GENIE_SERVER_URL`` (and ``GENIE_TOKEN``).  None of them is an error
that names all of them, raised when a value is needed, never at capture.
"""

from __future__ import annotations

import contextvars
import os
from typing import Any

from genie.client import Client
from genie.errors import ConfigurationError

__all__ = ["NO_SERVER_MESSAGE", "connect", "disconnect", "resolve_client", "scoped_client"]

_default_client: Client | None = None
_env_clients: dict[tuple[str, str | None], Client] = {}
#: The client of the innermost ``genie.capture(client=...)`` block.
scoped_client: contextvars.ContextVar[Client | None] = contextvars.ContextVar(
    "genie_scoped_client", default=None)

NO_SERVER_MESSAGE = (
    "no Genie server configured for LazyTensor; do one of: set the environment variable "
    "GENIE_SERVER_URL=http://HOST:PORT (and GENIE_TOKEN if it needs one), call "
    "genie.connect(url, token=None), or pass client=genie.Client(url) to "
    "genie.remote / genie.materialize / genie.capture")


def connect(url: str, token: str | None = None, **options: Any) -> Client:
    """Make ``Client(url, token=token, **options)`` the default for LazyTensor; return it."""
    global _default_client
    client = Client(url, token=token, **options)
    _default_client = client
    return client


def disconnect() -> None:
    """Forget (and close) the client ``connect`` set and those made from the environment."""
    global _default_client
    for client in [_default_client, *_env_clients.values()]:
        if client is not None:
            client.close()
    _default_client = None
    _env_clients.clear()


def resolve_client(explicit: Client | None = None) -> Client:
    """The client a materialization uses; ``ConfigurationError`` names the three ways."""
    if explicit is not None:
        return explicit
    client = scoped_client.get() or _default_client
    if client is not None:
        return client
    url = os.environ.get("GENIE_SERVER_URL", "").strip()
    if not url:
        raise ConfigurationError(NO_SERVER_MESSAGE)
    key = (url, os.environ.get("GENIE_TOKEN") or None)
    if key not in _env_clients:
        _env_clients[key] = Client(url, token=key[1])
    return _env_clients[key]
