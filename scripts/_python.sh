# Sourced by the week1_*.sh scripts: change into the repository they belong to (so they
# run from any folder, as the guide runs them from its root), then pick its Python: the
# repository's .venv/bin/python when there is one (it need not be activated: a fresh
# shell works), else python3 on PATH.  Sets $py; exits 4 (pytest's usage error) when that
# Python cannot import Genie.
cd "$(dirname "${BASH_SOURCE[0]}")/.." || exit 4
py=.venv/bin/python
[ -x "$py" ] || py=python3
if ! "$py" -c "import pytest_genie" 2>/dev/null; then
    echo "$(basename "$0"): $py cannot import Genie; set up the repository first (README quick start: python3 -m venv .venv && .venv/bin/pip install -e '.[test]')" >&2
    exit 4
fi
