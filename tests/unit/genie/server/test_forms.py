"""The original server's /execute form (genie.server.forms) over real HTTP: the guide's
``curl -X POST $URL/execute -F operation=relu -F tensor_file=@x.safetensors`` with the
real curl, op arguments as form fields, large files (parsed in slices, file data that
looks like a boundary across a slice edge), and every refusal: a pickle or torch.save
file (415), a form cut short or over its bounds (400), over --max-body-mb (413); the
server serving on after each.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
import safetensors.torch
import torch

from genie.server.endpoints import NO_OP
from genie.server.forms import MAX_FIELD_BYTES, MAX_PARTS, SLICE_BYTES, parse_execute_form
from genie.server.runner import BackgroundServer
from genie.wire import CONVERSION

CURL = shutil.which("curl")
needs_curl = pytest.mark.skipif(CURL is None, reason="the curl binary is not installed "
                                "(.ci/run installs it)")
BOUNDARY = "genie-test-boundary"


def form_body(fields: dict[str, str] | list[tuple[str, str]], file: bytes | None = None, *,
              name: str = "tensor_file", boundary: str = BOUNDARY, close: bool = True) -> bytes:
    """A multipart/form-data body written by hand: what a browser or curl sends."""
    out = bytearray()
    for key, value in (fields.items() if isinstance(fields, dict) else fields):
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{key}\"\r\n\r\n"
                f"{value}\r\n").encode()
    if file is not None:
        out += (f"--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; "
                f"filename=\"x.safetensors\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                ).encode() + file + b"\r\n"
    if close:
        out += f"--{boundary}--\r\n".encode()
    return bytes(out)


def post_form(http: httpx.Client, body: bytes, path: str = "/execute",
              boundary: str = BOUNDARY) -> httpx.Response:
    return http.post(path, content=body,
                     headers={"content-type": f"multipart/form-data; boundary={boundary}"})


@needs_curl
def test_the_guides_curl_form_with_a_safetensors_file(server: BackgroundServer, tmp_path: Path,
                                                       x: torch.Tensor) -> None:
    assert CURL is not None
    safetensors.torch.save_file({"x": x}, str(tmp_path / "x.safetensors"))
    for fields, want in ((["-F", "operation=relu"], torch.relu(x)),
                         (["-F", "operation=sum", "-F", "dim=1"], x.sum(dim=1)),
                         (["-F", "operation=sum", "-F", "dim=1", "-F", "keepdim=true"],
                          x.sum(dim=1, keepdim=True))):
        out = tmp_path / "y.safetensors"
        done = subprocess.run(
            [CURL, "-s", "-X", "POST", f"{server.url}/execute", *fields,
             "-F", f"tensor_file=@{tmp_path / 'x.safetensors'}", "-o", str(out),
             "-w", "%{http_code}"], capture_output=True, text=True, timeout=60)
        assert done.stdout == "200", (fields, out.read_text(errors="replace"))
        assert torch.equal(safetensors.torch.load_file(str(out))["output"], want), fields


@needs_curl
def test_curl_with_a_torch_save_file_is_refused_with_the_conversion(
        server: BackgroundServer, tmp_path: Path, x: torch.Tensor,
        assert_serving: Callable[..., None]) -> None:
    assert CURL is not None
    torch.save(x, str(tmp_path / "x.pt"))  # what the original guide's scripts uploaded
    done = subprocess.run(
        [CURL, "-s", "-X", "POST", f"{server.url}/execute", "-F", "operation=relu",
         "-F", f"tensor_file=@{tmp_path / 'x.pt'}", "-w", "\n%{http_code}"],
        capture_output=True, text=True, timeout=60)
    body, code = done.stdout.rsplit("\n", 1)
    assert code == "415"
    error = json.loads(body)["error"]
    assert error["type"] == "unsupported_media_type"
    assert "torch.save" in error["message"] and "pickle" in error["message"]
    assert "safety" in error["message"] and CONVERSION in error["message"]
    assert_serving(server)


def test_form_by_httpx_binds_like_a_body(http: httpx.Client, x: torch.Tensor,
                                         tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    two = safetensors.torch.save({"input": x, "other": x * 2})
    out = tensors_of(http.post("/execute", data={"operation": "add", "alpha": "3"},
                               files={"tensor_file": ("t.safetensors", two)}))
    assert torch.equal(out["output"], torch.add(x, x * 2, alpha=3))
    # The op may come from the query; arguments from ?args= and the form together.
    one = safetensors.torch.save({"x": x})
    out = tensors_of(http.post("/execute", params={"op": "sum", "args": '{"dim": 0}'},
                               data={"keepdim": "true"}, files={"tensor_file": ("x", one)}))
    assert torch.equal(out["output"], x.sum(dim=0, keepdim=True))
    # A factory op needs no file at all.
    out = tensors_of(post_form(http, form_body({"operation": "zeros", "size": "[2, 3]"})))
    assert torch.equal(out["output"], torch.zeros(2, 3))


@pytest.mark.parametrize("at", [SLICE_BYTES - 40, SLICE_BYTES - 3, 2 * SLICE_BYTES - 1])
def test_file_data_that_looks_like_a_boundary_across_a_slice_edge(
        http: httpx.Client, at: int, tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    """The parser holds back bytes that may start the boundary; when they turn out to be
    data, they must land in the file where they were, even across the slices it is fed."""
    data = torch.arange(3 * SLICE_BYTES, dtype=torch.int64).remainder(251).to(torch.uint8)
    almost = f"\r\n--{BOUNDARY}"[:-1].encode()  # the boundary less its last byte
    file_head = len(safetensors.torch.save({"x": data})) - data.numel()
    body_head = len(form_body({"operation": "neg"}, b"")) - len(f"\r\n--{BOUNDARY}--\r\n")
    start = at - body_head - file_head  # where in the tensor the lookalike must sit
    data[start:start + len(almost)] = torch.frombuffer(bytearray(almost), dtype=torch.uint8)
    body = form_body({"operation": "neg"}, safetensors.torch.save({"x": data}))
    assert body[at:at + len(almost)] == almost
    out = tensors_of(post_form(http, body))
    assert torch.equal(out["output"], torch.neg(data))


def test_a_large_file_round_trips_bit_exact(http: httpx.Client,
                                            tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
    big = torch.randn(1024, 1024, generator=torch.Generator().manual_seed(2))  # 4 MiB: mmap'd body
    body = form_body({"operation": "relu"}, safetensors.torch.save({"x": big}))
    assert torch.equal(tensors_of(post_form(http, body))["output"], torch.relu(big))


def test_parse_moves_the_file_to_the_front_and_reads_fields_as_json() -> None:
    file = safetensors.torch.save({"x": torch.ones(3)})
    body = bytearray(form_body({"operation": " relu ", "dim": "1", "flag": "true",
                                "shape": "[2, 3]", "reduction": "mean"}, file))
    form = parse_execute_form(body, f"multipart/form-data; boundary={BOUNDARY}")
    assert form.op == "relu"
    assert form.args == {"dim": 1, "flag": True, "shape": [2, 3], "reduction": "mean"}
    assert bytes(form.tensors) == file and form.tensors.obj is body  # the same buffer, no copy


def _pickled(x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    torch.save(x, buf)
    return buf.getvalue()


REFUSED = [
    ("torch.save file", lambda x: form_body({"operation": "relu"}, _pickled(x)), 415,
     "unsupported_media_type", "pickle is refused for safety"),
    ("no op", lambda x: form_body({}, safetensors.torch.save({"x": x})), 422,
     "unsupported_op", NO_OP),
    ("unknown op", lambda x: form_body({"operation": "relux"}, safetensors.torch.save({"x": x})),
     422, "unsupported_op", "did you mean relu"),
    ("file in another field", lambda x: form_body({"operation": "relu"},
                                                  safetensors.torch.save({"x": x}), name="x"),
     400, "malformed_request", "only one file, in the field 'tensor_file'"),
    ("cut short", lambda x: form_body({"operation": "relu"}, safetensors.torch.save({"x": x}),
                                      close=False), 400, "malformed_request", "closing boundary"),
    ("too many parts", lambda x: form_body({f"f{i}": "1" for i in range(MAX_PARTS + 1)}), 400,
     "malformed_request", f"more than {MAX_PARTS} parts"),
    ("field too large", lambda x: form_body({"operation": "relu", "dim": "1" * (MAX_FIELD_BYTES + 1)}),
     400, "malformed_request", f"over {MAX_FIELD_BYTES} bytes"),
    ("field twice", lambda x: form_body([("operation", "sum"), ("dim", "1"), ("dim", "0")],
                                        safetensors.torch.save({"x": x})),
     400, "malformed_request", "given twice"),
]


@pytest.mark.parametrize(("case", "make", "status", "kind", "says"), REFUSED,
                         ids=[r[0] for r in REFUSED])
def test_bad_forms_are_refused_clearly(
        http: httpx.Client, x: torch.Tensor, case: str, make: Callable[[torch.Tensor], bytes],
        status: int, kind: str, says: str,
        assert_error: Callable[[httpx.Response, int, str], str],
        assert_serving: Callable[..., None]) -> None:
    message = assert_error(post_form(http, make(x)), status, kind)
    assert says in message, message
    if case == "no op":
        assert "abs" not in message  # no list of every op name: nothing was misspelt
    assert_serving(http)


def test_form_edge_cases_in_the_request(http: httpx.Client, x: torch.Tensor,
                                        assert_error: Callable[[httpx.Response, int, str], str]) -> None:
    body = form_body({"operation": "relu"}, safetensors.torch.save({"x": x}))
    no_boundary = http.post("/execute", content=body, headers={"content-type": "multipart/form-data"})
    assert "boundary" in assert_error(no_boundary, 400, "malformed_request")
    two_ops = http.post("/execute?op=neg", content=body,
                        headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert "two ops given" in assert_error(two_ops, 400, "malformed_request")
    both = http.post("/execute", params={"args": '{"dim": 1}'},
                     content=form_body({"operation": "sum", "dim": "0"}, safetensors.torch.save({"x": x})),
                     headers={"content-type": f"multipart/form-data; boundary={BOUNDARY}"})
    assert "both the form and args" in assert_error(both, 400, "malformed_request")


def test_a_form_gets_no_way_past_the_body_limit(make_server: Callable[..., BackgroundServer],
                                                assert_error: Callable[[httpx.Response, int, str], str],
                                                assert_serving: Callable[..., None]) -> None:
    srv = make_server(max_body_mb=1)
    body = form_body({"operation": "relu"}, safetensors.torch.save({"x": torch.zeros(300_000)}))
    with httpx.Client(base_url=srv.url, timeout=30) as http:
        assert_error(post_form(http, body), 413, "payload_too_large")
        assert_serving(http)
