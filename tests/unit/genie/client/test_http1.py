"""The plain-HTTP transport (genie.client.http1): the sync client's HTTP/1.1 path, on
reply framings uvicorn rarely sends (chunked, close-delimited, interim 100, early error
replies, malformed chunk sizes), on keep-alive connections the server closed while idle
(a GET is resent, a request that may have reached the server never is, on the httpx
paths too), and on requests it refuses to send.

``canned`` (conftest.py) is a tiny socket server on 127.0.0.1 that answers each request
with a canned reply, so each framing is exercised for real over TCP; the common
framings are covered against the real Genie server by the client tests.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import threading
import time
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import torch

from genie import AsyncClient, Client, TransportError
from genie.client.http1 import IDLE_EXPIRY_S, Http1Pool


def test_chunked_reply_is_reassembled(canned: Callable[..., Any]) -> None:
    body = json.dumps({"status": "ok", "x": "y" * 5000}).encode()
    chunks = b"".join(f"{len(body[i:i + 999]):x}\r\n".encode() + body[i:i + 999] + b"\r\n"
                      for i in range(0, len(body), 999))
    srv = canned(lambda head: b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n"
                 + chunks + b"0\r\n\r\n")
    with Client(f"127.0.0.1:{srv.port}") as c:
        assert c.health()["x"] == "y" * 5000
        assert c.health()["status"] == "ok"  # the connection was left at a clean boundary
    assert srv.connections == 1


def test_close_delimited_and_interim_replies(canned: Callable[..., Any]) -> None:
    body = json.dumps({"ok": True}).encode()
    srv = canned(lambda head: b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                 b"connection: close\r\n\r\n" + body, close_after=True)
    with Client(f"127.0.0.1:{srv.port}") as c:
        assert c.health() == {"ok": True}
        assert c.health() == {"ok": True}
    assert srv.connections == 2  # "connection: close" was honoured


def test_large_json_reply(canned: Callable[..., Any], fixed: Callable[..., bytes]) -> None:
    # Over 1 MB, replies land in a populated mmap rather than a bytearray.
    payload = {"tensors": ["h" * 64] * 40_000}
    srv = canned(lambda head: fixed(json.dumps(payload).encode()))
    with Client(f"127.0.0.1:{srv.port}") as c:
        assert c.stats() == payload


def test_keep_alive_closed_while_idle_is_replaced(canned: Callable[..., Any],
                                                  fixed: Callable[..., bytes]) -> None:
    srv = canned(lambda head: fixed(b'{"n": 1}'), close_after=True)
    pool = Http1Pool("127.0.0.1", srv.port, connect_timeout=5)
    try:
        for _ in range(3):
            reply = pool.request("GET", "/stats", {}, (), 0, timeout=5)
            assert (reply.status, bytes(reply.body)) == (200, b'{"n": 1}')
    finally:
        pool.close()
    assert srv.connections == 3


def test_error_reply_and_query_string(canned: Callable[..., Any],
                                      fixed: Callable[..., bytes]) -> None:
    err = json.dumps({"error": {"type": "unsupported_op", "message": "no op 'x y'"}}).encode()
    srv = canned(lambda head: fixed(err, "422 Unprocessable Entity"))
    with Client(f"127.0.0.1:{srv.port}", retries=0) as c, pytest.raises(Exception) as info:
        c.execute("x y", args_only=1)  # type: ignore[arg-type]
    assert getattr(info.value, "status", None) == 422
    assert "no op 'x y'" in str(info.value)
    request_line = srv.requests[0].split(b"\r\n")[0]
    assert request_line.startswith(b"POST /execute?op=x%20y&args=") and b" " not in \
        request_line.split(b" ")[1]


def test_server_that_hangs_up_without_reply(canned: Callable[..., Any]) -> None:
    srv = canned(lambda head: None)
    with Client(f"127.0.0.1:{srv.port}", retries=0) as c, \
            pytest.raises(TransportError) as info:
        c.health()
    assert not info.value.retryable  # the server saw the request
    assert "without replying" in info.value.message


def test_garbage_status_line(canned: Callable[..., Any]) -> None:
    srv = canned(lambda head: b"NOT-HTTP\r\n\r\n")
    pool = Http1Pool("127.0.0.1", srv.port, connect_timeout=5)
    try:
        with pytest.raises(TransportError, match="malformed status line"):
            pool.request("GET", "/health", {}, (), 0, timeout=5)
    finally:
        pool.close()


def test_early_413_reply_to_a_large_upload_is_read() -> None:
    # The server refuses on Content-Length before reading the body, replies and closes
    # while the client is still sending: the reply, not a broken pipe, must surface.
    import torch

    from genie import PayloadTooLargeError
    from genie.server.config import ServerConfig
    from genie.server.runner import BackgroundServer

    with BackgroundServer(ServerConfig(device="cpu", max_body_mb=1)) as srv, \
            Client(srv.url, retries=0) as c:
        for _ in range(2):
            with pytest.raises(PayloadTooLargeError):
                c.echo(torch.zeros(16 * 1024 * 1024))
        assert c.echo(torch.ones(3)).tolist() == [1.0, 1.0, 1.0]


def _use_transport(transport: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sync client takes httpx when the environment names a proxy (here one that
    127.0.0.1 bypasses), its own HTTP/1.1 otherwise."""
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy", "HTTP_PROXY"):
        monkeypatch.delenv(name, raising=False)
    if transport == "httpx":
        monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")


@pytest.mark.parametrize("transport", ["http1", "httpx"])
@pytest.mark.parametrize("method", ["POST", "DELETE"])
def test_request_that_may_have_reached_the_server_is_never_resent(
        canned: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, transport: str, method: str,
        fixed: Callable[..., bytes]) -> None:
    # The server reads the whole request on a kept-alive connection, then closes it
    # without a word (as when its keep-alive timeout fires at that moment).  It may
    # have acted on it: resending would upload twice, or turn a done DELETE into a 404.
    _use_transport(transport, monkeypatch)
    srv = canned(lambda head: None if head.startswith(method.encode())
                 else fixed(b'{"status": "ok"}'))
    # No session: closing then sends nothing (ending a session is tested in test_sync.py).
    with Client(f"127.0.0.1:{srv.port}", retries=3, session=None) as c:
        assert (c._plain is None) == (transport == "httpx")
        assert c.health() == {"status": "ok"}  # leaves a kept-alive connection
        with pytest.raises(TransportError) as info:
            if method == "POST":
                c.put(torch.ones(3))
            else:
                c.delete("abc")
    assert not info.value.retryable
    if transport == "http1":
        assert "not resent" in info.value.message
    assert [head.split(b" ")[0] for head in srv.requests] == [b"GET", method.encode()]
    assert srv.connections == 1


@pytest.mark.parametrize("transport", ["http1", "httpx", "async"])
def test_get_on_a_reused_connection_closed_without_reply_is_resent(
        canned: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, transport: str,
        fixed: Callable[..., bytes]) -> None:
    seen: list[bytes] = []

    def reply(head: bytes) -> bytes | None:
        seen.append(head)
        return None if len(seen) == 2 else fixed(b'{"n": %d}' % len(seen))

    srv = canned(reply)
    url = f"127.0.0.1:{srv.port}"
    if transport == "async":
        async def main() -> list[Any]:
            async with AsyncClient(url, retries=0) as c:
                return [await c.health(), await c.health()]

        answers = asyncio.run(main())
    else:
        _use_transport(transport, monkeypatch)
        with Client(url, retries=0) as c:
            answers = [c.health(), c.health()]
    assert answers == [{"n": 1}, {"n": 3}]  # the second GET was resent on a fresh connection
    assert srv.connections == 2


def test_connections_idle_too_long_are_not_reused(canned: Callable[..., Any],
                                                  fixed: Callable[..., bytes]) -> None:
    assert IDLE_EXPIRY_S < 5  # uvicorn closes idle keep-alive connections after 5 s
    srv = canned(lambda head: fixed(b"{}"))
    pool = Http1Pool("127.0.0.1", srv.port, connect_timeout=5)
    try:
        for _ in range(2):
            assert pool.request("GET", "/health", {}, (), 0, timeout=5).status == 200
        assert srv.connections == 1
        for conn in pool._idle:  # as if it had waited that long
            conn.idle_since -= IDLE_EXPIRY_S + 1
        assert pool.request("GET", "/health", {}, (), 0, timeout=5).status == 200
        assert srv.connections == 2
    finally:
        pool.close()


def test_protocol_errors_close_the_connection(canned: Callable[..., Any]) -> None:
    # A reply the client cannot parse leaves the connection at an unknown point of the
    # stream: it must be closed at once, neither pooled nor left for the garbage
    # collector (the caller may keep the exception, and with it the socket, alive).
    srv = canned(lambda head: b"NOT-HTTP\r\n\r\n")
    pool = Http1Pool("127.0.0.1", srv.port, connect_timeout=5)
    kept: list[TransportError] = []
    fds_before = len(os.listdir("/proc/self/fd"))
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ResourceWarning)
            for _ in range(40):
                with pytest.raises(TransportError) as info:
                    pool.request("GET", "/health", {}, (), 0, timeout=5)
                kept.append(info.value)
                assert pool._idle == []
            gc.collect()
        assert not [w for w in caught if "unclosed" in str(w.message)]
        deadline = time.monotonic() + 30  # the server's threads see each close in turn
        while srv.open and time.monotonic() < deadline:
            time.sleep(0.01)
        assert srv.open == 0 and srv.connections == 40
        assert len(os.listdir("/proc/self/fd")) <= fds_before + 2
    finally:
        pool.close()


def test_connections_with_descriptors_above_1024_are_reused(
        canned: Callable[..., Any], fixed: Callable[..., bytes]) -> None:
    # select.select() refuses descriptors >= 1024, which made every pooled connection of
    # a process with many open files (a data loader, a test session) look stale.
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < 1200:
        pytest.skip(f"the open-file limit ({hard}) leaves no room for descriptors >= 1024")
    if soft != resource.RLIM_INFINITY and soft < 1200:
        resource.setrlimit(resource.RLIMIT_NOFILE, (1200, hard))
    srv = canned(lambda head: fixed(b'{"status": "ok"}'))
    fillers: list[int] = []
    pool = Http1Pool("127.0.0.1", srv.port, connect_timeout=5)
    try:
        while not fillers or fillers[-1] < 1024:
            fillers.append(os.open(os.devnull, os.O_RDONLY))
        for _ in range(3):
            assert pool.request("GET", "/health", {}, (), 0, timeout=5).status == 200
        assert pool._idle[0].sock.fileno() >= 1024
        assert srv.connections == 1
    finally:
        pool.close()
        for fd in fillers:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def _chunked(*pieces: bytes) -> bytes:
    return b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n" \
        + b"".join(pieces)


@pytest.mark.parametrize("size_line", [b"0x2", b"-2", b"+2", b"0_2", b" 2", b"2 junk", b"zz", b"",
                                       b"1" * 16])
def test_malformed_chunk_sizes_are_transport_errors(canned: Callable[..., Any],
                                                    size_line: bytes) -> None:
    # int(text, 16) would read "0x2", "+2", "0_2" and " 2" as 2 (and "-2" as -2).
    srv = canned(lambda head: _chunked(size_line + b"\r\n{}\r\n0\r\n\r\n"))
    with Client(f"127.0.0.1:{srv.port}", retries=3) as c, \
            pytest.raises(TransportError, match="malformed chunk-size") as info:
        c.health()
    assert not info.value.retryable
    assert srv.connections == 1


def test_chunk_extensions_and_framing(canned: Callable[..., Any]) -> None:
    ok = _chunked(b"2 ;name=value\r\n{}\r\n0\r\ntrailer: x\r\n\r\n")
    srv = canned(lambda head: ok)
    with Client(f"127.0.0.1:{srv.port}", retries=0) as c:
        assert c.health() == {}
        assert c.health() == {}  # the trailer was consumed: the next reply reads cleanly
    assert srv.connections == 1
    bad = canned(lambda head: _chunked(b"1\r\n{}\r\n0\r\n\r\n"))  # data longer than its size
    with Client(f"127.0.0.1:{bad.port}", retries=0) as c, \
            pytest.raises(TransportError, match="not followed by CRLF"):
        c.health()


@pytest.mark.parametrize("target", ["/a b", "/a\r\nx-evil: 1", "/a\nb", "/a\x00", "/a\x7f",
                                    "/\u00e9", ""])
def test_unsafe_request_targets_are_refused_before_sending(canned: Callable[..., Any], target: str,
                                                           fixed: Callable[..., bytes]) -> None:
    srv = canned(lambda head: fixed(b"{}"))
    pool = Http1Pool("127.0.0.1", srv.port, connect_timeout=5)
    try:
        with pytest.raises(TransportError, match="request target"):
            pool.request("GET", target, {}, (), 0, timeout=5)
        with pytest.raises(TransportError, match="header name"):
            pool.request("GET", "/health", {"x-a\r\nx-evil": "1"}, (), 0, timeout=5)
        assert pool.request("GET", "/health", {}, (), 0, timeout=5).status == 200
    finally:
        pool.close()
    assert len(srv.requests) == 1  # only the well-formed request went out


def test_a_large_reply_buffer_is_reused_only_once_its_tensors_are_gone(
        server: Any) -> None:
    x = torch.randn(700, 700)  # a 1.9 MB reply: received into a map
    with Client(server.url) as c:
        warm = c._plain.warm  # noqa: SLF001 - the transport's own buffer under test
        kept = c.execute("relu", x)
        again = c.execute("relu", -x)  # must not land in the buffer ``kept`` shares
        assert warm.reused == 0
        assert torch.equal(kept, torch.relu(x)) and torch.equal(again, torch.relu(-x))
        view = kept[3:5]  # a view still refers to the first buffer
        del kept, again  # the second is free now: the third reply goes there
        third = c.execute("relu", x * 2)
        assert warm.reused == 1 and torch.equal(third, torch.relu(x * 2))
        assert torch.equal(view, torch.relu(x)[3:5])
        del view, third
        for i in range(3):  # nothing holds the last one: the same buffer each time
            assert torch.equal(c.execute("relu", x + i), torch.relu(x + i))
        assert warm.reused == 4
        small = torch.randn(10, 10)  # a small reply is a bytearray: never kept
        assert torch.equal(c.execute("relu", small), torch.relu(small))


def test_an_exchange_that_finishes_after_close_keeps_nothing(
        canned: Callable[..., Any], fixed: Callable[..., bytes]) -> None:
    """``close()`` while a request is in flight on another thread: the reply still
    arrives, but its connection is closed rather than pooled and its buffer not kept
    (a closed client would otherwise hold a socket and up to 512 MiB until collected)."""
    asked, release = threading.Event(), threading.Event()
    body = b"x" * (2 << 20)  # over 1 MB: received into a map, the kind that is kept

    def slow(head: bytes) -> bytes:
        asked.set()
        release.wait(10)
        return fixed(body)

    srv = canned(slow)
    pool = Http1Pool("127.0.0.1", srv.port, connect_timeout=5)
    replies: list[Any] = []
    worker = threading.Thread(target=lambda: replies.append(
        pool.request("GET", "/big", {}, (), 0, timeout=10)))
    worker.start()
    assert asked.wait(10)
    pool.close()
    release.set()
    worker.join(10)
    assert bytes(replies[0].body) == body
    assert pool.warm.buf is None
    assert pool._take() is None  # noqa: SLF001 - nothing was pooled after close
    deadline = time.monotonic() + 5
    while srv.open and time.monotonic() < deadline:  # the server sees the socket closed
        time.sleep(0.01)
    assert srv.open == 0
