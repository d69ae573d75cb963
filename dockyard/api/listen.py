"""Listen addresses (`-H`): the one parser that both the TLS guard and the listener use.

Two parsers once disagreed: the guard matched the literal prefix `tcp://` while the listener used
`urlsplit`, which lowercases the scheme and drops userinfo, so `TCP://0.0.0.0:P` and
`tcp://127.0.0.1@0.0.0.0:P` served plain TCP on every address. The rules are dockerd's
(`opts/hosts.go`: `ParseDaemonHost`, `ParseTCPAddr`), with its error wording, plus what Go's URL
parser lets through there and we refuse: userinfo, a query or a fragment. Port 0 (any free port)
is allowed where dockerd refuses it: the tests listen that way.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass

from dockyard.errors import InvalidParameter

DEFAULT_UNIX_SOCKET = "/run/dockyard.sock"
DEFAULT_TCP_HOST = "localhost"  # dockerd's DefaultHTTPHost: `-H tcp://:2375` listens on loopback
DEFAULT_PORT, DEFAULT_TLS_PORT = 2375, 2376
_HOSTNAME = re.compile(r"[A-Za-z0-9._-]*")


@dataclass(frozen=True)
class ListenAddress:
    scheme: str  # "unix" or "tcp"
    host: str = ""  # tcp: a name or an IP address (no brackets)
    port: int | None = None  # tcp: None until defaulted by the TLS setting (port_for); 0 picks a free one
    path: str = ""  # unix: the socket's path

    def port_for(self, tls: bool) -> int:
        if self.port is not None:
            return self.port
        return DEFAULT_TLS_PORT if tls else DEFAULT_PORT

    @property
    def loopback(self) -> bool:
        """True only when every address this can bind is a loopback one. A name other than
        `localhost` may resolve anywhere, and inet_aton forms like `127.1` are names to us: neither is."""
        if self.scheme != "tcp":
            return True
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def display(self, tls: bool = False) -> str:
        if self.scheme == "unix":
            return f"unix://{self.path}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"tcp://{host}:{self.port_for(tls)}"


def parse_listen_address(address: str) -> ListenAddress:
    """`unix:///path`, `tcp://host:port`, or `host:port` (tcp). InvalidParameter otherwise."""
    addr = address.strip()
    proto, sep, rest = addr.partition("://")
    if not sep:
        proto, rest = "tcp", addr
    if proto == "unix":
        if "://" in rest:
            raise InvalidParameter(f"invalid bind address ({address}): invalid unix address: {rest}")
        return ListenAddress("unix", path=rest or DEFAULT_UNIX_SOCKET)
    if proto != "tcp" or not addr:  # the scheme is case-sensitive, as in dockerd: `TCP://` is refused
        raise InvalidParameter(f"invalid bind address ({address}): unsupported proto '{proto if sep else ''}'")
    return _parse_tcp(address, rest)


def _parse_tcp(address: str, rest: str) -> ListenAddress:
    def bad(reason: str) -> InvalidParameter:
        return InvalidParameter(f"invalid bind address ({address}): {reason}")

    if "://" in rest:
        raise bad("unsupported proto")
    if "@" in rest:
        raise bad("should not contain user information")
    if "/" in rest:
        raise bad("should not contain a path element")
    if "?" in rest or "#" in rest:
        raise bad("should not contain a query or fragment")
    if rest.startswith("["):
        end = rest.find("]")
        if end < 0:
            raise bad("missing ']' in address")
        host, tail = rest[1:end], rest[end + 1:]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise bad(f"invalid IPv6 address {host!r}") from None
        if tail and not tail.startswith(":"):
            raise bad(f"unexpected {tail!r} after the address")
        port_s = tail[1:]
    else:
        host, colon, port_s = rest.partition(":")
        if ":" in port_s:
            raise bad("too many colons in address (put an IPv6 address in brackets)")
        if not _HOSTNAME.fullmatch(host):
            raise bad(f"invalid character in host name {host!r}")
        if not colon:
            port_s = ""
    port = None
    if port_s:  # dockerd refuses 0; tests use it for a free port, which is no risk
        if not port_s.isdigit() or not 0 <= int(port_s) < 65536:
            raise bad(f"invalid port: {port_s}")
        port = int(port_s)
    return ListenAddress("tcp", host=host or DEFAULT_TCP_HOST, port=port)
