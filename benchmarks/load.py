"""A lean HTTP/1.1 client, and the load generator built on it; standard library only.

``LeanHttp`` is the least a Python client can do per exchange: the request is bytes
built once, a small one goes out in one ``sendall`` (a large one as its head, then
its body straight from the caller's memory), and the reply is read with
``recv_into`` into one buffer kept for the connection's life, so its pages stay
warm.  The HTTP floor of ``benchmarks/transport.py`` is timed with it, so that the
floor shows what uvicorn costs, not what a richer client costs.

``python benchmarks/load.py replay`` is one client process of the concurrency
section.  It takes jobs on stdin, one JSON line each::

    {"host": "127.0.0.1", "port": 8080, "request": "/tmp/req.bin", "warmup": 20,
     "save_reply": "/tmp/reply.bin"}

(``request``: a file holding the whole request, head and body, as sent;
``save_reply``, optional: where to write the body of the last warm-up reply, for the
caller to check).  For a job it connects, sends ``warmup`` requests, and answers
``{"ready": true, "status": S}`` (the last warm-up reply's status).  Then it waits
for ``go T0 T1`` (``time.monotonic`` instants, the same clock in every process on
Linux), sends requests back to back
from ``T0`` until ``T1``, and answers ``{"latencies_ms": [...], "errors": N}``: the
round trip of each reply completed by ``T1``, and the replies that were not 200.
``quit`` or end of input ends it.  Without torch or genie to import, a process
costs about 10 MB, so 64 of them fit beside the servers on a small machine.
"""

from __future__ import annotations

import json
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path

__all__ = ["LeanHttp", "request_bytes"]

#: Bodies up to this size go out in the same ``sendall`` as the head.
COALESCE_BYTES = 64 * 1024
#: A connection idle this long is replaced before use: uvicorn closes idle keep-alive
#: connections after 5 s (as ``genie.client.http1`` does, for the same reason).
IDLE_EXPIRY_S = 4.0
_HEAD_END = b"\r\n\r\n"


def request_bytes(method: str, target: str, host: str, headers: dict[str, str],
                  body: Sequence[bytes | memoryview], nbytes: int) -> tuple[bytes | memoryview, ...]:
    """A whole HTTP/1.1 request as the buffers to send: the head (with ``nbytes`` as its
    Content-Length; ``headers`` in lower case) and then the body's own buffers, joined
    into one when small."""
    fields = {**headers, "content-length": str(nbytes)}
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}", *(f"{k}: {v}" for k, v in fields.items())]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if nbytes <= COALESCE_BYTES:
        return (b"".join([head, *body]),)
    return (head, *body)


class LeanHttp:
    """One keep-alive connection and one receive buffer, reused for every exchange."""

    def __init__(self, host: str, port: int, timeout: float = 600.0) -> None:
        self.address = host, port
        self.timeout = timeout
        self.sock = self._connect()
        self.buf = bytearray(64 * 1024)

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(self.address, timeout=self.timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.used = time.monotonic()
        return sock

    def exchange(self, request: Sequence[bytes | memoryview]) -> tuple[int, memoryview]:
        """Send ``request`` (from ``request_bytes``); return the status and a view of the
        reply body, valid until the next exchange."""
        if time.monotonic() - self.used > IDLE_EXPIRY_S:
            self.sock.close()
            self.sock = self._connect()
        for part in request:
            self.sock.sendall(part)
        pos = 0
        while (end := self.buf.find(_HEAD_END, 0, pos)) < 0:
            pos += self._recv(pos)
        status, length = _status_and_length(bytes(self.buf[:end]))
        start = end + len(_HEAD_END)
        total = start + length
        if total > len(self.buf):
            grown = bytearray(total)
            grown[:pos] = memoryview(self.buf)[:pos]
            self.buf = grown
        while pos < total:
            pos += self._recv(pos, total - pos)
        if pos != total:
            raise ConnectionError(f"{pos - total} bytes past the reply (no pipelining here)")
        self.used = time.monotonic()
        return status, memoryview(self.buf)[start:total]

    def _recv(self, pos: int, want: int = 0) -> int:
        view = memoryview(self.buf)[pos:]
        got = self.sock.recv_into(view, want or len(view))
        if not got:
            raise ConnectionError("the server closed the connection")
        return got

    def close(self) -> None:
        self.sock.close()


def _status_and_length(head: bytes) -> tuple[int, int]:
    status_line, *lines = head.decode("latin-1").split("\r\n")
    length = None
    for line in lines:
        name, _, value = line.partition(":")
        if name.strip().lower() == "content-length":
            length = int(value)
    if length is None:
        raise ConnectionError(f"reply without Content-Length: {status_line!r}")
    return int(status_line.split(" ", 2)[1]), length


def _job(spec: dict[str, object]) -> None:
    request = (Path(str(spec["request"])).read_bytes(),)
    address = str(spec["host"]), int(str(spec["port"]))
    conn = LeanHttp(*address)
    try:
        status, body = 0, memoryview(b"")
        for _ in range(max(1, int(str(spec.get("warmup", 1))))):
            status, body = conn.exchange(request)
        if spec.get("save_reply"):
            Path(str(spec["save_reply"])).write_bytes(body)
        print(json.dumps({"ready": True, "status": status}), flush=True)
        go = sys.stdin.readline().split()
        if not go or go[0] != "go":
            return
        t0, t1 = float(go[1]), float(go[2])
        time.sleep(max(0.0, t0 - time.monotonic()))
        latencies: list[float] = []
        errors = 0
        now = time.monotonic()
        while now < t1:
            start = time.perf_counter()
            try:
                status, _ = conn.exchange(request)
            except OSError:  # refused or closed under load: counted, then a new connection
                status = 0
                conn.close()
                conn = LeanHttp(*address)
            done = time.perf_counter()
            now = time.monotonic()
            if now <= t1:
                latencies.append((done - start) * 1000)
                errors += status != 200
        print(json.dumps({"latencies_ms": [round(t, 4) for t in latencies], "errors": errors}),
              flush=True)
    finally:
        conn.close()


def replay() -> int:
    for line in sys.stdin:
        if not line.strip() or line.strip() == "quit":
            break
        _job(json.loads(line))
    return 0


if __name__ == "__main__":
    if sys.argv[1:] != ["replay"]:
        sys.exit("usage: python benchmarks/load.py replay  (jobs on stdin, see the docstring)")
    sys.exit(replay())
