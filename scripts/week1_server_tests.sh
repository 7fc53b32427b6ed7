#!/usr/bin/env bash
# The guide's `bash scripts/week1_server_tests.sh`, on the GPU node: the server-side
# checks, `pytest -m server tests/server`.  Checks the server given by --genie-server or
# $GENIE_SERVER, else the genie-server answering on 127.0.0.1:8888 (the guide starts it
# first: genie-server --host 0.0.0.0 --port 8888), else one the plugin embeds for the run.
# Extra arguments go to pytest (e.g. --genie-require-gpu).
# Runs from any folder; Python: the repository's .venv/bin/python when present, else
# python3 on PATH (see _python.sh).  Exit status: pytest's (0 all passed, 1 some failed,
# 4 usage error, 5 no check collected).  Results: reports/genie_test_results_*/.
. "$(dirname "$0")/_python.sh"
exec "$py" -m pytest_genie.guide server "$@"
