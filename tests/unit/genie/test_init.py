"""The public package (genie/__init__.py): ``import genie`` is a client import, with no
server code in it; the server's names resolve on first use."""

from __future__ import annotations

import json
import subprocess
import sys

SERVER_LIBRARIES = ("starlette", "uvicorn", "prometheus_client")


def _modules_after(code: str) -> list[str]:
    """The server libraries loaded once ``code`` has run, in a fresh interpreter (this
    one has them all loaded already)."""
    loaded = "{m.split('.')[0] for m in sys.modules}"
    probe = (f"import sys\n{code}\nimport json\n"
             f"print(json.dumps(sorted({loaded} & {set(SERVER_LIBRARIES)!r})))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True)
    return list(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_genie_loads_no_server_code() -> None:
    assert _modules_after("import genie; genie.Client; genie.LazyTensor") == []


def test_server_names_resolve_on_first_use() -> None:
    # Asking for the app builder is what brings the server's libraries in.
    loaded = _modules_after("import genie; genie.create_app, genie.ServerConfig")
    assert {"starlette", "prometheus_client"} <= set(loaded), loaded



def test_import_genie_leaves_torch_compile_unloaded() -> None:
    # torch._dynamo costs about a second to import; a program that only sends ops with
    # genie.Client must not pay it (torch loads it itself for the first meta kernel).
    probe = "import sys, genie\ngenie.Client\nprint('torch._dynamo' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=120, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stderr
