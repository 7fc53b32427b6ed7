"""The checks under pytest-xdist: no two workers talk to one server at once, and a fleet's servers
are checked in parallel.  Imported only where pytest-xdist runs the session.

Why one server must be quiet
    ``server_statistics``, ``multi_operation_chain`` (its ``/stats`` deltas),
    ``llm_decode_colocation`` (its per-session request counts) and ``concurrency_sweep`` count
    exact deltas of the server's counters, or its capacity: one request from another worker in
    between breaks them.  Guarding only those checks would not do, since the other checks'
    requests break the deltas just as well, and a second worker's load would distort every
    timed figure.  So the whole of one server's checks is kept to one worker at a time.

Two mechanisms, for two different promises
    * :func:`server_lock` (correctness, whatever the ``--dist`` mode): on a worker, a check
      that talks to a server holds that server's file lock from its setup to its teardown.
      The lock files are in a folder the controller makes for the run and hands to every
      worker (``workerinput``), the recipe xdist documents for work shared by workers.  A
      test holds one lock at a time, so no two can wait on each other; a worker that dies
      drops its lock with its file descriptor.  With one ``--genie-server`` this serializes
      the checks that talk to it (they could not run side by side anyway) and lets the rest
      run in parallel.
    * :class:`ServerScheduling` (parallelism, for a fleet under ``-n N``, i.e. ``--dist load``,
      and under ``--dist loadgroup``): one work unit per server, so xdist hands each server's
      checks to one worker, in order, and the servers to different workers at once; the lock
      is then never contended, and each server's measured link (``genie_link``) lives on the
      worker that uses it.  xdist's own ``loadgroup`` (``xdist_group`` marks) would say the
      same, but it marks groups by rewriting node ids, which pytest 9.2's structured ids
      ignore (pytest-xdist issue #1386): the groups silently vanish.  This scheduler reads the
      server from the node id's parameters instead (``fleet.server_in``), and is xdist's own
      ``loadgroup`` for every other test (each its own unit, or its ``xdist_group``).
      ``loadscope``, ``loadfile``, ``worksteal`` and ``each`` keep their own placement; the
      lock keeps them correct.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from filelock import FileLock
from xdist.scheduler import LoadGroupScheduling

from pytest_genie.fleet import server_in, server_slug

__all__ = ["SCHEDULED_DIST", "ServerScheduling", "make_lock_dir", "remove_lock_dir",
           "server_lock"]

#: The ``--dist`` modes whose placement :class:`ServerScheduling` takes over for a fleet.
SCHEDULED_DIST = ("load", "loadgroup")


class ServerScheduling(LoadGroupScheduling):
    """xdist's ``loadgroup``, with each fleet server's checks as one work unit."""

    def __init__(self, config: Any, log: Any, servers: tuple[str, ...]) -> None:
        super().__init__(config, log)
        self.servers = servers

    def _split_scope(self, nodeid: str) -> str:
        server = server_in(nodeid, self.servers)
        return f"genie-server-{server_slug(server)}" if server else super()._split_scope(nodeid)


def make_lock_dir() -> str:
    """The controller's folder for this run's server locks."""
    return tempfile.mkdtemp(prefix="genie-server-locks-")


def remove_lock_dir(folder: str) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def server_lock(folder: str, url: str) -> FileLock:
    """``with server_lock(folder, url):`` held while one check talks to ``url``."""
    return FileLock(Path(folder) / f"{server_slug(url)}.lock")
