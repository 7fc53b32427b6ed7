"""The non-Genie peers of ``benchmarks/transport.py``, each run as its own process.

``python benchmarks/peers.py raw-server``
    The limit: a plain TCP socket server in Python.  A request is an 8-byte
    little-endian length then that many bytes of fp32 data; it is received into one
    preallocated buffer (``genie.wire.receive_buffer``, the same memory as Genie
    uses, so the limit is not handicapped), relu'd by torch (out of place, like the
    Genie op) and sent back with the same framing.  It prints its port on stdout
    once listening.

``python benchmarks/peers.py rpc-peer --port P`` / ``rpc-client --port P``
    ``torch.distributed.rpc`` over TensorPipe (TCP transport only, as between two
    machines): the peer serves ``relu_remote``; the client reads commands on stdin,
    ``prepare N`` (make the n x n input, check one result) and ``time WARMUP
    REPEATS``, and answers each with one JSON line (round trips in ms).

Kept apart from the Genie paths so that each server is a separate process whose
memory can be read from ``/proc``, and so that a hung peer can be killed alone.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import time
import warnings
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
    buf = receive_buffer(size)  # the same memory technique as Genie, so the limit stays one
    recv_exact_into(sock, memoryview(buf))
    return buf


def send_message(sock: socket.socket, payload: memoryview) -> None:
    sock.sendall(LEN.pack(payload.nbytes))
    if payload.nbytes:
        sock.sendall(payload)


def tensor_view(t: torch.Tensor) -> memoryview:
    """A flat byte view of a contiguous CPU tensor (no copy)."""
    return t.reshape(-1).view(torch.uint8).numpy().data.cast("B")


def raw_server() -> int:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    print(listener.getsockname()[1], flush=True)
    while True:
        conn, _ = listener.accept()
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with conn:
            while (buf := recv_message(conn)) is not None:
                x = torch.frombuffer(buf, dtype=torch.float32) if buf else torch.empty(0)
                send_message(conn, tensor_view(torch.relu(x)))


class RawClient:
    """The client side of the raw path, used in the benchmark's own process."""

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


def relu_remote(x: torch.Tensor) -> torch.Tensor:
    """What the rpc peer runs: the same op as the other paths."""
    return torch.relu(x)


def _init_rpc(name: str, rank: int, port: int) -> None:
    from torch.distributed import rpc

    warnings.filterwarnings("ignore", message="You are using a Backend")  # torch's own, at init
    os.environ.setdefault("TP_SOCKET_IFNAME", "lo")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    opts = rpc.TensorPipeRpcBackendOptions(init_method=f"tcp://127.0.0.1:{port}",
                                           num_worker_threads=4, rpc_timeout=600,
                                           _transports=["uv"], _channels=["basic"])
    rpc.init_rpc(name, rank=rank, world_size=2, rpc_backend_options=opts)


def rpc_peer(port: int) -> int:
    from torch.distributed import rpc

    _init_rpc("peer", 1, port)
    rpc.shutdown()  # blocks until the client shuts down too
    return 0


def rpc_client(port: int) -> int:
    from torch.distributed import rpc

    _init_rpc("client", 0, port)
    print(json.dumps({"ready": True}), flush=True)
    x = expected = torch.empty(0)
    for line in sys.stdin:
        parts = line.split()
        if not parts or parts[0] == "quit":
            break
        if parts[0] == "prepare":  # prepare N: make the input, check the result once
            n = int(parts[1])
            x = torch.randn(n, n)
            expected = torch.relu(x)
            ok = torch.equal(rpc.rpc_sync("peer", relu_remote, args=(x,)), expected)
            print(json.dumps({"n": n, "exact": ok}), flush=True)
            continue
        warmup, repeats = map(int, parts[1:3])  # time WARMUP REPEATS
        times = []
        for i in range(warmup + repeats):
            start = time.perf_counter()
            rpc.rpc_sync("peer", relu_remote, args=(x,))
            if i >= warmup:
                times.append((time.perf_counter() - start) * 1000)
        print(json.dumps({"times_ms": times}), flush=True)
    rpc.shutdown()
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("role", choices=["raw-server", "rpc-peer", "rpc-client"])
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args(argv)
    if args.role == "raw-server":
        return raw_server()
    if args.role == "rpc-peer":
        return rpc_peer(args.port)
    return rpc_client(args.port)


if __name__ == "__main__":
    sys.exit(main())
