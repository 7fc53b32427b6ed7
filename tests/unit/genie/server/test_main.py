"""The server's command line (genie.server.__main__) as a user starts it:
``python -m genie.runtime.simple_server`` (the guide's spelling of ``genie-server``) in
its own process, talked to with plain HTTP and files made by the safetensors library
(what ``curl --data-binary @x.safetensors`` sends), stopped with a signal; bad flags,
a taken port and a missing CUDA device fail clearly, without a traceback."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import safetensors.torch
import torch

STARTUP_TIMEOUT = 60.0


class ServerProcess:
    """``genie-server`` in a subprocess on 127.0.0.1; waits until /health answers."""

    def __init__(self, port: int, *args: str, env: dict[str, str] | None = None) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "genie.runtime.simple_server", "--host", "127.0.0.1",
             "--port", str(self.port), "--device", "cpu", "--log-level", "info", *args],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **(env or {})})

    def wait_healthy(self, headers: dict[str, str] | None = None) -> dict[str, object]:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else ""
                raise AssertionError(f"server exited with {self.proc.returncode}: {out}")
            try:
                resp = httpx.get(f"{self.url}/health", headers=headers, timeout=2)
                if resp.status_code in (200, 401):
                    return {"status_code": resp.status_code, **resp.json()}
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"server not healthy within {STARTUP_TIMEOUT} s")
            time.sleep(0.1)

    def stop(self, sig: int = signal.SIGTERM) -> tuple[int, str]:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            raise AssertionError(f"server ignored signal {sig}: {out}") from None
        return self.proc.returncode, out


def assert_clean_exit(code: int, output: str, sig: int) -> None:
    """Graceful shutdown: the app's shutdown ran and nothing crashed.

    uvicorn re-raises the signal it caught once it has shut down, so that whoever
    sent it sees the process end by that signal (systemd counts SIGTERM/SIGINT as a
    clean stop); exit status 0 is equally fine.
    """
    assert code in (0, -sig), output
    assert "Application shutdown complete" in output, output
    assert "Traceback" not in output, output


@pytest.fixture
def tokened_server(free_port: Callable[[], int]) -> Iterator[ServerProcess]:
    srv = ServerProcess(free_port(), "--max-body-mb", "1", "--handle-lease-s", "0.5",
                        env={"GENIE_TOKEN": "from-env"})
    yield srv
    srv.stop(signal.SIGKILL)


def test_cli_serves_curl_style_requests(tokened_server: ServerProcess, tmp_path: Path) -> None:
    srv = tokened_server
    auth = {"Authorization": "Bearer from-env"}
    assert srv.wait_healthy(auth)["status"] == "healthy"
    # A file made by the safetensors library, posted as raw bytes like curl --data-binary.
    x = torch.tensor([[-1.5, 0.0, 2.25], [3.0, -4.0, 5.5]])
    path = tmp_path / "x.safetensors"
    safetensors.torch.save_file({"x": x}, str(path))
    reply = httpx.post(f"{srv.url}/execute?op=relu", content=path.read_bytes(), headers=auth)
    assert reply.status_code == 200, reply.text
    out = safetensors.torch.load(reply.content)
    assert list(out) == ["output"] and torch.equal(out["output"], torch.relu(x))
    # The token from GENIE_TOKEN is enforced.
    for headers in ({}, {"Authorization": "Bearer nope"}):
        denied = httpx.post(f"{srv.url}/execute?op=relu", content=path.read_bytes(), headers=headers)
        assert denied.status_code == 401
        assert denied.json()["error"]["type"] == "unauthorized"
    # --max-body-mb 1 is enforced.
    big = safetensors.torch.save({"x": torch.zeros(300_000)})
    assert httpx.post(f"{srv.url}/echo", content=big, headers=auth).status_code == 413
    stats = httpx.get(f"{srv.url}/stats", headers=auth).json()
    assert stats["errors_by_type"] == {"unauthorized": 2, "payload_too_large": 1}
    assert stats["sessions"]["lease_s"] == 0.5  # --handle-lease-s
    code, output = srv.stop(signal.SIGTERM)
    assert_clean_exit(code, output, signal.SIGTERM)


def test_cli_token_flag_and_sigint(tmp_path: Path, free_port: Callable[[], int]) -> None:
    srv = ServerProcess(free_port(), "--token", "flag-token")
    try:
        health = srv.wait_healthy({"Authorization": "Bearer flag-token"})
        assert health["status"] == "healthy" and health["auth"] is True
        assert httpx.get(f"{srv.url}/health").status_code == 401
    finally:
        code, output = srv.stop(signal.SIGINT)
    assert_clean_exit(code, output, signal.SIGINT)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal on a CPU-only machine")
def test_cli_device_cuda_without_cuda_fails_clearly(free_port: Callable[[], int]) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "genie.runtime.simple_server", "--host", "127.0.0.1",
         "--port", str(free_port()), "--device", "cuda"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "CUDA is not available" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_port_in_use_fails_clearly() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "genie.runtime.simple_server", "--host", "127.0.0.1",
             "--port", str(port), "--device", "cpu"],
            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "address already in use" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_rejects_bad_flags(free_port: Callable[[], int]) -> None:
    bad = (["--max-body-mb", "-1"], ["--device", "tpu"],
           # A budget for bodies in flight smaller than the largest body could never
           # let that body in; refused at start-up, not on the first big request.
           ["--max-body-mb", "2", "--max-inflight-body-mb", "1"],
           ["--body-timeout-s", "0"], ["--max-connections", "0"], ["--debug-delay-ms", "-5"],
           ["--handle-lease-s", "-1"], ["--handle-lease-s", "forever"],
           # A reply budget smaller than the largest reply; one client allowed more
           # threads than there are; limits that must be positive.
           ["--max-body-mb", "64", "--max-inflight-reply-mb", "32"],
           ["--compute-threads", "2", "--client-compute-threads", "3"],
           ["--max-header-kb", "0"], ["--write-timeout-s", "-1"], ["--max-compute-s", "nan"])
    procs = [subprocess.Popen([sys.executable, "-m", "genie.runtime.simple_server",
                               "--port", str(free_port()), *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for args in bad]  # started together: each pays the torch import
    for args, proc in zip(bad, procs, strict=True):
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 2, (args, err)
        assert err.strip(), args
        assert "Traceback" not in err


def test_cli_refuses_an_empty_or_unsendable_token(free_port: Callable[[], int]) -> None:
    # GENIE_TOKEN="" used to start the server with authentication silently off.
    runs = [({"GENIE_TOKEN": ""}, []), ({}, ["--token", ""]), ({}, ["--token", "pässwörd"]),
            ({"GENIE_TOKEN": "with space"}, [])]
    procs = [subprocess.Popen([sys.executable, "-m", "genie.runtime.simple_server",
                               "--port", str(free_port()), "--device", "cpu", *args],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env={**os.environ, **env})
             for env, args in runs]
    for (env, args), proc in zip(runs, procs, strict=True):
        try:
            _, err = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise AssertionError(f"the server started with {env} {args}") from None
        assert proc.returncode == 2, (env, args, err)
        assert "token" in err and "GENIE_TOKEN" in err, err
        assert "Traceback" not in err


@pytest.mark.parametrize("port", ["70000", "65536", "0", "-1", "eighty"])
def test_cli_refuses_a_port_that_is_not_one(port: str, capsys: pytest.CaptureFixture[str]) -> None:
    # uvicorn would take 70000 and listen on 70000 % 65536 = 4464, logging 70000.
    from genie.server.__main__ import main

    with pytest.raises(SystemExit) as info:
        main(["--port", port])
    assert info.value.code == 2
    said = ("'eighty' is not a port number" if port == "eighty"
            else f"{port} is not a TCP port: use 1-65535 (default 8888)")
    assert f"genie-server: error: argument --port: {said}" in capsys.readouterr().err


def test_console_script_help() -> None:
    script = shutil.which("genie-server") or str(Path(sys.executable).parent / "genie-server")
    if not Path(script).exists():
        pytest.skip("genie-server console script is not installed in this environment")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0
    for flag in ("--host", "--port", "--device", "--token", "--max-body-mb", "--max-held-mb",
                 "--max-inflight-body-mb", "--max-inflight-reply-mb", "--max-compute-mb",
                 "--compute-threads", "--client-compute-threads", "--max-compute-s",
                 "--max-gpu-mb", "--body-timeout-s", "--min-body-rate-kb", "--header-timeout-s",
                 "--max-header-kb", "--write-timeout-s", "--max-connections",
                 "--handle-lease-s", "--debug-delay-ms", "--log-level"):
        assert flag in result.stdout
    assert "TEST ONLY" in result.stdout  # the delay flag says what it is for
