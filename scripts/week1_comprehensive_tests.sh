#!/usr/bin/env bash
# The guide's `bash scripts/week1_comprehensive_tests.sh SERVER_IP`: the client checks
# against SERVER_IP and, when SERVER_IP is this machine (a loopback address, this hostname,
# or an address one of its interfaces has), the server checks too, in one session that
# writes both result files and the merged report (comprehensive_report.json and
# test_analysis_report.md):
#   pytest -m "server or client" tests/server tests/client --genie-server=SERVER_IP --genie-report
# On another machine it runs the client checks and says how to merge the server's folder.
# Runs from any folder; Python: the repository's .venv/bin/python when present, else
# python3 on PATH (see _python.sh).  Exit status: pytest's.  Results: reports/genie_test_results_*/.
. "$(dirname "$0")/_python.sh"
exec "$py" -m pytest_genie.guide comprehensive "$@"
