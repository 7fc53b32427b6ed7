"""The background server (genie.server.runner): uvicorn runs with the configured
connection limit, so connections past ``max_connections`` are answered 503 until
idle ones close."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx

from genie.server.runner import BackgroundServer


def test_connections_past_the_limit_are_answered_503(make_server: Callable[..., BackgroundServer],
                                                     assert_serving: Callable[..., None],
                                                     wait_until: Callable[..., None]) -> None:
    srv = make_server(max_connections=3)
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=30) for _ in range(3)]
    try:
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            # uvicorn counts a connection once it has accepted it: poll until it has.
            statuses: list[int] = []
            wait_until(lambda: statuses.append(http.get("/health").status_code)
                       or statuses[-1] == 503, "a request refused at the connection limit")
            assert set(statuses) <= {200, 503}
    finally:
        for sock in idle:
            sock.close()
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        statuses = []
        wait_until(lambda: statuses.append(http.get("/health").status_code)
                   or statuses[-1] == 200, "serving again once the idle connections closed")
    assert_serving(srv)
