"""This machine as the guide names it (``host.py``): its addresses, and whether an
address a user typed is this machine (what ``week1_comprehensive_tests.sh`` decides by)."""

from __future__ import annotations

import ipaddress
import socket

import pytest

from pytest_genie.host import hostname, ip_addresses, is_this_host


def test_addresses_are_this_machines_and_not_loopback() -> None:
    addresses = ip_addresses()
    for address in addresses:
        assert not ipaddress.ip_address(address.split("%")[0]).is_loopback
        assert is_this_host(address), address  # each one can be bound here
    assert hostname() == socket.gethostname()


@pytest.mark.parametrize("target", ["127.0.0.1", "127.0.0.2", "localhost", "LOCALHOST",
                                    "[::1]", "::1"])
def test_loopback_is_this_host(target: str) -> None:
    if ":" in target and not socket.has_ipv6:
        pytest.skip("no IPv6 on this machine")
    assert is_this_host(target)


def test_this_hostname_is_this_host() -> None:
    assert is_this_host(socket.gethostname())


@pytest.mark.parametrize("target", ["198.51.100.77", "203.0.113.9", "", "  "])
def test_other_addresses_are_not(target: str) -> None:
    # Documentation ranges (RFC 5737): assigned to no machine, so never to this one.
    assert not is_this_host(target)
