"""How figures read (``formatting.py``): as the guide writes them, and "not measured" for
anything that is not a finite number, so no report ever shows ``nan`` or ``inf``.
"""

from __future__ import annotations

import pytest

from pytest_genie.report.formatting import NOT_MEASURED, format_bytes, format_ms, format_pct


def test_figures_read_as_the_guide_writes_them() -> None:
    assert [format_ms(v) for v in (19.2, 105.3, 0.01234, 2400)] == [
        "19.2ms",
        "105.3ms",
        "0.0123ms",
        "2400.0ms",
    ]
    assert [format_bytes(v) for v in (512, 4_000_000, 16 << 20, 3 << 29)] == [
        "512 B",
        "3.8 MiB",
        "16.0 MiB",
        "1.5 GiB",
    ]
    assert format_pct(448.4) == "448%"


@pytest.mark.parametrize("value", [None, float("nan"), float("inf"), -float("inf"), "n/a", True])
def test_a_missing_or_non_finite_figure_reads_not_measured(value: object) -> None:
    assert format_ms(value) == format_bytes(value) == format_pct(value) == NOT_MEASURED
