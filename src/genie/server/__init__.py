"""The Genie server: ``create_app(ServerConfig(...))`` builds a Starlette app."""

from genie.server.app import ServerState, create_app
from genie.server.config import ServerConfig

__all__ = ["ServerConfig", "ServerState", "create_app"]
