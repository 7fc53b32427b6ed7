"""The LazyTensor session: where graphs run, and what capture keeps for the process.

Where a materialization runs, first match wins: an explicit ``client=``; the client
of the innermost ``genie.capture(client=...)`` block; the one ``genie.connect(url)``
set; one made from env ``GENIE_SERVER_URL`` (and ``GENIE_TOKEN``).  None of them is
an error that names all of them, raised when a value is needed, never at capture.

Capture is process-wide by nature (torch dispatches every call through the same
``__torch_function__``), so its state has one owner per process, ``SESSION``: the
clients, the meta-inference cache (bounded, see ``genie.ops.meta``), the table that
gives each local tensor one inline leaf, the functions already logged as run
locally, and the nodes whose handle release is deferred.  What is scoped to a
``with`` block lives in context variables.
"""

from __future__ import annotations

import contextvars
import os
import weakref
from typing import Any

import torch

from genie.client import Client
from genie.errors import ConfigurationError
from genie.lazy.device import claim
from genie.lazy.node import LazyNode
from genie.ops import MetaCache

__all__ = ["FALLBACKS", "NO_SERVER_MESSAGE", "SESSION", "Session", "connect", "disconnect",
           "fallback_mode", "resolve_client", "scoped_client"]

NO_SERVER_MESSAGE = (
    "no Genie server configured for LazyTensor; do one of: set the environment variable "
    "GENIE_SERVER_URL=http://HOST:PORT (and GENIE_TOKEN if it needs one), call "
    "genie.connect(url, token=None), or pass client=genie.Client(url) to "
    "genie.remote / genie.materialize / genie.capture")
#: What ``genie.capture(fallback=...)`` accepts: refuse unsupported calls, or run them locally.
FALLBACKS = ("error", "local")

#: The client of the innermost ``genie.capture(client=...)`` block.
scoped_client: contextvars.ContextVar[Client | None] = contextvars.ContextVar(
    "genie_scoped_client", default=None)
#: "error" (default) or "local", set by ``genie.capture(fallback=...)``.
fallback_mode: contextvars.ContextVar[str] = contextvars.ContextVar("genie_fallback",
                                                                    default="error")


class Session:
    """Everything LazyTensor keeps between calls, in one place."""

    def __init__(self) -> None:
        self.default_client: Client | None = None
        self.env_clients: dict[tuple[str, str | None], Client] = {}
        #: Meta outcomes of captured ops: a model's layers repeat, and a hit costs ~1 µs
        #: where torch's meta kernels cost 20-200 µs.
        self.meta = MetaCache()
        #: id(local tensor) -> (weak tensor, weak leaf node, the tensor's ``_version`` when
        #: its snapshot was taken): weak both ways, so neither this table nor a forgotten
        #: graph keeps a user's tensor alive, and a changed tensor gets a new snapshot.
        self.local_leaves: dict[int, tuple[weakref.ref[torch.Tensor], weakref.ref[LazyNode],
                                           int]] = {}
        self.logged_fallbacks: set[str] = set()
        #: (client, node) whose handle release waits for that client's next graph
        #: (``genie.release(..., defer=True)``); weak: a dropped tensor needs no update.
        self.deferred: list[tuple[Client, weakref.ref[LazyNode]]] = []

    def configured(self) -> bool:
        """Whether a materialization here would find a server (without connecting)."""
        return (scoped_client.get() is not None or self.default_client is not None
                or bool(os.environ.get("GENIE_SERVER_URL", "").strip()))

    def resolve_client(self, explicit: Client | None = None) -> Client:
        """The client a materialization uses; ``ConfigurationError`` names the three ways."""
        if explicit is not None:
            return explicit
        client = scoped_client.get() or self.default_client
        if client is not None:
            return client
        url = os.environ.get("GENIE_SERVER_URL", "").strip()
        if not url:
            raise ConfigurationError(NO_SERVER_MESSAGE)
        key = (url, os.environ.get("GENIE_TOKEN") or None)
        if key not in self.env_clients:
            self.env_clients[key] = Client(url, token=key[1])
        return self.env_clients[key]

    def close_clients(self) -> None:
        for client in [self.default_client, *self.env_clients.values()]:
            if client is not None:
                client.close()
        self.default_client = None
        self.env_clients.clear()


#: The process's session.
SESSION = Session()


def connect(url: str, token: str | None = None, **options: Any) -> Client:
    """Make ``Client(url, token=token, **options)`` the default for LazyTensor; return it."""
    client = Client(url, token=token, **options)
    SESSION.default_client = client
    claim()  # the remote device works from now on, in every thread
    return client


def disconnect() -> None:
    """Forget (and close) the client ``connect`` set and those made from the environment."""
    SESSION.close_clients()


def resolve_client(explicit: Client | None = None) -> Client:
    """The client a materialization uses (see the module docstring)."""
    return SESSION.resolve_client(explicit)
