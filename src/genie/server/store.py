"""Server-resident tensors ("handles"), and the client sessions that own them.

The byte budget is a promise to clients: an upload that would pass it is
refused (413 ``budget_exceeded``), and nothing a live session holds is ever
evicted to make room.  Clients free memory with ``DELETE /tensors/{id}``, many
handles at once with ``POST /tensors/release`` (or a graph's ``"release"``), and
everything their session holds with ``DELETE /sessions/{id}`` (``Client.close``).

Each handle belongs to the session that made it (the ``X-Genie-Session`` header),
or to no session: a request without the header is anonymous, and its handles are
held until deleted, as before sessions existed.  A session is *live* while it has
a request in flight or made one within the lease (``--handle-lease-s``); a session
idle past the lease is presumed dead (a client killed before it could close) and
its handles are freed, by the app's sweeper (``genie.server.sessions``) and, before
an upload is refused for the budget, at once.  Using a handle renews its owner's
lease too, so tensors another client still uses are not freed under it.

One lock guards handles and sessions together, so a handle and its owner's
accounting never disagree; every operation under it is a few dict updates.
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from genie.errors import BudgetExceededError, NotFoundError
from genie.wire import dtype_name

__all__ = ["HANDLE_OVERHEAD_BYTES", "MAX_TRACKED_SESSIONS", "RECENTLY_FREED", "TOP_SESSIONS",
           "Released", "SessionEntry", "TensorStore", "handle_info"]

#: /stats lists this many sessions (the largest holders); totals cover all of them.
TOP_SESSIONS = 10
#: Sessions holding nothing are forgotten, least recently active first, past this many.
MAX_TRACKED_SESSIONS = 10_000
#: Ids of handles freed by a lease or a closed session remembered for the 404 message.
RECENTLY_FREED = 4096
#: What holding one tensor costs beyond its data (the tensor object, its id, the map
#: entry: about 600 bytes measured), counted against the budget so that empty tensors
#: are not free: 50,000 of them once held 30 MB while the budget saw 0 bytes.
HANDLE_OVERHEAD_BYTES = 1024


def handle_info(handle_id: str, tensor: torch.Tensor) -> dict[str, Any]:
    """The JSON a client gets back for a held tensor."""
    return {
        "id": handle_id,
        "shape": list(tensor.shape),
        "dtype": dtype_name(tensor.dtype),
        "nbytes": tensor.numel() * tensor.element_size(),
    }


@dataclass
class _Held:
    tensor: torch.Tensor
    owner: str | None
    nbytes: int


@dataclass
class SessionEntry:
    """One client session: what it holds and when it was last heard from."""

    id: str
    last_active: float
    handles: set[str] = field(default_factory=set)
    bytes: int = 0
    requests: int = 0
    inflight: int = 0

    def idle_s(self, now: float) -> float:
        return 0.0 if self.inflight else max(0.0, now - self.last_active)

    def info(self, now: float) -> dict[str, Any]:
        return {"id": self.id, "handles": len(self.handles), "bytes": self.bytes,
                "idle_s": round(self.idle_s(now), 3), "requests": self.requests,
                "inflight": self.inflight}


@dataclass
class Released:
    """What one release freed: ids freed, ids not held (already gone), bytes freed."""

    ids: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    bytes: int = 0
    sessions: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"released": self.ids, "missing": self.missing, "count": len(self.ids),
                "bytes": self.bytes}


class TensorStore:
    """Handles and their owner sessions, within one byte budget.

    ``lease_s`` (None: no lease) is how long a session may stay idle before its
    handles are freed.
    """

    def __init__(self, budget_bytes: int, *, lease_s: float | None = None) -> None:
        self.budget_bytes = budget_bytes
        self.lease_s = lease_s or None
        self._lock = threading.Lock()
        self._tensors: dict[str, _Held] = {}
        self._bytes = 0
        #: Least recently active first (``move_to_end`` on every request).
        self._sessions: OrderedDict[str, SessionEntry] = OrderedDict()
        self._anonymous = [0, 0]  # handles, bytes
        self._recently_freed: OrderedDict[str, str] = OrderedDict()  # id -> why
        #: Freed by the lease and by closed sessions: [sessions, handles, bytes].
        self._freed = {"lease": [0, 0, 0], "closed": [0, 0, 0]}

    # --- handles ---------------------------------------------------------------------

    def put_many(self, tensors: Mapping[str, torch.Tensor], *, owner: str | None = None,
                 freeing: Iterable[str] = ()) -> dict[str, dict[str, Any]]:
        """Hold all of ``tensors`` or none of them, for ``owner``; returns key -> handle info.

        ``freeing``: handles the caller releases right after (a graph's ``"release"``),
        so they do not count against the budget here.
        """
        # A view would pin its whole base storage while counting only its own bytes.
        owned = {k: (t if t.is_contiguous() and t.storage_offset() == 0
                     and t.untyped_storage().nbytes() == t.numel() * t.element_size()
                     else t.clone(memory_format=torch.contiguous_format))
                 for k, t in tensors.items()}
        need = sum(t.numel() * t.element_size() for t in owned.values())
        freeing = set(freeing)
        with self._lock:
            if not self._fits(need, len(owned), freeing):
                self._expire_locked(time.monotonic())  # dead sessions' bytes come first
                if not self._fits(need, len(owned), freeing):
                    raise BudgetExceededError(
                        f"holding {need} more bytes would exceed the server's --max-held-mb "
                        f"budget ({self._bytes} of {self.budget_bytes} bytes held in "
                        f"{len(self._tensors)} tensors, each also counting "
                        f"{HANDLE_OVERHEAD_BYTES} bytes); free some with DELETE /tensors/{{id}} "
                        "or POST /tensors/release (nothing a live session holds is evicted)")
            entry = self._entry_locked(owner, time.monotonic()) if owner is not None else None
            out = {}
            for key, tensor in owned.items():
                handle_id = uuid.uuid4().hex
                nbytes = tensor.numel() * tensor.element_size()
                self._tensors[handle_id] = _Held(tensor, owner, nbytes)
                self._account(entry, handle_id, nbytes, +1)
                out[key] = handle_info(handle_id, tensor)
            self._bytes += need
        return out

    def _fits(self, need: int, count: int, freeing: set[str]) -> bool:
        """Whether ``count`` more tensors of ``need`` bytes fit, each handle also counting
        ``HANDLE_OVERHEAD_BYTES``, once the handles of ``freeing`` are gone."""
        gone = [h.nbytes for i in freeing if (h := self._tensors.get(i)) is not None]
        handles = len(self._tensors) - len(gone) + count
        return (self._bytes - sum(gone) + need + handles * HANDLE_OVERHEAD_BYTES
                <= self.budget_bytes)

    def _account(self, entry: SessionEntry | None, handle_id: str, nbytes: int, sign: int
                 ) -> None:
        if entry is None:
            self._anonymous[0] += sign
            self._anonymous[1] += sign * nbytes
        elif sign > 0:
            entry.handles.add(handle_id)
            entry.bytes += nbytes
        else:
            entry.handles.discard(handle_id)
            entry.bytes -= nbytes

    def get(self, handle_id: str) -> torch.Tensor:
        """The tensor behind ``handle_id``; using it renews its owner session's lease."""
        with self._lock:
            held = self._tensors.get(handle_id)
            if held is None:
                raise self._not_found(handle_id)
            if held.owner is not None and (entry := self._sessions.get(held.owner)):
                entry.last_active = time.monotonic()
                self._sessions.move_to_end(held.owner)
            return held.tensor

    def _not_found(self, handle_id: str) -> NotFoundError:
        why = self._recently_freed.get(handle_id, "never created, or already deleted")
        return NotFoundError(f"unknown tensor handle {handle_id!r} ({why})")

    def _pop_locked(self, handle_id: str) -> _Held | None:
        held = self._tensors.pop(handle_id, None)
        if held is not None:
            self._bytes -= held.nbytes
            entry = self._sessions.get(held.owner) if held.owner is not None else None
            if held.owner is None or entry is not None:
                self._account(entry, handle_id, held.nbytes, -1)
        return held

    def delete(self, handle_id: str) -> dict[str, Any]:
        with self._lock:
            held = self._pop_locked(handle_id)
            if held is None:
                raise self._not_found(handle_id)
            return handle_info(handle_id, held.tensor)

    def release_many(self, ids: Iterable[str]) -> Released:
        """Free every held handle of ``ids`` in one step; ids not held are ``missing``
        (a release is idempotent: a retried one finds its handles already gone)."""
        out = Released()
        with self._lock:
            for handle_id in dict.fromkeys(ids):
                held = self._pop_locked(handle_id)
                if held is None:
                    out.missing.append(handle_id)
                else:
                    out.ids.append(handle_id)
                    out.bytes += held.nbytes
        return out

    def split_held(self, ids: Iterable[str]) -> tuple[list[str], list[str]]:
        """(the ids of ``ids`` held now, those not held)."""
        with self._lock:
            held = [i for i in ids if i in self._tensors]
            return held, [i for i in ids if i not in self._tensors]

    def list(self, limit: int | None = None, after: str | None = None) -> list[dict[str, Any]]:
        """Held tensors in the order they were stored: at most ``limit``, starting after
        the handle ``after`` (a page of ``GET /tensors``; unknown ``after``: 404)."""
        with self._lock:
            items = iter(self._tensors.items())
            if after is not None:
                if after not in self._tensors:
                    raise NotFoundError(f"unknown tensor handle {after!r} in 'after' "
                                        "(deleted since the last page?)")
                for key, _ in items:
                    if key == after:
                        break
            page = items if limit is None else itertools.islice(items, limit)
            return [handle_info(k, h.tensor) for k, h in page]

    def usage(self) -> tuple[int, int]:
        """(tensors held, bytes held)."""
        with self._lock:
            return len(self._tensors), self._bytes

    def clear(self) -> None:
        with self._lock:
            self._tensors.clear()
            self._bytes = 0
            self._sessions.clear()
            self._anonymous = [0, 0]

    # --- sessions --------------------------------------------------------------------

    def _entry_locked(self, session: str, now: float) -> SessionEntry:
        entry = self._sessions.get(session)
        if entry is None:
            if len(self._sessions) >= MAX_TRACKED_SESSIONS:
                self._forget_one_locked()
            entry = self._sessions[session] = SessionEntry(session, now)
        return entry

    def _forget_one_locked(self) -> None:
        """Drop the least recently active session that holds nothing and runs nothing."""
        for sid, entry in self._sessions.items():
            if not entry.handles and not entry.inflight:
                del self._sessions[sid]
                return

    @contextmanager
    def active(self, session: str | None) -> Iterator[None]:
        """Around one request of ``session``: it is live until the request ends."""
        if session is None:
            yield
            return
        now = time.monotonic()
        with self._lock:
            entry = self._entry_locked(session, now)
            entry.requests += 1
            entry.inflight += 1
            entry.last_active = now
            self._sessions.move_to_end(session)
        try:
            yield
        finally:
            with self._lock:
                entry.inflight -= 1
                entry.last_active = time.monotonic()

    def end_session(self, session: str) -> Released:
        """Free everything ``session`` holds and forget it (``DELETE /sessions/{id}``)."""
        with self._lock:
            entry = self._sessions.pop(session, None)
            if entry is None:
                return Released()
            return self._free_locked(entry, "closed", "its session was closed")

    def _free_locked(self, entry: SessionEntry, kind: str, why: str) -> Released:
        out = Released(sessions=1 if entry.handles else 0)
        for handle_id in entry.handles:
            held = self._tensors.pop(handle_id)
            self._bytes -= held.nbytes
            out.ids.append(handle_id)
            out.bytes += held.nbytes
            self._recently_freed[handle_id] = why
            self._recently_freed.move_to_end(handle_id)
        while len(self._recently_freed) > RECENTLY_FREED:
            self._recently_freed.popitem(last=False)
        entry.handles, entry.bytes = set(), 0
        totals = self._freed[kind]
        totals[0] += out.sessions
        totals[1] += len(out.ids)
        totals[2] += out.bytes
        return out

    def expire(self) -> Released:
        """Free the handles of every session idle past the lease; forget those sessions."""
        with self._lock:
            return self._expire_locked(time.monotonic())

    def _expire_locked(self, now: float) -> Released:
        out = Released()
        if self.lease_s is None:
            return out
        lease = self.lease_s
        idle = [e for e in self._sessions.values() if e.idle_s(now) > lease]
        why = (f"freed when its session had been idle for more than the server's "
               f"{lease:g} s handle lease, --handle-lease-s")
        for entry in idle:
            del self._sessions[entry.id]
            freed = self._free_locked(entry, "lease", why)
            out.ids += freed.ids
            out.bytes += freed.bytes
            out.sessions += freed.sessions
        return out

    def session(self, session: str) -> dict[str, Any] | None:
        """What ``session`` holds and how long it has been idle; None when unknown."""
        with self._lock:
            entry = self._sessions.get(session)
            return None if entry is None else entry.info(time.monotonic())

    def sessions_report(self, top: int = TOP_SESSIONS) -> dict[str, Any]:
        """The ``sessions`` part of ``/stats``: totals, and the ``top`` largest holders."""
        now = time.monotonic()
        with self._lock:
            entries = list(self._sessions.values())
            largest = heapq.nlargest(top, entries, key=lambda e: (e.bytes, len(e.handles)))
            return {
                "count": len(entries),
                "holding": sum(1 for e in entries if e.handles),
                "lease_s": self.lease_s,
                "anonymous": {"handles": self._anonymous[0], "bytes": self._anonymous[1]},
                "freed": {kind: {"sessions": s, "handles": h, "bytes": b}
                          for kind, (s, h, b) in self._freed.items()},
                "top": [e.info(now) for e in largest],
            }
