"""``genie.Client`` (genie.client.sync) against a real server, over both of its
transports: every operation, bit-exact tensors of every dtype and layout, handles and
graphs, one client shared by threads; no raw httpx exception escapes, replies a proxy
might send are read, closed keep-alive connections are replaced, timeouts and refused
connections are TransportErrors, a busy server is retried until it answers, and
httpx (so the environment's proxy) is used exactly when the environment names one.
Retries, reconnects and timeouts are counted; large bodies report their progress.
Closing ends the client's session in one request, bounded and quiet when the server
is gone or stuck; so does the interpreter's exit for clients still open (both twins).
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import torch

from genie.client import Client, Progress, RemoteTensor
from genie.client.sync import EXIT_TIMEOUT_S
from genie.errors import (
    NotFoundError,
    RemoteError,
    ServerBusyError,
    ServerError,
    TransportError,
)
from genie.protocol import PROTOCOL_VERSION
from genie.server.runner import BackgroundServer


def test_health_stats_ops_device(client: Client) -> None:
    info = client.check_compatible()
    assert info["status"] == "healthy" and info["protocol_version"] == PROTOCOL_VERSION
    assert client.stats()["requests"]["total"] >= 1
    assert "relu" in client.ops() and len(client.ops()) == info["ops"]
    assert client.device()["benchmark"]["median_ms"] > 0


def test_execute(client: Client, x: torch.Tensor) -> None:
    y = torch.tensor([1.0, 10.0, 100.0])
    assert torch.equal(client.execute("relu", x), torch.relu(x))
    assert torch.equal(client.execute("add", x, other=y, alpha=3), torch.add(x, y, alpha=3))
    assert torch.equal(client.execute("mul", x, other=2.5), x * 2.5)
    assert torch.equal(client.execute("sum", x, dim=(0, 1)), x.sum())
    assert client.execute("to", x, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert torch.equal(client.execute("getitem", x, index=(Ellipsis, slice(1, None))), x[..., 1:])
    assert torch.equal(client.execute("reshape", x, shape=torch.Size([3, 2])), x.reshape(3, 2))
    assert torch.equal(client.execute("randn", size=[3], seed=5),
                       torch.randn(3, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(client.execute("where", x > 0, input=x, other=0.0),
                       torch.where(x > 0, x, 0.0))


def test_execute_with_tensor_lists(client: Client, x: torch.Tensor) -> None:
    assert torch.equal(client.execute("cat", tensors=[x, x * 2], dim=1), torch.cat([x, x * 2], 1))
    assert torch.equal(client.execute("stack", tensors=(x, -x)), torch.stack([x, -x]))
    assert torch.allclose(client.execute("einsum", equation="ij,kj->ik", operands=[x, x]), x @ x.t())
    idx = torch.tensor([2, 0])
    assert torch.equal(client.execute("getitem", x, index=(slice(None), idx)), x[:, idx])


def test_execute_non_contiguous_and_edge_shapes(client: Client) -> None:
    big = torch.randn(64, 48)
    assert torch.equal(client.execute("neg", big.t()), -big.t())
    assert torch.equal(client.execute("neg", big[::3, 5:20]), -big[::3, 5:20])
    assert torch.equal(client.execute("neg", torch.tensor(3.5)), torch.tensor(-3.5))
    empty = client.execute("neg", torch.empty(0, 4))
    assert empty.shape == (0, 4)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32, torch.float64,
                                   torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8,
                                   torch.uint16, torch.uint32, torch.uint64, torch.bool,
                                   torch.complex64, torch.float8_e4m3fn, torch.float8_e5m2])
def test_echo_is_bit_exact(client: Client, dtype: torch.dtype) -> None:
    raw = torch.randint(0, 256, (5 * 7 * dtype.itemsize,), dtype=torch.uint8,
                        generator=torch.Generator().manual_seed(1))
    t = (raw % 2).bool().reshape(5, 7) if dtype is torch.bool else raw.view(dtype).reshape(5, 7)
    out = client.echo(t.t())
    assert out.dtype == dtype and out.shape == (7, 5)
    assert torch.equal(out.contiguous().view(torch.uint8), t.t().contiguous().view(torch.uint8))
    assert client.last.bytes_sent > 35 * dtype.itemsize
    assert client.last.bytes_received > 35 * dtype.itemsize
    assert set(client.last.server_timing) == {"decode", "compute", "encode"}


def test_large_tensors_round_trip(client: Client) -> None:
    # Past 1 MiB both sides receive into pre-populated mmap buffers: a different path.
    big = torch.randn(2048, 2048, generator=torch.Generator().manual_seed(3))  # 16 MiB
    assert torch.equal(client.echo(big), big)
    assert torch.equal(client.execute("neg", big.t()), -big.t())
    handle = client.put(big.half())
    assert handle.nbytes == big.numel() * 2
    assert torch.equal(client.get(handle), big.half())
    client.delete(handle)


def test_handles(client: Client, x: torch.Tensor) -> None:
    w = torch.randn(3, 4)
    handle = client.put(w)
    assert isinstance(handle, RemoteTensor)
    assert handle.shape == (3, 4) and handle.dtype == torch.float32 and handle.nbytes == 48
    assert torch.equal(client.get(handle), w)
    assert torch.equal(client.get(handle.id), w)  # a bare id works too
    graph = {"nodes": [{"id": "y", "op": "matmul", "args": [{"input": "x"}, {"handle": handle.id}]}]}
    result = client.run_graph(graph, {"x": x})
    assert torch.allclose(result.outputs["y"], x @ w) and result.handles == {}
    assert client.delete(handle)["deleted"] is True
    with pytest.raises(NotFoundError) as info:
        client.get(handle)
    assert info.value.status == 404
    with pytest.raises(NotFoundError):
        client.delete(handle.id)


def test_run_graph_keep(client: Client, x: torch.Tensor) -> None:
    graph = {"nodes": [{"id": "a", "op": "exp", "args": [{"input": "x"}]},
                       {"id": "b", "op": "sum", "args": [{"node": "a"}]}],
             "outputs": ["a", "b"], "keep": ["a"]}
    result = client.run_graph(graph, {"x": x})
    assert set(result.outputs) == {"b"} and set(result.handles) == {"a"}
    assert torch.allclose(result.outputs["b"], x.exp().sum())
    kept = result.handles["a"]
    assert kept.shape == (2, 3) and kept.dtype == torch.float32
    assert torch.allclose(client.get(kept), x.exp())
    client.delete(kept)


def test_one_client_shared_by_threads(client: Client) -> None:
    failures: list[BaseException] = []

    def work(seed: int) -> None:
        try:
            for i in range(5):
                x = torch.randn(50, 20, generator=torch.Generator().manual_seed(seed * 10 + i))
                assert torch.equal(client.execute("neg", x), -x)
                assert torch.equal(client.echo(x), x)
        except BaseException as exc:  # noqa: BLE001 - reported on the main thread
            failures.append(exc)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures


# --- transports: replies the Genie server never sends, and connections that go away ---


def test_no_raw_httpx_exception_escapes(junk_server: Callable[[bytes], Any], transport: str,
                                        x: torch.Tensor) -> None:
    garbage = junk_server(b"this is not HTTP at all\r\n\r\n")
    with Client(f"127.0.0.1:{garbage.port}", retries=2) as c:
        with pytest.raises(TransportError) as info:
            c.execute("relu", x)
        assert not isinstance(info.value, httpx.HTTPError)
        assert not info.value.retryable  # the server got the request: not safe to resend
    assert garbage.connections == 1
    hangup = junk_server(b"")  # accepts, reads, closes without a word
    with Client(f"127.0.0.1:{hangup.port}", retries=0) as c, pytest.raises(TransportError):
        c.health()
    proxy = junk_server(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 10\r\n"
                        b"Connection: close\r\n\r\nupstream??")
    with Client(f"127.0.0.1:{proxy.port}", retries=0) as c:
        with pytest.raises(ServerError) as err:
            c.health()
        assert err.value.status == 502 and "upstream" in err.value.message
    not_json = junk_server(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello")
    with Client(f"127.0.0.1:{not_json.port}", retries=0) as c, pytest.raises(RemoteError):
        c.health()


def test_replies_a_proxy_might_send_are_read(junk_server: Callable[[bytes], Any],
                                             transport: str) -> None:
    ok = b'{"status": "ok", "protocol_version": "1.0"}'
    replies = {
        "chunked": b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n"
                   + b"%x\r\n" % 10 + ok[:10] + b"\r\n"
                   + b"%x;ext=1\r\n" % (len(ok) - 10) + ok[10:] + b"\r\n0\r\n\r\n",
        "until-close": b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + ok,
        "http/1.0": b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ok) + ok,
        "interim-100": b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"
                       b"Content-Length: %d\r\n\r\n" % len(ok) + ok,
    }
    for name, reply in replies.items():
        srv = junk_server(reply)
        with Client(f"127.0.0.1:{srv.port}", retries=0) as c:
            assert c.check_compatible()["status"] == "ok", name


def test_keep_alive_connection_closed_by_the_server_is_replaced(
        junk_server: Callable[[bytes], Any], transport: str) -> None:
    # The reply promises keep-alive, then the server closes the connection anyway
    # (as servers do after their idle timeout): the next request must still work.
    ok = b'{"status": "ok"}'
    srv = junk_server(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ok) + ok)
    with Client(f"127.0.0.1:{srv.port}", retries=0) as c:
        for _ in range(3):
            assert c.health() == {"status": "ok"}
    assert srv.connections == 3


def test_https_to_a_plain_http_server_is_a_transport_error(server: BackgroundServer) -> None:
    with Client(f"https://127.0.0.1:{server.port}", retries=0) as c:
        with pytest.raises(TransportError) as info:
            c.health()
        assert not isinstance(info.value, httpx.HTTPError)


def test_timeout_is_a_transport_error(server: BackgroundServer, transport: str) -> None:
    with Client(server.url, timeout=0.001, retries=0) as c:
        with pytest.raises(TransportError) as info:
            c.device()  # a 1000x1000 matmul benchmark cannot answer within 1 ms
        assert info.value.kind == "read_timeout" and "read_timeout" in info.value.message


def test_environment_proxy_is_honoured_unless_no_proxy(canned: Callable[..., Any],
                                                       monkeypatch: pytest.MonkeyPatch,
                                                       fixed: Callable[..., bytes]) -> None:
    proxy = canned(lambda head: fixed(b'{"via": "proxy"}'))
    direct = canned(lambda head: fixed(b'{"via": "direct"}'))
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.port}")
    with Client(f"127.0.0.1:{direct.port}") as c:
        assert c.stats() == {"via": "proxy"}  # httpx carries proxied requests
    assert proxy.requests[0].startswith(f"GET http://127.0.0.1:{direct.port}/stats".encode())
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with Client(f"127.0.0.1:{direct.port}") as c:
        assert c.stats() == {"via": "direct"}


# --- retries ---------------------------------------------------------------------------


def test_connection_refused_is_retried_then_transport_error(
        transport: str, free_port: Callable[[], int]) -> None:
    port = free_port()
    with Client(f"127.0.0.1:{port}", retries=2, timeout=2) as c, \
            pytest.raises(TransportError) as info:
        c.health()
    assert info.value.retryable
    assert info.value.kind == "connect"
    assert c.requests == 0  # no reply ever came


def test_busy_server_is_retried_until_it_answers(make_server: Callable[..., BackgroundServer],
                                                 x: torch.Tensor) -> None:
    srv = make_server(max_inflight=1)
    m = torch.eye(400)
    slow = {"nodes": [{"id": f"n{i}", "op": "matmul",
                       "args": [{"input": "m"} if i == 0 else {"node": f"n{i - 1}"}, {"input": "m"}]}
                      for i in range(80)]}
    retried = False
    for _ in range(10):
        hold = threading.Thread(target=_hold_the_slot, args=(srv.url, slow, m))
        hold.start()
        with Client(srv.url, retries=0) as probe, Client(srv.url, retries=8) as c:
            # Wait until the slow graph holds the only compute slot (a probe gets 503),
            # then the real call must be refused at first and succeed on a retry.
            busy = False
            while hold.is_alive() and not busy:
                try:
                    probe.execute("relu", x)
                except ServerBusyError:
                    busy = True
            if busy:
                assert torch.equal(c.execute("relu", x), torch.relu(x))
                retried = c.requests > 1  # a 503 came back and the call still succeeded
        hold.join()
        if retried:
            break
    assert retried, "never caught the server busy"
    with Client(srv.url) as c:
        assert c.stats()["errors_by_type"].get("busy", 0) >= 1


def _hold_the_slot(url: str, graph: dict[str, Any], m: torch.Tensor) -> None:
    # Losing the race for the slot (503) is fine: then the other request holds it.
    with Client(url, retries=0) as c, contextlib.suppress(ServerBusyError):
        c.run_graph(graph, {"m": m})


# --- what a caller timing requests learns: disturbances and progress -------------------


def test_retries_and_timeouts_are_counted(transport: str, free_port: Callable[[], int],
                                          server: BackgroundServer) -> None:
    with Client(f"127.0.0.1:{free_port()}", retries=2, timeout=2) as c, \
            pytest.raises(TransportError):
        c.health()
    assert c.disturbances.as_dict() == {"retries": 2, "reconnects": 0, "timeouts": 0,
                                        "transport_errors": 3}
    with Client(server.url, timeout=0.001, retries=0) as c:
        before = c.disturbances.copy()
        with pytest.raises(TransportError):
            c.device()
        moved = c.disturbances.since(before)
    assert (moved.timeouts, moved.transport_errors, moved.retries) == (1, 1, 0) and moved


def test_a_quiet_exchange_disturbs_nothing(client: Client, x: torch.Tensor) -> None:
    for _ in range(5):
        client.execute("relu", x)
    assert not client.disturbances


def test_connection_the_server_closed_counts_as_a_reconnect(junk_server: Callable[[bytes], Any]) -> None:
    ok = b'{"status": "ok"}'
    srv = junk_server(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(ok) + ok)
    with Client(f"127.0.0.1:{srv.port}", retries=0) as c:  # plain http: genie.client.http1
        for _ in range(3):
            c.health()
        assert c.disturbances.reconnects == 2  # the 2nd and 3rd found the last one closed


def test_progress_of_a_large_body_both_ways(server: BackgroundServer, transport: str) -> None:
    seen: list[Progress] = []
    x = torch.arange(4 * 2**20, dtype=torch.float32)  # 16 MiB each way
    with Client(server.url, retries=0, progress=seen.append) as c:
        assert torch.equal(c.echo(x), x)
        small = len(seen)
        c.execute("relu", torch.ones(8))
    assert len(seen) == small, "a small body reports no progress"
    for phase in ("upload", "download"):
        steps = [p for p in seen if p.phase == phase]
        assert steps and all(p.path == "/echo" and p.method == "POST" for p in steps), phase
        done = [p.done for p in steps]
        assert done == sorted(done) and done[-1] == steps[-1].total, phase
        assert steps[-1].total is not None and steps[-1].total > x.numel() * 4, phase
        assert len(steps) >= 2 and done[0] < done[-1], f"{phase}: {done}"
def _session_ends(probe: Client) -> int:
    return int(probe.stats()["endpoints"].get("DELETE /sessions/{session}", {}).get("count", 0))


def test_close_ends_the_session_in_one_request(server: BackgroundServer, transport: str) -> None:
    with Client(server.url, session=None) as probe:
        start = _session_ends(probe)
        c = Client(server.url, retries=0)
        handles = [c.put(torch.ones(8)) for _ in range(3)]
        c.run_graph({"nodes": [{"id": "z", "op": "zeros", "args": [4]}], "keep": True})
        assert probe.session_info(c.session)["handles"] == 4
        c.close()
        assert _session_ends(probe) - start == 1
        with pytest.raises(NotFoundError):
            probe.session_info(c.session)
        for handle in handles:
            with pytest.raises(NotFoundError, match="its session was closed"):
                probe.get(handle)
        c.close()  # twice: nothing more
        with Client(server.url) as d:  # leaving the block closes it
            d.put(torch.ones(2))
            ended = d.session
        assert _session_ends(probe) - start == 2
        with pytest.raises(NotFoundError):
            probe.session_info(ended)
        with Client(server.url) as e:  # never held a handle: closing tells the server nothing
            e.health()
        assert _session_ends(probe) - start == 2


def test_close_is_bounded_and_quiet_when_the_server_is_gone_or_stuck(
        make_server: Callable[..., BackgroundServer], transport: str) -> None:
    srv = make_server()
    gone = Client(srv.url, retries=0)
    gone.put(torch.ones(2))
    srv.stop()
    started = time.monotonic()
    gone.close()  # connection refused: not an error, the lease would free them
    assert time.monotonic() - started < 5
    with socket.create_server(("127.0.0.1", 0)) as stuck:  # accepts, never answers
        c = Client(f"127.0.0.1:{stuck.getsockname()[1]}", timeout=0.5, retries=0)
        with pytest.raises(TransportError):
            c.put(torch.ones(2))
        started = time.monotonic()
        c.close()
        assert time.monotonic() - started < 5  # bounded by its timeout, not forever


_EXIT_SCRIPT = """
import asyncio, sys, torch, genie
url, stuck_url = sys.argv[1:]
sync = genie.Client(url)
sync.put(torch.ones(4))
async def main():
    c = genie.AsyncClient(url)
    await c.put(torch.ones(4))
    return c
kept = asyncio.run(main())  # its event loop is gone by the time the interpreter exits
stuck = genie.Client(stuck_url, timeout=0.3, retries=0)  # a server that never answers
try:
    stuck.put(torch.ones(4))
except genie.TransportError:
    pass
print(sync.session, kept.session, flush=True)
"""  # ...and exits with all three clients still open


def test_interpreter_exit_ends_open_sessions_bounded_and_quietly(
        make_server: Callable[..., BackgroundServer], tmp_path: Path) -> None:
    srv = make_server(handle_lease_s=0)  # no lease: only the clients' exit can free them
    script = tmp_path / "exits.py"
    script.write_text(_EXIT_SCRIPT)
    with socket.create_server(("127.0.0.1", 0)) as stuck:  # accepts, never answers
        proc = subprocess.Popen(
            [sys.executable, str(script), srv.url, f"127.0.0.1:{stuck.getsockname()[1]}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        sessions = proc.stdout.readline().split()
        started = time.monotonic()
        _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and err == "", err  # nothing raised or printed at exit
    # The stuck server costs at most connect + send + read, each EXIT_TIMEOUT_S, on top
    # of the interpreter's own teardown (about 2 s with torch loaded, on a busy machine).
    assert time.monotonic() - started < 3 * EXIT_TIMEOUT_S + 10
    with Client(srv.url, session=None) as probe:
        for session in sessions:
            with pytest.raises(NotFoundError):
                probe.session_info(session)
        stats = probe.stats()
        assert stats["held"] == {"tensors": 0, "bytes": 0}
        assert stats["sessions"]["freed"]["closed"] == {"sessions": 2, "handles": 2, "bytes": 32}
