"""The HTTP floor: a bare ASGI echo app under uvicorn as the Genie server runs it.

``python benchmarks/floor.py`` serves on a free port of 127.0.0.1 and prints the port
once listening.  Every ``POST`` is answered ``200`` with its own body: the same bytes
as a Genie request and about the same as its reply, with no framework, no routing,
no middleware, no decoding and no compute.  So Genie's time minus the floor's is what
Genie adds to HTTP, and the floor minus the tight raw socket is what HTTP costs.

uvicorn is started the way ``genie-server`` starts it (``genie.server.__main__``:
logging configured once, ``log_config=None``, the same graceful-shutdown, and the
concurrency limit the caller passes: ``genie.server.config.DEFAULT_MAX_CONNECTIONS``,
so that this process need not import genie, or torch), with httptools and uvloop
named explicitly: what uvicorn picks for Genie when both are installed, and the
floor stays that even if Genie's server changes its protocol class.

A body that arrives as one message is sent back as that message (no copy).  A larger
one is copied into a buffer taken from a free list and returned to it after the reply,
so that its pages stay warm, and sent in 1 MiB slices like Genie's streamed replies.
"""

from __future__ import annotations

import argparse
import logging
import socket
import sys
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

Message = dict[str, Any]
SLICE = 1024 * 1024
#: Buffers kept for reuse; more than the deepest concurrency the benchmark uses.
POOL_MAX = 128


class EchoApp:
    """Pure ASGI: lifespan acknowledged, every HTTP request answered with its body."""

    def __init__(self) -> None:
        self.free: list[bytearray] = []

    async def __call__(self, scope: Message, receive: Callable[[], Awaitable[Message]],
                       send: Callable[[Message], Awaitable[None]]) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                kind = message["type"].rsplit(".", 1)[-1]  # startup / shutdown
                await send({"type": f"lifespan.{kind}.complete"})
                if kind == "shutdown":
                    return
        if scope["type"] != "http":
            return
        message = await receive()
        body = message.get("body", b"")
        headers = [(b"content-type", b"application/octet-stream")]
        if not message.get("more_body", False):
            headers.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": body})
            return
        size = next(int(v) for k, v in scope["headers"] if k == b"content-length")
        buf = self._take(size)
        view = memoryview(buf)
        pos = 0
        while True:
            view[pos:pos + len(body)] = body
            pos += len(body)
            if not message.get("more_body", False):
                break
            message = await receive()
            body = message.get("body", b"")
        headers.append((b"content-length", str(pos).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        for start in range(0, pos, SLICE):
            await send({"type": "http.response.body", "body": view[start:min(pos, start + SLICE)],
                        "more_body": start + SLICE < pos})
        view.release()
        if len(self.free) < POOL_MAX:
            self.free.append(buf)

    def _take(self, size: int) -> bytearray:
        for i, buf in enumerate(self.free):
            if len(buf) >= size:
                return self.free.pop(i)
        return bytearray(size)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--log-level", default="warning")
    p.add_argument("--limit-concurrency", type=int, required=True,
                   help="uvicorn's limit_concurrency, as genie-server sets it")
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper())
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    sock.listen(2048)  # clients may connect (and queue) from the moment the port is printed
    print(sock.getsockname()[1], flush=True)
    config = uvicorn.Config(EchoApp(), http="httptools", loop="uvloop", log_level=args.log_level,
                            log_config=None, timeout_graceful_shutdown=10,
                            limit_concurrency=args.limit_concurrency)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
