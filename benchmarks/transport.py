"""How close Genie's transport comes to the real limit, side by side in one run.

``python benchmarks/transport.py [--sizes 10,100,1000,4096,8192] [--repeats 7]
[--levels 1,4,16,64] [--window 3] [--json out.json] [--markdown out.md] [--big]
[--no-rpc] [--no-concurrency] [--quick]`` starts its own servers on 127.0.0.1, each
its own process, then times the round trip of relu on an fp32 n x n tensor, with
the timed calls of all paths taken round robin, through:

    execute      genie.Client -> POST /execute
    async        genie.AsyncClient -> POST /execute, one call at a time
    graph        genie.Client -> POST /graph on a handle uploaded once (reply only)
    echo         genie.Client -> POST /echo (transfer, no compute)
    floor        the HTTP floor: a bare ASGI echo under uvicorn (floor.py), the same
                 body, a lean client (load.py); no relu
    raw_tight    the limit: a raw socket, buffers reused on both sides (warm pages),
                 relu in place, the same bytes back (peers.py raw-tight)
    raw_naive    a raw socket with a fresh buffer and a fresh relu output per message
    rpc          torch.distributed.rpc.rpc_sync over TensorPipe (TCP transport)

Every ratio is to ``raw_tight``.  Then the concurrency section (``concurrency.py``):
a small and a 4 MB /execute, and the floor, AsyncClient and torch.rpc beside them,
with 1, 4, 16 and 64 clients for a fixed window each: requests/s, p50, p99.

It prints the tables, minor page faults per call of each path's server and client,
the peak RSS of the Genie server and of this client at the largest size, each of the
issue's targets met or missed, and the load average at the start and the end;
``--json`` writes all of it as JSON, ``--markdown`` the tables for
docs/performance.md.  ``--big`` adds one > 2 GiB round trip through /execute, checked
bit-exact.  Timings are medians after warm-up; the machine may be shared, so ratios
measured in the same run are what to compare.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import concurrency  # noqa: E402
import peers  # noqa: E402
import report as show  # noqa: E402
from concurrency import floor_request  # noqa: E402
from drivers import FLOOR, PEERS, PortServer, ReplayPool, RpcGroup  # noqa: E402
from load import LeanHttp  # noqa: E402
from procs import MB, Children, PeakWatch, counters, start_genie  # noqa: E402

import genie  # noqa: E402
from genie.server.config import DEFAULT_MAX_CONNECTIONS  # noqa: E402
from genie.wire import encode  # noqa: E402

BASELINE = show.BASELINE
DEFAULT_SIZES = (10, 100, 1000, 4096, 8192)
SMALL_BYTES = 1 * MB  # below this, more repeats cost nothing and steady the median
BIG_BYTES = int(2.5 * 1024 * MB)
RPC_CLIENTS = 4  # processes for torch.rpc's load windows (see drivers.RpcGroup)


def time_calls(fn: Callable[[], Any], warmup: int, repeats: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1000)
    return times


def plan_repeats(n: int, repeats: int) -> tuple[int, int]:
    nbytes = n * n * 4
    if nbytes < SMALL_BYTES:
        return max(3, repeats), max(repeats, 50)
    return (1 if nbytes >= 64 * MB else 2), repeats


@dataclass
class SizePeers:
    """What the sequential table talks to besides the Genie client."""

    genie_pid: int
    floor: LeanHttp
    floor_host: str
    floor_pid: int
    tight: peers.TightRawClient
    tight_pid: int
    naive: peers.RawClient
    naive_pid: int
    async_client: tuple[asyncio.AbstractEventLoop, genie.AsyncClient]
    rpc: RpcGroup | None


def graph_relu(handle: genie.RemoteTensor) -> dict[str, Any]:
    return {"nodes": [{"id": "y", "op": "relu", "args": [{"handle": handle.id}]}],
            "outputs": ["y"], "keep": []}


def floor_call(lean: LeanHttp, x: torch.Tensor, host: str) -> Callable[[], memoryview]:
    request = floor_request(host, x)
    return lambda: lean.exchange(request)[1]


def measure_size(n: int, args: argparse.Namespace, client: genie.Client, sp: SizePeers,
                 largest: bool) -> dict[str, Any]:
    """All paths at one size.  Each path is warmed up, then the timed calls go round
    robin (one call per path per round), so load that comes and goes on a shared
    machine falls on every path alike.  Around each timed call (outside its time) the
    minor page faults of its server and client processes are read."""
    warmup, repeats = plan_repeats(n, args.repeats)
    x = torch.randn(n, n)
    expected = torch.relu(x)
    handle = client.put(x)
    graph = graph_relu(handle)
    body = encode({"_positional": x}).to_bytes()
    loop, aclient = sp.async_client
    calls: dict[str, Callable[[], Any]] = {
        "execute": lambda: client.execute("relu", x),
        "async": lambda: loop.run_until_complete(aclient.execute("relu", x)),
        "graph": lambda: client.run_graph(graph).outputs["y"],
        "echo": lambda: client.echo(x),
        "floor": floor_call(sp.floor, x, sp.floor_host),
        "raw_tight": lambda: sp.tight.relu(x),
        "raw_naive": lambda: sp.naive.relu(x),
    }
    checks: dict[str, Callable[[Any], bool]] = {
        "echo": lambda got: torch.equal(got, x), "floor": lambda got: bytes(got) == body}
    exact = {name: checks.get(name, lambda got: torch.equal(got, expected))(fn())
             for name, fn in calls.items()}
    me = os.getpid()
    pids = {"execute": (sp.genie_pid, me), "async": (sp.genie_pid, me),
            "graph": (sp.genie_pid, me), "echo": (sp.genie_pid, me),
            "floor": (sp.floor_pid, me), "raw_tight": (sp.tight_pid, me),
            "raw_naive": (sp.naive_pid, me)}
    memory: dict[str, Any] = {}
    if largest:
        with PeakWatch(sp.genie_pid) as srv, PeakWatch(me) as mine:
            calls["execute"]()
        memory = {"n": n, "request_mb": round(x.nbytes / MB, 1), "server": srv.as_json(),
                  "client": mine.as_json()}
    if sp.rpc is not None:
        rpc = sp.rpc
        exact["rpc"] = rpc.prepare(n)
        calls["rpc"] = lambda: rpc.time(0, 1, x.nbytes)
        pids["rpc"] = (rpc.peer.pid, rpc.clients[0].pid)
    times: dict[str, list[float]] = {name: [] for name in calls}
    faults = {name: [0, 0] for name in calls}
    for fn in calls.values():
        time_calls(fn, warmup, 0)
    for _ in range(repeats):
        for name, fn in calls.items():
            server, own = pids[name]
            before = counters(server)[0], counters(own)[0]
            if name == "rpc":
                times[name] += fn()  # timed inside the rpc client, around rpc_sync only
            else:
                times[name] += time_calls(fn, 0, 1)
            faults[name][0] += counters(server)[0] - before[0]
            faults[name][1] += counters(own)[0] - before[1]
    client.delete(handle)
    row: dict[str, dict[str, Any]] = {
        name: {"median_ms": statistics.median(t), "times_ms": t, "exact": exact[name],
               "server_minflt": faults[name][0] / repeats,
               "client_minflt": faults[name][1] / repeats}
        for name, t in times.items()}
    base = row[BASELINE]["median_ms"]
    for cell in row.values():
        cell["ratio_to_tight"] = cell["median_ms"] / base
    return {"n": n, "bytes": x.nbytes, "paths": row, "memory": memory}


def big_round_trip(client: genie.Client) -> dict[str, Any]:
    """One > 2 GiB tensor through /execute, compared bit for bit (in slices, to spare RAM)."""
    x = torch.randn(BIG_BYTES // 4)
    start = time.perf_counter()
    y = client.execute("relu", x)
    seconds = time.perf_counter() - start
    exact = y.shape == x.shape and all(
        torch.equal(y[i:i + 2**26], torch.relu(x[i:i + 2**26])) for i in range(0, x.numel(), 2**26))
    return {"bytes": x.nbytes, "seconds": seconds, "exact": exact,
            "server_timing_ms": client.last.server_timing}


def environment(argv: list[str]) -> dict[str, Any]:
    return {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", "benchmarks/transport.py", *argv]),
            "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "genie": genie.__version__,
            "genie_source": str(Path(genie.__file__).parent),
            "load_avg_start": load_average()}


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


def _int_list(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="comma-separated n of the n x n fp32 tensors (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed round trips per path and size after warm-up; sizes under 1 MB "
                        "take at least 50 (default: %(default)s)")
    p.add_argument("--levels", default=",".join(map(str, concurrency.LEVELS)),
                   help="clients at once in the concurrency section (default: %(default)s)")
    p.add_argument("--window", type=float, default=3.0,
                   help="seconds each concurrency window lasts (default: %(default)s)")
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    p.add_argument("--markdown", type=Path, help="write the tables and targets here as Markdown")
    p.add_argument("--big", action="store_true", help="also run a 2.5 GiB round trip, bit-exact")
    p.add_argument("--no-rpc", action="store_true", help="skip torch.distributed.rpc")
    p.add_argument("--no-concurrency", action="store_true", help="skip the concurrency section")
    p.add_argument("--quick", action="store_true",
                   help="smoke run for CI: sizes 10,100, 1 repeat, 1 and 2 clients for "
                        "0.3 s (figures meaningless)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats, args.levels, args.window = "10,100", 1, "1,2", 0.3
    elif args.repeats < 5:
        p.error("--repeats must be >= 5 (use --quick for a smoke run)")
    args.size_list = _int_list(args.sizes)
    args.level_list = [] if args.no_concurrency else _int_list(args.levels)
    if not args.size_list or min(args.size_list) < 1 or any(v < 1 for v in args.level_list):
        p.error("--sizes and --levels take whole numbers >= 1")
    if not args.window > 0:
        p.error("--window must be > 0")
    return args


STARTED = time.monotonic()


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f} s] {message}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` kills children
    report: dict[str, Any] = {"environment": environment(argv), "sizes": [], "concurrency": []}
    largest = max(args.size_list)
    body_mb = max(4096.0, BIG_BYTES / MB * 1.1 if args.big else 0.0, largest**2 * 8 / MB)
    children = Children()
    loop = asyncio.new_event_loop()
    try:
        # Everything starts side by side; each is waited for only when first needed.
        floor = PortServer(children, [FLOOR, "--limit-concurrency", str(DEFAULT_MAX_CONNECTIONS)])
        tight = PortServer(children, [PEERS, "raw-tight"])
        naive = PortServer(children, [PEERS, "raw-naive"])
        rpc_clients = min(RPC_CLIENTS, max(args.level_list, default=1))
        rpc = None if args.no_rpc else RpcGroup(children, rpc_clients)
        pool = ReplayPool(children, max(args.level_list, default=0))
        server, url = start_genie(children, max_body_mb=body_mb, max_held_mb=body_mb)
        floor_port = floor.port
        aclient = genie.AsyncClient(url, timeout=120)
        sp = SizePeers(genie_pid=server.pid, floor=LeanHttp("127.0.0.1", floor_port),
                       floor_host=f"127.0.0.1:{floor_port}", floor_pid=floor.pid,
                       tight=peers.TightRawClient(tight.port), tight_pid=tight.pid,
                       naive=peers.RawClient(naive.port), naive_pid=naive.pid,
                       async_client=(loop, aclient), rpc=rpc and rpc.wait_ready())
        log("servers up")
        with genie.Client(url, timeout=120) as client:
            for n in args.size_list:
                report["sizes"].append(measure_size(n, args, client, sp, n == largest))
                log(f"n={n} done")
            loop.run_until_complete(aclient.aclose())
            for c in (sp.floor, sp.tight, sp.naive):
                c.close()
            if args.level_list:
                report["concurrency"] = concurrency.measure(
                    genie_url=url, genie_pid=server.pid, floor_port=floor_port,
                    floor_pid=floor.pid, pool=pool, rpc=rpc, levels=args.level_list,
                    seconds=args.window, log=log)
            report["big"] = big_round_trip(client) if args.big else None
        pool.close()
        if rpc is not None:
            rpc.close()
    finally:
        loop.close()
        children.close()
    report["environment"]["load_avg_end"] = load_average()
    report["targets"] = show.targets(report)
    show.print_report(report)
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.markdown:
        args.markdown.write_text(show.markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
