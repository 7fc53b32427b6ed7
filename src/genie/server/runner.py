"""Run a Genie app under uvicorn on a background thread: for tests, benchmarks and
embedding.  The socket is bound before uvicorn starts (port 0 picks a free port
with no race), readiness is awaited with a deadline that also watches the thread
(uvicorn calls ``sys.exit`` inside it when startup fails), and shutdown is bounded.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn

from genie.errors import GenieError
from genie.server.app import create_app
from genie.server.config import ServerConfig
from genie.server.connections import uvicorn_settings

__all__ = ["BackgroundServer"]


class BackgroundServer:
    """``with BackgroundServer(ServerConfig(device="cpu")) as srv: srv.url``"""

    def __init__(self, config: ServerConfig | None = None, *, host: str = "127.0.0.1",
                 port: int = 0, startup_timeout: float = 30.0,
                 shutdown_timeout: float = 10.0) -> None:
        self.config = config or ServerConfig()
        self.app = create_app(self.config)
        self.host = host
        self.startup_timeout = startup_timeout
        self.shutdown_timeout = shutdown_timeout
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.socket(family, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self.port: int = self._sock.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(
            self.app, log_config=None, log_level="warning", access_log=False,
            timeout_graceful_shutdown=int(shutdown_timeout), **uvicorn_settings(self.config)))
        self._thread = threading.Thread(target=self._run, name=f"genie-server-{self.port}",
                                        daemon=True)
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def _run(self) -> None:
        try:
            self._server.run(sockets=[self._sock])
        except BaseException as exc:  # SystemExit from a failed startup included
            self._error = exc

    def start(self) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + self.startup_timeout
        while not self._server.started:
            if not self._thread.is_alive():
                raise GenieError(f"the Genie server thread died during startup: {self._error!r}")
            if time.monotonic() > deadline:
                self.stop()
                raise GenieError(f"the Genie server did not start within "
                                 f"{self.startup_timeout} s")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(self.shutdown_timeout)
        if self._thread.is_alive():
            self._server.force_exit = True
            self._thread.join(self.shutdown_timeout)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
