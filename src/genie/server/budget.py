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

import threading

from starlette.types import ASGIApp, Receive, Scope, Send

from genie.errors import PayloadTooLargeError, ServerBusyError

__all__ = ["RESERVED_KEY", "ByteBudget", "ReleaseBudgets", "reserve_for"]

#: Where a request keeps what it reserved: ``scope["state"][RESERVED_KEY][budget] = n``.
RESERVED_KEY = "genie_reserved"


class ByteBudget:
    """Bytes the server has committed to hold at once for one purpose.

    Thread-safe: bodies are reserved on the event loop, their parsing and replies on
    worker threads.  ``flag`` names the command-line flag that sets the limit, for
    the messages.
    """

    def __init__(self, limit_bytes: int, *, name: str, flag: str) -> None:
        self.limit_bytes = limit_bytes
        self.name = name
        self.flag = flag
        self._lock = threading.Lock()
        self._reserved = 0

    @property
    def reserved(self) -> int:
        return self._reserved

    def reserve(self, nbytes: int, what: str) -> None:
        """Reserve ``nbytes`` for ``what``, or refuse: 413 when it could never fit, 503
        ``busy`` (retried by clients) when it does not fit now."""
        if nbytes > self.limit_bytes:
            raise PayloadTooLargeError(
                f"{what} needs {nbytes} bytes, more than the server's whole "
                f"{self.limit_bytes}-byte budget for {self.name} ({self.flag})")
        with self._lock:
            if self._reserved + nbytes > self.limit_bytes:
                raise ServerBusyError(
                    f"server busy: {self.name} already take {self._reserved} of the "
                    f"server's {self.limit_bytes}-byte budget ({self.flag}), no room for "
                    f"{nbytes} bytes for {what}; retry shortly")
            self._reserved += nbytes

    def release(self, nbytes: int) -> None:
        with self._lock:
            self._reserved -= nbytes


def reserve_for(scope: Scope, budget: ByteBudget, nbytes: int, what: str) -> None:
    """Reserve ``nbytes`` of ``budget`` for the request of ``scope``, returned when it
    ends (``ReleaseBudgets``)."""
    if nbytes <= 0:
        return
    budget.reserve(nbytes, what)
    held: dict[str, int] = scope.setdefault("state", {}).setdefault(RESERVED_KEY, {})
    held[budget.name] = held.get(budget.name, 0) + nbytes


class ReleaseBudgets:
    """Pure ASGI middleware: return a request's reservations once it has ended.

    A received body lives as long as its request (tensors alias it, and /echo streams
    its reply straight from it), and a reply until its last byte is handed to the
    connection, so both count until the app returns: the reply sent, or the request
    failed, or the client went away.
    """

    def __init__(self, app: ASGIApp, budgets: list[ByteBudget]) -> None:
        self.app = app
        self.budgets = {b.name: b for b in budgets}

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
