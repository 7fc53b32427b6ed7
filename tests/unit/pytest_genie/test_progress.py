"""The progress line of long transfers (``progress.py``): drawn in a terminal, never under ``-q``,
never when the output is not a terminal.  The terminal is a real pseudo-terminal (``pty``) in
front of a real pytest process moving a 16 MiB tensor to the embedded server and back."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
import time
from pathlib import Path

import pytest

BIG_ECHO = """
import pytest, torch

@pytest.mark.client
def test_big_echo(genie_client):
    x = torch.zeros(4 * 2**20)  # 16 MiB: past the client's progress threshold
    assert torch.equal(genie_client.echo(x), x)
"""


def _run(folder: Path, *args: str, tty: bool) -> str:
    cmd = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", f"--rootdir={folder}",
           f"--genie-results-dir={folder / 'r'}", *args, str(folder / "test_big.py")]
    env = {**os.environ, "COLUMNS": "120"}
    if not tty:
        return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, check=False).stdout
    leader, follower = pty.openpty()
    proc = subprocess.Popen(cmd, stdin=follower, stdout=follower, stderr=follower, env=env)
    os.close(follower)
    out = bytearray()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the process closed its end
            break
        if not chunk:
            break
        out += chunk
    proc.wait(timeout=60)
    os.close(leader)
    return out.decode(errors="replace")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    (tmp_path / "test_big.py").write_text(BIG_ECHO, encoding="utf-8")
    return tmp_path


def test_a_terminal_sees_the_progress_of_a_large_transfer(folder: Path) -> None:
    out = _run(folder, tty=True)
    assert "1 passed" in out, out
    assert "genie test_big_echo: upload" in out and "genie test_big_echo: download" in out, out
    assert "16.0/16.0 MiB (100%)" in out, out


@pytest.mark.parametrize(("args", "tty"), [(("-q",), True), ((), False)], ids=["quiet", "not-a-tty"])
def test_no_progress_under_quiet_or_without_a_terminal(folder: Path, args: tuple[str, ...],
                                                       tty: bool) -> None:
    out = _run(folder, *args, tty=tty)
    assert "1 passed" in out, out
    assert "genie test_big_echo:" not in out, out
