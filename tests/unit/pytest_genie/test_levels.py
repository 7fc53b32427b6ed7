"""The ``--genie-level`` definitions (``levels.py``): what each check relies on of them."""

from __future__ import annotations

from pytest_genie.levels import DEFAULT_LEVEL, LEVELS


def test_each_level_measures_its_headline_inside_its_sweep() -> None:
    for level in LEVELS.values():
        assert list(level.sweep) == sorted(set(level.sweep)), level.name
        assert level.main_n in level.sweep, level.name  # the headline is the sweep's own row
        assert level.concurrency[0] == 1 and {1, 2, 4, 8} <= set(level.concurrency), level.name


def test_levels_grow_in_thoroughness() -> None:
    quick, standard, long = (LEVELS[n] for n in ("quick", "standard", "long"))
    assert DEFAULT_LEVEL == "standard" and standard.main_n == 1000  # the guide's 1000x1000
    for faster, slower in ((quick, standard), (standard, long)):
        assert faster.large_mb < slower.large_mb and faster.window_s < slower.window_s
        assert faster.timing.max_seconds < slower.timing.max_seconds
        assert max(faster.sweep) <= max(slower.sweep)
