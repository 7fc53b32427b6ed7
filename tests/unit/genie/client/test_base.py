"""What both clients share (genie.client.base, with the calls it plans and the timeout
policy it applies): the token's form, handle ids that
reach the server verbatim, the error tree an error reply maps to (status and class,
401 never retried, 413s told apart), the retry policy (only connection failures and
503 are retried, with growing delays), the timeout policy (a budget that grows with
the bytes, and a timeout error that says how it was computed and how to raise it), the
network probe, and the session: every request names the client's own, one request
releases many handles, and deferred releases travel with the next graph, freed only if
it succeeds."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch

import genie
from genie.client import AsyncClient, Client, Timeout
from genie.client.calls import Plan
from genie.client.timeout import DEFAULT_MIN_RATE_MIB_S, DEFAULT_TIMEOUT
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
from genie.server.runner import BackgroundServer


@pytest.mark.parametrize("token", ["tök€n", "a\r\nX-Evil: 1", "two words", "tab\there"])
def test_tokens_that_cannot_travel_in_a_header_are_configuration_errors(token: str) -> None:
    for cls in (Client, AsyncClient):
        with pytest.raises(ConfigurationError, match="token"):
            cls("127.0.0.1:8888", token=token)


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


def test_remote_errors_map_to_their_classes(client: Client, x: torch.Tensor) -> None:
    cases: list[tuple[Callable[[], Any], type[RemoteError], int]] = [
        (lambda: client.execute("no_such_op", x), UnsupportedOpError, 422),
        (lambda: client.execute("matmul", x, other=x), InvalidArgumentError, 422),
        (lambda: client.execute("relu", x, inplace=True), InvalidArgumentError, 422),
        (lambda: client.execute("to", x, dtype="complex128"), UnsupportedDTypeError, 422),
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
        client.execute("matmul", x, other=x)
    assert client.health()["status"] == "healthy"


def test_auth(make_server: Callable[..., BackgroundServer], transport: str, x: torch.Tensor) -> None:
    srv = make_server(token="t0ken")
    with Client(srv.url, token="t0ken") as c:
        assert torch.equal(c.execute("relu", x), torch.relu(x))
    for token in (None, "wrong"):
        with Client(srv.url, token=token, retries=3) as c:
            with pytest.raises(AuthError) as info:
                c.health()
            assert info.value.status == 401
            assert c.requests == 1  # never retried
    with Client(srv.url, token="t0ken") as c:
        assert c.stats()["errors_by_type"] == {"unauthorized": 2}


def test_limits(make_server: Callable[..., BackgroundServer], transport: str) -> None:
    # 3,145 bytes held: 800 bytes (and 1 KiB of bookkeeping per tensor) fit, 400 more not.
    srv = make_server(max_body_mb=0.01, max_held_mb=0.003)
    with Client(srv.url) as c:
        with pytest.raises(PayloadTooLargeError) as info:
            c.echo(torch.zeros(10_000))
        assert type(info.value) is PayloadTooLargeError and info.value.status == 413
        kept = c.put(torch.zeros(200))
        with pytest.raises(BudgetExceededError):
            c.put(torch.zeros(100))
        assert torch.equal(c.get(kept), torch.zeros(200))


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


def test_the_timeout_budget_grows_with_the_bytes_at_the_assumed_rate() -> None:
    policy = Timeout(base_s=2, min_rate_mib_s=0.5)
    assert policy.budget_s(0) == 2 and policy.budget_s(3 * 2**20) == 8
    assert policy.explain(3 * 2**20) == "8 s budget = 2 s base + 3.0 MiB at an assumed 0.5 MiB/s"
    # The default serves a link of about 8 Mbit/s: 256 MiB get 30 s + 256 s, not 30 s + 25.6 s.
    assert (DEFAULT_TIMEOUT, DEFAULT_MIN_RATE_MIB_S) == (30.0, 1.0)
    for cls in (Client, AsyncClient):
        plain = cls("127.0.0.1:1", timeout=60)
        assert plain.timeouts == Timeout(base_s=60) and plain.timeout_s(256 * 2**20) == 60 + 256
        assert cls("127.0.0.1:1", timeout=policy).timeout_s(2**20) == 4
    for bad in (0, -1, float("inf"), float("nan"), True, "30"):
        with pytest.raises(ConfigurationError, match="finite number > 0"):
            Timeout(base_s=bad)  # type: ignore[arg-type]
        with pytest.raises(ConfigurationError, match="min_rate_mib_s"):
            Timeout(min_rate_mib_s=bad)  # type: ignore[arg-type]


@pytest.fixture
def deaf_server() -> Iterator[str]:
    """A port that accepts connections (the kernel's backlog) and never reads a byte."""
    sock = socket.create_server(("127.0.0.1", 0))
    yield f"127.0.0.1:{sock.getsockname()[1]}"
    sock.close()


def _says_how_to_raise_it(exc: TransportError, budget: str) -> None:
    assert budget in exc.message, exc.message
    assert "Client(timeout=genie.Timeout(" in exc.message and "--genie-timeout" in exc.message


def test_a_write_timeout_names_its_budget_and_how_to_raise_it(deaf_server: str, transport: str) -> None:
    with Client(deaf_server, timeout=Timeout(base_s=0.2, min_rate_mib_s=10_000), retries=0) as c, \
            pytest.raises(TransportError) as info:
        c.probe_upload(64 * 2**20)  # more than the socket buffers hold
    assert info.value.kind == "write_timeout" and not info.value.retryable
    _says_how_to_raise_it(info.value, "0.206 s budget = 0.2 s base + 64.0 MiB at an assumed 10000 MiB/s")


def test_a_read_timeout_names_its_budget_too(server: BackgroundServer, transport: str) -> None:
    with Client(server.url, timeout=0.001, retries=0) as c, pytest.raises(TransportError) as info:
        c.device()  # a 1000x1000 matmul benchmark cannot answer within 1 ms
    assert info.value.kind == "read_timeout"
    _says_how_to_raise_it(info.value, "0.001 s budget = 0.001 s base + 0.0 MiB at an assumed 1 MiB/s")


def test_the_async_client_names_the_budget_alike(deaf_server: str) -> None:
    async def main() -> None:
        async with AsyncClient(deaf_server, timeout=Timeout(base_s=0.2, min_rate_mib_s=10_000),
                               retries=0) as c:
            with pytest.raises(TransportError) as info:
                await c.probe_upload(64 * 2**20)
        assert info.value.kind == "write_timeout"
        _says_how_to_raise_it(info.value, "0.206 s budget")

    asyncio.run(main())


@pytest.mark.parametrize("nbytes", [0, 5, 2**20, 3 * 2**20 + 1])
def test_the_probe_moves_exactly_the_bytes_asked(client: Client, server: BackgroundServer,
                                                 nbytes: int) -> None:
    assert client.probe_upload(nbytes) == {"bytes": nbytes}
    assert client.last.bytes_sent == nbytes
    assert client.probe_download(nbytes) == nbytes
    assert client.last.bytes_received == nbytes

    async def main() -> None:
        async with AsyncClient(server.url, retries=0) as c:
            assert await c.probe_upload(nbytes) == {"bytes": nbytes}
            assert await c.probe_download(nbytes) == nbytes

    asyncio.run(main())


def test_the_timeout_is_public_api() -> None:
    assert genie.Timeout is Timeout and "Timeout" in genie.__all__


def test_every_request_names_the_clients_own_session(client: Client,
                                                     server: BackgroundServer) -> None:
    assert len(client.session or "") == 32 and set(client.session or "") <= set("0123456789abcdef")
    assert Client(server.url).session != Client(server.url).session
    client.health()
    client.ops()
    with Client(server.url, session=None) as probe:  # no session: not counted as client's
        assert probe.session_info(client.session)["requests"] == 2


def test_release_frees_many_handles_in_one_request(client: Client) -> None:
    handles = [client.put(torch.full((4,), float(i))) for i in range(10)]
    client.defer_release(handles[0])
    before = client.requests
    out = client.release(*handles[1:])
    assert client.requests - before == 1
    assert out == {"released": [h.id for h in handles[1:]] + [handles[0].id], "missing": [],
                   "count": 10, "bytes": 160}
    assert client.pending_releases == ()
    assert client.release()["count"] == 0 and client.requests - before == 1  # nothing: no request
    assert client.release(handles[0])["missing"] == [handles[0].id]  # idempotent
    with pytest.raises(NotFoundError):
        client.get(handles[3])


def test_deferred_releases_travel_with_the_next_graph_that_succeeds(client: Client) -> None:
    a, b, c = (client.put(torch.full((3,), float(i))) for i in range(3))
    client.defer_release(a, b.id)
    assert client.pending_releases == (a.id, b.id)
    assert torch.equal(client.get(a), torch.zeros(3))  # held until the next graph
    before = client.requests
    failing = {"nodes": [{"id": "r", "op": "reshape", "args": [{"handle": a.id}, [7]]}]}
    with pytest.raises(InvalidArgumentError):
        client.run_graph(failing)
    assert client.pending_releases == (a.id, b.id)  # a failed graph frees nothing
    graph = {"nodes": [{"id": "s", "op": "add", "args": [{"handle": a.id}, {"handle": b.id}]}]}
    result = client.run_graph(graph, release=[c])  # reads a and b, then frees all three
    assert client.requests - before == 2
    assert torch.equal(result.outputs["s"], torch.ones(3))
    assert result.released == [c.id, a.id, b.id] and result.missing == []
    assert client.pending_releases == ()
    for handle in (a, b, c):
        with pytest.raises(NotFoundError):
            client.get(handle)


def test_no_session_and_named_sessions(server: BackgroundServer) -> None:
    with Client(server.url, session=None) as anonymous:
        assert "x-genie-session" not in anonymous.headers(Plan("GET", "/health"))
        held = anonymous.put(torch.ones(2))
    with Client(server.url, session=None) as probe:  # closing freed nothing: no session
        assert torch.equal(probe.get(held), torch.ones(2))
        probe.delete(held)
    # Clients given the same id share one session: closing either ends it.
    with Client(server.url, session="run-7") as one, Client(server.url, session="run-7") as two:
        one.put(torch.ones(2))
        two.put(torch.ones(2))
        assert one.session_info()["handles"] == 2
    for bad in ("", "a b", "x" * 129, "../x", "é"):
        for cls in (Client, AsyncClient):
            with pytest.raises(ConfigurationError, match="session"):
                cls(server.url, session=bad)
