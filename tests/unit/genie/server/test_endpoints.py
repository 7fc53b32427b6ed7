"""The server over real HTTP: every endpoint, every documented error status, and the
promise that a bad request is refused, counted once by type, and leaves the server
healthy and serving.

Bodies are made and read with the safetensors library itself (not genie.wire), so
these tests also prove that a plain safetensors user can talk to the server.
"""

from __future__ import annotations

import json
import socket
import struct
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any, ClassVar

import httpx
import pytest
import safetensors.torch
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from genie.graph import GRAPH_METADATA_KEY, HANDLES_METADATA_KEY
from genie.ops import REGISTRY, MetaCache
from genie.protocol import PROTOCOL_VERSION
from genie.server.executor import Executor, Graph
from genie.server.runner import BackgroundServer
from genie.wire import decode

X = torch.tensor([[-1.0, 2.0, -3.0], [4.0, -5.0, 6.0]])


def st_body(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    # Clones: the library refuses tensors that share memory (the same X twice).
    return safetensors.torch.save({k: v.clone() for k, v in tensors.items()}, metadata=metadata)


def graph_body(graph: dict[str, Any], inputs: dict[str, torch.Tensor] | None = None) -> bytes:
    return st_body(inputs or {}, {GRAPH_METADATA_KEY: json.dumps(graph)})


def raw_body(header: dict[str, Any] | bytes, data: bytes = b"") -> bytes:
    """A body the safetensors library would refuse to write: what a hostile client sends."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def tensors_of(resp: httpx.Response) -> dict[str, torch.Tensor]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    assert int(resp.headers["content-length"]) == len(resp.content)
    return safetensors.torch.load(resp.content)


def assert_error(resp: httpx.Response, status: int, error_type: str) -> str:
    """The one error shape; returns the message."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    return str(body["error"]["message"])


def errors_by_type(http: httpx.Client) -> dict[str, int]:
    return dict(http.get("/stats").json()["errors_by_type"])


def wait_for_errors(http: httpx.Client, before: dict[str, int], expected: int) -> dict[str, int]:
    """The error counts once ``expected`` more failures are recorded.

    The server records a request just after its last byte is sent, so the very next
    request may overtake the bookkeeping by a moment: poll briefly, then compare.
    """
    deadline = time.monotonic() + 5.0
    while True:
        now = errors_by_type(http)
        if sum(now.values()) - sum(before.values()) >= expected or time.monotonic() > deadline:
            return now
        time.sleep(0.01)


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
            if after.get(k, 0) != before.get(k, 0)}


def assert_serving(http: httpx.Client, headers: dict[str, str] | None = None) -> None:
    """/health answers and a good request computes the right tensor."""
    assert http.get("/health", headers=headers).json()["status"] == "ok"
    out = tensors_of(http.post("/execute?op=relu", content=st_body({"x": X}), headers=headers))
    assert torch.equal(out["output"], torch.relu(X))


# --- endpoints ---------------------------------------------------------------------------


def test_health_reports_device_versions_and_counters(http: httpx.Client) -> None:
    info = http.get("/health").json()
    assert info["status"] == "ok"
    assert info["device"] == "cpu" and info["device_type"] == "cpu"
    assert info["cuda_available"] is torch.cuda.is_available()
    for key in ("gpu_name", "gpu_count", "gpu_memory_total_bytes", "gpu_memory_free_bytes"):
        assert key in info
    assert info["torch_version"] == torch.__version__
    assert info["protocol_version"] == PROTOCOL_VERSION
    assert info["ops"] == len(REGISTRY)
    assert info["auth"] is False
    assert info["uptime_s"] >= 0
    assert set(info["requests"]) == {"total", "succeeded", "failed"}


def test_ops_lists_every_op_with_its_signature(http: httpx.Client) -> None:
    ops = http.get("/ops").json()["ops"]
    assert [o["name"] for o in ops] == sorted(REGISTRY)
    by_name = {o["name"]: o["signature"] for o in ops}
    assert by_name["sum"] == "sum(input, dim=None, keepdim=False, dtype=None)"


def test_device_runs_the_matmul_benchmark(http: httpx.Client) -> None:
    resp = http.get("/device")
    info = resp.json()
    assert info["device"] == "cpu"
    bench = info["benchmark"]
    assert bench["matrix_size"] == 1000 and bench["warmup"] >= 1 and bench["repeats"] >= 1
    assert 0 < bench["min_ms"] <= bench["median_ms"] <= bench["max_ms"]
    assert "compute;dur=" in resp.headers["server-timing"]


def test_execute_relu_with_a_lone_tensor_of_any_name(http: httpx.Client) -> None:
    for name in ("x", "input", "anything"):
        out = tensors_of(http.post("/execute?op=relu", content=st_body({name: X})))
        assert list(out) == ["output"]
        assert torch.equal(out["output"], torch.relu(X))


def test_execute_binds_body_tensors_by_name_and_args_from_query(http: httpx.Client) -> None:
    y = torch.tensor([10.0, 20.0, 30.0])
    body = st_body({"input": X, "other": y})
    out = tensors_of(http.post("/execute", params={"op": "add", "args": '{"alpha": 2}'},
                               content=body))
    assert torch.equal(out["output"], torch.add(X, y, alpha=2))
    # A lone tensor binds to the first parameter, the named one to its parameter.
    out = tensors_of(http.post("/execute", params={"op": "sub"},
                               content=st_body({"a": X, "other": y})))
    assert torch.equal(out["output"], X - y)
    out = tensors_of(http.post("/execute", params={"op": "sum", "args": '{"dim": 1, "keepdim": true}'},
                               content=st_body({"x": X})))
    assert torch.equal(out["output"], X.sum(1, keepdim=True))


def test_execute_tagged_args(http: httpx.Client) -> None:
    out = tensors_of(http.post("/execute", params={"op": "to", "args": '{"dtype": {"dtype": "bfloat16"}}'},
                               content=st_body({"x": X})))
    assert out["output"].dtype == torch.bfloat16
    args = json.dumps({"index": [{"ellipsis": True}, {"slice": [None, None, 2]}]})
    out = tensors_of(http.post("/execute", params={"op": "getitem", "args": args},
                               content=st_body({"x": X})))
    assert torch.equal(out["output"], X[..., ::2])
    # {"input": NAME} refers to a body tensor, e.g. for a list argument.
    args = json.dumps({"tensors": [{"input": "a"}, {"input": "b"}], "dim": 1})
    out = tensors_of(http.post("/execute", params={"op": "cat", "args": args},
                               content=st_body({"a": X, "b": X * 2})))
    assert torch.equal(out["output"], torch.cat([X, X * 2], 1))


def test_execute_factory_without_body(http: httpx.Client) -> None:
    args = json.dumps({"size": [2, 3], "seed": 42})
    first = tensors_of(http.post("/execute", params={"op": "randn", "args": args}))["output"]
    again = tensors_of(http.post("/execute", params={"op": "randn", "args": args}))["output"]
    assert torch.equal(first, torch.randn(2, 3, generator=torch.Generator().manual_seed(42)))
    assert torch.equal(first, again)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32,
                                   torch.uint8, torch.bool])
def test_execute_keeps_dtypes(http: httpx.Client, dtype: torch.dtype) -> None:
    x = torch.tensor([[1, 0, 3], [0, 5, 1]]).to(dtype)
    out = tensors_of(http.post("/execute?op=t", content=st_body({"x": x})))["output"]
    assert out.dtype == dtype and torch.equal(out, x.t())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_execute_unary_ops_match_eager_bits(http: httpx.Client, dtype: torch.dtype) -> None:
    # These run in place over the received body tensor (small and over 1 MiB bodies,
    # which arrive in different buffers); the reply must be eager PyTorch's exact bits.
    for n in (1031, 300_001):
        x = torch.linspace(-6, 6, n).to(dtype)
        for op, args, eager in (("relu", {}, torch.relu), ("exp", {}, torch.exp),
                                ("log", {}, torch.log), ("silu", {}, F.silu),
                                ("gelu", {"approximate": "tanh"},
                                 lambda t: F.gelu(t, approximate="tanh"))):
            out = tensors_of(http.post("/execute", params={"op": op, "args": json.dumps(args)},
                                       content=st_body({"x": x})))["output"]
            assert out.dtype == dtype
            assert torch.equal(out.view(torch.uint8), eager(x).view(torch.uint8)), op


def test_echo_is_bit_exact_and_keeps_metadata(http: httpx.Client) -> None:
    tensors = {"a": torch.randn(3, 4).bfloat16(), "b": torch.tensor(7, dtype=torch.int64),
               "c": torch.empty(0, 5), "d": torch.tensor([float("nan"), -0.0])}
    meta = {"k": "v", "note": "ünïcode"}
    resp = http.post("/echo", content=st_body(tensors, meta))
    out = tensors_of(resp)
    assert decode(resp.content).metadata == meta
    for name, t in tensors.items():
        assert out[name].dtype == t.dtype and out[name].shape == t.shape
        assert torch.equal(out[name].reshape(-1).view(torch.uint8), t.reshape(-1).view(torch.uint8))
    # An empty safetensors file (no tensors) echoes too.
    assert tensors_of(http.post("/echo", content=st_body({}))) == {}


def test_server_timing_on_computing_responses(http: httpx.Client) -> None:
    responses = [
        http.post("/execute?op=relu", content=st_body({"x": X})),
        http.post("/echo", content=st_body({"x": X})),
        http.post("/graph", content=graph_body(
            {"nodes": [{"id": "a", "op": "relu", "args": [{"input": "x"}]}]}, {"x": X})),
        http.post("/tensors", content=st_body({"x": X})),
    ]
    for resp in responses:
        assert resp.status_code in (200, 201), resp.text
        phases = {p.split(";")[0].strip(): float(p.split("dur=")[1])
                  for p in resp.headers["server-timing"].split(",")}
        assert set(phases) == {"decode", "compute", "encode"}
        assert all(v >= 0 for v in phases.values())
    http.delete(f"/tensors/{responses[-1].json()['id']}")


def test_large_bodies_decoded_and_encoded_off_the_loop_answer_the_same(
        http: httpx.Client) -> None:
    # Over 1 MiB, decoding and encoding move to worker threads; the answers, the kept
    # handles and the Server-Timing phases must not change with the path taken.
    big = torch.arange(600_000, dtype=torch.float32).reshape(600, 1000)
    echoed = http.post("/echo", content=st_body({"big": big}, {"k": "v"}))
    assert torch.equal(tensors_of(echoed)["big"], big)
    assert decode(echoed.content).metadata == {"k": "v"}
    graph = {"nodes": [{"id": "t", "op": "t", "args": [{"input": "big"}]},
                       {"id": "n", "op": "neg", "args": [{"input": "big"}]}],
             "outputs": ["t", "n"], "keep": ["n"]}
    resp = http.post("/graph", content=graph_body(graph, {"big": big}))
    assert torch.equal(tensors_of(resp)["t"], big.t())  # strided result laid out contiguous
    (info,) = json.loads(decode(resp.content).metadata[HANDLES_METADATA_KEY]).values()
    assert torch.equal(tensors_of(http.get(f"/tensors/{info['id']}"))[info["id"]], -big)
    put = http.post("/tensors", content=st_body({"big": big}))
    assert put.status_code == 201
    assert torch.equal(tensors_of(http.get(f"/tensors/{put.json()['id']}"))[put.json()["id"]], big)
    for r in (echoed, resp, put):
        phases = {p.split(";")[0].strip() for p in r.headers["server-timing"].split(",")}
        assert phases == {"decode", "compute", "encode"}
    for h in (info["id"], put.json()["id"]):
        assert http.delete(f"/tensors/{h}").status_code == 200


def test_tensors_put_get_list_delete(http: httpx.Client) -> None:
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


def test_graph_runs_a_dag_with_inputs_handles_and_constants(http: httpx.Client) -> None:
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
    resp = http.post("/graph", content=graph_body(graph, {"x": X}))
    out = tensors_of(resp)
    s = torch.add(torch.relu(X @ w), 1.5, alpha=2)
    assert set(out) == {"s", "c"}  # intermediates h, r, m never leave the server
    assert torch.allclose(out["s"], s)
    assert out["c"].dtype == torch.float64 and torch.allclose(out["c"], s.sum(1).double())
    assert HANDLES_METADATA_KEY not in decode(resp.content).metadata
    http.delete(f"/tensors/{handle}")


def test_graph_default_output_is_the_last_node(http: httpx.Client) -> None:
    graph = {"nodes": [{"id": "a", "op": "neg", "args": [{"input": "x"}]},
                       {"id": "b", "op": "exp", "args": [{"node": "a"}]}]}
    out = tensors_of(http.post("/graph", content=graph_body(graph, {"x": X})))
    assert list(out) == ["b"] and torch.allclose(out["b"], torch.exp(-X))


def test_graph_keep_returns_handles_usable_later(http: httpx.Client) -> None:
    before = http.get("/stats").json()["held"]
    graph = {"nodes": [{"id": "a", "op": "mul", "args": [{"input": "x"}, 3]},
                       {"id": "b", "op": "neg", "args": [{"node": "a"}]}],
             "outputs": ["a", "b"], "keep": ["a"]}
    resp = http.post("/graph", content=graph_body(graph, {"x": X}))
    out = tensors_of(resp)
    assert list(out) == ["b"] and torch.equal(out["b"], -(X * 3))
    kept = json.loads(decode(resp.content).metadata[HANDLES_METADATA_KEY])
    assert set(kept) == {"a"}
    info = kept["a"]
    assert info["shape"] == [2, 3] and info["dtype"] == "float32" and info["nbytes"] == 24
    assert http.get("/stats").json()["held"]["tensors"] == before["tensors"] + 1
    # The handle feeds a later graph, and can be fetched.
    graph2 = {"nodes": [{"id": "z", "op": "sub", "args": [{"handle": info["id"]}, {"input": "y"}]}]}
    out2 = tensors_of(http.post("/graph", content=graph_body(graph2, {"y": X})))
    assert torch.equal(out2["z"], X * 3 - X)
    assert torch.equal(tensors_of(http.get(f"/tensors/{info['id']}"))[info["id"]], X * 3)
    # keep: true keeps every output, returning none.
    resp = http.post("/graph", content=graph_body({**graph, "keep": True}, {"x": X}))
    assert tensors_of(resp) == {}
    both = json.loads(decode(resp.content).metadata[HANDLES_METADATA_KEY])
    assert set(both) == {"a", "b"}
    for h in (info["id"], both["a"]["id"], both["b"]["id"]):
        assert http.delete(f"/tensors/{h}").status_code == 200
    assert http.get("/stats").json()["held"] == before


def test_graph_failing_to_reply_holds_nothing(http: httpx.Client) -> None:
    # "b" is complex128 (complex64 x float64), which safetensors cannot carry: the
    # reply fails, so the client never learns the id kept for "a" -- it must not be held.
    before = http.get("/stats").json()["held"]
    graph = {"nodes": [{"id": "a", "op": "neg", "args": [{"input": "z"}]},
                       {"id": "b", "op": "outer", "args": [{"input": "z"}, {"input": "d"}]}],
             "outputs": ["a", "b"], "keep": ["a"]}
    body = graph_body(graph, {"z": torch.ones(2, dtype=torch.complex64),
                              "d": torch.ones(3, dtype=torch.float64)})
    message = assert_error(http.post("/graph", content=body), 422, "unsupported_dtype")
    assert "complex128" in message
    assert http.get("/stats").json()["held"] == before


def test_graph_reply_failing_on_host_memory_holds_nothing(http: httpx.Client) -> None:
    # "b" is a 16 TiB expanded view of one element: computing it allocates nothing, but
    # laying it out for the reply needs a contiguous copy, which no machine can allocate.
    # That failure is not a Genie error; the handle kept for "a" must still be freed.
    before = http.get("/stats").json()["held"]
    graph = {"nodes": [{"id": "a", "op": "neg", "args": [{"input": "x"}]},
                       {"id": "b", "op": "expand", "args": [{"input": "x"}, [2**21, 2**21]]}],
             "outputs": ["a", "b"], "keep": ["a"]}
    resp = http.post("/graph", content=graph_body(graph, {"x": torch.ones(1)}))
    assert resp.status_code >= 400
    assert resp.json()["error"]["type"] in ("internal", "out_of_memory", "invalid_arguments")
    assert http.get("/stats").json()["held"] == before
    assert_serving(http)


def test_graph_kept_view_of_an_input_does_not_pin_more_than_it_counts(http: httpx.Client) -> None:
    graph = {"nodes": [{"id": "a", "op": "getitem", "args": [{"input": "x"}, 0]}], "keep": True}
    resp = http.post("/graph", content=graph_body(graph, {"x": torch.ones(100, 4)}))
    (info,) = json.loads(decode(resp.content).metadata[HANDLES_METADATA_KEY]).values()
    assert info["nbytes"] == 16
    assert torch.equal(tensors_of(http.get(f"/tensors/{info['id']}"))[info["id"]], torch.ones(4))
    http.delete(f"/tensors/{info['id']}")


def test_graph_kept_input_does_not_pin_the_request_body(server: BackgroundServer,
                                                        http: httpx.Client) -> None:
    # "contiguous" of a contiguous input is the input itself, which aliases the
    # received body; held as is, a 16-byte handle would keep the whole 400 kB body
    # alive while the budget counts 16 bytes.
    graph = {"nodes": [{"id": "a", "op": "contiguous", "args": [{"input": "small"}]}],
             "keep": True}
    resp = http.post("/graph", content=graph_body(graph, {"small": torch.ones(4),
                                                          "big": torch.zeros(100_000)}))
    (info,) = json.loads(decode(resp.content).metadata[HANDLES_METADATA_KEY]).values()
    assert info["nbytes"] == 16
    held = server.app.state.genie.store.get(info["id"])
    assert held.untyped_storage().resizable(), "the handle must own its memory"
    assert held.untyped_storage().nbytes() == 16
    http.delete(f"/tensors/{info['id']}")


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


def test_metrics_is_prometheus_text_matching_stats(http: httpx.Client) -> None:
    http.post("/execute?op=relu", content=st_body({"x": X}))
    http.post("/execute?op=nope", content=st_body({"x": X}))
    resp = http.get("/metrics")
    assert resp.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(resp.text)}
    for name in ("genie_requests", "genie_request_failures", "genie_request_bytes",
                 "genie_response_bytes", "genie_compute_seconds",
                 "genie_request_latency_seconds", "genie_held_tensors", "genie_held_bytes"):
        assert name in families, name
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in families.values() for s in f.samples}
    stats = http.get("/stats").json()["endpoints"]["POST /execute"]
    # /metrics was read before /stats: the counters can only have grown in between.
    assert 1 <= samples[("genie_requests_total", (("endpoint", "POST /execute"),))] <= stats["count"]
    assert samples[("genie_request_failures_total",
                    (("endpoint", "POST /execute"), ("type", "unsupported_op")))] >= 1


def test_stats_count_per_endpoint(http: httpx.Client) -> None:
    before = http.get("/stats").json()
    body = st_body({"x": X})
    http.post("/echo", content=body)
    http.post("/echo", content=body)
    ep_before = before["endpoints"].get("POST /echo", {"count": 0, "successes": 0, "bytes_in": 0})
    # A streamed reply is recorded a moment after its last byte: wait for the count.
    deadline = time.monotonic() + 5.0
    while True:
        after = http.get("/stats").json()
        ep_after = after["endpoints"].get("POST /echo", ep_before)
        if ep_after["count"] - ep_before["count"] >= 2 or time.monotonic() > deadline:
            break
        time.sleep(0.01)
    assert ep_after["count"] - ep_before["count"] == 2
    assert ep_after["successes"] - ep_before["successes"] == 2
    assert ep_after["bytes_in"] - ep_before["bytes_in"] == 2 * len(body)
    assert ep_after["latency_ms"]["p50"] > 0
    assert after["requests"]["total"] >= before["requests"]["total"] + 3


# --- errors: status, type, counted once, server still serving ---------------------------

GOOD = st_body({"x": X})
LYING = bytearray(GOOD)
LYING[8:8 + len(GOOD) - 8] = GOOD[8:].replace(b'"data_offsets":[0,24]', b'"data_offsets":[0,99]')
assert bytes(LYING) != GOOD
RELU_A = {"nodes": [{"id": "a", "op": "relu", "args": [{"input": "x"}]}]}

BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("not-safetensors", "POST", "/execute?op=relu", {"content": b"hello there, a text file"},
     400, "malformed_request"),
    ("truncated", "POST", "/execute?op=relu", {"content": GOOD[:-5]}, 400, "malformed_request"),
    ("truncated-header", "POST", "/echo", {"content": GOOD[:20]}, 400, "malformed_request"),
    ("lying-header", "POST", "/echo", {"content": bytes(LYING)}, 400, "malformed_request"),
    ("oversized-header", "POST", "/tensors", {"content": struct.pack("<Q", 2**40) + b"{}"},
     400, "malformed_request"),
    ("bool-bytes", "POST", "/echo", {"content": struct.pack("<Q", 56)
                                     + b'{"b":{"dtype":"BOOL","shape":[2],"data_offsets":[0,2]}}'
                                     + b"\x01\x07"}, 400, "malformed_request"),
    ("bad-args-json", "POST", "/execute?op=sum&args={dim:1}", {"content": GOOD},
     400, "malformed_request"),
    ("args-not-object", "POST", "/execute?op=sum&args=[1]", {"content": GOOD},
     400, "malformed_request"),
    ("args-int-too-long", "POST", '/execute?op=sum&args={"dim":' + "7" * 5000 + "}",
     {"content": GOOD}, 400, "malformed_request"),
    ("args-nested-too-deep", "POST", '/execute?op=sum&args={"dim":' + "[" * 5000 + "]" * 5000 + "}",
     {"content": GOOD}, 400, "malformed_request"),
    ("graph-nested-too-deep", "POST", "/graph", {"content": st_body(
        {}, {GRAPH_METADATA_KEY: '{"nodes": ' + "[" * 50_000 + "]" * 50_000 + "}"})},
     400, "malformed_request"),
    ("unknown-tag", "POST", '/execute?op=sum&args={"dim":{"what":1}}', {"content": GOOD},
     400, "malformed_request"),
    ("stray-body-tensors", "POST", "/execute?op=relu", {"content": st_body({"a": X, "b": X})},
     400, "malformed_request"),
    ("tensor-in-body-and-args", "POST", '/execute?op=add&args={"other":1}',
     {"content": st_body({"input": X, "other": X})}, 400, "malformed_request"),
    ("graph-bad-json", "POST", "/graph", {"content": st_body({}, {GRAPH_METADATA_KEY: "{nodes"})},
     400, "malformed_request"),
    ("graph-missing", "POST", "/graph", {"content": GOOD}, 400, "malformed_request"),
    ("graph-missing-input", "POST", "/graph", {"content": graph_body(RELU_A)}, 400,
     "malformed_request"),
    ("graph-forward-ref", "POST", "/graph", {"content": graph_body(
        {"nodes": [{"id": "a", "op": "relu", "args": [{"node": "b"}]},
                   {"id": "b", "op": "relu", "args": [{"input": "x"}]}]}, {"x": X})},
     400, "malformed_request"),
    ("graph-duplicate-id", "POST", "/graph", {"content": graph_body(
        {"nodes": [RELU_A["nodes"][0], RELU_A["nodes"][0]]}, {"x": X})}, 400, "malformed_request"),
    ("graph-unknown-output", "POST", "/graph", {"content": graph_body(
        {**RELU_A, "outputs": ["zz"]}, {"x": X})}, 400, "malformed_request"),
    ("two-tensors-put", "POST", "/tensors", {"content": st_body({"a": X, "b": X})},
     400, "malformed_request"),
    ("unknown-handle-get", "GET", "/tensors/0123456789abcdef", {}, 404, "not_found"),
    ("unknown-handle-delete", "DELETE", "/tensors/nope", {}, 404, "not_found"),
    ("unknown-handle-graph", "POST", "/graph", {"content": graph_body(
        {"nodes": [{"id": "a", "op": "relu", "args": [{"handle": "nope"}]}]})}, 404, "not_found"),
    ("unknown-route", "GET", "/v2/execute", {}, 404, "not_found"),
    ("unknown-route-post", "POST", "/admin", {"content": GOOD}, 404, "not_found"),
    ("method-post-health", "POST", "/health", {}, 405, "method_not_allowed"),
    ("method-get-execute", "GET", "/execute?op=relu", {}, 405, "method_not_allowed"),
    ("method-put-tensors", "PUT", "/tensors/abc", {"content": GOOD}, 405, "method_not_allowed"),
    ("unsupported-op", "POST", "/execute?op=system", {"content": GOOD}, 422, "unsupported_op"),
    ("no-op", "POST", "/execute", {"content": GOOD}, 422, "unsupported_op"),
    ("graph-unsupported-op", "POST", "/graph", {"content": graph_body(
        {"nodes": [{"id": "a", "op": "eval", "args": [{"input": "x"}]}]}, {"x": X})},
     422, "unsupported_op"),
    ("bad-arg-name", "POST", '/execute?op=relu&args={"inplace":true}', {"content": GOOD},
     422, "invalid_arguments"),
    ("bad-arg-type", "POST", '/execute?op=sum&args={"dim":"rows"}', {"content": GOOD},
     422, "invalid_arguments"),
    ("missing-arg", "POST", "/execute?op=add", {"content": GOOD}, 422, "invalid_arguments"),
    ("dropout-training", "POST", '/execute?op=dropout&args={"training":true}',
     {"content": GOOD}, 422, "invalid_arguments"),
    ("unsupported-dtype-body", "POST", "/echo", {"content": struct.pack("<Q", 56)
                                                 + b'{"x":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}'
                                                 + b"\0" * 16}, 422, "unsupported_dtype"),
    ("unsupported-dtype-arg", "POST", '/execute?op=to&args={"dtype":"complex128"}',
     {"content": GOOD}, 422, "unsupported_dtype"),
    # Shapes that once cost seconds of big-integer work or escaped as a 500.
    ("shape-600-dims-of-4000-digits", "POST", "/echo", {"content": raw_body(
        b'{"x":{"dtype":"F32","shape":[' + b",".join([b"9" * 4000] * 600)
        + b'],"data_offsets":[0,4]}}', b"\0" * 4)}, 400, "malformed_request"),
    ("shape-2**63-by-0", "POST", "/echo", {"content": raw_body(
        {"x": {"dtype": "F32", "shape": [2**63, 0], "data_offsets": [0, 0]}})},
     400, "malformed_request"),
    ("shape-negative", "POST", "/execute?op=relu", {"content": raw_body(
        {"x": {"dtype": "F32", "shape": [-1, -4], "data_offsets": [0, 16]}}, b"\0" * 16)},
     400, "malformed_request"),
    ("shape-bools", "POST", "/execute?op=relu", {"content": raw_body(
        {"x": {"dtype": "F32", "shape": [True, True], "data_offsets": [0, 4]}}, b"\0" * 4)},
     400, "malformed_request"),
    ("factory-size-2**63-by-0", "POST", "/execute?op=zeros&args=" + json.dumps(
        {"size": [2**63, 0]}), {}, 422, "invalid_arguments"),
    ("factory-size-negative", "POST", '/execute?op=ones&args={"size":[-3]}', {},
     422, "invalid_arguments"),
    ("factory-size-bools", "POST", '/execute?op=ones&args={"size":[true,true]}', {},
     422, "invalid_arguments"),
    ("factory-size-65-dims-of-1000-digits", "POST", "/execute?op=zeros&args="
     + '{"size":[' + ",".join(["7" * 1000] * 65) + "]}", {}, 422, "invalid_arguments"),
    ("factory-size-2-dims-of-1000-digits", "POST", "/execute?op=full&args="
     + '{"fill_value":1,"size":[' + ",".join(["7" * 1000] * 2) + "]}", {},
     422, "invalid_arguments"),
    ("eye-of-1000-digits", "POST", "/execute?op=eye&args=" + '{"n":' + "7" * 1000 + "}", {},
     422, "invalid_arguments"),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "error_type"),
                         [pytest.param(*r[1:], id=r[0]) for r in BAD_REQUESTS])
def test_bad_request_is_refused_counted_and_harmless(http: httpx.Client, method: str, path: str,
                                                     kwargs: dict[str, Any], status: int,
                                                     error_type: str) -> None:
    before = errors_by_type(http)
    assert_error(http.request(method, path, **kwargs), status, error_type)
    after = wait_for_errors(http, before, 1)
    assert delta(before, after) == {error_type: 1}
    assert_serving(http)


def test_client_hanging_up_mid_body_is_a_bad_request_not_a_crash(http: httpx.Client) -> None:
    before = errors_by_type(http)
    with socket.create_connection((http.base_url.host, http.base_url.port or 80),
                                  timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 1000\r\n\r\n"
                     + GOOD[:40])
    # Nobody is left to read a reply; the server counts it and carries on.
    assert delta(before, wait_for_errors(http, before, 1)) == {"malformed_request": 1}
    assert_serving(http)


def test_execute_args_may_refer_to_one_body_tensor_twice(http: httpx.Client) -> None:
    args = json.dumps({"tensors": [{"input": "a"}, {"input": "a"}, {"input": "b"}], "dim": 1})
    out = tensors_of(http.post("/execute", params={"op": "cat", "args": args},
                               content=st_body({"a": X, "b": -X})))
    assert torch.equal(out["output"], torch.cat([X, X, -X], 1))


def test_matmul_mismatch_names_both_shapes(http: httpx.Client) -> None:
    body = st_body({"input": torch.ones(2, 3), "other": torch.ones(4, 5)})
    message = assert_error(http.post("/execute?op=matmul", content=body), 422, "invalid_arguments")
    assert "[2, 3]" in message and "[4, 5]" in message
    graph = {"nodes": [{"id": "m", "op": "mm", "args": [{"input": "a"}, {"input": "b"}]}]}
    message = assert_error(http.post("/graph", content=graph_body(
        graph, {"a": torch.ones(7, 3), "b": torch.ones(2, 9)})), 422, "invalid_arguments")
    assert "[7, 3]" in message and "[2, 9]" in message
    assert_serving(http)


def test_unsupported_op_lists_supported_ops(http: httpx.Client) -> None:
    message = assert_error(http.post("/execute?op=__import__", content=GOOD), 422, "unsupported_op")
    assert "'__import__'" in message and "relu" in message and "matmul" in message


def test_per_endpoint_failures_by_type(http: httpx.Client) -> None:
    before = http.get("/stats").json()["endpoints"].get("POST /graph", {"failures_by_type": {}})
    http.post("/graph", content=GOOD)
    http.post("/graph", content=b"junk")
    wait_for_errors(http, {}, 0)
    after = http.get("/stats").json()["endpoints"]["POST /graph"]
    assert delta(before["failures_by_type"], after["failures_by_type"]) == {"malformed_request": 2}


# --- limits: body size, held budget, busy -------------------------------------------------


def test_body_over_limit_is_413_before_reading_it(make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(max_body_mb=0.01)  # 10,485 bytes
    with httpx.Client(base_url=srv.url) as http:
        before = errors_by_type(http)
        big = st_body({"x": torch.zeros(4000)})
        message = assert_error(http.post("/execute?op=relu", content=big), 413, "payload_too_large")
        assert "--max-body-mb" in message
        # Chunked upload without Content-Length: refused once it passes the limit.
        resp = http.post("/echo", content=iter([big[:6000], big[6000:]]))
        assert_error(resp, 413, "payload_too_large")
        assert delta(before, wait_for_errors(http, before, 2)) == {"payload_too_large": 2}
        assert_serving(http)
    # Only headers with a huge Content-Length: answered at once, no 40 GB awaited.
    with socket.create_connection(("127.0.0.1", srv.port), timeout=10) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Length: 40000000000\r\n\r\n")
        reply = sock.recv(65536)
    assert reply.startswith(b"HTTP/1.1 413 ")
    assert b'"payload_too_large"' in reply
    with httpx.Client(base_url=srv.url) as http:
        assert_serving(http)


def test_held_budget_refuses_without_evicting(make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(max_held_mb=0.001)  # 1,048 bytes
    with httpx.Client(base_url=srv.url) as http:
        first = http.post("/tensors", content=st_body({"a": torch.arange(100, dtype=torch.float32)}))
        second = http.post("/tensors", content=st_body({"b": torch.ones(100, dtype=torch.int16)}))
        assert first.status_code == second.status_code == 201
        before = errors_by_type(http)
        message = assert_error(http.post("/tensors", content=st_body({"c": torch.ones(200)})),
                               413, "budget_exceeded")
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
        inputs: dict[str, torch.Tensor]) -> None:
    srv = make_server(max_held_mb=1)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        resp = http.post("/execute", params={"op": op, "args": json.dumps(args)},
                         content=st_body(inputs) if inputs else b"")
        message = assert_error(resp, 422, "invalid_arguments")
        assert repr(op) in message and "1048576-byte allocation limit" in message
        # The same op under the cap still runs.
        small = http.post("/execute", params={"op": "relu"}, content=st_body({"x": X}))
        assert torch.equal(tensors_of(small)["output"], torch.relu(X))
        assert_serving(http)


def test_allocation_cap_names_the_shape(make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(max_held_mb=1)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        message = assert_error(http.post("/execute", params={
            "op": "repeat", "args": json.dumps({"repeats": [4096, 4096]})},
            content=st_body({"x": torch.ones(1)})), 422, "invalid_arguments")
        assert "[4096, 4096] float32" in message and str(4 * 4096 * 4096) in message


def test_allocation_cap_applies_to_every_graph_node(
        make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(max_held_mb=1)
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        # expand is a free view, but contiguous then allocates 4 MiB.
        graph = {"nodes": [{"id": "e", "op": "expand", "args": [{"input": "x"}, [1024, 1024]]},
                           {"id": "c", "op": "contiguous", "args": [{"node": "e"}]},
                           {"id": "s", "op": "sum", "args": [{"node": "c"}]}]}
        message = assert_error(http.post("/graph", content=graph_body(
            graph, {"x": torch.ones(1)})), 422, "invalid_arguments")
        assert "'contiguous'" in message and "[1024, 1024]" in message
        # A view inside the graph that never needs its own memory is fine.
        ok = {"nodes": [{"id": "e", "op": "expand", "args": [{"input": "x"}, [1024, 1024]]},
                        {"id": "s", "op": "sum", "args": [{"node": "e"}]}]}
        out = tensors_of(http.post("/graph", content=graph_body(ok, {"x": torch.ones(1)})))
        assert out["s"].item() == 1024 * 1024
        assert_serving(http)


def test_graph_live_results_share_the_allocation_cap(
        make_server: Callable[..., BackgroundServer]) -> None:
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


def test_server_busy_is_503(make_server: Callable[..., BackgroundServer]) -> None:
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
                statuses.append(http.post("/execute?op=relu", content=GOOD).status_code)
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


def test_out_of_memory_is_503_and_the_server_carries_on(
        make_server: Callable[..., BackgroundServer]) -> None:
    # 2**50 float32 (4 PiB) is past any machine's address space, so the allocation
    # fails for real, whatever the overcommit policy; the cap is lifted to let it try.
    srv = make_server(max_held_mb=float(2**33))
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        resp = http.post("/execute", params={"op": "zeros", "args": json.dumps({"size": [2**50]})})
        message = assert_error(resp, 503, "out_of_memory")
        assert "out of memory" in message
        assert http.get("/stats").json()["errors_by_type"] == {"out_of_memory": 1}
        assert_serving(http)


# --- auth ----------------------------------------------------------------------------------


def test_token_required_when_configured(make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(token="s3cret")
    good = {"authorization": "Bearer s3cret"}
    with httpx.Client(base_url=srv.url) as http:
        assert http.get("/health", headers=good).json()["auth"] is True
        cases = [({}, "/health"), ({"authorization": "Bearer wrong"}, "/health"),
                 ({"authorization": "s3cret"}, "/stats"), ({"authorization": "Basic s3cret"}, "/ops"),
                 ({"authorization": "Bearer s3cret2"}, "/metrics"),
                 ({"authorization": "Bearer"}, "/tensors")]
        for headers, path in cases:
            resp = http.get(path, headers=headers)
            assert_error(resp, 401, "unauthorized")
            assert resp.headers["www-authenticate"] == "Bearer"
        resp = http.post("/execute?op=relu", content=GOOD)
        assert_error(resp, 401, "unauthorized")
        stats = http.get("/stats", headers=good).json()
        assert stats["errors_by_type"] == {"unauthorized": len(cases) + 1}
        assert_serving(http, headers=good)
        assert tensors_of(http.post("/echo", content=GOOD, headers={"Authorization": "bearer s3cret"}))


def test_no_token_means_no_header_needed(http: httpx.Client) -> None:
    assert http.get("/health").status_code == 200
    # A stray Authorization header is ignored when the server has no token.
    assert http.get("/health", headers={"authorization": "Bearer whatever"}).status_code == 200


# --- isolation and concurrency ----------------------------------------------------------------


def test_two_apps_in_one_process_share_nothing(make_server: Callable[..., BackgroundServer]) -> None:
    a, b = make_server(), make_server()
    with httpx.Client(base_url=a.url) as ha, httpx.Client(base_url=b.url) as hb:
        handle = ha.post("/tensors", content=GOOD).json()["id"]
        ha.post("/execute?op=nope", content=GOOD)
        assert_error(hb.get(f"/tensors/{handle}"), 404, "not_found")
        sa, sb = ha.get("/stats").json(), hb.get("/stats").json()
        assert sa["held"]["tensors"] == 1 and sb["held"]["tensors"] == 0
        assert sa["errors_by_type"] == {"unsupported_op": 1}
        assert sb["errors_by_type"] == {"not_found": 1}
        assert "POST /tensors" in sa["endpoints"] and "POST /tensors" not in sb["endpoints"]
        assert a.app.state.genie is not b.app.state.genie


def test_concurrent_requests_all_get_their_own_answer(server: BackgroundServer) -> None:
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


# --- CUDA (skipped on CPU-only machines, never faked) -------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device; this machine has none")


@needs_cuda
def test_cuda_server_computes_holds_and_reports_the_gpu(
        make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(device="cuda")
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        info = http.get("/health").json()
        assert info["device_type"] == "cuda" and info["gpu_count"] >= 1
        assert info["gpu_name"] and info["gpu_memory_total_bytes"] > 0
        a, b = torch.randn(64, 32), torch.randn(32, 16)
        out = tensors_of(http.post("/execute?op=matmul", content=st_body({"input": a, "other": b})))
        torch.testing.assert_close(out["output"], a @ b, rtol=1e-3, atol=1e-3)
        handle = http.post("/tensors", content=st_body({"w": b})).json()["id"]
        graph = {"nodes": [{"id": "y", "op": "matmul", "args": [{"input": "x"}, {"handle": handle}]}]}
        out = tensors_of(http.post("/graph", content=graph_body(graph, {"x": a})))
        torch.testing.assert_close(out["y"], a @ b, rtol=1e-3, atol=1e-3)
        assert torch.equal(tensors_of(http.get(f"/tensors/{handle}"))[handle], b)
        assert http.get("/device").json()["benchmark"]["median_ms"] > 0


@needs_cuda
def test_cuda_out_of_memory_is_503_and_the_server_carries_on(
        make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(device="cuda", max_held_mb=float(2**30))  # lift the allocation cap
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        resp = http.post("/execute", params={"op": "zeros", "args": json.dumps({"size": [2**44]})})
        assert_error(resp, 503, "out_of_memory")  # 64 TiB: more than any GPU has
        assert http.get("/stats").json()["errors_by_type"] == {"out_of_memory": 1}
        assert_serving(http)


# --- fuzz: no graph a client can send makes the server fail with a 500 ----------------------

_REF = st.sampled_from([{"input": "x"}, {"input": "nope"}, {"node": "a"}, {"node": "b"},
                        {"node": "zz"}, {"handle": "nope"}, {"dtype": "float16"},
                        {"dtype": "complex128"}, {"slice": [0, 2, 1]}, {"slice": [0]},
                        {"ellipsis": True}, {"what": 1}, {"input": 3}, {}, {"a": 1, "b": 2}])
_ARG = st.recursive(st.integers(-2, 4) | st.booleans() | st.none() | st.floats(-2, 2)
                    | st.sampled_from(["x", "mean"]) | _REF,
                    lambda inner: st.lists(inner, max_size=3), max_leaves=5)
_NODE = st.fixed_dictionaries(
    {"id": st.sampled_from(["a", "b", "c"]),
     "op": st.sampled_from(["relu", "add", "matmul", "sum", "cat", "getitem", "reshape", "to",
                            "zeros", "nope"])},
    optional={"args": st.lists(_ARG, max_size=3) | _ARG,
              "kwargs": st.dictionaries(st.sampled_from(["other", "dim", "dtype", "bogus"]),
                                        _ARG, max_size=2) | _ARG})
_GRAPH = st.fixed_dictionaries(
    {"nodes": st.lists(_NODE, max_size=3)},
    optional={"outputs": st.lists(st.sampled_from(["a", "b", "c", "q"]), max_size=2) | _ARG,
              "keep": st.booleans() | st.lists(st.sampled_from(["a", "b", "q"]), max_size=2)})


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(spec=_GRAPH)
def test_random_graphs_get_documented_answers(http: httpx.Client, spec: dict[str, Any]) -> None:
    resp = http.post("/graph", content=graph_body(spec, {"x": X}))
    assert resp.status_code in (200, 400, 404, 413, 422), (spec, resp.text)
    if resp.status_code == 200:
        kept = decode(resp.content).metadata.get(HANDLES_METADATA_KEY)
        for info in json.loads(kept or "{}").values():
            assert http.delete(f"/tensors/{info['id']}").status_code == 200
    else:
        assert_error(resp, resp.status_code, resp.json()["error"]["type"])


@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(op=st.sampled_from([*sorted(REGISTRY), "nope"]),
       args=st.dictionaries(st.sampled_from(["input", "other", "dim", "dtype", "tensors", "size",
                                             "index", "shape", "bogus"]), _ARG, max_size=3),
       names=st.lists(st.sampled_from(["x", "input", "other", "weight", "junk"]), max_size=2,
                      unique=True))
def test_random_execute_requests_get_documented_answers(http: httpx.Client, op: str,
                                                        args: dict[str, Any],
                                                        names: list[str]) -> None:
    body = st_body({n: X for n in names})
    resp = http.post("/execute", params={"op": op, "args": json.dumps(args)}, content=body)
    assert resp.status_code in (200, 400, 404, 413, 422), (op, args, names, resp.text)
    if resp.status_code != 200:
        assert_error(resp, resp.status_code, resp.json()["error"]["type"])
