"""Server-resident tensors (genie.server.store): handles are put, listed, fetched and
deleted; a handle that is a view holds only its own bytes; an upload past the held
budget is refused (413 ``budget_exceeded``) and nothing is evicted to make room, but
the handles of sessions idle past the lease are freed first; the sessions the store
tracks stay bounded.  (Sessions over HTTP: test_sessions.py.)"""

from __future__ import annotations

import json
import time
from collections.abc import Callable

import httpx
import torch

from genie.graph import HANDLES_METADATA_KEY
from genie.server.runner import BackgroundServer
from genie.server.store import MAX_TRACKED_SESSIONS, TensorStore
from genie.wire import decode

#: What each held tensor counts beyond its data (docs/protocol.md, section 9).
HANDLE_OVERHEAD_BYTES = 1024


def test_tensors_put_get_list_delete(http: httpx.Client, st_body: Callable[..., bytes],
                                     tensors_of: Callable[..., dict[str, torch.Tensor]],
                                     assert_error: Callable[..., str]) -> None:
    t = torch.arange(12, dtype=torch.int16).reshape(3, 4)
    resp = http.post("/tensors", content=st_body({"weights": t}))
    assert resp.status_code == 201
    info = resp.json()
    assert set(info) == {"id", "shape", "dtype", "nbytes"}
    assert info["shape"] == [3, 4] and info["dtype"] == "int16" and info["nbytes"] == 24
    handle = info["id"]
    listing = http.get("/tensors").json()
    assert info in listing["tensors"]
    assert listing["count"] >= 1 and listing["bytes"] >= 24
    held = http.get("/stats").json()["held"]
    assert held["tensors"] == listing["count"] and held["bytes"] == listing["bytes"]
    fetched = tensors_of(http.get(f"/tensors/{handle}"))
    assert list(fetched) == [handle] and torch.equal(fetched[handle], t)
    deleted = http.delete(f"/tensors/{handle}").json()
    assert deleted == {**info, "deleted": True}
    assert_error(http.get(f"/tensors/{handle}"), 404, "not_found")
    assert_error(http.delete(f"/tensors/{handle}"), 404, "not_found")
    assert info not in http.get("/tensors").json()["tensors"]


def test_graph_kept_view_of_an_input_does_not_pin_more_than_it_counts(
        http: httpx.Client, graph_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    graph = {"nodes": [{"id": "a", "op": "getitem", "args": [{"input": "x"}, 0]}], "keep": True}
    resp = http.post("/graph", content=graph_body(graph, {"x": torch.ones(100, 4)}))
    (info,) = json.loads(decode(resp.content).metadata[HANDLES_METADATA_KEY]).values()
    assert info["nbytes"] == 16
    assert torch.equal(tensors_of(http.get(f"/tensors/{info['id']}"))[info["id"]], torch.ones(4))
    http.delete(f"/tensors/{info['id']}")


def test_held_budget_refuses_without_evicting(
        make_server: Callable[..., BackgroundServer], st_body: Callable[..., bytes],
        graph_body: Callable[..., bytes], tensors_of: Callable[..., dict[str, torch.Tensor]],
        assert_error: Callable[..., str], errors_by_type: Callable[..., dict[str, int]],
        wait_for_errors: Callable[..., dict[str, int]], delta: Callable[..., dict[str, int]],
        assert_serving: Callable[..., None]) -> None:
    # 4,194 bytes: two tensors of 400 and 200 bytes, each also counting 1,024 bytes of
    # bookkeeping, fit; a third of 800 does not.
    srv = make_server(max_held_mb=0.004)
    with httpx.Client(base_url=srv.url) as http:
        first = http.post("/tensors", content=st_body({"a": torch.arange(100, dtype=torch.float32)}))
        second = http.post("/tensors", content=st_body({"b": torch.ones(100, dtype=torch.int16)}))
        assert first.status_code == second.status_code == 201
        before = errors_by_type(http)
        message = assert_error(http.post("/tensors", content=st_body({"c": torch.ones(200)})),
                               413, "budget_exceeded")
        assert str(HANDLE_OVERHEAD_BYTES) in message
        assert "--max-held-mb" in message and "DELETE" in message
        graph = {"nodes": [{"id": "a", "op": "ones", "args": [200]}], "keep": True}
        assert_error(http.post("/graph", content=graph_body(graph)), 413, "budget_exceeded")
        assert delta(before, wait_for_errors(http, before, 2)) == {"budget_exceeded": 2}
        # Nothing was evicted: both earlier handles still read back.
        a = tensors_of(http.get(f"/tensors/{first.json()['id']}"))
        assert torch.equal(next(iter(a.values())), torch.arange(100, dtype=torch.float32))
        b = tensors_of(http.get(f"/tensors/{second.json()['id']}"))
        assert torch.equal(next(iter(b.values())), torch.ones(100, dtype=torch.int16))
        assert http.get("/stats").json()["held"] == {"tensors": 2, "bytes": 600}
        # Freeing makes room.
        http.delete(f"/tensors/{first.json()['id']}")
        assert http.post("/tensors", content=st_body({"c": torch.ones(200)})).status_code == 201
        assert_serving(http)


def test_empty_tensors_are_not_free(make_server: Callable[..., BackgroundServer],
                                    st_body: Callable[..., bytes],
                                    assert_error: Callable[..., str]) -> None:
    # The attack: 50,000 empty tensors held 30 MB while the budget counted 0 bytes.  Each
    # handle now counts its bookkeeping, so a 100 KiB budget holds about 100 of them.
    srv = make_server(max_held_mb=0.1)
    empty = st_body({"e": torch.empty(0, 3)})
    with httpx.Client(base_url=srv.url) as http:
        held = 0
        for _ in range(200):
            resp = http.post("/tensors", content=empty)
            if resp.status_code != 201:
                assert_error(resp, 413, "budget_exceeded")
                break
            held += 1
    assert held == int(0.1 * 1024 * 1024) // HANDLE_OVERHEAD_BYTES


def test_the_listing_comes_in_pages(make_server: Callable[..., BackgroundServer],
                                    assert_error: Callable[..., str]) -> None:
    # A listing of every handle at once grew without bound (4 MB for 50,000 handles):
    # pages of at most 1,000, each naming where the next starts, and the totals.
    srv = make_server()
    store = srv.app.state.genie.store
    ids = [store.put_many({"t": torch.empty(0)})["t"]["id"] for _ in range(2345)]
    with httpx.Client(base_url=srv.url) as http:
        seen: list[str] = []
        after: str | None = None
        while True:
            page = http.get("/tensors", params={"after": after} if after else {}).json()
            assert page["count"] == 2345 and len(page["tensors"]) <= 1000
            seen += [t["id"] for t in page["tensors"]]
            after = page["next"]
            if after is None:
                break
        assert seen == ids
        small = http.get("/tensors", params={"limit": 10, "after": ids[99]}).json()
        assert [t["id"] for t in small["tensors"]] == ids[100:110] and small["next"] == ids[109]
        for bad in ("0", "1001", "-1", "ten", "²"):
            assert_error(http.get("/tensors", params={"limit": bad}), 400, "malformed_request")
        assert_error(http.get("/tensors", params={"after": "nope"}), 404, "not_found")


def test_an_upload_past_the_budget_first_frees_sessions_idle_past_the_lease() -> None:
    # The store alone, without the app's sweeper: only the budget check can free them.
    store = TensorStore(100_000, lease_s=0.05)
    with store.active("gone"):
        store.put_many({"a": torch.ones(20_000)}, owner="gone")  # 80,000 of 100,000 bytes
    with store.active("live"):
        (b,) = store.put_many({"b": torch.ones(100)}, owner="live").values()
    time.sleep(0.1)  # both idle past the lease now; "live" speaks again, so it is live
    with store.active("live"):
        (c,) = store.put_many({"c": torch.ones(20_000)}, owner="live").values()
    assert store.usage() == (2, 80_400)
    assert torch.equal(store.get(b["id"]), torch.ones(100))
    assert torch.equal(store.get(c["id"]), torch.ones(20_000))
    assert store.sessions_report()["freed"]["lease"] == {"sessions": 1, "handles": 1,
                                                         "bytes": 80_000}


def test_sessions_that_hold_nothing_are_forgotten_past_the_bound() -> None:
    store = TensorStore(10_000)  # a handle also counts 1 KiB of bookkeeping
    with store.active("holder"):
        store.put_many({"a": torch.ones(1)}, owner="holder")
    for i in range(MAX_TRACKED_SESSIONS + 50):
        with store.active(f"s{i}"):
            pass
    report = store.sessions_report()
    assert report["count"] == MAX_TRACKED_SESSIONS
    assert store.session("holder") is not None  # the oldest, but it holds a handle
    assert store.session("s0") is None and store.session(f"s{MAX_TRACKED_SESSIONS + 49}")
