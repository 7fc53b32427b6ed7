"""The server's compute device (genie.server.device): /device times a matmul
benchmark, and on a CUDA machine the server computes, holds and reports the GPU and
turns its out-of-memory into a 503 (skipped on CPU-only machines, never faked)."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
import torch

from genie.server.runner import BackgroundServer


def test_device_runs_the_matmul_benchmark(http: httpx.Client) -> None:
    resp = http.get("/device")
    info = resp.json()
    assert info["device"] == "cpu"
    bench = info["benchmark"]
    assert bench["matrix_size"] == 1000 and bench["warmup"] >= 1 and bench["repeats"] >= 1
    assert 0 < bench["min_ms"] <= bench["median_ms"] <= bench["max_ms"]
    assert "compute;dur=" in resp.headers["server-timing"]


# --- CUDA (skipped on CPU-only machines, never faked) -------------------------------------

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(),
                                reason="needs a CUDA device; this machine has none")


@needs_cuda
def test_cuda_server_computes_holds_and_reports_the_gpu(
        make_server: Callable[..., BackgroundServer], st_body: Callable[..., bytes],
        graph_body: Callable[..., bytes], tensors_of: Callable[..., dict[str, torch.Tensor]]) -> None:
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
        make_server: Callable[..., BackgroundServer], assert_error: Callable[..., str],
        assert_serving: Callable[..., None]) -> None:
    srv = make_server(device="cuda", max_held_mb=float(2**30))  # lift the allocation cap
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        resp = http.post("/execute", params={"op": "zeros", "args": json.dumps({"size": [2**44]})})
        assert_error(resp, 503, "out_of_memory")  # 64 TiB: more than any GPU has
        assert http.get("/stats").json()["errors_by_type"] == {"out_of_memory": 1}
        assert_serving(http)


@needs_cuda
def test_cuda_memory_capped_by_max_gpu_mb_answers_503(
        make_server: Callable[..., BackgroundServer], assert_error: Callable[..., str],
        tensors_of: Callable[..., dict[str, torch.Tensor]],
        assert_serving: Callable[..., None]) -> None:
    # 128 MiB fits the compute cap (1 GiB) but not PyTorch's allocator, capped at 64 MiB.
    srv = make_server(device="cuda", max_gpu_mb=64, max_compute_mb=1024)
    with httpx.Client(base_url=srv.url, timeout=120) as http:
        resp = http.post("/execute", params={"op": "zeros", "args": json.dumps({"size": [2**25]})})
        assert_error(resp, 503, "out_of_memory")
        small = http.post("/execute", params={"op": "ones", "args": json.dumps({"size": [2**20]})})
        assert tensors_of(small)["output"].sum().item() == 2**20
        assert_serving(http)
