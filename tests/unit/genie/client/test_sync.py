"""``genie.Client`` and ``genie.AsyncClient`` against a real server: addresses, every
operation, the error tree (no raw httpx exception escapes), and retries that happen
only for connection failures and 503."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import torch

import genie
from genie.client import AsyncClient, Client, RemoteTensor
from genie.errors import (
    AuthError,
    BudgetExceededError,
    ConfigurationError,
    GenieError,
    InvalidArgumentError,
    MalformedRequestError,
    NotFoundError,
    PayloadTooLargeError,
    RemoteError,
    ServerBusyError,
    ServerError,
    TransportError,
    UnsupportedDTypeError,
    UnsupportedOpError,
)
from genie.protocol import PROTOCOL_VERSION
from genie.server.runner import BackgroundServer

X = torch.tensor([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]])


def free_port() -> int:
    """A 127.0.0.1 port with nothing listening (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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
    """Overrides conftest's: the same tests run over both sync transports."""
    with Client(server.url, retries=0) as c:
        # Guard that the parametrization means something: httpx runs iff asked for.
        assert (c._plain is None) == (transport == "httpx")
        yield c


# --- addresses ------------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "url"), [
    ("127.0.0.1", "http://127.0.0.1:8888"),
    ("localhost", "http://localhost:8888"),
    ("127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("http://127.0.0.1:9000", "http://127.0.0.1:9000"),
    ("http://127.0.0.1:9000/", "http://127.0.0.1:9000"),
    ("https://127.0.0.1:9443", "https://127.0.0.1:9443"),
    ("https://localhost", "https://localhost:8888"),
    ("[::1]:8000", "http://[::1]:8000"),
    ("::1", "http://[::1]:8888"),
    ("http://[::1]:7000", "http://[::1]:7000"),
    ("  127.0.0.1:1234  ", "http://127.0.0.1:1234"),
])
def test_url_forms(given: str, url: str) -> None:
    with Client(given) as c:
        assert c.url == url


@pytest.mark.parametrize("bad", ["", "   ", "ftp://127.0.0.1:21", "127.0.0.1:notaport",
                                 "127.0.0.1:99999", "127.0.0.1:0", "http://127.0.0.1:80/api",
                                 "http://user:pw@127.0.0.1:80", "http://127.0.0.1:80?x=1",
                                 "http://:8080"])
def test_bad_urls_are_configuration_errors(bad: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        Client(bad)
    assert "HOST" in info.value.message  # names the accepted forms
    with pytest.raises(ConfigurationError):
        AsyncClient(bad)


def test_every_url_form_reaches_the_server(server: BackgroundServer) -> None:
    for form in (f"127.0.0.1:{server.port}", f"http://127.0.0.1:{server.port}",
                 f"http://127.0.0.1:{server.port}/", server.url):
        with Client(form) as c:
            assert c.health()["status"] == "ok"


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("this Python has no IPv6 support")
    try:
        srv = BackgroundServer(genie.ServerConfig(device="cpu"), host="::1").start()
    except OSError as exc:
        pytest.skip(f"no IPv6 loopback here: {exc}")
    try:
        with Client(f"[::1]:{srv.port}") as c:
            assert torch.equal(c.execute("relu", X), torch.relu(X))
    finally:
        srv.stop()


@pytest.mark.parametrize("token", ["tök€n", "a\r\nX-Evil: 1", "two words", "tab\there"])
def test_tokens_that_cannot_travel_in_a_header_are_configuration_errors(token: str) -> None:
    for cls in (Client, AsyncClient):
        with pytest.raises(ConfigurationError, match="token"):
            cls("127.0.0.1:8888", token=token)


# --- operations ---------------------------------------------------------------------------


def test_health_stats_ops_device(client: Client) -> None:
    info = client.check_compatible()
    assert info["status"] == "ok" and info["protocol_version"] == PROTOCOL_VERSION
    assert client.stats()["requests"]["total"] >= 1
    assert "relu" in client.ops() and len(client.ops()) == info["ops"]
    assert client.device()["benchmark"]["median_ms"] > 0


def test_execute(client: Client) -> None:
    y = torch.tensor([1.0, 10.0, 100.0])
    assert torch.equal(client.execute("relu", X), torch.relu(X))
    assert torch.equal(client.execute("add", X, other=y, alpha=3), torch.add(X, y, alpha=3))
    assert torch.equal(client.execute("mul", X, other=2.5), X * 2.5)
    assert torch.equal(client.execute("sum", X, dim=(0, 1)), X.sum())
    assert client.execute("to", X, dtype=torch.bfloat16).dtype == torch.bfloat16
    assert torch.equal(client.execute("getitem", X, index=(Ellipsis, slice(1, None))), X[..., 1:])
    assert torch.equal(client.execute("reshape", X, shape=torch.Size([3, 2])), X.reshape(3, 2))
    assert torch.equal(client.execute("randn", size=[3], seed=5),
                       torch.randn(3, generator=torch.Generator().manual_seed(5)))
    assert torch.equal(client.execute("where", X > 0, input=X, other=0.0),
                       torch.where(X > 0, X, 0.0))


def test_execute_with_tensor_lists(client: Client) -> None:
    assert torch.equal(client.execute("cat", tensors=[X, X * 2], dim=1), torch.cat([X, X * 2], 1))
    assert torch.equal(client.execute("stack", tensors=(X, -X)), torch.stack([X, -X]))
    assert torch.allclose(client.execute("einsum", equation="ij,kj->ik", operands=[X, X]), X @ X.t())
    idx = torch.tensor([2, 0])
    assert torch.equal(client.execute("getitem", X, index=(slice(None), idx)), X[:, idx])


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


def test_handles(client: Client) -> None:
    w = torch.randn(3, 4)
    handle = client.put(w)
    assert isinstance(handle, RemoteTensor)
    assert handle.shape == (3, 4) and handle.dtype == torch.float32 and handle.nbytes == 48
    assert torch.equal(client.get(handle), w)
    assert torch.equal(client.get(handle.id), w)  # a bare id works too
    graph = {"nodes": [{"id": "y", "op": "matmul", "args": [{"input": "x"}, {"handle": handle.id}]}]}
    result = client.run_graph(graph, {"x": X})
    assert torch.allclose(result.outputs["y"], X @ w) and result.handles == {}
    assert client.delete(handle)["deleted"] is True
    with pytest.raises(NotFoundError) as info:
        client.get(handle)
    assert info.value.status == 404
    with pytest.raises(NotFoundError):
        client.delete(handle.id)


#: Handle ids a caller might pass that are not the server's hex tokens: each must reach
#: the server as that id, not as another route, a query string or an injected header.
ODD_IDS = ["x?y=1", "a b", "%41", "a\r\nx-evil: 1", "..", ".", "...", "\u00e9"]


def test_odd_handle_ids_reach_the_server_verbatim(client: Client) -> None:
    for odd in ODD_IDS:
        for call in (client.get, client.delete):
            with pytest.raises(NotFoundError) as info:
                call(odd)
            assert f"unknown tensor handle {odd!r}" in info.value.message
    for slashed in ["../health", "a/b"]:  # decoded, these match no route at all
        with pytest.raises(NotFoundError, match="no route"):
            client.get(slashed)


def test_async_client_quotes_handle_ids(server: BackgroundServer) -> None:
    async def main() -> None:
        async with AsyncClient(server.url, retries=0) as c:
            for odd in ODD_IDS:
                with pytest.raises(NotFoundError) as info:
                    await c.delete(odd)
                assert f"unknown tensor handle {odd!r}" in info.value.message

    asyncio.run(main())


def test_run_graph_keep(client: Client) -> None:
    graph = {"nodes": [{"id": "a", "op": "exp", "args": [{"input": "x"}]},
                       {"id": "b", "op": "sum", "args": [{"node": "a"}]}],
             "outputs": ["a", "b"], "keep": ["a"]}
    result = client.run_graph(graph, {"x": X})
    assert set(result.outputs) == {"b"} and set(result.handles) == {"a"}
    assert torch.allclose(result.outputs["b"], X.exp().sum())
    kept = result.handles["a"]
    assert kept.shape == (2, 3) and kept.dtype == torch.float32
    assert torch.allclose(client.get(kept), X.exp())
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


# --- the error tree ------------------------------------------------------------------------


def test_remote_errors_map_to_their_classes(client: Client) -> None:
    cases: list[tuple[Callable[[], Any], type[RemoteError], int]] = [
        (lambda: client.execute("no_such_op", X), UnsupportedOpError, 422),
        (lambda: client.execute("matmul", X, other=X), InvalidArgumentError, 422),
        (lambda: client.execute("relu", X, inplace=True), InvalidArgumentError, 422),
        (lambda: client.execute("to", X, dtype="complex128"), UnsupportedDTypeError, 422),
        (lambda: client.get("0" * 32), NotFoundError, 404),
        (lambda: client.run_graph({"nodes": "nope"}), MalformedRequestError, 400),
    ]
    for call, cls, status in cases:
        with pytest.raises(cls) as info:
            call()
        assert type(info.value) is cls
        assert info.value.status == status
        assert isinstance(info.value, GenieError)
    with pytest.raises(InvalidArgumentError, match=r"\[2, 3\]"):
        client.execute("matmul", X, other=X)
    assert client.health()["status"] == "ok"


def test_auth(make_server: Callable[..., BackgroundServer], transport: str) -> None:
    srv = make_server(token="t0ken")
    with Client(srv.url, token="t0ken") as c:
        assert torch.equal(c.execute("relu", X), torch.relu(X))
    for token in (None, "wrong"):
        with Client(srv.url, token=token, retries=3) as c:
            with pytest.raises(AuthError) as info:
                c.health()
            assert info.value.status == 401
            assert c.requests == 1  # never retried
    with Client(srv.url, token="t0ken") as c:
        assert c.stats()["errors_by_type"] == {"unauthorized": 2}


def test_limits(make_server: Callable[..., BackgroundServer], transport: str) -> None:
    srv = make_server(max_body_mb=0.01, max_held_mb=0.001)
    with Client(srv.url) as c:
        with pytest.raises(PayloadTooLargeError) as info:
            c.echo(torch.zeros(10_000))
        assert type(info.value) is PayloadTooLargeError and info.value.status == 413
        kept = c.put(torch.zeros(200))
        with pytest.raises(BudgetExceededError):
            c.put(torch.zeros(100))
        assert torch.equal(c.get(kept), torch.zeros(200))


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
    made: list[_JunkServer] = []

    def make(reply: bytes) -> _JunkServer:
        made.append(_JunkServer(reply))
        return made[-1]

    yield make
    for s in made:
        s.close()


def test_no_raw_httpx_exception_escapes(junk_server: Callable[[bytes], _JunkServer], transport: str) -> None:
    garbage = junk_server(b"this is not HTTP at all\r\n\r\n")
    with Client(f"127.0.0.1:{garbage.port}", retries=2) as c:
        with pytest.raises(TransportError) as info:
            c.execute("relu", X)
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


def test_async_client_lets_no_raw_httpx_exception_escape(
        junk_server: Callable[[bytes], _JunkServer], server: BackgroundServer) -> None:
    garbage = junk_server(b"this is not HTTP at all\r\n\r\n")
    proxy = junk_server(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 2\r\n"
                        b"Connection: close\r\n\r\nno")

    async def main() -> None:
        async with AsyncClient(f"127.0.0.1:{garbage.port}", retries=2) as c:
            with pytest.raises(TransportError) as info:
                await c.execute("relu", X)
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


def test_replies_a_proxy_might_send_are_read(junk_server: Callable[[bytes], _JunkServer],
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
        junk_server: Callable[[bytes], _JunkServer], transport: str) -> None:
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


def test_connection_refused_is_retried_then_transport_error(transport: str) -> None:
    port = free_port()
    with Client(f"127.0.0.1:{port}", retries=2, timeout=2) as c, \
            pytest.raises(TransportError) as info:
        c.health()
    assert info.value.retryable
    assert info.value.kind == "connect"
    assert c.requests == 0  # no reply ever came


def test_retry_policy() -> None:
    with Client("127.0.0.1:1", retries=3) as c:
        assert c.retry_delay(ServerBusyError("busy"), 0) is not None
        assert c.retry_delay(TransportError("refused", kind="connect", retryable=True), 2)
        assert c.retry_delay(TransportError("refused", kind="connect", retryable=True), 3) is None
        assert c.retry_delay(TransportError("read timeout", kind="read_timeout"), 0) is None
        for err in (InvalidArgumentError("x"), NotFoundError("x"), AuthError("x"),
                    ServerError("x"), PayloadTooLargeError("x")):
            assert c.retry_delay(err, 0) is None
        delays = [c.retry_delay(ServerBusyError("busy"), a) for a in range(3)]
        assert delays == sorted(delays) and delays[0] > 0  # type: ignore[type-var,operator]


def test_busy_server_is_retried_until_it_answers(make_server: Callable[..., BackgroundServer]) -> None:
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
                    probe.execute("relu", X)
                except ServerBusyError:
                    busy = True
            if busy:
                assert torch.equal(c.execute("relu", X), torch.relu(X))
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


# --- the async twin ------------------------------------------------------------------------


def test_async_client_does_the_same(server: BackgroundServer,
                                    make_server: Callable[..., BackgroundServer]) -> None:
    locked = make_server(token="a")

    async def main() -> None:
        async with AsyncClient(f"127.0.0.1:{server.port}", retries=0) as c:
            assert (await c.check_compatible())["status"] == "ok"
            assert (await c.stats())["requests"]["total"] >= 1
            assert "matmul" in await c.ops()
            assert (await c.device())["benchmark"]["median_ms"] > 0
            assert torch.equal(await c.execute("relu", X), torch.relu(X))
            assert torch.equal(await c.execute("cat", tensors=[X, X]), torch.cat([X, X]))
            assert torch.equal(await c.echo(X.t()), X.t())
            big = torch.randn(1024, 1024)  # 4 MiB: the large-body paths
            assert torch.equal(await c.echo(big), big)
            assert torch.equal(await c.execute("neg", big), -big)
            h = await c.put(X)
            assert torch.equal(await c.get(h), X)
            graph = {"nodes": [{"id": "a", "op": "add", "args": [{"handle": h.id}, {"input": "y"}]}],
                     "keep": True}
            result = await c.run_graph(graph, {"y": X})
            assert result.outputs == {} and torch.equal(await c.get(result.handles["a"]), X * 2)
            await c.delete(h)
            await c.delete(result.handles["a"])
            with pytest.raises(NotFoundError):
                await c.get(h)
            with pytest.raises(UnsupportedOpError):
                await c.execute("nope", X)
            # Concurrent requests on one client.
            outs = await asyncio.gather(*(c.execute("mul", X, other=float(i)) for i in range(8)))
            for i, out in enumerate(outs):
                assert torch.equal(out, X * float(i))
        async with AsyncClient(locked.url) as c:
            with pytest.raises(AuthError):
                await c.health()
        async with AsyncClient(f"127.0.0.1:{free_port()}", retries=1) as c:
            with pytest.raises(TransportError) as info:
                await c.health()
            assert info.value.retryable

    asyncio.run(main())
