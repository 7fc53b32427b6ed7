"""README.md's quick start, as a new user runs it: the test command works in a fresh
terminal (where the install command's ``. .venv/bin/activate`` is not in effect) and is
exactly what CI runs; the curl example works against a real server and leaves nothing in
the user's folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genie.server.runner import BackgroundServer

REPO = Path(__file__).resolve().parents[2]
BASH = shutil.which("bash")


def _quick_start_blocks() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)


def _test_command() -> str:
    _, test, *_ = _quick_start_blocks()
    (command,) = test.strip().splitlines()
    return command


def _fresh_env(tmp_path: Path) -> dict[str, str]:
    """A new terminal's environment: no venv activated, the system's PATH only."""
    return {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}


@pytest.fixture
def clone(tmp_path: Path) -> Path:
    """A folder laid out like the README's clone: its ``.venv`` is this test's venv."""
    venv = Path(sys.prefix)
    if not (venv / "bin" / "activate").is_file():
        pytest.skip(f"{sys.prefix} is not a venv: the README's .venv cannot be stood in for")
    folder = tmp_path / "clone"
    folder.mkdir()
    (folder / ".venv").symlink_to(venv)
    return folder


def test_the_test_command_is_what_ci_runs() -> None:
    command = _test_command()
    ci = [line.strip() for line in (REPO / ".ci" / "run").read_text(encoding="utf-8").splitlines()
          if line.strip() and not line.lstrip().startswith("#")]
    assert ci[-1] == command  # CI's last command, exactly


@pytest.mark.skipif(BASH is None, reason="the README's commands are bash")
def test_the_test_command_works_in_a_fresh_terminal(clone: Path, tmp_path: Path) -> None:
    assert BASH is not None
    command = _test_command()
    assert "activate" not in command  # works without the install command's activation
    done = subprocess.run([BASH, "-c", f"{command} --version"], cwd=clone, env=_fresh_env(tmp_path),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "pytest" in done.stdout + done.stderr


@pytest.mark.skipif(BASH is None or shutil.which("curl") is None,
                    reason="the README's example needs bash and curl (.ci/run installs curl)")
def test_the_curl_example_works_and_leaves_no_files(clone: Path, tmp_path: Path,
                                                    server: BackgroundServer) -> None:
    assert BASH is not None
    example = _quick_start_blocks()[2].replace("127.0.0.1:8888", f"127.0.0.1:{server.port}")
    env = _fresh_env(tmp_path)
    if os.environ.get("PYTHONPATH"):  # a checkout run without installing it
        env["PYTHONPATH"] = os.environ["PYTHONPATH"]
    done = subprocess.run([BASH, "-e", "-c", example], cwd=clone, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith('{"status":"healthy",')  # the /health line
    assert done.stdout.count("{'output': tensor(") == 2  # the raw body and the form
    assert sorted(p.name for p in clone.iterdir()) == [".venv"]  # nothing left behind
