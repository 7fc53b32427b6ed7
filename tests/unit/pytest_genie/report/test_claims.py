"""The report's claims against its own tables: every sentence with a number in the written
Markdown's performance analysis and recommendations is parsed and held to the sweep table the
same Markdown shows (and to the result files it was built from).

Nothing here asks the report code what it meant: the sweep table is parsed from the Markdown, the
verdicts and the break-even size are recomputed from the parsed cells, and each sentence must
match a known pattern whose numbers and direction are then checked.  A sentence with a number
that no pattern recognises fails the test, so a new claim cannot slip in unchecked.

Result sets: remote slower everywhere (a loopback CPU server), remote faster from a size on (a GPU
server), a noisy run (every range overlaps), remote faster at the smallest size only and then
slower (the old report advised "offload from n=128" on such a run), a run during which the client
was disturbed, and an older result file that recorded numbers without spreads.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_genie.report import JSON_NAME, MARKDOWN_NAME, write_report

if TYPE_CHECKING:
    from conftest import Samples  # the ``samples`` fixture; conftest is not imported at run time

MB = 1 << 20
MAIN_N = 1000
NUMBER = r"(-?[\d.]+)"


def _spread(median: float, rel: float, count: int = 15, stable: bool = True) -> dict[str, Any]:
    return {"median": median, "q1": round(median * (1 - rel), 4), "q3": round(median * (1 + rel), 4),
            "min": round(median * (1 - 2 * rel), 4), "max": round(median * (1 + 2 * rel), 4),
            "count": count, "stable": stable, "windows": 3}


def _row(n: int, local: float, remote: float, compute: float, rel: float = 0.03, spread: bool = True
         ) -> dict[str, Any]:
    row: dict[str, Any] = {"n": n, "bytes": 2 * n * n * 4, "local_cpu_ms": local, "remote_ms": remote,
                           "server_compute_ms": compute}
    if spread:
        row["spread"] = {"local_cpu_ms": _spread(local, rel), "remote_ms": _spread(remote, rel),
                         "server_compute_ms": _spread(compute, rel)}
    return row


SIZES = (128, 256, 512, MAIN_N, 1536)
SWEEPS: dict[str, list[dict[str, Any]]] = {
    # a loopback CPU server: the same CPU plus the transfer
    "remote_slower_everywhere": [_row(n, (n / 100) ** 3 * 0.5, (n / 100) ** 3 * 0.55 + 1 + n * n * 4e-6,
                                      (n / 100) ** 3 * 0.5) for n in SIZES],
    # a GPU server: compute is cheap, the transfer costs, local CPU grows as n^3
    "remote_faster_from_512": [_row(128, 0.4, 2.0, 0.05), _row(256, 2.5, 4.0, 0.1), _row(512, 20.0, 9.0, 0.4),
                               _row(MAIN_N, 150.0, 30.0, 2.0), _row(1536, 520.0, 60.0, 6.0)],
    # every interquartile range overlaps the other side's
    "noisy": [_row(n, 10.0 + n / 100, 11.0 + n / 100, 5.0, rel=0.4) for n in SIZES],
    # faster at the smallest size only, slower from there on: no break-even
    "win_then_lose": [_row(128, 3.0, 1.5, 0.2), _row(256, 4.0, 6.0, 0.5), _row(512, 8.0, 14.0, 2.0),
                      _row(MAIN_N, 30.0, 45.0, 12.0), _row(1536, 90.0, 120.0, 40.0)],
    "numbers_only": [_row(n, (n / 100) ** 3 * 0.5, (n / 100) ** 3 * 0.5 + 3, 1.0, spread=False)
                     for n in SIZES],
}


def _client_tests(samples: Samples, sweep: list[dict[str, Any]], disturbed: bool) -> list[dict[str, Any]]:
    tests = samples.gpu_client_tests(sweep=sweep)
    main = next(r for r in sweep if r["n"] == MAIN_N)
    for t in tests:
        d = t["details"]
        if t["name"] == "performance_comparison":
            d.update({k: main[k] for k in ("local_cpu_ms", "remote_ms", "server_compute_ms")})
            if "spread" in main:
                d["spread"] = main["spread"]
            if disturbed:
                d["disturbed"] = {"retries": 2, "reconnects": 1}
        if t["name"] == "http_tensor_transfer":
            d["spread"] = {"mib_per_s": _spread(37.2, 0.05), "round_trip_ms": _spread(107.5, 0.05)}
        if t["name"].startswith("large_tensor_handling") and disturbed:
            d["disturbed"] = {"timeouts": 1}
        if t["name"] == "remote_lazytensor_execution":
            d.update(first_call_ms=697.0, round_trip_ms=4.8, spread={"round_trip_ms": _spread(4.8, 0.1)})
    tests.append(samples.decode_colocation_record())
    tests.append(samples.record("concurrency_sweep", window_s=1.5, same_process=True, levels=[
        {"payload": "small", "bytes": 16384, "concurrency": c, "requests": 900 * c, "errors": 0,
         "throughput_rps": rps, "p50_ms": p50, "p95_ms": p50 * 2,
         "spread": {"throughput_rps": _spread(rps, 0.05)}}
        for c, rps, p50 in ((1, 600.0, 1.6), (2, 900.0, 2.2), (4, 1000.0, 4.0), (8, 980.0, 8.1))]))
    return tests


# ---- reading the written report back -----------------------------------------------------


def _ms(text: str) -> float:
    value = re.fullmatch(r"(-?[\d.]+)ms", text.strip())
    assert value, f"not a ms figure: {text!r}"
    return float(value.group(1))


def _figure_cell(cell: str) -> tuple[float, float, float]:
    """``4.8ms [4.6ms-5.1ms]`` (markers ~ and ⚠ allowed) -> (median, q1, q3); no spread: all three equal."""
    cell = cell.replace("~", "").replace("⚠", "").strip()
    m = re.fullmatch(r"(\S+ms)(?: \[(\S+ms)-(\S+ms)\])?", cell)
    assert m, f"unreadable figure cell {cell!r}"
    median = _ms(m.group(1))
    return (median, _ms(m.group(2)), _ms(m.group(3))) if m.group(2) else (median, median, median)


def _section(md: str, heading: str) -> str:
    return md.split(f"\n{heading}\n", 1)[1].split("\n## ", 1)[0]


def _sweep(md: str) -> dict[int, dict[str, Any]]:
    lines = md.split("#### Sweep:", 1)[1].splitlines()
    rows = {}
    for line in lines[4:]:
        if not line.startswith("| "):
            break
        n, _size, local, remote, compute, verdict = (c.strip() for c in line.strip("|").split("|"))
        rows[int(n)] = {"local": _figure_cell(local), "remote": _figure_cell(remote),
                        "compute": _figure_cell(compute), "verdict": verdict}
    return rows


def _verdict(local: tuple[float, float, float], remote: tuple[float, float, float]) -> str:
    if remote[2] < local[1]:
        return "remote faster"
    if local[2] < remote[1]:
        return "local faster"
    return "no clear difference"


def _break_even(rows: dict[int, dict[str, Any]]) -> int | None:
    start = None
    for n in sorted(rows, reverse=True):
        if rows[n]["verdict"] != "remote faster":
            break
        start = n
    return start


def _close(stated: float, actual: float, what: str) -> None:
    """Equal up to the rounding of the printed figures (3 significant digits, or 0.1 ms)."""
    assert stated == pytest.approx(actual, rel=0.02, abs=0.15), f"{what}: says {stated}, tables give {actual}"


class Claims:
    """Verifiers: each returns True when it recognises a sentence (asserting its numbers)."""

    def __init__(self, rows: dict[int, dict[str, Any]], report: dict[str, Any],
                 inputs: dict[str, Any]) -> None:
        self.rows = rows
        self.report = report
        self.inputs = inputs  # the client records the report was built from, by name
        self.even = _break_even(rows)
        self.largest = max(rows)
        self.main = rows[MAIN_N]

    def figure_of_sweep(self, s: str) -> bool:
        m = re.match(rf"(Local CPU|Remote round trip|Server compute) at n=(\d+)(?: \([^)]*\))?: {NUMBER}ms "
                     rf"\((?:IQR {NUMBER}ms-{NUMBER}ms, n=\d+(?:, not stable)?|no spread recorded)\)\.", s)
        if not m:
            return False
        side = {"Local CPU": "local", "Remote round trip": "remote", "Server compute": "compute"}[m.group(1)]
        median, q1, q3 = self.rows[int(m.group(2))][side]
        _close(float(m.group(3)), median, s)
        if m.group(4):
            _close(float(m.group(4)), q1, s)
            _close(float(m.group(5)), q3, s)
        return True

    def overhead(self, s: str) -> bool:
        m = re.match(rf"Network and serialisation overhead at n=(\d+): {NUMBER}ms, {NUMBER}x the server "
                     r"compute: (.*)\.$", s)
        if not m:
            return "dominates" in s and not s.startswith("Network and serialisation cost") and self._fail(s)
        row = self.rows[int(m.group(1))]
        overhead, ratio = float(m.group(2)), float(m.group(3))
        _close(overhead, row["remote"][0] - row["compute"][0], s)
        _close(ratio, overhead / row["compute"][0], s)
        judged = m.group(4)
        if ratio > 2:
            assert judged == "above 2x, so the wire, not the device, dominates", s
        elif ratio < 0.5:
            assert judged == "below 0.5x, so the device, not the wire, dominates", s
        else:
            assert judged == "between 0.5x and 2x, so neither dominates", s
        return True

    def _fail(self, s: str) -> bool:
        raise AssertionError(f"'dominates' without its stated ratio: {s}")

    def remote_vs_local(self, s: str) -> bool:
        m = re.match(r"Remote vs local CPU at n=(\d+): (.*)$", s)
        if not m:
            return False
        row = self.rows[int(m.group(1))]
        local, remote = row["local"][0], row["remote"][0]
        if row["verdict"] == "no clear difference":
            assert m.group(2).startswith("no clear difference: the interquartile ranges overlap"), s
            return True
        d = re.match(rf"remote is {NUMBER}ms \({NUMBER}%\) (slower|faster); the interquartile ranges do not "
                     r"overlap\.", m.group(2))
        assert d, s
        assert d.group(3) == ("slower" if row["verdict"] == "local faster" else "faster"), s
        _close(float(d.group(1)), abs(remote - local), s)
        assert float(d.group(2)) == pytest.approx(100 * abs(remote - local) / local, rel=0.05, abs=1), s
        return True

    def break_even(self, s: str) -> bool:
        if not s.startswith("Break-even:"):
            return False
        found = re.match(r"Break-even: n=(\d+) \([^)]*\): from this size up to the largest measured "
                         r"\(n=(\d+), [^)]*\) remote was clearly faster at every measured size", s)
        if found:
            assert self.even == int(found.group(1)), f"{s} (table: {self.even})"
            assert int(found.group(2)) == self.largest, s
            return True
        none = re.match(r"Break-even: none in the measured range \(up to n=(\d+), [^)]*\): (.*)$", s)
        assert none, s
        assert self.even is None, f"{s} (table: break-even at n={self.even})"
        assert int(none.group(1)) == self.largest, s
        everywhere = all(r["verdict"] == "local faster" for r in self.rows.values())
        assert none.group(2).startswith("remote was clearly slower at every measured size" if everywhere
                                        else "remote was not clearly faster from any measured size onward"), s
        return True

    def guide_lines(self, s: str) -> bool:
        m = re.match(r"\*\*(.+?)\*\*: (.*)$", s)
        if not m:
            return False
        label, rest = m.groups()
        local, remote, compute = self.main["local"][0], self.main["remote"][0], self.main["compute"][0]
        perf = self.report["performance"]
        simple = {"Client Remote Time": remote, "Client CPU Baseline": local,
                  "TCP connect latency (median)": perf["connect_ms_median"],
                  "/health response": perf["health_response_ms"], "Server startup": perf["server_startup_ms"],
                  "Server op round trip (median)": perf["server_op_median_round_trip_ms"],
                  "Multi-op chain round trip": perf["chain_round_trip_ms"]}
        if label.startswith(("Server GPU Time", "Server CPU Time", "Server Device Time")):
            _close(_ms(rest), compute, s)
        elif label.startswith("Remote ") and label.split(" (")[0].endswith("Execution"):
            _close(_ms(rest), remote, s)
        elif label in simple:
            _close(_ms(rest), simple[label], s)
        elif label == "Network Overhead":
            _close(_ms(rest.split(" (")[0]), remote - compute, s)
        elif label == "Total Overhead":
            _close(_ms(rest.split(" (")[0]), remote - local, s)
            verdict = self.main["verdict"]
            if verdict == "no clear difference":
                assert "(no clear difference from local CPU" in rest, s
            else:
                assert f"{'slower' if verdict == 'local faster' else 'faster'} than local CPU" in rest, s
        else:
            return False
        return True

    def transfer(self, s: str) -> bool:
        m = re.match(rf"(HTTP tensor transfer|Large tensor transfer): {NUMBER} MiB/s .*round trip {NUMBER}ms",
                     s)
        if not m:
            return False
        name = "http_tensor_transfer" if m.group(1).startswith("HTTP") else "large_tensor_handling[256]"
        details = self.inputs[name]["details"]
        _close(float(m.group(2)), details["mib_per_s"], s)
        _close(float(m.group(3)), details["round_trip_ms"], s)
        assert ("⚠ Disturbed" in s) == bool(details.get("disturbed")), s
        return True

    def lazy(self, s: str) -> bool:
        m = re.match(rf"LazyTensor: first call {NUMBER}ms \(set-up included\); steady state {NUMBER}ms", s)
        if not m:
            return False
        details = self.inputs["remote_lazytensor_execution"]["details"]
        _close(float(m.group(1)), details["first_call_ms"], s)
        _close(float(m.group(2)), details["round_trip_ms"], s)
        return True

    def concurrency(self, s: str) -> bool:
        m = re.match(rf"Concurrency \((\w+), [^)]*\): {NUMBER} req/s at (\d+) clients? .*; highest {NUMBER} "
                     r"req/s at (\d+) clients", s)
        if not m:
            return s.startswith("concurrency_sweep ran its clients in the server's own process")
        levels = {r["concurrency"]: r for r in self.inputs["concurrency_sweep"]["details"]["levels"]
                  if r["payload"] == m.group(1)}
        _close(float(m.group(2)), levels[int(m.group(3))]["throughput_rps"], s)
        peak = max(levels.values(), key=lambda r: r["throughput_rps"])
        assert int(m.group(5)) == peak["concurrency"], s
        _close(float(m.group(4)), peak["throughput_rps"], s)
        return True

    def decode(self, s: str) -> bool:
        m = re.match(rf"\*\*Co-location saves\*\*: {NUMBER}% of the bytes \({NUMBER}× fewer\); shipping the "
                     rf"cache makes the median step {NUMBER}× as long", s)
        if not m:
            return False
        d = self.inputs["llm_decode_colocation"]["details"]
        kept, shipped = d["kv_kept"], d["kv_shipped"]
        per_kept = kept["bytes_sent"] + kept["bytes_received"]
        per_shipped = shipped["bytes_sent"] + shipped["bytes_received"]
        _close(float(m.group(1)), 100 * (per_shipped - per_kept) / per_shipped, s)
        _close(float(m.group(2)), per_shipped / per_kept, s)
        _close(float(m.group(3)), shipped["step_ms_median"] / kept["step_ms_median"], s)
        return True

    def advice(self, s: str) -> bool:
        offload = re.match(r"Offload work on tensors from n=(\d+) \([^)]*\) upward: .* up to n=(\d+);", s)
        if offload:
            assert self.even == int(offload.group(1)) and int(offload.group(2)) == self.largest, s
            return True
        local = re.match(r"Keep work of the measured sizes local: .*\(up to n=(\d+), [^)]*\)\.", s)
        if local:
            assert self.even is None and int(local.group(1)) == self.largest, s
            return True
        batch = re.match(rf"Network and serialisation cost {NUMBER}x the server compute \(above 2x\) "
                         r"at n=(\d+)", s)
        if batch:
            row = self.rows[int(batch.group(2))]
            ratio = (row["remote"][0] - row["compute"][0]) / row["compute"][0]
            assert ratio > 2, s
            _close(float(batch.group(1)), ratio, s)
            return True
        large = re.match(rf"Large tensors moved at {NUMBER} MiB/s", s)
        if large:
            details = self.inputs["large_tensor_handling[256]"]["details"]
            _close(float(large.group(1)), details["mib_per_s"], s)
            assert ("⚠ Disturbed" in s) == bool(details.get("disturbed")), s
            return True
        return s.startswith("Fix `")  # a failing test's own message, quoted


def _sentences(md: str) -> list[str]:
    perf = _section(md, "## Performance Analysis")
    recs = _section(md, "## Recommendations")
    bullets = [line[2:] for line in perf.splitlines() if line.startswith("- ")]
    numbered = [re.sub(r"^\d+\. ", "", line) for line in recs.splitlines() if re.match(r"\d+\. ", line)]
    return bullets + numbered


Written = tuple[str, dict[str, Any], dict[str, Any]]  # the Markdown, the JSON, the input records


@pytest.fixture
def written(tmp_path: Path, samples: Samples) -> Callable[[str, bool], Written]:
    def write(name: str, disturbed: bool = False) -> Written:
        tests = _client_tests(samples, SWEEPS[name], disturbed)
        folder = samples.session(tmp_path / name, "20260109_143000", samples.gpu_server_tests(), tests)
        write_report(folder)
        md = (folder / MARKDOWN_NAME).read_text(encoding="utf-8")
        report = json.loads((folder / JSON_NAME).read_text(encoding="utf-8"))
        return md, report, {t["name"]: t for t in tests}

    return write


EXPECTED_BREAK_EVEN = {"remote_slower_everywhere": None, "remote_faster_from_512": 512, "noisy": None,
                       "win_then_lose": None, "numbers_only": None}


@pytest.mark.parametrize(("name", "disturbed"), [*((name, False) for name in SWEEPS),
                                                 ("remote_faster_from_512", True)])
def test_every_claim_matches_the_reports_own_tables(
        written: Callable[[str, bool], Written], name: str, disturbed: bool) -> None:
    md, report, inputs = written(name, disturbed)
    rows = _sweep(md)
    assert sorted(rows) == list(SIZES)
    for n, row in rows.items():  # the table's verdict column agrees with its own cells
        assert row["verdict"] == _verdict(row["local"], row["remote"]), (n, row)
    claims = Claims(rows, report, inputs)
    verifiers = [claims.figure_of_sweep, claims.overhead, claims.remote_vs_local, claims.break_even,
                 claims.guide_lines, claims.transfer, claims.lazy, claims.concurrency, claims.decode,
                 claims.advice]
    unchecked = []
    sentences = _sentences(md)
    for sentence in sentences:
        if not re.search(r"\d", sentence.replace("n=", "")):
            continue
        if not any(verify(sentence) for verify in verifiers):
            unchecked.append(sentence)
    assert not unchecked, "claims no verifier recognises:\n" + "\n".join(unchecked)
    assert sum(s.startswith("Break-even:") for s in sentences) == 1  # one verdict, never two
    for claim in report["claims"]:  # the JSON holds the very sentences the Markdown shows
        assert claim["text"] in sentences, claim
    if disturbed:
        assert "⚠" in md.split("#### Sweep:", 1)[1].split("\n\n", 2)[1]  # beside the figures

    # and the verdict each result set must get
    assert report["performance"]["break_even"]["break_even_n"] == EXPECTED_BREAK_EVEN[name]
    if name == "noisy":
        assert "no clear difference: the interquartile ranges overlap" in md
        assert "- **Total Overhead**: 1.0ms (no clear difference from local CPU" in md
    if name == "win_then_lose":  # the old report's "offload from n=128"
        assert "Offload" not in md and "n=128 (" not in _section(md, "## Recommendations")
    if name == "numbers_only":
        assert "no spread recorded" in md
