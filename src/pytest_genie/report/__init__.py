"""The comprehensive report: ``comprehensive_report.json`` and ``test_analysis_report.md``.

Built from the plugin's result files, never from a live run, so one report can join the server
results of a GPU node and the client results of another machine.  Modules, lowest first:

* ``inputs`` -- reading result files, as written by the plugin or by hand;
* ``analysis`` -- the guide's figures recomputed from them (pure);
* ``formatting`` -- how a figure reads (ms, bytes, %, "not measured");
* ``recommend`` -- advice that follows from the figures;
* ``trend`` -- the session's figures next to earlier result folders';
* ``markdown`` -- the report rendered as the guide's Markdown;
* ``build`` -- the report as a document, and writing its two files;
* ``cli`` -- the ``genie-report`` command.

Importing this package does not import torch: the report reads files only.
"""

from __future__ import annotations

from pytest_genie.report.build import JSON_NAME, MARKDOWN_NAME, build_report, write_report
from pytest_genie.report.cli import main
from pytest_genie.report.inputs import ReportInputError

__all__ = ["JSON_NAME", "MARKDOWN_NAME", "ReportInputError", "build_report", "main", "write_report"]
