"""The xdist pieces (``scheduling.py``): a server's lock is one holder at a time, whichever
process asks, and a fleet's checks are one work unit per server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_genie.scheduling import make_lock_dir, remove_lock_dir, server_lock

#: One process holding a server's lock for a while, logging when it got in and out (its
#: own interpreter: pytest's importlib mode leaves test modules unimportable by name).
HOLD = """
import sys, time
from pytest_genie.scheduling import server_lock
folder, url, seconds, log = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
with server_lock(folder, url):
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"in {time.monotonic()}\\n")
    time.sleep(seconds)
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"out {time.monotonic()}\\n")
"""


def test_one_server_is_held_by_one_process_at_a_time(tmp_path: Path) -> None:
    folder = make_lock_dir()
    try:
        log = tmp_path / "log"
        procs = [subprocess.Popen([sys.executable, "-c", HOLD, folder, "http://127.0.0.1:8888",
                                   "0.3", str(log)]) for _ in range(3)]
        for p in procs:
            assert p.wait(timeout=60) == 0
        events = [line.split()[0] for line in log.read_text().splitlines()]
        assert events == ["in", "out"] * 3  # never two inside at once
        with server_lock(folder, "http://127.0.0.1:8888"), server_lock(folder, "http://127.0.0.1:8889"):
            pass  # two servers' locks are independent: a holder of one never waits on the other
    finally:
        remove_lock_dir(folder)
    assert not Path(folder).exists()


def test_a_fleet_is_one_work_unit_per_server(pytester: pytest.Pytester) -> None:
    """The scheduler's unit of a node id: its server's, else xdist's own loadgroup scope."""
    from pytest_genie.scheduling import ServerScheduling

    config = pytester.parseconfigure("-p", "xdist", "--tx", "2*popen")
    scheduling = ServerScheduling(config, None, ("http://gpu-a:8888", "http://gpu-b:8888"))
    units = {nodeid: scheduling._split_scope(nodeid) for nodeid in (
        "t.py::test_x[gpu-a:8888]", "t.py::test_y[gpu-a:8888]", "t.py::test_x[gpu-b:8888]", "t.py::test_z")}
    assert units["t.py::test_x[gpu-a:8888]"] == units["t.py::test_y[gpu-a:8888]"] == "genie-server-gpu-a_8888"
    assert units["t.py::test_x[gpu-b:8888]"] == "genie-server-gpu-b_8888"
    assert units["t.py::test_z"] == "t.py::test_z"
