"""Who computes when: compute threads shared fairly between clients, and a running
request's deadline and cancellation.

Compute threads are few (``--compute-threads``) and a heavy graph holds one for as long
as it runs: four abandoned copies of a 4.6 s graph once made a client's tiny ``relu``
wait 17.6 s.  So threads are granted round-robin between clients, a client being its
``X-Genie-Session`` header (what the Genie client sends) or else its address, and one
client may hold at most ``--client-compute-threads`` of them (one less than all, by
default): however many heavy requests one client queues, another client's request
waits for no more than one of them.  A client that sends many session ids counts as
many clients; behind a token (section 8 of docs/protocol.md) every client is trusted.

A running request is also watched (``Watch``): it must finish within
``--max-compute-s``, and it stops once its client has gone, both checked between graph
nodes (torch cannot interrupt an op half-way).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

import anyio

from genie.errors import ComputeTimeoutError, MalformedRequestError

__all__ = ["FairSlots", "Watch", "client_key"]


def client_key(session: str | None, peer: str | None) -> str:
    """Who a request is for fairness: its session (``X-Genie-Session``, checked by
    ``genie.server.sessions.session_of``) if it names one, else its address."""
    if session:
        return "session:" + session
    return "peer:" + (peer or "")


class FairSlots:
    """``total`` slots granted round-robin between clients, at most ``per_client`` each.

    Used from the event loop only.  Every request queues behind its own client's
    earlier ones; a free slot goes to the next client in turn that is under its limit.
    """

    def __init__(self, total: int, per_client: int) -> None:
        self.total = total
        self.per_client = per_client
        self.busy = 0
        self.running: dict[str, int] = {}
        self._waiting: OrderedDict[str, deque[anyio.Event]] = OrderedDict()

    async def acquire(self, client: str) -> None:
        if (not self._waiting and self.busy < self.total
                and self.running.get(client, 0) < self.per_client):  # nobody in line
            self._grant(client)
            return
        granted = anyio.Event()
        self._waiting.setdefault(client, deque()).append(granted)
        self._dispatch()
        try:
            await granted.wait()
        except BaseException:  # cancelled: give back the slot, or the place in line
            if granted.is_set():
                self.release(client)
            else:
                queue = self._waiting.get(client)
                if queue is not None:
                    queue.remove(granted)
                    if not queue:
                        del self._waiting[client]
            raise

    def release(self, client: str) -> None:
        self.busy -= 1
        self.running[client] -= 1
        if not self.running[client]:
            del self.running[client]
        self._dispatch()

    def _dispatch(self) -> None:
        while self.busy < self.total:
            client = next((c for c in self._waiting
                           if self.running.get(c, 0) < self.per_client), None)
            if client is None:
                return
            queue = self._waiting.pop(client)
            queue.popleft().set()
            if queue:
                self._waiting[client] = queue  # to the back of the line: round-robin
            self._grant(client)

    def _grant(self, client: str) -> None:
        self.busy += 1
        self.running[client] = self.running.get(client, 0) + 1


class Watch:
    """One request's compute: its deadline from when it starts, and whether its client
    has gone.  ``check`` (between graph nodes, on the worker thread) raises if either."""

    def __init__(self, max_s: float) -> None:
        self.max_s = max_s
        self.deadline = float("inf")
        self.gone = threading.Event()

    def start(self) -> None:
        self.deadline = time.monotonic() + self.max_s

    def check(self, where: str) -> None:
        if self.gone.is_set():
            raise MalformedRequestError(f"the client disconnected while its request was "
                                        f"computing; stopped {where}")
        if time.monotonic() > self.deadline:
            raise ComputeTimeoutError(
                f"the request computed for longer than the server's {self.max_s:g} s "
                f"(--max-compute-s); stopped {where}.  Split the graph or use smaller "
                "tensors")
