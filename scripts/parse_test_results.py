#!/usr/bin/env python3
"""The guide's ``python scripts/parse_test_results.py genie_test_results_YYYYMMDD_HHMMSS/``.

``genie-report`` on the folder(s) given (looked up where given, else in the repository's
``reports/``, where the plugin writes them; with none, the newest session there): writes
``comprehensive_report.json`` and ``test_analysis_report.md`` into the first folder and
prints the Markdown report.  Several folders (server and client results copied together
from two nodes) make one report.  Also reads the original scripts' result files.

When the ``python`` that runs this cannot import Genie (a fresh shell, the venv not
activated), it runs itself again with the repository's ``.venv/bin/python``.
Exit status: genie-report's (0 written, 2 a folder or file it cannot read).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

try:
    from pytest_genie.guide import main
except ImportError:
    venv = ROOT / ".venv" / "bin" / "python"
    if venv.exists() and Path(sys.executable).resolve() != venv.resolve():
        os.execv(str(venv), [str(venv), __file__, *sys.argv[1:]])
    sys.exit(f"{sys.argv[0]}: {sys.executable} cannot import Genie; set up the repository "
             "first (README quick start: python3 -m venv .venv && .venv/bin/pip install -e '.[test]')")

if __name__ == "__main__":
    sys.exit(main(["parse", *sys.argv[1:]], root=ROOT))
