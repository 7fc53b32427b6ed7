"""Per-session and per-test state of the plugin, kept in pytest stashes.

Nothing lives at module level: pytester runs nested sessions in one process, and
each ``Config`` / ``Item`` carries its own state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.options import GenieOptions
from pytest_genie.results import ResultsSession

__all__ = ["DETAILS_KEY", "PENDING_KEY", "SERVER_URL_KEY", "STATE_KEY", "GenieState", "OnWorker",
           "Pending", "get_state"]


@dataclass
class Pending:
    """A recorded test in progress on this process: its phases so far."""

    name: str
    kinds: list[str]
    start: float
    outcomes: dict[str, str] = field(default_factory=dict)
    messages: dict[str, str] = field(default_factory=dict)
    call_ms: float | None = None
    interrupted_by: str | None = None
    #: What pytest-json-report holds as ``metadata["genie"]``; filled at teardown.
    json_metadata: dict[str, Any] = field(default_factory=dict)


@dataclass
class OnWorker:
    """On the xdist controller: a recorded test that a worker started and has not finished.

    A worker that dies mid-test sends no teardown report, so no record; this is what the
    controller knows to record it as ERROR instead of losing it.
    """

    #: Sent by the worker on the setup report: name, kinds, timestamp, server_url.
    started: dict[str, Any]
    #: ``time.monotonic()`` on the controller when the latest phase report arrived.
    seen: float
    #: The latest phase reported ("setup" or "call"): the crash happened in the next one.
    phase: str = "setup"
    call_ms: float | None = None


@dataclass
class GenieState:
    """The session's options, and (on the process that writes) its results."""

    options: GenieOptions
    is_worker: bool
    results: ResultsSession | None = None
    in_flight: dict[str, tuple[pytest.Item, Pending]] = field(default_factory=dict)
    report_files: list[Path] = field(default_factory=list)
    report_error: str | None = None
    write_error: str | None = None
    #: xdist controller only: recorded tests in progress on workers, by node id.
    on_workers: dict[str, OnWorker] = field(default_factory=dict)
    #: xdist controller only: why each worker went down (``pytest_testnodedown``), by gateway id.
    worker_errors: dict[str, str] = field(default_factory=dict)
    #: Each recorded test's junitxml properties, by node id (for pytest-html's row hook).
    properties: dict[str, list[tuple[str, Any]]] = field(default_factory=dict)
    #: The regression gate's outcome (``gate.py``): the comparison, and why it could not run.
    comparison: dict[str, Any] | None = None
    compare_error: str | None = None
    #: xdist controller only: the folder of the run's server locks (``scheduling.py``), once made.
    lock_dir: str | None = None


STATE_KEY = pytest.StashKey[GenieState]()
#: On an item: the dict the ``genie_record`` fixture handed to the test.
DETAILS_KEY = pytest.StashKey[dict[str, Any]]()
#: On an item: the test's phases so far.
PENDING_KEY = pytest.StashKey[Pending]()
#: On the config: the server URL ``genie_server_url`` resolved to.
SERVER_URL_KEY = pytest.StashKey[str]()


def get_state(config: pytest.Config) -> GenieState:
    try:
        return config.stash[STATE_KEY]
    except KeyError:
        raise RuntimeError("the Genie plugin is not configured in this session "
                           "(was it disabled with -p no:genie?)") from None
