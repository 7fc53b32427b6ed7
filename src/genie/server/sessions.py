"""Client sessions over HTTP: who a request is from, releasing many handles at once,
ending a session, and the lease sweeper.

A request names its session in the ``X-Genie-Session`` header (``genie.Client``
sends a random one, made when the client is).  What the session holds, and when it
was last active, is kept by the store (``genie.server.store``); this module is the
HTTP side of it:

- ``session_of(request)``: the session named by a request (None: anonymous), a bad
  header refused with 400 before the request does anything;
- ``POST /tensors/release``: free many handles in one request;
- ``GET /sessions/{id}`` and ``DELETE /sessions/{id}`` (what ``Client.close`` sends);
- ``sweep_idle``: the app's background task that frees the handles of sessions idle
  past ``--handle-lease-s``.  It sleeps between sweeps (a quarter of the lease, at
  most 30 s), so an idle server does no work; each sweep is one pass over the sessions;
- ``SessionsCollector``: the sessions in ``/metrics``, bounded to the largest holders.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from typing import Any

import anyio
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from genie.errors import MalformedRequestError, NotFoundError
from genie.graph import handle_ids
from genie.protocol import SESSION_HEADER, SESSION_ID_MAX, is_session_id
from genie.server.bodies import read_body
from genie.server.codec import OFF_LOOP_BYTES, json_charge
from genie.server.state import state_of
from genie.server.store import TensorStore
from genie.wire import json_cost

__all__ = ["MAX_RELEASE_BODY_BYTES", "SessionsCollector", "end_session", "get_session",
           "release_tensors", "session_of", "sweep_idle", "sweep_interval"]

log = logging.getLogger("genie.server")

#: ``POST /tensors/release`` bodies are JSON ids: 100,000 of them fit in 4 MiB.
MAX_RELEASE_BODY_BYTES = 4 * 1024 * 1024
#: The longest sleep between two sweeps, whatever the lease.
MAX_SWEEP_INTERVAL_S = 30.0


def _checked(session: str, where: str) -> str:
    if not is_session_id(session):
        raise MalformedRequestError(
            f"{where} must be 1 to {SESSION_ID_MAX} characters of letters, digits, '-' "
            f"and '_', got {session[:40]!r}")
    return session


def session_of(request: Request) -> str | None:
    """The session ``request`` belongs to; None for a request without the header."""
    value = request.headers.get(SESSION_HEADER)
    return None if value is None else _checked(value, "the X-Genie-Session header")


def _path_session(request: Request) -> str:
    return _checked(request.path_params["session"], "a session id")


async def release_tensors(request: Request) -> Response:
    """``POST /tensors/release`` with ``{"ids": [...]}``: free them in one request."""
    state = state_of(request)
    text = bytes(await read_body(request, MAX_RELEASE_BODY_BYTES))
    json_charge(request)(json_cost(text), "parsing its ids")
    try:
        spec = (json.loads(text) if len(text) <= OFF_LOOP_BYTES
                else await anyio.to_thread.run_sync(json.loads, text))
    except (ValueError, RecursionError) as exc:
        raise MalformedRequestError(f"POST /tensors/release takes a JSON object "
                                    f"{{\"ids\": [...]}}: {exc}") from exc
    if not isinstance(spec, dict) or set(spec) != {"ids"}:
        raise MalformedRequestError("POST /tensors/release takes a JSON object {\"ids\": [...]}")
    released = state.store.release_many(handle_ids(spec["ids"], "'ids'"))
    return JSONResponse(released.to_json())


async def get_session(request: Request) -> Response:
    """``GET /sessions/{id}``: what the session holds, its request count and idle time."""
    session = _path_session(request)
    info = state_of(request).store.session(session)
    if info is None:
        raise NotFoundError(f"unknown session {session!r} (never seen, closed, or idle past "
                            "the handle lease)")
    return JSONResponse(info)


async def end_session(request: Request) -> Response:
    """``DELETE /sessions/{id}``: free everything the session holds and forget it.

    An unknown session is not an error (it released 0 handles): a client closing a
    session that made no handles, or whose handles the lease already freed, is normal.
    """
    session = _path_session(request)
    released = state_of(request).store.end_session(session)
    return JSONResponse({"session": session, "released": len(released.ids),
                         "bytes": released.bytes})


def sweep_interval(lease_s: float) -> float:
    """Seconds between sweeps: a quarter of the lease, between 10 ms and 30 s."""
    return min(max(lease_s / 4, 0.01), MAX_SWEEP_INTERVAL_S)


async def sweep_idle(store: TensorStore, lease_s: float) -> None:
    """Free the handles of sessions idle past ``lease_s``, forever (the app's lifespan
    cancels it).  A session is freed at most one interval after its lease ran out."""
    interval = sweep_interval(lease_s)
    while True:
        await anyio.sleep(interval)
        try:
            freed = store.expire()
        except Exception:  # a sweep must never end the server's lifespan
            log.exception("sweeping idle sessions failed")
            continue
        if freed.ids:
            log.info("freed %d handles (%d bytes) of %d sessions idle for over %g s "
                     "(--handle-lease-s)", len(freed.ids), freed.bytes, freed.sessions, lease_s)


class SessionsCollector(Collector):
    """The sessions in ``/metrics``: totals, and per session only the largest holders
    (``genie.server.store.TOP_SESSIONS``), so the series stay bounded."""

    def __init__(self, store: TensorStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Any]:
        report = self._store.sessions_report()
        count = GaugeMetricFamily("genie_sessions", "Client sessions the server tracks")
        count.add_metric([], report["count"])
        holding = GaugeMetricFamily("genie_sessions_holding", "Sessions holding handles")
        holding.add_metric([], report["holding"])
        anon_t = GaugeMetricFamily("genie_anonymous_held_tensors",
                                   "Handles held by requests without a session")
        anon_t.add_metric([], report["anonymous"]["handles"])
        anon_b = GaugeMetricFamily("genie_anonymous_held_bytes",
                                   "Bytes held by requests without a session")
        anon_b.add_metric([], report["anonymous"]["bytes"])
        freed = CounterMetricFamily("genie_freed_handles",
                                    "Handles freed by the lease or by closed sessions",
                                    labels=["reason"])
        freed_b = CounterMetricFamily("genie_freed_bytes",
                                      "Bytes freed by the lease or by closed sessions",
                                      labels=["reason"])
        for reason, totals in report["freed"].items():
            freed.add_metric([reason], totals["handles"])
            freed_b.add_metric([reason], totals["bytes"])
        held_t = GaugeMetricFamily("genie_session_held_tensors",
                                   "Handles a session holds (largest holders)", labels=["session"])
        held_b = GaugeMetricFamily("genie_session_held_bytes",
                                   "Bytes a session holds (largest holders)", labels=["session"])
        idle = GaugeMetricFamily("genie_session_idle_seconds",
                                 "Seconds since a session's last request (largest holders)",
                                 labels=["session"])
        for entry in report["top"]:
            held_t.add_metric([entry["id"]], entry["handles"])
            held_b.add_metric([entry["id"]], entry["bytes"])
            idle.add_metric([entry["id"]], entry["idle_s"])
        yield from (count, holding, anon_t, anon_b, freed, freed_b, held_t, held_b, idle)
