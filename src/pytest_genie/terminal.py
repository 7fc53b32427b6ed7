"""The "Genie" section of the terminal summary, shaped like the guide's expected output::

    Server-side tests [server_side] (server_test_results_20250109_143000.json): 4 pass, 1 fail
    ✅ gpu_detection (150.2 ms)
       Details: {"cuda_available": true, "gpu_count": 1, "gpu_name": "Tesla T4"}
    ❌ server_operations (85.0 ms)
       Details: {"ops_checked": 8} (+1 not shown: cases)
       Failure: AssertionError: relu: Tensor-likes are not close!
    Genie results: reports/genie_test_results_20250109_143000
    ❌ Some server tests failed: server_operations (FAIL)

In a fleet (several ``--genie-server``) there is one block per kind and server, titled with
the server (``Client-side tests [client_side] against gpu-a:8888 (...)``), and the closing
lines name the server of each check that did not pass.

The section ends with the guide's closing line of each kind, ``🎉 All server tests
passed!`` when every test passed (or was skipped).  A details line that would pass the
terminal width keeps whole fields only, never half a JSON value: the fields that do not
fit are named after it, and they are all in the result file.  Why a test did not pass
(its failure, error or skip reason) is a line of its own.

A terminal that cannot encode the symbols gets ``[PASS]``-style labels instead of
a ``UnicodeEncodeError`` at the very end of a run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest

from pytest_genie.checks import KINDS, Key
from pytest_genie.fleet import server_id
from pytest_genie.results import STATUS_SYMBOLS, TEST_TYPES, ResultsSession, TestRecord

__all__ = ["closing_line", "format_details", "format_record", "no_checks_hint", "write_summary"]

SYMBOLS = STATUS_SYMBOLS
ASCII = {"PASS": "[PASS]", "FAIL": "[FAIL]", "SKIP": "[SKIP]", "ERROR": "[ERROR]"}
TITLES = {"server": "Server-side tests", "client": "Client-side tests"}
DETAILS_PREFIX = "   Details: "
#: Details lines are kept within the terminal width, but never below this many characters:
#: on a narrow terminal a wrapped line beats a details line cut to nothing.
MIN_WIDTH = 200
#: Why a record did not pass: shown as a line of its own, under these labels.
REASONS = {Key.FAILURE: "Failure", Key.ERROR: "Error", Key.SKIP_REASON: "Skipped"}
#: The guide's closing words per kind, and their emoji.
CLOSING = {"server": "server tests", "client": "client tests"}


def _can_encode(text: str, encoding: str | None) -> bool:
    try:
        text.encode(encoding or "utf-8")
    except (UnicodeEncodeError, LookupError):
        return False
    return True


def format_details(details: dict[str, Any], room: int, *, unicode: bool = True) -> str:
    """``details`` as compact JSON within ``room`` characters, cut only between fields.

    Fields are kept in order while they fit; one that does not is left out (a later,
    shorter one may still fit) and named in a ``(+N not shown: ...)`` note.  So what is
    shown is always whole, valid JSON.
    """
    def dumps(value: Any) -> str:
        return json.dumps(value, separators=(", ", ": "), ensure_ascii=not unicode,
                          allow_nan=False, default=str)

    pieces = [(key, f"{dumps(key)}: {dumps(value)}") for key, value in details.items()]
    whole = "{" + ", ".join(piece for _, piece in pieces) + "}"
    if len(whole) <= room:
        return whole
    note_room = room // 3  # at most; then as much as the note of what is left out needs
    for _ in range(3):
        shown, dropped = _fit(pieces, room - note_room - 1)
        needed = len(_note(dropped))
        if needed >= note_room:
            break
        note_room = needed
    return "{" + ", ".join(shown) + "} " + _note(dropped, note_room)


def _fit(pieces: list[tuple[str, str]], room: int) -> tuple[list[str], list[str]]:
    """The fields that fit in ``room`` (in order, a long one skipped), and the keys left out."""
    shown: list[str] = []
    dropped: list[str] = []
    used = 2  # the braces
    for key, piece in pieces:
        cost = len(piece) + (2 if shown else 0)
        if used + cost <= room:
            shown.append(piece)
            used += cost
        else:
            dropped.append(key)
    return shown, dropped


def _note(dropped: list[str], room: int | None = None) -> str:
    text = f"(+{len(dropped)} not shown: {', '.join(dropped)})"
    if room is not None and len(text) > room:
        text = _clip(text[:-1], max(room - 1, 20)) + ")"
    return text


def _clip(text: str, room: int) -> str:
    """Plain text within ``room`` characters (never JSON: that is cut between fields)."""
    return text if len(text) <= room else text[: room - 3] + "..."


def format_record(record: TestRecord, *, width: int = 120, unicode: bool = True) -> list[str]:
    """The status line, the compact details within ``width`` (whole fields only), and
    why the test did not pass, when it did not."""
    symbol = (SYMBOLS if unicode else ASCII).get(record.status, record.status)
    lines = [f"{symbol} {record.name} ({record.timing_ms:.1f} ms)"]
    room = max(MIN_WIDTH, width) - len(DETAILS_PREFIX)
    measured = {k: v for k, v in record.details.items() if k not in REASONS}
    if measured:
        lines.append(DETAILS_PREFIX + format_details(measured, room, unicode=unicode))
    for key, label in REASONS.items():
        reason = record.details.get(key)
        if reason:
            prefix = f"   {label}: "
            text = " ".join(str(reason).split())
            lines.append(prefix + _clip(text, max(MIN_WIDTH, width) - len(prefix)))
    return lines


def _named(record: TestRecord, fleet: bool) -> str:
    """A record's name, with the server it ran against in a fleet."""
    return f"{record.name} on {server_id(record.server_url)}" if fleet and record.server_url else record.name


def closing_line(kind: str, records: Iterable[TestRecord], *, unicode: bool = True,
                 fleet: bool = False) -> str:
    """The guide's last line for ``kind``: all passed (skips named), or which did not."""
    records = list(records)
    what = CLOSING.get(kind, f"{kind} tests")
    failed = [r for r in records if r.status not in ("PASS", "SKIP")]
    if failed:
        names = ", ".join(f"{_named(r, fleet)} ({r.status})" for r in failed)
        return f"{'❌ ' if unicode else ''}Some {what} failed: {names}"
    skipped = [_named(r, fleet) for r in records if r.status == "SKIP"]
    tail = f" ({len(skipped)} skipped: {', '.join(skipped)})" if skipped else ""
    return f"{'🎉 ' if unicode else ''}All {what} passed!{tail}"


def _counts(records: Iterable[TestRecord]) -> str:
    totals: dict[str, int] = {}
    for record in records:
        totals[record.status] = totals.get(record.status, 0) + 1
    return ", ".join(f"{n} {status.lower()}" for status, n in totals.items())


def write_summary(reporter: pytest.TerminalReporter, results: ResultsSession,
                  report_files: list[Path], report_error: str | None,
                  write_error: str | None = None) -> None:
    """Print the Genie section: one block per kind of test, where the files are, and last
    the guide's closing line of each kind."""
    if not results.records and report_error is None and write_error is None:
        return
    tw = reporter._tw  # the one public-enough handle on the terminal's encoding and width
    encoding = getattr(getattr(tw, "_file", None), "encoding", None)
    unicode = _can_encode("".join(SYMBOLS.values()), encoding)
    width = getattr(tw, "fullwidth", 120)
    reporter.write_sep("=", "Genie")
    closing: list[tuple[str, bool]] = []
    for kind, server in results.slots():
        records = results.by_kind(kind, server)
        if not records:
            continue
        path = results.path_of(kind, server)
        against = f" against {server_id(server)}" if server else ""
        where = f" ({path.name})" if path else ""
        reporter.write_line(f"{TITLES[kind]} [{TEST_TYPES[kind]}]{against}{where}: {_counts(records)}",
                            bold=True)
        for record in records:
            for line in format_record(record, width=width, unicode=unicode):
                reporter.write_line(line, red=record.status in ("FAIL", "ERROR"))
    for kind in KINDS:
        every = [r for r in results.records if kind in r.kinds]
        if every:
            closing.append((closing_line(kind, every, unicode=unicode, fleet=results.fleet),
                            all(r.status in ("PASS", "SKIP") for r in every)))
    if write_error is not None:
        reporter.write_line(f"Genie results could NOT be written: {write_error}", red=True)
    elif results.folder is not None:
        reporter.write_line(f"Genie results: {results.folder}")
    for path in report_files:
        reporter.write_line(f"Genie report: {path}")
    if report_error is not None:
        reporter.write_line(f"Genie report FAILED: {report_error}", red=True)
    for line, passed in closing:
        reporter.write_line(line, green=passed, red=not passed, bold=True)


def no_checks_hint(markexpr: str, checks: Path | None) -> list[str]:
    """What to say when ``pytest -m server`` / ``-m client`` collected no documented check:
    almost always a run outside the Genie repository, where the checks live."""
    selection = f"-m {markexpr}" if markexpr else "this selection"
    lines = [f"Genie: {selection} collected no documented check (pytest exit status 5)."]
    if checks is not None:
        folder = checks / markexpr if markexpr in KINDS else checks
        lines += [f"The checks live in {checks}/server and {checks}/client. Run from the "
                  f"repository: cd {checks.parent} && pytest {selection} ...",
                  f"or name the folder: pytest {selection} {folder} ..."]
    else:
        lines.append("The checks live in tests/server and tests/client of the Genie repository "
                     "(a wheel does not install them): run pytest from its root.")
    return lines
