"""Where a Genie request spends its time, layer by layer, on the server and the client.

``python benchmarks/profile_request.py [--seconds 6] [--rate 1000] [--big 64,256]
[--out DIR] [--json FILE]`` measures, each in processes of its own:

small /execute (relu of fp32 10 x 10)
    The real ``genie-server`` runs under py-spy (sampling, Python frames) while one
    ``load.py`` client sends the request ``genie.Client`` sends, back to back, for
    ``--seconds``; beside it the HTTP floor (``floor.py``) under the same load.  From
    ``/proc`` it takes each server's CPU time per request; py-spy's samples split
    that time into layers (uvicorn and httptools, Starlette, Genie's middleware, body
    receive, decode, the hop to a compute thread, meta inference, the op, encode, the
    response, the event loop).  Then a ``genie.Client`` loop runs under py-spy in a
    process of its own, split the same way (plan and encode, http1 send, http1
    receive, decode).

large /execute (``--big``: 64 and 256 MB by default)
    Unprofiled round trips first: per request the server's phases (``Server-Timing``),
    minor and major page faults and CPU time of the server and of the client (from
    ``/proc``).  Then the same requests again with server and client under py-spy
    with native frames, to see which layer copies (libc leaves: memcpy, memset, mmap).

py-spy must be installed (``pip install py-spy``); without it the profiles are
skipped and the ``/proc`` figures still come.  Sampling slows the process sampled:
read its shares, not its speed (the CPU per request comes from unprofiled runs where
it can).  ``--out`` keeps py-spy's raw stacks (one ``frame;frame;... count`` line per
stack), for a flame graph.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from concurrency import genie_request  # noqa: E402
from drivers import FLOOR, PortServer, ReplayPool  # noqa: E402
from procs import MB, Children, child_pid, counters, start_genie  # noqa: E402

import genie  # noqa: E402
from genie.server.config import DEFAULT_MAX_CONNECTIONS  # noqa: E402

#: (layer, path fragment, function names or None for any) tried in order on each
#: frame, innermost frame first: the first frame that matches names the sample's layer.
SERVER_LAYERS: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    ("meta inference", "genie/ops/meta.py", None),
    ("op", "genie/ops/", None),
    ("op", "torch/", None),
    ("op", "genie/server/device.py", None),
    ("executor (cap check, in-place)", "genie/server/executor.py", None),
    ("body receive", "genie/wire.py", frozenset({"receive_buffer"})),
    ("decode", "genie/wire.py", frozenset({"decode", "parse_header", "_entries", "_nbytes"})),
    ("encode", "genie/wire.py", None),
    ("decode", "genie/server/codec.py", frozenset({"_decode", "decode_request"})),
    ("encode", "genie/server/codec.py", frozenset({"encode_outputs"})),
    ("response", "genie/server/codec.py", None),
    ("response", "starlette/responses.py", None),
    ("body receive", "genie/server/bodies.py",
     frozenset({"receive_body", "_receive", "_receive_unsized", "_next_chunk", "_allocate",
                "_reserve", "reserve", "release"})),
    ("body receive", "starlette/requests.py", None),
    ("Genie middleware + stats", "genie/server/bodies.py", None),
    ("Genie middleware + stats", "genie/server/middleware.py", None),
    ("Genie middleware + stats", "genie/server/stats.py", None),
    ("Genie middleware + stats", "prometheus_client/", None),
    ("endpoint", "genie/server/", None),
    ("endpoint", "genie/graph.py", None),
    ("endpoint", "json/", None),
    ("thread hop (anyio, worker)", "anyio/", None),
    ("thread hop (anyio, worker)", "concurrent/futures/", None),
    ("thread hop (anyio, worker)", "threading.py", None),
    ("thread hop (anyio, worker)", "queue.py", None),
    ("Starlette (app, routing, middleware)", "starlette/", None),
    ("uvicorn + httptools", "uvicorn/protocols/", None),
    ("event loop", "asyncio/", None),
    ("event loop", "uvicorn/", None),
)
CLIENT_LAYERS: tuple[tuple[str, str, frozenset[str] | None], ...] = (
    ("receive buffer", "genie/wire.py", frozenset({"receive_buffer"})),
    ("decode", "genie/wire.py", frozenset({"decode", "parse_header", "_entries", "_nbytes"})),
    ("plan + encode", "genie/wire.py", None),
    ("plan + encode", "genie/graph.py", None),
    ("http1 send (head, sendall)", "genie/client/http1.py",
     frozenset({"_head", "_send", "_visible_ascii", "_take", "_give", "stale", "_connect"})),
    ("http1 receive (head parse, recv_into)", "genie/client/http1.py", None),
    ("finish (stats, Server-Timing)", "genie/client/base.py", frozenset({"finish"})),
    ("finish (stats, Server-Timing)", "genie/client/calls.py",
     frozenset({"parse_server_timing", "only_tensor"})),
    ("plan + encode", "genie/client/calls.py", frozenset({"execute_plan", "tensor_plan", "lift"})),
    ("plan + encode", "genie/client/base.py", frozenset({"headers", "timeout_s"})),
    ("client dispatch (endpoint, perform, urlencode)", "genie/client/", None),
    ("client dispatch (endpoint, perform, urlencode)", "urllib/", None),
    ("plan + encode", "torch/", None),
    ("benchmark loop", "profile_request.py", None),
)


def layer_of(stack: Sequence[str], layers: Sequence[tuple[str, str, frozenset[str] | None]]
             ) -> str:
    for frame in reversed(stack):
        func, _, where = frame.partition(" (")
        if ".py:" not in where:
            continue  # a native frame: the Python frame that called it decides
        for layer, fragment, names in layers:
            if fragment in where and (names is None or func in names):
                return layer
    return "other"


def _library(frame: str) -> str | None:
    """The native library of a native frame (``memcpy (libc.so.6)``), else ``None``."""
    if ".py:" in frame or "(" not in frame:
        return None
    lib = frame[frame.rfind("(") + 1:frame.rfind(")")]
    return lib.split(".cpython")[0] if ".so" in lib else None


def leaf_kind(stack: Sequence[str]) -> str:
    """What the innermost frame is: Python, or the native library it is in and, for
    libc and the interpreter, the library that called into it (``libc <- loop``: a
    copy or a system call made by uvloop itself)."""
    libs = [_library(f) for f in reversed(stack)]
    if not libs or libs[0] is None:
        return "python"
    leaf = libs[0]
    if leaf.startswith(("libc", "libpython", "ld-linux")):
        caller = next((lib for lib in libs[1:] if lib is None or not lib.startswith(
            ("libc", "libpython", "ld-linux"))), None)
        return f"{leaf} <- {caller or 'python'}"
    return leaf


#: Stacks that are not serving a request: imports and the server's start-up warm-up
#: (py-spy samples a process from its start; idle threads are not sampled at all).
STARTUP_MARKS = ("<frozen importlib", "warm_up (", "lifespan (", "startup (")


def read_stacks(path: Path) -> Counter[tuple[str, ...]]:
    stacks: Counter[tuple[str, ...]] = Counter()
    for line in path.read_text().splitlines():
        frames, _, count = line.rpartition(" ")
        if frames and count.isdigit() and not any(m in frames for m in STARTUP_MARKS):
            stacks[tuple(frames.split(";"))] += int(count)
    return stacks


def split(stacks: Counter[tuple[str, ...]], layers: Sequence[tuple[str, str, frozenset[str] | None]],
          cpu_us: float | None) -> dict[str, Any]:
    """Each layer's share of the samples, in µs per request where ``cpu_us`` is known,
    with the leaf kinds inside it (native libraries: where copies and faults show)."""
    total = sum(stacks.values()) or 1
    by_layer: Counter[str] = Counter()
    kinds: dict[str, Counter[str]] = {}
    for stack, count in stacks.items():
        layer = layer_of(stack, layers)
        by_layer[layer] += count
        kinds.setdefault(layer, Counter())[leaf_kind(stack)] += count
    return {"samples": total, "layers": {
        layer: {"share": count / total,
                "us_per_request": None if cpu_us is None else cpu_us * count / total,
                "leaves": {k: round(v / count, 3) for k, v in kinds[layer].most_common(4)}}
        for layer, count in by_layer.most_common()}}


def pyspy(out: Path, rate: int, native: bool) -> list[str] | None:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(exe).exists():
        return None
    # Python frames: only the thread holding the GIL, so that waits (a worker idle on
    # its queue, the loop in epoll) are not counted as work.
    mode = ["--native"] if native else ["--nonblocking", "--gil"]
    return [exe, "record", *mode, "--rate", str(rate), "--format", "raw", "-o", str(out), "--"]


def stop_profiled(proc: Any, pid: int) -> None:
    """End the profiled program; its profiler then writes the stacks and exits."""
    os.kill(pid, signal.SIGTERM)
    proc.wait(120)


def server_window(pool: ReplayPool, port: int, request: Path, pid: int,
                  seconds: float) -> dict[str, Any]:
    window = pool.window(1, port, request, seconds, pid)
    summary = window.summary()
    summary["server_cpu_us_per_request"] = 1e6 * window.server_cpu_s / max(1, summary["requests"])
    return summary


def small_server(args: argparse.Namespace, children: Children, out: Path) -> dict[str, Any]:
    """The small /execute's server time by layer, beside the HTTP floor's."""
    wrapper = pyspy(out / "server-small.txt", args.rate, native=False) or []
    proc, url = start_genie(children, max_body_mb=64, max_held_mb=64, wrapper=wrapper)
    pid = child_pid(proc.pid) if wrapper else proc.pid
    pool = ReplayPool(children, 1)
    request = out / "execute-10.bin"
    x = torch.randn(10, 10)
    with genie.Client(url) as client, request.open("wb") as f:
        for part in genie_request(client, x):
            f.write(part)
    result = {"execute": server_window(pool, int(url.rsplit(":", 1)[1]), request, pid,
                                       args.seconds)}
    floor = PortServer(children, [FLOOR, "--limit-concurrency", str(DEFAULT_MAX_CONNECTIONS)])
    result["floor"] = server_window(pool, floor.port, request, floor.pid, args.seconds)
    pool.close()
    if wrapper:
        stop_profiled(proc, pid)
        result["profile"] = split(read_stacks(out / "server-small.txt"), SERVER_LAYERS,
                                  result["execute"]["server_cpu_us_per_request"])
    return result


def client_loop(url: str, n: int, seconds: float, requests: int, wait: bool,
                server_pid: int | None) -> int:
    """The body of a client process: ``execute`` back to back for ``seconds`` (or
    ``requests`` calls), then one JSON line with the count and this process's CPU time
    and faults over the loop; with ``requests``, also each call's figures and the
    server's (``server_pid``).  With ``wait`` it first answers ``ready`` and waits for
    a line on stdin (so that a profiler can attach after start-up), and after its
    answer for another (so that the profiler stops before the interpreter's exit,
    whose full garbage collection is no request's cost)."""
    x = torch.randn(n, n)
    rows = []
    with genie.Client(url, timeout=600) as client:
        for _ in range(3 if n < 1000 else 1):
            client.execute("relu", x)
        gc.collect()  # the one full collection after start-up is not any request's cost
        if wait:
            print(json.dumps({"ready": True}), flush=True)
            sys.stdin.readline()
        start = counters(os.getpid())
        deadline = time.monotonic() + seconds
        done = 0
        while time.monotonic() < deadline if not requests else done < requests:
            if requests:
                me0, srv0 = counters(os.getpid()), counters(server_pid or os.getpid())
                began = time.perf_counter()
            client.execute("relu", x)
            done += 1
            if requests:
                wall = (time.perf_counter() - began) * 1000
                me1, srv1 = counters(os.getpid()), counters(server_pid or os.getpid())
                rows.append({"round_trip_ms": wall,
                             **{f"server_{k}_ms": v for k, v in client.last.server_timing.items()},
                             "server_minflt": srv1[0] - srv0[0], "server_majflt": srv1[1] - srv0[1],
                             "server_cpu_ms": 1000 * (srv1[2] - srv0[2]),
                             "client_minflt": me1[0] - me0[0], "client_cpu_ms": 1000 * (me1[2] - me0[2])})
        end = counters(os.getpid())
    print(json.dumps({"requests": done, "cpu_s": end[2] - start[2], "minflt": end[0] - start[0],
                      "rows": rows}), flush=True)
    if wait:  # until the profiler has let go: the interpreter's exit is no request's cost
        sys.stdin.readline()
    return 0


def json_line(proc: Any) -> dict[str, Any]:
    """The child's next JSON line (py-spy writes its own lines to the same stdout)."""
    text = ""
    while not text.startswith("{"):
        text = proc.stdout.readline()
        if not text:
            raise RuntimeError(f"{proc.args!r} exited without its result")
    answer: dict[str, Any] = json.loads(text)
    return answer


def profiled_client(children: Children, url: str, n: int, args: argparse.Namespace, out: Path,
                    name: str, native: bool, requests: int = 0) -> dict[str, Any]:
    wrapper = pyspy(out / f"{name}.txt", args.rate if not native else args.native_rate, native)
    if wrapper is None:
        return {}
    proc = children.spawn([__file__, "client-loop", "--url", url, "--n", str(n), "--seconds",
                           str(args.seconds), "--requests", str(requests)], wrapper=wrapper)
    line = json_line(proc)
    proc.wait(120)
    line.pop("rows", None)
    cpu_us = 1e6 * line["cpu_s"] / max(1, line["requests"])
    return {**line, "cpu_us_per_request": cpu_us,
            "profile": split(read_stacks(out / f"{name}.txt"), CLIENT_LAYERS, cpu_us)}


#: perf symbols by what they are doing, tried in order; the rest is "other kernel"
#: ([k]) or "other user".
PERF_KINDS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("page faults: zeroing fresh pages", ("clear_page",)),
    ("page faults: mapping, LRU, unmapping", (
        "page_fault", "do_anonymous_page", "handle_mm_fault", "folio", "lru", "tlb",
        "unmap_page", "zap_", "free_pages", "free_unref", "__list_del", "__list_add", "pte",
        "mmap_region", "populate", "__mm_populate", "get_page_from_freelist", "rmqueue",
        "memcg", "charge", "_raw_spin_unlock_irqrestore", "release_pages", "vma")),
    ("user-space copy or fill (memmove, memset)", ("__memmove", "__memcpy", "__memset",
                                                    "memcpy", "memmove", "memset")),
    ("kernel socket copy (to/from user)", ("copy_user", "_copy_to_iter", "_copy_from_iter",
                                           "rep_movs", "skb_copy", "copy_page_to_iter",
                                           "copy_page_from_iter", "csum_partial_copy")),
    ("TCP/IP stack and syscalls", ("tcp_", "ip_", "skb", "sock_", "__sys_", "entry_SYSCALL",
                                   "syscall", "loopback", "net_rx", "__dev_queue", "__napi",
                                   "do_softirq", "__softirq", "epoll", "ep_poll")),
    ("python garbage collector", ("gc_collect", "visit_decref", "visit_reachable",
                                  "_traverse", "subtract_refs", "move_unreachable")),
    ("python interpreter", ("libpython",)),
    ("torch (kernels, OpenMP threads, dispatch)", ("libtorch", "libgomp", "libc10", "at::",
                                                   "c10::")),
)


def perf_path() -> str | None:
    return shutil.which("perf")


def perf_kinds(data: Path) -> dict[str, float]:
    """Shares of ``perf record`` samples by what the symbol does (``PERF_KINDS``)."""
    exe = perf_path()
    if exe is None or not data.exists():
        return {}
    report = subprocess.run([exe, "report", "-i", str(data), "--no-children", "--sort", "dso,sym",
                             "--stdio", "-g", "none", "--percent-limit", "0"],
                            capture_output=True, text=True, timeout=300).stdout
    kinds: dict[str, float] = {}
    for line in report.splitlines():
        match = re.match(r"^\s+([\d.]+)%\s+(\S+)\s+\[(.)\]\s+(\S+)", line)
        if not match:
            continue
        share, space, sym = float(match[1]) / 100, match[3], f"{match[2]} {match[4]}"
        kind = next((k for k, marks in PERF_KINDS if any(m in sym for m in marks)),
                    "other kernel" if space == "k" else "other user")
        kinds[kind] = kinds.get(kind, 0.0) + share
    return dict(sorted(kinds.items(), key=lambda kv: -kv[1]))


def perf_record(pid: int, data: Path) -> subprocess.Popen[bytes] | None:
    exe = perf_path()
    if exe is None:
        return None
    return subprocess.Popen([exe, "record", "-e", "cpu-clock", "-F", "499", "-g", "-q",
                             "-o", str(data), "-p", str(pid)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def perf_stop(rec: subprocess.Popen[bytes] | None) -> None:
    if rec is not None and rec.poll() is None:
        rec.send_signal(signal.SIGINT)
        rec.wait(300)


def large(args: argparse.Namespace, children: Children, out: Path, mb: int) -> dict[str, Any]:
    """Round trips of an ``mb``-MB /execute with their faults, the server and the client
    each under ``perf record`` (light: their figures stand); then Python-layer
    profiles of both under py-spy with native frames."""
    n = int((mb * MB / 4) ** 0.5)
    repeats = max(3, int(512 / mb))
    body_mb = 4 * mb + 64
    proc, url = start_genie(children, max_body_mb=body_mb, max_held_mb=body_mb)
    loop = children.spawn([__file__, "client-loop", "--url", url, "--n", str(n), "--seconds", "0",
                           "--requests", str(repeats), "--wait", "--server-pid", str(proc.pid)],
                          stdin=True)
    json_line(loop)
    recs = [perf_record(proc.pid, out / f"server-{mb}mb.perf"),
            perf_record(loop.pid, out / f"client-{mb}mb.perf")]
    time.sleep(1.0)  # perf attached
    assert loop.stdin is not None
    loop.stdin.write("go\n")
    loop.stdin.flush()
    rows = json_line(loop)["rows"]
    for rec in recs:
        perf_stop(rec)
    loop.stdin.write("done\n")
    loop.stdin.flush()
    loop.wait(60)
    children.stop(proc)
    result: dict[str, Any] = {"n": n, "request_bytes": n * n * 4, "pages": n * n * 4 // 4096,
                              "median": {k: statistics.median(r[k] for r in rows) for k in rows[0]},
                              "runs": rows,
                              "server_perf": perf_kinds(out / f"server-{mb}mb.perf"),
                              "client_perf": perf_kinds(out / f"client-{mb}mb.perf")}
    wrapper = pyspy(out / f"server-{mb}mb.txt", args.native_rate, native=True)
    if wrapper:
        proc, url = start_genie(children, max_body_mb=body_mb, max_held_mb=body_mb, wrapper=wrapper,
                                timeout=600)  # native sampling pauses the process: slow start
        pid = child_pid(proc.pid)
        result["client"] = profiled_client(children, url, n, args, out, f"client-{mb}mb",
                                           native=True, requests=repeats)
        stop_profiled(proc, pid)
        result["server_profile"] = split(read_stacks(out / f"server-{mb}mb.txt"), SERVER_LAYERS,
                                         1000 * result["median"]["server_cpu_ms"])
    return result


def print_split(title: str, profile: dict[str, Any]) -> None:
    print(f"  {title} ({profile['samples']} samples)")
    for layer, cell in profile["layers"].items():
        us = cell["us_per_request"]
        cost = f"{us:9.1f} us" if us is not None and us < 10_000 else (
            f"{us / 1000:9.1f} ms" if us is not None else "")
        leaves = ", ".join(f"{k} {v:.0%}" for k, v in cell["leaves"].items())
        print(f"    {layer:<48} {cell['share']:6.1%} {cost}   [{leaves}]")


def print_result(result: dict[str, Any]) -> None:
    small = result.get("small", {})
    for name in ("execute", "floor") if small else ():
        s = small[name]
        print(f"small /execute, 1 client, {name}: {s['requests_per_s']:.0f} requests/s, "
              f"p50 {s['p50_ms']:.3f} ms, server CPU {s['server_cpu_us_per_request']:.0f} us/request")
    if "profile" in small:
        print_split("server, small /execute, by layer (CPU us per request)", small["profile"])
    if result.get("client_small"):
        c = result["client_small"]
        print(f"client, small /execute: {c['requests']} requests, {c['cpu_us_per_request']:.0f} us "
              "CPU per request (under the profiler)")
        print_split("client, small /execute, by layer", c["profile"])
    for mb, big in result.get("large", {}).items():
        m = big["median"]
        print(f"\n{mb} MB /execute (n={big['n']}, {big['pages']} pages), medians of "
              f"{len(big['runs'])}: round trip {m['round_trip_ms']:.1f} ms; server "
              + ", ".join(f"{k[7:-3]} {m[k]:.1f} ms" for k in m if k.startswith("server_")
                          and k.endswith("_ms") and k != "server_cpu_ms")
              + f"; server CPU {m['server_cpu_ms']:.0f} ms, faults {m['server_minflt']:.0f} minor "
              f"/ {m['server_majflt']:.0f} major; client CPU {m['client_cpu_ms']:.0f} ms, "
              f"faults {m['client_minflt']:.0f} minor")
        for side in ("server", "client"):
            cpu = m[f"{side}_cpu_ms"]
            print(f"  {side} CPU by kind (perf): " + ", ".join(
                f"{k} {v:.0%} ({v * cpu:.0f} ms)" for k, v in big[f"{side}_perf"].items()
                if v >= 0.01))
        if "server_profile" in big:
            print_split(f"server, {mb} MB, by layer (native leaves)", big["server_profile"])
        if big.get("client"):
            print_split(f"client, {mb} MB, by layer (native leaves)", big["client"]["profile"])
    if "error" in result:
        print(f"stopped early: {result['error']}")
    print(f"load average start {result['load_avg_start']}, end {result['load_avg_end']}")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    sub = p.add_subparsers(dest="role")
    loop = sub.add_parser("client-loop", help="(internal) the profiled client process")
    loop.add_argument("--url", required=True)
    loop.add_argument("--n", type=int, required=True)
    loop.add_argument("--seconds", type=float, required=True)
    loop.add_argument("--requests", type=int, default=0)
    loop.add_argument("--wait", action="store_true")
    loop.add_argument("--server-pid", type=int)
    p.add_argument("--seconds", type=float, default=6.0, help="each small window (default: %(default)s)")
    p.add_argument("--rate", type=int, default=1000, help="py-spy samples/s (default: %(default)s)")
    p.add_argument("--native-rate", type=int, default=100,
                   help="py-spy samples/s with native frames (default: %(default)s)")
    p.add_argument("--big", default="64,256", help="large request sizes, MB ('' for none)")
    p.add_argument("--no-small", action="store_true", help="skip the small /execute profiles")
    p.add_argument("--out", type=Path, help="keep py-spy's raw stacks here")
    p.add_argument("--json", type=Path, help="write the results here as JSON")
    args = p.parse_args(argv)
    if args.role == "client-loop":
        return client_loop(args.url, args.n, args.seconds, args.requests, args.wait,
                           args.server_pid)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    result: dict[str, Any] = {"load_avg_start": [round(v, 2) for v in os.getloadavg()]}
    if pyspy(Path("x"), 1, False) is None:
        print("py-spy not found (pip install py-spy): profiles skipped", file=sys.stderr)
    children = Children()
    with tempfile.TemporaryDirectory(prefix="genie-profile-") as tmp:
        out = args.out or Path(tmp)
        out.mkdir(parents=True, exist_ok=True)
        try:
            if not args.no_small:
                result["small"] = small_server(args, children, out)
                proc, url = start_genie(children, max_body_mb=64, max_held_mb=64)
                result["client_small"] = profiled_client(children, url, 10, args, out,
                                                         "client-small", native=False)
                children.stop(proc)
            result["large"] = {}
            for mb in (int(s) for s in args.big.split(",") if s.strip()):
                result["large"][mb] = large(args, children, out, mb)
        except Exception as exc:  # show what was measured before it
            result["error"] = repr(exc)
        finally:
            children.close()
    result["load_avg_end"] = [round(v, 2) for v in os.getloadavg()]
    print_result(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 1 if "error" in result else 0


if __name__ == "__main__":
    sys.exit(main())
