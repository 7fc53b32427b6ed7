"""Where figures were measured (``location.py``): loopback, this host's own address, or across
the network, and this host's end of the route.  Only addresses are looked at: a UDP socket's
``connect`` picks a route without sending anything, and a bind tells an own address."""

from __future__ import annotations

import socket

import pytest

from pytest_genie.host import ip_addresses
from pytest_genie.location import where_measured


@pytest.mark.parametrize("url", ["http://127.0.0.1:8888", "http://127.9.9.9:1", "http://[::1]:8888"])
def test_a_loopback_server_is_on_this_host(url: str) -> None:
    if "[" in url and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    where = where_measured(url, "box")
    assert (where["path"], where["same_host"], where["host"]) == ("loopback", True, "box")
    assert where["server_url"] == url and "loopback on box" in where["label"]


def test_an_address_of_this_host_is_the_same_host_without_loopback() -> None:
    own = [a for a in ip_addresses() if ":" not in a]
    if not own:
        pytest.skip("this host has no non-loopback IPv4 address")
    where = where_measured(f"http://{own[0]}:8888", "box")
    assert (where["path"], where["same_host"], where["server_address"]) == ("same_host", True, own[0])


def test_an_address_elsewhere_is_across_the_network_from_this_host() -> None:
    where = where_measured("http://198.51.100.77:8888", "box")  # TEST-NET-2: never a real host
    assert where["path"] == "network" and where["same_host"] is False
    assert where["server_address"] == "198.51.100.77"
    assert where["label"] == f"across the network from box ({where['address'] or 'no route'})"


def test_no_server_is_said_so() -> None:
    where = where_measured(None, "box")
    assert where["path"] is None and where["label"] == "on box, no server"
