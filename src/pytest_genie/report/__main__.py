"""``python -m pytest_genie.report DIR [DIR ...]``: the ``genie-report`` command without its script."""

from __future__ import annotations

import sys

from pytest_genie.report.cli import main

sys.exit(main())
