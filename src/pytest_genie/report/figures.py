"""A measured figure as the report reads it: the median, its spread, and what it was measured under.

The checks record each timed figure as its median under its own key and its spread under
``Key.SPREAD`` (``pytest_genie.stats``); files from before that, or from the original guide, hold
only the number.  :class:`Figure` reads both, so every later step (verdicts, trend, gate) works on
one shape and says "no spread recorded" rather than pretending a single number has none.

A figure also carries the server it was measured against, where it was measured (its result
file's path, ``where.py``: ``{"host", "server_url", "path", "label"}``) and whether the client
was disturbed (retried, reconnected, timed out) during its check, so a per-server split, a path
label or a warning beside the figure needs no second look at the files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_genie.checks import Key
from pytest_genie.report.inputs import number
from pytest_genie.stats import LOCAL_FASTER, NO_CLEAR_DIFFERENCE, REMOTE_FASTER, Spread, which_faster

__all__ = ["LOCAL_FASTER", "NO_CLEAR_DIFFERENCE", "REMOTE_FASTER", "Figure", "disturbance_text", "figure",
           "rows_with", "verdict"]


@dataclass(frozen=True)
class Figure:
    """One figure: its median ``value``, its spread (None: only a number was recorded)."""

    value: float
    spread: Spread | None = None
    disturbed: dict[str, int] | None = None
    server: str | None = None
    #: Where it was measured (``Where.to_dict``); None when nobody said.
    measured: dict[str, Any] | None = None

    @property
    def low(self) -> float:
        """Lower quartile (the value itself when no spread was recorded)."""
        return self.spread.q1 if self.spread else self.value

    @property
    def high(self) -> float:
        return self.spread.q3 if self.spread else self.value

    @property
    def stable(self) -> bool | None:
        return self.spread.stable if self.spread else None

    def below(self, other: Figure) -> bool:
        """Clearly smaller: this upper quartile is under the other's lower quartile."""
        return self.high < other.low

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value}
        if self.spread is not None:
            out.update(self.spread.to_dict())
        out["disturbed"] = self.disturbed or None
        out["server"] = self.server
        out["measured"] = self.measured
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Figure | None:
        """The inverse of :meth:`to_dict` (what ``comprehensive_report.json`` holds)."""
        if not isinstance(data, dict) or number(data.get("value")) is None:
            return None
        disturbed, measured = data.get("disturbed"), data.get("measured")
        return cls(value=float(data["value"]), spread=Spread.from_dict(data),
                   disturbed=disturbed if isinstance(disturbed, dict) else None,
                   server=data.get("server") if isinstance(data.get("server"), str) else None,
                   measured=measured if isinstance(measured, dict) else None)


def figure(details: dict[str, Any], key: str, *, server: str | None = None,
           disturbed: dict[str, int] | None = None, measured: dict[str, Any] | None = None
           ) -> Figure | None:
    """The figure ``key`` of a details dict (a record's, or one sweep row), or None if absent."""
    raw_spreads = details.get(Key.SPREAD)
    spread = Spread.from_dict(raw_spreads.get(key)) if isinstance(raw_spreads, dict) else None
    value = number(details.get(key))
    if value is None and spread is not None:
        value = spread.median
    if value is None:
        return None
    if spread is not None and not spread.q1 <= value <= spread.q3:
        spread = None  # a hand edit changed the number: the spread no longer describes it
    return Figure(value=value, spread=spread, disturbed=disturbed or None, server=server, measured=measured)


def rows_with(rows: list[dict[str, Any]], key: str) -> list[tuple[dict[str, Any], Figure]]:
    """The rows whose ``key`` holds a figure (a ``Figure.to_dict``), each with that figure."""
    out = []
    for row in rows:
        fig = Figure.from_dict(row.get(key))
        if fig is not None:
            out.append((row, fig))
    return out


def verdict(local: Figure, remote: Figure) -> str:
    """Which is clearly faster, or ``no_clear_difference`` when the quartile ranges overlap."""
    return which_faster((local.low, local.high), (remote.low, remote.high))


def disturbance_text(disturbed: dict[str, Any] | None) -> str | None:
    """``"1 retry, 2 reconnects"``; None when nothing disturbed the check."""
    if not disturbed:
        return None
    names = {Key.RETRIES: "retry", Key.RECONNECTS: "reconnect", Key.TIMEOUTS: "timeout",
             Key.TRANSPORT_ERRORS: "transport error"}
    parts = []
    for key, stem in names.items():
        count = number(disturbed.get(key))
        if count:
            n = int(count)
            plural = "retries" if key == Key.RETRIES else stem + "s"
            word = ("retry" if key == Key.RETRIES else stem) if n == 1 else plural
            parts.append(f"{n} {word}")
    return ", ".join(parts) or None
