"""pytest-genie: the documented Genie checks as timed pytest cases.

Installed as the ``pytest11`` entry point ``genie`` (see ``plugin.py``).  It adds the
``--genie-*`` options, the ``server`` / ``client`` markers, the fixtures in
``fixtures.py``, and writes each session's results in the testing guide's JSON
schema (``results.py``).  The documented checks record their figures under the
names in ``checks.py`` (``genie_record[Key.REMOTE_MS] = ...``), which the report
(``pytest_genie.report``) reads back.  Importing this package does not import torch.
"""

from __future__ import annotations

from pytest_genie.checks import CHECKS, Check, Key
from pytest_genie.options import GenieOptions
from pytest_genie.results import TestRecord

__all__ = ["CHECKS", "Check", "GenieOptions", "Key", "TestRecord"]
