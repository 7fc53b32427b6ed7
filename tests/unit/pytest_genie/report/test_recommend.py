"""The recommendations (``recommend.py``): advice that follows from the measured numbers."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time


def test_recommendations_follow_the_numbers(tmp_path: Path, samples: Samples) -> None:
    slow = samples.report_of(
        samples.session(
            tmp_path / "slow", "20260109_143000", samples.gpu_server_tests(), samples.gpu_client_tests()
        )
    )
    fast = samples.report_of(
        samples.session(
            tmp_path / "fast",
            "20260109_143000",
            samples.cpu_server_tests(),
            samples.cpu_client_tests(),
            False,
        )
    )
    slow_text = " ".join(r["text"] for r in slow["recommendations"])
    fast_text = " ".join(r["text"] for r in fast["recommendations"])

    assert "Keep work of the measured sizes local" in slow_text and "(up to n=4096, 64.0 MiB)" in slow_text
    assert "offload" not in slow_text.lower().replace("before offloading it", "")  # no advice past the sweep
    assert "4.48x the server compute (above 2x)" in slow_text
    assert "batch ops into one /graph request" in slow_text
    assert "no GPU" not in slow_text

    assert "from n=2048 (16.0 MiB) upward" in fast_text and "up to n=4096" in fast_text
    assert "batch ops" not in fast_text  # overhead 10 ms vs 20 ms compute: the device dominates
    assert "The server has no GPU (CUDA is not available on this server (device cpu))" in fast_text
    assert "run genie-server on a CUDA node" in fast_text


def test_failed_tests_are_named_with_their_message(tmp_path: Path, samples: Samples) -> None:
    client = samples.gpu_client_tests()
    client[5] = samples.record(
        "multi_operation_chain",
        status="FAIL",
        failure="AssertionError: requests_made 4 != 1",
        requests_made=4,
    )
    report = samples.report_of(
        samples.session(tmp_path, "20260109_143000", samples.gpu_server_tests(), client)
    )
    texts = [r["text"] for r in report["recommendations"]]
    assert "Fix `multi_operation_chain` (FAIL): AssertionError: requests_made 4 != 1" in texts
    assert any("took 4 requests" in t for t in texts)
