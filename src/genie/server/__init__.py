"""The Genie server: ``create_app(ServerConfig(...))`` builds a Starlette app, and
``python -m genie.server`` (``genie-server``) runs it under uvicorn."""

from genie.server.app import create_app
from genie.server.config import ServerConfig
from genie.server.state import ServerState

__all__ = ["ServerConfig", "ServerState", "create_app"]
