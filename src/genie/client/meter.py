"""What the clients report beside results: each exchange's figures (``Exchange``), what
disturbed them (``Disturbances``), and the progress of large bodies (``Progress``).

They are kept for callers that time requests (the pytest checks): a figure measured while
a retry, a reconnect or a timeout happened can be marked as such by comparing two
``Disturbances`` snapshots, and a ``progress`` callback hears how far a large body has
gone, in either direction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from typing import Literal

from genie.client.calls import UPLOAD_CHUNK, Plan
from genie.wire import slices

__all__ = ["PROGRESS_MIN_BYTES", "Disturbances", "Exchange", "Metered", "Progress",
           "ProgressCallback", "ProgressRelay"]

#: Bodies from this size on report their progress (smaller ones are over too soon to matter).
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


@dataclass
class Exchange:
    """Figures of the last request: status, round trip, bytes each way, server phases (ms)."""

    status: int = 0
    round_trip_ms: float = 0.0
    bytes_sent: int = 0
    bytes_received: int = 0
    server_timing: dict[str, float] = field(default_factory=dict)


@dataclass
class Disturbances:
    """What went wrong on the way, counted since the client was made.

    A timing taken while any of these moved measured a retry or a reconnect as well as the
    request: compare two snapshots (``since``) around a measurement to know.
    """

    #: Requests sent again after a retryable failure (connect failure, 503).
    retries: int = 0
    #: Pooled connections found closed by the server, or closed before a reply, and replaced.
    reconnects: int = 0
    #: Exchanges that ran into a connect, read or write timeout.
    timeouts: int = 0
    #: Exchanges that failed below HTTP (connect, read, write, protocol), retried or not.
    transport_errors: int = 0

    def copy(self) -> Disturbances:
        return Disturbances(**self.as_dict())

    def since(self, before: Disturbances) -> Disturbances:
        return Disturbances(**{f.name: getattr(self, f.name) - getattr(before, f.name)
                               for f in fields(self)})

    def as_dict(self) -> dict[str, int]:
        return {f.name: int(getattr(self, f.name)) for f in fields(self)}

    def __add__(self, other: Disturbances) -> Disturbances:
        return Disturbances(**{f.name: getattr(self, f.name) + getattr(other, f.name)
                               for f in fields(self)})

    def __bool__(self) -> bool:
        return any(self.as_dict().values())


@dataclass(frozen=True)
class Progress:
    """How far one large body has gone: ``done`` of ``total`` bytes (``total`` None: unknown)."""

    method: str
    path: str
    phase: Literal["upload", "download"]
    done: int
    total: int | None


#: Called with a ``Progress`` as a large body goes out or comes in (from the thread or task
#: doing the I/O; keep it quick).
ProgressCallback = Callable[[Progress], None]
#: Wraps a progress callback so that it is delivered elsewhere (``AsyncClient``: on its
#: event loop, when a worker thread does the exchange).
ProgressRelay = Callable[[ProgressCallback], ProgressCallback]


class Metered:
    """A body's chunks as ``UPLOAD_CHUNK`` slices that report their progress as they are taken.

    Iterable more than once (a transport may resend a request on a fresh connection); each
    pass reports from zero.
    """

    def __init__(self, plan: Plan, progress: ProgressCallback) -> None:
        self.plan = plan
        self.progress = progress

    def __iter__(self) -> Iterator[memoryview]:
        done = 0
        for piece in slices(self.plan.chunks, UPLOAD_CHUNK):
            yield piece
            done += len(piece)
            self.progress(Progress(self.plan.method, self.plan.path, "upload", done, self.plan.nbytes))
