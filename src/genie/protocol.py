"""Constants both ends of the wire agree on."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["DEFAULT_PORT", "HEALTHY", "PROTOCOL_VERSION", "SAFETENSORS_MEDIA_TYPE",
           "SESSION_HEADER", "SESSION_ID_CHARS", "SESSION_ID_MAX", "is_healthy",
           "is_session_id", "normalize_url"]

#: Bumped when a request or reply changes incompatibly; /health reports it and the
#: client refuses a server whose major version differs.
PROTOCOL_VERSION = "1.0"
#: There is no registered media type for safetensors; octet-stream is what curl,
#: browsers and proxies handle without surprises.
SAFETENSORS_MEDIA_TYPE = "application/octet-stream"
DEFAULT_PORT = 8888
#: ``/health``'s ``status`` when the server is serving: the original server's word, which
#: users' scripts grep for (``grep -q '"status":"healthy"'``).
HEALTHY = "healthy"
#: What earlier Genie servers answered instead; still accepted from them.
_OLDER_HEALTHY = "ok"


def is_healthy(health: Mapping[str, Any]) -> bool:
    """Whether a ``/health`` reply says the server is serving (this version's word or
    the one older Genie servers used)."""
    return health.get("status") in (HEALTHY, _OLDER_HEALTHY)


#: The request header naming the client session a request belongs to; the handles a
#: request creates belong to that session (docs/protocol.md, "Sessions").
SESSION_HEADER = "x-genie-session"
#: A session id is 1 to ``SESSION_ID_MAX`` of these characters (safe in a URL path and a header).
SESSION_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
SESSION_ID_MAX = 128


def is_session_id(text: str) -> bool:
    """Whether ``text`` may name a session (``SESSION_ID_CHARS``, at most ``SESSION_ID_MAX``)."""
    return 0 < len(text) <= SESSION_ID_MAX and set(text) <= SESSION_ID_CHARS


def normalize_url(target: str, *, default_port: int = DEFAULT_PORT) -> str:
    """``HOST``, ``HOST:PORT``, ``[v6]:PORT`` or ``http(s)://HOST[:PORT]`` -> base URL.

    A missing port is ``default_port`` (8888) whatever the scheme.

    Raises ``ValueError`` with the accepted forms when ``target`` is none of them.
    """
    from urllib.parse import urlsplit

    forms = "expected HOST, HOST:PORT or http(s)://HOST:PORT"
    text = target.strip()
    scheme, sep, rest = text.partition("://")
    # Strip trailing slashes after the scheme only: "http://" must not become "http:".
    text = f"{scheme}{sep}{rest.rstrip('/')}" if sep else text.rstrip("/")
    if not text:
        raise ValueError(f"empty server address; {forms}")
    if sep and not rest.strip("/"):
        raise ValueError(f"{target!r}: no host; {forms}")
    if "://" not in text:
        if text.count(":") > 1 and not text.startswith("["):
            text = f"[{text}]"  # a bare IPv6 literal such as ::1
        text = f"http://{text}"
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https"):
        raise ValueError(f"{target!r}: scheme must be http or https; {forms}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{target!r}: no path, query or credentials allowed; {forms}")
    try:
        host, port = parts.hostname, parts.port
    except ValueError as exc:  # port out of range or not a number
        raise ValueError(f"{target!r}: {exc}; {forms}") from None
    if not host:
        raise ValueError(f"{target!r}: no host; {forms}")
    if port is None:
        port = default_port  # also for https: Genie's port, not the scheme's
    if port == 0:
        raise ValueError(f"{target!r}: port 0 is not a server port; {forms}")
    shown = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{shown}:{port}"
