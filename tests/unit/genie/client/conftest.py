"""What the client tests share: both transports of the sync client, a real Genie
client on the shared server over each, and two toy servers on 127.0.0.1 for replies
the Genie server never sends: ``junk_server`` answers every connection with fixed
bytes, ``canned`` answers each request with a reply made from its head.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator

import pytest

from genie.client import Client
from genie.server.runner import BackgroundServer


@pytest.fixture(params=["http1", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Both paths of the sync client: its own HTTP/1.1 for plain http, and httpx,
    which it uses when the environment configures a proxy (here one that 127.0.0.1
    bypasses, so requests still go straight to the test server)."""
    if request.param == "httpx":
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost,::1")
    return str(request.param)


@pytest.fixture
def client(server: BackgroundServer, transport: str) -> Iterator[Client]:
    """Overrides tests/unit/conftest.py's: the same tests run over both sync transports."""
    with Client(server.url, retries=0) as c:
        # Guard that the parametrization means something: httpx runs iff asked for.
        assert (c._plain is None) == (transport == "httpx")
        yield c


class _JunkServer:
    """A real TCP server on 127.0.0.1 that answers every connection with fixed bytes."""

    def __init__(self, reply: bytes) -> None:
        self.reply = reply
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                conn.settimeout(5)
                try:
                    conn.recv(65536)
                    conn.sendall(self.reply)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def junk_server() -> Iterator[Callable[[bytes], _JunkServer]]:
    """``junk_server(reply)``: a ``_JunkServer`` answering ``reply``; closed after the test."""
    made: list[_JunkServer] = []

    def make(reply: bytes) -> _JunkServer:
        made.append(_JunkServer(reply))
        return made[-1]

    yield make
    for s in made:
        s.close()


Reply = Callable[[bytes], bytes | None]  # request head -> raw reply (None: close)


class CannedServer:
    """Reads a request head (and a Content-Length body), sends ``reply(head)``."""

    def __init__(self, reply: Reply, *, close_after: bool = False) -> None:
        self.reply = reply
        self.close_after = close_after
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.open = 0  # connections whose handler has not seen the client close yet
        self.requests: list[bytes] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            self.open += 1
            threading.Thread(target=self._handle, args=(conn,), daemon=True).start()

    def _handle(self, conn: socket.socket) -> None:
        try:
            self._exchange(conn)
        finally:
            self.open -= 1

    def _exchange(self, conn: socket.socket) -> None:
        with conn:
            data = b""
            while True:
                while b"\r\n\r\n" not in data:
                    piece = conn.recv(65536)
                    if not piece:
                        return
                    data += piece
                head, _, data = data.partition(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n")[1:]:
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                while len(data) < length:
                    data += conn.recv(65536)
                data = data[length:]
                self.requests.append(head)
                out = self.reply(head)
                if out is None:
                    return
                conn.sendall(out)
                if self.close_after:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def canned() -> Iterator[Callable[..., CannedServer]]:
    """``canned(reply, close_after=False)``: a ``CannedServer``; closed after the test."""
    servers: list[CannedServer] = []

    def make(reply: Reply, **kw: bool) -> CannedServer:
        servers.append(CannedServer(reply, **kw))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _fixed(body: bytes, status: str = "200 OK", extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body


@pytest.fixture
def fixed() -> Callable[..., bytes]:
    """``fixed(body, status="200 OK", extra="")``: a JSON reply with a Content-Length."""
    return _fixed
