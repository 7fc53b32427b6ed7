"""What CI systems read of a check: junitxml properties and a pytest-html column.

Each recorded check puts its headline figures (``Check.figures``) on its teardown report as
``user_properties`` (``genie.<key>``), which ``--junitxml`` writes as ``<property>`` elements of
the test case, the way ``record_property`` does.  A timed figure adds its interquartile range
and count (``genie.<key>.iqr``, ``genie.<key>.count``); a figure that did not stabilise, or a
check during which the client was disturbed, says so (``genie.unstable``, ``genie.disturbed``).
With pytest-html installed, the same figures fill a "Genie figures" column of its results
table (its hooks are optional: the plugin works without it).
"""

from __future__ import annotations

from html import escape
from typing import Any

from pytest_genie.checks import CHECKS, NETWORK_THROUGHPUT, Key
from pytest_genie.results import TestRecord

__all__ = ["PREFIX", "html_cell", "properties"]

PREFIX = "genie."
_BY_NAME = {c.name: c for c in (*CHECKS, NETWORK_THROUGHPUT)}


def _short(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) else value


def properties(record: TestRecord) -> list[tuple[str, Any]]:
    """The record's key figures as (name, value) pairs, status first."""
    out: list[tuple[str, Any]] = [(f"{PREFIX}status", record.status)]
    check = _BY_NAME.get(record.name.split("[", 1)[0])
    details = record.details
    raw = details.get(Key.SPREAD)
    spreads: dict[str, Any] = raw if isinstance(raw, dict) else {}
    for key in check.figures if check else ():
        if key not in details or isinstance(details[key], (dict, list)):
            continue
        value = details[key]
        if value is None:  # recorded as "none" (a break-even size of None: none in the sweep)
            out.append((f"{PREFIX}{key}", "none"))
            continue
        out.append((f"{PREFIX}{key}", _short(value)))
        spread = spreads.get(key)
        if isinstance(spread, dict) and Key.Q1 in spread:
            out.append((f"{PREFIX}{key}.iqr", f"{_short(spread[Key.Q1])}-{_short(spread[Key.Q3])}"))
            out.append((f"{PREFIX}{key}.count", spread.get(Key.COUNT)))
    unstable = sorted(k for k, s in spreads.items() if isinstance(s, dict) and s.get(Key.STABLE) is False)
    if unstable:
        out.append((f"{PREFIX}unstable", ",".join(unstable)))
    disturbed = details.get(Key.DISTURBED)
    if isinstance(disturbed, dict) and disturbed:
        out.append((f"{PREFIX}disturbed", ",".join(f"{k}={v}" for k, v in sorted(disturbed.items()))))
    return out


def html_cell(props: list[tuple[str, Any]] | None) -> str:
    """The pytest-html cell of a row: the figures, one per line (empty for unrecorded tests)."""
    shown = [f"{escape(name.removeprefix(PREFIX))}={escape(str(value))}" for name, value in props or []
             if not name.endswith((".count", "status"))]
    return f'<td class="col-genie">{"<br>".join(shown)}</td>'
