"""Limits that protect the server from its clients, over raw sockets on 127.0.0.1:
the budget for request bodies in flight, the body idle timeout, the connection limit.

Raw sockets, because these clients misbehave on purpose (declare gigabytes and send
nothing, stall mid-body, hold connections open) in ways no HTTP library would.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable

import httpx
import pytest
import safetensors.torch
import torch

from genie.server.runner import BackgroundServer

MB = 1024 * 1024
X = torch.tensor([[-1.0, 2.0], [3.0, -4.0]])


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


def wait_until(condition: Callable[[], bool], what: str) -> None:
    """Poll for a state the server reaches asynchronously (not a timing assertion)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, f"never saw: {what}"
        time.sleep(0.01)


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS in /proc/self/status")


def assert_serving(srv: BackgroundServer) -> None:
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        resp = http.post("/execute?op=relu", content=safetensors.torch.save({"x": X}))
        assert resp.status_code == 200, resp.text
        assert torch.equal(safetensors.torch.load(resp.content)["output"], torch.relu(X))


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc")
def test_declared_bodies_are_reserved_before_memory_and_refused_503_past_the_budget(
        make_server: Callable[..., BackgroundServer]) -> None:
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
        make_server: Callable[..., BackgroundServer]) -> None:
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
        make_server: Callable[..., BackgroundServer]) -> None:
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


def test_connections_past_the_limit_are_answered_503(
        make_server: Callable[..., BackgroundServer]) -> None:
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
