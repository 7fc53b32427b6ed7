"""The server's command line: ``genie-server`` / ``python -m genie.server`` (also
``python -m genie.runtime.simple_server``, the guide's spelling).

The command-line front of ``genie.server.create_app``: parse flags (one per
``ServerConfig`` limit), configure logging once, hand the app to uvicorn (with uvloop
when installed, and Genie's httptools protocol: ``genie.server.connections``).
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Callable
from typing import Any

import uvicorn

from genie.errors import ConfigurationError
from genie.server.app import create_app
from genie.server.config import DEFAULT_HANDLE_LEASE_S, DEFAULT_PORT, DEFAULTS, ServerConfig
from genie.server.connections import uvicorn_settings

__all__ = ["build_parser", "main"]


def _positive_number(unit: str, *, zero: bool = False) -> Callable[[str], float]:
    """An argparse ``type=`` for a finite number > 0 of ``unit`` (>= 0 with ``zero``; NaN and
    inf refused)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of {unit}") from None
        if not ((value >= 0 if zero else value > 0) and math.isfinite(value)):
            raise argparse.ArgumentTypeError(f"must be a finite number {'>=' if zero else '>'} 0")
        return value

    return parse


_positive_mb = _positive_number("MiB")
_positive_kb = _positive_number("KiB")
_positive_seconds = _positive_number("seconds")
_non_negative_ms = _positive_number("ms", zero=True)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError("must be >= 1")
    return value


def _port(text: str) -> int:
    """A TCP port to listen on.  uvicorn would take 70000 and listen on 70000 % 65536."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a TCP port: use 1-65535 "
                                         f"(default {DEFAULT_PORT})")
    return value


def _lease_seconds(text: str) -> float | None:
    """``--handle-lease-s``: seconds >= 0, where 0 or ``off`` turns the lease off (None)."""
    if text.strip().lower() == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds or 'off'") from None
    if not (value >= 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError("must be a finite number of seconds >= 0, or 'off'")
    return value or None


#: (flag, type, help) of every limit, and the test-only delay; each flag sets the
#: ServerConfig field of its name.
_LIMITS: list[tuple[str, Callable[[str], Any], str]] = [
    ("--max-body-mb", _positive_mb, "largest request body accepted, MiB"),
    ("--max-held-mb", _positive_mb, "budget for tensors held as handles, MiB (each also "
                                    "counts 1 KiB)"),
    ("--max-inflight-body-mb", _positive_mb,
     "budget for request bodies received or in use at once, and for parsing them, MiB; "
     "past it 503 busy (default: 2 x --max-body-mb)"),
    ("--max-inflight-reply-mb", _positive_mb,
     "budget for replies encoded and not yet sent, MiB; past it 503 busy (default: the "
     "larger of 2 x --max-body-mb and --max-compute-mb)"),
    ("--max-compute-mb", _positive_mb,
     "memory one request may compute with: its live results, and its running op's "
     "result and working memory, MiB; past it 422 (default: --max-held-mb)"),
    ("--compute-threads", _positive_int, "requests computing at once"),
    ("--client-compute-threads", _positive_int,
     "of those, how many one client (X-Genie-Session, else its address) may run at once "
     "(default: one less than --compute-threads, at least 1)"),
    ("--max-compute-s", _positive_seconds,
     "how long one request may compute, seconds (checked between graph nodes); past it "
     "422 compute_timeout"),
    ("--max-gpu-mb", _positive_mb,
     "cap on PyTorch's CUDA memory on the server's device, MiB; past it 503 "
     "out_of_memory (default: the whole device)"),
    ("--body-timeout-s", _positive_seconds,
     "refuse a request whose body sends no byte for this long, seconds"),
    ("--min-body-rate-kb", _positive_kb,
     "after --body-timeout-s, refuse a body arriving slower than this on average, KiB/s"),
    ("--header-timeout-s", _positive_seconds,
     "close a connection whose request head does not arrive within this, seconds (408)"),
    ("--max-header-kb", _positive_kb, "largest request head (request line and headers), KiB "
                                      "(431)"),
    ("--write-timeout-s", _positive_seconds,
     "drop a connection whose client takes no reply bytes for this long, seconds"),
    ("--max-connections", _positive_int,
     "open connections (or running requests) past which new requests are answered 503"),
    ("--debug-delay-ms", _non_negative_ms,
     "TEST ONLY: delay every request by this many ms, to stand up a deliberately slow "
     "server (e.g. to prove a regression gate fails); never use in service (default: 0)"),
]


def _field(flag: str) -> str:
    return flag.removeprefix("--").replace("-", "_")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="genie-server",
        description="Serve PyTorch ops over HTTP + safetensors on this machine's GPU (or CPU).")
    p.add_argument("--host", default="127.0.0.1",
                   help="interface to bind; 0.0.0.0 to accept clients from the network "
                        "(default: %(default)s)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT,
                   help="TCP port to listen on, 1-65535 (default: %(default)s)")
    p.add_argument("--device", default="auto",
                   help="auto | cpu | cuda | cuda:N; auto picks cuda:0 when present")
    p.add_argument("--token", default=os.environ.get("GENIE_TOKEN"),
                   help="require 'Authorization: Bearer TOKEN' (default: $GENIE_TOKEN); "
                        "visible ASCII, not empty")
    for flag, kind, text in _LIMITS:
        default = DEFAULTS[_field(flag)]
        p.add_argument(flag, type=kind, default=default,
                       help=text if "default:" in text else f"{text} (default: %(default)s)")
    p.add_argument("--handle-lease-s", type=_lease_seconds, default=DEFAULT_HANDLE_LEASE_S,
                   help="free the handles of a client session that sent no request for this "
                        "long, seconds; 0 or 'off' never frees them (default: %(default)s)")
    p.add_argument("--log-level", default="info",
                   choices=["critical", "error", "warning", "info", "debug"])
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = ServerConfig(device=args.device, token=args.token,
                              handle_lease_s=args.handle_lease_s,
                              **{_field(flag): getattr(args, _field(flag))
                                 for flag, _, _ in _LIMITS})
        app = create_app(config)
    except (ConfigurationError, ValueError) as exc:
        print(f"genie-server: {exc}", file=sys.stderr)
        return 2
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level,
                log_config=None, timeout_graceful_shutdown=10, **uvicorn_settings(config))
    return 0


if __name__ == "__main__":
    sys.exit(main())
