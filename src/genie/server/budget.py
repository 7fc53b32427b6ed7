"""Byte budgets for what requests hold while they run: their bodies and their replies.

Peak memory of a Genie server is bounded by what its flags say (``docs/protocol.md``
section 9 states it; ``ServerConfig.memory_budget`` adds it up)::

    held tensors            --max-held-mb
  + request bodies          --max-inflight-body-mb   (received bytes and parsing them)
  + replies                 --max-inflight-reply-mb  (encoded, until the last byte is sent)
  + compute                 --compute-threads x --max-compute-mb
                            (a running request's live results, its running op's output
                            and that op's working memory, estimated before it runs)
  + connections             --max-connections x (--max-header-kb + a write buffer)
  + the process itself      measured: about 0.35 GiB idle on CPU

Request bodies and replies are counted here, by a ``ByteBudget`` each: a request
reserves what it will hold before it holds it (503 ``busy`` when that does not fit
now, 413 when it never could), and the ``ReleaseBudgets`` middleware returns every
reservation once the request has ended, however it ended.  Held tensors are counted by
the store, compute by the executor's allocation cap.
"""

from __future__ import annotations

import mmap
import threading
from collections.abc import Callable

from starlette.types import ASGIApp, Receive, Scope, Send

from genie.errors import PayloadTooLargeError, ServerBusyError

__all__ = ["POOLED_KEY", "RESERVED_KEY", "ByteBudget", "ReleaseBudgets", "adopt_for",
           "reserve_for"]

#: Where a request keeps what it reserved: ``scope["state"][RESERVED_KEY][budget] = n``.
RESERVED_KEY = "genie_reserved"
#: A request's receive buffer to hand back to the pool when it ends
#: (``genie.server.pool``): ``scope["state"][POOLED_KEY]``.
POOLED_KEY = "genie_pooled_buffer"


class ByteBudget:
    """Bytes the server has committed to hold at once for one purpose.

    Thread-safe: bodies are reserved on the event loop, their parsing and replies on
    worker threads.  ``flag`` names the command-line flag that sets the limit, for
    the messages.  Besides what requests reserve (``reserved``), idle memory kept for
    later requests may be ``parked`` here (``genie.server.pool``); the two together
    never pass the limit, and parked bytes are given up (``reclaim``, when set) before
    a request is refused.
    """

    def __init__(self, limit_bytes: int, *, name: str, flag: str) -> None:
        self.limit_bytes = limit_bytes
        self.name = name
        self.flag = flag
        self._lock = threading.Lock()
        self._reserved = 0
        self._parked = 0
        self.reclaim: Callable[[int], None] | None = None

    @property
    def reserved(self) -> int:
        """What requests hold now."""
        return self._reserved

    @property
    def parked(self) -> int:
        """What idle buffers hold now, for requests to come."""
        return self._parked

    def reserve(self, nbytes: int, what: str) -> None:
        """Reserve ``nbytes`` for ``what``, or refuse: 413 when it could never fit, 503
        ``busy`` (retried by clients) when it does not fit now, even with every parked
        byte given up."""
        if nbytes > self.limit_bytes:
            raise PayloadTooLargeError(
                f"{what} needs {nbytes} bytes, more than the server's whole "
                f"{self.limit_bytes}-byte budget for {self.name} ({self.flag})")
        over = self._reserved + self._parked + nbytes - self.limit_bytes
        if over > 0 and self._parked and self.reclaim is not None:
            self.reclaim(over)
        with self._lock:
            if self._reserved + self._parked + nbytes > self.limit_bytes:
                raise ServerBusyError(
                    f"server busy: {self.name} already take {self._reserved} of the "
                    f"server's {self.limit_bytes}-byte budget ({self.flag}), no room for "
                    f"{nbytes} bytes for {what}; retry shortly")
            self._reserved += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._reserved -= nbytes

    def park(self, nbytes: int) -> bool:
        """Count ``nbytes`` of idle memory, if there is room for it now."""
        with self._lock:
            if self._reserved + self._parked + nbytes > self.limit_bytes:
                return False
            self._parked += nbytes
            return True

    def unpark(self, nbytes: int) -> None:
        with self._lock:
            self._parked -= nbytes

    def claim(self, parked: int, nbytes: int) -> None:
        """Move ``nbytes`` of ``parked`` idle bytes to the requests' side (a request
        took an idle buffer and kept ``nbytes`` of it); the rest are given up."""
        with self._lock:
            self._parked -= parked
            self._reserved += nbytes


def reserve_for(scope: Scope, budget: ByteBudget, nbytes: int, what: str) -> None:
    """Reserve ``nbytes`` of ``budget`` for the request of ``scope``, returned when it
    ends (``ReleaseBudgets``)."""
    if nbytes <= 0:
        return
    budget.reserve(nbytes, what)
    adopt_for(scope, budget, nbytes)


def adopt_for(scope: Scope, budget: ByteBudget, nbytes: int) -> None:
    """Count ``nbytes`` already reserved in ``budget`` (a pooled buffer's, moved by
    ``ByteBudget.claim``) as the request's own, returned when it ends like those
    ``reserve_for`` made."""
    held: dict[str, int] = scope.setdefault("state", {}).setdefault(RESERVED_KEY, {})
    held[budget.name] = held.get(budget.name, 0) + nbytes


class ReleaseBudgets:
    """Pure ASGI middleware: return a request's reservations once it has ended.

    A received body lives as long as its request (tensors alias it, and /echo streams
    its reply straight from it), and a reply until its last byte is handed to the
    connection, so both count until the app returns: the reply sent, or the request
    failed, or the client went away.  Then a large body's buffer goes back to the
    pool (``give_back``, ``genie.server.pool``), which reuses it only once nothing
    refers to it.
    """

    def __init__(self, app: ASGIApp, budgets: list[ByteBudget],
                 give_back: Callable[[mmap.mmap], None] | None = None) -> None:
        self.app = app
        self.budgets = {b.name: b for b in budgets}
        self.give_back = give_back

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        try:
            await self.app(scope, receive, send)
        finally:
            for name, nbytes in state.pop(RESERVED_KEY, {}).items():
                self.budgets[name].release(nbytes)
            if self.give_back is not None and POOLED_KEY in state:
                self.give_back(state.pop(POOLED_KEY))  # after its bytes were released
