"""Figures you can defend: a median with its spread and count, measured until it is stable.

Every timed figure the checks record is a :class:`Spread` (median, quartiles, min, max, count)
rather than one number, so the report can say whether two figures differ by more than their
noise, and whether the measurement settled at all.  :func:`measure` is the stabilisation loop,
modelled on Triton perf_analyzer's: after a warm-up, measure in *windows* of a few samples until
the medians of the last ``agree`` windows all lie within ``tolerance`` of their mean, or a cap
(windows or seconds) is hit; the figure says which (``stable``).  Several measured things are
interleaved window by window (local, then remote, then local...), so a burst of load on a shared
machine lands on both rather than on whichever happened to run then.

Pure and dependency-free (no torch): the plugin's checks, the report and the unit tests share it.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_genie.checks import Key

__all__ = ["LOCAL_FASTER", "NO_CLEAR_DIFFERENCE", "REMOTE_FASTER", "Settings", "Spread", "break_even_start",
           "measure", "percentile", "spreads_to_details", "which_faster"]

#: Which of two timings is clearly smaller, judged on interquartile ranges (``which_faster``).
REMOTE_FASTER = "remote_faster"
LOCAL_FASTER = "local_faster"
NO_CLEAR_DIFFERENCE = "no_clear_difference"


def percentile(samples: Sequence[float], pct: float) -> float:
    """The ``pct``-th percentile (0-100) by linear interpolation between closest ranks."""
    if not samples:
        raise ValueError("percentile of no samples")
    ordered = sorted(samples)
    rank = (len(ordered) - 1) * pct / 100.0
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


@dataclass(frozen=True)
class Spread:
    """A measured figure: its median, interquartile range, extremes and sample count.

    ``stable`` is None when the figure did not come from :func:`measure` (a single timing, or
    a figure read from an older result file that recorded only a number).
    """

    median: float
    q1: float
    q3: float
    min: float
    max: float
    count: int
    stable: bool | None = None
    windows: int | None = None

    @classmethod
    def of(cls, samples: Iterable[float], *, stable: bool | None = None,
           windows: int | None = None) -> Spread:
        values = [float(s) for s in samples]
        if not values:
            raise ValueError("a spread needs at least one sample")
        return cls(median=statistics.median(values), q1=percentile(values, 25),
                   q3=percentile(values, 75), min=min(values), max=max(values), count=len(values),
                   stable=stable, windows=windows)

    @classmethod
    def single(cls, value: float) -> Spread:
        """One number with no spread known (count 1)."""
        return cls(median=value, q1=value, q3=value, min=value, max=value, count=1)

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def below(self, other: Spread) -> bool:
        """Clearly smaller: this figure's upper quartile is under the other's lower one."""
        return self.q3 < other.q1

    def overlaps(self, other: Spread) -> bool:
        """Neither is clearly smaller: the two interquartile ranges touch."""
        return not (self.below(other) or other.below(self))

    def to_dict(self, digits: int = 4) -> dict[str, Any]:
        out: dict[str, Any] = {Key.MEDIAN: round(self.median, digits), Key.Q1: round(self.q1, digits),
                               Key.Q3: round(self.q3, digits), Key.MIN: round(self.min, digits),
                               Key.MAX: round(self.max, digits), Key.COUNT: self.count}
        if self.stable is not None:
            out[Key.STABLE] = self.stable
        if self.windows is not None:
            out[Key.WINDOWS] = self.windows
        return out

    @classmethod
    def from_dict(cls, data: Any) -> Spread | None:
        """A spread as :meth:`to_dict` wrote it; None when it is not one (hand edits, old files)."""
        if not isinstance(data, Mapping):
            return None
        try:
            values = {k: float(data[k]) for k in (Key.MEDIAN, Key.Q1, Key.Q3, Key.MIN, Key.MAX)}
            count = int(data[Key.COUNT])
        except (KeyError, TypeError, ValueError):
            return None
        if not all(math.isfinite(v) for v in values.values()) or count < 1:
            return None
        if not values[Key.MIN] <= values[Key.Q1] <= values[Key.MEDIAN] <= values[Key.Q3] <= values[Key.MAX]:
            return None
        stable = data.get(Key.STABLE)
        windows = data.get(Key.WINDOWS)
        if isinstance(windows, bool) or not isinstance(windows, int):
            windows = None
        return cls(median=values[Key.MEDIAN], q1=values[Key.Q1], q3=values[Key.Q3], min=values[Key.MIN],
                   max=values[Key.MAX], count=count, stable=stable if isinstance(stable, bool) else None,
                   windows=windows)


@dataclass(frozen=True, kw_only=True)
class Settings:
    """How long :func:`measure` keeps measuring (perf_analyzer's defaults, scaled to a CI job).

    ``tolerance`` is relative to the mean of the compared window medians; ``floor_ms`` keeps a
    figure of a few microseconds from never settling on timer jitter alone.
    """

    warmup: int = 2
    window: int = 5
    agree: int = 3
    tolerance: float = 0.10
    floor_ms: float = 0.01
    max_windows: int = 10
    max_seconds: float = 20.0

    def __post_init__(self) -> None:
        if self.window < 1 or self.agree < 1 or self.max_windows < self.agree or self.warmup < 0:
            raise ValueError("need window >= 1, agree >= 1, max_windows >= agree, warmup >= 0")
        if not (self.tolerance > 0 and self.max_seconds > 0):
            raise ValueError("tolerance and max_seconds must be > 0")


#: One measured thing: a callable returning its sample, or several named samples taken by the
#: same call (a remote round trip and the server's compute time of that same request). The
#: first name is the one whose stability counts.
Step = Callable[[], "float | Mapping[str, float]"]


@dataclass
class _Series:
    name: str
    step: Step
    windows: list[dict[str, list[float]]] = field(default_factory=list)

    def sample(self) -> dict[str, float]:
        value = self.step()
        return {self.name: float(value)} if isinstance(value, (int, float)) else dict(value)

    def primary(self, window: dict[str, list[float]]) -> float:
        return statistics.median(window[self.name] if self.name in window else next(iter(window.values())))


def _settled(medians: Sequence[float], settings: Settings) -> bool:
    mean = statistics.fmean(medians)
    allowed = max(settings.tolerance * abs(mean), settings.floor_ms)
    return all(abs(m - mean) <= allowed for m in medians)


def measure(steps: Mapping[str, Step], settings: Settings = Settings(),
            clock: Callable[[], float] = time.perf_counter) -> dict[str, Spread]:
    """Warm up, then measure every step in interleaved windows until all are stable (or a cap).

    Returns a :class:`Spread` per sample name (a step's own name, or the names its dict holds),
    over the samples of the last ``agree`` windows: the windows judged stable, or the latest
    ones when a cap stopped the loop.  Each spread records ``stable`` and how many windows ran.
    """
    series = [_Series(name, step) for name, step in steps.items()]
    for item in series:
        for _ in range(settings.warmup):
            item.sample()
    started = clock()
    stable = False
    rounds = 0
    while rounds < settings.max_windows:
        for item in series:
            window: dict[str, list[float]] = {}
            for _ in range(settings.window):
                for name, value in item.sample().items():
                    window.setdefault(name, []).append(value)
            item.windows.append(window)
        rounds += 1
        if rounds >= settings.agree and all(
                _settled([item.primary(w) for w in item.windows[-settings.agree:]], settings)
                for item in series):
            stable = True
            break
        if clock() - started > settings.max_seconds:
            break
    out: dict[str, Spread] = {}
    for item in series:
        kept: dict[str, list[float]] = {}
        for window in item.windows[-settings.agree:]:
            for name, values in window.items():
                kept.setdefault(name, []).extend(values)
        for name, values in kept.items():
            out[name] = Spread.of(values, stable=stable, windows=rounds)
    return out


def spreads_to_details(spreads: Mapping[str, Spread], digits: int = 4) -> dict[str, Any]:
    """The details of measured figures: each median under its own key, as the guide's files have
    always held one number there, and the whole spread under ``Key.SPREAD``."""
    details: dict[str, Any] = {name: round(s.median, digits) for name, s in spreads.items()}
    details[Key.SPREAD] = {name: s.to_dict(digits) for name, s in spreads.items()}
    return details


def which_faster(local: tuple[float, float], remote: tuple[float, float]) -> str:
    """``remote_faster`` when remote's upper quartile is under local's lower one, ``local_faster``
    the other way round, else ``no_clear_difference``; each argument is ``(q1, q3)``."""
    if remote[1] < local[0]:
        return REMOTE_FASTER
    if local[1] < remote[0]:
        return LOCAL_FASTER
    return NO_CLEAR_DIFFERENCE


def break_even_start(verdicts: Sequence[str]) -> int | None:
    """Index of the smallest size (verdicts in ascending size order) from which remote is clearly
    faster at every larger measured size; None when the largest size is not such a size."""
    start = None
    for index in range(len(verdicts) - 1, -1, -1):
        if verdicts[index] != REMOTE_FASTER:
            break
        start = index
    return start
