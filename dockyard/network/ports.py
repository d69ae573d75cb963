"""Host port reservation: a bound (not listening) socket per published port keeps other programs
off the port while our DNAT rule owns it, the way dockerd holds its ports."""

from __future__ import annotations

import errno
import socket

from dockyard import trace
from dockyard.network.rootlesskit import PortDriver

# Rootless (issue 17): the host side of each published port is RootlessKit's (network/rootlesskit.py).
_driver: PortDriver | None = None


def use_port_driver(driver: PortDriver | None) -> None:
    global _driver
    _driver = driver


class PortInUse(Exception):
    pass


class ForwardedSocket(socket.socket):
    """A held port whose host side RootlessKit listens on; closing it stops that listener too."""

    port_id: int | None = None

    def close(self) -> None:
        pid, self.port_id = self.port_id, None
        if pid is not None and _driver is not None:
            try:
                _driver.remove(pid)
            except OSError:
                pass  # RootlessKit gone (daemon stopping): its listeners went with it
        super().close()


def reserve(proto: str, host_ip: str, port: int, target: tuple[str, str, int] | None = None) -> socket.socket:
    """A socket bound to host_ip:port (port 0: an ephemeral one); PortInUse when taken. target: the
    container's netns path, address and port, for a rootless port driver that dials there."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    driver = _driver
    s = ForwardedSocket(socket.AF_INET, kind) if driver is not None else socket.socket(socket.AF_INET, kind)
    with trace.step("socket", f"bind {proto} {host_ip or '0.0.0.0'}:{port} (held, never listened on)",
                    "-p: the daemon holds the host port so no other program can take it; the DNAT rule, "
                    "not this socket, carries the traffic") as st:
        try:
            s.bind((host_ip or "0.0.0.0", port))
        except OSError as e:
            s.close()
            if e.errno == errno.EADDRINUSE:
                raise PortInUse(str(e)) from None
            raise
        st.result = "bound to {}:{}".format(*s.getsockname())
    s.set_inheritable(False)
    if isinstance(s, ForwardedSocket) and driver is not None:
        try:
            s.port_id = driver.add(proto, host_ip, s.getsockname()[1], target)
        except BaseException:
            s.close()
            raise
    return s


def parse_host_ports(spec: str) -> list[int]:
    """"" → [0] (ephemeral), "8080" → [8080], "8000-8010" → candidates in order."""
    spec = spec.strip()
    if not spec:
        return [0]
    lo, _, hi = spec.partition("-")
    try:
        first, last = int(lo), int(hi or lo)
    except ValueError:
        raise ValueError(f"invalid host port: {spec}") from None
    if not (0 <= first <= last <= 65535):
        raise ValueError(f"invalid host port: {spec}")
    return list(range(first, last + 1))


def split_port_key(key: str) -> tuple[int, str]:
    """"80/tcp" → (80, "tcp"); "80" → (80, "tcp")."""
    port, _, proto = key.partition("/")
    proto = (proto or "tcp").lower()
    if proto not in ("tcp", "udp", "sctp"):
        raise ValueError(f"invalid proto: {proto}")
    try:
        return int(port), proto
    except ValueError:
        raise ValueError(f"invalid port: {key}") from None
