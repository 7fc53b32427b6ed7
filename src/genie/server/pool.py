"""Receive buffers kept warm between requests, within the budget for request bodies.

On this kind of machine first touching memory is the dominant cost of a large body:
a fresh 64 MiB receive buffer costs about 15 ms of page faults (and populating it)
before a byte is copied in.  So a large body's buffer (an anonymous map, see
``genie.server.bodies``) is handed back here when its request ends, and the next body
of about its size is received into it, its pages already mapped.

What the pool keeps is memory the server holds, so it is counted where bodies are:
an idle buffer is parked in the budget for request bodies (``--max-inflight-body-mb``:
``ByteBudget.park``), a request that takes one takes those bytes into its own
reservation (``ByteBudget.claim``), and when a body needs room the budget does not
have, idle buffers are dropped first (``ByteBudget.reclaim``).  The peak memory
``docs/protocol.md`` section 9 states is unchanged; the pool never holds more than
``MAX_POOL_BYTES`` (nor half the budget) in at most ``MAX_POOL_BUFFERS`` buffers.

A buffer is reused only when nothing else refers to it any more: tensors decoded from
a body alias it (``torch.frombuffer`` keeps the buffer object alive, a memoryview
exports it), and a reply still being written, or a tensor some code kept, must never
see the next request's bytes.  The pool counts references (``genie.wire.unshared``)
each time it considers a buffer, and passes over one that is still referenced.
"""

from __future__ import annotations

import mmap
import threading

from genie.server.budget import ByteBudget
from genie.wire import unshared

__all__ = ["MAX_POOL_BUFFERS", "MAX_POOL_BYTES", "BufferPool"]

#: At most this many idle buffers, and this many bytes of them, are kept.
MAX_POOL_BUFFERS = 4
MAX_POOL_BYTES = 1024 * 1024 * 1024


class BufferPool:
    """Idle receive buffers (anonymous maps), reserved in ``budget`` while idle.

    Thread-safe: buffers are taken and given back on the event loop, but the budget
    may ask for room (``reclaim``) from a worker thread.
    """

    def __init__(self, budget: ByteBudget, *, max_bytes: int = MAX_POOL_BYTES,
                 max_buffers: int = MAX_POOL_BUFFERS) -> None:
        self.budget = budget
        self.max_bytes = min(max_bytes, budget.limit_bytes // 2)
        self.max_buffers = max_buffers
        self._idle: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self.idle_bytes = 0
        self.hits = 0
        budget.reclaim = self.reclaim

    def _free(self, i: int) -> bool:
        return unshared(self._idle[i])

    def take(self, size: int) -> mmap.mmap | None:
        """An idle buffer of exactly ``size`` bytes, from one of ``size`` to twice that,
        or ``None``.  Its ``size`` parked bytes become reserved for the caller, who must
        record them for the request (``genie.server.budget.adopt_for``)."""
        with self._lock:
            best = None
            for i in range(len(self._idle)):
                length = len(self._idle[i])
                if size <= length <= 2 * size and self._free(i) and (
                        best is None or length < len(self._idle[best])):
                    best = i
            if best is None:
                return None
            buf = self._idle.pop(best)
            self.idle_bytes -= len(buf)
            length = len(buf)
            if length != size:
                buf.resize(size)  # shrinks in place: the pages kept stay warm
            self.budget.claim(length, size)
        self.hits += 1
        return buf

    def give_back(self, buf: mmap.mmap) -> None:
        """Keep ``buf`` for a later body, if it fits the pool and the budget: its bytes
        are parked in the budget now (the request that held it has released its own).
        The oldest idle buffers make room; what does not fit is dropped (freed when the
        last reference to it goes)."""
        size = len(buf)
        if size > self.max_bytes or buf.closed:
            return
        with self._lock:
            while self._idle and (len(self._idle) >= self.max_buffers
                                  or self.idle_bytes + size > self.max_bytes):
                self._drop(0)
            if not self.budget.park(size):
                return
            self._idle.append(buf)
            self.idle_bytes += size

    def reclaim(self, nbytes: int) -> None:
        """Drop idle buffers, oldest first, until ``nbytes`` are returned to the budget
        or none is left."""
        with self._lock:
            freed = 0
            while self._idle and freed < nbytes:
                freed += self._drop(0)

    def _drop(self, i: int) -> int:
        buf = self._idle.pop(i)
        size = len(buf)
        self.idle_bytes -= size
        self.budget.unpark(size)
        return size

    def clear(self) -> None:
        self.reclaim(self.idle_bytes + 1)
