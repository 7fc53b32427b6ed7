"""Addresses (genie.protocol.normalize_url): every accepted form of a server address
gives the same base URL and reaches the server, IPv6 included; anything else is a
ConfigurationError that names the accepted forms, for both clients."""

from __future__ import annotations

import socket

import pytest
import torch

import genie
from genie.client import AsyncClient, Client
from genie.errors import ConfigurationError
from genie.protocol import is_healthy
from genie.server.runner import BackgroundServer


@pytest.mark.parametrize(("given", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8888"),
    ("localhost", "http://localhost:8888"),
    ("127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
    ("https://127.0.0.1:9443", "https://127.0.0.1:9443"),
    ("https://localhost", "https://localhost:8888"),
    ("[::1]:8000", "http://[::1]:8000"),
    ("::1", "http://[::1]:8888"),
    ("http://[::1]:7000", "http://[::1]:7000"),
    ("  127.0.0.1:1234  ", "http://127.0.0.1:1234"),
])
def test_url_forms(given: str, url: str) -> None:
    with Client(given) as c:
        assert c.url == url


@pytest.mark.parametrize("bad", ["", "   ", "ftp://127.0.0.1:21", "127.0.0.1:notaport",
                                 "127.0.0.1:99999", "127.0.0.1:0", "http://127.0.0.1:80/api",
                                 "http://user:pw@127.0.0.1:80", "http://127.0.0.1:80?x=1",
                                 "http://:8080", "http://", "https:///", "http:///"])
def test_bad_urls_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Client(bad)
    assert "HOST" in info.value.message  # names the accepted forms
    with pytest.raises(ConfigurationError):
        AsyncClient(bad)


def test_every_url_form_reaches_the_server(server: BackgroundServer) -> None:
    for form in (f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}",
                 f"http://127.0.0.1:{server.port}/", server.url):
        with Client(form) as c:
            assert c.health()["status"] == "healthy"


def test_ipv6_loopback(x: torch.Tensor) -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        srv = BackgroundServer(genie.ServerConfig(device="cpu"), host="::1").start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        with Client(f"[::1]:{srv.port}") as c:
            assert torch.equal(c.execute("relu", x), torch.relu(x))
    finally:
        srv.stop()


def test_healthy_in_this_and_the_older_word() -> None:
    assert is_healthy({"status": "healthy"}) and is_healthy({"status": "ok"})
    assert not is_healthy({"status": "error"}) and not is_healthy({})
