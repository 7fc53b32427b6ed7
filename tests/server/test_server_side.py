"""The guide's server-side checks, run on the GPU node: ``pytest -m server``.

Each test asserts what an operator relies on when putting a Genie server into
service, and records in ``genie_record`` the figures the analysis report reads,
under the keys of ``pytest_genie.checks`` (one spelling for the check and the
report).  Without ``--genie-server`` they run against the server the plugin
embeds on 127.0.0.1; with it, against that server.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

import httpx
import pytest
import torch

import genie
from genie.protocol import is_healthy
from genie.wire import decode, encode
from pytest_genie import Key
from pytest_genie.levels import Level
from pytest_genie.results import DISTRIBUTION
from pytest_genie.stats import measure, spreads_to_details

pytestmark = pytest.mark.server

DEPENDENCIES = ["torch", "numpy", "httpx", "starlette", "uvicorn", "safetensors",
                "prometheus-client", DISTRIBUTION]


def test_environment_setup(genie_record: dict[str, Any]) -> None:
    """Every runtime dependency imports, and the installed genie is the one imported."""
    packages = {name: importlib.metadata.version(name) for name in DEPENDENCIES}
    genie_record.update({Key.PYTHON_VERSION: sys.version.split()[0], Key.TORCH_VERSION: torch.__version__,
                         Key.GENIE_VERSION: genie.__version__, Key.PACKAGES: packages})
    for module in ("numpy", "httpx", "starlette", "uvicorn", "safetensors", "prometheus_client"):
        __import__(module)
    assert packages[DISTRIBUTION] == genie.__version__, "installed metadata and imported genie differ"
    # The wire format works in this environment (no pickle anywhere in the path).
    x = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    assert torch.equal(decode(bytearray(encode({"x": x}).to_bytes())).tensors["x"], x)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_healthy(url: str, proc: subprocess.Popen[bytes], token: str | None,
                  deadline_s: float = 60.0) -> dict[str, Any]:
    headers = {"authorization": f"Bearer {token}"} if token else {}
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"server exited early with code {proc.returncode}")
        try:
            resp = httpx.get(f"{url}/health", headers=headers, timeout=1.0)
            if resp.status_code == 200:
                body: dict[str, Any] = resp.json()
                return body
        except httpx.TransportError:
            pass
        time.sleep(0.02)
    raise AssertionError(f"server not healthy within {deadline_s} s")


def test_server_startup(genie_record: dict[str, Any], genie_options: Any) -> None:
    """The real CLI starts, answers /health, and shuts down cleanly on SIGTERM."""
    port = _free_port()
    token = genie_options.token
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("GENIE_TOKEN", None)
    cmd = [sys.executable, "-m", "genie.runtime.simple_server", "--host", "127.0.0.1",
           "--port", str(port), "--log-level", "warning"]
    if token:
        cmd += ["--token", token]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        health = _wait_healthy(f"http://127.0.0.1:{port}", proc, token)
        startup_ms = (time.perf_counter() - started) * 1000
        genie_record.update({Key.PID: proc.pid, Key.PORT: port, Key.STARTUP_MS: round(startup_ms, 1),
                             Key.HEALTH_STATUS: health["status"], Key.DEVICE: health["device"]})
        assert is_healthy(health), health["status"]
        assert health["protocol_version"] == genie.PROTOCOL_VERSION
        stopping = time.perf_counter()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        genie_record[Key.SHUTDOWN_MS] = round((time.perf_counter() - stopping) * 1000, 1)
        output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
        genie_record[Key.EXIT_CODE] = code
        # uvicorn shuts down gracefully, then re-raises the signal it caught, so a clean
        # stop ends "killed by SIGTERM" (which service managers count as success).
        assert code in (0, -signal.SIGTERM), output
        assert "Traceback" not in output, output
        with socket.socket() as probe:
            assert probe.connect_ex(("127.0.0.1", port)) != 0, "port still open after shutdown"
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout:
            proc.stdout.close()


def test_gpu_detection(genie_client: genie.Client, genie_record: dict[str, Any],
                       genie_options: Any) -> None:
    """The server sees its GPU, and a warm synchronized 1000x1000 matmul runs on it."""
    info = genie_client.device()
    bench = info["benchmark"]
    genie_record.update({
        Key.CUDA_AVAILABLE: info["cuda_available"], Key.GPU_COUNT: info["gpu_count"],
        Key.GPU_NAME: info["gpu_name"], Key.GPU_MEMORY_TOTAL_BYTES: info["gpu_memory_total_bytes"],
        Key.DEVICE: info["device"], Key.GPU_TIME_MS: round(bench["median_ms"], 3),
        Key.LOCAL_CUDA_AVAILABLE: torch.cuda.is_available()})
    assert bench["matrix_size"] == 1000 and bench["repeats"] >= 5
    assert math.isfinite(bench["median_ms"]) and bench["median_ms"] > 0
    if info["device_type"] != "cuda":
        reason = (f"the server computes on {info['device']}: no CUDA GPU "
                  f"(cuda_available={info['cuda_available']})")
        if genie_options.require_gpu:
            pytest.fail(f"{reason}, and --genie-require-gpu was given")
        pytest.skip(f"{reason}; pass --genie-require-gpu to make this a failure")
    assert info["gpu_count"] >= 1
    assert info["gpu_name"], "CUDA device without a name"
    assert info["gpu_memory_total_bytes"] > 0
    assert 0 <= info["gpu_memory_free_bytes"] <= info["gpu_memory_total_bytes"]


OPERATION_CASES = [
    ("relu", torch.float32, (64, 64), {}),
    ("sigmoid", torch.float16, (32, 16), {}),
    ("tanh", torch.bfloat16, (8, 128), {}),
    ("sum", torch.float64, (10, 20), {"dim": 1}),
    ("softmax", torch.float32, (4, 50), {"dim": -1}),
    ("mul", torch.int64, (16, 16), {"other": 3}),
    ("abs", torch.int32, (100,), {}),
    ("transpose", torch.uint8, (3, 5), {"dim0": 0, "dim1": 1}),
]


def _local(op: str, x: torch.Tensor, kwargs: dict[str, Any]) -> torch.Tensor:
    eager = {
        "relu": lambda: torch.relu(x), "sigmoid": lambda: torch.sigmoid(x),
        "tanh": lambda: torch.tanh(x), "sum": lambda: x.sum(**kwargs),
        "softmax": lambda: torch.softmax(x, **kwargs), "mul": lambda: x * kwargs["other"],
        "abs": lambda: x.abs(), "transpose": lambda: x.transpose(kwargs["dim0"], kwargs["dim1"]),
    }
    return eager[op]()


def _sample(dtype: torch.dtype, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    if dtype.is_floating_point:
        return torch.randn(shape, generator=gen).to(dtype)
    low = 0 if dtype == torch.uint8 else -100
    return torch.randint(low, 100, shape, generator=gen, dtype=dtype)


def test_server_operations(genie_client: genie.Client, genie_level: Level,
                           genie_record: dict[str, Any]) -> None:
    """HTTP op round trips give what local PyTorch gives, across ops and dtypes; each op's round
    trip is measured after a warm-up until stable (``pytest_genie.stats``)."""
    gen = torch.Generator().manual_seed(1234)
    cases = []
    for op, dtype, shape, kwargs in OPERATION_CASES:
        x = _sample(dtype, shape, gen)
        got = genie_client.execute(op, x, **kwargs)
        want = _local(op, x, kwargs)

        def once(op: str = op, x: torch.Tensor = x, kwargs: dict[str, Any] = kwargs) -> float:
            genie_client.execute(op, x, **kwargs)
            return genie_client.last.round_trip_ms

        timing = measure({Key.ROUND_TRIP_MS: once}, genie_level.quick_timing)
        cases.append({Key.OP: op, Key.DTYPE: str(dtype).removeprefix("torch."), Key.SHAPE: list(shape),
                      Key.EXACT: bool(torch.equal(got, want)), **spreads_to_details(timing, 3)})
        assert got.dtype == want.dtype and got.shape == want.shape, (op, got.dtype, got.shape)
        # A GPU server may differ in the last bits of transcendental functions.
        torch.testing.assert_close(got, want, msg=lambda m, op=op: f"{op}: {m}")
    genie_record.update({Key.CASES: cases, Key.OPS_CHECKED: len(cases),
                         Key.MEDIAN_ROUND_TRIP_MS: round(statistics.median(
                             c[Key.ROUND_TRIP_MS] for c in cases), 3)})


def _endpoint(stats: dict[str, Any], name: str) -> dict[str, Any]:
    empty = {"count": 0, "successes": 0, "failures_by_type": {}}
    return stats["endpoints"].get(name, empty)  # type: ignore[no-any-return]


def test_server_statistics(genie_client: genie.Client, genie_server_url: str,
                           genie_options: Any, genie_record: dict[str, Any]) -> None:
    """Counters move by exactly the requests made, and failures are counted by type.

    Against a server other clients are using at the same time the deltas can be
    larger; run this check on a quiet server.
    """
    before = genie_client.stats()
    x = torch.randn(8, 8)
    for _ in range(3):
        genie_client.execute("relu", x)
    with pytest.raises(genie.UnsupportedOpError):
        genie_client.execute("no_such_op", x)
    headers = {"authorization": f"Bearer {genie_options.token}"} if genie_options.token else {}
    bad = httpx.post(f"{genie_server_url}/execute", params={"op": "relu"},
                     content=b"definitely not safetensors", headers=headers, timeout=30)
    assert bad.status_code == 400
    after = genie_client.stats()

    ep_before, ep_after = _endpoint(before, "POST /execute"), _endpoint(after, "POST /execute")
    made = after["requests"]["total"] - before["requests"]["total"]
    genie_record.update({Key.REQUESTS_BEFORE: before["requests"]["total"],
                         Key.REQUESTS_AFTER: after["requests"]["total"], Key.REQUESTS_MADE: made,
                         Key.FAILURES_BY_TYPE: after["errors_by_type"],
                         Key.ERROR_RATE: after["requests"]["error_rate"]})
    assert ep_after["count"] - ep_before["count"] == 5
    assert ep_after["successes"] - ep_before["successes"] == 3
    for kind in ("unsupported_op", "malformed_request"):
        assert (ep_after["failures_by_type"].get(kind, 0)
                - ep_before["failures_by_type"].get(kind, 0)) == 1, kind
    # 5 executes plus the first /stats call itself (the second is counted after it answers).
    assert made == 6
    assert after["bytes_in"] > before["bytes_in"] and after["bytes_out"] > before["bytes_out"]
    latency = ep_after["latency_ms"]
    assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"]
