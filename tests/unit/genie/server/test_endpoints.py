"""The HTTP endpoints (genie.server.endpoints) over real HTTP: what each route reads,
computes and answers: /health (also in the original server's words, read by the original
scripts' own grep and cut pipelines), GET / (the routes), /ops, /execute (body tensors
bound by name, arguments from the query, tagged arguments, factories without a body,
dtypes kept, in place over the received body), /echo, /probe (bytes counted and dropped,
bytes made, within the body limit), and /graph's kept outputs, which are handles only
once the reply is sent, and never views of the request body; no /execute request a
client can send makes the server answer a 500.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genie.graph import HANDLES_METADATA_KEY
from genie.ops import REGISTRY
from genie.protocol import PROTOCOL_VERSION
from genie.server.app import ROUTES
from genie.server.runner import BackgroundServer
from genie.wire import decode


def test_health_reports_device_versions_and_counters(http: httpx.Client) -> None:
    info = http.get("/health").json()
    assert info["status"] == "healthy"
    assert info["device"] == "cpu" and info["device_type"] == "cpu"
    assert info["cuda_available"] is torch.cuda.is_available()
    for key in ("gpu_name", "gpu_count", "gpu_memory_total_bytes", "gpu_memory_free_bytes"):
        assert key in info
    assert info["torch_version"] == torch.__version__
    assert info["protocol_version"] == PROTOCOL_VERSION
    assert info["ops"] == len(REGISTRY)
    assert info["auth"] is False
    assert info["uptime_s"] >= 0
    assert set(info["stats"]) == {"total_requests", "successful", "failed"}


def test_health_in_the_original_servers_words(server: BackgroundServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        http.post("/execute?op=nope", content=b"")  # one failed request to count
        info = http.get("/health").json()
    assert info["status"] == "healthy"
    assert info["uptime"] == info["uptime_s"] >= 0
    stats = info["stats"]
    assert stats["total_requests"] == stats["successful"] + stats["failed"]
    assert stats["failed"] >= 1
    assert "requests" not in info  # the counters appear once (the scripts grep "failed")


#: The original scripts' reading of /health, verbatim (server_test_commands.sh and
#: client_test_commands.sh): grep and cut over compact JSON, no JSON parser.
ORIGINAL_PIPELINES = {
    "healthy": """echo "$HEALTH_RESPONSE" | grep -q '"status":"healthy"' && echo yes""",
    "device": """echo "$HEALTH_RESPONSE" | grep -o '"device":"[^"]*"' | cut -d'"' -f4""",
    "cuda_available": ("""echo "$HEALTH_RESPONSE" | grep -o '"cuda_available":[^,]*' """
                       """| cut -d':' -f2 | tr -d ' '"""),
    "has_stats": """echo "$HEALTH_RESPONSE" | grep -q '"stats"' && echo yes""",
    "total_requests": """echo "$HEALTH_RESPONSE" | grep -o '"total_requests":[0-9]*' | cut -d':' -f2""",
    "successful": """echo "$HEALTH_RESPONSE" | grep -o '"successful":[0-9]*' | cut -d':' -f2""",
    "failed": """echo "$HEALTH_RESPONSE" | grep -o '"failed":[0-9]*' | cut -d':' -f2""",
}


def test_the_original_scripts_grep_and_cut_health(server: BackgroundServer) -> None:
    bash = shutil.which("bash")
    assert bash, "bash runs the guide's scripts"
    curl = shutil.which("curl")
    fetch = (f"HEALTH_RESPONSE=$({curl} -s {server.url}/health)" if curl  # as the scripts do
             else f"HEALTH_RESPONSE={json.dumps(httpx.get(f'{server.url}/health').text)}")
    info = httpx.get(f"{server.url}/health").json()
    got = {name: subprocess.run([bash, "-c", f"{fetch}\n{pipeline}"], capture_output=True,
                                text=True, timeout=30).stdout.strip()
           for name, pipeline in ORIGINAL_PIPELINES.items()}
    assert got["healthy"] == "yes" and got["has_stats"] == "yes"
    assert got["device"] == info["device"] == "cpu"
    assert got["cuda_available"] == json.dumps(info["cuda_available"])
    # Counters move between the requests; each is one whole number, read once.
    assert int(got["total_requests"]) >= 1 and int(got["successful"]) >= 1
    assert got["failed"].isdigit()  # exactly one match: one whole number, not two lines


def test_index_lists_every_route(http: httpx.Client, server: BackgroundServer) -> None:
    listing = http.get("/").json()
    assert listing["service"] == "genie" and listing["protocol_version"] == PROTOCOL_VERSION
    listed = {(e["method"], e["path"]) for e in listing["endpoints"]}
    assert listed == {("GET", "/"), *((m, p) for m, p, _, _ in ROUTES)}
    served = {(m, route.path) for route in server.app.routes for m in getattr(route, "methods", ())
              if m != "HEAD"}
    assert listed == served
    assert all(e["description"] and "\n" not in e["description"] for e in listing["endpoints"])


def test_ops_lists_every_op_with_its_signature(http: httpx.Client) -> None:
    ops = http.get("/ops").json()["ops"]
    assert [o["name"] for o in ops] == sorted(REGISTRY)
    by_name = {o["name"]: o["signature"] for o in ops}
    assert by_name["sum"] == "sum(input, dim=None, keepdim=False, dtype=None)"


def test_execute_relu_with_a_lone_tensor_of_any_name(
        http: httpx.Client, x: torch.Tensor, st_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    for name in ("x", "input", "anything"):
        out = tensors_of(http.post("/execute?op=relu", content=st_body({name: x})))
        assert list(out) == ["output"]
        assert torch.equal(out["output"], torch.relu(x))


def test_execute_binds_body_tensors_by_name_and_args_from_query(
        http: httpx.Client, x: torch.Tensor, st_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    y = torch.tensor([10.0, 20.0, 30.0])
    body = st_body({"input": x, "other": y})
    out = tensors_of(http.post("/execute", params={"op": "add", "args": '{"alpha": 2}'},
                               content=body))
    assert torch.equal(out["output"], torch.add(x, y, alpha=2))
    # A lone tensor binds to the first parameter, the named one to its parameter.
    out = tensors_of(http.post("/execute", params={"op": "sub"},
                               content=st_body({"a": x, "other": y})))
    assert torch.equal(out["output"], x - y)
    out = tensors_of(http.post("/execute", params={"op": "sum", "args": '{"dim": 1, "keepdim": true}'},
                               content=st_body({"x": x})))
    assert torch.equal(out["output"], x.sum(1, keepdim=True))


def test_execute_tagged_args(http: httpx.Client, x: torch.Tensor, st_body: Callable[..., bytes],
                             tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    out = tensors_of(http.post("/execute", params={"op": "to", "args": '{"dtype": {"dtype": "bfloat16"}}'},
                               content=st_body({"x": x})))
    assert out["output"].dtype == torch.bfloat16
    args = json.dumps({"index": [{"ellipsis": True}, {"slice": [None, None, 2]}]})
    out = tensors_of(http.post("/execute", params={"op": "getitem", "args": args},
                               content=st_body({"x": x})))
    assert torch.equal(out["output"], x[..., ::2])
    # {"input": NAME} refers to a body tensor, e.g. for a list argument.
    args = json.dumps({"tensors": [{"input": "a"}, {"input": "b"}], "dim": 1})
    out = tensors_of(http.post("/execute", params={"op": "cat", "args": args},
                               content=st_body({"a": x, "b": x * 2})))
    assert torch.equal(out["output"], torch.cat([x, x * 2], 1))


def test_execute_factory_without_body(http: httpx.Client,
                                      tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    args = json.dumps({"size": [2, 3], "seed": 42})
    first = tensors_of(http.post("/execute", params={"op": "randn", "args": args}))["output"]
    again = tensors_of(http.post("/execute", params={"op": "randn", "args": args}))["output"]
    assert torch.equal(first, torch.randn(2, 3, generator=torch.Generator().manual_seed(42)))
    assert torch.equal(first, again)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64, torch.int32,
                                   torch.uint8, torch.bool])
def test_execute_keeps_dtypes(http: httpx.Client, dtype: torch.dtype, st_body: Callable[..., bytes],
                              tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    x = torch.tensor([[1, 0, 3], [0, 5, 1]]).to(dtype)
    out = tensors_of(http.post("/execute?op=t", content=st_body({"x": x})))["output"]
    assert out.dtype == dtype and torch.equal(out, x.t())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
def test_execute_unary_ops_match_eager_bits(http: httpx.Client, dtype: torch.dtype,
                                            st_body: Callable[..., bytes],
                                            tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
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


def test_echo_is_bit_exact_and_keeps_metadata(http: httpx.Client, st_body: Callable[..., bytes],
                                              tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
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


def test_execute_args_may_refer_to_one_body_tensor_twice(
        http: httpx.Client, x: torch.Tensor, st_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    args = json.dumps({"tensors": [{"input": "a"}, {"input": "a"}, {"input": "b"}], "dim": 1})
    out = tensors_of(http.post("/execute", params={"op": "cat", "args": args},
                               content=st_body({"a": x, "b": -x})))
    assert torch.equal(out["output"], torch.cat([x, x, -x], 1))


# --- /graph: what is kept on the server ----------------------------------------------


def test_graph_keep_returns_handles_usable_later(http: httpx.Client, x: torch.Tensor,
                                                 graph_body: Callable[..., bytes],
                                                 tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    before = http.get("/stats").json()["held"]
    graph = {"nodes": [{"id": "a", "op": "mul", "args": [{"input": "x"}, 3]},
                       {"id": "b", "op": "neg", "args": [{"node": "a"}]}],
             "outputs": ["a", "b"], "keep": ["a"]}
    resp = http.post("/graph", content=graph_body(graph, {"x": x}))
    out = tensors_of(resp)
    assert list(out) == ["b"] and torch.equal(out["b"], -(x * 3))
    kept = json.loads(decode(resp.content).metadata[HANDLES_METADATA_KEY])
    assert set(kept) == {"a"}
    info = kept["a"]
    assert info["shape"] == [2, 3] and info["dtype"] == "float32" and info["nbytes"] == 24
    assert http.get("/stats").json()["held"]["tensors"] == before["tensors"] + 1
    # The handle feeds a later graph, and can be fetched.
    graph2 = {"nodes": [{"id": "z", "op": "sub", "args": [{"handle": info["id"]}, {"input": "y"}]}]}
    out2 = tensors_of(http.post("/graph", content=graph_body(graph2, {"y": x})))
    assert torch.equal(out2["z"], x * 3 - x)
    assert torch.equal(tensors_of(http.get(f"/tensors/{info['id']}"))[info["id"]], x * 3)
    # keep: true keeps every output, returning none.
    resp = http.post("/graph", content=graph_body({**graph, "keep": True}, {"x": x}))
    assert tensors_of(resp) == {}
    both = json.loads(decode(resp.content).metadata[HANDLES_METADATA_KEY])
    assert set(both) == {"a", "b"}
    for h in (info["id"], both["a"]["id"], both["b"]["id"]):
        assert http.delete(f"/tensors/{h}").status_code == 200
    assert http.get("/stats").json()["held"] == before


def test_graph_failing_to_reply_holds_nothing(http: httpx.Client, graph_body: Callable[..., bytes],
                                              assert_error: Callable[..., str]) -> None:
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


def test_graph_reply_failing_on_host_memory_holds_nothing(http: httpx.Client,
                                                          graph_body: Callable[..., bytes],
                                                          assert_serving: Callable[..., None]) -> None:
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


def test_graph_kept_input_does_not_pin_the_request_body(server: BackgroundServer, http: httpx.Client,
                                                        graph_body: Callable[..., bytes]) -> None:
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


# --- fuzz: no /execute request a client can send makes the server fail with a 500 -----

@settings(max_examples=150, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(op=st.sampled_from([*sorted(REGISTRY), "nope"]),
       names=st.lists(st.sampled_from(["x", "input", "other", "weight", "junk"]), max_size=2,
                      unique=True),
       data=st.data())
def test_random_execute_requests_get_documented_answers(
        http: httpx.Client, wire_args: st.SearchStrategy[Any], op: str, names: list[str],
        data: st.DataObject, x: torch.Tensor, st_body: Callable[..., bytes],
        assert_error: Callable[..., str]) -> None:
    args = data.draw(st.dictionaries(st.sampled_from(["input", "other", "dim", "dtype", "tensors",
                                                      "size", "index", "shape", "bogus"]),
                                     wire_args, max_size=3), label="args")
    body = st_body({n: x for n in names})
    resp = http.post("/execute", params={"op": op, "args": json.dumps(args)}, content=body)
    assert resp.status_code in (200, 400, 404, 413, 422), (op, args, names, resp.text)
    if resp.status_code != 200:
        assert_error(resp, resp.status_code, resp.json()["error"]["type"])


def test_a_refused_request_leaves_nothing_in_the_meta_cache(
        make_server: Callable[..., BackgroundServer], st_body: Callable[..., bytes],
        graph_body: Callable[..., bytes], assert_error: Callable[..., str]) -> None:
    # The attack: every distinct argument set a request makes the server infer stayed in
    # its cache, refused or not.  Now what a request learns is staged and committed only
    # when its reply is ready, so 200 refused reshapes and 3 refused graphs leave the
    # cache as it was, while a request that succeeds still fills it.
    srv = make_server()
    cache = srv.app.state.genie.executor.meta
    body = st_body({"x": torch.ones(2, 3)})
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        before = len(cache)
        for i in range(200):
            resp = http.post("/execute", params={"op": "reshape",
                                                 "args": json.dumps({"shape": [i + 7, 5]})},
                             content=body)
            assert_error(resp, 422, "invalid_arguments")
        for g in range(3):  # 50 nodes that each infer a new key, then one refused
            nodes = [{"id": f"n{i}", "op": "add", "args": [{"input": "x"}, g * 100 + i]}
                     for i in range(50)]
            nodes.append({"id": "bad", "op": "reshape", "args": [{"node": "n0"}, [7, 5]]})
            assert_error(http.post("/graph", content=graph_body({"nodes": nodes},
                                                                 {"x": torch.ones(2, 3)})),
                         422, "invalid_arguments")
        assert len(cache) == before
        ok = http.post("/execute", params={"op": "reshape", "args": '{"shape": [3, 2]}'},
                       content=body)
        assert ok.status_code == 200 and len(cache) == before + 1


@pytest.mark.parametrize("op", ["real", "imag"])
def test_real_and_imag_of_a_one_element_complex_tensor_come_back(
        http: httpx.Client, op: str, st_body: Callable[..., bytes],
        graph_body: Callable[..., bytes], tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    # Their result is a strided view that torch calls contiguous (a size-1 dim's stride
    # does not count), which the reply's byte view once refused with a 500.
    z = torch.tensor([1.5 - 2.5j], dtype=torch.complex64)
    expected = getattr(torch, op)(z)
    out = tensors_of(http.post(f"/execute?op={op}", content=st_body({"z": z})))["output"]
    assert torch.equal(out, expected)
    graph = {"nodes": [{"id": "p", "op": op, "args": [{"input": "z"}]}]}
    assert torch.equal(tensors_of(http.post("/graph", content=graph_body(graph, {"z": z})))["p"],
                       expected)


@pytest.mark.parametrize("nbytes", [0, 1, 1024 * 1024, 3 * 1024 * 1024 + 7])
def test_probe_counts_what_is_posted_and_sends_what_is_asked(http: httpx.Client, nbytes: int) -> None:
    posted = http.post("/probe", content=bytes(range(256)) * (nbytes // 256) + b"x" * (nbytes % 256))
    assert posted.status_code == 200 and posted.json() == {"bytes": nbytes}
    got = http.get("/probe", params={"bytes": nbytes})
    assert got.status_code == 200
    assert got.headers["content-type"] == "application/octet-stream"
    assert int(got.headers["content-length"]) == nbytes
    assert got.content == bytes(nbytes)
    endpoints = http.get("/stats").json()["endpoints"]
    assert endpoints["GET /probe"]["bytes_out"] >= nbytes and endpoints["POST /probe"]["bytes_in"] >= nbytes


@pytest.mark.parametrize("query", [{}, {"bytes": "-1"}, {"bytes": "1e3"}, {"bytes": "ten"}, {"bytes": ""},
                                   {"bytes": "\u00b2"}, {"bytes": "\u0663"}, {"bytes": "9" * 5000}])
def test_probe_without_a_whole_number_of_bytes_is_malformed(http: httpx.Client,
                                                            query: dict[str, str]) -> None:
    resp = http.get("/probe", params=query)
    assert resp.status_code == 400
    assert resp.json()["error"]["type"] == "malformed_request"
    assert "?bytes=N" in resp.json()["error"]["message"]


def test_probe_stays_within_the_body_limit_both_ways(make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(max_body_mb=1)
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        assert http.get("/probe", params={"bytes": 2**20}).status_code == 200
        for resp in (http.get("/probe", params={"bytes": 2**20 + 1}),
                     http.post("/probe", content=bytes(2**20 + 1))):
            assert resp.status_code == 413, resp.text
            assert resp.json()["error"]["type"] == "payload_too_large"
            assert "--max-body-mb" in resp.json()["error"]["message"]
        assert http.get("/health").status_code == 200


def test_probe_needs_the_token(make_server: Callable[..., BackgroundServer]) -> None:
    srv = make_server(token="t0ken")
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        assert http.get("/probe", params={"bytes": 1}).status_code == 401
        assert http.post("/probe", content=b"x").status_code == 401
        ok = http.get("/probe", params={"bytes": 1}, headers={"authorization": "Bearer t0ken"})
        assert ok.content == b"\0"
