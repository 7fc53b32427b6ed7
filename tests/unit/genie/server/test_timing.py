"""The phases of a request (genie.server.timing): every computing reply carries a
``Server-Timing`` header with its decode, compute and encode durations."""

from __future__ import annotations

from collections.abc import Callable

import httpx
import torch


def test_server_timing_on_computing_responses(http: httpx.Client, x: torch.Tensor,
                                              st_body: Callable[..., bytes],
                                              graph_body: Callable[..., bytes]) -> None:
    responses = [
        http.post("/execute?op=relu", content=st_body({"x": x})),
        http.post("/echo", content=st_body({"x": x})),
        http.post("/graph", content=graph_body(
            {"nodes": [{"id": "a", "op": "relu", "args": [{"input": "x"}]}]}, {"x": x})),
        http.post("/tensors", content=st_body({"x": x})),
    ]
    for resp in responses:
        assert resp.status_code in (200, 201), resp.text
        phases = {p.split(";")[0].strip(): float(p.split("dur=")[1])
                  for p in resp.headers["server-timing"].split(",")}
        assert set(phases) == {"decode", "compute", "encode"}
        assert all(v >= 0 for v in phases.values())
    http.delete(f"/tensors/{responses[-1].json()['id']}")
