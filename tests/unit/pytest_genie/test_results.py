"""The record model, JSON coercion and session folder (``results.py``), mostly without a
pytest run around them: files made with the user's umask, each kind's file there before
any test has run, and the original scripts' server_info / client_info in test_info.
"""

from __future__ import annotations

import json
import os
import socket
import stat
from collections.abc import Callable, Iterator
from datetime import datetime
from decimal import Decimal
from fractions import Fraction
from pathlib import Path

import pytest

from pytest_genie.host import ip_addresses
from pytest_genie.results import (
    ResultsSession,
    TestRecord,
    environment_info,
    json_safe,
    write_text_atomic,
)

pytestmark = pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")

#: The readers conftest.py provides as fixtures.
Folders = Callable[[Path], list[Path]]


STARTED = 1736433000.0  # 2025-01-09T14:30:00Z


class Odd:
    def __str__(self) -> str:
        return "odd!"


def test_json_safe_keeps_numbers_and_stringifies_the_rest() -> None:
    np = pytest.importorskip("numpy")
    value = {1: np.float32(0.5), "i": np.int64(7), "nan": float("nan"), "inf": -float("inf"),
             "t": (1, [2, {3}]), "s": {"b", "a"}, "o": Odd(), "p": Path("/x"), "b": True,
             "f": Fraction(1, 4), "d": Decimal("2.5")}
    safe = json_safe(value)
    assert safe == {"1": 0.5, "i": 7, "nan": None, "inf": None, "t": [1, [2, [3]]], "s": ["a", "b"],
                    "o": "odd!", "p": "/x", "b": True, "f": 0.25, "d": "2.5"}
    assert type(safe["i"]) is int and type(safe["1"]) is float
    json.dumps(safe, allow_nan=False)


def test_json_safe_returns_exact_builtin_types() -> None:
    """xdist's execnet serializes only exact builtins: torch.__version__ is a str subclass."""

    class Version(str):
        pass

    class Count(int):
        pass

    safe = json_safe({Version("k"): [Version("2.13.0"), Count(3)]})
    assert [type(k) for k in safe] == [str]
    assert [type(v) for v in safe["k"]] == [str, int]


def test_json_safe_survives_a_cycle() -> None:
    loop: list[object] = []
    loop.append(loop)
    json.dumps(json_safe(loop), allow_nan=False)


def test_record_travels_as_plain_json(make_record: Callable[..., TestRecord]) -> None:
    record = make_record(server_url="http://127.0.0.1:8888", kinds=["server", "client"])
    wire = json.loads(json.dumps(record.to_wire()))
    assert TestRecord.from_wire(wire) == record
    assert set(record.entry()) == {"name", "status", "details", "timing_ms", "timestamp"}


def test_session_folder_and_files(tmp_path: Path, make_record: Callable[..., TestRecord]) -> None:
    session = ResultsSession(results_dir=tmp_path / "deep" / "reports", started=STARTED)
    assert session.folder is None and not (tmp_path / "deep").exists()  # lazy
    session.add(make_record())
    folder = tmp_path / "deep" / "reports" / "genie_test_results_20250109_143000"
    assert session.folder == folder
    assert sorted(p.name for p in folder.iterdir()) == ["server_test_results_20250109_143000.json"]
    session.add(make_record("server_operations", server_url="http://127.0.0.1:1234"))
    doc = json.loads((folder / "server_test_results_20250109_143000.json").read_text(encoding="utf-8"))
    assert [t["name"] for t in doc["tests"]] == ["gpu_detection", "server_operations"]
    assert doc["test_info"]["timestamp"] == "2025-01-09T14:30:00+00:00"
    assert doc["test_info"]["server_url"] == "http://127.0.0.1:1234"
    assert not [p for p in os.listdir(folder) if p.endswith(".tmp")]

    same_second = ResultsSession(results_dir=tmp_path / "deep" / "reports", started=STARTED)
    same_second.add(make_record())
    assert same_second.folder == folder.with_name(folder.name + "_2")


def test_test_info_says_where_the_figures_were_measured(
        tmp_path: Path, make_record: Callable[..., TestRecord]) -> None:
    session = ResultsSession(results_dir=tmp_path, started=STARTED)
    session.add(make_record())  # a server-side check without a server URL yet
    info = json.loads(session.files["server"].read_text())["test_info"]
    assert info["measured"]["path"] is None and info["measured"]["host"] == info["hostname"]
    session.add(make_record("server_operations", server_url="http://127.0.0.1:1234"))
    info = json.loads(session.files["server"].read_text())["test_info"]
    assert info["measured"]["server_url"] == "http://127.0.0.1:1234"
    assert info["measured"]["path"] == "loopback" and info["measured"]["same_host"] is True


def test_a_fleet_writes_one_file_per_kind_and_server(
        tmp_path: Path, make_record: Callable[..., TestRecord]) -> None:
    """Each file holds the figures of one host against one server, in the guide's schema; a
    record that talked to no server goes to the unsuffixed file of its kind."""
    session = ResultsSession(results_dir=tmp_path, started=STARTED, fleet=True)
    a, b = "http://127.0.0.2:8888", "http://127.0.0.3:9000"
    session.start([("client", a), ("client", b), ("server", None)])
    session.add(make_record("network_connectivity", kinds=["client"], server_url=b))
    session.add(make_record("network_connectivity", kinds=["client"], server_url=a, status="FAIL"))
    session.add(make_record("environment_setup", kinds=["server"], server_url=None))
    folder = session.folder
    assert folder is not None
    stamp = "20250109_143000"
    assert sorted(p.name for p in folder.iterdir()) == [
        f"client_test_results_{stamp}_127.0.0.2_8888.json",
        f"client_test_results_{stamp}_127.0.0.3_9000.json", f"server_test_results_{stamp}.json"]
    for url, status in ((a, "FAIL"), (b, "PASS")):
        path = session.path_of("client", url)
        assert path is not None
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert set(doc) == {"test_info", "tests"}
        assert doc["test_info"]["server_url"] == url and doc["test_info"]["measured"]["server_url"] == url
        assert doc["test_info"]["client_info"]["server_ip"] == url.split("//")[1].split(":")[0]
        assert [(t["name"], t["status"]) for t in doc["tests"]] == [("network_connectivity", status)]
    host_level = json.loads((folder / f"server_test_results_{stamp}.json").read_text(encoding="utf-8"))
    assert host_level["test_info"]["server_url"] is None
    assert [t["name"] for t in host_level["tests"]] == ["environment_setup"]
    assert session.slots() == [("server", None), ("client", a), ("client", b)]


def test_result_file_is_strict_json_whatever_a_record_holds(
        tmp_path: Path, make_record: Callable[..., TestRecord]) -> None:
    """A record off the wire (another plugin's report attribute) may hold NaN/inf: the file
    still parses with a reader that refuses them, and the figures read null."""
    session = ResultsSession(results_dir=tmp_path, started=STARTED)
    wire = make_record(details={"gpu_time_ms": float("nan"), "nested": [float("inf"), 1.5]}).to_wire()
    session.add(TestRecord.from_wire({**wire, "timing_ms": float("nan")}))

    def refuse(token: str) -> object:
        raise ValueError(f"{token} is not JSON")

    text = session.files["server"].read_text(encoding="utf-8")
    doc = json.loads(text, parse_constant=refuse)
    assert doc["tests"][0]["details"] == {"gpu_time_ms": None, "nested": [None, 1.5]}
    assert doc["tests"][0]["timing_ms"] is None


def test_environment_info_describes_this_machine() -> None:
    info = environment_info()
    import torch

    assert info["torch_version"] == torch.__version__
    assert info["gpu"]["cuda_available"] == torch.cuda.is_available()
    assert info["gpu"]["gpu_count"] == (torch.cuda.device_count() if torch.cuda.is_available() else 0)


def test_sessions_never_overwrite_each_other(pytester: pytest.Pytester, session_folders: Folders) -> None:
    pytester.makepyfile("""
        import pytest
        @pytest.mark.client
        def test_one(genie_record):
            genie_record["run"] = 1
    """)
    results = pytester.path / "results"
    pytester.runpytest(f"--genie-results-dir={results}").assert_outcomes(passed=1)
    (first,) = session_folders(results)
    before = {p.name: p.read_bytes() for p in first.iterdir()}
    # The next session starts in the same second: its folder name is taken already.
    stamp = first.name.removeprefix("genie_test_results_")
    (results / f"genie_test_results_{stamp}_2").mkdir()
    started = datetime.strptime(stamp + "+0000", "%Y%m%d_%H%M%S%z").timestamp()
    again = ResultsSession(results_dir=results, started=started)
    again.add(TestRecord(name="one", status="PASS", details={}, timing_ms=1.0,
                         timestamp="2025-01-09T14:30:00+00:00", kinds=["client"]))
    assert again.folder == results / f"genie_test_results_{stamp}_3"
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before

    pytester.runpytest(f"--genie-results-dir={results}").assert_outcomes(passed=1)
    assert len(session_folders(results)) == 4
    assert {p.name: p.read_bytes() for p in first.iterdir()} == before


@pytest.fixture
def umask_027() -> Iterator[None]:
    """The process umask set to 027 for the test (a CI runner's may be anything)."""
    old = os.umask(0o027)
    try:
        yield
    finally:
        os.umask(old)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_and_folders_get_the_users_umask(tmp_path: Path, make_record: Callable[..., TestRecord],
                                               umask_027: None) -> None:
    session = ResultsSession(results_dir=tmp_path / "reports", started=STARTED)
    session.add(make_record())
    assert session.folder is not None
    assert _mode(session.folder) == 0o750 and _mode(session.files["server"]) == 0o640
    write_text_atomic(tmp_path / "report.md", "# report\n")
    assert _mode(tmp_path / "report.md") == 0o640
    os.umask(0o022)
    write_text_atomic(tmp_path / "report.md", "# again\n")  # replaced, with the new umask
    assert _mode(tmp_path / "report.md") == 0o644
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]


def test_start_writes_each_kinds_file_before_any_test(tmp_path: Path,
                                                      make_record: Callable[..., TestRecord]) -> None:
    session = ResultsSession(results_dir=tmp_path, started=STARTED,
                             server_url="http://127.0.0.1:8888")
    session.start(["server", "client"])
    docs = {kind: json.loads(path.read_text(encoding="utf-8")) for kind, path in session.files.items()}
    assert {kind: doc["tests"] for kind, doc in docs.items()} == {"server": [], "client": []}
    session.add(make_record())
    assert len(json.loads(session.files["server"].read_text(encoding="utf-8"))["tests"]) == 1


def test_test_info_names_the_nodes_as_the_original_scripts_did(
        tmp_path: Path, make_record: Callable[..., TestRecord]) -> None:
    session = ResultsSession(results_dir=tmp_path, started=STARTED)
    session.add(make_record(kinds=["server"]))
    session.add(make_record("server_connectivity", kinds=["client"], server_url="http://10.0.0.7:8888"))
    server = json.loads(session.files["server"].read_text(encoding="utf-8"))["test_info"]
    client = json.loads(session.files["client"].read_text(encoding="utf-8"))["test_info"]
    here = {"hostname": socket.gethostname(), "ip_addresses": ip_addresses()}
    assert server["server_info"] == here and "client_info" not in server
    assert client["client_info"] == {**here, "server_ip": "10.0.0.7"}
    assert all(isinstance(a, str) and not a.startswith("127.") for a in here["ip_addresses"])
