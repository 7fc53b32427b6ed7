"""A progress line while a check moves a large tensor, in an interactive terminal only.

A 256 MiB round trip over a slow link takes minutes; without a sign of life a person cannot tell
a slow link from a hung test.  The line is rewritten in place (``\\r``), at most a few times a
second, and cleared when the transfer is done.  Nothing is printed under ``-q``, when the output
is not a terminal (CI logs, pipes, pytester), or on an xdist worker (which has no terminal):
there, the line would only be noise in the log.

The client calls the callback from the thread doing the I/O, inside the test; pytest captures
the test's output then, so the line goes out with capturing suspended, as pytest's own live
logging does.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from genie.client import Progress

__all__ = ["MIN_INTERVAL_S", "TerminalProgress", "terminal_progress"]

#: The line is redrawn at most this often (the end of a transfer is always shown).
MIN_INTERVAL_S = 0.2
MIB = 1 << 20


class TerminalProgress:
    """``progress=`` callback of a ``genie.Client`` that draws one line in the terminal."""

    def __init__(self, config: pytest.Config, label: str) -> None:
        self.config = config
        self.reporter = config.pluginmanager.get_plugin("terminalreporter")
        self.label = label
        self.started: dict[str, float] = {}
        self.last_draw = 0.0
        self.width = 0

    def __call__(self, progress: Progress) -> None:
        now = time.monotonic()
        self.started.setdefault(progress.phase, now)
        finished = progress.total is not None and progress.done >= progress.total
        if not finished and now - self.last_draw < MIN_INTERVAL_S:
            return
        self.last_draw = now
        elapsed = max(now - self.started[progress.phase], 1e-9)
        total = f"/{progress.total / MIB:.1f} MiB ({100 * progress.done / progress.total:.0f}%)" \
            if progress.total else " MiB"
        text = (f"  genie {self.label}: {progress.phase} {progress.done / MIB:.1f}{total}, "
                f"{progress.done / MIB / elapsed:.0f} MiB/s")
        self._draw(text)

    def _draw(self, text: str) -> None:
        padded = text.ljust(self.width)
        self.width = len(text)
        self._write("\r" + padded)

    def _write(self, raw: str) -> None:
        if self.reporter is None:
            return
        capman = self.config.pluginmanager.get_plugin("capturemanager")
        if capman is None:
            self.reporter.write(raw, flush=True)
            return
        with capman.global_and_fixture_disabled():
            self.reporter.write(raw, flush=True)

    def close(self) -> None:
        """Clear the line (if one was drawn), so pytest's own output continues cleanly."""
        if self.width:
            self._draw("")
            self._write("\r")


def terminal_progress(config: pytest.Config, label: str) -> TerminalProgress | None:
    """A progress line for ``label``, or None where none should be drawn (see the module doc)."""
    if hasattr(config, "workerinput") or config.get_verbosity() < 0:
        return None
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None or not reporter.isatty():
        return None
    return TerminalProgress(config, label)
