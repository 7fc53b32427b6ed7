"""How close Genie's transport comes to a raw socket, side by side in one run.

``python benchmarks/transport.py [--sizes 10,100,1000,4096,8192] [--repeats 7]
[--json out.json] [--markdown out.md] [--big] [--no-rpc] [--quick]`` starts its own
servers on 127.0.0.1 (each its own process), then times the round trip of relu on
an fp32 n x n tensor, with the timed calls of all paths taken round robin, through:

    execute  Genie client -> POST /execute
    graph    Genie client -> POST /graph on a handle uploaded once (reply only)
    echo     Genie client -> POST /echo (transfer, no compute)
    raw      a raw Python TCP socket echo+relu with the same tensor bytes: the limit
    rpc      torch.distributed.rpc.rpc_sync over TensorPipe (TCP transport)

It prints the medians with every ratio to ``raw``, the peak RSS of the Genie
server and of this client at the largest size, and each target met or missed;
``--json`` writes the same as JSON, ``--markdown`` the table for docs/performance.md.
``--big`` adds one > 2 GiB round trip through /execute, checked bit-exact.  Timings
are medians after warm-up; the machine may be shared, so ratios measured in the same
run are what to compare.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import signal
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
from procs import MB, Children, PeakWatch, free_port, read_line, start_genie  # noqa: E402

import genie  # noqa: E402

PATHS = ("execute", "graph", "echo", "raw", "rpc")
DEFAULT_SIZES = (10, 100, 1000, 4096, 8192)
SMALL_BYTES = 1 * MB  # below this, more repeats cost nothing and steady the median
BIG_BYTES = int(2.5 * 1024 * MB)


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


class RpcPath:
    """The rpc client process, driven one size at a time over its stdin."""

    def __init__(self, children: Children) -> None:
        port = free_port()
        script = str(Path(peers.__file__))
        self.peer = children.spawn([script, "rpc-peer", "--port", str(port)])
        self.client = children.spawn([script, "rpc-client", "--port", str(port)], stdin=True)
        read_line(self.client, 120)

    def _ask(self, line: str, timeout: float) -> dict[str, Any]:
        assert self.client.stdin is not None
        self.client.stdin.write(line + "\n")
        self.client.stdin.flush()
        result: dict[str, Any] = json.loads(read_line(self.client, timeout))
        return result

    def prepare(self, n: int) -> bool:
        """Make the n x n input in the rpc client; True when its relu came back exact."""
        return bool(self._ask(f"prepare {n}", 120 + n * n * 4 / MB)["exact"])

    def time(self, warmup: int, repeats: int, nbytes: int) -> list[float]:
        got: list[float] = self._ask(f"time {warmup} {repeats}",
                                     60 + (warmup + repeats) * nbytes / MB)["times_ms"]
        return got

    def close(self) -> None:
        if self.client.poll() is None and self.client.stdin is not None:
            self.client.stdin.write("quit\n")
            self.client.stdin.flush()
            try:
                self.client.wait(30)
                self.peer.wait(30)
            except Exception:  # the caller's Children.close kills what is left
                pass


def graph_relu(handle: genie.RemoteTensor) -> dict[str, Any]:
    return {"nodes": [{"id": "y", "op": "relu", "args": [{"handle": handle.id}]}],
            "outputs": ["y"], "keep": []}


def measure_size(n: int, args: argparse.Namespace, client: genie.Client, raw: peers.RawClient,
                 rpc: RpcPath | None, server_pid: int, largest: bool) -> dict[str, Any]:
    """All paths at one size.  Each path is warmed up, then the timed calls go round
    robin (one call per path per round), so load that comes and goes on a shared
    machine falls on every path alike."""
    warmup, repeats = plan_repeats(n, args.repeats)
    x = torch.randn(n, n)
    expected = torch.relu(x)
    handle = client.put(x)
    graph = graph_relu(handle)
    calls: dict[str, Callable[[], Any]] = {
        "execute": lambda: client.execute("relu", x),
        "graph": lambda: client.run_graph(graph).outputs["y"],
        "echo": lambda: client.echo(x),
        "raw": lambda: raw.relu(x),
    }
    exact = {name: torch.equal(fn(), x if name == "echo" else expected)
             for name, fn in calls.items()}
    memory: dict[str, Any] = {}
    if largest:
        with PeakWatch(server_pid) as srv, PeakWatch(os.getpid()) as me:
            calls["execute"]()
        memory = {"n": n, "request_mb": round(x.nbytes / MB, 1), "server": srv.as_json(),
                  "client": me.as_json()}
    if rpc is not None:
        exact["rpc"] = rpc.prepare(n)
        calls["rpc"] = lambda: rpc.time(0, 1, x.nbytes)
    times: dict[str, list[float]] = {name: [] for name in calls}
    for fn in calls.values():
        time_calls(fn, warmup, 0)
    for _ in range(repeats):
        for name, fn in calls.items():
            if name == "rpc":
                times[name] += fn()  # timed inside the rpc client, around rpc_sync only
            else:
                times[name] += time_calls(fn, 0, 1)
    client.delete(handle)
    row: dict[str, dict[str, Any]] = {
        name: {"median_ms": statistics.median(t), "times_ms": t, "exact": exact[name]}
        for name, t in times.items()}
    base = row["raw"]["median_ms"]
    for cell in row.values():
        cell["ratio_to_raw"] = cell["median_ms"] / base
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


def targets(sizes: list[dict[str, Any]], big: dict[str, Any] | None) -> list[dict[str, Any]]:
    by_n = {s["n"]: s for s in sizes}
    out: list[dict[str, Any]] = []

    def add(name: str, ok: bool, detail: str) -> None:
        out.append({"target": name, "met": bool(ok), "detail": detail})

    if 10 in by_n:
        ms = by_n[10]["paths"]["execute"]["median_ms"]
        add("n=10 execute <= 1 ms", ms <= 1.0, f"{ms:.3f} ms")
    for n in (1000, 8192):
        if n in by_n:
            r = by_n[n]["paths"]["execute"]["ratio_to_raw"]
            add(f"n={n} execute <= 3x raw", r <= 3.0, f"{r:.2f}x")
    for n in (4096, 8192):
        if n in by_n and "rpc" in by_n[n]["paths"]:
            p = by_n[n]["paths"]
            g, r = p["execute"]["median_ms"], p["rpc"]["median_ms"]
            add(f"n={n} execute <= torch.rpc", g <= r, f"{g:.1f} ms vs {r:.1f} ms")
    mem = next((s["memory"] for s in reversed(sizes) if s["memory"]), None)
    if mem and mem["request_mb"] >= 64:  # below that, the allocator's noise dominates
        srv = mem["server"]
        limit = srv["idle_mb"] + 3 * mem["request_mb"]
        add(f"n={mem['n']} server peak RSS <= idle + 3 x request", srv["peak_mb"] <= limit,
            f"peak {srv['peak_mb']} MB, limit {limit:.0f} MB")
    if big is not None:
        add("> 2 GiB round trip exact", big["exact"],
            f"{big['bytes'] / 2**30:.2f} GiB in {big['seconds']:.1f} s")
    if all("exact" in c for s in sizes for c in s["paths"].values()):
        bad = [f"{k}@{s['n']}" for s in sizes for k, c in s["paths"].items() if not c["exact"]]
        add("every path returned the exact result", not bad, ", ".join(bad) or "all exact")
    return out


def print_table(sizes: list[dict[str, Any]], paths: list[str]) -> None:
    head = f"{'n':>6} {'MB':>8} " + " ".join(f"{p:>18}" for p in paths)
    print(head)
    print("-" * len(head))
    for s in sizes:
        cells = []
        for p in paths:
            c = s["paths"].get(p)
            cells.append(f"{c['median_ms']:9.3f} ({c['ratio_to_raw']:5.2f}x)" if c else f"{'-':>18}")
        print(f"{s['n']:>6} {s['bytes'] / MB:8.2f} " + " ".join(f"{c:>18}" for c in cells))
    print("medians in ms, (ratio to raw socket)")


def markdown(report: dict[str, Any], paths: list[str]) -> str:
    """The table as Markdown, for docs/performance.md."""
    lines = ["| n | MB | " + " | ".join(paths) + " |", "|---:|---:|" + "---:|" * len(paths)]
    for s in report["sizes"]:
        cells = [f"{c['median_ms']:.3f} ({c['ratio_to_raw']:.2f}x)" if (c := s["paths"].get(p))
                 else "-" for p in paths]
        lines.append(f"| {s['n']} | {s['bytes'] / MB:.2f} | " + " | ".join(cells) + " |")
    lines += ["", "Medians in ms (ratio to the raw socket, same run).", ""]
    lines += [f"- {'met' if t['met'] else '**missed**'}: {t['target']} ({t['detail']})"
              for t in report["targets"]]
    return "\n".join(lines) + "\n"


def environment(argv: list[str]) -> dict[str, Any]:
    return {"date_utc": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "command": " ".join(["python", "benchmarks/transport.py", *argv]),
            "machine": platform.machine(), "cpus": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "genie": genie.__version__,
            "genie_source": str(Path(genie.__file__).parent),
            "load_avg_start": os.getloadavg()}


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default=",".join(map(str, DEFAULT_SIZES)),
                   help="comma-separated n of the n x n fp32 tensors (default: %(default)s)")
    p.add_argument("--repeats", type=int, default=7,
                   help="timed round trips per path and size after warm-up; sizes under 1 MB "
                        "take at least 50 (default: %(default)s)")
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    p.add_argument("--markdown", type=Path, help="write the table and targets here as Markdown")
    p.add_argument("--big", action="store_true", help="also run a 2.5 GiB round trip, bit-exact")
    p.add_argument("--no-rpc", action="store_true", help="skip torch.distributed.rpc")
    p.add_argument("--quick", action="store_true",
                   help="smoke run for CI: sizes 10,100, 1 repeat (figures meaningless)")
    args = p.parse_args(argv)
    if args.quick:
        args.sizes, args.repeats = "10,100", 1
    elif args.repeats < 5:
        p.error("--repeats must be >= 5 (use --quick for a smoke run)")
    args.size_list = [int(s) for s in args.sizes.split(",") if s.strip()]
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # so that `finally` kills children
    report: dict[str, Any] = {"environment": environment(argv), "sizes": [], "targets": []}
    largest = max(args.size_list)
    body_mb = max(4096.0, BIG_BYTES / MB * 1.1 if args.big else 0.0, largest**2 * 8 / MB)
    children = Children()
    try:
        server, url = start_genie(children, max_body_mb=body_mb, max_held_mb=body_mb)
        raw_proc = children.spawn([str(Path(peers.__file__)), "raw-server"])
        raw = peers.RawClient(int(read_line(raw_proc, 60)))
        rpc = None if args.no_rpc else RpcPath(children)
        with genie.Client(url, timeout=120) as client:
            for n in args.size_list:
                result = measure_size(n, args, client, raw, rpc, server.pid, n == largest)
                report["sizes"].append(result)
                print(f"n={n} done", file=sys.stderr, flush=True)
            big = big_round_trip(client) if args.big else None
        report["big"] = big
        raw.close()
        if rpc is not None:
            rpc.close()
    finally:
        children.close()
    report["environment"]["load_avg_end"] = os.getloadavg()
    report["targets"] = targets(report["sizes"], report.get("big"))
    paths = [p for p in PATHS if any(p in s["paths"] for s in report["sizes"])]
    print_table(report["sizes"], paths)
    for s in report["sizes"]:
        if s["memory"]:
            m = s["memory"]
            print(f"RSS at n={m['n']} ({m['request_mb']} MB request): "
                  f"server idle {m['server']['idle_mb']} MB -> peak {m['server']['peak_mb']} MB; "
                  f"client idle {m['client']['idle_mb']} MB -> peak {m['client']['peak_mb']} MB "
                  f"({m['server']['method']})")
    if report.get("big"):
        b = report["big"]
        print(f"big: {b['bytes'] / 2**30:.2f} GiB /execute relu in {b['seconds']:.1f} s, "
              f"exact={b['exact']}")
    for t in report["targets"]:
        print(f"[{'met' if t['met'] else 'MISSED':>6}] {t['target']}: {t['detail']}")
    print(f"load average start {report['environment']['load_avg_start']}, "
          f"end {report['environment']['load_avg_end']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    if args.markdown:
        args.markdown.write_text(markdown(report, paths))
    return 0


if __name__ == "__main__":
    sys.exit(main())
