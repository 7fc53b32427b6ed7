"""The comprehensive report: ``comprehensive_report.json``, ``test_analysis_report.md`` and
``test_analysis_report.html`` with its charts.

Built from the plugin's result files, never from a live run, so one report can join the server
results of a GPU node and the client results of another machine.  Modules, lowest first:

* ``inputs`` -- reading result files, as written by the plugin or by hand;
* ``analysis`` -- counts, hosts and the server's device (pure);
* ``figures`` -- a measured figure with its spread, and verdicts on spreads;
* ``performance`` -- the performance figures, the break-even size (pure);
* ``formatting`` -- how a figure reads (ms, bytes, %, "not measured");
* ``claims`` -- the performance sentences, each stating only what its numbers show;
* ``recommend`` -- advice that follows from the figures;
* ``metrics`` -- the comparable figures and their context (like with like);
* ``trend`` -- the session's figures next to earlier result folders';
* ``compare`` -- the regression gate's comparison with a baseline session;
* ``tables`` -- the data tables both renderings share;
* ``charts`` -- the SVG charts (matplotlib, the ``report`` extra);
* ``markdown``, ``html`` -- the report rendered as Markdown and as one HTML page;
* ``build`` -- the report as a document, and writing its files;
* ``cli`` -- the ``genie-report`` command.

Importing this package does not import torch: the report reads files only.
"""

from __future__ import annotations

from pytest_genie.report.build import HTML_NAME, JSON_NAME, MARKDOWN_NAME, build_report, write_report
from pytest_genie.report.cli import main
from pytest_genie.report.inputs import ReportInputError

__all__ = ["HTML_NAME", "JSON_NAME", "MARKDOWN_NAME", "ReportInputError", "build_report", "main",
           "write_report"]
