"""The report per server: which result files describe which server, each server's figures, and the
fleet table's row.

Files to servers (:func:`sections`)
    A client file names the server it tested (``test_info.server_url``); its figures were measured
    from its host (``where.py``).  One *section* holds the client files of one server URL measured
    from one host, so two clients measuring one server never have their figures mixed either.  A
    server file joins the section of its server: the same URL, else the section whose URL's host is
    one of the server node's own addresses on the same port (the guide's flow: ``pytest -m server``
    on the GPU node against 127.0.0.1:8888, the client against 10.210.0.1:8888), else the only
    section there is.  One that matches none is a section of its own.  A server file that names no
    server (a fleet's ``environment_setup`` / ``server_startup``, run once on this host) is
    host-level: it belongs to no section when there are several.

The JSON shape: ``comprehensive_report.json["servers"]``, one entry per section, in server URL
order (a one-server report has one; the report's top-level ``performance``, ``claims`` and
``network`` are the first entry's)::

    {"server": "http://gpu-a:8888", "id": "gpu-a:8888",
     "measured": {"client": <Where>, "server": <Where> | null},
     "files": {"client": [path...], "server": [path...]},
     "summary": {"total", "passed", "failed", "skipped", "errors", "success_rate"},
     "result": "PASS" | "FAIL" | "SKIP" | "NOT RUN",
     "failures": [{"name", "status", "reason"}...],
     "health": {"status": <server_connectivity's status> | null, "response_ms": <Figure> | null,
                "protocol_version", "genie_version"},
     "gpu": <analysis.gpu_info of its files>,
     "rtt_ms": <Figure: network_connectivity's median TCP connect> | null,
     "throughput": {"upload_mib_per_s", "download_mib_per_s", "round_trip_mib_per_s",
                    "large_mib_per_s": <Figure> | null, "http_mib_per_s": <Figure> | null},
     "efficiency": <large tensor MiB/s / probe round trip MiB/s> | null,
     "server_side": <analysis.side_analysis> | null, "client_side": <...> | null,
     "performance": <performance.performance>, "claims": [<claim>...], "network": <network_baseline>}

A ``<Where>`` is ``where.Where.to_dict``: ``{"host", "server_url", "path", "label"}``; a
``<Figure>`` is ``figures.Figure.to_dict``, which carries its own ``measured``.  Every figure of an
entry was measured on one of its two paths: the client's, or for the server-side checks the server
node's; ``performance.measured.server_figures`` names the latter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from pytest_genie.checks import (
    HTTP_TENSOR_TRANSFER,
    LARGE_TENSOR_HANDLING,
    NETWORK_CONNECTIVITY,
    SERVER_CONNECTIVITY,
    Check,
    Key,
)
from pytest_genie.fleet import server_id
from pytest_genie.report.analysis import failure_message, gpu_info, pick, side_analysis, summarize
from pytest_genie.report.claims import performance_claims
from pytest_genie.report.figures import figure
from pytest_genie.report.inputs import ResultFile, number
from pytest_genie.report.network import network_baseline
from pytest_genie.report.performance import performance
from pytest_genie.report.where import Where, where_of

__all__ = ["Section", "entry", "failures", "result_of", "sections"]


@dataclass
class Section:
    """The result files of one server, as measured from one client host."""

    server: str | None
    client: list[ResultFile] = field(default_factory=list)
    server_side: list[ResultFile] = field(default_factory=list)

    @property
    def files(self) -> list[ResultFile]:
        return self.server_side + self.client

    def where(self, side: str) -> Where | None:
        files = self.client if side == "client" else self.server_side
        return where_of(files[0].test_info) if files else None


def _url(f: ResultFile) -> str | None:
    url = f.test_info.get(Key.SERVER_URL)
    return str(url) if url else None


def _addresses(f: ResultFile) -> set[str]:
    """The server node's own addresses, as its result file lists them."""
    info = f.test_info.get("server_info")
    listed = info.get("ip_addresses") if isinstance(info, dict) else None
    return {str(a) for a in listed} if isinstance(listed, list) else set()


def _serves(f: ResultFile, url: str | None) -> bool:
    """Whether the server node of ``f`` is the one clients reached at ``url``."""
    mine = urlsplit(_url(f) or "")
    theirs = urlsplit(url or "")
    return bool(theirs.hostname) and mine.port == theirs.port and theirs.hostname in _addresses(f)


def sections(files: list[ResultFile]) -> tuple[list[Section], list[ResultFile]]:
    """The files grouped by server (see the module docstring), and the host-level server files
    that belong to no section."""
    by_client: dict[tuple[str | None, str | None], Section] = {}
    for f in files:
        if f.side == "client":
            key = (_url(f), where_of(f.test_info).host)
            by_client.setdefault(key, Section(server=key[0])).client.append(f)
    found = [by_client[k] for k in sorted(by_client, key=lambda k: (k[0] is None, k[0] or "", k[1] or ""))]
    servers: dict[tuple[str | None, str | None], list[ResultFile]] = {}
    for f in files:
        if f.side == "server":
            servers.setdefault((_url(f), where_of(f.test_info).host), []).append(f)
    host_level: list[ResultFile] = []
    for (url, _host), group in servers.items():
        free = [s for s in found if not s.server_side]
        home = (next((s for s in free if url is not None and s.server == url), None)
                or next((s for s in free if url is not None and _serves(group[0], s.server)), None)
                or (found[0] if len(found) == 1 and not found[0].server_side else None))
        if home is not None:
            home.server_side = group
        elif url is None and found:
            host_level += group
        else:
            found.append(Section(server=url, server_side=group))
    if host_level and len(found) == 1:
        found[0].server_side = [*host_level, *found[0].server_side]
        host_level = []
    return found or [Section(server=None)], host_level


def result_of(summary: dict[str, Any]) -> str:
    """One word for a server: FAIL if anything failed or errored, PASS if something passed."""
    if summary["failed"] or summary["errors"]:
        return "FAIL"
    if summary["passed"]:
        return "PASS"
    return "SKIP" if summary["skipped"] else "NOT RUN"


def failures(tests: list[dict[str, Any]]) -> list[dict[str, str]]:
    """Each check that failed or errored, with why, in run order: a failed server's row says why."""
    return [{"name": t["name"], "status": t["status"], "reason": failure_message(t) or t["status"]}
            for t in tests if t["status"] in ("FAIL", "ERROR")]


def _figure(tests: list[dict[str, Any]], check: Check, key: str,
            perf: dict[str, Any]) -> dict[str, Any] | None:
    """A client figure of ``check`` with its spread and path, as the performance figures carry it."""
    record = pick(tests, check)
    if record is None:
        return None
    fig = figure(record["details"], key, server=perf["server"], measured=perf["measured"]["client"])
    return fig.to_dict() if fig else None


def entry(section: Section) -> dict[str, Any]:
    """The report's entry for one section (the shape in the module docstring)."""
    server_tests = [t for f in section.server_side for t in f.tests]
    client_tests = [t for f in section.client for t in f.tests]
    gpu = gpu_info(section.files, server_tests, client_tests)
    client_where, server_where = section.where("client"), section.where("server")
    perf = performance(server_tests, client_tests, gpu, section.server,
                       client_where=client_where, server_where=server_where)
    on_gpu = str(perf.get("server_device") or "").startswith("cuda") or gpu.get(Key.CUDA_AVAILABLE) is True
    network = network_baseline(client_tests)
    network["measured"] = client_where.to_dict() if client_where else None
    summary = summarize(server_tests + client_tests)
    health = pick(client_tests, SERVER_CONNECTIVITY)
    details = health["details"] if health else {}
    probe = network["probe"]
    return {
        "server": section.server,
        "id": server_id(section.server) if section.server else "server not recorded",
        "measured": {"client": perf["measured"]["client"], "server": perf["measured"]["server"]},
        "files": {"client": [str(f.path) for f in section.client],
                  "server": [str(f.path) for f in section.server_side]},
        "summary": summary,
        "result": result_of(summary),
        "failures": failures(server_tests + client_tests),
        "health": {"status": health["status"] if health else None,
                   Key.RESPONSE_MS: _figure(client_tests, SERVER_CONNECTIVITY, Key.RESPONSE_MS, perf),
                   Key.PROTOCOL_VERSION: details.get(Key.PROTOCOL_VERSION),
                   Key.GENIE_VERSION: details.get(Key.GENIE_VERSION)},
        "gpu": gpu,
        "rtt_ms": _figure(client_tests, NETWORK_CONNECTIVITY, Key.CONNECT_MS_MEDIAN, perf),
        "throughput": {Key.UPLOAD_MIB_PER_S: number(probe[Key.UPLOAD_MIB_PER_S]),
                       Key.DOWNLOAD_MIB_PER_S: number(probe[Key.DOWNLOAD_MIB_PER_S]),
                       "round_trip_mib_per_s": number(probe["round_trip_mib_per_s"]),
                       "large_mib_per_s": perf["transfer"][LARGE_TENSOR_HANDLING.name][Key.MIB_PER_S],
                       "http_mib_per_s": perf["transfer"][HTTP_TENSOR_TRANSFER.name][Key.MIB_PER_S]},
        "efficiency": network["efficiency"][LARGE_TENSOR_HANDLING.name]["efficiency"],
        "server_side": side_analysis(server_tests, [str(f.path) for f in section.server_side]),
        "client_side": side_analysis(client_tests, [str(f.path) for f in section.client]),
        "performance": perf,
        "claims": performance_claims(perf, on_gpu),
        "network": network,
    }
