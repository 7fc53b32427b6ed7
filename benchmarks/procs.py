"""Child processes and their memory, for ``benchmarks/transport.py``.

Every server the benchmark measures runs as its own process, started here and
always killed (by its own pid) when the benchmark ends, even on error, and by the
kernel (``PR_SET_PDEATHSIG``) should the benchmark itself be killed.  Memory is
read from ``/proc/<pid>/status``: ``VmRSS`` now and ``VmHWM`` the peak, which
writing ``5`` to ``/proc/<pid>/clear_refs`` resets (allowed for our own children).
Where that reset is refused, a thread samples ``VmRSS`` instead.  Page faults and CPU
time come from ``/proc/<pid>/stat``.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import httpx

MB = 1024 * 1024
_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    """A port the kernel just handed out (bound then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def read_line(proc: subprocess.Popen[str], timeout: float) -> str:
    """The child's next stdout line, or an error naming why it did not come."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], 0.2)
        if ready:
            line = proc.stdout.readline()
            if line:
                return line.strip()
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited with {proc.returncode}")
    raise TimeoutError(f"{proc.args!r} said nothing within {timeout} s")


def _die_with_parent() -> None:
    """In the child before exec: SIGTERM it if the benchmark dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG (Linux)
    except (OSError, AttributeError):
        pass


class Children:
    """The processes this benchmark started; ``close`` kills each still running."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[str]] = []

    def spawn(self, args: Sequence[str], *, stdin: bool = False,
              wrapper: Sequence[str] = (), env: dict[str, str] | None = None
              ) -> subprocess.Popen[str]:
        """``python ARGS`` as a child; ``wrapper`` (a profiler's command line) goes first;
        ``env`` replaces the environment (``benchmarks/ab.py``: one source tree each)."""
        proc = subprocess.Popen(
            [*wrapper, sys.executable, *args], stdout=subprocess.PIPE,
            stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
            stderr=None, text=True, bufsize=1, preexec_fn=_die_with_parent, env=env)
        self.procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[str], grace: float = 5.0) -> None:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(grace)
        for stream in (proc.stdin, proc.stdout):
            if stream is not None:
                stream.close()

    def close(self) -> None:
        while self.procs:
            self.stop(self.procs.pop())


def start_genie(children: Children, *, max_body_mb: float, max_held_mb: float,
                timeout: float = 60.0, wrapper: Sequence[str] = (),
                env: dict[str, str] | None = None, extra: Sequence[str] = ()
                ) -> tuple[subprocess.Popen[str], str]:
    """The real ``genie-server`` command line (plus ``extra`` flags) on a fresh port;
    waits for /health.  With a ``wrapper`` the process returned is the wrapper (see
    ``child_pid``)."""
    port = free_port()
    proc = children.spawn(["-m", "genie.runtime.simple_server", "--host", "127.0.0.1",
                           "--port", str(port), "--device", "cpu", "--log-level", "warning",
                           "--max-body-mb", str(max_body_mb), "--max-held-mb", str(max_held_mb),
                           *extra], wrapper=wrapper, env=env)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"genie server exited with {proc.returncode} during startup")
        try:
            if httpx.get(f"{url}/health", timeout=2.0).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"genie server not healthy within {timeout} s")
        time.sleep(0.1)


def child_pid(pid: int, timeout: float = 30.0) -> int:
    """The first child of ``pid`` (the program a profiler runs), once it exists."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        if kids:
            return int(kids[0])
        time.sleep(0.05)
    raise TimeoutError(f"process {pid} started no child within {timeout} s")


def status(pid: int) -> dict[str, int]:
    """``VmRSS`` and ``VmHWM`` of ``pid`` in bytes."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0]) * 1024
    return out


def counters(pid: int) -> tuple[int, int, float]:
    """Minor faults, major faults and CPU seconds (user + system) of ``pid`` so far.

    CPU time ticks at ``SC_CLK_TCK`` (10 ms here): read it over many requests.
    """
    text = Path(f"/proc/{pid}/stat").read_text()
    fields = text[text.rindex(")") + 2:].split()  # from field 3 (state) on
    return int(fields[7]), int(fields[9]), (int(fields[11]) + int(fields[12])) * _TICK_S


def reset_peak(pid: int) -> bool:
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
        return True
    except OSError:
        return False


class PeakWatch:
    """Peak RSS of one process over a ``with`` block: kernel HWM where it can be
    reset, else the highest of ``VmRSS`` samples taken every few milliseconds."""

    def __init__(self, pid: int, interval: float = 0.002) -> None:
        self.pid = pid
        self.interval = interval
        self.idle = 0
        self.sampled = 0
        self.hwm_reset = False
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            try:
                self.sampled = max(self.sampled, status(self.pid)["VmRSS"])
            except (OSError, KeyError):
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakWatch:
        self.idle = status(self.pid)["VmRSS"]
        self.hwm_reset = reset_peak(self.pid)
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        hwm = status(self.pid).get("VmHWM", 0) if self.hwm_reset else 0
        self.peak = max(hwm, self.sampled)

    def as_json(self) -> dict[str, object]:
        return {"pid_is_self": self.pid == os.getpid(), "idle_mb": round(self.idle / MB, 1),
                "peak_mb": round(self.peak / MB, 1),
                "growth_mb": round((self.peak - self.idle) / MB, 1),
                "method": "VmHWM after clear_refs" if self.hwm_reset else "VmRSS sampled"}
