"""Running ops and graphs (genie.server.executor): a graph is a DAG of allowlisted ops
over inputs, handles and constants whose intermediates are freed as it runs; every op,
and a graph's live results together, stay within the allocation cap; compute beyond
the one slot of ``max_inflight`` is refused 503 ``busy`` at once, concurrent requests
each get their own answer, and an op writes over its input only when asked to.  No
graph a client can send makes the server answer a 500.
"""

from __future__ import annotations

import json
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genie.graph import HANDLES_METADATA_KEY
from genie.ops import REGISTRY, MetaCache
from genie.server.executor import INLINE_MAX_MS, Executor, Graph
from genie.server.runner import BackgroundServer
from genie.server.timing import Timing
from genie.wire import decode


def test_graph_runs_a_dag_with_inputs_handles_and_constants(
        http: httpx.Client, x: torch.Tensor, st_body: Callable[..., bytes], graph_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    w = torch.randn(3, 5)
    handle = http.post("/tensors", content=st_body({"w": w})).json()["id"]
    graph = {
        "nodes": [
            {"id": "h", "op": "matmul", "args": [{"input": "x"}, {"handle": handle}]},
            {"id": "r", "op": "relu", "args": [{"node": "h"}]},
            {"id": "s", "op": "add", "args": [{"node": "r"}, 1.5], "kwargs": {"alpha": 2}},
            {"id": "m", "op": "sum", "args": [{"node": "s"}], "kwargs": {"dim": [1]}},
            {"id": "c", "op": "to", "args": [{"node": "m"}, {"dtype": "float64"}]},
        ],
        "outputs": ["s", "c"],
    }
    resp = http.post("/graph", content=graph_body(graph, {"x": x}))
    out = tensors_of(resp)
    s = torch.add(torch.relu(x @ w), 1.5, alpha=2)
    assert set(out) == {"s", "c"}  # intermediates h, r, m never leave the server
    assert torch.allclose(out["s"], s)
    assert out["c"].dtype == torch.float64 and torch.allclose(out["c"], s.sum(1).double())
    assert HANDLES_METADATA_KEY not in decode(resp.content).metadata
    http.delete(f"/tensors/{handle}")


def test_graph_default_output_is_the_last_node(http: httpx.Client, x: torch.Tensor,
                                               graph_body: Callable[..., bytes],
                                               tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    graph = {"nodes": [{"id": "a", "op": "neg", "args": [{"input": "x"}]},
                       {"id": "b", "op": "exp", "args": [{"node": "a"}]}]}
    out = tensors_of(http.post("/graph", content=graph_body(graph, {"x": x})))
    assert list(out) == ["b"] and torch.allclose(out["b"], torch.exp(-x))


class _Tracked(torch.Tensor):
    """Records a weak reference to every tensor an op makes from it, and lets a test
    look at which are still alive while a graph is running."""

    made: ClassVar[list[weakref.ref[torch.Tensor]]] = []
    probe: ClassVar[Callable[[], None] | None] = None

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.cos and cls.probe is not None:
            cls.probe()
        out = super().__torch_function__(func, types, args, kwargs or {})
        if isinstance(out, torch.Tensor):
            cls.made.append(weakref.ref(out))
        return out


def test_graph_frees_intermediates_while_it_runs() -> None:
    # "a" is computed but neither read later nor returned; "b" is read by "n" only.
    # By the time "c" runs, neither may still be alive: peak memory follows the live
    # set, not the whole graph.
    graph = Graph.from_json(json.dumps({
        "nodes": [{"id": "a", "op": "exp", "args": [{"input": "x"}]},
                  {"id": "b", "op": "relu", "args": [{"input": "x"}]},
                  {"id": "n", "op": "neg", "args": [{"node": "b"}]},
                  {"id": "c", "op": "cos", "args": [{"node": "n"}]}],
        "outputs": ["c"]}))
    alive_at_cos: list[list[bool]] = []
    _Tracked.made = []
    _Tracked.probe = lambda: alive_at_cos.append([r() is not None for r in _Tracked.made])
    try:
        x = torch.randn(4).as_subclass(_Tracked)
        executor = Executor(torch.device("cpu"), max_alloc_bytes=1 << 30, compute_threads=1,
                            max_inflight=1)
        out = executor.run_graph(graph, {"x": x}, {}, MetaCache())
    finally:
        _Tracked.probe = None
    expected = torch.cos(-torch.relu(x.as_subclass(torch.Tensor)))
    assert torch.equal(out["c"].as_subclass(torch.Tensor), expected)
    # made: exp (a), relu (b), neg (n); only n, cos's own input, may be alive.
    assert alive_at_cos == [[False, False, True]]


# --- the allocation cap ---------------------------------------------------------------

#: Requests that each allocate far more than their body: refused by the allocation cap
#: (1 MiB here) before anything is allocated.
OVER_CAP: list[tuple[str, str, dict[str, Any], dict[str, torch.Tensor]]] = [
    ("repeat", "repeat", {"repeats": [4096, 4096]}, {"x": torch.ones(1)}),
    ("pad", "pad", {"pad": [0, 16 * 2**20]}, {"x": torch.ones(1)}),
    ("outer", "outer", {}, {"input": torch.ones(1000), "other": torch.ones(1000)}),
    ("expand", "expand", {"size": [1024, 1024]}, {"x": torch.ones(1)}),
    ("broadcasting-add", "add", {}, {"input": torch.ones(1024, 1), "other": torch.ones(1, 1024)}),
    ("matmul-broadcast", "matmul", {}, {"input": torch.ones(1024, 1, 1), "other": torch.ones(1, 512)}),
    ("full_like-wider", "full_like", {"fill_value": 1, "dtype": "float64"},
     {"x": torch.ones(600, 300)}),
    ("zeros", "zeros", {"size": [1024, 1024]}, {}),
]


@pytest.mark.parametrize(("op", "args", "inputs"), [pytest.param(*c[1:], id=c[0]) for c in OVER_CAP])
def test_allocation_cap_refuses_ops_that_grow_their_input(
        make_server: Callable[..., BackgroundServer], op: str, args: dict[str, Any],
        inputs: dict[str, torch.Tensor], x: torch.Tensor, st_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]], assert_error: Callable[..., str],
        assert_serving: Callable[..., None]) -> None:
    srv = make_server(max_held_mb=1)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        resp = http.post("/execute", params={"op": op, "args": json.dumps(args)},
                         content=st_body(inputs) if inputs else b"")
        message = assert_error(resp, 422, "invalid_arguments")
        assert repr(op) in message and "1048576-byte allocation limit" in message
        # The same op under the cap still runs.
        small = http.post("/execute", params={"op": "relu"}, content=st_body({"x": x}))
        assert torch.equal(tensors_of(small)["output"], torch.relu(x))
        assert_serving(http)


def test_allocation_cap_names_the_shape(make_server: Callable[..., BackgroundServer],
                                        st_body: Callable[..., bytes],
                                        assert_error: Callable[..., str]) -> None:
    srv = make_server(max_held_mb=1)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        message = assert_error(http.post("/execute", params={
            "op": "repeat", "args": json.dumps({"repeats": [4096, 4096]})},
            content=st_body({"x": torch.ones(1)})), 422, "invalid_arguments")
        assert "[4096, 4096] float32" in message and str(4 * 4096 * 4096) in message


def test_allocation_cap_applies_to_every_graph_node(
        make_server: Callable[..., BackgroundServer], graph_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]], assert_error: Callable[..., str],
        assert_serving: Callable[..., None]) -> None:
    srv = make_server(max_held_mb=1)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        # expand is a free view, but contiguous then allocates 4 MiB.
        graph = {"nodes": [{"id": "e", "op": "expand", "args": [{"input": "x"}, [1024, 1024]]},
                           {"id": "c", "op": "contiguous", "args": [{"node": "e"}]},
                           {"id": "s", "op": "sum", "args": [{"node": "c"}]}]}
        message = assert_error(http.post("/graph", content=graph_body(
            graph, {"x": torch.ones(1)})), 422, "invalid_arguments")
        assert "'contiguous'" in message and "[1024, 1024]" in message
        # A view inside the graph that never needs its own memory is fine, as long as
        # what reads it reads no more than the cap (an op's work is bounded too).
        ok = {"nodes": [{"id": "e", "op": "expand", "args": [{"input": "x"}, [512, 512]]},
                        {"id": "s", "op": "sum", "args": [{"node": "e"}]}]}
        out = tensors_of(http.post("/graph", content=graph_body(ok, {"x": torch.ones(1)})))
        assert out["s"].item() == 512 * 512
        ok["nodes"][0]["args"][1] = [1024, 1024]
        message = assert_error(http.post("/graph", content=graph_body(
            ok, {"x": torch.ones(1)})), 422, "invalid_arguments")
        assert "'sum'" in message and "broadcast" in message
        assert_serving(http)


def test_graph_live_results_share_the_allocation_cap(
        make_server: Callable[..., BackgroundServer], graph_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]], assert_error: Callable[..., str],
        assert_serving: Callable[..., None]) -> None:
    srv = make_server(max_held_mb=1)
    x = torch.ones(100, 1000)  # 400 kB: each result fits, three kept at once do not
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        nodes = [{"id": f"n{i}", "op": "mul", "args": [{"input": "x"}, i]} for i in range(3)]
        message = assert_error(http.post("/graph", content=graph_body(
            {"nodes": nodes, "outputs": ["n0", "n1", "n2"]}, {"x": x})), 422, "invalid_arguments")
        assert "'mul'" in message and "already live in this graph" in message
        # A chain whose intermediates are freed as it goes stays under the cap.
        chain = [{"id": "n0", "op": "mul", "args": [{"input": "x"}, 2]}] + [
            {"id": f"n{i}", "op": "add", "args": [{"node": f"n{i - 1}"}, 1]} for i in range(1, 6)]
        out = tensors_of(http.post("/graph", content=graph_body({"nodes": chain}, {"x": x})))
        assert torch.equal(out["n5"], x * 2 + 5)
        assert_serving(http)


# --- working memory: what a kernel allocates besides its result counts too -----------

#: (id, op, args, body tensors): each a small result with a large working set, refused
#: under a 4 MiB cap although its result fits.
WORKING_ATTACKS: list[tuple[str, str, dict[str, Any], dict[str, torch.Tensor]]] = [
    ("mse_loss-broadcast", "mse_loss", {},
     {"input": torch.ones(2048, 1), "target": torch.ones(1, 2048)}),
    ("conv2d-float64-unfold", "conv2d", {},
     {"input": torch.ones(1, 1, 192, 192, dtype=torch.float64),
      "weight": torch.ones(1, 1, 16, 16, dtype=torch.float64)}),
    ("sum-float32-as-float64", "sum", {"dtype": "float64"}, {"x": torch.ones(1 << 20)}),
    ("matmul-broadcast-batches", "matmul", {},
     {"input": torch.ones(128, 1, 16, 16), "other": torch.ones(1, 128, 16, 16)}),
    ("einsum-chained-outer", "einsum", {"equation": "ia,jb,ab->ij"},
     {"a": torch.ones(48, 48), "b": torch.ones(48, 48), "c": torch.ones(48, 48)}),
    ("cross_entropy-probabilities", "cross_entropy", {},
     {"input": torch.ones(1024, 1024), "target": torch.ones(1024, 1024)}),
]


@pytest.mark.filterwarnings("ignore::UserWarning")  # mse_loss's note on broadcasting
@pytest.mark.parametrize(("op", "args", "inputs"),
                         [pytest.param(*c[1:], id=c[0]) for c in WORKING_ATTACKS])
def test_working_memory_over_the_cap_is_refused_before_it_runs(
        make_server: Callable[..., BackgroundServer], op: str, args: dict[str, Any],
        inputs: dict[str, torch.Tensor], st_body: Callable[..., bytes],
        assert_error: Callable[..., str], assert_serving: Callable[..., None]) -> None:
    srv = make_server(max_compute_mb=4)
    if op == "einsum":
        args = {**args, "operands": [{"input": k} for k in inputs]}
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        resp = http.post("/execute", params={"op": op, "args": json.dumps(args)},
                         content=st_body(inputs))
        message = assert_error(resp, 422, "invalid_arguments")
        assert repr(op) in message and "working memory" in message
        assert "4194304-byte allocation limit" in message
        assert_serving(http)


def test_graph_expand_then_a_wider_sum_is_refused(
        make_server: Callable[..., BackgroundServer], graph_body: Callable[..., bytes],
        assert_error: Callable[..., str], tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    # expand is free and sum's result is 8 bytes, but sum(dtype=float64) first copies
    # all 4 Mi expanded elements as float64 (32 MiB): refused under an 8 MiB cap; the
    # same sum in the input's own dtype reads the view in place (within the cap).
    srv = make_server(max_compute_mb=8)
    graph = {"nodes": [{"id": "e", "op": "expand", "args": [{"input": "x"}, [2048, 512]]},
                       {"id": "s", "op": "sum", "args": [{"node": "e"}],
                        "kwargs": {"dtype": "float64"}}]}
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        message = assert_error(http.post("/graph", content=graph_body(
            graph, {"x": torch.ones(1)})), 422, "invalid_arguments")
        assert "'sum'" in message and "working memory" in message
        del graph["nodes"][1]["kwargs"]
        out = tensors_of(http.post("/graph", content=graph_body(graph, {"x": torch.ones(1)})))
        assert out["s"].item() == 2048 * 512


# --- worker threads: busy, concurrency, reuse of the input --------------------------


def test_server_busy_is_503(make_server: Callable[..., BackgroundServer], good_body: bytes,
                            graph_body: Callable[..., bytes], assert_error: Callable[..., str],
                            assert_serving: Callable[..., None]) -> None:
    srv = make_server(max_inflight=1)
    # A graph long enough to hold the only compute slot while we knock.
    slow = graph_body({"nodes": [{"id": f"n{i}", "op": "matmul",
                                  "args": [{"input": "m"} if i == 0 else {"node": f"n{i - 1}"},
                                           {"input": "m"}]} for i in range(40)]},
                      {"m": torch.eye(400)})
    statuses: list[int] = []
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        for _ in range(5):
            results: list[httpx.Response] = []

            def hold_the_slot(out: list[httpx.Response] = results) -> None:
                with httpx.Client(base_url=srv.url, timeout=60) as other:
                    out.append(other.post("/graph", content=slow))

            worker = threading.Thread(target=hold_the_slot)
            worker.start()
            while worker.is_alive() and 503 not in statuses:
                statuses.append(http.post("/execute?op=relu", content=good_body).status_code)
            worker.join()
            statuses.append(results[0].status_code)
            # Whichever request lost the race for the slot was told so, at once.
            for resp in results:
                if resp.status_code == 503:
                    assert_error(resp, 503, "busy")
            if 503 in statuses:
                break
        assert set(statuses) <= {200, 503}
        assert 503 in statuses, "never caught the server with its one compute slot taken"
        assert http.get("/stats").json()["errors_by_type"]["busy"] >= 1
        assert_serving(http)


def test_concurrent_requests_all_get_their_own_answer(
        server: BackgroundServer, st_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    errors: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            with httpx.Client(base_url=server.url, timeout=60) as http:
                for i in range(6):
                    x = torch.randn(64, 32, generator=torch.Generator().manual_seed(seed * 100 + i))
                    out = tensors_of(http.post("/execute", params={"op": "softmax", "args": '{"dim": 1}'},
                                               content=st_body({"x": x})))["output"]
                    torch.testing.assert_close(out, x.softmax(1))
        except BaseException as exc:  # noqa: BLE001 - reported on the main thread
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors


def test_without_reuse_input_the_input_is_never_written(
        run_op: Callable[..., torch.Tensor]) -> None:
    x = torch.randn(5)
    before = x.clone()
    out = run_op(REGISTRY["relu"], REGISTRY["relu"].bind((x,)))
    assert torch.equal(x, before) and torch.equal(out, torch.relu(before))


# --- fuzz: no graph a client can send makes the server fail with a 500 ----------------


def _graphs(arg: st.SearchStrategy[Any]) -> st.SearchStrategy[dict[str, Any]]:
    """Graphs a client might send: up to three nodes of a few ops (and one that is not
    allowed), arguments from ``arg``, any outputs and keep lists."""
    node = st.fixed_dictionaries(
        {"id": st.sampled_from(["a", "b", "c"]),
         "op": st.sampled_from(["relu", "add", "matmul", "sum", "cat", "getitem", "reshape", "to",
                                "zeros", "nope"])},
        optional={"args": st.lists(arg, max_size=3) | arg,
                  "kwargs": st.dictionaries(st.sampled_from(["other", "dim", "dtype", "bogus"]),
                                            arg, max_size=2) | arg})
    return st.fixed_dictionaries(
        {"nodes": st.lists(node, max_size=3)},
        optional={"outputs": st.lists(st.sampled_from(["a", "b", "c", "q"]), max_size=2) | arg,
                  "keep": st.booleans() | st.lists(st.sampled_from(["a", "b", "q"]), max_size=2)})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_random_graphs_get_documented_answers(
        http: httpx.Client, wire_args: st.SearchStrategy[Any], data: st.DataObject,
        x: torch.Tensor, graph_body: Callable[..., bytes],
        assert_error: Callable[..., str]) -> None:
    spec = data.draw(_graphs(wire_args), label="spec")
    resp = http.post("/graph", content=graph_body(spec, {"x": x}))
    assert resp.status_code in (200, 400, 404, 413, 422), (spec, resp.text)
    if resp.status_code == 200:
        kept = decode(resp.content).metadata.get(HANDLES_METADATA_KEY)
        for info in json.loads(kept or "{}").values():
            assert http.delete(f"/tensors/{info['id']}").status_code == 200
    else:
        assert_error(resp, resp.status_code, resp.json()["error"]["type"])


def test_no_result_has_more_dimensions_than_the_wire_carries(
        http: httpx.Client, x: torch.Tensor, st_body: Callable[..., bytes],
        graph_body: Callable[..., bytes], assert_error: Callable[..., str]) -> None:
    # reshape to 100 dims answered 200 with a body the project's own reader refuses.
    shape = [1] * 98 + [2, 3]
    message = assert_error(http.post("/execute", params={"op": "reshape", "args": json.dumps(
        {"shape": shape})}, content=st_body({"x": x})), 422, "invalid_arguments")
    assert "100-dimensional" in message and "64" in message
    graph = {"nodes": [{"id": "r", "op": "reshape", "args": [{"input": "x"}, shape]},
                       {"id": "s", "op": "sum", "args": [{"node": "r"}]}]}
    assert_error(http.post("/graph", content=graph_body(graph, {"x": x})), 422,
                 "invalid_arguments")
    ok = http.post("/execute", params={"op": "reshape", "args": json.dumps(
        {"shape": [1] * 62 + [2, 3]})}, content=st_body({"x": x}))
    assert ok.status_code == 200 and len(decode(ok.content).tensors["output"].shape) == 64


# --- cheap ops on the event loop ------------------------------------------------------


def _cpu_executor() -> Executor:
    return Executor(torch.device("cpu"), max_alloc_bytes=1 << 30, compute_threads=1,
                    max_inflight=2)


def test_only_an_op_within_the_inline_bound_runs_on_the_event_loop() -> None:
    executor, cache = _cpu_executor(), MetaCache()
    relu, add, getitem = REGISTRY["relu"], REGISTRY["add"], REGISTRY["getitem"]
    assert executor.inline_fits(relu, relu.bind([torch.randn(10, 10)]), cache)
    # 64 KiB in and 64 KiB out: over the bound together, though each alone is within.
    big = torch.randn(128, 128)
    assert not executor.inline_fits(relu, relu.bind([big]), cache)
    small = torch.randn(64, 64)  # 16 KiB: in, other and out within 64 KiB together
    assert executor.inline_fits(add, add.bind([small, small]), cache)
    # An expanded view reads its full size: 1 KiB held, 256 KiB read.
    wide = torch.randn(1, 256).expand(256, 256)
    assert not executor.inline_fits(relu, relu.bind([wide]), cache)
    # Meta cannot size it (a boolean mask: data-dependent): not known to be cheap.
    masked = getitem.bind([torch.ones(4), torch.tensor([True, False, True, True])])
    assert not executor.inline_fits(getitem, masked, cache)
    # A windowed op's time follows its window, not its bytes: never on the loop.
    pool = REGISTRY["max_pool2d"]
    assert not executor.inline_fits(pool, pool.bind([torch.ones(1, 1, 4, 4), 2]), cache)


def test_an_op_slow_on_the_loop_goes_to_the_threads_from_then_on() -> None:
    executor, cache = _cpu_executor(), MetaCache()
    relu = REGISTRY["relu"]
    bound = relu.bind([torch.randn(4)])
    assert executor.inline_fits(relu, bound, cache)
    timing = Timing()
    # Waiting is not cost (a preempted loop is not a slow op); computing is.
    out = executor.run_inline(timing, "relu", lambda _: time.sleep(INLINE_MAX_MS * 2 / 1000),
                              lambda r: "encoded")
    assert out == "encoded" and timing.compute_ms > INLINE_MAX_MS
    assert "relu" not in executor.slow_inline

    def spin(_: object) -> None:
        end = time.thread_time() + INLINE_MAX_MS * 2 / 1000
        while time.thread_time() < end:
            pass

    executor.run_inline(timing, "relu", spin, lambda r: r)
    assert "relu" in executor.slow_inline
    assert not executor.inline_fits(relu, bound, cache)


def test_small_execute_runs_inline_and_a_large_one_on_a_worker(
        make_server: Callable[..., BackgroundServer], st_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    srv = make_server()
    executor: Executor = srv.app.state.genie.executor
    small, large = torch.randn(10, 10), torch.randn(300, 300)
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        for x, inline in ((small, 1), (large, 0), (small, 1)):
            before = executor.inline_runs
            resp = http.post("/execute?op=relu", content=st_body({"x": x}))
            assert torch.equal(tensors_of(resp)["output"], torch.relu(x))
            assert executor.inline_runs - before == inline
        # An op once slow inline runs on a worker thread from then on, and still answers.
        executor.slow_inline.add("relu")
        before = executor.inline_runs
        resp = http.post("/execute?op=relu", content=st_body({"x": small}))
        assert torch.equal(tensors_of(resp)["output"], torch.relu(small))
        assert executor.inline_runs == before
        # The inline path is accounted like any other: compute time and the request.
        stats = http.get("/stats").json()
        assert stats["endpoints"]["POST /execute"]["count"] == 4
