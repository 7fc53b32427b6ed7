"""The server app (genie.server.app): everything an app owns lives on its own state,
so two apps in one process share no handles and no counts; and no input to any of its
endpoints (bodies, queries, graph JSON, forms, paths, session headers; deep nesting and
lying headers among them) gets an answer its documentation does not give, nor a 500.
"""

from __future__ import annotations

import json
import os
import struct
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from genie.graph import GRAPH_METADATA_KEY
from genie.ops import REGISTRY
from genie.server.app import ROUTES
from genie.server.config import ServerConfig
from genie.server.runner import BackgroundServer
from genie.wire import encode


def test_two_apps_in_one_process_share_nothing(make_server: Callable[..., BackgroundServer], good_body: bytes,
                                               assert_error: Callable[..., str]) -> None:
    a, b = make_server(), make_server()
    with httpx.Client(base_url=a.url) as ha, httpx.Client(base_url=b.url) as hb:
        handle = ha.post("/tensors", content=good_body).json()["id"]
        ha.post("/execute?op=nope", content=good_body)
        assert_error(hb.get(f"/tensors/{handle}"), 404, "not_found")
        sa, sb = ha.get("/stats").json(), hb.get("/stats").json()
        assert sa["held"]["tensors"] == 1 and sb["held"]["tensors"] == 0
        assert sa["errors_by_type"] == {"unsupported_op": 1}
        assert sb["errors_by_type"] == {"not_found": 1}
        assert "POST /tensors" in sa["endpoints"] and "POST /tensors" not in sb["endpoints"]
        assert a.app.state.genie is not b.app.state.genie


# --- fuzz: no input to any endpoint gets a 5xx other than a documented 503 ------------

#: Examples per endpoint: small in CI; ``GENIE_FUZZ_EXAMPLES=10000`` for a real run.
FUZZ_EXAMPLES = int(os.environ.get("GENIE_FUZZ_EXAMPLES", "40"))
#: Except ``GET /device``, each example of which runs the server's 13-matmul benchmark
#: (about 0.5 s here): at most this many.
DEVICE_EXAMPLES = min(FUZZ_EXAMPLES, 1000)
#: What each endpoint may answer (docs/protocol.md section 3); 5xx only 503 busy/OOM.
STATUSES: dict[str, set[int]] = {
    "GET /": {200}, "GET /health": {200}, "GET /ops": {200}, "GET /stats": {200},
    "GET /metrics": {200}, "GET /device": {200, 503},
    "POST /execute": {200, 400, 404, 413, 415, 422, 503},
    "POST /graph": {200, 400, 404, 413, 415, 422, 503},
    "POST /echo": {200, 400, 413, 415, 422, 503},
    "POST /probe": {200, 400, 413, 503}, "GET /probe": {200, 400, 413, 503},
    "POST /tensors": {201, 400, 413, 415, 422, 503},
    "GET /tensors": {200, 400, 404},
    "POST /tensors/release": {200, 400, 413, 503},
    "GET /tensors/{handle}": {200, 404, 422, 503}, "DELETE /tensors/{handle}": {200, 404},
    "GET /sessions/{session}": {200, 400, 404}, "DELETE /sessions/{session}": {200, 400},
}
#: Every answer may also be: a bad X-Genie-Session header, an unknown path or method, a
#: head refused, busy.
ANYWHERE = {400, 404, 405, 408, 431, 503}
ERROR_TYPES = {400: {"malformed_request"}, 404: {"not_found"}, 405: {"method_not_allowed"},
               408: {"request_timeout"}, 413: {"payload_too_large", "budget_exceeded"},
               415: {"unsupported_media_type"}, 422: {"invalid_arguments", "unsupported_op",
                                                      "unsupported_dtype", "compute_timeout"},
               431: {"header_too_large"}, 503: {"busy", "out_of_memory"}}
DTYPES = [torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.int64, torch.int32,
          torch.int8, torch.uint8, torch.bool, torch.complex64]


def _nested(depth: int, leaf: str = "1") -> str:
    return "[" * depth + leaf + "]" * depth


def _json_values() -> st.SearchStrategy[Any]:
    """JSON values as a client may send them: scalars, names, references, dtypes and
    slices (valid or not), lists and objects, a few of them absurdly deep or large."""
    leaf = (st.integers(-3, 5) | st.integers() | st.booleans() | st.none()
            | st.floats(allow_nan=False) | st.text(max_size=8)
            | st.sampled_from(["x", "y", "mean", "float64", "relu", "..."]))
    tagged = st.sampled_from([{"input": "x"}, {"input": "nope"}, {"node": "a"}, {"node": "zz"},
                              {"handle": "nope"}, {"dtype": "float16"}, {"dtype": "complex128"},
                              {"slice": [0, 2, 1]}, {"slice": [None, None, -1]}, {"slice": [0]},
                              {"ellipsis": True}, {"what": 1}, {"input": 3}, {}, {"a": 1, "b": 2}])
    shallow = st.recursive(leaf | tagged, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=6), inner, max_size=3),
                           max_leaves=8)
    return shallow | st.sampled_from(DEEP)


#: Stand-ins for values nested this deep, replaced in the JSON text by ``dumps``: around
#: json's own recursion limit (1000) and far past it, and where walking them once failed.
DEEP = [f"<deep {d}>" for d in (40, 300, 490, 510, 800, 990, 1100, 2500)]


def dumps(value: Any) -> str:
    """``json.dumps``, each ``DEEP`` stand-in replaced by lists nested that deep."""
    text = json.dumps(value)
    for marker in DEEP:
        text = text.replace(json.dumps(marker), _nested(int(marker[6:-1])))
    return text


def _tensors() -> st.SearchStrategy[dict[str, torch.Tensor]]:
    shape = st.lists(st.integers(0, 5), max_size=3)
    tensor = st.tuples(st.sampled_from(DTYPES), shape).map(
        lambda ds: (torch.randn(ds[1]) * 4).to(ds[0]))
    names = st.sampled_from(["x", "input", "other", "weight", "target", "t", "tensors", "index"])
    return st.dictionaries(names, tensor, max_size=3)


def _bodies(metadata: st.SearchStrategy[dict[str, str] | None] | None = None
            ) -> st.SearchStrategy[bytes]:
    """Safetensors bodies: valid ones, ones cut short or with bytes flipped, headers of
    any JSON (deep, huge, lying), pickles, and plain noise."""
    valid = st.builds(lambda ts, md: encode(ts, md).to_bytes(), _tensors(),
                      st.none() if metadata is None else metadata)

    def damaged(body: bytes, cut: int, flip: int) -> bytes:
        b = bytearray(body[:max(0, len(body) - cut)])
        if b:
            b[flip % len(b)] ^= 0x5A
        return bytes(b)

    crafted = st.builds(lambda v: (lambda h: struct.pack("<Q", len(h)) + h)(
        dumps(v).encode()), _json_values())
    deep_header = st.integers(100, 200_000).map(
        lambda d: (lambda h: struct.pack("<Q", len(h)) + h)(
            (_nested(d, "") if d % 2 else '{"a":' + _nested(d, "") + "}").encode()))
    return st.one_of(valid, valid, valid,
                     st.builds(damaged, valid, st.integers(0, 64), st.integers(0, 10**6)),
                     crafted, deep_header, st.binary(max_size=256),
                     st.sampled_from([b"", b"\x80\x04\x95", b"PK\x03\x04rest",
                                      struct.pack("<Q", 2**63) + b"{}"]))


def _graphs() -> st.SearchStrategy[str]:
    ids = st.sampled_from(["a", "b", "c", "q"])
    node = st.fixed_dictionaries(
        {"id": ids | _json_values(),
         "op": st.sampled_from(["relu", "add", "matmul", "sum", "cat", "getitem", "reshape",
                                "expand", "to", "zeros", "embedding", "conv2d", "einsum",
                                "nope"])},
        optional={"args": st.lists(_json_values(), max_size=3) | _json_values(),
                  "kwargs": st.dictionaries(st.sampled_from(["other", "dim", "dtype", "bogus",
                                                             "padding_idx"]),
                                            _json_values(), max_size=2)})
    graph = st.fixed_dictionaries(
        {"nodes": st.lists(node, max_size=4) | _json_values()},
        optional={"outputs": st.lists(ids, max_size=2) | _json_values(),
                  "keep": st.booleans() | st.lists(ids, max_size=2),
                  "release": st.lists(st.text(max_size=8), max_size=2) | _json_values()})
    return graph.map(dumps) | st.text(max_size=40) | st.integers(10, 5000).map(
        lambda d: '{"nodes": ' + _nested(d) + "}")


def _forms() -> st.SearchStrategy[tuple[bytes, str]]:
    """Multipart forms, valid or broken, as (body, Content-Type)."""
    boundary = "fuzzb"

    def form(fields: dict[str, str], file: bytes | None, close: bool) -> tuple[bytes, str]:
        out = bytearray()
        for k, v in fields.items():
            out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n"
                    f"{v}\r\n").encode()
        if file is not None:
            out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"tensor_file\"; "
                    "filename=\"x.safetensors\"\r\n\r\n").encode() + file + b"\r\n"
        if close:
            out += f"--{boundary}--\r\n".encode()
        return bytes(out), f"multipart/form-data; boundary={boundary}"

    fields = st.dictionaries(st.sampled_from(["operation", "dim", "keepdim", "other", "x", "args"]),
                             st.sampled_from(["relu", "sum", "1", "true", "[1]", "nope"])
                             | _json_values().map(dumps), max_size=3)
    return (st.builds(form, fields, st.none() | _bodies(), st.booleans())
            | st.tuples(st.binary(max_size=128),
                        st.sampled_from(["multipart/form-data", "multipart/form-data; boundary=",
                                         "multipart/form-data; boundary=x"])))


def _request(route: str) -> st.SearchStrategy[dict[str, Any]]:
    """httpx request arguments for ``route``: its method and path, a query, a body."""
    method, path = route.split(" ")
    if "{handle}" in path:
        path = path.replace("{handle}", "%s")
        target = st.sampled_from(["nope", "0" * 32, "..", "%2F", "a" * 300, "é", *HELD]).map(
            lambda h: path % h)
    elif "{session}" in path:
        path = path.replace("{session}", "%s")
        target = st.sampled_from(["s1", "bad id", "x" * 200, "-_", "é", "."]).map(
            lambda s: path % s)
    else:
        target = st.just(path)
    query = st.dictionaries(st.sampled_from(["op", "args", "limit", "after", "bytes", "x"]),
                            st.sampled_from([*sorted(REGISTRY)[:40], "nope", "", "10", "0",
                                             "1048577", "99999999999999999999", "²"])
                            | _json_values().map(dumps) | st.text(max_size=12), max_size=3)
    if path == "/execute":  # mostly a real op, with arguments as the client sends them
        query = st.builds(lambda op, args, q: {**q, "op": op, "args": dumps(args)},
                          st.sampled_from(sorted(REGISTRY)),
                          st.dictionaries(st.sampled_from(["input", "other", "dim", "dtype",
                                                           "size", "shape", "index", "p"]),
                                          _json_values(), max_size=3), query) | query
    if route == "GET /probe":
        query = st.builds(lambda n, q: {**q, "bytes": n},
                          st.sampled_from(["0", "10", "1048576", "1048577", "8388608", "8388609",
                                           "99999999999999999999", "-1", "1e3", "²"]), query)
    session = st.sampled_from([None] * 6 + ["fuzz", "fuzz-2", "bad session", "é" * 3])
    if path == "/graph":
        content = _bodies(st.builds(lambda g: {GRAPH_METADATA_KEY: g}, _graphs()))
    elif path == "/tensors/release":
        content = _json_values().map(lambda v: dumps(v).encode()) | st.builds(
            lambda ids: json.dumps({"ids": ids}).encode(), st.lists(st.text(max_size=8)))
    elif method == "POST":
        content = _bodies()
    else:
        content = st.just(b"")

    def build(t: str, q: dict[str, str], c: bytes, s: str | None,
              form: tuple[bytes, str] | None) -> dict[str, Any]:
        headers: dict[str, Any] = {} if s is None else {"x-genie-session": s.encode()}
        if form is not None:
            c, headers["content-type"] = form
        return {"method": method, "url": t, "params": q, "content": c, "headers": headers}

    forms = st.none() | _forms() if path == "/execute" else st.none()
    return st.builds(build, target, query, content, session, forms)


#: Handles the fuzzed requests may name: held by ``fuzz_server`` (of several dtypes).
HELD: list[str] = []


def test_the_fuzz_covers_every_route() -> None:
    assert set(STATUSES) == {"GET /"} | {f"{m} {p}" for m, p, _, _ in ROUTES}


@pytest.fixture(scope="module")
def fuzz_server() -> Iterator[BackgroundServer]:
    """A server of its own, with small limits, so that budgets and caps are exercised,
    holding a few tensors whose handles the requests may name."""
    with BackgroundServer(ServerConfig(device="cpu", max_body_mb=8, max_held_mb=16,
                                       max_compute_mb=64, max_compute_s=5)) as srv:
        store = srv.app.state.genie.store
        HELD[:] = [store.put_many({"t": (torch.randn(3, 2) * 3).to(d)})["t"]["id"]
                   for d in DTYPES[:4]]
        yield srv


@pytest.mark.filterwarnings("ignore::UserWarning")  # torch's notes on odd arguments
@pytest.mark.timeout(max(600, FUZZ_EXAMPLES // 4))
@pytest.mark.parametrize("route", sorted(STATUSES))
def test_no_input_to_any_endpoint_gets_an_undocumented_answer(
        fuzz_server: BackgroundServer, route: str,
        assert_serving: Callable[..., None]) -> None:
    seen: Counter[int] = Counter()
    with httpx.Client(base_url=fuzz_server.url, timeout=60) as http:

        @settings(max_examples=DEVICE_EXAMPLES if route == "GET /device" else FUZZ_EXAMPLES,
                  deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(request=_request(route))
        def check(request: dict[str, Any]) -> None:
            resp = http.request(**request)
            seen[resp.status_code] += 1
            allowed = STATUSES[route] | ANYWHERE
            assert resp.status_code in allowed, (route, request, resp.text[:300])
            if resp.status_code >= 400:
                body = resp.json()
                assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
                assert body["error"]["type"] in ERROR_TYPES[resp.status_code], body

        check()
        assert "internal" not in http.get("/stats").json()["errors_by_type"]
        http.post("/sessions/fuzz", content=b"")  # no-op if it does not exist
    assert_serving(fuzz_server)
    print(f"{route}: {sum(seen.values())} examples, statuses {dict(sorted(seen.items()))}")
