"""Who computes when (genie.server.scheduling): compute threads go round-robin between
clients, each held to ``--client-compute-threads``, so a client's heavy requests cannot
starve another's tiny one; a request that computes past ``--max-compute-s`` is stopped
(422 ``compute_timeout``) and one whose client has gone stops at its next node.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable
from typing import Any

import anyio
import httpx
import torch

from genie.server.runner import BackgroundServer
from genie.server.scheduling import FairSlots

SESSION = "X-Genie-Session"


def heavy_graph(nodes: int) -> dict[str, Any]:
    """``expand`` then ``norm(p=3)`` again and again: a small body, seconds of compute
    (about 25 ms a node here), and no memory to speak of."""
    return {"nodes": [{"id": "e", "op": "expand", "args": [{"input": "x"}, [4096, 2048]]}]
            + [{"id": f"n{i}", "op": "norm", "args": [{"node": "e"}, 3]} for i in range(nodes)],
            "outputs": [f"n{nodes - 1}"]}


def test_slots_go_round_robin_between_clients_within_each_ones_limit() -> None:
    order: list[str] = []

    async def main() -> None:
        slots = FairSlots(total=2, per_client=1)

        async def job(client: str, tag: str) -> None:
            await slots.acquire(client)
            order.append(tag)
            await anyio.sleep(0.01)
            slots.release(client)

        async with anyio.create_task_group() as tg:
            for i in range(4):  # the heavy client queues first...
                tg.start_soon(job, "heavy", f"h{i}")
                await anyio.sleep(0)
            tg.start_soon(job, "victim", "v")  # ...the victim after all of them
            await anyio.sleep(0)
        assert slots.busy == 0 and not slots.running

    anyio.run(main)
    # heavy never holds both slots, and the victim runs at once, not after h1..h3.
    assert order[:2] == ["h0", "v"], order


def test_a_waiter_cancelled_in_line_gives_up_its_place() -> None:
    async def main() -> None:
        slots = FairSlots(total=1, per_client=1)
        await slots.acquire("a")
        with anyio.move_on_after(0.05):
            await slots.acquire("b")  # waits, then is cancelled
        slots.release("a")
        with anyio.fail_after(1):
            await slots.acquire("c")  # not blocked by b's abandoned place
        assert slots.running == {"c": 1}

    anyio.run(main)


def test_a_request_that_computes_too_long_is_stopped(
        make_server: Callable[..., BackgroundServer], graph_body: Callable[..., bytes],
        assert_error: Callable[..., str], assert_serving: Callable[..., None]) -> None:
    # The attack: a 67 KB graph computed for as long as it liked (4.6 s there).
    srv = make_server(max_compute_s=0.3)
    body = graph_body(heavy_graph(400), {"x": torch.ones(1)})
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        started = time.monotonic()
        message = assert_error(http.post("/graph", content=body), 422, "compute_timeout")
        assert time.monotonic() - started < 2
        assert "--max-compute-s" in message and "before node" in message
        assert http.get("/stats").json()["errors_by_type"] == {"compute_timeout": 1}
        assert_serving(http)


def test_a_graph_whose_client_has_gone_stops_at_its_next_node(
        make_server: Callable[..., BackgroundServer], graph_body: Callable[..., bytes],
        wait_until: Callable[..., None], assert_serving: Callable[..., None]) -> None:
    srv = make_server()
    executor = srv.app.state.genie.executor
    body = graph_body(heavy_graph(400), {"x": torch.ones(1)})  # some 10 s of compute
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(b"POST /graph HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n"
                     % len(body) + body)
        wait_until(lambda: executor.slots.busy == 1, "the graph computing")
    started = time.monotonic()
    wait_until(lambda: executor.slots.busy == 0, "the abandoned graph stopped")
    assert time.monotonic() - started < 2
    with httpx.Client(base_url=srv.url) as http:
        assert http.get("/stats").json()["errors_by_type"] == {"malformed_request": 1}
    assert_serving(srv)


def test_heavy_requests_of_one_client_do_not_starve_another(
        make_server: Callable[..., BackgroundServer], graph_body: Callable[..., bytes],
        st_body: Callable[..., bytes], x: torch.Tensor, wait_until: Callable[..., None]) -> None:
    # The attack: four heavy graphs took every compute thread and a victim's tiny relu
    # waited for them (17.6 s there).  Here the four stay connected while the victim
    # asks: the heavy client holds one of the two threads, the victim gets the other.
    # Then the four are abandoned, and stop at their next node.
    srv = make_server(compute_threads=2)
    executor = srv.app.state.genie.executor
    body = graph_body(heavy_graph(400), {"x": torch.ones(1)})  # some 10 s each
    heavy = [socket.create_connection(("127.0.0.1", srv.port)) for _ in range(4)]
    try:
        for sock in heavy:
            sock.sendall(b"POST /graph HTTP/1.1\r\nHost: x\r\nX-Genie-Session: heavy\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
        wait_until(lambda: executor.inflight == 4, "the four heavy graphs in")
        assert executor.slots.running == {"session:heavy": 1}
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            started = time.monotonic()
            resp = http.post("/execute?op=relu", content=st_body({"x": x}),
                             headers={SESSION: "victim"})
            waited = time.monotonic() - started
        assert resp.status_code == 200 and waited < 1.0, waited
        assert executor.inflight == 4  # the heavy ones were still there, one running
    finally:
        for sock in heavy:
            sock.close()
    wait_until(lambda: executor.inflight == 0, "the abandoned graphs stopped")
