"""Receiving request bodies (genie.server.bodies): a body past ``--max-body-mb`` is
refused 413 before it is read; memory is committed, and reserved against the budget
for bodies in flight (503 ``busy`` past it), only as the bytes arrive, and returned
however the request ends; a body that stalls past ``--body-timeout-s`` or trickles
under ``--min-body-rate-kb``, or a client that hangs up mid-body, is a counted 400 that
the server carries on after.

Raw sockets where clients misbehave on purpose (declare gigabytes and send nothing,
stall mid-body) in ways no HTTP library would.
"""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import safetensors.torch
import torch

from genie.server import bodies
from genie.server.runner import BackgroundServer

MB = 1024 * 1024


def headers_only(srv: BackgroundServer, content_length: int) -> socket.socket:
    """A connection that declares a body of ``content_length`` bytes and sends none."""
    sock = socket.create_connection(("127.0.0.1", srv.port), timeout=30)
    sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                 b"Content-Length: %d\r\n\r\n" % content_length)
    return sock


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
def test_a_declared_body_commits_memory_only_as_its_bytes_arrive(
        make_server: Callable[..., BackgroundServer], assert_serving: Callable[..., None],
        wait_until: Callable[..., None]) -> None:
    # The attack: two clients declared 1 GiB, sent 2 bytes, and so took 2 GiB of memory
    # and the whole budget (every other upload 503) for as long as they stayed.  Scaled
    # down: 256 MiB each, a budget of 384 MiB.
    srv = make_server(max_body_mb=256, max_inflight_body_mb=384)
    budget = srv.app.state.genie.bodies
    declared = 256 * MB
    rss_before = rss_bytes()
    first, second = headers_only(srv, declared), headers_only(srv, declared)
    try:
        for sock in (first, second):
            sock.sendall(b"\x10\x00")
        wait_until(lambda: budget.reserved == 2 * MB, "two bodies begun, 1 MiB each")
        assert rss_bytes() - rss_before < 32 * MB
        # Everybody else's uploads still fit, up to the real limit.
        assert_serving(srv)
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            big = safetensors.torch.save({"x": torch.zeros(20 * MB // 4)})
            assert http.post("/echo", content=big).content == big
        # As bytes come, the reservation follows them (in steps of half what is there).
        first.sendall(b"\0" * (5 * MB))
        wait_until(lambda: budget.reserved >= 2 * MB + 4 * MB, "the first body grown")
        assert budget.reserved <= 1 * MB + (5 * MB + 2) * 3 // 2 + MB
    finally:
        first.close()
        second.close()
    wait_until(lambda: budget.reserved == 0, "the reservations returned on disconnect")


def test_a_body_that_stalls_or_trickles_is_cut_off_and_its_reservation_returned(
        make_server: Callable[..., BackgroundServer], assert_serving: Callable[..., None],
        wait_until: Callable[..., None], read_reply: Callable[..., tuple[bytes, bytes]]) -> None:
    # A body that stalls for --body-timeout-s is refused, and so is one that keeps
    # coming, but too slowly: after that grace it must average --min-body-rate-kb.
    srv = make_server(max_body_mb=1024, body_timeout_s=0.4, min_body_rate_kb=1)
    budget = srv.app.state.genie.bodies
    with headers_only(srv, 512 * MB) as stalled:
        head, body = read_reply(stalled)
        assert head.startswith(b"HTTP/1.1 400 ") and b"connection: close" in head.lower()
        assert b'"malformed_request"' in body and b"--body-timeout-s" in body, body
        assert stalled.recv(1) == b"", "the server closes the connection after the reply"
    with headers_only(srv, 512 * MB) as trickled:
        # 40 bytes every 0.1 s: never idle for 0.4 s, but 400 bytes/s, under 1 KiB/s.
        trickled.settimeout(0.1)
        started = time.monotonic()
        reply = b""
        while not reply and time.monotonic() - started < 10:
            try:
                trickled.sendall(b"\0" * 40)
                reply = trickled.recv(65536)
            except TimeoutError:
                continue
            except OSError:  # closed under us: the reply came first
                break
        trickled.settimeout(10)
        head, _, rest = reply.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 400 "), reply
        assert b"--min-body-rate-kb" in rest, rest
        assert time.monotonic() - started < 3
    wait_until(lambda: budget.reserved == 0, "the reservations returned")
    with httpx.Client(base_url=srv.url) as http:
        assert http.get("/stats").json()["errors_by_type"] == {"malformed_request": 2}
    assert_serving(srv)


def test_bodies_past_what_is_left_of_the_budget_are_503_as_they_grow(
        make_server: Callable[..., BackgroundServer], wait_until: Callable[..., None]) -> None:
    srv = make_server(max_body_mb=4, max_inflight_body_mb=4)
    budget = srv.app.state.genie.bodies
    body = safetensors.torch.save({"x": torch.zeros(600_000)})  # 2.4 MB
    with headers_only(srv, 4 * MB) as held:
        held.sendall(b"\0" * (2 * MB + 10))  # commits 1 MiB, 1 more, then 1 more
        wait_until(lambda: budget.reserved == 3 * MB, "the first body grown to 3 MiB")
        with httpx.Client(base_url=srv.url, timeout=30) as http:
            for content in (body, iter([body[:1_200_000], body[1_200_000:]])):  # sized, chunked
                resp = http.post("/echo", content=content)
                assert resp.status_code == 503, resp.text
                assert resp.json()["error"]["type"] == "busy"
                assert "--max-inflight-body-mb" in resp.json()["error"]["message"]
            held.close()
            wait_until(lambda: budget.reserved == 0, "the reservation returned")
            for content in (body, iter([body[:1_200_000], body[1_200_000:]])):
                resp = http.post("/echo", content=content)
                assert resp.status_code == 200 and resp.content == body
    assert budget.reserved == 0


def test_a_pipelined_request_arriving_while_a_body_buffer_grows_loses_no_body_byte(
        make_server: Callable[..., BackgroundServer], st_body: Callable[..., bytes],
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A body paced as a slow link delivers it (pieces small enough that reading never
    pauses), with the next request pipelined right behind its last byte.  While the
    buffer grows to its full size the rest of the body and the next head arrive; the
    bytes that came meanwhile must still land in the body (they were once dropped:
    a spurious 400 "body ended after N of M bytes").  The page-population step is
    slowed, as on a loaded machine, so that the window is certain to be hit."""
    populate = bodies._populate  # noqa: SLF001 - the step slowed on purpose

    def slowly(buf: Any, start: int, length: int) -> None:
        time.sleep(0.1)
        populate(buf, start, length)

    monkeypatch.setattr(bodies, "_populate", slowly)
    srv = make_server()
    x = torch.arange((MB + 40_000) // 4, dtype=torch.float32)
    body = st_body({"x": x})
    data = (b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body + b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(data), 16384):
            sock.sendall(data[i:i + 16384])
            time.sleep(0.002)
        replies = [_one_reply(sock), _one_reply(sock)]
    (head, echoed), (health_head, _) = replies
    assert head.startswith(b"HTTP/1.1 200 "), head + echoed[:200]
    assert torch.equal(safetensors.torch.load(echoed)["x"], x)
    assert health_head.startswith(b"HTTP/1.1 200 ")


def _one_reply(sock: socket.socket) -> tuple[bytes, bytes]:
    """One reply with a Content-Length, read byte-exactly (the next one stays queued)."""
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        assert byte, f"connection closed before a reply: {head!r}"
        head += byte
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    body = b""
    while len(body) < length:
        piece = sock.recv(length - len(body))
        assert piece, "connection closed mid-reply"
        body += piece
    return head, body
