"""A/B of Genie servers built from different source trees, side by side in one run.

``python benchmarks/ab.py --tree base=/tmp/base/src --tree new=src [--sizes 10,1000,4096]
[--repeats 5] [--op relu|add] [--levels 1,4] [--window 2] [--rounds 2] [--cold NAME]
[--async NAME]`` starts one ``genie-server`` per tree (``PYTHONPATH`` set to that tree)
and the tight raw peer, then:

- the sequential table: ``op`` on an fp32 n x n tensor (``add``: the tensor and
  itself, which is not run in place) through ``genie.Client`` (this process's source),
  the calls of every server and the raw peer taken round robin; medians, and each
  ratio to the raw peer;
  ``--cold NAME``: that tree's client receives every reply into a fresh buffer (as
  the client did before ``genie.client.http1.WarmReply``); ``--async NAME``: a column
  ``NAME/async`` through ``genie.AsyncClient`` to that tree's server;
- the concurrency table (small ``/execute``, ``load.py replay`` processes as in
  ``concurrency.py``): for each level, ``rounds`` windows per server, alternating.

On a shared machine load comes and goes; interleaving makes it fall on every tree
alike, so compare the trees' columns within one run, not across runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

import peers  # noqa: E402
from concurrency import genie_request, write_request  # noqa: E402
from drivers import PEERS, PortServer, ReplayPool  # noqa: E402
from procs import Children, counters, start_genie  # noqa: E402

import genie  # noqa: E402


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tree", action="append", required=True,
                   help="NAME=PATH: a source tree (a src/ folder) to run a server from")
    p.add_argument("--sizes", default="10,1000,4096")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--op", choices=["relu", "add"], default="relu")
    p.add_argument("--levels", default="1,4")
    p.add_argument("--window", type=float, default=2.0)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--cold", action="append", default=[],
                   help="NAME: that tree's client does not reuse reply buffers")
    p.add_argument("--async", dest="async_", action="append", default=[],
                   help="NAME: also time genie.AsyncClient against that tree's server")
    p.add_argument("--server-flag", action="append", default=[],
                   help="NAME=FLAG: an extra command-line flag for that tree's server")
    args = p.parse_args(argv)
    args.trees = dict(t.split("=", 1) for t in args.tree)
    args.flags = {}
    for spec in args.server_flag:
        name, flag = spec.split("=", 1)
        args.flags.setdefault(name, []).append(flag)
    args.size_list = [int(s) for s in args.sizes.split(",") if s]
    args.level_list = [int(s) for s in args.levels.split(",") if s]
    return args


def median_ms(times: list[float]) -> float:
    return statistics.median(times) * 1000


def sequential(args: argparse.Namespace, clients: dict[str, genie.Client],
               tight: peers.TightRawClient, pids: dict[str, int]) -> None:
    print(f"\n{args.op} fp32 n x n, median ms (ratio to raw_tight); server CPU ms per call")
    names = list(clients)
    loop = asyncio.new_event_loop()
    aclients = {f"{k}/async": genie.AsyncClient(clients[k].url, timeout=120)
                for k in args.async_}
    pids = {**pids, **{f"{k}/async": pids[k] for k in args.async_}}
    names += list(aclients)
    print("| n | raw_tight | " + " | ".join(names) + " | " + " | ".join(f"{n} cpu" for n in names)
          + " |")
    for n in args.size_list:
        x = torch.randn(n, n)
        nbytes = x.nbytes
        warmup, repeats = (20, max(args.repeats, 200)) if nbytes < 1 << 20 else (2, args.repeats)
        expected = torch.relu(x) if args.op == "relu" else x + x
        calls: dict[str, Callable[[], Any]] = {"raw_tight": lambda x=x: tight.relu(x)}
        for name, client in clients.items():
            calls[name] = ((lambda c=client, x=x: c.execute("relu", x)) if args.op == "relu"
                           else (lambda c=client, x=x: c.execute("add", x, other=x)))
        for name, aclient in aclients.items():
            calls[name] = ((lambda c=aclient, x=x: loop.run_until_complete(c.execute("relu", x)))
                           if args.op == "relu" else
                           (lambda c=aclient, x=x: loop.run_until_complete(
                               c.execute("add", x, other=x))))
        for name, call in calls.items():
            got = call()
            if name != "raw_tight" and not torch.equal(got, expected):
                raise SystemExit(f"{name} answered wrong at n={n}")
            for _ in range(warmup):
                call()
        times: dict[str, list[float]] = {k: [] for k in calls}
        # Each server is idle but for its own calls: its CPU over the round is theirs.
        cpu = {k: counters(pids[k])[2] for k in names}
        for _ in range(repeats):
            for name, call in calls.items():
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        cpu = {k: counters(pids[k])[2] - cpu[k] for k in names}
        for k in names:  # a server shared by two columns: its CPU split between them
            cpu[k] /= sum(1 for j in names if pids[j] == pids[k])
        raw = median_ms(times["raw_tight"])
        cells = [f"{median_ms(times[k]):.3f} ({median_ms(times[k]) / raw:.2f}x)" for k in names]
        cpu_cells = [f"{cpu[k] / repeats * 1000:.3f}" for k in names]
        print(f"| {n} | {raw:.3f} | " + " | ".join(cells) + " | " + " | ".join(cpu_cells) + " |",
              flush=True)
    for aclient in aclients.values():
        loop.run_until_complete(aclient.aclose())
    loop.close()


def concurrent(args: argparse.Namespace, clients: dict[str, genie.Client],
               ports: dict[str, int], pids: dict[str, int], pool: ReplayPool) -> None:
    if not args.level_list:
        return
    x = torch.randn(10, 10)
    print(f"\nsmall /execute (relu 10x10), {args.window:g} s windows, "
          f"{args.rounds} per server per level, alternating")
    print("| clients | server | req/s (each window) | p50 ms | p99 ms | server CPU % |")
    with tempfile.TemporaryDirectory() as tmp:
        files = {name: write_request(Path(tmp) / f"{name}.bin", genie_request(client, x))
                 for name, client in clients.items()}
        for level in args.level_list:
            got: dict[str, list[dict[str, Any]]] = {k: [] for k in clients}
            for _ in range(args.rounds):
                for name in clients:
                    w = pool.window(level, ports[name], files[name], args.window, pids[name])
                    got[name].append(w.summary())
            for name, rows in got.items():
                rates = "/".join(f"{r['requests_per_s']:.0f}" for r in rows)
                p50 = statistics.median(r["p50_ms"] or 0 for r in rows)
                p99 = statistics.median(r["p99_ms"] or 0 for r in rows)
                cpu = statistics.median(r["server_cpu_pct"] for r in rows)
                errors = sum(r["errors"] for r in rows)
                print(f"| {level} | {name} | {rates} | {p50:.3f} | {p99:.3f} | {cpu:.0f} |"
                      + (f" {errors} errors" if errors else ""), flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    children = Children()
    try:
        tight = PortServer(children, [PEERS, "raw-tight"])
        pool = ReplayPool(children, max(args.level_list, default=0))
        urls, pids, ports = {}, {}, {}
        body_mb = max(1024.0, max(args.size_list) ** 2 * 8 / (1 << 20))
        for name, tree in args.trees.items():
            env = {**os.environ, "PYTHONPATH": str(Path(tree).resolve())}
            proc, url = start_genie(children, max_body_mb=body_mb, max_held_mb=body_mb,
                                    env=env, extra=args.flags.get(name, []))
            urls[name], pids[name] = url, proc.pid
            ports[name] = int(url.rsplit(":", 1)[1])
        print(f"load average at start: {os.getloadavg()[0]:.2f}; trees: {args.trees}")
        clients = {k: genie.Client(u, timeout=120) for k, u in urls.items()}
        for name in args.cold:
            plain = clients[name]._plain  # noqa: SLF001 - a benchmark switch
            if plain is not None:
                plain.reuse_reply_buffers = False
        sequential(args, clients, peers.TightRawClient(tight.port), pids)
        concurrent(args, clients, ports, pids, pool)
        for c in clients.values():
            c.close()
        pool.close()
        print(f"load average at end: {os.getloadavg()[0]:.2f}")
    finally:
        children.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
