"""How long a client request may take: a ``Timeout`` (a base plus the request's bytes at
the slowest rate the link is assumed to move).

The default assumes 1 MiB/s (about 8 Mbit/s), so a healthy slow link is never taken for a
dead one; a timeout error names the budget, how it was computed, and how to raise it
(``BaseClient.transport_error``).
"""

from __future__ import annotations

from dataclasses import dataclass

from genie.errors import ConfigurationError

__all__ = ["DEFAULT_MIN_RATE_MIB_S", "DEFAULT_TIMEOUT", "MIB", "Timeout"]

MIB = 1024 * 1024
#: Seconds every request may take before its payload is counted.
DEFAULT_TIMEOUT = 30.0
#: The slowest link (MiB/s) the default budget serves: 1 MiB/s is about 8.4 Mbit/s.  It was
#: 10 MiB/s, which failed a healthy 20 Mbit/s link on a 256 MiB upload.
DEFAULT_MIN_RATE_MIB_S = 1.0


@dataclass(frozen=True, kw_only=True)
class Timeout:
    """How long a request may take: ``base_s`` plus its bytes at ``min_rate_mib_s``.

    The budget is the longest wait for any one step of a request (connecting apart:
    at most ``min(base_s, 10)`` seconds) and, on the plain-HTTP transport, for sending
    a whole body.  A link slower than ``min_rate_mib_s`` needs a lower rate or a larger
    base: ``Client(url, timeout=Timeout(base_s=60, min_rate_mib_s=0.25))``.
    """

    base_s: float = DEFAULT_TIMEOUT
    min_rate_mib_s: float = DEFAULT_MIN_RATE_MIB_S

    def __post_init__(self) -> None:
        for name in ("base_s", "min_rate_mib_s"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) \
                    or not 0 < value < float("inf"):
                raise ConfigurationError(f"Timeout.{name} must be a finite number > 0, "
                                         f"not {value!r}")

    def budget_s(self, nbytes: int) -> float:
        """Seconds allowed for a request that sends ``nbytes``."""
        return self.base_s + nbytes / (self.min_rate_mib_s * MIB)

    def explain(self, nbytes: int) -> str:
        """The budget for ``nbytes`` and how it was computed, for an error message."""
        return (f"{self.budget_s(nbytes):.3g} s budget = {self.base_s:g} s base + "
                f"{nbytes / MIB:.1f} MiB at an assumed {self.min_rate_mib_s:g} MiB/s")
