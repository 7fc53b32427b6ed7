"""Server configuration (genie.server.config): the memory budget its limits state holds.

A real ``genie-server`` in a child process, with limits of a few MiB, is attacked the
ways that once walked around them, each scaled down: a meta-cache filled by refused
requests, a header of millions of empty lists, working memory far over the result
(a broadcast loss, an unfolded float64 convolution, an expanded tensor summed as
float64), replies left unread, bodies declared large and trickled.  Each is refused or
served, and the server's peak RSS (its kernel high-water mark, reset before each)
stays within ``ServerConfig.memory_budget`` above where it started.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest
import safetensors.torch
import torch

from genie.graph import GRAPH_METADATA_KEY
from genie.server.config import PROCESS_OVERHEAD_BYTES, ServerConfig

MB = 1024 * 1024
#: What the interpreter and allocators may add while serving (buffers, thread stacks,
#: freed memory not yet returned to the system), besides what the budget counts.
SLACK = 48 * MB
FLAGS = {"max_body_mb": 8, "max_held_mb": 8, "max_inflight_body_mb": 16,
         "max_inflight_reply_mb": 16, "max_compute_mb": 8, "compute_threads": 2,
         "max_connections": 64, "max_header_kb": 16, "write_timeout_s": 1.0,
         "header_timeout_s": 1.0, "body_timeout_s": 1.0}


def flags() -> list[str]:
    return [arg for k, v in FLAGS.items() for arg in (f"--{k.replace('_', '-')}", str(v))]


def post(url: str, path: str, **kwargs: Any) -> httpx.Response:
    with httpx.Client(base_url=url, timeout=60) as http:
        return http.post(path, **kwargs)


def graph_of(nodes: list[dict[str, Any]], inputs: dict[str, torch.Tensor]) -> bytes:
    return safetensors.torch.save(inputs, metadata={GRAPH_METADATA_KEY: json.dumps(
        {"nodes": nodes})})


def test_the_budget_is_what_the_flags_add_up_to() -> None:
    config = ServerConfig(**FLAGS)  # type: ignore[arg-type]
    budget = config.memory_budget
    assert budget.held == 8 * MB and budget.bodies == 16 * MB and budget.replies == 16 * MB
    assert budget.compute == 2 * 8 * MB
    assert budget.connections == 64 * (16 * 1024 + 80 * 1024)
    assert budget.total == (56 * MB + budget.connections + PROCESS_OVERHEAD_BYTES)
    defaults = ServerConfig().memory_budget  # held 8 GiB, bodies 8, replies 8, compute 4 x 8
    assert defaults.describe()["total"] == 8192 * 7 + 144 + 384


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads RSS from /proc")
def test_attacks_stay_within_the_stated_budget(
        child_server: Callable[..., Any], st_body: Callable[..., bytes]) -> None:
    srv = child_server(*flags())
    budget = ServerConfig(**FLAGS).memory_budget  # type: ignore[arg-type]
    allowed = budget.total - PROCESS_OVERHEAD_BYTES + SLACK
    peaks: dict[str, int] = {}

    def attack(name: str, fn: Callable[[], None]) -> None:
        peaks[name] = srv.peak(fn)
        assert peaks[name] <= allowed, (name, peaks[name] // MB, allowed // MB)

    def refused_reshapes() -> None:  # finding 1: 15,000-element shapes, refused
        with httpx.Client(base_url=srv.url, timeout=60) as http:
            for i in range(300):
                body = graph_of([{"id": "r", "op": "reshape",
                                  "args": [{"input": "x"}, [i + 7] + [1] * 15_000]}],
                                {"x": torch.ones(2, 3)})
                assert http.post("/graph", content=body).status_code == 422

    before = srv.rss()
    attack("refused reshapes", refused_reshapes)
    assert srv.rss() - before < 16 * MB, "refused requests left memory behind"

    def header_of_empty_lists() -> None:  # finding 4: 2.6 million empty lists, 8 MB
        header = b"[" + b"[]," * 2_600_000 + b"[]]"
        resp = post(srv.url, "/echo", content=struct.pack("<Q", len(header)) + header)
        assert resp.status_code == 413 and "parsing" in resp.json()["error"]["message"]

    attack("header of empty lists", header_of_empty_lists)

    def working_memory() -> None:  # finding 2: small results, large working sets
        for path, kwargs in [
            ("/execute?op=mse_loss", {"content": st_body(
                {"input": torch.ones(4096, 1), "target": torch.ones(1, 4096)})}),
            ("/execute?op=conv2d", {"content": st_body(
                {"input": torch.ones(1, 1, 192, 192, dtype=torch.float64),
                 "weight": torch.ones(1, 1, 16, 16, dtype=torch.float64)})}),
            ("/graph", {"content": graph_of(
                [{"id": "e", "op": "expand", "args": [{"input": "x"}, [4096, 4096]]},
                 {"id": "s", "op": "sum", "args": [{"node": "e"}], "kwargs": {"dtype": "float64"}}],
                {"x": torch.ones(1)})}),
        ]:
            resp = post(srv.url, path, **kwargs)
            assert resp.status_code == 422, resp.text

    attack("working memory", working_memory)

    def unread_replies() -> None:  # finding 3: twelve clients that never read, 8 MiB each
        request = (b"POST /execute?op=zeros&args=%7B%22size%22%3A%5B2097152%5D%7D HTTP/1.1\r\n"
                   b"Host: x\r\nContent-Length: 0\r\n\r\n")
        stuck = []
        for _ in range(12):
            s = socket.socket()
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            s.connect(("127.0.0.1", srv.port))
            s.sendall(request)
            stuck.append(s)
        heads = []
        for s in stuck:
            s.settimeout(10)
            heads.append(s.recv(12))
        time.sleep(1.5)  # past the write timeout: the two in flight are cut off
        for s in stuck:
            s.close()
        # 16 MiB of replies in flight: two are sent (and cut off unread), ten refused.
        assert sorted(heads) == [b"HTTP/1.1 200"] * 2 + [b"HTTP/1.1 503"] * 10, heads

    attack("unread replies", unread_replies)

    def trickled_bodies() -> None:  # finding 7: 8 MiB declared, two bytes sent
        socks = []
        for _ in range(2):
            s = socket.create_connection(("127.0.0.1", srv.port))
            s.sendall(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 8388608\r\n\r\n\x10\x00")
            socks.append(s)
        # Everybody else's bodies still fit meanwhile.
        body = st_body({"x": torch.zeros(1024 * 1024)})
        assert post(srv.url, "/echo", content=body).content == body
        for s in socks:
            s.close()

    attack("trickled bodies", trickled_bodies)
    print({k: f"{v / MB:.0f} MiB" for k, v in peaks.items()}, f"allowed {allowed / MB:.0f} MiB")
    with httpx.Client(base_url=srv.url) as http:
        assert http.get("/health").status_code == 200
        assert "internal" not in http.get("/stats").json()["errors_by_type"]
