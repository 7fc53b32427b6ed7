"""How figures read in the report's prose and tables: milliseconds, bytes, percentages.

Shared by the Markdown and the recommendations, so a figure reads the same in both; a value that
is not a finite number reads "not measured", never ``nan`` or ``inf``.
"""

from __future__ import annotations

from typing import Any

from pytest_genie.report.inputs import number
from pytest_genie.stats import Spread

__all__ = ["NOT_MEASURED", "format_bytes", "format_ms", "format_pct", "format_spread", "format_value"]

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


def format_value(value: Any, unit: str) -> str:
    """A figure in its unit: ``ms`` as :func:`format_ms`, rates with one decimal."""
    if unit == "ms":
        return format_ms(value)
    value = number(value)
    if value is None:
        return NOT_MEASURED
    return f"{value:.0f} {unit}" if unit == "req/s" else f"{value:.1f} {unit}"


def format_spread(spread: Spread | None, unit: str = "ms") -> str:
    """``IQR 4.6-5.1ms, n=15`` (``, not stable`` when the loop hit its cap); "no spread recorded"."""
    if spread is None:
        return "no spread recorded"
    text = f"IQR {format_value(spread.q1, unit)}-{format_value(spread.q3, unit)}, n={spread.count}"
    if spread.stable is False:
        text += ", not stable"
    return text
