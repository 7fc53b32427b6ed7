"""Sample result files for the report's tests, written the way the plugin writes them.

The contract's schema with realistic figures: a GPU server and its client (remote slower than
local CPU at every swept size), and a CPU server whose client wins from n=2048 on.  Keys are
spelled out as literals on purpose: they are the files' format, so a renamed ``Key`` in
``pytest_genie.checks`` shows up here as a report that no longer finds its figures.

Test modules cannot import each other (``--import-mode=importlib``): they reach these builders
through the ``samples`` fixture.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.report import build_report

MB = 1 << 20


def record(
    name: str,
    status: str = "PASS",
    timing_ms: float = 12.5,
    ts: str = "2026-01-09T14:30:01+00:00",
    **details: Any,
) -> dict[str, Any]:
    return {"name": name, "status": status, "details": details, "timing_ms": timing_ms, "timestamp": ts}


def write_results(
    folder: Path,
    side: str,
    tests: list[dict[str, Any]],
    stamp: str = "20260109_143000",
    hostname: str | None = None,
    server_url: str | None = "http://127.0.0.1:8888",
    cuda: bool = True,
    info: dict[str, Any] | None = None,
) -> Path:
    """A result file; ``info`` adds to (or replaces keys of) its ``test_info``."""
    folder.mkdir(parents=True, exist_ok=True)
    iso = f"{stamp[:4]}-{stamp[4:6]}-{stamp[6:8]}T{stamp[9:11]}:{stamp[11:13]}:{stamp[13:15]}+00:00"
    data = {
        "test_info": {
            "hostname": hostname or f"{side}-node",
            "timestamp": iso,
            "test_type": f"{side}_side",
            "server_url": server_url,
            "python_version": "3.12.3",
            "torch_version": "2.13.0",
            "genie_version": "0.1.0",
            "platform": "Linux-6.8-x86_64",
            "gpu": {
                "cuda_available": cuda,
                "gpu_count": 1 if cuda else 0,
                "gpu_name": "Tesla T4" if cuda else None,
            },
        },
        "tests": tests,
    }
    data["test_info"].update(info or {})
    path = folder / f"{side}_test_results_{stamp}.json"
    path.write_text(json.dumps(data, indent=2), encoding="utf-8")
    return path


def gpu_server_tests() -> list[dict[str, Any]]:
    return [
        record(
            "environment_setup",
            python_version="3.12.3",
            torch_version="2.13.0",
            genie_version="0.1.0",
            packages={"torch": "2.13.0"},
        ),
        record(
            "server_startup",
            timing_ms=850.0,
            startup_ms=812.4,
            shutdown_ms=35.0,
            pid=1234,
            port=8888,
            health_status="ok",
        ),
        record(
            "gpu_detection",
            timing_ms=150.0,
            cuda_available=True,
            gpu_count=1,
            gpu_name="Tesla T4",
            gpu_memory_total_bytes=15 * (1 << 30),
            device="cuda:0",
            gpu_time_ms=19.2,
        ),
        record(
            "server_operations",
            ops_checked=6,
            median_round_trip_ms=4.1,
            cases=[
                {"op": "relu", "dtype": "float32", "shape": [64, 64], "round_trip_ms": 4.1, "exact": True}
            ],
        ),
        record(
            "server_statistics",
            requests_before=3,
            requests_after=7,
            requests_made=4,
            failures_by_type={"UnsupportedOp": 1},
            error_rate=0.25,
        ),
    ]


SLOW_SWEEP = [  # remote slower than local CPU at every size: no break-even
    {"n": 256, "bytes": 256 * 256 * 4, "local_cpu_ms": 0.2, "remote_ms": 9.0, "server_compute_ms": 0.3},
    {"n": 1000, "bytes": 4_000_000, "local_cpu_ms": 1.5, "remote_ms": 105.3, "server_compute_ms": 19.2},
    {"n": 4096, "bytes": 64 * MB, "local_cpu_ms": 95.0, "remote_ms": 1016.0, "server_compute_ms": 60.0},
]


def gpu_client_tests(
    remote_ms: float = 105.3, sweep: list[dict[str, Any]] | None = None
) -> list[dict[str, Any]]:
    return [
        record(
            "network_connectivity",
            host="127.0.0.1",
            port=8888,
            connect_ms_median=0.21,
            connect_ms_min=0.15,
            attempts=5,
        ),
        record(
            "server_connectivity",
            server_url="http://127.0.0.1:8888",
            device="cuda:0",
            cuda_available=True,
            gpu_name="Tesla T4",
            response_ms=2.3,
            protocol_version=1,
            genie_version="0.1.0",
        ),
        record(
            "http_tensor_transfer",
            http_code=200,
            bytes=4_000_000,
            round_trip_ms=107.5,
            mib_per_s=37.2,
            bit_exact=True,
        ),
        record(
            "remote_lazytensor_execution",
            shape=[1000, 1000],
            round_trip_ms=98.0,
            requests_made=1,
            max_abs_error=0.0,
            via="graph",
        ),
        record(
            "performance_comparison",
            timing_ms=2400.0,
            n=1000,
            op="matmul",
            local_cpu_ms=1.5,
            server_compute_ms=19.2,
            remote_ms=remote_ms,
            network_overhead_ms=remote_ms - 19.2,
            network_overhead_pct=(remote_ms - 19.2) / 19.2 * 100,
            slowdown_vs_local_pct=6920.0,
            # The headline figures are the sweep's own row at n (as the check records them).
            sweep=[{**r, "remote_ms": remote_ms} if r["n"] == 1000 else dict(r) for r in SLOW_SWEEP]
            if sweep is None
            else sweep,
            break_even_n=None,
            break_even_bytes=None,
        ),
        record(
            "multi_operation_chain",
            ops=["relu", "sigmoid", "tanh", "abs"],
            requests_made=1,
            round_trip_ms=90.0,
            max_abs_error=0.0,
        ),
        record(
            "error_handling",
            server_healthy_after=True,
            cases={
                "unsupported_op": {
                    "status": 400,
                    "type": "UnsupportedOp",
                    "expected_status": 400,
                    "expected_type": "UnsupportedOp",
                },
                "unknown_handle": {
                    "status": 404,
                    "type": "UnknownHandle",
                    "expected_status": 404,
                    "expected_type": "UnknownHandle",
                },
            },
        ),
        record(
            "large_tensor_handling[256]",
            timing_ms=14000.0,
            size_mb=256.0,
            bytes=256 * MB,
            round_trip_ms=13800.0,
            mib_per_s=37.1,
            bit_exact=True,
        ),
    ]


def cpu_server_tests() -> list[dict[str, Any]]:
    tests = [t for t in gpu_server_tests() if t["name"] != "gpu_detection"]
    tests.insert(
        2,
        record(
            "gpu_detection",
            status="SKIP",
            timing_ms=0.0,
            skip_reason="CUDA is not available on this server (device cpu)",
        ),
    )
    return tests


FAST_SWEEP = [  # a loopback CPU server where the remote side wins from n=2048 on
    {"n": 512, "bytes": 512 * 512 * 4, "local_cpu_ms": 2.0, "remote_ms": 6.0, "server_compute_ms": 1.0},
    {"n": 2048, "bytes": 16 * MB, "local_cpu_ms": 120.0, "remote_ms": 80.0, "server_compute_ms": 60.0},
    {"n": 4096, "bytes": 64 * MB, "local_cpu_ms": 900.0, "remote_ms": 400.0, "server_compute_ms": 300.0},
]


def cpu_client_tests() -> list[dict[str, Any]]:
    tests = gpu_client_tests(sweep=FAST_SWEEP)
    for t in tests:
        if t["name"] == "performance_comparison":
            t["details"].update(
                local_cpu_ms=40.0,
                server_compute_ms=20.0,
                remote_ms=30.0,
                break_even_n=2048,
                break_even_bytes=16 * MB,
            )
        if t["name"] == "server_connectivity":
            t["details"].update(device="cpu", cuda_available=False, gpu_name=None)
    return tests


def decode_colocation_record(status: str = "PASS") -> dict[str, Any]:
    """llm_decode_colocation as the check records it (two steps shown of 24)."""

    def way(sent: int, received: int, median_ms: float, total_ms: float) -> dict[str, Any]:
        rows = [{"step": 1, "bytes_sent": sent // 24, "bytes_received": received // 24,
                 "round_trip_ms": 20.0}]
        return {"requests_made": 24, "requests_per_step": 1, "server_requests": 24, "bytes_sent": sent,
                "bytes_received": received, "total_ms": total_ms, "step_ms_median": median_ms,
                "prefill": {"bytes_sent": 14184, "bytes_received": 1120, "round_trip_ms": 50.0},
                "per_step": rows}

    return record(
        "llm_decode_colocation", status, 1800.0,
        model={"layers": 4, "d_model": 64, "heads": 4, "vocab": 256, "parameters": 241024},
        prompt_tokens=16, steps=24, tokens_match_eager=True, kv_cache_bytes=81920,
        kv_kept=way(368640, 35360, 19.3, 617.0), kv_shipped=way(1718368, 1416168, 21.8, 542.0),
        bytes_ratio=7.76, bytes_saved_pct=87.1, time_ratio=1.13,
    )


def session(
    root: Path,
    stamp: str,
    server: list[dict[str, Any]] | None,
    client: list[dict[str, Any]] | None,
    cuda: bool = True,
) -> Path:
    folder = root / f"genie_test_results_{stamp}"
    if server is not None:
        write_results(folder, "server", server, stamp, cuda=cuda)
    if client is not None:
        write_results(folder, "client", client, stamp, cuda=cuda)
    return folder


def report_of(folder: Path) -> dict[str, Any]:
    return build_report(sorted(folder.glob("*_test_results_*.json")), [])


class Samples:
    """The builders above, as one namespace for the tests (the ``samples`` fixture)."""

    MB = MB
    SLOW_SWEEP = SLOW_SWEEP
    FAST_SWEEP = FAST_SWEEP
    record = staticmethod(record)
    write_results = staticmethod(write_results)
    gpu_server_tests = staticmethod(gpu_server_tests)
    gpu_client_tests = staticmethod(gpu_client_tests)
    cpu_server_tests = staticmethod(cpu_server_tests)
    cpu_client_tests = staticmethod(cpu_client_tests)
    decode_colocation_record = staticmethod(decode_colocation_record)
    session = staticmethod(session)
    report_of = staticmethod(report_of)


@pytest.fixture
def samples() -> Samples:
    return Samples()


PLUGIN_TESTS = """
import pytest

@pytest.mark.server
def test_gpu_detection(genie_record):
    genie_record.update(cuda_available=False, gpu_count=0, device="cpu")
    pytest.skip("no CUDA GPU on this server")

@pytest.mark.server
def test_server_operations(genie_record):
    genie_record.update(ops_checked=3, median_round_trip_ms=2.5)

@pytest.mark.client
def test_performance_comparison(genie_record):
    genie_record.update(n=1000, op="matmul", local_cpu_ms=6.0, server_compute_ms=6.5, remote_ms=18.0)

@pytest.mark.client
def test_http_tensor_transfer(genie_record):
    genie_record.update(http_code=200, bytes=4000000, mib_per_s=800.0)
    assert genie_record["http_code"] == 500, "server answered 200"
"""


@pytest.fixture
def two_node_tests(pytester: pytest.Pytester) -> None:
    """Writes ``test_nodes.py``: two server and two client checks, one skipped, one failing."""
    pytester.makepyfile(test_nodes=PLUGIN_TESTS)
