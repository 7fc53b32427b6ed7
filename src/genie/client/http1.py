"""The plain-HTTP transport: a small blocking HTTP/1.1 client for ``genie.Client``.

Why beside httpx: on a loopback round trip of a 400-byte tensor, httpx spends about
0.8 ms in Python (URL and header models, h11 events, cookie handling) around a server
that answers in 0.25 ms, and on a 256 MB reply it hands the body over in 64 KiB
``bytes`` objects that must then be copied again.  Genie's requests are simple (one
host, a known Content-Length, no redirects, cookies or compression), so this
module writes the request with ``sendall`` straight from tensor memory and reads the
reply with ``recv_into`` straight into the buffer the decoded tensors will share.

What it does not do is left to httpx, which the client keeps using for ``https://``
URLs and when a proxy is configured in the environment.  Keep-alive connections are
pooled (thread-safe); one found closed while idle, or idle for longer than
``IDLE_EXPIRY_S``, is replaced before use.  So is the last large reply's buffer
(``WarmReply``): the next reply of that size is received into it, its pages already
mapped, but only once nothing refers to it any more (the tensors decoded from the
previous reply were dropped); a reply whose result the caller still holds is never
overwritten.

A request is never sent twice unless resending is harmless: when a reused
connection closes before any reply byte, the server may have received and acted on
the request (the close raced with it), so only ``GET`` and ``HEAD`` are resent on a
fresh connection.  ``DELETE`` is idempotent in HTTP's sense, but a second
``DELETE /tensors/ID`` answers 404 where the first (unseen) one succeeded, so it
is treated like ``POST``: the caller gets a non-retryable error saying so.
"""

from __future__ import annotations

import re
import select
import selectors
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from mmap import mmap

from genie.errors import TransportError
from genie.wire import receive_buffer, unshared

__all__ = ["IDLE_EXPIRY_S", "RESEND_SAFE_METHODS", "Http1Pool", "Reply", "WarmReply"]

MAX_HEAD_BYTES = 64 * 1024
#: Bodies up to this size are sent in the same system call as the request head.
COALESCE_BYTES = 64 * 1024
READ_CHUNK = 256 * 1024
_HAS_POLL = hasattr(select, "poll")
#: A chunk-size line (RFC 9112, 7.1): hex digits only, then optional extensions.  Not
#: ``int(text, 16)``, which also takes "0x10", "-5", "1_0" or " 5"; 15 digits at most
#: keeps a size below 2**60 bytes.
_CHUNK_LINE = re.compile(rb"([0-9A-Fa-f]{1,15})[ \t]*(?:;[^\r\n]*)?")
#: Pooled connections idle longer than this are closed instead of reused.  It stays
#: below uvicorn's keep-alive timeout (5 s by default) so that the client does not
#: send on a connection the server is closing at that very moment.
IDLE_EXPIRY_S = 4.0
#: Methods resent on a fresh connection when a reused one closes without replying.
RESEND_SAFE_METHODS = frozenset({"GET", "HEAD"})


def _failure(message: str, kind: str = "protocol") -> TransportError:
    """The exchange failed after the connection was made: not safe to retry."""
    return TransportError(message, kind=kind)


@dataclass
class Reply:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray | mmap = field(default_factory=bytearray)


class _Conn:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.pending = bytearray()  # bytes read past the end of the previous reply
        self.idle_since = time.monotonic()

    def stale(self) -> bool:
        """Idle keep-alive connections must have nothing to read; EOF means closed.

        ``poll`` (or ``selectors`` where there is none), not ``select.select``, which
        refuses descriptors >= 1024 and would make every connection of a process with
        many open files look stale.
        """
        if self.pending:
            return True
        try:
            if _HAS_POLL:
                poller = select.poll()
                poller.register(self.sock, select.POLLIN)
                return bool(poller.poll(0))  # readable, hung up or in error
            with selectors.DefaultSelector() as selector:
                selector.register(self.sock, selectors.EVENT_READ)
                return bool(selector.select(0))
        except (OSError, ValueError):
            return True

    def close(self) -> None:
        self.sock.close()


class WarmReply:
    """The buffer the last large reply was received into, kept to receive the next one.

    A large fresh buffer costs its page faults (``genie.wire.receive_buffer``: about
    1 ms per 4 MB here, more than the copy into it).  The buffer is handed out again
    only when this object's reference is the only one left (``genie.wire.unshared``):
    otherwise the reply gets a fresh one.
    At most ``max_bytes`` is kept, and nothing once the client is closed (an exchange
    still in flight at ``close`` gets a fresh buffer that is not kept).
    """

    #: A reply larger than this is not kept: it would stay resident in an idle client.
    max_bytes = 512 * 1024 * 1024

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.buf: mmap | None = None
        self.reused = 0
        self.closed = False

    def get(self, size: int) -> bytearray | mmap:
        """A buffer of exactly ``size`` bytes: the kept one when it is free and of
        this size, else a fresh one (kept in its place when it is a map)."""
        with self._lock:
            if self.buf is not None and len(self.buf) == size and unshared(self.buf):
                self.reused += 1
                return self.buf
            fresh = receive_buffer(size)
            self.buf = None
            if isinstance(fresh, mmap) and size <= self.max_bytes and not self.closed:
                self.buf = fresh
            return fresh

    def close(self) -> None:
        """Drop the kept buffer for good: the client is closing."""
        with self._lock:
            self.buf = None
            self.closed = True


class Http1Pool:
    """Keep-alive connections to one ``host:port``, and a warm reply buffer
    (``WarmReply``; ``reuse_reply_buffers = False`` turns it off, for comparisons)."""

    reuse_reply_buffers = True

    def __init__(self, host: str, port: int, *, connect_timeout: float,
                 on_reconnect: Callable[[], None] | None = None) -> None:
        self.host = host
        #: Told when a pooled connection turns out closed by the server (stale before use, or
        #: closed before replying) and a fresh one takes its place.
        self.on_reconnect = on_reconnect
        self.port = port
        self.connect_timeout = connect_timeout
        self.host_header = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self._idle: list[_Conn] = []
        self._lock = threading.Lock()
        self._closed = False
        self.warm = WarmReply()

    def _connect(self, timeout: float) -> _Conn:
        try:
            sock = socket.create_connection((self.host, self.port), timeout=self.connect_timeout)
        except OSError as exc:
            kind = "connect_timeout" if isinstance(exc, TimeoutError) else "connect"
            # The server never saw the request: the one failure safe to retry.
            raise TransportError(f"{type(exc).__name__}: {exc}", kind=kind,
                                 retryable=True) from exc
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.settimeout(timeout)
        return _Conn(sock)

    def _take(self) -> _Conn | None:
        with self._lock:
            while self._idle:
                conn = self._idle.pop()
                if time.monotonic() - conn.idle_since > IDLE_EXPIRY_S:
                    conn.close()  # expired by our own rule: routine, not a reconnect
                    continue
                if not conn.stale():
                    return conn
                conn.close()
                self._reconnected()
        return None

    def _reconnected(self) -> None:
        if self.on_reconnect is not None:
            self.on_reconnect()

    def _give(self, conn: _Conn) -> None:
        conn.idle_since = time.monotonic()
        with self._lock:
            if not self._closed:
                self._idle.append(conn)
                return
        conn.close()  # an exchange that finished after close(): nothing is pooled any more

    def close(self) -> None:
        self.warm.close()
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def request(self, method: str, target: str, headers: Mapping[str, str],
                chunks: Iterable[bytes | memoryview], nbytes: int, timeout: float,
                meter: Callable[[int | None], Callable[[int], None] | None] | None = None) -> Reply:
        """Send one request and read its reply.

        A reused connection that turns out closed before any reply byte arrived is
        retried once on a fresh one for ``GET`` and ``HEAD`` only; other methods raise
        ``TransportError``, since the server may have acted on the request (see the module
        docstring).  ``chunks`` must be iterable twice for a resend (a sequence).
        ``meter(content_length)`` may return a function told the body bytes read so far.
        """
        head = _head(method, target, self.host_header, headers)
        conn = self._take()
        if conn is not None:
            conn.sock.settimeout(timeout)
            try:
                return self._exchange(conn, method, head, chunks, nbytes, meter)
            except _NoReply as exc:
                conn.close()
                self._reconnected()
                if method not in RESEND_SAFE_METHODS:
                    raise _failure(
                        "server closed a reused keep-alive connection without replying; the "
                        f"{method} may have reached it, so it was not resent") from exc
        conn = self._connect(timeout)
        try:
            return self._exchange(conn, method, head, chunks, nbytes, meter)
        except _NoReply as exc:
            conn.close()
            if exc.__cause__ is not None and not isinstance(exc.__cause__, EOFError):
                raise _failure(f"{type(exc.__cause__).__name__}: {exc.__cause__}",
                               "write") from exc.__cause__
            raise _failure("server closed the connection without replying") from exc

    def _exchange(self, conn: _Conn, method: str, head: bytes,
                  chunks: Iterable[bytes | memoryview], nbytes: int,
                  meter: Callable[[int | None], Callable[[int], None] | None] | None) -> Reply:
        send_error: OSError | None = None
        try:
            _send(conn.sock, head, chunks, nbytes)
        except TimeoutError as exc:
            conn.close()
            raise _failure(f"timed out sending the request: {exc}", "write_timeout") from exc
        except OSError as exc:
            # The server may have answered early (413, 401) and closed: read that reply.
            send_error = exc
        except BaseException:
            conn.close()
            raise
        try:
            reply, keep = _read_reply(conn, method, meter, self.warm.get
                                      if self.reuse_reply_buffers else receive_buffer)
        except _NoReply as exc:
            if send_error is not None:
                raise _NoReply() from send_error
            raise exc
        except TimeoutError as exc:
            conn.close()
            raise _failure(f"timed out reading the reply: {exc}", "read_timeout") from exc
        except EOFError as exc:
            conn.close()
            raise _failure("server closed the connection in the middle of the reply") from exc
        except OSError as exc:
            conn.close()
            raise _failure(f"{type(exc).__name__}: {exc}", "read") from exc
        except BaseException:
            # A malformed reply (TransportError), MemoryError, KeyboardInterrupt: the stream
            # is at an unknown point, so the connection is closed, never pooled or leaked.
            conn.close()
            raise
        if keep and send_error is None:
            self._give(conn)
        else:
            conn.close()
        return reply


class _NoReply(Exception):
    """The connection closed before a single reply byte: the request was not served."""


def _visible_ascii(text: str) -> bool:
    return bool(text) and text.isascii() and text.isprintable() and " " not in text


def _head(method: str, target: str, host: str, headers: Mapping[str, str]) -> bytes:
    # A space, line break or control character in the request line or a header name
    # would let a caller-supplied string (a handle id) forge another request or header.
    if not (_visible_ascii(method) and _visible_ascii(target)):
        raise _failure(f"request target {target!r} holds a space, control or non-ASCII "
                         "character (percent-encode it)")
    lines = [f"{method} {target} HTTP/1.1", f"host: {host}"]
    for name, value in headers.items():
        if not _visible_ascii(name) or ":" in name:
            raise _failure(f"malformed header name {name!r}")
        if "\r" in value or "\n" in value:
            raise _failure(f"header {name!r} holds a line break")
        lines.append(f"{name}: {value}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _send(sock: socket.socket, head: bytes, chunks: Iterable[bytes | memoryview],
          nbytes: int) -> None:
    if nbytes <= COALESCE_BYTES:
        sock.sendall(b"".join([head, *chunks]))
        return
    sock.sendall(head)
    for chunk in chunks:
        sock.sendall(chunk)


def _recv_more(conn: _Conn, data: bytearray) -> None:
    piece = conn.sock.recv(READ_CHUNK)
    if not piece:
        raise EOFError
    data += piece


def _read_reply(conn: _Conn, method: str,
                meter: Callable[[int | None], Callable[[int], None] | None] | None = None,
                buffer: Callable[[int], bytearray | mmap] = receive_buffer
                ) -> tuple[Reply, bool]:
    data, conn.pending = conn.pending, bytearray()
    while (end := data.find(b"\r\n\r\n")) < 0:
        if len(data) > MAX_HEAD_BYTES:
            raise _failure(f"reply head exceeds {MAX_HEAD_BYTES} bytes")
        try:
            _recv_more(conn, data)
        except (EOFError, ConnectionResetError) as exc:
            if not data:
                raise _NoReply() from exc
            raise _failure("server closed the connection in the middle of the reply head") \
                from None
    status_line, *lines = data[:end].decode("latin-1").split("\r\n")
    version, _, rest = status_line.partition(" ")
    try:
        status = int(rest[:3])
    except ValueError:
        raise _failure(f"malformed status line {status_line!r}") from None
    headers: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise _failure(f"malformed header line {line!r}")
        key = name.strip().lower()
        headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
    if 100 <= status < 200:  # an interim reply: the real one follows
        conn.pending = data[end + 4:]
        return _read_reply(conn, method, meter, buffer)
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    rest_bytes = memoryview(data)[end + 4:]
    if method == "HEAD" or status in (204, 304):
        conn.pending = bytearray(rest_bytes)
        return Reply(status, headers), keep
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body, leftover = _read_chunked(conn, bytearray(rest_bytes))
        conn.pending = leftover
        return Reply(status, headers, body), keep
    length = headers.get("content-length")
    if length is None:
        body = bytearray(rest_bytes)
        while True:
            try:
                _recv_more(conn, body)
            except EOFError:
                return Reply(status, headers, body), False
    if not length.isdigit():
        raise _failure(f"malformed Content-Length {length!r}")
    size = int(length)
    advance = meter(size) if meter is not None else None
    body_buf = buffer(size)
    view = memoryview(body_buf)
    have = min(len(rest_bytes), size)
    view[:have] = rest_bytes[:have]
    conn.pending = bytearray(rest_bytes[have:])
    rest_bytes.release()
    while have < size:
        got = conn.sock.recv_into(view[have:], size - have)
        if got == 0:
            raise _failure(f"server closed the connection after {have} of {size} body bytes")
        have += got
        if advance is not None:
            advance(have)
    view.release()
    return Reply(status, headers, body_buf), keep


def _line_end(conn: _Conn, data: bytearray, pos: int, what: str) -> int:
    """Where the CRLF ending the line that starts at ``pos`` is, reading more as needed."""
    while (eol := data.find(b"\r\n", pos)) < 0:
        if len(data) - pos > MAX_HEAD_BYTES:
            raise _failure(f"{what} exceeds {MAX_HEAD_BYTES} bytes")
        _recv_more(conn, data)
    return eol


def _read_chunked(conn: _Conn, data: bytearray) -> tuple[bytearray, bytearray]:
    body = bytearray()
    pos = 0
    while True:
        eol = _line_end(conn, data, pos, "a chunk-size line")
        line = _CHUNK_LINE.fullmatch(data, pos, eol)
        if line is None:
            raise _failure(f"malformed chunk-size line {bytes(data[pos:eol][:80])!r}")
        size = int(line[1], 16)
        pos = eol + 2
        if size == 0:
            start = pos
            while (end := _line_end(conn, data, pos, "the trailer section")) != pos:
                pos = end + 2  # a trailer field, ignored
                if pos - start > MAX_HEAD_BYTES:
                    raise _failure(f"the trailer section exceeds {MAX_HEAD_BYTES} bytes")
            return body, data[pos + 2:]
        while len(data) < pos + size + 2:
            _recv_more(conn, data)
        if data[pos + size:pos + size + 2] != b"\r\n":
            raise _failure(f"chunk of {size} bytes not followed by CRLF")
        body += data[pos:pos + size]
        pos += size + 2
