"""Errors as replies (genie.server.failures): every bad request is refused with its
documented status and ``{"error": {"type", "message"}}``, counted once by type, and
leaves the server healthy and serving; messages name what went wrong (both shapes of a
mismatch, the supported ops and the closest ones, how to convert a pickle, how to name
an op), and running out of memory is a 503 the server survives.
"""

from __future__ import annotations

import io
import json
import pickle
import struct
from collections.abc import Callable
from dataclasses import dataclass
from operator import attrgetter
from typing import Any

import httpx
import pytest
import torch

from genie.graph import GRAPH_METADATA_KEY
from genie.server.endpoints import NO_OP
from genie.server.runner import BackgroundServer
from genie.wire import CONVERSION


def raw_body(header: dict[str, Any] | bytes, data: bytes = b"") -> bytes:
    """A body the safetensors library would refuse to write: what a hostile client sends."""
    head = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


@dataclass(frozen=True)
class Bodies:
    """What a row of ``BAD_REQUESTS`` makes its body from, when the test runs: the
    tensor ``x``, the valid body of it, and the fixtures that make bodies."""

    x: torch.Tensor
    good: bytes
    st: Callable[..., bytes]
    graph: Callable[..., bytes]


GOOD = attrgetter("good")


def _torch_save(b: Bodies, **kwargs: Any) -> bytes:
    """What the original guide's clients uploaded: ``torch.save`` of the tensor."""
    buf = io.BytesIO()
    torch.save(b.x, buf, **kwargs)
    return buf.getvalue()


#: Every flavour of pickle a client may send: torch.save's zip, the pre-1.6 torch.save
#: (a bare pickle), and pickle.dumps at its newest and oldest binary protocols.
PICKLES = {
    "torch-save-zip": _torch_save,
    "torch-save-legacy": lambda b: _torch_save(b, _use_new_zipfile_serialization=False),
    "pickle-5": lambda b: pickle.dumps(b.x, protocol=5),
    "pickle-2": lambda b: pickle.dumps({"x": [1.0, 2.0]}, protocol=2),
}


def _lying(b: Bodies) -> bytes:
    """The valid body, its header claiming more data than there is."""
    lying = bytearray(b.good)
    lying[8:8 + len(b.good) - 8] = b.good[8:].replace(b'"data_offsets":[0,24]',
                                                      b'"data_offsets":[0,99]')
    assert bytes(lying) != b.good
    return bytes(lying)


RELU_A = {"nodes": [{"id": "a", "op": "relu", "args": [{"input": "x"}]}]}

#: (id, method, path, request arguments, status, error type).  A "content" that is a
#: function of ``Bodies`` is made when the test runs.
BAD_REQUESTS: list[tuple[str, str, str, dict[str, Any], int, str]] = [
    ("not-safetensors", "POST", "/execute?op=relu", {"content": b"hello there, a text file"},
     400, "malformed_request"),
    ("truncated", "POST", "/execute?op=relu", {"content": lambda b: b.good[:-5]}, 400, "malformed_request"),
    ("truncated-header", "POST", "/echo", {"content": lambda b: b.good[:20]}, 400, "malformed_request"),
    ("lying-header", "POST", "/echo", {"content": _lying}, 400, "malformed_request"),
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
    ("graph-nested-too-deep", "POST", "/graph", {"content": lambda b: b.st(
        {}, {GRAPH_METADATA_KEY: '{"nodes": ' + "[" * 50_000 + "]" * 50_000 + "}"})},
     400, "malformed_request"),
    # Deep enough for json (under its recursion limit), too deep for what walks it after.
    ("args-nested-500-deep", "POST", '/execute?op=sum&args={"dim":' + "[" * 500 + "]" * 500 + "}",
     {"content": GOOD}, 400, "malformed_request"),
    ("graph-kwargs-nested-500-deep", "POST", "/graph", {"content": lambda b: b.st(
        {"x": b.x}, {GRAPH_METADATA_KEY: '{"nodes": [{"id": "a", "op": "sum", "args": '
                     '[{"input": "x"}], "kwargs": {"dim": ' + "[" * 500 + "]" * 500 + "}}]}"})},
     400, "malformed_request"),
    ("graph-slice-nested-500-deep", "POST", "/graph", {"content": lambda b: b.st(
        {"x": b.x}, {GRAPH_METADATA_KEY: '{"nodes": [{"id": "a", "op": "getitem", "args": '
                     '[{"input": "x"}, {"slice": [' + "[" * 500 + "]" * 500 + ', 1, 1]}]}]}'})},
     400, "malformed_request"),
    ("embedding-padding-idx-out-of-range", "POST", '/execute?op=embedding&args={"padding_idx":7}',
     {"content": lambda b: b.st({"input": torch.tensor([0, 1]), "weight": b.x})},
     422, "invalid_arguments"),
    ("unknown-tag", "POST", '/execute?op=sum&args={"dim":{"what":1}}', {"content": GOOD},
     400, "malformed_request"),
    ("stray-body-tensors", "POST", "/execute?op=relu", {"content": lambda b: b.st({"a": b.x, "b": b.x})},
     400, "malformed_request"),
    ("tensor-in-body-and-args", "POST", '/execute?op=add&args={"other":1}',
     {"content": lambda b: b.st({"input": b.x, "other": b.x})}, 400, "malformed_request"),
    ("graph-bad-json", "POST", "/graph", {"content": lambda b: b.st({}, {GRAPH_METADATA_KEY: "{nodes"})},
     400, "malformed_request"),
    ("graph-missing", "POST", "/graph", {"content": GOOD}, 400, "malformed_request"),
    ("graph-missing-input", "POST", "/graph", {"content": lambda b: b.graph(RELU_A)}, 400,
     "malformed_request"),
    ("graph-forward-ref", "POST", "/graph", {"content": lambda b: b.graph(
        {"nodes": [{"id": "a", "op": "relu", "args": [{"node": "b"}]},
                   {"id": "b", "op": "relu", "args": [{"input": "x"}]}]}, {"x": b.x})},
     400, "malformed_request"),
    ("graph-duplicate-id", "POST", "/graph", {"content": lambda b: b.graph(
        {"nodes": [RELU_A["nodes"][0], RELU_A["nodes"][0]]}, {"x": b.x})}, 400, "malformed_request"),
    ("graph-unknown-output", "POST", "/graph", {"content": lambda b: b.graph(
        {**RELU_A, "outputs": ["zz"]}, {"x": b.x})}, 400, "malformed_request"),
    ("two-tensors-put", "POST", "/tensors", {"content": lambda b: b.st({"a": b.x, "b": b.x})},
     400, "malformed_request"),
    ("unknown-handle-get", "GET", "/tensors/0123456789abcdef", {}, 404, "not_found"),
    ("unknown-handle-delete", "DELETE", "/tensors/nope", {}, 404, "not_found"),
    ("unknown-handle-graph", "POST", "/graph", {"content": lambda b: b.graph(
        {"nodes": [{"id": "a", "op": "relu", "args": [{"handle": "nope"}]}]})}, 404, "not_found"),
    ("unknown-route", "GET", "/v2/execute", {}, 404, "not_found"),
    ("unknown-route-post", "POST", "/admin", {"content": GOOD}, 404, "not_found"),
    ("method-post-health", "POST", "/health", {}, 405, "method_not_allowed"),
    ("method-get-execute", "GET", "/execute?op=relu", {}, 405, "method_not_allowed"),
    ("method-put-tensors", "PUT", "/tensors/abc", {"content": GOOD}, 405, "method_not_allowed"),
    ("unsupported-op", "POST", "/execute?op=system", {"content": GOOD}, 422, "unsupported_op"),
    ("no-op", "POST", "/execute", {"content": GOOD}, 422, "unsupported_op"),
    ("graph-unsupported-op", "POST", "/graph", {"content": lambda b: b.graph(
        {"nodes": [{"id": "a", "op": "eval", "args": [{"input": "x"}]}]}, {"x": b.x})},
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
    # A pickle is never loaded, on any endpoint that takes a body.
    *((f"{kind}-{path.split('?')[0].strip('/')}", "POST", path, {"content": make}, 415,
       "unsupported_media_type")
      for kind, make in PICKLES.items()
      for path in ("/execute?op=relu", "/graph", "/tensors", "/echo")),
]


@pytest.mark.parametrize(("method", "path", "kwargs", "status", "error_type"),
                         [pytest.param(*r[1:], id=r[0]) for r in BAD_REQUESTS])
def test_bad_request_is_refused_counted_and_harmless(
        http: httpx.Client, method: str, path: str, kwargs: dict[str, Any], status: int,
        error_type: str, x: torch.Tensor, good_body: bytes, st_body: Callable[..., bytes],
        graph_body: Callable[..., bytes], assert_error: Callable[..., str],
        errors_by_type: Callable[..., dict[str, int]],
        wait_for_errors: Callable[..., dict[str, int]], delta: Callable[..., dict[str, int]],
        assert_serving: Callable[..., None]) -> None:
    bodies = Bodies(x, good_body, st_body, graph_body)
    kwargs = {k: v(bodies) if callable(v) else v for k, v in kwargs.items()}
    before = errors_by_type(http)
    assert_error(http.request(method, path, **kwargs), status, error_type)
    after = wait_for_errors(http, before, 1)
    assert delta(before, after) == {error_type: 1}
    assert_serving(http)


def test_matmul_mismatch_names_both_shapes(http: httpx.Client, st_body: Callable[..., bytes],
                                           graph_body: Callable[..., bytes], assert_error: Callable[..., str],
                                           assert_serving: Callable[..., None]) -> None:
    body = st_body({"input": torch.ones(2, 3), "other": torch.ones(4, 5)})
    message = assert_error(http.post("/execute?op=matmul", content=body), 422, "invalid_arguments")
    assert "[2, 3]" in message and "[4, 5]" in message
    graph = {"nodes": [{"id": "m", "op": "mm", "args": [{"input": "a"}, {"input": "b"}]}]}
    message = assert_error(http.post("/graph", content=graph_body(
        graph, {"a": torch.ones(7, 3), "b": torch.ones(2, 9)})), 422, "invalid_arguments")
    assert "[7, 3]" in message and "[2, 9]" in message
    assert_serving(http)


def test_unsupported_op_lists_supported_ops(http: httpx.Client, good_body: bytes,
                                            assert_error: Callable[..., str]) -> None:
    message = assert_error(http.post("/execute?op=__import__", content=good_body), 422, "unsupported_op")
    assert "'__import__'" in message and "relu" in message and "matmul" in message
    message = assert_error(http.post("/execute?op=RELU", content=good_body), 422, "unsupported_op")
    assert message.startswith("unsupported op 'RELU'; did you mean relu")


def test_no_op_says_how_to_name_one(http: httpx.Client, good_body: bytes,
                                    assert_error: Callable[..., str]) -> None:
    # Before the body is read: the answer does not wait for an upload.
    assert assert_error(http.post("/execute", content=good_body), 422, "unsupported_op") == NO_OP
    assert NO_OP == "no op given (use ?op=NAME or the form field operation)"


def test_a_pickle_is_refused_saying_why_and_how_to_convert(
        http: httpx.Client, x: torch.Tensor, st_body: Callable[..., bytes],
        assert_error: Callable[..., str]) -> None:
    bodies = Bodies(x, b"", st_body, lambda *a: b"")
    for kind, make in PICKLES.items():
        message = assert_error(http.post("/echo", content=make(bodies)), 415, "unsupported_media_type")
        assert "pickle is refused for safety" in message and CONVERSION in message, kind
        said = "a torch.save file" if kind == "torch-save-zip" else "a pickle"
        assert message.startswith(f"the tensor data sent is {said}"), (kind, message)
    # A valid safetensors body whose header length begins with the same bytes as a
    # pickle (0x80, then protocol 2) is not mistaken for one.
    head = json.dumps({"x": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    head += b" " * (0x0280 - len(head))
    body = struct.pack("<Q", len(head)) + head + struct.pack("<2f", 1.5, -2.0)
    assert body[:2] == b"\x80\x02"
    echoed = http.post("/echo", content=body)
    assert echoed.status_code == 200, echoed.text


def test_out_of_memory_is_503_and_the_server_carries_on(make_server: Callable[..., BackgroundServer],
                                                        assert_error: Callable[..., str],
                                                        assert_serving: Callable[..., None]) -> None:
    # 2**50 float32 (4 PiB) is past any machine's address space, so the allocation
    # fails for real, whatever the overcommit policy; the cap is lifted to let it try.
    srv = make_server(max_held_mb=float(2**33))
    with httpx.Client(base_url=srv.url, timeout=60) as http:
        resp = http.post("/execute", params={"op": "zeros", "args": json.dumps({"size": [2**50]})})
        message = assert_error(resp, 503, "out_of_memory")
        assert "out of memory" in message
        assert http.get("/stats").json()["errors_by_type"] == {"out_of_memory": 1}
        assert_serving(http)
