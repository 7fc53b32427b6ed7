#!/usr/bin/env bash
# The guide's `bash scripts/week1_client_tests.sh SERVER_IP`, on any client machine: the
# client-side checks, `pytest -m client tests/client --genie-server=SERVER_IP` (HOST,
# HOST:PORT or http(s)://HOST:PORT; port 8888 by default).  Extra arguments go to pytest
# (e.g. --genie-token=T --genie-large-mb=64).
# Runs from any folder; Python: the repository's .venv/bin/python when present, else
# python3 on PATH (see _python.sh).  Exit status: pytest's (0 all passed, 1 some failed,
# 4 usage error or no SERVER_IP, 5 no check collected).  Results: reports/genie_test_results_*/.
. "$(dirname "$0")/_python.sh"
exec "$py" -m pytest_genie.guide client "$@"
