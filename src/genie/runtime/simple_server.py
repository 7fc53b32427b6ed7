"""``python -m genie.runtime.simple_server --host 0.0.0.0 --port 8888``: the testing
guide's spelling of ``genie-server`` (``python -m genie.server``), kept for its users."""

from __future__ import annotations

import sys

from genie.server.__main__ import build_parser, main

__all__ = ["build_parser", "main"]

if __name__ == "__main__":
    sys.exit(main())
