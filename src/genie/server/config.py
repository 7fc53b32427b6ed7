"""Server configuration: one small value object, built from the CLI or by hand, and the
memory bound it states (``ServerConfig.memory_budget``)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from genie.protocol import DEFAULT_PORT

__all__ = ["CONNECTION_OVERHEAD_BYTES", "DEFAULTS", "DEFAULT_BODY_TIMEOUT_S",
           "DEFAULT_HANDLE_LEASE_S", "DEFAULT_MAX_BODY_MB", "DEFAULT_MAX_CONNECTIONS",
           "DEFAULT_MAX_HELD_MB", "DEFAULT_PORT", "PROCESS_OVERHEAD_BYTES", "MemoryBudget",
           "ServerConfig", "check_token"]

DEFAULT_MAX_BODY_MB = 4096.0
DEFAULT_MAX_HELD_MB = 8192.0
DEFAULT_BODY_TIMEOUT_S = 60.0
DEFAULT_MAX_CONNECTIONS = 1024
#: Ten minutes: far longer than any pause a working client takes between requests (a
#: decode step, a training step, a batch of a benchmark), short enough that memory
#: held by clients killed before they could close comes back well within the hour.
#: Clients that close (or exit normally) release at once and never wait for it.
DEFAULT_HANDLE_LEASE_S = 600.0
MB = 1024 * 1024
KB = 1024
#: What the server process holds idle, measured (``VmRSS`` after start-up on a CPU
#: server: 310 MiB with torch and its meta kernels loaded), rounded up.
PROCESS_OVERHEAD_BYTES = 384 * MB
#: A connection's own cost besides its head: uvicorn's write buffer high-water mark
#: (64 KiB), the parser and the protocol objects.
CONNECTION_OVERHEAD_BYTES = 80 * KB


def check_token(token: str) -> None:
    """Refuse a token no client could send, or one that would silently mean no auth.

    An empty token is refused rather than read as "auth off" (``GENIE_TOKEN=""`` in a
    deployment is a mistake, not a choice).  Only visible ASCII is allowed: HTTP header
    values are bytes, and a non-ASCII token would match only the one encoding (latin-1)
    the server happens to decode headers with, not the UTF-8 most clients send.
    """
    if not token:
        raise ValueError("the token (--token or GENIE_TOKEN) is empty: give a token, or "
                         "unset GENIE_TOKEN and drop --token to run without authentication")
    bad = sorted({c for c in token if not "!" <= c <= "~"})
    if bad:
        raise ValueError(f"the token (--token or GENIE_TOKEN) may hold only visible ASCII "
                         f"characters (no spaces), not {''.join(bad)!r}")


@dataclass(frozen=True)
class MemoryBudget:
    """The bound on the server's peak memory that a configuration states, in bytes.

    ``compute`` is ``compute_threads`` requests each within the compute cap; on CUDA
    that part (and held tensors) is device memory, the rest host memory.
    """

    held: int
    bodies: int
    replies: int
    compute: int
    connections: int
    process: int = PROCESS_OVERHEAD_BYTES

    @property
    def total(self) -> int:
        return (self.held + self.bodies + self.replies + self.compute + self.connections
                + self.process)

    def describe(self) -> dict[str, float]:
        """Each part and the total, in MiB (for the start-up log)."""
        parts = {"held": self.held, "bodies": self.bodies, "replies": self.replies,
                 "compute": self.compute, "connections": self.connections,
                 "process": self.process, "total": self.total}
        return {k: round(v / MB, 1) for k, v in parts.items()}


@dataclass(frozen=True, kw_only=True)
class ServerConfig:
    """How one Genie app behaves.  Sizes are in MiB (KiB for heads and rates) and times
    in seconds, as on the command line; each field is the flag of the same name.

    Memory (``memory_budget`` adds them up): ``max_held_mb`` bounds tensors held as
    handles (each also counting 1 KiB); ``max_inflight_body_mb`` request bodies held at
    once, counted as their bytes arrive, plus what parsing their JSON costs (default
    twice ``max_body_mb``); ``max_inflight_reply_mb`` replies, from encoding until the
    last byte is sent (default the larger of twice ``max_body_mb`` and
    ``max_compute_mb``, so the largest reply always fits); ``max_compute_mb`` a running
    request's live results plus its running op's output and estimated working memory
    (default ``max_held_mb``, or ``max_body_mb`` when nothing may be held), and up to
    ``compute_threads`` requests compute at once.  ``max_gpu_mb`` caps PyTorch's CUDA
    caching allocator on the server's device, so that running out answers 503.

    Time: ``body_timeout_s`` is how long a body may go without a byte, and after that
    grace it must average ``min_body_rate_kb`` KiB/s; ``header_timeout_s`` is how long a
    connection may take to send a request head (from its opening, or from the end of
    the previous reply); ``write_timeout_s`` how long a reply may wait for a client that
    does not read; ``max_compute_s`` how long one request may compute (checked between
    graph nodes).  Back-pressure: ``max_inflight`` requests may wait for or run compute
    (503 ``busy`` past it), of which one client (its ``X-Genie-Session`` header, else
    its address) may run ``client_compute_threads`` at once (default one less than
    ``compute_threads``, so that others always find a free thread); ``max_connections``
    is uvicorn's ``limit_concurrency``; ``max_header_kb`` bounds a request's head.

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
    max_inflight: int = 64
    compute_threads: int = 4
    client_compute_threads: int | None = None  # None: max(1, compute_threads - 1)
    max_inflight_body_mb: float | None = None  # None: 2 * max_body_mb
    max_inflight_reply_mb: float | None = None  # None: max(2 * max_body_mb, compute cap)
    max_compute_mb: float | None = None  # None: max_held_mb (max_body_mb if that is 0)
    max_gpu_mb: float | None = None  # None: the whole device
    max_compute_s: float = 300.0
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S
    min_body_rate_kb: float = 64.0
    header_timeout_s: float = 10.0
    max_header_kb: float = 64.0
    write_timeout_s: float = 60.0
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    debug_delay_ms: float = 0.0
    handle_lease_s: float | None = DEFAULT_HANDLE_LEASE_S

    def __post_init__(self) -> None:
        if self.token is not None:
            check_token(self.token)
        if self.max_body_mb <= 0 or self.max_held_mb < 0:
            raise ValueError("max_body_mb must be > 0 and max_held_mb >= 0")
        if self.max_inflight < 1 or self.compute_threads < 1 or self.max_connections < 1:
            raise ValueError("max_inflight, compute_threads and max_connections must be >= 1")
        if self.client_compute_threads is not None and not (
                1 <= self.client_compute_threads <= self.compute_threads):
            raise ValueError("client_compute_threads must be from 1 to compute_threads")
        for name in ("body_timeout_s", "header_timeout_s", "write_timeout_s", "max_compute_s",
                     "min_body_rate_kb", "max_header_kb", "max_compute_mb", "max_gpu_mb",
                     "max_inflight_body_mb", "max_inflight_reply_mb"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise ValueError(f"{name} must be a finite number > 0")
        if self.max_inflight_body_mb is not None and self.max_inflight_body_mb < self.max_body_mb:
            raise ValueError(f"max_inflight_body_mb ({self.max_inflight_body_mb:g}) must be at "
                             f"least max_body_mb ({self.max_body_mb:g}), or the largest "
                             "accepted body could never be received")
        if not (0 <= self.debug_delay_ms < float("inf")):
            raise ValueError("debug_delay_ms must be a finite number >= 0")
        lease = self.handle_lease_s
        if lease is not None and not (0 <= lease < float("inf")):
            raise ValueError("handle_lease_s must be a finite number of seconds >= 0, or None")
        largest_reply = max(self.max_body_bytes, self.max_compute_bytes)
        if self.max_inflight_reply_bytes < largest_reply:
            raise ValueError(f"max_inflight_reply_mb ({self.max_inflight_reply_mb:g}) must be at "
                             f"least max_body_mb and max_compute_mb ({largest_reply / MB:g}), "
                             "or the largest reply could never be sent")

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

    @property
    def max_compute_bytes(self) -> int:
        if self.max_compute_mb is not None:
            return int(self.max_compute_mb * MB)
        return self.max_held_bytes or self.max_body_bytes

    @property
    def max_inflight_reply_bytes(self) -> int:
        if self.max_inflight_reply_mb is not None:
            return int(self.max_inflight_reply_mb * MB)
        return max(2 * self.max_body_bytes, self.max_compute_bytes)

    @property
    def max_gpu_bytes(self) -> int | None:
        return None if self.max_gpu_mb is None else int(self.max_gpu_mb * MB)

    @property
    def max_header_bytes(self) -> int:
        return int(self.max_header_kb * KB)

    @property
    def min_body_rate_bytes(self) -> float:
        return self.min_body_rate_kb * KB

    @property
    def per_client_threads(self) -> int:
        if self.client_compute_threads is not None:
            return self.client_compute_threads
        return max(1, self.compute_threads - 1)

    @property
    def memory_budget(self) -> MemoryBudget:
        """What peak memory these limits allow (docs/protocol.md, section 9)."""
        return MemoryBudget(
            held=self.max_held_bytes, bodies=self.max_inflight_body_bytes,
            replies=self.max_inflight_reply_bytes,
            compute=self.compute_threads * self.max_compute_bytes,
            connections=self.max_connections * (self.max_header_bytes
                                                 + CONNECTION_OVERHEAD_BYTES))


#: Every field's default, for the command line's help (``--max-body-mb`` etc.).
DEFAULTS: dict[str, Any] = {name: field.default
                            for name, field in ServerConfig.__dataclass_fields__.items()}
