"""The report per server (``servers.py``), and where each of its figures was measured.

The guide's flow: ``pytest -m server`` on the GPU node against itself (127.0.0.1: loopback),
``pytest -m client --genie-server=10.210.0.1`` from another host (across the network), each
folder copied to one place and reported together.  Every figure says which of the two it is,
and none is formed from both without saying so.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_genie.report.build import HTML_NAME, MARKDOWN_NAME, build_report, save_report
from pytest_genie.report.inputs import load_result_file
from pytest_genie.report.servers import sections

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time

SERVER_NODE = {"hostname": "gpu-node", "server_url": "http://127.0.0.1:8888",
               "server_info": {"hostname": "gpu-node", "ip_addresses": ["127.0.0.1", "10.210.0.1"]},
               "measured": {"host": "gpu-node", "address": "127.0.0.1", "server_url": "http://127.0.0.1:8888",
                            "server_address": "127.0.0.1", "same_host": True, "path": "loopback",
                            "label": "loopback on gpu-node: client and server on one host"}}
CLIENT_NODE = {"hostname": "client-7", "server_url": "http://10.210.0.1:8888",
               "client_info": {"hostname": "client-7", "ip_addresses": ["10.210.0.2"]},
               "measured": {"host": "client-7", "address": "10.210.0.2", "server_url": "http://10.210.0.1:8888",
                            "server_address": "10.210.0.1", "same_host": False, "path": "network",
                            "label": "across the network from client-7 (10.210.0.2)"}}
LOOPBACK, NETWORK = SERVER_NODE["measured"]["label"], CLIENT_NODE["measured"]["label"]


def _two_folders(tmp_path: Path, samples: Samples, client: list[dict[str, Any]] | None = None) -> list[Path]:
    server = samples.write_results(tmp_path / "server-node", "server", samples.gpu_server_tests(),
                                   info=SERVER_NODE)
    client_file = samples.write_results(tmp_path / "client-node", "client",
                                        client or samples.gpu_client_tests(), info=CLIENT_NODE)
    return [server, client_file]


def _figures(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    """Every figure dict (``Figure.to_dict``: a ``value`` and a ``measured``) under ``node``."""
    if isinstance(node, dict):
        if "value" in node and "measured" in node:
            return [(path, node)]
        return [f for k, v in node.items() for f in _figures(v, f"{path}.{k}")]
    if isinstance(node, list):
        return [f for i, v in enumerate(node) for f in _figures(v, f"{path}[{i}]")]
    return []


def test_a_server_folder_and_a_client_folder_label_each_figures_origin(tmp_path: Path,
                                                                      samples: Samples) -> None:
    client = samples.gpu_client_tests()
    for row in client[4]["details"]["sweep"]:  # no Server-Timing: the overhead falls back on gpu_detection
        del row["server_compute_ms"]
    report = build_report(_two_folders(tmp_path, samples, client), [])
    perf = report["performance"]
    assert perf["measured"]["client"]["label"] == NETWORK
    assert perf["measured"]["server"]["label"] == LOOPBACK
    assert perf["measured"]["same_path"] is False
    figures = _figures(perf)
    assert len(figures) > 10
    for where, fig in figures:  # every figure of the performance section is the client's own
        assert fig["measured"]["label"] == NETWORK, where
    # The one figure formed from both paths says so, naming both.
    across = perf["measured"]["overhead_across_paths"]
    assert across is not None and NETWORK in across and LOOPBACK in across
    assert perf["server_time_basis"] == "gpu_detection.gpu_time_ms"
    assert set(perf["measured"]["server_figures"]) >= {"server_gpu_time_ms", "server_startup_ms"}

    save_report(report, tmp_path / "out")
    md = (tmp_path / "out" / MARKDOWN_NAME).read_text(encoding="utf-8")
    lines = md.splitlines()

    def line(start: str) -> str:
        (found,) = [x for x in lines if x.startswith(start)]
        return found

    assert line("Server GPU Time measured") == (f"Server GPU Time measured on the server node, {LOOPBACK}; "
                                               f"Client Remote Time {NETWORK}.")
    assert NETWORK in line("⚠ The Network Overhead mixes two paths") and LOOPBACK in line("⚠ The Network")
    assert line("Server startup and server op round trip") == (
        f"Server startup and server op round trip measured on the server node, {LOOPBACK}; the others "
        f"{NETWORK}.")
    assert line("Where measured:").startswith(f"Where measured: client checks {NETWORK}; server checks on "
                                              f"the server node, {LOOPBACK}.")
    side = md.split("## Server-Side Results", 1)[1].split("## Client-Side Results", 1)
    assert f"Figures measured {LOOPBACK}." in side[0] and f"Figures measured {NETWORK}." in side[1]
    assert f"Measured {NETWORK}." in md.split("### Network Baseline", 1)[1]
    html = (tmp_path / "out" / HTML_NAME).read_text(encoding="utf-8")
    assert f"Figures measured {LOOPBACK}." in html and f"Figures measured {NETWORK}." in html
    assert f"⚠ The network overhead {escape(across)}." in html


def test_with_server_timing_no_figure_mixes_the_paths(tmp_path: Path, samples: Samples) -> None:
    """The overhead pairs the remote time with the same requests' compute, both the client's."""
    report = build_report(_two_folders(tmp_path, samples), [])
    perf = report["performance"]
    assert perf["server_time_basis"] == "performance_comparison.server_compute_ms"
    assert perf["measured"]["overhead_across_paths"] is None
    save_report(report, tmp_path / "out")
    assert "mixes two paths" not in (tmp_path / "out" / MARKDOWN_NAME).read_text(encoding="utf-8")


def test_the_server_nodes_file_joins_the_section_of_the_address_clients_used(tmp_path: Path,
                                                                            samples: Samples) -> None:
    files = [load_result_file(p) for p in _two_folders(tmp_path, samples)]
    found, host_level = sections(files)
    assert host_level == [] and len(found) == 1
    assert found[0].server == "http://10.210.0.1:8888"
    assert [f.side for f in found[0].files] == ["server", "client"]


def test_two_clients_of_one_server_are_two_sections(tmp_path: Path, samples: Samples) -> None:
    """Figures measured from two hosts are never merged, even against one server."""
    other = {**CLIENT_NODE, "hostname": "client-8",
             "measured": {**CLIENT_NODE["measured"], "host": "client-8",
                          "label": "across the network from client-8 (10.210.0.3)"}}
    paths = [samples.write_results(tmp_path / "c7", "client", samples.gpu_client_tests(), info=CLIENT_NODE),
             samples.write_results(tmp_path / "c8", "client", samples.cpu_client_tests(), info=other)]
    report = build_report(paths, [])
    labels = [s["measured"]["client"]["label"] for s in report["servers"]]
    assert labels == [NETWORK, "across the network from client-8 (10.210.0.3)"]
    for s in report["servers"]:
        for where, fig in _figures(s["performance"]):
            assert fig["measured"]["label"] == s["measured"]["client"]["label"], where
    # Each server's section nests its figures one level below its own heading.
    save_report(report, tmp_path / "out")
    fleet = (tmp_path / "out" / MARKDOWN_NAME).read_text(encoding="utf-8")
    fleet = fleet.split("\n## Servers\n", 1)[1].split("\n## ", 1)[0]
    for heading in ("Network vs GPU Performance", "End-to-End Performance", "Network Baseline"):
        assert fleet.count(f"\n#### {heading}\n") == 2 and f"\n### {heading}\n" not in fleet, heading
