"""The guide's multi-node flow across two real hosts: network namespaces joined by a shaped veth
pair (``conftest.py``).

The server host runs ``genie-server --host 0.0.0.0`` and ``pytest -m server`` against it over
its own loopback; the client host runs ``pytest -m client --genie-server=10.210.0.1`` across
the link; ``genie-report`` merges both folders.  Only what the physics of the link allows is
asserted: a transfer is never faster than the link's rate, the tensor throughput never beats
the bare probe, and every check passes.  Then the server dies mid-run, and a link slower than
the old timeout policy assumed carries the large tensor.

``--genie-large-mb`` is 64 here to keep CI short; the guide's default of 256 behaves the same.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.checks import CHECKS, GPU_DETECTION, LARGE_TENSOR_HANDLING, NETWORK_THROUGHPUT, Key

pytestmark = pytest.mark.multinode

MIB = 2**20
LINK_MBIT = 1000.0
SLOW_MBIT = 20.0
LARGE_MB = 64
SERVER_IP, SERVER_PORT, CLIENT_IP = "10.210.0.1", 8888, "10.210.0.2"
#: The killed server's run must end this soon after the kill (each later check fails at
#: connect, after the client's three quick retries).
END_AFTER_KILL_S = 30.0
#: The large tensor's share of the probe's round-trip rate below which something is wrong
#: (a copy too many, a stall), not merely slow: measured 0.60-0.99 at 1 Gbit/s on a 2-core
#: machine shared with other test runs, where the CPU, not the link, sets the pace.
EFFICIENCY_FLOOR = 0.3
#: How far above 1.0 the efficiency may read.  The strict bound, the link's rate, is asserted
#: on every transfer above; efficiency divides two measurements taken seconds apart, and on a
#: machine shared with other runs the probe read up to 3.8 % slow (efficiency 1.026, 1.038).
EFFICIENCY_NOISE = 0.1


def _results(folder: Path, kind: str) -> tuple[Path, dict[str, Any]]:
    """The one session folder under ``folder`` and its ``kind`` result file, parsed."""
    (session,) = folder.glob("genie_test_results_*")
    (path,) = session.glob(f"{kind}_test_results_*.json")
    return session, json.loads(path.read_text())


def _by_name(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {t["name"]: t for t in data["tests"]}


def _table(title: str, data: dict[str, Any]) -> list[str]:
    """check | status | figures, for the run's output."""
    lines = [title, "check | status | figures", "---|---|---"]
    for test in data["tests"]:
        figures = {k: v for k, v in test["details"].items()
                   if isinstance(v, (int, float, str)) and not isinstance(v, bool)}
        text = ", ".join(f"{k}={v}" for k, v in list(figures.items())[:6])
        lines.append(f"{test['name']} | {test['status']} | {text}")
    return lines


def _genie_report(*args: str) -> subprocess.CompletedProcess[str]:
    script = Path(sys.executable).with_name("genie-report")
    cmd = [str(script)] if script.exists() else [
        sys.executable, "-c", "import sys; from pytest_genie.report.cli import main; sys.exit(main())"]
    return subprocess.run([*cmd, *args], capture_output=True, text=True, timeout=120)


def test_guide_flow_across_a_shaped_link(two_hosts: Any, server_node: str, tmp_path: Path,
                                         multinode_log: list[str]) -> None:
    two_hosts.shape(LINK_MBIT)
    started = time.monotonic()
    server_run = two_hosts.pytest("server", "server", tmp_path / "server",
                                  f"--genie-server=127.0.0.1:{SERVER_PORT}")
    assert server_run.returncode == 0, server_run.stdout[-4000:]
    client_run = two_hosts.pytest("client", "client", tmp_path / "client", f"--genie-server={SERVER_IP}",
                                  f"--genie-large-mb={LARGE_MB}")
    assert client_run.returncode == 0, client_run.stdout[-4000:]
    server_dir, server_data = _results(tmp_path / "server", "server")
    client_dir, client_data = _results(tmp_path / "client", "client")
    merged = tmp_path / "merged"
    report_run = _genie_report(str(server_dir), str(client_dir), "--output", str(merged))
    assert report_run.returncode == 0, report_run.stderr
    report = json.loads((merged / "comprehensive_report.json").read_text())
    markdown = (merged / "test_analysis_report.md").read_text()
    multinode_log += [f"guide flow over a {LINK_MBIT:g} Mbit/s tbf link: {time.monotonic() - started:.1f} s",
                      *_table(f"server checks on {two_hosts.hostname['server']}", server_data),
                      *_table(f"client checks on {two_hosts.hostname['client']}", client_data)]

    # Every documented check ran on its side and passed (a CPU server skips GPU detection).
    records = {"server": _by_name(server_data), "client": _by_name(client_data)}
    for check in CHECKS:
        record = records[check.kind][check.name]
        if check == GPU_DETECTION and record["status"] == "SKIP":
            assert "no CUDA GPU" in record["details"][Key.SKIP_REASON]
            continue
        assert record["status"] == "PASS", (check.name, record["details"])

    # Physics: no byte crosses faster than the link's rate (beyond one tbf burst).
    rate = LINK_MBIT * 1e6 / 8
    burst = two_hosts.burst_bytes()
    large = records["client"][LARGE_TENSOR_HANDLING.name]["details"]
    assert large[Key.ROUND_TRIP_MS] / 1000 >= (2 * large[Key.BYTES] - 2 * burst) / rate
    probe = records["client"][NETWORK_THROUGHPUT.name]["details"]
    for times, mib_per_s in ((Key.UPLOAD_MS, Key.UPLOAD_MIB_PER_S),
                             (Key.DOWNLOAD_MS, Key.DOWNLOAD_MIB_PER_S)):
        for nbytes, ms in zip(probe[Key.PROBE_SIZES], probe[times], strict=True):
            assert ms / 1000 >= (nbytes - burst) / rate, (times, probe)
        assert 0.5 * rate <= probe[mib_per_s] * MIB <= rate, (mib_per_s, probe)  # near the line, not over

    # The report: the baseline, and tensors at a plausible share of it.
    network = report["network"]
    efficiency = network["efficiency"][LARGE_TENSOR_HANDLING.name]["efficiency"]
    multinode_log.append(f"probe {network['probe']}; large tensor efficiency {efficiency}; "
                         f"remote split {network['remote_split']}")
    assert EFFICIENCY_FLOOR <= efficiency <= 1.0 + EFFICIENCY_NOISE, network
    split = network["remote_split"]
    assert 0 < split["network_ms"] < split[Key.REMOTE_MS] and split[Key.SERVER_WORK_MS] > 0, split
    assert "### Network Baseline" in markdown and "Tensor transfer efficiency" in markdown

    # Both hosts are named, and each file says where its figures were measured.
    info = report["session_info"]
    assert info["server"]["hostname"] == two_hosts.hostname["server"]
    assert info["client"]["hostname"] == two_hosts.hostname["client"]
    assert two_hosts.hostname["server"] in markdown and two_hosts.hostname["client"] in markdown
    client_where, server_where = client_data["test_info"], server_data["test_info"]
    assert CLIENT_IP in client_where["client_info"]["ip_addresses"]
    assert SERVER_IP in server_where["server_info"]["ip_addresses"]
    assert client_where[Key.MEASURED]["path"] == "network"
    assert client_where[Key.MEASURED]["address"] == CLIENT_IP
    assert client_where[Key.MEASURED]["server_address"] == SERVER_IP
    assert server_where[Key.MEASURED]["path"] == "loopback"


def test_a_server_killed_mid_run_ends_the_run_with_its_failures_recorded(
        two_hosts: Any, victim_server: tuple[subprocess.Popen[Any], int], tmp_path: Path,
        multinode_log: list[str]) -> None:
    two_hosts.shape(LINK_MBIT)
    server, port = victim_server
    results = tmp_path / "client"
    log = (tmp_path / "client.log").open("w")
    run = two_hosts.popen("client", two_hosts.checks("client", results, f"--genie-server={SERVER_IP}:{port}",
                                                     "--genie-large-mb=8"),  # small probes: a quick start
                          stdout=log, stderr=subprocess.STDOUT)
    log.close()
    deadline = time.monotonic() + 180
    recorded: list[dict[str, Any]] = []
    while len(recorded) < 3:  # connectivity, throughput, /health: then pull the plug
        assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "client.log").read_text()
        files = list(results.glob("genie_test_results_*/client_test_results_*.json"))
        recorded = json.loads(files[0].read_text())["tests"] if files else []
        time.sleep(0.05)
    server.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    code = run.wait(timeout=END_AFTER_KILL_S + 30)
    ended_s = time.monotonic() - killed
    _, data = _results(results, "client")  # still valid JSON, or this raises
    multinode_log += [f"server killed after {len(recorded)} checks; the run ended {ended_s:.1f} s later "
                      f"(exit {code})", *_table("client checks against the killed server", data)]

    assert ended_s <= END_AFTER_KILL_S
    assert code == pytest.ExitCode.TESTS_FAILED, (tmp_path / "client.log").read_text()[-4000:]
    statuses = {t["name"]: t["status"] for t in data["tests"]}
    assert list(statuses) == [c.name for c in CHECKS if c.kind == "client"]  # every check recorded
    assert all(statuses[t["name"]] == "PASS" for t in recorded)
    failed = [t for t in data["tests"] if t["status"] != "PASS"]
    assert failed, statuses
    for test in failed:
        why = test["details"].get(Key.FAILURE) or test["details"].get(Key.ERROR) or ""
        assert "TransportError" in why or "connect" in why, (test["name"], why)


def test_a_slow_link_carries_the_large_tensor_within_its_timeout(
        two_hosts: Any, server_node: str, tmp_path: Path, multinode_log: list[str]) -> None:
    """The issue's failure at 1/30 scale: 256 MiB with a 30 s base failed a 20 Mbit/s link
    under the old 10 MiB/s assumption; so do 6 MiB with a 1 s base.  The new default and
    the budget the checks derive from their probe both carry it."""
    two_hosts.shape(SLOW_MBIT)
    script = Path(__file__).with_name("slow_link_client.py")
    done = two_hosts.run("client", [sys.executable, str(script), server_node, "6", "1"], timeout=120)
    assert done.returncode == 0, done.stdout[-4000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    old, new = outcome["old"], outcome["new"]
    assert not old["ok"] and old["kind"] == "write_timeout", old
    assert "1.6 s budget = 1 s base + 6.0 MiB at an assumed 10 MiB/s" in old["message"]
    assert "--genie-timeout" in old["message"] and "Client(timeout=" in old["message"]
    assert new["ok"], new
    assert new["elapsed_s"] >= 2 * 6 * MIB / (SLOW_MBIT * 1e6 / 8)  # it really crossed the link

    checks = two_hosts.pytest("client", "client", tmp_path / "client", f"--genie-server={SERVER_IP}",
                              "--genie-timeout=1", "--genie-large-mb=6", "-k",
                              "network_throughput or large_tensor_handling")
    assert checks.returncode == 0, checks.stdout[-4000:]
    _, data = _results(tmp_path / "client", "client")
    records = _by_name(data)
    probe = records[NETWORK_THROUGHPUT.name]["details"]
    multinode_log += [f"{SLOW_MBIT:g} Mbit/s link: old policy {old['kind']} after {old['elapsed_s']:.1f} s "
                      f"({old['message'].split('; ', 1)[1][:80]}...); new default passed in "
                      f"{new['elapsed_s']:.1f} s", *_table("client checks with --genie-timeout=1", data)]
    assert probe[Key.TIMEOUT_BASE_S] == 1.0
    assert probe[Key.TIMEOUT_MIN_RATE_MIB_S] < 1.0  # the probe's rate / 4, below the default
    assert records[LARGE_TENSOR_HANDLING.name]["status"] == "PASS"


def test_what_a_run_killed_with_sigkill_left_is_removed_by_the_next(
        netns_cleanup: Any, multinode_log: list[str]) -> None:
    """A run killed with -9 runs no finalizer: the next one removes its namespaces."""
    made = ("import sys, time; sys.path.insert(0, sys.argv[1]); import conftest; "
            "hosts = conftest.TwoHosts(); hosts.create(); print(*hosts.ns.values(), flush=True); "
            "time.sleep(300)")
    victim = subprocess.Popen([sys.executable, "-c", made, str(Path(__file__).parent)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert victim.stdout is not None
        names = victim.stdout.readline().split()
    finally:
        victim.kill()
        victim.wait(timeout=30)
    assert len(names) == 2 and all(n in netns_cleanup.listed() for n in names), names
    removed = netns_cleanup.remove_stale()
    multinode_log.append(f"a run killed with SIGKILL left {names}; the next run removed {removed}")
    assert set(names) <= set(removed)
    assert not set(names) & set(netns_cleanup.listed())
