"""The phases of one request, as the ``Server-Timing`` header and the stats report them."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Timing"]


@dataclass
class Timing:
    """Milliseconds spent decoding the body, computing, and encoding the reply.

    Compute is synchronized on CUDA (``genie.server.device.timed``), so it is the
    device's time, not the launch's.
    """

    decode_ms: float = 0.0
    compute_ms: float = 0.0
    encode_ms: float = 0.0

    def header(self) -> str:
        return (f"decode;dur={self.decode_ms:.3f}, compute;dur={self.compute_ms:.3f}, "
                f"encode;dur={self.encode_ms:.3f}")
