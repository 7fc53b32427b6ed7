"""The non-Genie peers of ``benchmarks/transport.py``, each run as its own process.

``python benchmarks/peers.py raw-naive``
    The raw socket as first written: a plain TCP server in Python.  A message is an
    8-byte little-endian length then that many bytes of fp32 data, each received
    into a fresh buffer (``genie.wire.receive_buffer``), relu'd by torch out of
    place and sent back with the same framing (head and body in two sends).  It
    pays a fresh mapping and a fresh relu output per message.

``python benchmarks/peers.py raw-tight``
    The limit: the same framing, served as tightly as Python allows.  One buffer,
    kept for the process's life and grown only when a larger message comes, holds
    the length and the data, so its pages stay warm; a message is read with as few
    ``recv_into`` calls as the kernel allows (one for a small one), relu'd in place,
    and the same bytes are sent back in one ``sendall``.  ``TightRawClient`` is its
    client: one reused receive buffer too, the request sent with one ``sendmsg``
    from the caller's tensor memory.

Both print their port on stdout once listening.

``python benchmarks/peers.py rpc-peer --port P --world W`` / ``rpc-client --port P
--world W --rank R``
    ``torch.distributed.rpc`` over TensorPipe (TCP transport only, as between two
    machines): the peer (rank 0) serves ``relu_remote`` to ``W - 1`` clients.  A
    client reads commands on stdin and answers each with one JSON line:
    ``prepare N`` (make the n x n input, check one result), ``time WARMUP REPEATS``
    (round trips in ms), and ``load N THREADS`` (make the input, warm up, answer
    ``ready``), then ``go T0 T1``: ``THREADS`` threads call ``rpc_sync`` back to
    back from ``T0`` to ``T1`` (``time.monotonic``), answered with the latencies.

Kept apart from the Genie paths so that each server is a separate process whose
memory can be read from ``/proc``, and so that a hung peer can be killed alone.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import struct
import sys
import threading
import time
import warnings
from collections.abc import Callable
from mmap import mmap

import torch

from genie.wire import receive_buffer

LEN = struct.Struct("<Q")


def recv_exact_into(sock: socket.socket, view: memoryview) -> None:
    """Fill ``view`` from ``sock``; raise ConnectionError on a short read."""
    pos, size = 0, len(view)
    while pos < size:
        got = sock.recv_into(view[pos:], size - pos)
        if got == 0:
            raise ConnectionError(f"peer closed after {pos} of {size} bytes")
        pos += got


def recv_message(sock: socket.socket) -> bytearray | mmap | None:
    head = bytearray(LEN.size)
    try:
        recv_exact_into(sock, memoryview(head))
    except ConnectionError:
        return None
    (size,) = LEN.unpack(head)
    buf = receive_buffer(size)  # fresh for every message: the naive peer's way
    recv_exact_into(sock, memoryview(buf))
    return buf


def send_message(sock: socket.socket, payload: memoryview) -> None:
    sock.sendall(LEN.pack(payload.nbytes))
    if payload.nbytes:
        sock.sendall(payload)


def tensor_view(t: torch.Tensor) -> memoryview:
    """A flat byte view of a contiguous CPU tensor (no copy)."""
    return t.reshape(-1).view(torch.uint8).numpy().data.cast("B")


def listen() -> socket.socket:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    print(listener.getsockname()[1], flush=True)
    return listener


def serve(handle: Callable[[socket.socket], None]) -> int:
    """Accept connections one at a time, forever, and hand each to ``handle``."""
    listener = listen()
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn, contextlib.suppress(ConnectionError):  # a client gone mid-message
            handle(conn)


def naive_connection(conn: socket.socket) -> None:
    while (buf := recv_message(conn)) is not None:
        x = torch.frombuffer(buf, dtype=torch.float32) if buf else torch.empty(0)
        send_message(conn, tensor_view(torch.relu(x)))


class Framed:
    """One message buffer, reused: ``[8-byte length][data]``, grown only for a larger
    message (to populated memory, so even its first use is warm)."""

    def __init__(self) -> None:
        self.buf: bytearray | mmap = bytearray(64 * 1024)
        self.view = memoryview(self.buf)
        self._tensors: dict[int, torch.Tensor] = {}

    def receive(self, sock: socket.socket) -> int | None:
        """Read one message; its data size, or ``None`` when the peer closed first."""
        pos = 0
        while pos < LEN.size:
            got = sock.recv_into(self.view[pos:])
            if not got:
                if pos:
                    raise ConnectionError(f"peer closed after {pos} bytes")
                return None
            pos += got
        (size,) = LEN.unpack_from(self.view)
        total = LEN.size + size
        if total > len(self.buf):
            grown = receive_buffer(total)
            grown[:pos] = self.view[:pos]
            self.view.release()
            self._tensors.clear()
            self.buf, self.view = grown, memoryview(grown)
        if pos > total:
            raise ConnectionError("bytes past the message (no pipelining here)")
        if pos < total:
            recv_exact_into(sock, self.view[pos:total])
        return size

    def tensor(self, size: int) -> torch.Tensor:
        """The data of a ``size``-byte message as fp32 (cached per size: no new object)."""
        t = self._tensors.get(size)
        if t is None:
            t = self._tensors[size] = (torch.frombuffer(self.view[LEN.size:LEN.size + size],
                                                        dtype=torch.float32)
                                       if size else torch.empty(0))
        return t


def tight_connection(conn: socket.socket) -> None:
    frame = Framed()
    while (size := frame.receive(conn)) is not None:
        torch.relu_(frame.tensor(size))
        conn.sendall(frame.view[:LEN.size + size])  # the length is still in place


def send_vectored(sock: socket.socket, parts: list[memoryview]) -> None:
    """``sendall`` of several buffers, in as few ``sendmsg`` calls as the kernel takes."""
    while parts:
        sent = sock.sendmsg(parts)
        while parts and sent >= len(parts[0]):
            sent -= len(parts[0])
            parts.pop(0)
        if parts and sent:
            parts[0] = parts[0][sent:]


class RawClient:
    """The client side of the naive raw path, used in the benchmark's own process."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=600)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def relu(self, x: torch.Tensor) -> torch.Tensor:
        send_message(self.sock, tensor_view(x))
        buf = recv_message(self.sock)
        if buf is None:
            raise ConnectionError("raw server closed the connection")
        return torch.frombuffer(buf, dtype=torch.float32).reshape(x.shape)

    def close(self) -> None:
        self.sock.close()


class TightRawClient(RawClient):
    """The client of the tight raw path: one ``sendmsg`` out from tensor memory, the
    reply into one reused buffer.  The tensor returned is a view of that buffer,
    valid until the next call."""

    def __init__(self, port: int) -> None:
        super().__init__(port)
        self.frame = Framed()

    def relu(self, x: torch.Tensor) -> torch.Tensor:
        send_vectored(self.sock, [memoryview(LEN.pack(x.nbytes)), tensor_view(x)])
        size = self.frame.receive(self.sock)
        if size is None:
            raise ConnectionError("raw server closed the connection")
        return self.frame.tensor(size).view(x.shape)


def relu_remote(x: torch.Tensor) -> torch.Tensor:
    """What the rpc peer runs: the same op as the other paths."""
    return torch.relu(x)


def _init_rpc(name: str, rank: int, world: int, port: int) -> None:
    from torch.distributed import rpc

    warnings.filterwarnings("ignore", message="You are using a Backend")  # torch's own, at init
    os.environ.setdefault("TP_SOCKET_IFNAME", "lo")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    opts = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{port}",
                                           num_worker_threads=4, rpc_timeout=600,
                                           _transports=["uv"], _channels=["basic"])
    rpc.init_rpc(name, rank=rank, world_size=world, rpc_backend_options=opts)


def rpc_peer(port: int, world: int) -> int:
    from torch.distributed import rpc

    _init_rpc("peer", 0, world, port)
    rpc.shutdown()  # blocks until every client shuts down too
    return 0


def _reply(obj: object) -> None:
    print(json.dumps(obj), flush=True)


def _load(x: torch.Tensor, threads: int) -> None:
    """``threads`` callers back to back over the window the next ``go`` line gives."""
    from torch.distributed import rpc

    exact = torch.equal(rpc.rpc_sync("peer", relu_remote, args=(x,)), torch.relu(x))
    for _ in range(3 * threads):
        rpc.rpc_sync("peer", relu_remote, args=(x,))
    _reply({"ready": True, "exact": exact})
    go = sys.stdin.readline().split()
    t0, t1 = float(go[1]), float(go[2])
    latencies: list[list[float]] = [[] for _ in range(threads)]

    def caller(mine: list[float]) -> None:
        time.sleep(max(0.0, t0 - time.monotonic()))
        while time.monotonic() < t1:
            start = time.perf_counter()
            rpc.rpc_sync("peer", relu_remote, args=(x,))
            done = time.perf_counter()
            if time.monotonic() <= t1:
                mine.append((done - start) * 1000)

    workers = [threading.Thread(target=caller, args=(mine,)) for mine in latencies]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    _reply({"latencies_ms": [round(t, 4) for mine in latencies for t in mine], "errors": 0})


def rpc_client(port: int, world: int, rank: int) -> int:
    from torch.distributed import rpc

    _init_rpc(f"client{rank}", rank, world, port)
    _reply({"ready": True})
    x = expected = torch.empty(0)
    for line in iter(sys.stdin.readline, ""):
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        if parts[0] == "prepare":  # prepare N: make the input, check the result once
            n = int(parts[1])
            x = torch.randn(n, n)
            expected = torch.relu(x)
            ok = torch.equal(rpc.rpc_sync("peer", relu_remote, args=(x,)), expected)
            _reply({"n": n, "exact": ok})
        elif parts[0] == "load":  # load N THREADS, then go T0 T1
            _load(torch.randn(int(parts[1]), int(parts[1])), int(parts[2]))
        else:  # time WARMUP REPEATS
            warmup, repeats = map(int, parts[1:3])
            times = []
            for i in range(warmup + repeats):
                start = time.perf_counter()
                rpc.rpc_sync("peer", relu_remote, args=(x,))
                if i >= warmup:
                    times.append((time.perf_counter() - start) * 1000)
            _reply({"times_ms": times})
    rpc.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=["raw-naive", "raw-tight", "rpc-peer", "rpc-client"])
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--world", type=int, default=2, help="rpc: the peer and its clients")
    p.add_argument("--rank", type=int, default=1, help="rpc-client: 1 .. world - 1")
    args = p.parse_args(argv)
    if args.role == "raw-naive":
        return serve(naive_connection)
    if args.role == "raw-tight":
        return serve(tight_connection)
    if args.role == "rpc-peer":
        return rpc_peer(args.port, args.world)
    return rpc_client(args.port, args.world, args.rank)


if __name__ == "__main__":
    sys.exit(main())
