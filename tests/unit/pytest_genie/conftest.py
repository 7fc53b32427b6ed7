"""What the plugin's tests share: a clean ``GENIE_*`` environment, the inner test files
that several modules run, and readers for the result folders an inner run writes.

Test modules run with ``--import-mode=importlib`` and cannot import each other, so what
two of them need is a fixture here; the readers are factory fixtures (plain functions).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.options import OPTIONS
from pytest_genie.results import TestRecord

STATUSES = {"PASS", "FAIL", "SKIP", "ERROR"}
TEST_INFO_KEYS = {"hostname": str, "timestamp": str, "test_type": str, "python_version": str,
                  "platform": str, "gpu": dict}


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """A GENIE_* variable in the developer's shell must not leak into the inner runs."""
    for opt in OPTIONS:
        monkeypatch.delenv(opt.env, raising=False)


def _session_folders(results: Path) -> list[Path]:
    return sorted(p for p in results.glob("genie_test_results_*") if p.is_dir())


def _load(folder: Path, kind: str) -> dict[str, Any]:
    (path,) = folder.glob(f"{kind}_test_results_*.json")
    return json.loads(path.read_text(encoding="utf-8"))


def _check_schema(doc: Any, test_type: str) -> None:
    """The guide's schema, as the contract fixes it (fails with the offending path)."""
    assert isinstance(doc, dict) and set(doc) == {"test_info", "tests"}
    info = doc["test_info"]
    for key, kind in TEST_INFO_KEYS.items():
        assert isinstance(info.get(key), kind), f"test_info.{key}: {info.get(key)!r}"
    assert info["test_type"] == test_type
    assert datetime.fromisoformat(info["timestamp"]).utcoffset() is not None
    assert info["server_url"] is None or info["server_url"].startswith("http")
    for key in ("torch_version", "genie_version"):
        assert info[key] is None or isinstance(info[key], str)
    gpu = info["gpu"]
    assert isinstance(gpu["cuda_available"], bool) and isinstance(gpu["gpu_count"], int)
    assert gpu["gpu_name"] is None or isinstance(gpu["gpu_name"], str)
    assert isinstance(doc["tests"], list) and doc["tests"]
    for test in doc["tests"]:
        assert set(test) == {"name", "status", "details", "timing_ms", "timestamp"}, test
        assert isinstance(test["name"], str) and not test["name"].startswith("test_")
        assert test["status"] in STATUSES
        assert isinstance(test["details"], dict)
        assert isinstance(test["timing_ms"], (int, float)) and not isinstance(test["timing_ms"], bool)
        assert math.isfinite(test["timing_ms"]) and test["timing_ms"] >= 0
        assert datetime.fromisoformat(test["timestamp"]).utcoffset() is not None


@pytest.fixture
def session_folders() -> Callable[[Path], list[Path]]:
    """The ``genie_test_results_*`` session folders under a results dir, oldest first."""
    return _session_folders


@pytest.fixture
def load_results() -> Callable[[Path, str], dict[str, Any]]:
    """The parsed ``<kind>_test_results_*.json`` of a session folder (exactly one must exist)."""
    return _load


@pytest.fixture
def check_schema() -> Callable[[Any, str], None]:
    """Asserts that a parsed result file follows the guide's schema for its ``test_type``."""
    return _check_schema


@pytest.fixture
def make_record() -> Callable[..., TestRecord]:
    """A passing ``gpu_detection`` record like the guide's example; keywords replace its fields."""

    def make(name: str = "gpu_detection", **kw: object) -> TestRecord:
        fields: dict[str, object] = {"status": "PASS", "details": {"gpu_time_ms": 19.2}, "timing_ms": 150.0,
                                     "timestamp": "2025-01-09T14:30:01+00:00", "kinds": ["server"]}
        fields.update(kw)
        return TestRecord(name=name, **fields)  # type: ignore[arg-type]

    return make


MIXED = """
import pytest

@pytest.mark.server
def test_alpha(genie_record):
    genie_record["value"] = 1.5
    genie_record["dtype"] = object()          # not JSON: recorded as its str
    genie_record["nan"] = float("nan")        # not JSON: recorded as null

@pytest.mark.server
@pytest.mark.skipif(True, reason="no GPU on this node")
def test_marked_skip():
    pass

@pytest.mark.client
def test_fails(genie_record):
    genie_record["measured"] = 3
    assert 1 + 1 == 3, "arithmetic is broken"

@pytest.mark.client
def test_skips_inside():
    pytest.skip("server has no CUDA")

@pytest.fixture
def broken():
    raise RuntimeError("fixture exploded")

@pytest.fixture
def broken_teardown():
    yield
    raise RuntimeError("teardown exploded")

@pytest.mark.client
def test_setup_error(broken):
    pass

@pytest.mark.client
def test_teardown_error(broken_teardown):
    pass

@pytest.mark.client
@pytest.mark.parametrize("n", [10, 1000])
def test_sweep(n, genie_record):
    genie_record["n"] = n

def test_unmarked():
    pass
"""


@pytest.fixture
def mixed_tests(pytester: pytest.Pytester) -> None:
    """Writes ``test_mixed.py``: every outcome a recorded test can have, and one unmarked test."""
    pytester.makepyfile(test_mixed=MIXED)


@pytest.fixture
def mixed_run(pytester: pytest.Pytester, mixed_tests: None) -> tuple[pytest.RunResult, Path]:
    """``mixed_tests`` run once, and the results dir it wrote to."""
    results = pytester.path / "results"
    result = pytester.runpytest("-p", "no:cacheprovider", f"--genie-results-dir={results}")
    return result, results


CLIENT_TESTS = """
import os, pytest, torch

@pytest.mark.client
@pytest.mark.parametrize("i", range(6))
def test_round_trip(i, genie_client, genie_server_url, genie_options, genie_record):
    x = torch.arange(12, dtype=torch.float32).reshape(3, 4) - i
    assert torch.equal(genie_client.execute("relu", x), x.relu())
    genie_record.update(i=i, url=genie_server_url, large_mb=genie_options.large_mb,
                        worker=os.environ.get("PYTEST_XDIST_WORKER", "main"),
                        torch=torch.__version__)  # a str subclass: must still cross to xdist's controller
"""


@pytest.fixture
def round_trip_tests(pytester: pytest.Pytester) -> None:
    """Writes six client tests that use the plugin's fixtures against a real server."""
    pytester.makepyfile(CLIENT_TESTS)
