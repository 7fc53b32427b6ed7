"""Hooks the Genie plugin offers to other plugins and conftest files."""

from __future__ import annotations

from typing import Any

import pytest

__all__ = ["pytest_genie_test_info"]


@pytest.hookspec
def pytest_genie_test_info(config: pytest.Config, test_info: dict[str, Any]) -> None:
    """Extend or edit ``test_info`` of a result file before it is first written.

    Called once per result file (server and client) on the process that writes
    them (the xdist controller, not the workers).  Mutate ``test_info`` in place;
    values that are not JSON types are written as their ``str``.  Example, in a
    ``conftest.py``::

        def pytest_genie_test_info(config, test_info):
            test_info["rack"] = "b4"
    """

