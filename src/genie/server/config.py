"""Server configuration: one small value object, built from the CLI or by hand."""

from __future__ import annotations

from dataclasses import dataclass

from genie.protocol import DEFAULT_PORT

__all__ = ["DEFAULT_MAX_BODY_MB", "DEFAULT_MAX_HELD_MB", "DEFAULT_PORT", "ServerConfig"]

DEFAULT_MAX_BODY_MB = 4096.0
DEFAULT_MAX_HELD_MB = 8192.0
DEFAULT_MAX_INFLIGHT = 64
DEFAULT_COMPUTE_THREADS = 4
MB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How one Genie app behaves.  Sizes are in MiB, as on the command line.

    ``max_inflight`` bounds requests waiting for or running compute: past it the
    server answers 503 ``busy`` at once rather than queueing without limit.
    ``compute_threads`` is how many ops may run at the same time (off the event
    loop); a GPU serializes kernels anyway, so more threads mostly add contention.
    """

    device: str = "auto"
    token: str | None = None
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    max_held_mb: float = DEFAULT_MAX_HELD_MB
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    compute_threads: int = DEFAULT_COMPUTE_THREADS

    def __post_init__(self) -> None:
        if self.max_body_mb <= 0 or self.max_held_mb < 0:
            raise ValueError("max_body_mb must be > 0 and max_held_mb >= 0")
        if self.max_inflight < 1 or self.compute_threads < 1:
            raise ValueError("max_inflight and compute_threads must be >= 1")

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)

    @property
    def max_held_bytes(self) -> int:
        return int(self.max_held_mb * MB)
