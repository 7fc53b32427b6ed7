"""This machine as the guide names it: its hostname, its IP addresses, and whether an
address a user typed (``week1_comprehensive_tests.sh SERVER_IP``) is this machine.

The addresses are what ``hostname -I`` lists (the guide's own command; Linux), else the
addresses the hostname resolves to, loopback left out either way.  Whether an address is
this machine's is asked of the kernel directly: a socket can be bound to an address only
if one of this machine's interfaces (or loopback) has it.  Nothing is sent anywhere.
"""

from __future__ import annotations

import contextlib
import ipaddress
import shutil
import socket
import subprocess

__all__ = ["hostname", "ip_addresses", "is_this_host"]

#: ``hostname -I`` answers at once; a hung resolver must not hold up a test run.
COMMAND_TIMEOUT_S = 5.0


def hostname() -> str:
    return socket.gethostname()


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def ip_addresses() -> list[str]:
    """This machine's non-loopback IP addresses, in the order the system gives them."""
    found: list[str] = []
    tool = shutil.which("hostname")
    if tool is not None:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run([tool, "-I"], capture_output=True, text=True,
                                 timeout=COMMAND_TIMEOUT_S, check=True).stdout
            found = out.split()
    if not found:
        with contextlib.suppress(OSError):
            found = [str(info[4][0]) for info in socket.getaddrinfo(hostname(), None)]
    unique: list[str] = []
    for address in found:
        if address not in unique and not _is_loopback(address):
            unique.append(address)
    return unique


def _bindable(family: socket.AddressFamily, sockaddr: tuple[object, ...]) -> bool:
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((sockaddr[0], 0, *sockaddr[2:]))  # port 0; an IPv6 scope kept
        except OSError:
            return False
    return True


def is_this_host(target: str) -> bool:
    """Whether ``target`` (an address or a name; no port) is this machine."""
    name = target.strip().strip("[]")
    if not name:
        return False
    if name.lower() in ("localhost", hostname().lower()):
        return True
    try:
        infos = socket.getaddrinfo(name, None, type=socket.SOCK_DGRAM)
    except OSError:  # a name that does not resolve is nobody, least of all us
        return False
    return any(_bindable(info[0], tuple(info[4])) for info in infos)
