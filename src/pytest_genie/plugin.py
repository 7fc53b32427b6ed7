"""The Genie plugin's hooks (entry point ``pytest11: genie``).

Module-level hooks only register things (hookspecs, options, markers); everything
that runs per test lives on :class:`GeniePlugin`, one per ``Config``, so nested
pytester sessions in one process share nothing.

How a record is made and travels:

* ``pytest_runtest_makereport`` (the outermost wrapper) notes each phase of a test
  marked ``server`` or ``client``; at teardown it combines them into one record
  (PASS/FAIL/SKIP/ERROR, the call phase's wall time, the start time, the dict the
  test filled through ``genie_record``) and puts it on the teardown report as the
  plain-JSON attribute ``genie_record``.  Reports are serialized with their extra
  attributes, so under pytest-xdist the record reaches the controller.
* ``pytest_collection_finish`` writes each kind's result file with ``"tests": []``
  as soon as the session knows which kinds it will run, so even a run killed during
  its first test leaves valid files (under xdist the controller collects nothing, and
  the files appear with the first record).
* ``pytest_runtest_logreport`` on the writing process (never an xdist worker)
  adds the record to the session and rewrites the result file atomically.
* A test interrupted by Ctrl-C gets no teardown report; the session end records it
  as ERROR, so the file still holds every test that ran.
* Under xdist, a worker also puts ``genie_started`` (name, kinds, start) on the setup
  report.  The controller keeps it until the record arrives; if the worker dies first,
  xdist's crash report (``pytest_handlecrashitem``, which carries no markers) turns it
  into an ERROR record saying the worker crashed.  A worker dying during *setup* sends
  nothing the controller could recognise as a documented test, so that one is not recorded.
"""

from __future__ import annotations

import contextlib
import importlib.util
import re
import time
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from pytest_genie import fixtures, fleet, hookspecs
from pytest_genie.checks import KINDS, Key
from pytest_genie.ci import html_cell, properties
from pytest_genie.gate import run_gate, write_gate
from pytest_genie.options import GenieOptions, add_options, resolve_options
from pytest_genie.results import ResultsSession, TestRecord, iso_utc, json_safe
from pytest_genie.state import (
    DETAILS_KEY,
    PENDING_KEY,
    SERVER_URL_KEY,
    STATE_KEY,
    GenieState,
    OnWorker,
    Pending,
)
from pytest_genie.terminal import no_checks_hint, write_summary

__all__ = ["GeniePlugin"]

MARKERS = {
    "server": "documented server-side Genie test (run on the GPU node: pytest -m server); "
              "recorded in server_test_results_<ts>.json",
    "client": "documented client-side Genie test (pytest -m client --genie-server=HOST); "
              "recorded in client_test_results_<ts>.json",
}
MAX_MESSAGE = 2000
PLUGIN_NAME = "genie-session"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    pluginmanager.add_hookspecs(hookspecs)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def _declared_markers(config: pytest.Config) -> set[str]:
    return {str(line).split(":", 1)[0].split("(", 1)[0].strip() for line in config.getini("markers")}


def pytest_configure(config: pytest.Config) -> None:
    # The project's pyproject.toml also declares them, so the suite collects with -p no:genie;
    # only where nobody declared them does the plugin add its own line.
    declared = _declared_markers(config)
    for name, text in MARKERS.items():
        if name not in declared:
            config.addinivalue_line("markers", f"{name}: {text}")
    try:
        options = resolve_options(config)
    except pytest.UsageError:
        if config.getoption("help", default=False):
            options = GenieOptions()  # let `pytest --help` show how to fix it
        else:
            raise
    is_worker = hasattr(config, "workerinput")
    if options.report and not is_worker and importlib.util.find_spec("pytest_genie.report") is None:
        raise pytest.UsageError("--genie-report: the report module pytest_genie.report is not "
                                "installed; reinstall the genie package (pip install -e .) or drop "
                                "--genie-report / GENIE_REPORT.")
    state = GenieState(options=options, is_worker=is_worker)
    if not is_worker:
        state.results = ResultsSession(
            results_dir=options.results_dir, started=time.time(),
            server_url=None if options.is_fleet else options.server_url, fleet=options.is_fleet,
            extend_info=lambda info: config.hook.pytest_genie_test_info(config=config, test_info=info))
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(GeniePlugin(config, state), PLUGIN_NAME)
    if not config.pluginmanager.is_registered(fixtures):
        config.pluginmanager.register(fixtures, "genie-fixtures")


def _checks_dir() -> Path | None:
    """The documented checks' folder (``tests/``), when this plugin runs from a checkout
    of the repository (an editable install); a wheel does not carry them."""
    tests = Path(__file__).resolve().parents[2] / "tests"
    return tests if all((tests / kind).is_dir() for kind in KINDS) else None


def _kinds(item: pytest.Item) -> list[str]:
    return [kind for kind in KINDS if item.get_closest_marker(kind) is not None]


def _gateway_id(node: Any) -> str:
    """An xdist worker's id ("gw0"), from its WorkerController."""
    return str(getattr(getattr(node, "gateway", None), "id", "?"))


def _clip(text: str) -> str:
    text = text.strip()
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."


def _message(report: pytest.TestReport, call: pytest.CallInfo[None]) -> str:
    """Why a phase did not pass: the skip reason, or the exception's short form."""
    if report.skipped:
        if hasattr(report, "wasxfail"):
            reason = str(report.wasxfail)
            return _clip(f"xfail: {reason}" if reason else "xfail")
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        return _clip(reason.removeprefix("Skipped: "))
    if call.excinfo is not None:
        return _clip(call.excinfo.exconly())
    return _clip(str(report.longrepr).splitlines()[0] if report.longrepr else "failed")


def _status(pending: Pending) -> tuple[str, dict[str, str]]:
    """Combine the phases into one status and the details keys that explain it."""
    outcome, msg = pending.outcomes, pending.messages
    if pending.interrupted_by is not None:
        return "ERROR", {Key.ERROR: f"interrupted by {pending.interrupted_by} during the test"}
    if outcome.get("setup") == "failed":
        return "ERROR", {Key.ERROR: f"setup: {msg.get('setup', '')}"}
    if outcome.get("setup") == "skipped":
        return "SKIP", {Key.SKIP_REASON: msg.get("setup", "")}
    extra: dict[str, str] = {}
    if outcome.get("teardown") == "failed":
        extra[Key.ERROR] = f"teardown: {msg.get('teardown', '')}"
    if outcome.get("call") == "failed":
        return "FAIL", {Key.FAILURE: msg.get("call", ""), **extra}
    if outcome.get("call") == "skipped":
        return "SKIP", {Key.SKIP_REASON: msg.get("call", ""), **extra}
    if extra:
        return "ERROR", extra
    if "call" not in outcome:  # never ran: the run stopped between setup and call
        return "ERROR", {Key.ERROR: "the test did not run to completion"}
    return "PASS", {}


class GeniePlugin:
    """Per-session hooks: timing and status, result files, summary, json-report."""

    def __init__(self, config: pytest.Config, state: GenieState) -> None:
        self.config = config
        self.state = state

    # ---- timing and status (on the process that runs the test) --------------------

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_call(self, item: pytest.Item) -> Generator[None, Any, Any]:
        """Only to notice Ctrl-C / ``pytest.exit`` inside a test: those skip the
        report hooks entirely, and the session end must still record the test."""
        pending = item.stash.get(PENDING_KEY, None)
        started = time.perf_counter()
        try:
            return (yield)
        except (KeyboardInterrupt, pytest.exit.Exception) as exc:
            if pending is not None:
                pending.interrupted_by = type(exc).__name__
                pending.call_ms = (time.perf_counter() - started) * 1000.0
            raise

    @pytest.hookimpl(wrapper=True, tryfirst=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]
                                  ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        # Outermost wrapper: inner ones still change the outcome (pytest's own
        # xfail handling turns a failure into "skipped"), and the record must see
        # the outcome pytest reports.
        report = yield
        if call.when == "setup" and _kinds(item):
            item.stash[PENDING_KEY] = Pending(name=fleet.record_name(item), kinds=_kinds(item),
                                              start=call.start)
            self.state.in_flight[item.nodeid] = (item, item.stash[PENDING_KEY])
            if self.state.is_worker:  # lets the controller record it if this worker dies
                report.genie_started = {  # type: ignore[attr-defined]
                    "name": fleet.record_name(item), "kinds": _kinds(item), "timestamp": iso_utc(call.start),
                    "server_url": self._server_of(item)}
        pending = item.stash.get(PENDING_KEY, None)
        if pending is None:
            return report
        pending.outcomes[call.when] = report.outcome
        if not report.passed:
            pending.messages[call.when] = _message(report, call)
        if call.when == "call":
            pending.call_ms = call.duration * 1000.0
        elif call.when == "teardown":
            record = self._finish(item, pending)
            report.genie_record = record.to_wire()  # type: ignore[attr-defined]
            pending.json_metadata.update(record.entry(), kinds=list(record.kinds))
            # junitxml writes the teardown report's user_properties, as record_property would.
            report.user_properties.extend(properties(record))
        return report

    def _finish(self, item: pytest.Item, pending: Pending) -> TestRecord:
        self.state.in_flight.pop(item.nodeid, None)
        status, why = _status(pending)
        details = json_safe(item.stash.get(DETAILS_KEY, {}))
        details.update(why)
        record = TestRecord(name=pending.name, status=status, details=details,
                            timing_ms=round(pending.call_ms or 0.0, 3), timestamp=iso_utc(pending.start),
                            kinds=list(pending.kinds),
                            server_url=self._server_of(item))
        return record

    def _server_of(self, item: pytest.Item) -> str | None:
        """The server ``item`` talked to: its fleet server, else the one the session resolved."""
        return fleet.server_of(item) or self.config.stash.get(SERVER_URL_KEY, None)

    # ---- a fleet: every check that talks to a server, once per server (fleet.py) -----

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        fleet.parametrize(metafunc, self.state.options.servers)

    # ---- under pytest-xdist: one worker per server at a time (scheduling.py) -------

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_make_scheduler(self, config: pytest.Config, log: Any) -> Any:
        """A fleet under ``-n N``: one work unit per server, so servers run in parallel."""
        if not self.state.options.is_fleet:
            return None
        from pytest_genie.scheduling import SCHEDULED_DIST, ServerScheduling  # xdist is installed: it asks

        if getattr(config.option, "dist", None) not in SCHEDULED_DIST:
            return None
        return ServerScheduling(config, log, self.state.options.servers)

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """xdist controller, per worker: the folder of the run's server locks."""
        if not self.state.options.servers:
            return
        from pytest_genie.scheduling import make_lock_dir

        if self.state.lock_dir is None:
            self.state.lock_dir = make_lock_dir()
        node.workerinput[fleet.LOCK_DIR_INPUT] = self.state.lock_dir

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_protocol(self, item: pytest.Item) -> Generator[None, object, object]:
        """On an xdist worker, a check that talks to a server holds that server's lock from its
        setup to its teardown: no other worker's check talks to it meanwhile."""
        folder = getattr(self.config, "workerinput", {}).get(fleet.LOCK_DIR_INPUT)
        server = fleet.server_of(item) or self.state.options.server_url
        if not folder or server is None or not fleet.uses_server(item):
            return (yield)
        from pytest_genie.scheduling import server_lock

        with server_lock(folder, server):
            return (yield)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self.state.lock_dir is not None:
            from pytest_genie.scheduling import remove_lock_dir

            remove_lock_dir(self.state.lock_dir)
            self.state.lock_dir = None

    # ---- results (on the process that writes: never an xdist worker) --------------

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        results = self.state.results
        if results is None or self.config.option.collectonly:
            return
        slots = {(kind, fleet.server_of(item) if results.fleet else None): None
                 for item in session.items for kind in _kinds(item)}
        try:
            results.start(sorted(slots, key=lambda s: (KINDS.index(s[0]), s[1] or "")))
        except OSError as exc:  # keep testing; the summary and the exit status say it
            if self.state.write_error is None:
                self.state.write_error = f"{type(exc).__name__}: {exc}"

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if self.state.results is None:
            return
        started = getattr(report, "genie_started", None)
        if started:  # xdist controller: a worker began a recorded test
            self.state.on_workers[report.nodeid] = OnWorker(
                started=dict(started), seen=time.monotonic(),
                phase="call" if report.passed else "teardown")
        on_worker = self.state.on_workers.get(report.nodeid)
        if on_worker is not None and report.when == "call":
            on_worker.seen, on_worker.phase = time.monotonic(), "teardown"
            on_worker.call_ms = report.duration * 1000.0
        data = getattr(report, "genie_record", None)
        if data:
            self.state.on_workers.pop(report.nodeid, None)
            record = TestRecord.from_wire(data)
            self.state.properties[report.nodeid] = properties(record)
            self._add(record)

    def _add(self, record: TestRecord) -> None:
        if self.state.results is None:  # an xdist worker: the controller writes
            return
        try:
            self.state.results.add(record)
        except OSError as exc:  # keep testing; the summary and the exit status say it
            if self.state.write_error is None:
                self.state.write_error = f"{type(exc).__name__}: {exc}"

    # ---- xdist: a worker that dies mid-test (on the controller) ----------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_testnodedown(self, node: Any, error: object | None) -> None:
        """Called before xdist reports the crashed item: keep why the worker went down."""
        if error is not None:
            self.state.worker_errors[_gateway_id(node)] = _clip(str(error))

    @pytest.hookimpl(optionalhook=True, trylast=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """xdist's report of the test a dead worker was running (no markers, no record).

        ``trylast``: a rerun plugin may have rescheduled it (outcome no longer "failed");
        then the new run's reports decide.
        """
        del sched
        on_worker = self.state.on_workers.get(crashitem)
        if on_worker is None or self.state.results is None or report.outcome != "failed":
            return
        del self.state.on_workers[crashitem]
        why = str(report.longrepr or f"worker crashed while running {crashitem!r}")
        down = self.state.worker_errors.get(_gateway_id(getattr(report, "node", None)))
        error = f"{why} (during {on_worker.phase}; worker down: {down or 'no reason given'})"
        self._add(self._worker_record(on_worker, _clip(error)))

    def _worker_record(self, on_worker: OnWorker, error: str) -> TestRecord:
        """ERROR record of a test whose worker never sent its own.  timing_ms: the call
        phase if it finished, else the time until the controller heard of the end."""
        started = on_worker.started
        call_ms = on_worker.call_ms
        details = {Key.ERROR: error}
        if call_ms is None:
            call_ms = (time.monotonic() - on_worker.seen) * 1000.0
            details[Key.TIMING_NOTE] = "timing_ms is an upper bound: until the controller saw the test end"
        return TestRecord(name=str(started["name"]), status="ERROR", details=details,
                          timing_ms=round(call_ms, 3), timestamp=str(started["timestamp"]),
                          kinds=[str(k) for k in started.get("kinds", [])],
                          server_url=started.get("server_url"))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        results = self.state.results
        if results is None:
            return
        for item, pending in list(self.state.in_flight.values()):
            with contextlib.suppress(OSError):  # a write error is already noted
                results.add(self._finish(item, pending))  # interrupted mid-test
        for nodeid, on_worker in list(self.state.on_workers.items()):  # xdist, interrupted
            error = (f"the worker running {nodeid!r} stopped during {on_worker.phase} "
                     "before reporting the result (run interrupted?)")
            self._add(self._worker_record(on_worker, error))
        self.state.on_workers.clear()
        if self.state.write_error is not None and session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.state.options.compare is not None and results.records:
            comparison, self.state.compare_error, failed = run_gate(self.state.options, results)
            self.state.comparison = comparison
            if failed and session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        if self.state.options.report:
            self._write_report(session, results)

    def _write_report(self, session: pytest.Session, results: ResultsSession) -> None:
        if not results.records:
            self.state.report_error = "no documented (server/client) test ran, so there is nothing to report"
            return
        # Loaded only when a report is asked for, so plain runs pay nothing for it;
        # pytest_configure already made sure it is installed.  Not a cycle: report never
        # imports the plugin.
        from pytest_genie.report import write_report

        folder = results.ensure_folder()
        try:
            written = write_report(folder, history_root=self.state.options.results_dir,
                                   comparison=self.state.comparison)
        except Exception as exc:  # the results are safe; the run must still say it failed
            self.state.report_error = f"{type(exc).__name__}: {exc}"
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
            return
        self.state.report_files = list(written)

    # ---- output ---------------------------------------------------------------

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter,
                                exitstatus: int) -> None:
        if self.state.results is None:
            return
        write_summary(terminalreporter, self.state.results, self.state.report_files,
                      self.state.report_error, self.state.write_error)
        write_gate(terminalreporter, self.state.comparison, self.state.compare_error)
        markexpr = str(self.config.option.markexpr or "")
        asked = bool(re.search(r"\b(server|client)\b", markexpr)) or self.state.options.server_url is not None
        if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED and asked:
            for line in no_checks_hint(markexpr, _checks_dir()):
                terminalreporter.write_line(line, yellow=True)

    def pytest_genie_test_info(self, config: pytest.Config, test_info: dict[str, Any]) -> None:
        """Every result file says at which ``--genie-level`` its checks ran."""
        del config
        test_info[Key.LEVEL] = self.state.options.level

    # ---- pytest-html (optional): the figures in its results table ----------------------

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_header(self, cells: list[str]) -> None:
        cells.insert(2, '<th class="col-genie">Genie figures</th>')

    @pytest.hookimpl(optionalhook=True)
    def pytest_html_results_table_row(self, report: pytest.TestReport, cells: list[str]) -> None:
        shown = self.state.properties.get(report.nodeid) if report.when == "call" else None
        cells.insert(2, html_cell(shown))

    @pytest.hookimpl(optionalhook=True)
    def pytest_json_runtest_metadata(self, item: pytest.Item, call: pytest.CallInfo[None]
                                     ) -> dict[str, Any] | None:
        """pytest-json-report: the record lands in the test's ``metadata["genie"]``.

        pytest-json-report asks from inside its makereport wrapper, which runs
        before ours finishes the record; so it gets the test's own dict, which the
        record fills at teardown, before the report is logged or sent by xdist.
        """
        del call
        pending = item.stash.get(PENDING_KEY, None)
        return None if pending is None else {"genie": pending.json_metadata}
