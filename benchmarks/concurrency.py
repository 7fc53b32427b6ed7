"""The concurrency section of ``benchmarks/transport.py``: what each server sustains
with 1, 4, 16 and 64 clients at once, for a fixed time window each.

Two payloads: a small ``/execute`` (relu of fp32 10 x 10, 480-byte body) and a 4 MB
one (1000 x 1000).  For each, at each level, side by side:

    floor     the bare ASGI echo under uvicorn (``floor.py``), same-size body
    execute   Genie ``POST /execute?op=relu``
    async     ``genie.AsyncClient``: that many tasks in this one process
    rpc       ``torch.distributed.rpc``: that many calls in flight (see ``RpcGroup``)

The floor and execute clients are ``load.py replay`` processes, one per client, each
sending the very request ``genie.Client`` would send (built by the client's own
plan, encoded once) over one keep-alive connection, back to back: what the server
sustains, not what a Python client can generate (``genie.Client``'s own cost is in
the sequential table and the profiles).  A row gives requests completed per second
in the window, p50 and p99 of their round trips, errors (non-200 or dropped), and
the server process's CPU over the window (100 % = one core busy).
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import torch
from drivers import ReplayPool, RpcGroup, ServerWatch, Window
from load import request_bytes

import genie
from genie.wire import decode, encode

LEVELS = (1, 4, 16, 64)
PAYLOADS = {"small": 10, "4mb": 1000}
PATHS = ("floor", "execute", "async", "rpc")


def genie_request(client: genie.Client, x: torch.Tensor) -> tuple[bytes | memoryview, ...]:
    """The bytes ``client.execute("relu", x)`` sends, built from the client's own plan."""
    plan = genie.Client.execute.build(client, "relu", x).plan
    target = f"{plan.path}?{urlencode(plan.params, quote_via=quote)}"
    host = client.url.split("://", 1)[1]
    return request_bytes(plan.method, target, host, client.headers(plan), plan.chunks,
                         plan.nbytes)


def floor_request(host: str, x: torch.Tensor) -> tuple[bytes | memoryview, ...]:
    """A POST to the floor with the same body as Genie's: ``x`` safetensors-encoded."""
    body = encode({"_positional": x})
    return request_bytes("POST", "/", host, {"content-type": "application/octet-stream"},
                         body.chunks, body.nbytes)


def write_request(path: Path, parts: tuple[bytes | memoryview, ...]) -> Path:
    """Store a request's bytes in ``path``, for the replaying client processes."""
    with path.open("wb") as f:
        for part in parts:
            f.write(part)
    return path


async def _async_window(url: str, x: torch.Tensor, tasks: int, seconds: float,
                        server_pid: int) -> tuple[Window, bool]:
    window = Window(seconds)
    expected = torch.relu(x)
    async with genie.AsyncClient(url, timeout=120) as client:
        exact = torch.equal(await client.execute("relu", x), expected)
        for _ in range(3):
            await asyncio.gather(*(client.execute("relu", x) for _ in range(tasks)))
        t0 = time.monotonic() + 0.05
        t1 = t0 + seconds
        watch = ServerWatch(server_pid)

        async def caller() -> None:
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))
            while time.monotonic() < t1:
                start = time.perf_counter()
                try:
                    await client.execute("relu", x)
                    failed = False
                except genie.GenieError:
                    failed = True
                done = time.perf_counter()
                if time.monotonic() <= t1:
                    window.latencies_ms.append((done - start) * 1000)
                    window.errors += failed

        async def watcher() -> None:
            await asyncio.sleep(max(0.0, t0 - time.monotonic()))
            watch.at_start(t0)
            await asyncio.sleep(max(0.0, t1 - time.monotonic()))
            watch.at_end(t1, window)

        await asyncio.gather(watcher(), *(caller() for _ in range(tasks)))
    return window, exact


def _row(window: Window, exact: bool) -> dict[str, Any]:
    return {**window.summary(), "exact": exact}


def measure(*, genie_url: str, genie_pid: int, floor_port: int, floor_pid: int,
            pool: ReplayPool, rpc: RpcGroup | None, levels: list[int], seconds: float,
            log: Any) -> list[dict[str, Any]]:
    """Every payload at every level on every path; one row per (payload, level)."""
    rows: list[dict[str, Any]] = []
    genie_port = int(genie_url.rsplit(":", 1)[1])
    with tempfile.TemporaryDirectory(prefix="genie-bench-") as tmp, \
            genie.Client(genie_url, timeout=120) as client:
        for payload, n in PAYLOADS.items():
            x = torch.randn(n, n)
            expected = torch.relu(x)
            req_execute = write_request(Path(tmp) / f"execute-{n}.bin", genie_request(client, x))
            req_floor = write_request(Path(tmp) / f"floor-{n}.bin",
                               floor_request(f"127.0.0.1:{floor_port}", x))
            reply = Path(tmp) / "reply.bin"
            body = encode({"_positional": x}).to_bytes()
            for level in levels:
                paths: dict[str, dict[str, Any]] = {}
                w = pool.window(level, floor_port, req_floor, seconds, floor_pid, reply)
                paths["floor"] = _row(w, reply.read_bytes() == body)
                w = pool.window(level, genie_port, req_execute, seconds, genie_pid, reply)
                paths["execute"] = _row(w, torch.equal(
                    decode(bytearray(reply.read_bytes())).tensors["output"], expected))
                w, exact = asyncio.run(_async_window(genie_url, x, level, seconds, genie_pid))
                paths["async"] = _row(w, exact)
                if rpc is not None:
                    w = rpc.window(n, level, seconds)
                    paths["rpc"] = _row(w, all(r["exact"] for r in w.ready))
                rows.append({"payload": payload, "n": n, "body_bytes": len(body),
                             "clients": level, "window_s": seconds, "paths": paths})
                log(f"concurrency {payload} x{level} done")
    return rows
