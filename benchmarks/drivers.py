"""The benchmark's side of its child processes: commands on their stdin, answers as
JSON lines on their stdout (the children are ``peers.py``, ``floor.py`` and
``load.py``; ``procs.Children`` starts them and always kills them).

A load window is the same two steps for every kind of client process: a job line,
answered ``ready`` once the child is connected and warmed up; then ``go T0 T1``
(``time.monotonic`` instants, one clock for every process on Linux), answered with
the latencies of the requests completed inside the window.  The window starts a
moment after the last child is ready, so every client runs through all of it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from procs import MB, Children, counters, free_port, read_line

HERE = Path(__file__).resolve().parent
PEERS = str(HERE / "peers.py")
FLOOR = str(HERE / "floor.py")
LEAD_IN_S = 0.2  # between the last "ready" and the window's start


def ask(proc: subprocess.Popen[str], line: str, timeout: float) -> dict[str, Any]:
    """Send one command line; return the child's one-line JSON answer."""
    assert proc.stdin is not None
    proc.stdin.write(line + "\n")
    proc.stdin.flush()
    answer: dict[str, Any] = json.loads(read_line(proc, timeout))
    return answer


class PortServer:
    """A child that prints its port once listening (raw peers, the HTTP floor).
    Started at once; ``port`` waits for it, so that several start side by side."""

    def __init__(self, children: Children, args: list[str]) -> None:
        self.proc = children.spawn(args)
        self.pid = self.proc.pid
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            self._port = int(read_line(self.proc, 120))
        return self._port


@dataclass
class Window:
    """What one load window measured: latencies of completed requests, and the
    server's CPU seconds and page faults over the window."""

    seconds: float
    latencies_ms: list[float] = field(default_factory=list)
    errors: int = 0
    server_cpu_s: float = 0.0
    server_minflt: int = 0
    ready: list[dict[str, Any]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        lat = sorted(self.latencies_ms)
        return {"requests": len(lat), "errors": self.errors,
                "requests_per_s": len(lat) / self.seconds,
                "p50_ms": percentile(lat, 0.50), "p99_ms": percentile(lat, 0.99),
                "server_cpu_pct": 100 * self.server_cpu_s / self.seconds,
                "server_minflt_per_request": self.server_minflt / max(1, len(lat))}


def percentile(ordered: list[float], q: float) -> float | None:
    """Nearest-rank percentile of an ascending list (``None`` when empty)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, max(0, int(q * len(ordered) + 0.999999) - 1))]


class ServerWatch:
    """A server's CPU time and faults between two instants of a window."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.start = (0, 0, 0.0)

    def at_start(self, t0: float) -> None:
        time.sleep(max(0.0, t0 - time.monotonic()))
        if self.pid is not None:
            self.start = counters(self.pid)

    def at_end(self, t1: float, window: Window) -> None:
        time.sleep(max(0.0, t1 - time.monotonic()))
        if self.pid is not None:
            minflt, _, cpu = counters(self.pid)
            window.server_minflt = minflt - self.start[0]
            window.server_cpu_s = cpu - self.start[2]


def run_window(procs: list[subprocess.Popen[str]], jobs: list[str], seconds: float,
               server_pid: int | None, ready_timeout: float = 120.0) -> Window:
    """One load window over ``procs``, each given its job line."""
    window = Window(seconds)
    for proc, job in zip(procs, jobs, strict=True):
        assert proc.stdin is not None
        proc.stdin.write(job + "\n")
        proc.stdin.flush()
    window.ready = [json.loads(read_line(p, ready_timeout)) for p in procs]
    t0 = time.monotonic() + LEAD_IN_S
    t1 = t0 + seconds
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write(f"go {t0} {t1}\n")
        proc.stdin.flush()
    watch = ServerWatch(server_pid)
    watch.at_start(t0)
    watch.at_end(t1, window)
    for proc in procs:
        answer = json.loads(read_line(proc, seconds + 120))
        window.latencies_ms += answer["latencies_ms"]
        window.errors += answer["errors"]
    return window


class ReplayPool:
    """``load.py replay`` processes, started once and reused by every window."""

    def __init__(self, children: Children, size: int) -> None:
        self.procs = [children.spawn([str(HERE / "load.py"), "replay"], stdin=True)
                      for _ in range(size)]

    def window(self, clients: int, port: int, request: Path, seconds: float,
               server_pid: int | None, save_reply: Path | None = None,
               warmup: int = 20) -> Window:
        """``clients`` processes replaying ``request`` to ``127.0.0.1:port``; the first
        one's last warm-up reply is written to ``save_reply``, for checking."""
        jobs = [json.dumps({"host": "127.0.0.1", "port": port, "request": str(request),
                            "warmup": warmup,
                            **({"save_reply": str(save_reply)} if save_reply and i == 0
                               else {})})
                for i in range(clients)]
        return run_window(self.procs[:clients], jobs, seconds, server_pid)

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.flush()


class RpcGroup:
    """``torch.distributed.rpc``: one peer (rank 0) and ``clients`` client processes.

    The first client times the sequential calls; a load window spreads its calls in
    flight over the clients (threads in each), since a torch process costs hundreds
    of MB and 64 of them would not fit where Genie's 64 client processes do.
    """

    def __init__(self, children: Children, clients: int) -> None:
        port = free_port()
        world = clients + 1
        self.peer = children.spawn([PEERS, "rpc-peer", "--port", str(port), "--world", str(world)])
        self.clients = [children.spawn([PEERS, "rpc-client", "--port", str(port), "--world",
                                        str(world), "--rank", str(r)], stdin=True)
                        for r in range(1, world)]

    def wait_ready(self) -> RpcGroup:
        """Every client has joined (they start side by side with everything else)."""
        for proc in self.clients:
            read_line(proc, 300)
        return self

    def prepare(self, n: int) -> bool:
        """Make the n x n input in the first client; True when its relu came back exact."""
        return bool(ask(self.clients[0], f"prepare {n}", 120 + n * n * 4 / MB)["exact"])

    def time(self, warmup: int, repeats: int, nbytes: int) -> list[float]:
        got: list[float] = ask(self.clients[0], f"time {warmup} {repeats}",
                               60 + (warmup + repeats) * nbytes / MB)["times_ms"]
        return got

    def window(self, n: int, in_flight: int, seconds: float) -> Window:
        """``in_flight`` calls at a time on an n x n input, over as many clients as
        divide them evenly."""
        used = max(c for c in range(1, len(self.clients) + 1) if in_flight % c == 0)
        jobs = [f"load {n} {in_flight // used}"] * used
        return run_window(self.clients[:used], jobs, seconds, self.peer.pid)

    def close(self) -> None:
        for proc in self.clients:
            if proc.poll() is None and proc.stdin is not None:
                proc.stdin.write("quit\n")
                proc.stdin.flush()
        for proc in [*self.clients, self.peer]:
            with contextlib.suppress(subprocess.TimeoutExpired):  # Children.close kills the rest
                proc.wait(30)
