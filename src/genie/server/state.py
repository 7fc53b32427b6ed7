"""What one server app owns, kept on ``app.state.genie``: nothing is module-level, so
two apps in one process share nothing."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from starlette.requests import HTTPConnection

from genie.server.budget import ByteBudget
from genie.server.config import ServerConfig
from genie.server.executor import Executor
from genie.server.pool import BufferPool
from genie.server.stats import Stats
from genie.server.store import TensorStore

__all__ = ["ServerState", "state_of"]


@dataclass
class ServerState:
    """The app's configuration and everything it holds or counts."""

    config: ServerConfig
    executor: Executor
    store: TensorStore
    stats: Stats
    registry: CollectorRegistry
    bodies: ByteBudget  # request bodies in flight, and parsing them
    replies: ByteBudget  # replies encoded and not yet sent
    device_info: dict[str, Any] = field(default_factory=dict)
    body_pool: BufferPool | None = None  # warm receive buffers, within ``bodies``

    @property
    def device(self) -> Any:
        return self.executor.device


def state_of(conn: HTTPConnection) -> ServerState:
    """The state of the app serving ``conn`` (a request)."""
    state: ServerState = conn.app.state.genie
    return state
