"""Receiving request bodies: the size limit, memory committed only as bytes arrive, a pace.

A declared ``Content-Length`` is a promise the client may never keep.  So it is only
checked against ``--max-body-mb`` (413 before a byte is read); memory is committed,
and reserved against the budget shared by every request (``--max-inflight-body-mb``,
503 ``busy`` past it), only as the bytes arrive, in steps of half what is already
there (at least 1 MiB).  A client that declares a gigabyte and sends two bytes holds
1 MiB, not a gigabyte, and not the budget either.  The body must also keep a pace: no
gap of ``--body-timeout-s`` without a byte, and after that grace an average of at
least ``--min-body-rate-kb`` KiB/s, so a body trickled a byte at a time is cut off
(400, connection closed) and its reservation returned.
"""

from __future__ import annotations

import errno
import mmap
import time
from collections.abc import Callable

import anyio
from starlette.requests import ClientDisconnect, Request
from starlette.types import Message

from genie.errors import MalformedRequestError, OutOfMemoryError, PayloadTooLargeError
from genie.server.budget import POOLED_KEY, ByteBudget, adopt_for, reserve_for
from genie.server.pool import BufferPool
from genie.server.state import state_of

__all__ = ["CLOSE_KEY", "DIRECT_BYTES_KEY", "GROW_MIN_BYTES", "RECEIVE_INTO", "Pace", "read_body",
           "receive_body"]

#: Bodies smaller than this are received into one ``bytearray``, reserved whole at
#: their first byte; larger ones grow in steps of at least this much.
GROW_MIN_BYTES = 1024 * 1024
#: Set when the reply must close the connection (the body was not read to its end).
CLOSE_KEY = "genie_close_connection"
#: ``scope["extensions"][RECEIVE_INTO](write)`` (offered by Genie's connection
#: protocol, ``genie.server.connections``): from then on this request's body bytes go
#: to ``write(chunk)`` as they arrive, not into ASGI messages (``receive`` answers
#: ``body=b""``, and only once the last byte is in, ``more_body=False``).  Bytes
#: already buffered are written first.  No wake-up per chunk: the app watches progress.
RECEIVE_INTO = "genie.receive_into"
#: Body bytes the connection wrote straight into the buffer (``RECEIVE_INTO``), which
#: no ASGI message carried: the accounting adds them to the bytes received.
DIRECT_BYTES_KEY = "genie_direct_bytes"
#: ``madvise(MADV_POPULATE_WRITE)`` (Linux 5.14): fault a grown region in with one
#: system call rather than a page at a time while the bytes are copied in (about 60 ms
#: against 130 ms per 256 MB on the benchmark machine).
_MADV_POPULATE_WRITE = 23
_PAGE = mmap.PAGESIZE


class Pace:
    """When the next body byte must have arrived: within ``idle_s`` of the last one,
    and, after ``idle_s`` of grace, at an average of at least ``min_rate`` bytes/s."""

    def __init__(self, idle_s: float, min_rate: float) -> None:
        self.idle_s = idle_s
        self.min_rate = min_rate
        self.start = self.last = time.monotonic()
        self.received = 0

    def arrived(self, nbytes: int) -> None:
        if nbytes:
            self.received += nbytes
            self.last = time.monotonic()

    def _deadlines(self) -> tuple[float, float]:
        """(the idle deadline, the rate deadline) for the next byte, monotonic."""
        return (self.last + self.idle_s,
                self.start + self.idle_s + (self.received + 1) / self.min_rate)

    def deadline(self) -> float:
        """When the next byte must have arrived (monotonic)."""
        return min(self._deadlines())

    def late(self) -> MalformedRequestError:
        """Why the deadline passed with no byte: a stall, or a pace too slow."""
        idle, rate = self._deadlines()
        if idle <= rate:
            return MalformedRequestError(f"the request body stalled: no byte arrived for "
                                         f"{self.idle_s:g} s (--body-timeout-s)")
        return MalformedRequestError(
            f"the request body came too slowly: {self.received} bytes in "
            f"{time.monotonic() - self.start:.0f} s, under the server's minimum of "
            f"{self.min_rate / 1024:g} KiB/s after the first {self.idle_s:g} s "
            "(--min-body-rate-kb)")


class _Buffer:
    """One writable buffer that grows as bytes arrive, up to ``cap`` bytes, each step
    reserved for the request first.

    Large buffers are anonymous maps grown with ``mremap`` (no copy), so the
    memory committed is what was reserved, never the size a client declared.  A
    body of a declared size (``exact``) is received into an idle buffer of the
    ``pool`` when one fits (``genie.server.pool``): its pages are warm, and its
    reservation, the pool's until now, becomes the request's (``adopt``).
    """

    def __init__(self, cap: int, reserve: Callable[[int], None], *, exact: bool = False,
                 pool: BufferPool | None = None, adopt: Callable[[int], None] | None = None
                 ) -> None:
        self.cap = cap
        self.reserve = reserve
        self.buf: bytearray | mmap.mmap | None = None
        self.committed = 0
        self.exact = exact
        self.pool = pool
        self.adopt = adopt

    async def write(self, pos: int, chunk: bytes) -> None:
        end = pos + len(chunk)
        if end > self.committed:
            await self._grow(end)
        assert self.buf is not None
        self.buf[pos:end] = chunk

    async def _grow(self, end: int) -> None:
        if self.cap < GROW_MIN_BYTES:  # small: one bytearray, reserved whole
            self.reserve(self.cap)
            self.buf, self.committed = bytearray(self.cap), self.cap
            return
        if self.buf is None and self.exact and self.pool is not None and self.adopt:
            pooled = self.pool.take(self.cap)
            if pooled is not None:
                self.adopt(self.cap)
                self.buf, self.committed = pooled, self.cap
                return
        step = max(end - self.committed, GROW_MIN_BYTES, self.committed // 2)
        size = min(self.cap, -(-(self.committed + step) // _PAGE) * _PAGE)
        self.reserve(size - self.committed)
        start, self.committed = self.committed, size
        try:
            if self.buf is None:
                self.buf = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            else:
                assert isinstance(self.buf, mmap.mmap)
                self.buf.resize(size)
        except OSError as exc:  # ENOMEM: an address-space limit, or no memory left
            raise OutOfMemoryError(f"no host memory for {size} bytes of request body "
                                   f"({exc.strerror})") from exc
        await anyio.to_thread.run_sync(_populate, self.buf, start, size - start)

    def result(self, length: int) -> bytearray | mmap.mmap:
        """The buffer holding exactly the ``length`` bytes received."""
        if self.buf is None:
            return bytearray()
        if len(self.buf) != length:  # a chunked body: give back the unused tail
            if isinstance(self.buf, mmap.mmap):
                self.buf.resize(length)
            else:
                del self.buf[length:]
        return self.buf


def _populate(buf: mmap.mmap, start: int, length: int) -> None:
    try:
        buf.madvise(_MADV_POPULATE_WRITE, start, length)
    except OSError as exc:  # an older kernel: pages fault in as the bytes are copied
        if exc.errno not in (errno.EINVAL, errno.ENOSYS):
            raise OutOfMemoryError(f"no host memory for {length} bytes of request body "
                                   f"({exc.strerror})") from exc


async def read_body(request: Request, limit: int | None = None) -> bytearray | mmap.mmap:
    """Receive the body within the server's limits: ``--max-body-mb`` (or the smaller
    ``limit``), the budget for bodies in flight, and the pace (``receive_body``)."""
    state = state_of(request)
    config = state.config
    return await receive_body(request, min(config.max_body_bytes, limit or config.max_body_bytes),
                              state.bodies, config.body_timeout_s, config.min_body_rate_bytes,
                              state.body_pool)


async def receive_body(request: Request, limit: int, budget: ByteBudget, idle_timeout_s: float,
                       min_rate: float, pool: BufferPool | None = None) -> bytearray | mmap.mmap:
    """Receive the body into one writable buffer (tensors alias it); a large one into
    a warm buffer from ``pool`` when one fits, handed back to it when the request ends.

    A declared ``Content-Length`` over ``limit`` is refused (413) before reading a
    byte; memory is reserved in ``budget`` as the bytes arrive (503 past it).  A client
    that hangs up mid-body, or falls behind the pace, sent a bad request: it is counted
    as ``malformed_request`` rather than logged as an unhandled 500.
    """
    declared = request.headers.get("content-length")
    size: int | None = None
    if declared is not None:
        size = int(declared) if declared.isascii() and declared.isdigit() else -1
        if size < 0:
            raise MalformedRequestError(f"bad Content-Length {declared[:40]!r}")
        if size > limit:
            raise PayloadTooLargeError(f"request body is {size} bytes, over the server's "
                                       f"{limit}-byte limit (--max-body-mb)")
    buffer = _Buffer(limit if size is None else size,
                     lambda n: reserve_for(request.scope, budget, n, "this request body"),
                     exact=size is not None, pool=pool,
                     adopt=lambda n: adopt_for(request.scope, budget, n))
    pace = Pace(idle_timeout_s, min_rate)
    pos = 0
    more = True
    direct: _Direct | None = None
    receive_into = request.scope.get("extensions", {}).get(RECEIVE_INTO)
    try:
        while more:
            if direct is not None:
                more = await _direct_progress(request, pace, direct)
                continue
            chunk, more = await _next_chunk(request, pace)
            if not chunk:
                continue
            if pos + len(chunk) > buffer.cap:
                if size is None:
                    raise PayloadTooLargeError(f"request body passed the server's {limit}-byte "
                                               "limit (--max-body-mb)")
                raise MalformedRequestError("request body is longer than its Content-Length")
            await buffer.write(pos, chunk)
            pos += len(chunk)
            if (more and receive_into is not None and buffer.exact
                    and buffer.committed == buffer.cap):
                # All of it is committed (a warm buffer from the pool): the rest of the
                # bytes go straight in as they arrive, no ASGI message per chunk.
                direct = _Direct(buffer, pos)
                receive_into(direct.write)
    except ClientDisconnect:
        raise MalformedRequestError("the client disconnected before sending the whole "
                                    "request body") from None
    except BaseException:  # refused mid-body: the rest of it may never be read
        request.scope["state"][CLOSE_KEY] = more
        raise
    finally:  # counted however the body ended
        if direct is not None:
            request.scope["state"][DIRECT_BYTES_KEY] = direct.pos - direct.start
    if direct is not None:
        pos = direct.pos
    if size is not None and pos != size:
        raise MalformedRequestError(f"request body ended after {pos} of {size} bytes")
    body = buffer.result(pos)
    # A chunked body grown into a map may end smaller than any body the pool serves
    # (a warm buffer is taken only for a declared size of at least GROW_MIN_BYTES).
    if pool is not None and isinstance(body, mmap.mmap) and len(body) >= GROW_MIN_BYTES:
        request.scope["state"][POOLED_KEY] = body
    return body


class _Direct:
    """Where the connection writes a body's bytes itself (``RECEIVE_INTO``): straight
    into the committed buffer, from ``start`` on."""

    def __init__(self, buffer: _Buffer, start: int) -> None:
        assert buffer.buf is not None
        self.buf = buffer.buf
        self.start = self.pos = start
        self.overflow = False

    def write(self, chunk: bytes) -> None:
        end = self.pos + len(chunk)
        if end > len(self.buf):  # the parser keeps to Content-Length: never, but be sure
            self.overflow = True
            return
        self.buf[self.pos:end] = chunk
        self.pos = end


async def _direct_progress(request: Request, pace: Pace, direct: _Direct) -> bool:
    """Wait for the body's end, or its pace's next deadline; whether more is to come."""
    before = direct.pos
    message = await _receive_in_pace(request, pace)
    pace.arrived(direct.pos - before)
    if direct.overflow:
        raise MalformedRequestError("request body is longer than its Content-Length")
    if message is None:
        if direct.pos > before:
            return True  # still coming: a new deadline from here
        raise pace.late()
    return bool(message.get("more_body", False))


async def _next_chunk(request: Request, pace: Pace) -> tuple[bytes, bool]:
    """The next piece of the body and whether more follows, within the pace."""
    message = await _receive_in_pace(request, pace)
    if message is None:
        raise pace.late()
    body: bytes = message.get("body", b"")
    pace.arrived(len(body))
    return body, bool(message.get("more_body", False))


async def _receive_in_pace(request: Request, pace: Pace) -> Message | None:
    """The next request message, or None if the pace's deadline passed first; a client
    gone is ``ClientDisconnect``."""
    with anyio.move_on_after(max(0.0, pace.deadline() - time.monotonic())):
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        return message
    return None
