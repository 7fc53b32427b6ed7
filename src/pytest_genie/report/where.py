"""Where a result file's figures were measured, as the report reads it: one :class:`Where` per file.

The plugin writes it into every result file's ``test_info.measured`` (``pytest_genie.location``:
this host, its address on the route to the server, the server's URL and address, the path
``loopback`` / ``same_host`` / ``network``, and a label such as "across the network from
client-7 (10.210.0.2)").  Each file holds the figures of one host against one server, so the
file's entry says where every figure in it was measured.  Files written before that entry, or by
the original scripts, say only their host name and server URL: those are the path, its kind
unknown.

Two figures are *on the same path* when they were measured from the same host to the same server
URL (:meth:`Where.same_path`).  The report computes a figure from two others (an overhead, an
efficiency, a break-even size) only from figures on one path, and labels every group of figures
with its path, so a round trip the server node measured over its own loopback never sits
unlabelled beside, or is subtracted from, one a client measured across the network.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pytest_genie.checks import Key

__all__ = ["PATH_NOT_RECORDED", "Where", "where_label", "where_of"]

#: What a figure's path reads as when its result file recorded none.
PATH_NOT_RECORDED = "path not recorded"


@dataclass(frozen=True)
class Where:
    """One result file's measurement path."""

    host: str | None
    server_url: str | None
    #: ``loopback``, ``same_host``, ``network``; None when the file does not say.
    path: str | None
    label: str

    def same_path(self, other: Where | None) -> bool:
        """Whether figures measured here and at ``other`` were measured alike: the same host
        talking to the same server URL (an unknown host is like nothing)."""
        return (other is not None and self.host is not None
                and (self.host, self.server_url) == (other.host, other.server_url))

    def to_dict(self) -> dict[str, Any]:
        return {"host": self.host, Key.SERVER_URL: self.server_url, "path": self.path, "label": self.label}


def where_of(test_info: dict[str, Any]) -> Where:
    """The path of a file's figures, from its ``test_info`` (``measured``, else hostname and URL)."""
    host = test_info.get("hostname")
    url = test_info.get(Key.SERVER_URL)
    measured = test_info.get(Key.MEASURED)
    host = str(host) if host else None
    url = str(url) if url else None
    if isinstance(measured, dict) and measured.get("label"):
        path = measured.get("path")
        return Where(host=str(measured.get("host") or host or "") or None,
                     server_url=str(measured.get(Key.SERVER_URL) or url or "") or None,
                     path=str(path) if path else None, label=str(measured["label"]))
    label = (f"on {host or 'an unrecorded host'}" + (f" against {url}" if url else "")
             + f" ({PATH_NOT_RECORDED})")
    return Where(host=host, server_url=url, path=None, label=label)


def where_label(where: dict[str, Any] | None) -> str:
    """A path's label (``Where.to_dict``), or why there is none."""
    return str((where or {}).get("label") or PATH_NOT_RECORDED)
