"""How thorough a run is: ``--genie-level quick|standard|long``.

One level fixes every size and repeat count the client checks use, so a CI job can prove a
deployment works in seconds (``quick``), a person gets figures that hold up on a shared machine
(``standard``, the default), and a capacity test runs long enough for the tails to show
(``long``).  The sizes stay on the guide's scale: ``standard`` measures the guide's 1000x1000
matmul inside its sweep, so the headline figure and the sweep are one measurement.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from pytest_genie.stats import Settings

__all__ = ["DEFAULT_LEVEL", "LEVELS", "Level"]


@dataclass(frozen=True, kw_only=True)
class Level:
    """Sizes and stabilisation settings of one ``--genie-level``."""

    name: str
    #: Matmul sizes (n x n, fp32) of performance_comparison's sweep, ascending.
    sweep: tuple[int, ...]
    #: The sweep size reported as the headline comparison (the guide's 1000x1000).
    main_n: int
    #: Stabilisation of each sweep point (local and remote interleaved).
    timing: Settings
    #: Stabilisation of the small timed figures (echo, LazyTensor, chain, connect).
    quick_timing: Settings
    #: Stabilisation of the large-tensor round trip (each sample moves large_mb twice).
    large_timing: Settings
    #: Size of large_tensor_handling's tensor, MiB (``--genie-large-mb`` overrides it).
    large_mb: float
    #: concurrency_sweep: concurrent clients per level, and the measured window per level.
    concurrency: tuple[int, ...]
    window_s: float
    #: Untimed time per concurrency level before its window opens.
    warmup_s: float


LEVELS: Final[dict[str, Level]] = {
    level.name: level
    for level in (
        Level(name="quick", sweep=(64, 128, 256, 512), main_n=256,
              timing=Settings(warmup=1, window=3, agree=2, max_windows=4, max_seconds=2.0),
              quick_timing=Settings(warmup=1, window=3, agree=2, max_windows=3, max_seconds=1.0),
              large_timing=Settings(warmup=0, window=1, agree=2, max_windows=3, max_seconds=3.0),
              large_mb=16.0, concurrency=(1, 2, 4, 8), window_s=0.25, warmup_s=0.05),
        Level(name="standard", sweep=(128, 256, 512, 1000, 1536), main_n=1000,
              timing=Settings(warmup=2, window=5, agree=3, max_windows=8, max_seconds=12.0),
              quick_timing=Settings(warmup=2, window=5, agree=3, max_windows=6, max_seconds=3.0),
              large_timing=Settings(warmup=1, window=1, agree=3, max_windows=5, max_seconds=20.0),
              large_mb=256.0, concurrency=(1, 2, 4, 8), window_s=1.5, warmup_s=0.3),
        Level(name="long", sweep=(128, 256, 512, 1000, 1536, 2048, 3072), main_n=1000,
              timing=Settings(warmup=3, window=7, agree=3, max_windows=12, max_seconds=40.0),
              quick_timing=Settings(warmup=3, window=7, agree=3, max_windows=10, max_seconds=8.0),
              large_timing=Settings(warmup=1, window=1, agree=3, max_windows=8, max_seconds=90.0),
              large_mb=1024.0, concurrency=(1, 2, 4, 8, 16), window_s=5.0, warmup_s=1.0),
    )
}
DEFAULT_LEVEL: Final = "standard"
