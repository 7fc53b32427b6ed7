"""What one connection may cost the server: a deadline for its request head, a bound on
the head's size, and a deadline for a reply the client does not read.

uvicorn has none of these.  A connection that sends nothing held one of the
``--max-connections`` slots for as long as it stayed open (64 silent sockets made every
request 503 for a minute); its ``httptools`` parser buffers a header line however long
(a 128 MiB one took 15.8 s and stalled ``/health``); and a client that never reads its
reply kept it in memory forever.  ``GenieHttpProtocol`` is uvicorn's own httptools
protocol with the three added:

- the head (request line and headers) must arrive within ``--header-timeout-s`` of the
  connection opening, or of the previous reply ending (408, connection closed);
- a head longer than ``--max-header-kb`` is refused as it arrives (431, closed);
- a reply whose bytes the client stops taking for ``--write-timeout-s`` (the write
  buffer stays over its high-water mark) is cut off: the connection is dropped, the
  reply's memory and its share of the budget for replies in flight returned.

It also writes each reply's head together with the start of its body (one system
call and one TCP segment for a small reply, not two: ``_HeadWithBody``), and lets the
app receive a large body straight into its own buffer
(``genie.server.bodies.RECEIVE_INTO``): uvicorn otherwise copies every chunk twice
more (into the request's ``bytearray``, then out of it as ``bytes``) and wakes the
app for each one.

Why a subclass of the httptools protocol rather than ``h11`` with its
``h11_max_incomplete_event_size``: h11 would bound the head, but not the time it takes
nor the reply's, and it parses in Python (measured: see docs/performance.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import Any, ClassVar

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from genie.errors import GenieError, HeaderTooLargeError, RequestTimeoutError
from genie.server.bodies import RECEIVE_INTO
from genie.server.config import ServerConfig
from genie.server.failures import ERROR_TYPE_KEY

__all__ = ["GenieHttpProtocol", "WRITE_TIMEOUT_TYPE", "protocol_for", "uvicorn_settings"]

log = logging.getLogger("genie.server")
#: The error type ``/stats`` counts a reply cut off by the write timeout under.
WRITE_TIMEOUT_TYPE = "write_timeout"
#: A reply head is joined to a first body write up to this size (a copy); a larger
#: one goes out beside it from its own memory (``writelines``).
JOIN_BYTES = 64 * 1024


class _HeadWithBody:
    """The connection's transport as one reply sees it: the reply's head (uvicorn
    writes it alone) is held back and written with the first piece of the body.

    A small reply then leaves in one ``write``: measured, the separate head write was
    about a seventh of the server's CPU on a small ``/execute``.  An interim
    ``100 Continue`` goes out at once; anything else the reply does with the
    transport (close, abort), or its end, sends a held head first.  Not used for
    ``HEAD``, whose reply uvicorn ends without writing a body.
    """

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport
        self.head: bytes | None = None
        self.started = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if not self.started and bytes(data[:12]) != b"HTTP/1.1 100":
            self.started = True
            self.head = bytes(data)
            return
        head, self.head = self.head, None
        if head is None:
            self.transport.write(data)
        elif len(data) <= JOIN_BYTES:
            self.transport.write(head + bytes(data))
        else:
            self.transport.writelines([head, data])

    def flush(self) -> None:
        head, self.head = self.head, None
        if head is not None:
            self.transport.write(head)

    def close(self) -> None:
        self.flush()
        self.transport.close()

    def __getattr__(self, name: str) -> Any:  # is_closing, abort, get_extra_info, ...
        if name in ("abort", "write_eof"):
            self.flush()
        return getattr(self.transport, name)


class GenieHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a head deadline, a head size limit and a write
    deadline (class attributes: ``protocol_for`` makes a subclass with a config's)."""

    header_timeout_s: ClassVar[float] = 10.0
    max_header_bytes: ClassVar[int] = 64 * 1024
    write_timeout_s: ClassVar[float] = 60.0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_head = False
        self._head_bytes = 0
        self._refused = False
        self._head_timer: asyncio.TimerHandle | None = None
        self._write_timer: asyncio.TimerHandle | None = None
        # (the request's cycle, where its body bytes go): see ``RECEIVE_INTO``.
        self._sink: tuple[Any, Callable[[bytes], None]] | None = None

    # --- the head deadline and size -------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._await_head()

    def _await_head(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.header_timeout_s, self._head_timed_out)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        was_in_head = self._in_head
        super().data_received(data)
        if self._in_head and was_in_head:
            # A head still incomplete after a whole chunk: the parser is buffering it.
            # (The chunk a head begins in is not counted: it may hold the end of the
            # previous request too.  A head that completes is measured exactly.)
            self._head_bytes += len(data)
            if self._head_bytes > self.max_header_bytes:
                self._refuse(self._too_large())

    def _too_large(self) -> HeaderTooLargeError:
        return HeaderTooLargeError(
            f"the request head passed the server's {self.max_header_bytes}-byte limit "
            "(--max-header-kb); large arguments belong in the body")

    def on_message_begin(self) -> None:
        if self._refused:  # a request pipelined behind a refused head is never started
            return
        super().on_message_begin()
        self._in_head = True
        self._head_bytes = 0

    def on_headers_complete(self) -> None:
        if self._refused:
            return
        self._in_head = False
        self._cancel_head_timer()
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers) + 16
        if size > self.max_header_bytes:
            self._refuse(self._too_large())
            return
        previous = self.cycle
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is None or cycle is previous:  # no request cycle was started for it
            return
        if cycle.scope["method"] != "HEAD":  # a HEAD reply has no body to join its head to
            cycle.transport = _HeadWithBody(self.transport)  # type: ignore[assignment]
        extensions: dict[str, Any] = cycle.scope.setdefault("extensions", {})  # type: ignore[assignment]
        extensions[RECEIVE_INTO] = lambda write: self._receive_into(cycle, write)

    def _receive_into(self, cycle: Any, write: Callable[[bytes], None]) -> None:
        if cycle.response_complete or self._refused:
            return
        if cycle.body:  # what arrived before the call goes first
            write(bytes(cycle.body))
            cycle.body = bytearray()
        if cycle is not self.cycle:
            # A pipelined request's head was parsed while the app was busy: this body
            # is complete, and was all in ``cycle.body``.
            return
        self._sink = (cycle, write)
        self.flow.resume_reading()

    def on_body(self, body: bytes) -> None:
        if self._refused:
            return
        if self._sink is not None and self._sink[0] is self.cycle:
            if not self.cycle.response_complete:
                self._sink[1](body)
            return
        super().on_body(body)

    def on_message_complete(self) -> None:
        self._sink = None  # it holds the app's buffer: let go of it with the last byte
        if not self._refused:
            super().on_message_complete()

    def on_response_complete(self) -> None:
        held = getattr(self.cycle, "transport", None)
        if isinstance(held, _HeadWithBody):
            held.flush()  # a reply that ended with no body write still sends its head
        super().on_response_complete()
        if not self.transport.is_closing() and not self.pipeline:
            self._await_head()  # the next request's head has its own deadline

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        idle = self.cycle is None or self.cycle.response_complete
        if idle and not self._in_head and self.cycle is not None:
            self.transport.close()  # a keep-alive connection that went quiet: just close
            return
        self._refuse(RequestTimeoutError(
            f"no complete request head within {self.header_timeout_s:g} s "
            "(--header-timeout-s)"), reply=idle)

    def _refuse(self, exc: GenieError, *, reply: bool = True) -> None:
        """Answer ``exc`` in the one error shape (when no reply is under way) and close;
        nothing more is read from this connection."""
        self._refused = True
        if reply and (self.cycle is None or self.cycle.response_complete):
            body = json.dumps(exc.to_json()).encode()
            head = (f"HTTP/1.1 {exc.status} {exc.error_type}\r\n"
                    "content-type: application/json\r\n"
                    f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode()
            self.transport.write(head + body)
        log.info("closing a connection from %s: %s", self.client, exc.message)
        self.transport.close()

    # --- the write deadline ---------------------------------------------------------

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._write_timer is None:
            self._write_timer = self.loop.call_later(self.write_timeout_s,
                                                     self._write_timed_out)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None

    def _write_timed_out(self) -> None:
        self._write_timer = None
        if self.cycle is not None and not self.cycle.response_complete:
            self.cycle.scope.setdefault("state", {})[ERROR_TYPE_KEY] = WRITE_TIMEOUT_TYPE
        log.info("dropping a connection from %s: its client took no reply bytes for %g s "
                 "(--write-timeout-s)", self.client, self.write_timeout_s)
        self.transport.abort()  # close() would wait for the buffer to drain: never

    def connection_lost(self, exc: Exception | None) -> None:
        self._sink = None
        self._cancel_head_timer()
        if self._write_timer is not None:
            self._write_timer.cancel()
            self._write_timer = None
        super().connection_lost(exc)


def protocol_for(config: ServerConfig) -> type[GenieHttpProtocol]:
    """``GenieHttpProtocol`` with ``config``'s limits, for ``uvicorn.Config(http=...)``."""
    return type("GenieHttpProtocolWithLimits", (GenieHttpProtocol,), {
        "header_timeout_s": config.header_timeout_s,
        "max_header_bytes": config.max_header_bytes,
        "write_timeout_s": config.write_timeout_s,
    })


def uvicorn_settings(config: ServerConfig) -> dict[str, Any]:
    """What ``uvicorn.run`` / ``uvicorn.Config`` get from a Genie config, the command line
    and ``BackgroundServer`` alike."""
    # No WebSocket: Genie has no such route, and an upgrade request is served as plain HTTP.
    return {"http": protocol_for(config), "ws": "none", "limit_concurrency": config.max_connections}
