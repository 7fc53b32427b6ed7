"""A fleet: several ``--genie-server``, the documented client checks run against each.

The checks are the project's own (``tests/client``), run as a user runs them, from the
repository's root in a pytest subprocess, against two real servers on 127.0.0.1 and one
port where nothing listens (a server that is down).  The checks picked are the quick ones
plus ``multi_operation_chain``, which counts exact ``/stats`` deltas: under ``-n 3`` it
would fail if another worker's request reached its server in between.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from genie.server.config import ServerConfig
from genie.server.runner import BackgroundServer
from pytest_genie.fleet import server_id, server_in, server_slug

REPO = Path(__file__).resolve().parents[3]
CHECKS = ("network_connectivity", "network_throughput", "server_connectivity", "large_tensor_handling",
          "multi_operation_chain")


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def fleet() -> Iterator[list[str]]:
    """Two live servers and one dead one, as ``--genie-server`` values (host:port)."""
    with BackgroundServer(ServerConfig(device="cpu")) as a, BackgroundServer(ServerConfig(device="cpu")) as b:
        live = sorted([a.url, b.url])
        yield [u.removeprefix("http://") for u in live] + [f"127.0.0.1:{_dead_port()}"]


def _run(tmp: Path, servers: list[str], *extra: str) -> tuple[subprocess.CompletedProcess[str], Path]:
    results = tmp / "results"
    env = {**os.environ, "PYTHONPATH": os.environ.get("PYTHONPATH", "")}
    for name in [k for k in env if k.startswith("GENIE_")]:
        del env[name]
    command = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-m", "client", "-v",
               "tests/client/test_client_side.py", "-k", " or ".join(CHECKS),
               *(f"--genie-server={s}" for s in servers), "--genie-level=quick", "--genie-large-mb=1",
               f"--genie-results-dir={results}", "--genie-report", *extra]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
                          stdin=subprocess.DEVNULL, check=False)
    folders = sorted(results.glob("genie_test_results_*"))
    assert len(folders) == 1, done.stdout + done.stderr
    return done, folders[0]


@pytest.fixture(scope="module")
def serial(fleet: list[str], tmp_path_factory: pytest.TempPathFactory
           ) -> tuple[subprocess.CompletedProcess[str], Path]:
    return _run(tmp_path_factory.mktemp("fleet-serial"), fleet)


@pytest.fixture(scope="module")
def parallel(fleet: list[str], tmp_path_factory: pytest.TempPathFactory
             ) -> tuple[subprocess.CompletedProcess[str], Path]:
    return _run(tmp_path_factory.mktemp("fleet-parallel"), fleet, "-n", "3")


def _report(folder: Path) -> dict[str, Any]:
    return json.loads((folder / "comprehensive_report.json").read_text(encoding="utf-8"))


#: ``-v`` lines: ``...::test_x[server] PASSED`` serially, ``[gw0] [ 20%] PASSED ...::test_x[server]``
#: under xdist.
_VERBOSE = re.compile(r"^(?:\[(?P<worker>gw\d+)\] \[ *\d+%\] (?P<before>PASSED|FAILED) )?"
                      r"\S+::test_(?P<check>\w+)\[(?P<server>[^\]]+)\](?: (?P<after>PASSED|FAILED))?",
                      re.MULTILINE)


def _outcomes(stdout: str, key: str = "outcome") -> dict[tuple[str, str], str]:
    """Each (check, server) of a ``-v`` run: its outcome, or (``key="worker"``) the xdist worker
    that ran it."""
    found = {}
    for m in _VERBOSE.finditer(stdout):
        outcome = m["before"] or m["after"]
        if outcome:
            found[(m["check"], m["server"])] = outcome if key == "outcome" else str(m["worker"])
    return found


def _check_fleet_run(done: subprocess.CompletedProcess[str], folder: Path, fleet: list[str]) -> None:
    """What a fleet of two live servers and a dead one leaves, serial or parallel."""
    out = done.stdout + done.stderr
    assert done.returncode == 1, out  # the dead server's checks fail the run
    *live, dead = fleet
    outcomes = _outcomes(done.stdout)
    assert outcomes == {(check, server): "FAILED" if server == dead else "PASSED"  # ids name the server
                        for check in CHECKS for server in fleet}, out

    # One result file per server, each in the guide's schema and naming its server.
    files = sorted(folder.glob("client_test_results_*.json"))
    assert [p.name.rsplit("_", 2)[-2:] for p in files] == [
        ["127.0.0.1", f"{s.rsplit(':', 1)[1]}.json"] for s in sorted(fleet, key=server_slug)]
    for path in files:
        doc = json.loads(path.read_text(encoding="utf-8"))
        server = doc["test_info"]["server_url"]
        assert path.name.endswith(f"_{server_slug(server)}.json")
        assert doc["test_info"]["measured"]["server_url"] == server
        assert doc["test_info"]["measured"]["path"] == "loopback"
        assert sorted(t["name"] for t in doc["tests"]) == sorted(CHECKS)  # the documented names
        want = "FAIL" if server == f"http://{dead}" else "PASS"
        assert {t["status"] for t in doc["tests"]} == {want}, doc["tests"]

    # The report: a section per server and the fleet table, the dead one's row failing with why.
    report = _report(folder)
    rows = {s["id"]: s for s in report["servers"]}
    assert set(rows) == set(fleet)
    for server in live:
        row = rows[server]
        assert (row["result"], row["health"]["status"], row["failures"]) == ("PASS", "PASS", [])
        assert row["gpu"]["device"] == "cpu"
        assert row["rtt_ms"]["value"] > 0 and row["throughput"]["upload_mib_per_s"] > 0
        assert row["efficiency"] is not None and row["efficiency"] > 0
        assert row["measured"]["client"]["path"] == "loopback"
    bad = rows[dead]
    assert bad["result"] == "FAIL" and bad["health"]["status"] == "FAIL"
    assert bad["summary"]["failed"] == len(CHECKS)
    assert "ConnectionRefusedError" in bad["failures"][0]["reason"]
    assert bad["rtt_ms"] is None and bad["efficiency"] is None
    md = (folder / "test_analysis_report.md").read_text(encoding="utf-8")
    assert "## Servers" in md and "#### Fleet" in md
    table = md.split("#### Fleet", 1)[1].split("\n\n")[1].splitlines()
    assert table[0].startswith("| server | result | health | GPU | RTT | probe up / down | large transfer |")
    by_server = {line.split(" | ")[0].removeprefix("| "): line for line in table[2:]}
    assert set(by_server) == set(fleet)
    assert " | PASS | healthy " in by_server[live[0]] and " | PASS | healthy " in by_server[live[1]]
    assert f" | FAIL: {len(CHECKS)} of {len(CHECKS)} checks; network_connectivity: " in by_server[dead]
    for server in fleet:
        assert f"### Server {server}: " in md
    html = (folder / "test_analysis_report.html").read_text(encoding="utf-8")
    assert 'id="table-fleet"' in html and html.count('<h3 id="server-') == 3
    # The closing line names the server of each check that failed.
    assert f"network_connectivity on {dead} (FAIL)" in out


def test_a_fleet_is_checked_server_by_server(
        serial: tuple[subprocess.CompletedProcess[str], Path], fleet: list[str]) -> None:
    _check_fleet_run(*serial, fleet)


def test_a_fleet_under_xdist_checks_each_server_on_one_worker_at_a_time(
        parallel: tuple[subprocess.CompletedProcess[str], Path], fleet: list[str]) -> None:
    done, folder = parallel
    _check_fleet_run(done, folder, fleet)
    # Each server's checks ran on one worker (its /stats deltas undisturbed), three workers in all.
    workers: dict[str, set[str]] = {}
    for (_check, server), worker in _outcomes(done.stdout, "worker").items():
        workers.setdefault(server, set()).add(worker)
    assert set(workers) == set(fleet), done.stdout
    assert all(len(w) == 1 for w in workers.values()), workers
    assert len(set().union(*workers.values())) == 3, workers


def test_one_server_keeps_the_single_server_layout(fleet: list[str], tmp_path: Path) -> None:
    """One ``--genie-server``: ids without the server, one unsuffixed file, no fleet sections."""
    done, folder = _run(tmp_path, fleet[:1])
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test_network_connectivity PASSED" in done.stdout
    (path,) = folder.glob("client_test_results_*.json")
    assert re.fullmatch(r"client_test_results_\d{8}_\d{6}\.json", path.name)
    report = _report(folder)
    assert report["servers"] == []
    assert "## Servers" not in (folder / "test_analysis_report.md").read_text(encoding="utf-8")


# ---- the pieces ------------------------------------------------------------------------


def test_server_ids_and_slugs() -> None:
    assert server_id("http://gpu-a:8888") == "gpu-a:8888"
    assert server_id("https://gpu-a:8443") == "https://gpu-a:8443"
    assert server_id("http://[::1]:8888") == "[::1]:8888"
    assert server_slug("http://gpu-a:8888") == "gpu-a_8888"
    assert server_slug("https://[::1]:8443") == "https_1_8443"


def test_a_node_id_names_its_server_even_beside_other_parameters() -> None:
    servers = ("http://gpu-a:8888", "http://gpu-a-2:8888")
    assert server_in("t.py::test_x[gpu-a:8888]", servers) == "http://gpu-a:8888"
    assert server_in("t.py::test_x[gpu-a-2:8888]", servers) == "http://gpu-a-2:8888"  # not gpu-a
    assert server_in("t.py::test_x[small-gpu-a:8888]", servers) == "http://gpu-a:8888"
    assert server_in("t.py::test_x[gpu-a-2:8888-big]", servers) == "http://gpu-a-2:8888"
    assert server_in("t.py::test_x[gpu-b:8888]", servers) is None
    assert server_in("t.py::test_x", servers) is None


FLEET_TESTS = """
import pytest

@pytest.mark.client
@pytest.mark.parametrize("size", ["small", "big"])
def test_sized(genie_server_url, size, genie_record):
    genie_record["url"] = genie_server_url

@pytest.mark.server
def test_no_server(genie_record):
    genie_record["ok"] = True
"""


def test_record_names_drop_the_server_but_keep_other_parameters(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(FLEET_TESTS)
    results = pytester.path / "results"
    pytester.runpytest("--genie-server=127.0.0.2:1", "--genie-server=127.0.0.3:1",
                       f"--genie-results-dir={results}").assert_outcomes(passed=5)
    (folder,) = results.glob("genie_test_results_*")
    names = {}
    for path in folder.glob("*.json"):
        doc = json.loads(path.read_text(encoding="utf-8"))
        names[path.name.split("_results_", 1)[1].split("_", 2)[-1]] = (
            doc["test_info"]["server_url"],
            sorted((t["name"], t["details"].get("url")) for t in doc["tests"]))
    assert names["127.0.0.2_1.json"] == ("http://127.0.0.2:1", [("sized[big]", "http://127.0.0.2:1"),
                                                             ("sized[small]", "http://127.0.0.2:1")])
    assert names["127.0.0.3_1.json"][1] == [("sized[big]", "http://127.0.0.3:1"),
                                           ("sized[small]", "http://127.0.0.3:1")]
    # The check that talks to no server ran once, into the unsuffixed file of its kind.
    unsuffixed = list(folder.glob("server_test_results_*.json"))
    assert len(unsuffixed) == 1 and re.fullmatch(r"server_test_results_\d{8}_\d{6}\.json", unsuffixed[0].name)
