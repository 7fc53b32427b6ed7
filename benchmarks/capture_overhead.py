"""Capture overhead of LazyTensor: microseconds per captured op, 1,000-op graphs.

Capturing needs no server: it records nodes and infers shapes on the meta
device.  This measures that (the median over several runs of a 1,000-op
transformer-ish chain of elementwise ops, matmuls, reductions, reshapes and
indexing), then, separately, building the wire graph for it (what
``materialize()`` does before the request).  Target: <= 20 µs per captured op.

    python benchmarks/capture_overhead.py [--ops 1000] [--runs 7]
    python benchmarks/capture_overhead.py --profile     # cProfile of one run
    python benchmarks/capture_overhead.py --materialize # also send it to an embedded server
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import time

import torch
import torch.nn.functional as F

import genie
from genie.lazy.run import build_graph
from genie.lazy.session import SESSION

#: ops recorded by one ``_block`` call (counted below, checked at run time)
BLOCK_OPS = 11


def _block(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    h = F.linear(x, w, b)            # 1
    h = F.gelu(h)                    # 2
    h = h * 0.5 + x                  # 3, 4
    s = h.sum(dim=-1, keepdim=True)  # 5
    h = h - s / h.shape[-1]          # 6, 7
    h = h.reshape(8, 8, 8)           # 8
    h = h.transpose(1, 2)            # 9
    h = h.reshape(8, 64)[..., :64]   # 10 (reshape: a copy), 11 (getitem)
    return h


def capture_once(n_ops: int) -> tuple[float, torch.Tensor]:
    """Seconds to capture ``n_ops`` ops, and the last tensor."""
    torch.manual_seed(0)
    x: torch.Tensor = genie.remote(torch.randn(8, 64))
    w = genie.remote(torch.randn(64, 64))
    b = genie.remote(torch.randn(64))
    started = time.perf_counter()
    for _ in range(-(-n_ops // BLOCK_OPS)):
        x = _block(x, w, b)
    elapsed = time.perf_counter() - started
    return elapsed, x


def count_ops(t: torch.Tensor) -> int:
    assert isinstance(t, genie.LazyTensor)
    graph, _, _, _ = build_graph([t._node], [])
    return len(graph["nodes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ops", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--materialize", action="store_true",
                        help="also run the graph on an embedded CPU server on 127.0.0.1")
    args = parser.parse_args()

    capture_once(args.ops)  # warm the meta-inference cache and torch's own caches
    _, last = capture_once(args.ops)
    n_nodes = count_ops(last)
    if args.profile:
        prof = cProfile.Profile()
        prof.enable()
        capture_once(args.ops)
        prof.disable()
        pstats.Stats(prof).sort_stats("cumulative").print_stats(25)
        return
    times = []
    builds = []
    for _ in range(args.runs):
        elapsed, last = capture_once(args.ops)
        times.append(elapsed)
        assert isinstance(last, genie.LazyTensor)
        started = time.perf_counter()
        build_graph([last._node], [])
        builds.append(time.perf_counter() - started)
    SESSION.meta.clear()
    cold, _ = capture_once(args.ops)
    per_op = statistics.median(times) / n_nodes * 1e6
    print(f"captured graph: {n_nodes} ops ({args.runs} runs)")
    print(f"capture, warm meta cache: {per_op:.1f} us/op median "
          f"(min {min(times) / n_nodes * 1e6:.1f}, max {max(times) / n_nodes * 1e6:.1f})")
    print(f"capture, cold meta cache: {cold / n_nodes * 1e6:.1f} us/op (one run)")
    print(f"wire graph build:         {statistics.median(builds) / n_nodes * 1e6:.1f} us/op median")
    print(f"target <= 20 us/op: {'met' if per_op <= 20 else 'NOT met'}")
    if args.materialize:
        _materialize_figures(args.ops, args.runs)


def _materialize_figures(n_ops: int, runs: int) -> None:
    """Round trip of the whole captured graph in one request (server on loopback)."""
    from genie.server.config import ServerConfig
    from genie.server.runner import BackgroundServer

    with BackgroundServer(ServerConfig(device="cpu")) as srv, genie.Client(srv.url) as client:
        times = []
        for _ in range(runs):
            _, last = capture_once(n_ops)
            started = time.perf_counter()
            genie.materialize(last, client=client)
            times.append(time.perf_counter() - started)
        print(f"materialize ({n_ops} ops, one request): {statistics.median(times) * 1e3:.1f} ms "
              f"median, {client.last.bytes_sent} bytes sent, {client.requests} requests "
              f"for {runs} materializations")


if __name__ == "__main__":
    main()
