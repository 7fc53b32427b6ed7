"""Tensors in and out of requests (genie.server.codec): bodies over 1 MiB are decoded
and replies encoded off the event loop, with the same answers, kept handles and
``Server-Timing`` phases as small ones."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import torch

from genie.graph import HANDLES_METADATA_KEY
from genie.wire import decode


def test_large_bodies_decoded_and_encoded_off_the_loop_answer_the_same(
        http: httpx.Client, st_body: Callable[..., bytes], graph_body: Callable[..., bytes],
        tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
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
