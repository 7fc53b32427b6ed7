"""Server configuration: one small value object, built from the CLI or by hand."""

from __future__ import annotations

from dataclasses import dataclass

from genie.protocol import DEFAULT_PORT

__all__ = ["DEFAULT_BODY_TIMEOUT_S", "DEFAULT_HANDLE_LEASE_S", "DEFAULT_MAX_BODY_MB",
           "DEFAULT_MAX_CONNECTIONS", "DEFAULT_MAX_HELD_MB", "DEFAULT_PORT", "ServerConfig"]

DEFAULT_MAX_BODY_MB = 4096.0
DEFAULT_MAX_HELD_MB = 8192.0
DEFAULT_MAX_INFLIGHT = 64
DEFAULT_COMPUTE_THREADS = 4
DEFAULT_BODY_TIMEOUT_S = 60.0
DEFAULT_MAX_CONNECTIONS = 1024
#: Ten minutes: far longer than any pause a working client takes between requests (a
#: decode step, a training step, a batch of a benchmark), short enough that memory
#: held by clients killed before they could close comes back well within the hour.
#: Clients that close (or exit normally) release at once and never wait for it.
DEFAULT_HANDLE_LEASE_S = 600.0
MB = 1024 * 1024


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How one Genie app behaves.  Sizes are in MiB, as on the command line.

    ``max_inflight`` bounds requests waiting for or running compute: past it the
    server answers 503 ``busy`` at once rather than queueing without limit.
    ``compute_threads`` is how many ops may run at the same time (off the event
    loop); a GPU serializes kernels anyway, so more threads mostly add contention.

    ``max_inflight_body_mb`` bounds the request bodies held at once, from the moment
    a declared ``Content-Length`` is accepted until the reply has been sent; a body
    that does not fit is answered 503 ``busy`` before any memory is set aside.  The
    default, twice ``max_body_mb``, lets two bodies of the largest size in at once.
    ``body_timeout_s`` is how long a body may go without a byte arriving before the
    request is refused (400) and its share of that budget returned.
    ``max_connections`` is uvicorn's ``limit_concurrency``: past that many open
    connections (or running requests) uvicorn answers 503 itself.

    ``debug_delay_ms`` is for tests only: every request waits this long (without holding
    a compute slot) before it is handled, so a test can stand up a deliberately slow server
    and prove that a performance regression gate fails on it.  Never set it in service.
    ``handle_lease_s`` is how long a client session may go without a request before
    the handles it holds are freed (``genie.server.store``); ``None`` or 0 turns the
    lease off (handles are then held until deleted or their session is closed).
    Handles made without a session (no ``X-Genie-Session`` header) never lapse.
    """

    device: str = "auto"
    token: str | None = None
    max_body_mb: float = DEFAULT_MAX_BODY_MB
    max_held_mb: float = DEFAULT_MAX_HELD_MB
    max_inflight: int = DEFAULT_MAX_INFLIGHT
    compute_threads: int = DEFAULT_COMPUTE_THREADS
    max_inflight_body_mb: float | None = None  # None: 2 * max_body_mb
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    debug_delay_ms: float = 0.0
    handle_lease_s: float | None = DEFAULT_HANDLE_LEASE_S

    def __post_init__(self) -> None:
        if self.max_body_mb <= 0 or self.max_held_mb < 0:
            raise ValueError("max_body_mb must be > 0 and max_held_mb >= 0")
        if self.max_inflight < 1 or self.compute_threads < 1:
            raise ValueError("max_inflight and compute_threads must be >= 1")
        if self.max_inflight_body_mb is not None and self.max_inflight_body_mb < self.max_body_mb:
            raise ValueError(f"max_inflight_body_mb ({self.max_inflight_body_mb:g}) must be at "
                             f"least max_body_mb ({self.max_body_mb:g}), or the largest "
                             "accepted body could never be received")
        if not self.body_timeout_s > 0:
            raise ValueError("body_timeout_s must be > 0")
        if self.max_connections < 1:
            raise ValueError("max_connections must be >= 1")
        if not (0 <= self.debug_delay_ms < float("inf")):
            raise ValueError("debug_delay_ms must be a finite number >= 0")
        lease = self.handle_lease_s
        if lease is not None and not (0 <= lease < float("inf")):
            raise ValueError("handle_lease_s must be a finite number of seconds >= 0, or None")

    @property
    def lease_s(self) -> float | None:
        """The handle lease in seconds, None when off."""
        return self.handle_lease_s or None

    @property
    def max_body_bytes(self) -> int:
        return int(self.max_body_mb * MB)

    @property
    def max_held_bytes(self) -> int:
        return int(self.max_held_mb * MB)

    @property
    def max_inflight_body_bytes(self) -> int:
        mb = self.max_inflight_body_mb
        return int((2 * self.max_body_mb if mb is None else mb) * MB)
