"""The server's compute device: choosing it, describing it, timing work on it.

CUDA runs kernels asynchronously, so a wall clock read right after a launch
measures the launch, not the work.  Every timing here synchronizes the device
before reading the clock; on the CPU that is a no-op.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from genie.errors import ConfigurationError

__all__ = ["cap_memory", "describe", "matmul_benchmark", "resolve_device", "synchronize",
           "timed"]


def resolve_device(spec: str = "auto") -> torch.device:
    """``auto`` (cuda:0 when CUDA is usable, else cpu), ``cpu``, ``cuda`` or ``cuda:N``."""
    spec = spec.strip().lower()
    if spec == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "cuda" or spec.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigurationError(f"--device {spec}: CUDA is not available on this machine "
                                     "(use --device cpu or auto)")
        index = 0 if spec == "cuda" else _index(spec)
        if index >= torch.cuda.device_count():
            raise ConfigurationError(f"--device {spec}: only {torch.cuda.device_count()} "
                                     "CUDA device(s) present")
        return torch.device("cuda", index)
    raise ConfigurationError(f"--device {spec!r}: expected auto, cpu, cuda or cuda:N")


def _index(spec: str) -> int:
    try:
        index = int(spec.split(":", 1)[1])
    except ValueError as exc:
        raise ConfigurationError(f"--device {spec!r}: N in cuda:N must be an integer") from exc
    if index < 0:
        raise ConfigurationError(f"--device {spec!r}: N must be >= 0")
    return index


def cap_memory(device: torch.device, max_bytes: int | None) -> None:
    """Cap PyTorch's CUDA caching allocator on ``device`` at ``max_bytes`` (``--max-gpu-mb``).

    Past the cap an allocation raises ``torch.OutOfMemoryError``, which the server
    answers 503 ``out_of_memory`` and survives, as it does when the device itself is
    full; without one, a server sharing its GPU can take all of it.  No-op off CUDA.
    """
    if max_bytes is None or device.type != "cuda":
        return
    total = torch.cuda.get_device_properties(device).total_memory
    if max_bytes > total:
        raise ConfigurationError(f"--max-gpu-mb {max_bytes / 2**20:g} is more than the "
                                 f"{total / 2**20:.0f} MiB that {device} has")
    torch.cuda.set_per_process_memory_fraction(max_bytes / total, device)


def synchronize(device: torch.device) -> None:
    """Wait for queued kernels on ``device`` (no-op off CUDA)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, fn: Callable[[], Any]) -> tuple[Any, float]:
    """Run ``fn`` and return (result, milliseconds), synchronized on ``device``."""
    synchronize(device)
    start = time.perf_counter()
    result = fn()
    synchronize(device)
    return result, (time.perf_counter() - start) * 1000.0


def describe(device: torch.device) -> dict[str, Any]:
    """What /health reports about the device: kind, GPU name, count and memory."""
    info: dict[str, Any] = {
        "device": str(device),
        "device_type": device.type,
        "cuda_available": torch.cuda.is_available(),
        "gpu_count": torch.cuda.device_count() if torch.cuda.is_available() else 0,
        "gpu_name": None,
        "gpu_memory_total_bytes": None,
        "gpu_memory_free_bytes": None,
        "gpu_memory_allocated_bytes": None,
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        free, total = torch.cuda.mem_get_info(device)
        info.update(
            gpu_name=props.name,
            gpu_memory_total_bytes=total,
            gpu_memory_free_bytes=free,
            gpu_memory_allocated_bytes=torch.cuda.memory_allocated(device),
            gpu_capability=f"{props.major}.{props.minor}",
        )
    return info


def matmul_benchmark(device: torch.device, *, n: int = 1000, warmup: int = 3,
                     repeats: int = 10) -> dict[str, Any]:
    """Median time of an n x n fp32 matmul on ``device``, after warm-up runs.

    The warm-up absorbs one-time costs (CUDA context, cuBLAS handle, kernel
    selection) that would otherwise dominate a single measurement.
    """
    gen = torch.Generator(device=device).manual_seed(0)
    a = torch.randn(n, n, device=device, generator=gen)
    b = torch.randn(n, n, device=device, generator=gen)
    for _ in range(warmup):
        torch.mm(a, b)
    times = [timed(device, lambda: torch.mm(a, b))[1] for _ in range(repeats)]
    median = statistics.median(times)
    return {
        "device": str(device),
        "matrix_size": n,
        "warmup": warmup,
        "repeats": repeats,
        "median_ms": median,
        "min_ms": min(times),
        "max_ms": max(times),
        "gflops": (2 * n**3) / (median / 1000.0) / 1e9 if median > 0 else None,
    }
