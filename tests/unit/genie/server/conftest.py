"""What the server tests share: request bodies made with the safetensors library
itself (not genie.wire, so these tests also prove that a plain safetensors user can
talk to the server), readers of the two reply shapes, the error counts of ``/stats``,
and the check that a server is still serving.

Each helper is a fixture that returns the function, so that a test file asks for what
it uses by name.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import safetensors.torch
import torch
from hypothesis import strategies as st

from genie.graph import GRAPH_METADATA_KEY
from genie.server.runner import BackgroundServer


def _st_body(tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    # Clones: the library refuses tensors that share memory (the same X twice).
    return safetensors.torch.save({k: v.clone() for k, v in tensors.items()}, metadata=metadata)


def _graph_body(graph: dict[str, Any], inputs: dict[str, torch.Tensor] | None = None) -> bytes:
    return _st_body(inputs or {}, {GRAPH_METADATA_KEY: json.dumps(graph)})


def _tensors_of(resp: httpx.Response) -> dict[str, torch.Tensor]:
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"] == "application/octet-stream"
    assert int(resp.headers["content-length"]) == len(resp.content)
    return safetensors.torch.load(resp.content)


def _assert_error(resp: httpx.Response, status: int, error_type: str) -> str:
    """The one error shape; returns the message."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"type", "message"}
    assert body["error"]["type"] == error_type
    assert body["error"]["message"]
    return str(body["error"]["message"])


def _errors_by_type(http: httpx.Client) -> dict[str, int]:
    return dict(http.get("/stats").json()["errors_by_type"])


def _wait_for_errors(http: httpx.Client, before: dict[str, int], expected: int) -> dict[str, int]:
    """The error counts once ``expected`` more failures are recorded.

    The server records a request just after its last byte is sent, so the very next
    request may overtake the bookkeeping by a moment: poll briefly, then compare.
    """
    deadline = time.monotonic() + 5.0
    while True:
        now = _errors_by_type(http)
        if sum(now.values()) - sum(before.values()) >= expected or time.monotonic() > deadline:
            return now
        time.sleep(0.01)


def _read_reply(sock: socket.socket, with_body: bool = True) -> tuple[bytes, bytes]:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed before a reply: {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while with_body and len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-reply"
        body += chunk
    return head, body


@pytest.fixture
def read_reply() -> Callable[..., tuple[bytes, bytes]]:
    """``read_reply(sock, with_body=True)``: (status line and headers, body) of one
    reply with a Content-Length, read from a raw socket (the body not waited for when
    ``with_body`` is false: a HEAD reply)."""
    return _read_reply


@pytest.fixture
def st_body() -> Callable[..., bytes]:
    """``st_body(tensors, metadata=None)``: a request body made by the safetensors library."""
    return _st_body


@pytest.fixture
def graph_body() -> Callable[..., bytes]:
    """``graph_body(graph, inputs=None)``: a ``POST /graph`` body, the graph in its metadata."""
    return _graph_body


@pytest.fixture
def good_body(x: torch.Tensor) -> bytes:
    """A valid body of one tensor ``x``: what ``/execute?op=relu`` or ``/echo`` accept."""
    return _st_body({"x": x})


@pytest.fixture
def tensors_of() -> Callable[[httpx.Response], dict[str, torch.Tensor]]:
    """``tensors_of(resp)``: the tensors of a 200 safetensors reply, its headers checked."""
    return _tensors_of


@pytest.fixture
def assert_error() -> Callable[[httpx.Response, int, str], str]:
    """``assert_error(resp, status, error_type)``: the one error shape; returns the message."""
    return _assert_error


@pytest.fixture
def errors_by_type() -> Callable[[httpx.Client], dict[str, int]]:
    """``errors_by_type(http)``: the server's failure counts by error type, from /stats."""
    return _errors_by_type


@pytest.fixture
def wait_for_errors() -> Callable[[httpx.Client, dict[str, int], int], dict[str, int]]:
    """``wait_for_errors(http, before, expected)``: the error counts once ``expected``
    more failures than ``before`` are recorded (or after 5 s)."""
    return _wait_for_errors


@pytest.fixture
def delta() -> Callable[[dict[str, int], dict[str, int]], dict[str, int]]:
    """``delta(before, after)``: the counts that changed, by how much."""
    def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
        return {k: after.get(k, 0) - before.get(k, 0) for k in set(before) | set(after)
                if after.get(k, 0) != before.get(k, 0)}
    return delta


@pytest.fixture
def assert_serving(x: torch.Tensor) -> Callable[..., None]:
    """``assert_serving(http_or_server, headers=None)``: /health answers and a good
    request computes the right tensor."""
    def check(http: httpx.Client, headers: dict[str, str] | None) -> None:
        assert http.get("/health", headers=headers).json()["status"] == "healthy"
        out = _tensors_of(http.post("/execute?op=relu", content=_st_body({"x": x}),
                                    headers=headers))
        assert torch.equal(out["output"], torch.relu(x))

    def assert_serving(target: httpx.Client | BackgroundServer,
                       headers: dict[str, str] | None = None) -> None:
        if isinstance(target, httpx.Client):
            check(target, headers)
        else:
            with httpx.Client(base_url=target.url, timeout=30) as http:
                check(http, headers)
    return assert_serving


@pytest.fixture
def wait_until() -> Callable[[Callable[[], bool], str], None]:
    """``wait_until(condition, what)``: poll for a state the server reaches
    asynchronously (not a timing assertion); fails after 30 s naming ``what``."""
    def wait_until(condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"never saw: {what}"
            time.sleep(0.01)
    return wait_until


@pytest.fixture(scope="session")
def wire_args() -> st.SearchStrategy[Any]:
    """JSON argument values as a client may send them in ``args`` or a graph node:
    scalars, names, and tagged references (valid, dangling and malformed), nested."""
    ref = st.sampled_from([{"input": "x"}, {"input": "nope"}, {"node": "a"}, {"node": "b"},
                           {"node": "zz"}, {"handle": "nope"}, {"dtype": "float16"},
                           {"dtype": "complex128"}, {"slice": [0, 2, 1]}, {"slice": [0]},
                           {"ellipsis": True}, {"what": 1}, {"input": 3}, {}, {"a": 1, "b": 2}])
    return st.recursive(st.integers(-2, 4) | st.booleans() | st.none() | st.floats(-2, 2)
                        | st.sampled_from(["x", "mean"]) | ref,
                        lambda inner: st.lists(inner, max_size=3), max_leaves=5)


class ChildServer:
    """``genie-server`` in a child process (so its memory is its own: ``GenieProcess``);
    ``peak(fn)`` is how far its RSS rose above where it was while ``fn`` ran."""

    def __init__(self, process: Any) -> None:
        self.process = process
        self.proc, self.port, self.url = process.proc, process.port, process.url

    def status(self, key: str) -> int:
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
        raise AssertionError(f"no {key} in /proc/{self.proc.pid}/status")

    def rss(self) -> int:
        return self.status("VmRSS")

    def peak(self, fn: Callable[[], None]) -> int:
        """Peak RSS while ``fn`` runs, minus RSS before: the kernel's high-water mark,
        reset first (``clear_refs``), and samples every millisecond where it cannot be."""
        before = self.rss()
        try:
            Path(f"/proc/{self.proc.pid}/clear_refs").write_text("5")
            reset = True
        except OSError:
            reset = False
        sampled = [before]
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.001):
                sampled.append(self.rss())

        watcher = threading.Thread(target=sample, daemon=True)
        watcher.start()
        try:
            fn()
        finally:
            done.set()
            watcher.join()
        top = max(max(sampled), self.status("VmHWM") if reset else 0)
        return top - before

    def stop(self) -> None:
        self.process.stop()


@pytest.fixture
def child_server(genie_process: Callable[..., Any]) -> Iterator[Callable[..., ChildServer]]:
    """``child_server(*flags)``: genie-server in its own process; stopped after the test."""
    started: list[ChildServer] = []

    def start(*flags: str) -> ChildServer:
        srv = ChildServer(genie_process(*flags))
        started.append(srv)
        return srv

    yield start
    for srv in started:
        srv.stop()
