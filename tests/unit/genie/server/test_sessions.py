"""Client sessions on a real server (genie.server.sessions and the store's sessions): every
handle belongs to the session that made it (``X-Genie-Session``), ``/stats`` and
``/metrics`` show sessions, one request releases many handles (``POST /tensors/release``,
a graph's ``"release"``, ``DELETE /sessions/{id}``), and the lease frees the handles of
sessions that went idle -- clients that exited without closing, and real client
processes killed with SIGKILL -- while live and anonymous handles stay."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import torch

import genie
from genie.graph import HANDLES_METADATA_KEY, MAX_RELEASE, RELEASED_METADATA_KEY
from genie.server.runner import BackgroundServer
from genie.wire import decode


def _as(session: str) -> dict[str, str]:
    return {"x-genie-session": session}


def _put(http: httpx.Client, st_body: Callable[..., bytes], tensor: torch.Tensor,
         session: str | None) -> str:
    resp = http.post("/tensors", content=st_body({"t": tensor}),
                     headers=_as(session) if session else None)
    assert resp.status_code == 201, resp.text
    return str(resp.json()["id"])


def _sessions(http: httpx.Client) -> dict[str, Any]:
    report: dict[str, Any] = http.get("/stats").json()["sessions"]
    return report


def _top(http: httpx.Client) -> dict[str, dict[str, Any]]:
    return {e["id"]: e for e in _sessions(http)["top"]}


@pytest.fixture
def own_http(make_server: Callable[..., BackgroundServer]) -> Callable[..., httpx.Client]:
    """``own_http(**config)``: raw HTTP to a server of the test's own, closed after it."""
    opened: list[httpx.Client] = []

    def start(**config: Any) -> httpx.Client:
        opened.append(httpx.Client(base_url=make_server(**config).url, timeout=30))
        return opened[-1]

    yield start  # type: ignore[misc]
    for http in opened:
        http.close()


def test_handles_belong_to_their_session_and_stats_show_sessions(
        own_http: Callable[..., httpx.Client], st_body: Callable[..., bytes],
        assert_error: Callable[..., str]) -> None:
    http = own_http()
    a = [_put(http, st_body, torch.ones(25), "alice") for _ in range(3)]  # 3 x 100 bytes
    b = _put(http, st_body, torch.ones(10, dtype=torch.float64), "bob")
    anon = _put(http, st_body, torch.ones(4), None)
    report = _sessions(http)
    assert report["count"] == 2 and report["holding"] == 2
    assert report["anonymous"] == {"handles": 1, "bytes": 16}
    top = _top(http)
    assert [e["id"] for e in report["top"]] == ["alice", "bob"]  # largest holder first
    assert (top["alice"]["handles"], top["alice"]["bytes"], top["alice"]["requests"]) == (3, 300, 3)
    assert (top["bob"]["handles"], top["bob"]["bytes"]) == (1, 80)
    assert top["alice"]["idle_s"] >= 0 and top["alice"]["inflight"] == 0
    bob = http.get("/sessions/bob").json()  # a request of no session: bob's count stays
    assert {k: v for k, v in bob.items() if k != "idle_s"} == {
        k: v for k, v in top["bob"].items() if k != "idle_s"}
    # DELETE /sessions/{id}: one request frees all of alice's handles, nothing else.
    assert http.delete("/sessions/alice").json() == {"session": "alice", "released": 3,
                                                     "bytes": 300}
    for handle in a:
        assert "its session was closed" in assert_error(http.get(f"/tensors/{handle}"), 404,
                                                        "not_found")
    assert http.get(f"/tensors/{b}").status_code == 200
    assert http.get(f"/tensors/{anon}").status_code == 200
    assert_error(http.get("/sessions/alice"), 404, "not_found")
    report = _sessions(http)
    assert report["count"] == 1 and report["freed"]["closed"] == {"sessions": 1, "handles": 3,
                                                                  "bytes": 300}
    assert http.get("/stats").json()["held"] == {"tensors": 2, "bytes": 96}
    # Closing a session that holds nothing (or was never seen) is not an error.
    assert http.delete("/sessions/nobody").json() == {"session": "nobody", "released": 0,
                                                      "bytes": 0}


def test_metrics_show_sessions(own_http: Callable[..., httpx.Client],
                               st_body: Callable[..., bytes]) -> None:
    http = own_http()
    _put(http, st_body, torch.ones(25), "alice")
    _put(http, st_body, torch.ones(2), None)
    text = http.get("/metrics").text
    for line in ("genie_sessions 1.0", "genie_sessions_holding 1.0",
                 "genie_anonymous_held_tensors 1.0", "genie_anonymous_held_bytes 8.0",
                 'genie_session_held_tensors{session="alice"} 1.0',
                 'genie_session_held_bytes{session="alice"} 100.0',
                 'genie_freed_handles_total{reason="lease"} 0.0'):
        assert line in text.splitlines(), line
    assert 'genie_session_idle_seconds{session="alice"}' in text


def test_session_ids_are_checked(http: httpx.Client, st_body: Callable[..., bytes],
                                 assert_error: Callable[..., str]) -> None:
    before = http.get("/tensors").json()["count"]
    for bad in (b"", b"a b", b"x" * 129, "é".encode(), b"a/b", b".."):
        resp = http.post("/tensors", content=st_body({"t": torch.ones(2)}),
                         headers={"x-genie-session": bad})
        assert "X-Genie-Session" in assert_error(resp, 400, "malformed_request"), bad
    assert http.get("/tensors").json()["count"] == before  # refused before anything was held
    assert_error(http.delete("/sessions/a.b"), 400, "malformed_request")
    assert_error(http.get("/sessions/" + "x" * 129), 400, "malformed_request")


def test_batch_release(http: httpx.Client, st_body: Callable[..., bytes],
                       assert_error: Callable[..., str]) -> None:
    ids = [_put(http, st_body, torch.full((4,), float(i)), "batch") for i in range(50)]
    keep = _put(http, st_body, torch.ones(4), "batch")
    resp = http.post("/tensors/release", json={"ids": [*ids, "never-made"]})
    assert resp.status_code == 200
    assert resp.json() == {"released": ids, "missing": ["never-made"], "count": 50,
                           "bytes": 50 * 16}
    assert http.get("/sessions/batch").json()["handles"] == 1
    assert http.get(f"/tensors/{keep}").status_code == 200
    # Idempotent: a retried release finds them gone, and says so without failing.
    assert http.post("/tensors/release", json={"ids": ids[:2]}).json() == {
        "released": [], "missing": ids[:2], "count": 0, "bytes": 0}
    # DELETE /tensors/{id} keeps its 404 for an unknown id.
    assert_error(http.delete(f"/tensors/{ids[0]}"), 404, "not_found")
    for body in (b"not json", b"[]", b'{"ids": "abc"}', b'{"ids": [1, 2]}',
                 b'{"ids": [], "more": 1}', json.dumps({"ids": ["x"] * (MAX_RELEASE + 1)}).encode()):
        assert_error(http.post("/tensors/release", content=body), 400, "malformed_request")
    assert http.get(f"/tensors/{keep}").status_code == 200  # bad requests freed nothing
    http.delete(f"/tensors/{keep}")


def _graph(http: httpx.Client, graph_body: Callable[..., bytes], graph: dict[str, Any],
           session: str, inputs: dict[str, torch.Tensor] | None = None) -> httpx.Response:
    return http.post("/graph", content=graph_body(graph, inputs), headers=_as(session))


def _meta(resp: httpx.Response, key: str) -> Any:
    assert resp.status_code == 200, resp.text
    return json.loads(decode(resp.content).metadata[key])


def test_graph_release_frees_after_the_graph_ran_and_only_if_it_succeeded(
        own_http: Callable[..., httpx.Client], st_body: Callable[..., bytes],
        graph_body: Callable[..., bytes], tensors_of: Callable[..., dict[str, torch.Tensor]],
        assert_error: Callable[..., str]) -> None:
    http = own_http()
    k, v = torch.arange(6.0).reshape(2, 3), torch.ones(2, 3)
    old = [_put(http, st_body, t, "dec") for t in (k, v)]
    # A decode step: read the old cache, keep the new one, release the old, one request.
    step = {"nodes": [{"id": "k", "op": "cat", "args": [[{"handle": old[0]}, {"input": "x"}]]},
                      {"id": "v", "op": "cat", "args": [[{"handle": old[1]}, {"input": "x"}]]},
                      {"id": "s", "op": "sum", "args": [{"node": "k"}]}],
            "outputs": ["s"], "keep": ["k", "v"], "release": [*old, "gone-already"]}
    x = torch.full((1, 3), 2.0)
    resp = _graph(http, graph_body, step, "dec", {"x": x})
    assert _meta(resp, RELEASED_METADATA_KEY) == {"released": old, "missing": ["gone-already"]}
    new = _meta(resp, HANDLES_METADATA_KEY)
    assert torch.equal(tensors_of(resp)["s"], torch.cat([k, x]).sum())
    for handle in old:
        assert_error(http.get(f"/tensors/{handle}"), 404, "not_found")
    assert torch.equal(tensors_of(http.get(f"/tensors/{new['k']['id']}"))[new["k"]["id"]],
                       torch.cat([k, x]))
    assert http.get("/sessions/dec").json()["handles"] == 2
    # A graph that fails (a shape that does not fit) frees nothing: it can be retried.
    bad = {"nodes": [{"id": "m", "op": "reshape", "args": [{"handle": new["k"]["id"]}, [7]]}],
           "release": [new["k"]["id"], new["v"]["id"]]}
    assert_error(_graph(http, graph_body, bad, "dec"), 422, "invalid_arguments")
    assert http.get("/sessions/dec").json()["handles"] == 2
    # Malformed "release": refused before anything runs.
    for release in ("abc", [1], ["x"] * (MAX_RELEASE + 1)):
        bad = {"nodes": [{"id": "z", "op": "zeros", "args": [1]}], "release": release}
        assert_error(_graph(http, graph_body, bad, "dec"), 400, "malformed_request")


def test_graph_release_counts_as_freed_for_the_held_budget(
        own_http: Callable[..., httpx.Client], st_body: Callable[..., bytes],
        graph_body: Callable[..., bytes], assert_error: Callable[..., str]) -> None:
    http = own_http(max_held_mb=0.1)  # 104,857 bytes
    old = _put(http, st_body, torch.ones(15_000), "dec")  # 60,000 bytes
    grow = {"nodes": [{"id": "c", "op": "cat", "args": [[{"handle": old}, {"input": "x"}]]}],
            "keep": ["c"]}
    x = torch.ones(1000)
    # 60,000 held + 64,000 kept would pass the budget: refused, the old cache untouched...
    assert_error(_graph(http, graph_body, grow, "dec", {"x": x}), 413, "budget_exceeded")
    assert http.get(f"/tensors/{old}").status_code == 200
    # ...but releasing the old cache in the same request makes room for the new one.
    resp = _graph(http, graph_body, {**grow, "release": [old]}, "dec", {"x": x})
    assert _meta(resp, HANDLES_METADATA_KEY)["c"]["nbytes"] == 64_000
    assert http.get("/stats").json()["held"] == {"tensors": 1, "bytes": 64_000}


def test_lease_frees_idle_sessions_only(own_http: Callable[..., httpx.Client],
                                        st_body: Callable[..., bytes],
                                        graph_body: Callable[..., bytes],
                                        assert_error: Callable[..., str],
                                        wait_until: Callable[..., None]) -> None:
    lease = 0.4
    http = own_http(handle_lease_s=lease)
    idle = _put(http, st_body, torch.ones(8), "idle")
    busy = _put(http, st_body, torch.ones(8), "busy")
    shared = _put(http, st_body, torch.ones(8), "shared")  # its owner goes quiet, others use it
    anon = _put(http, st_body, torch.ones(8), None)
    use = {"nodes": [{"id": "s", "op": "sum", "args": [{"handle": shared}]}]}
    deadline = time.monotonic() + 3 * lease
    while time.monotonic() < deadline:  # busy keeps talking; another session reads shared
        assert http.get("/health", headers=_as("busy")).status_code == 200
        assert _graph(http, graph_body, use, "reader").status_code == 200
        time.sleep(0.05)
    message = assert_error(http.get(f"/tensors/{idle}"), 404, "not_found")
    assert "idle for more than the server's 0.4 s handle lease" in message
    assert "--handle-lease-s" in message
    for live in (busy, shared, anon):
        assert http.get(f"/tensors/{live}").status_code == 200
    freed = _sessions(http)["freed"]["lease"]
    assert freed == {"sessions": 1, "handles": 1, "bytes": 32}
    assert _sessions(http)["lease_s"] == lease
    # Once everyone goes quiet, the lease frees all but the anonymous handle.
    wait_until(lambda: http.get("/stats").json()["held"]["tensors"] == 1, "only anon held")
    assert http.get(f"/tensors/{anon}").status_code == 200


def test_lease_off_keeps_idle_sessions(own_http: Callable[..., httpx.Client],
                                       st_body: Callable[..., bytes]) -> None:
    http = own_http(handle_lease_s=0)
    handle = _put(http, st_body, torch.ones(8), "quiet")
    time.sleep(0.5)
    assert http.get(f"/tensors/{handle}").status_code == 200
    assert _sessions(http)["lease_s"] is None


def test_budget_frees_expired_sessions_first_but_never_a_live_one(
        own_http: Callable[..., httpx.Client], st_body: Callable[..., bytes],
        assert_error: Callable[..., str]) -> None:
    # A lease far longer than the test: the sweeper never runs, so only the budget's
    # own check can have freed anything.
    http = own_http(max_held_mb=0.1, handle_lease_s=3600)
    live = _put(http, st_body, torch.ones(20_000), "live")  # 80,000 of 104,857 bytes
    assert_error(http.post("/tensors", content=st_body({"t": torch.ones(10_000)}),
                           headers=_as("other")), 413, "budget_exceeded")
    assert http.get(f"/tensors/{live}").status_code == 200


@pytest.fixture
def killed_clients(tmp_path: Any) -> Iterator[Callable[[str, int, int], list[int]]]:
    """``killed_clients(url, n, handles)``: ``n`` real client processes, each holding
    ``handles`` tensors and a persisted LazyTensor, killed with SIGKILL (so no close,
    no atexit) once all are ready; returns their exit codes."""
    script = tmp_path / "client.py"
    script.write_text(
        "import sys, time, torch, genie\n"
        "url, n = sys.argv[1], int(sys.argv[2])\n"
        "c = genie.Client(url)\n"
        "held = [c.put(torch.full((16,), float(i))) for i in range(n - 1)]\n"
        "lazy = genie.remote(torch.ones(16), client=c).persist()\n"
        "print('ready', flush=True)\n"
        "while True:\n"  # alive and talking until killed, so the lease cannot free it early
        "    c.health(); time.sleep(0.05)\n")
    procs: list[subprocess.Popen[str]] = []

    def run(url: str, n: int, handles: int) -> list[int]:
        procs.extend(subprocess.Popen([sys.executable, str(script), url, str(handles)],
                                      stdout=subprocess.PIPE, text=True, env=os.environ.copy())
                     for _ in range(n))
        for proc in procs:
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        for proc in procs:
            proc.send_signal(signal.SIGKILL)
        return [proc.wait(timeout=30) for proc in procs]

    yield run
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_lease_frees_what_orphaned_clients_held(
        make_server: Callable[..., BackgroundServer], killed_clients: Callable[..., list[int]],
        wait_until: Callable[..., None]) -> None:
    """The long-lived server that ended up holding 2,108 tensors nobody could name, at
    small scale: client processes killed with SIGKILL, and clients that were dropped
    without being closed.  The lease frees all of it, and nothing anonymous."""
    srv = make_server(handle_lease_s=2.0)
    with genie.Client(srv.url, session=None) as anonymous:
        weights = anonymous.put(torch.ones(16))  # a handle of no session: never lapses
        assert killed_clients(srv.url, 3, 30) == [-signal.SIGKILL] * 3
        for _ in range(5):  # opened, used, dropped without close()
            dropped = genie.Client(srv.url)
            for i in range(10):
                dropped.put(torch.full((16,), float(i)))
            del dropped
        stats = anonymous.stats()
        orphans = 3 * 30 + 5 * 10
        assert stats["held"] == {"tensors": orphans + 1, "bytes": (orphans + 1) * 64}
        assert stats["sessions"]["holding"] == 8
        wait_until(lambda: anonymous.stats()["held"]["tensors"] == 1, "the lease to free them")
        stats = anonymous.stats()
        assert stats["sessions"]["freed"]["lease"] == {"sessions": 8, "handles": orphans,
                                                       "bytes": orphans * 64}
        assert stats["sessions"]["holding"] == 0
        assert torch.equal(anonymous.get(weights), torch.ones(16))
