"""How figures read in the report's prose and tables: milliseconds, bytes, percentages.

Shared by the Markdown and the recommendations, so a figure reads the same in both; a value that
is not a finite number reads "not measured", never ``nan`` or ``inf``.
"""

from __future__ import annotations

from typing import Any

from pytest_genie.report.inputs import number

__all__ = ["NOT_MEASURED", "format_bytes", "format_ms", "format_pct"]

NOT_MEASURED = "not measured"


def format_ms(value: Any) -> str:
    """Milliseconds as the guide writes them (``19.2ms``); small figures keep 3 significant digits."""
    value = number(value)
    if value is None:
        return NOT_MEASURED
    return f"{value:.3g}ms" if abs(value) < 1 else f"{value:.1f}ms"


def format_bytes(value: Any) -> str:
    value = number(value)
    if value is None:
        return NOT_MEASURED
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if abs(value) >= scale:
            return f"{value / scale:.1f} {unit}"
    return f"{int(value)} B"


def format_pct(value: Any) -> str:
    value = number(value)
    return NOT_MEASURED if value is None else f"{value:.0f}%"
