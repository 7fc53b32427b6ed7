"""Warm receive buffers (genie.server.pool): a large body's buffer is reused for the
next body of about its size, but never while anything still refers to it (a tensor
decoded from it, a memoryview of it); idle buffers are parked in the budget for
request bodies, so the memory the flags state still bounds them, and they are given
up before a body is refused for want of room.
"""

from __future__ import annotations

import mmap
import socket
import threading
from collections.abc import Callable, Iterator

import httpx
import safetensors.torch
import torch

from genie.server.budget import ByteBudget
from genie.server.pool import BufferPool
from genie.server.runner import BackgroundServer

MB = 1024 * 1024


def fresh(nbytes: int) -> mmap.mmap:
    return mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)


def budget(limit: int = 64 * MB) -> ByteBudget:
    return ByteBudget(limit, name="request bodies in flight", flag="--max-inflight-body-mb")


def test_a_buffer_given_back_is_taken_again_its_bytes_parked_meanwhile() -> None:
    b = budget()
    pool = BufferPool(b)
    pool.give_back(fresh(4 * MB))
    assert (b.parked, b.reserved) == (4 * MB, 0)
    assert pool.take(8 * MB + 1) is None  # too small for it
    assert pool.take(1 * MB) is None  # more than twice what is asked: not wasted on it
    buf = pool.take(3 * MB)
    assert buf is not None and len(buf) == 3 * MB  # shrunk to the body's size
    assert (b.parked, b.reserved) == (0, 3 * MB)  # now the request's
    assert pool.take(3 * MB) is None  # one buffer, one taker


def test_a_buffer_still_referred_to_is_never_handed_out() -> None:
    pool = BufferPool(budget())
    buf = fresh(2 * MB)
    tensor = torch.frombuffer(buf, dtype=torch.uint8)  # a body tensor, kept by someone
    pool.give_back(buf)
    del buf
    assert pool.take(2 * MB) is None
    tensor[0] = 7
    del tensor
    got = pool.take(2 * MB)
    assert got is not None and got[0] == 7
    view = memoryview(got)[:10]  # a reply chunk still being written
    pool.give_back(got)
    del got
    assert pool.take(2 * MB) is None
    view.release()
    assert pool.take(2 * MB) is not None


def test_idle_buffers_make_room_for_a_body_before_it_is_refused() -> None:
    b = budget(16 * MB)
    pool = BufferPool(b)
    for _ in range(2):
        pool.give_back(fresh(4 * MB))
    assert b.parked == 8 * MB
    b.reserve(12 * MB, "a body")  # fits only with one idle buffer dropped
    assert b.parked == 4 * MB and pool.idle_bytes == 4 * MB
    b.release(12 * MB)
    # The pool keeps at most half the budget: a buffer past that is not kept.
    pool.give_back(fresh(9 * MB))
    assert b.parked == 4 * MB


def test_bodies_reuse_warm_buffers_and_every_reply_stays_its_own(
        make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server()
    pool: BufferPool = srv.app.state.genie.body_pool
    bodies: ByteBudget = srv.app.state.genie.bodies
    xs = [torch.randn(600, 600) for _ in range(6)]  # 1.4 MB bodies: received into maps
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        replies = [http.post("/execute?op=relu",
                             content=safetensors.torch.save({"x": x})) for x in xs[:3]]
        for x, resp in zip(xs, replies, strict=False):  # each reply its own, not overwritten
            assert torch.equal(safetensors.torch.load(resp.content)["output"], torch.relu(x))
        assert pool.hits >= 2
        # Concurrent bodies of one size: each request gets a buffer no other holds.
        errors: list[BaseException] = []

        def call(x: torch.Tensor) -> None:
            try:
                with httpx.Client(base_url=srv.url, timeout=60) as mine:
                    for _ in range(3):
                        resp = mine.post("/execute?op=relu",
                                         content=safetensors.torch.save({"x": x}))
                        out = safetensors.torch.load(resp.content)["output"]
                        assert torch.equal(out, torch.relu(x))
            except BaseException as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

        threads = [threading.Thread(target=call, args=(x,)) for x in xs[3:]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not errors, errors
    assert bodies.reserved == 0 and bodies.parked == pool.idle_bytes > 0


def test_a_body_received_straight_into_a_warm_buffer_keeps_the_pace_and_the_counts(
        make_server: Callable[..., BackgroundServer],
        wait_until: Callable[..., None]) -> None:
    # Once a body's buffer is a warm one, the connection writes the bytes into it
    # itself (no ASGI message per chunk): the pace and the accounting still hold.
    srv = make_server(body_timeout_s=0.5, min_body_rate_kb=1)
    pool: BufferPool = srv.app.state.genie.body_pool
    bodies: ByteBudget = srv.app.state.genie.bodies
    body = safetensors.torch.save({"x": torch.randn(800, 800)})  # 2.5 MB
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        assert http.post("/echo", content=body).content == body  # leaves a warm buffer
        hits = pool.hits
        # Sent in pieces with pauses shorter than the timeout: received whole.
        pieces = [body[i:i + 300_000] for i in range(0, len(body), 300_000)]

        def slowly() -> Iterator[bytes]:
            for piece in pieces:
                yield piece
                threading.Event().wait(0.1)

        resp = http.post("/echo", content=slowly(), headers={"content-length": str(len(body))})
        assert resp.status_code == 200 and resp.content == body
        assert pool.hits == hits + 1
        stats = http.get("/stats").json()["endpoints"]["POST /echo"]
        assert stats["bytes_in"] == 2 * len(body)
    # A warm-buffer body that stalls mid-way is still cut off, its reservation returned.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=30) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body)
                     + body[:1_000_000])
        reply = b""
        while b"\r\n\r\n" not in reply:
            chunk = sock.recv(65536)
            if not chunk:
                break
            reply += chunk
        assert reply.startswith(b"HTTP/1.1 400 ") and b"--body-timeout-s" in reply, reply
    assert pool.hits == hits + 2
    wait_until(lambda: bodies.reserved == 0, "the stalled body's reservation returned")


def test_a_small_chunked_body_is_not_kept(make_server: Callable[..., BackgroundServer]) -> None:
    # With no Content-Length a body grows into a map (it may be large); one that ends
    # small could never be taken again, so it must not take a place in the pool.
    srv = make_server()
    pool: BufferPool = srv.app.state.genie.body_pool
    x = torch.randn(100, 100)  # a 40 KB body
    body = safetensors.torch.save({"x": x})
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        resp = http.post("/execute?op=relu", content=iter([body[:1000], body[1000:]]))
        assert torch.equal(safetensors.torch.load(resp.content)["output"], torch.relu(x))
        assert "content-length" not in resp.request.headers
    assert pool.idle_bytes == 0
