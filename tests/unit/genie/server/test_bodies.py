"""Receiving request bodies (genie.server.bodies): a body past ``--max-body-mb`` is
refused 413 before it is read; declared bodies are reserved against the budget for
bodies in flight before any memory (503 ``busy`` past it) and returned however the
request ends; a body that stalls past ``--body-timeout-s``, or a client that hangs up
mid-body, is a counted 400 that the server carries on after.

Raw sockets where clients misbehave on purpose (declare gigabytes and send nothing,
stall mid-body) in ways no HTTP library would.
"""

from __future__ import annotations

import socket
import sys
from collections.abc import Callable

import httpx
import pytest
import safetensors.torch
import torch

from genie.server.runner import BackgroundServer

MB = 1024 * 1024


def headers_only(srv: BackgroundServer, content_length: int) -> socket.socket:
    """A connection that declares a body of ``content_length`` bytes and sends none."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Length: %d\r\n\r\n" % content_length)
    return sock


def read_reply(sock: socket.socket) -> tuple[bytes, bytes]:
    """(status line and headers, body) of one reply with a Content-Length."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a reply: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-reply"
        body += chunk
    return head, body


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def test_client_hanging_up_mid_body_is_a_bad_request_not_a_crash(
        http: httpx.Client, good_body: bytes, errors_by_type: Callable[..., dict[str, int]],
        wait_for_errors: Callable[..., dict[str, int]], delta: Callable[..., dict[str, int]],
        assert_serving: Callable[..., None]) -> None:
    before = errors_by_type(http)
    with socket.create_connection((http.base_url.host, http.base_url.port or 80),
                                  timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
                     + good_body[:40])
    # Nobody is left to read a reply; the server counts it and carries on.
    assert delta(before, wait_for_errors(http, before, 1)) == {"malformed_request": 1}
    assert_serving(http)


def test_body_over_limit_is_413_before_reading_it(
        make_server: Callable[..., BackgroundServer], st_body: Callable[..., bytes],
        assert_error: Callable[..., str], errors_by_type: Callable[..., dict[str, int]],
        wait_for_errors: Callable[..., dict[str, int]], delta: Callable[..., dict[str, int]],
        assert_serving: Callable[..., None]) -> None:
    srv = make_server(max_body_mb=0.01)  # 10,485 bytes
    with httpx.Client(base_url=srv.url) as http:
        before = errors_by_type(http)
        big = st_body({"x": torch.zeros(4000)})
        message = assert_error(http.post("/execute?op=relu", content=big), 413, "payload_too_large")
        assert "--max-body-mb" in message
        # Chunked upload without Content-Length: refused once it passes the limit.
        resp = http.post("/echo", content=iter([big[:6000], big[6000:]]))
        assert_error(resp, 413, "payload_too_large")
        assert delta(before, wait_for_errors(http, before, 2)) == {"payload_too_large": 2}
        assert_serving(http)
    # Only headers with a huge Content-Length: answered at once, no 40 GB awaited.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 40000000000\r\n\r\n")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b'"payload_too_large"' in reply
    with httpx.Client(base_url=srv.url) as http:
        assert_serving(http)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc")
def test_declared_bodies_are_reserved_before_memory_and_refused_503_past_the_budget(
        make_server: Callable[..., BackgroundServer], assert_serving: Callable[..., None],
        wait_until: Callable[..., None]) -> None:
    srv = make_server(max_body_mb=1024, max_inflight_body_mb=1536)
    budget = srv.app.state.genie.bodies
    declared = 1024 * MB
    rss_before = rss_bytes()
    first = headers_only(srv, declared)
    try:
        wait_until(lambda: budget.reserved == declared, "the first body reserved")
        # The second gigabyte does not fit in what is left: 503 busy, before any byte.
        with headers_only(srv, declared) as second:
            head, body = read_reply(second)
        assert head.startswith(b"HTTP/1.1 503 "), head
        assert b'"busy"' in body and b"--max-inflight-body-mb" in body, body
        # A declared body costs no memory until its bytes come.
        assert rss_bytes() - rss_before < declared // 4
        # Small requests still fit in the rest of the budget.
        assert_serving(srv)
        assert budget.reserved == declared
    finally:
        first.close()
    # Hanging up returns the reservation: the next gigabyte is admitted again.
    wait_until(lambda: budget.reserved == 0, "the reservation returned on disconnect")
    with headers_only(srv, declared):
        wait_until(lambda: budget.reserved == declared, "a new body reserved")
    wait_until(lambda: budget.reserved == 0, "the reservation returned again")
    with httpx.Client(base_url=srv.url) as http:
        errors = http.get("/stats").json()["errors_by_type"]
    assert errors.get("busy") == 1


def test_a_body_that_stalls_is_refused_and_its_reservation_returned(
        make_server: Callable[..., BackgroundServer], assert_serving: Callable[..., None],
        wait_until: Callable[..., None]) -> None:
    srv = make_server(max_body_mb=1024, body_timeout_s=0.3)
    budget = srv.app.state.genie.bodies
    # Headers alone, and a body that stops after a few bytes: both are cut off.
    for first_bytes in (b"", b"\x10\x00\x00"):
        with headers_only(srv, 512 * MB) as sock:
            if first_bytes:
                sock.sendall(first_bytes)
            head, body = read_reply(sock)
            assert head.startswith(b"HTTP/1.1 400 "), head
            assert b"connection: close" in head.lower()
            assert b'"malformed_request"' in body and b"--body-timeout-s" in body, body
            assert sock.recv(1) == b"", "the server closes the connection after the reply"
        wait_until(lambda: budget.reserved == 0, "the reservation returned")
    with httpx.Client(base_url=srv.url) as http:
        assert http.get("/stats").json()["errors_by_type"] == {"malformed_request": 2}
    assert_serving(srv)


def test_chunked_bodies_count_against_the_budget_as_they_grow(
        make_server: Callable[..., BackgroundServer], wait_until: Callable[..., None]) -> None:
    srv = make_server(max_body_mb=1, max_inflight_body_mb=1)
    budget = srv.app.state.genie.bodies
    body = safetensors.torch.save({"x": torch.zeros(100_000)})  # 400 kB
    with headers_only(srv, 700_000) as held:  # leaves 348,576 bytes of the budget
        wait_until(lambda: budget.reserved == 700_000, "the declared body reserved")
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            resp = http.post("/echo", content=iter([body[:200_000], body[200_000:]]))
            assert resp.status_code == 503, resp.text
            assert resp.json()["error"]["type"] == "busy"
            held.close()
            wait_until(lambda: budget.reserved == 0, "the reservation returned")
            resp = http.post("/echo", content=iter([body[:200_000], body[200_000:]]))
            assert resp.status_code == 200 and resp.content == body
    assert budget.reserved == 0
