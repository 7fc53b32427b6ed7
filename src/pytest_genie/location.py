"""Where a result file's figures were measured: this host and its path to the server.

A round trip measured on the server node over its own loopback and one measured across a
network are different quantities; a report that compares them must know which is which.
So every result file's ``test_info`` carries ``measured`` (beside the original scripts'
``server_info`` / ``client_info``, which list this host's addresses)::

    {"host": "client-7", "address": "10.210.0.2", "server_url": "http://10.210.0.1:8888",
     "server_address": "10.210.0.1", "same_host": false, "path": "network",
     "label": "across the network from client-7 (10.210.0.2)"}

``path`` is ``loopback`` (the server's address is a loopback one), ``same_host`` (one of
this host's own addresses, not loopback: still no network in between) or ``network``;
``None`` with no server, or one whose name does not resolve.  ``address`` is this host's
end of the route to the server, found without sending a packet (a UDP socket's
``connect`` only picks the route); whether an address is this host's is
``pytest_genie.host.is_this_host``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from typing import Any
from urllib.parse import urlsplit

from pytest_genie import host as this_host

__all__ = ["where_measured"]


def _route_source(server_ip: str, port: int) -> str | None:
    """This host's address on the route to ``server_ip``, or None when there is no route."""
    family = socket.AF_INET6 if ":" in server_ip else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.connect((server_ip, port))
            return str(probe.getsockname()[0])
    except OSError:
        return None


def _resolve(name: str, port: int) -> str | None:
    with contextlib.suppress(OSError, UnicodeError):
        for *_, sockaddr in socket.getaddrinfo(name, port, proto=socket.IPPROTO_TCP):
            return str(sockaddr[0])
    return None


def where_measured(server_url: str | None, hostname: str | None = None) -> dict[str, Any]:
    """The ``measured`` entry of ``test_info`` for figures taken from this host against
    ``server_url`` (see the module docstring)."""
    host = hostname or this_host.hostname()
    where: dict[str, Any] = {"host": host, "address": None, "server_url": server_url,
                             "server_address": None, "same_host": None, "path": None,
                             "label": f"on {host}, no server"}
    parts = urlsplit(server_url) if server_url else None
    if parts is None or not parts.hostname or not parts.port:
        return where
    server_ip = _resolve(parts.hostname, parts.port)
    if server_ip is None:
        where["label"] = f"from {host} to {parts.hostname}, which does not resolve"
        return where
    source = _route_source(server_ip, parts.port)
    if ipaddress.ip_address(server_ip.split("%")[0]).is_loopback:
        path, label = "loopback", f"loopback on {host}: client and server on one host"
    elif this_host.is_this_host(server_ip):
        path, label = "same_host", f"on {host} to its own address {server_ip}: no network in between"
    else:
        path, label = "network", f"across the network from {host} ({source or 'no route'})"
    where.update(address=source, server_address=server_ip, same_host=path != "network", path=path,
                 label=label)
    return where
