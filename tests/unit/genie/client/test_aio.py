"""``genie.AsyncClient`` (genie.client.aio), the asyncio twin: every operation against
a real server, concurrent requests on one client, the same error tree (no raw httpx
exception escapes, timeouts are TransportErrors), a POST whose connection closed
without a reply is never resent, and ``aclose`` ends the session in one request; retries
are counted and large bodies report progress through the same code as the sync client's,
on the event loop although a worker thread does the exchange, and a cancelled call
leaves the client working."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

import pytest
import torch

from genie.client import AsyncClient, Client, Progress
from genie.errors import AuthError, NotFoundError, ServerError, TransportError, UnsupportedOpError
from genie.server.runner import BackgroundServer


def test_async_client_does_the_same(server: BackgroundServer, make_server: Callable[..., BackgroundServer],
                                    x: torch.Tensor, free_port: Callable[[], int]) -> None:
    locked = make_server(token="a")

    async def main() -> None:
        async with AsyncClient(f"127.0.0.1:{server.port}", retries=0) as c:
            assert (await c.check_compatible())["status"] == "healthy"
            assert (await c.stats())["requests"]["total"] >= 1
            assert "matmul" in await c.ops()
            assert (await c.device())["benchmark"]["median_ms"] > 0
            assert torch.equal(await c.execute("relu", x), torch.relu(x))
            assert torch.equal(await c.execute("cat", tensors=[x, x]), torch.cat([x, x]))
            assert torch.equal(await c.echo(x.t()), x.t())
            big = torch.randn(1024, 1024)  # 4 MiB: the large-body paths
            assert torch.equal(await c.echo(big), big)
            assert torch.equal(await c.execute("neg", big), -big)
            h = await c.put(x)
            assert torch.equal(await c.get(h), x)
            graph = {"nodes": [{"id": "a", "op": "add", "args": [{"handle": h.id}, {"input": "y"}]}],
                     "keep": True}
            result = await c.run_graph(graph, {"y": x})
            assert result.outputs == {} and torch.equal(await c.get(result.handles["a"]), x * 2)
            await c.delete(h)
            await c.delete(result.handles["a"])
            with pytest.raises(NotFoundError):
                await c.get(h)
            with pytest.raises(UnsupportedOpError):
                await c.execute("nope", x)
            # Concurrent requests on one client.
            outs = await asyncio.gather(*(c.execute("mul", x, other=float(i)) for i in range(8)))
            for i, out in enumerate(outs):
                assert torch.equal(out, x * float(i))
        async with AsyncClient(locked.url) as c:
            with pytest.raises(AuthError):
                await c.health()
        async with AsyncClient(f"127.0.0.1:{free_port()}", retries=1) as c:
            with pytest.raises(TransportError) as info:
                await c.health()
            assert info.value.retryable
            assert (c.disturbances.retries, c.disturbances.transport_errors) == (1, 2)

    asyncio.run(main())


def test_async_client_lets_no_raw_httpx_exception_escape(junk_server: Callable[[bytes], Any],
                                                         server: BackgroundServer, x: torch.Tensor) -> None:
    garbage = junk_server(b"this is not HTTP at all\r\n\r\n")
    proxy = junk_server(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n"
                        b"Connection: close\r\n\r\nno")

    async def main() -> None:
        async with AsyncClient(f"127.0.0.1:{garbage.port}", retries=2) as c:
            with pytest.raises(TransportError) as info:
                await c.execute("relu", x)
            assert not info.value.retryable
        async with AsyncClient(f"127.0.0.1:{proxy.port}", retries=0) as c:
            with pytest.raises(ServerError) as err:
                await c.health()
            assert err.value.status == 502
        async with AsyncClient(server.url, timeout=0.001, retries=0) as c:
            with pytest.raises(TransportError, match="Timeout"):
                await c.device()  # a 1000x1000 matmul benchmark cannot answer in 1 ms

    asyncio.run(main())
    assert garbage.connections == 1  # a failure after connecting is never resent


def test_async_client_never_resends_a_post(canned: Callable[..., Any],
                                           fixed: Callable[..., bytes]) -> None:
    srv = canned(lambda head: None if head.startswith(b"POST") else fixed(b'{"status": "ok"}'))

    async def main() -> None:
        # No session: closing then sends nothing (ending a session: test_aclose_ends_...).
        async with AsyncClient(f"127.0.0.1:{srv.port}", retries=3, session=None) as c:
            assert await c.health() == {"status": "ok"}
            with pytest.raises(TransportError) as info:
                await c.put(torch.ones(3))
            assert not info.value.retryable

    asyncio.run(main())
    assert [head.split(b" ")[0] for head in srv.requests] == [b"GET", b"POST"]
    assert srv.connections == 1


def test_async_client_reports_progress_of_large_bodies(server: BackgroundServer) -> None:
    seen: list[Progress] = []
    x = torch.arange(3 * 2**20, dtype=torch.float32)  # 12 MiB each way

    async def main() -> None:
        async with AsyncClient(server.url, retries=0, progress=seen.append) as c:
            assert torch.equal(await c.echo(x), x)
            assert not c.disturbances

    asyncio.run(main())
    for phase in ("upload", "download"):
        done = [p.done for p in seen if p.phase == phase]
        assert len(done) >= 2 and done == sorted(done), phase
        assert done[-1] == [p.total for p in seen if p.phase == phase][-1], phase
def test_aclose_ends_the_session_in_one_request(server: BackgroundServer) -> None:
    async def main() -> None:
        c = AsyncClient(server.url, retries=0)
        handles = [await c.put(torch.ones(4)) for _ in range(3)]
        with Client(server.url, session=None) as probe:
            assert probe.session_info(c.session)["handles"] == 3
            await c.aclose()
            await c.aclose()  # twice: nothing more
            with pytest.raises(NotFoundError):
                probe.session_info(c.session)
            for handle in handles:
                with pytest.raises(NotFoundError):
                    probe.get(handle)
            async with AsyncClient(server.url) as d:
                await d.put(torch.ones(2))
            with pytest.raises(NotFoundError):
                probe.session_info(d.session)

    asyncio.run(main())


def test_async_client_reports_progress_on_its_loop_and_survives_a_cancelled_call(
        make_server: Callable[..., BackgroundServer]) -> None:
    # Plain http:// exchanges run on the client's worker threads; what the caller sees
    # (progress, results, cancellation) stays on its event loop.
    srv = make_server(debug_delay_ms=300)
    threads: set[int] = set()
    x = torch.arange(3 * 2**20, dtype=torch.float32)  # 12 MiB each way: progress reported

    async def main() -> None:
        loop_thread = threading.get_ident()
        async with AsyncClient(srv.url, retries=0,
                               progress=lambda p: threads.add(threading.get_ident())) as c:
            assert torch.equal(await c.echo(x), x)
            assert threads == {loop_thread}
            slow = asyncio.ensure_future(c.execute("relu", -x))
            await asyncio.sleep(0.05)
            slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await slow
            # The cancelled exchange finishes on its thread; the client carries on.
            got = await asyncio.gather(*(c.execute("relu", x - i) for i in range(3)))
            for i, y in enumerate(got):
                assert torch.equal(y, torch.relu(x - i))

    asyncio.run(main())
