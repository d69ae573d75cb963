"""Which local sockets the kernel has bound (/proc/net/udp, /proc/net/tcp): read-only, for `explain`."""

from __future__ import annotations

import ipaddress
import socket
import struct


def _bound(table: str, ip: str, port: int) -> bool:
    want = f"{struct.unpack('<I', socket.inet_aton(ip))[0]:08X}:{port:04X}"
    try:
        with open(f"/proc/net/{table}") as f:
            next(f, None)  # the header
            return any(line.split()[1] == want for line in f)
    except OSError:
        return False


def listening(ip: str, port: int) -> dict[str, bool]:
    """{"udp": bound, "tcp": bound} for an IPv4 address and port, in the daemon's network namespace."""
    ipaddress.IPv4Address(ip)  # ValueError for anything else
    return {"udp": _bound("udp", ip, port), "tcp": _bound("tcp", ip, port)}
