"""Connections to an Engine API host: unix:// and tcp:// (TLS optional).

unix:// and plain tcp:// speak HTTP through `plainhttp` (http.client's imports, email.* and ssl, cost
every CLI command 25-40 ms); TLS and ssh go through the stdlib's http.client, imported when used.
"""

from __future__ import annotations

import _socket  # socket.py's enum conversions cost ~3 ms of every command's start-up
import os

from dockyard.client.plainhttp import PlainHTTPConnection

TYPE_CHECKING = False  # typing's, without importing typing (~3 ms of every command's start-up)
if TYPE_CHECKING:
    import http.client
    import socket
    import ssl

    Connection = PlainHTTPConnection | http.client.HTTPConnection

DEFAULT_HOST = "unix:///run/dockyard.sock"


def default_host() -> str:
    """Where to go without -H, $DOCKER_HOST or a context: our rootful socket, except for an ordinary user
    whose own rootless daemon listens (issue 17): $XDG_RUNTIME_DIR/dockyard.sock, when it is theirs and
    /run/dockyard.sock is not. (Here, not in util/rootless.py: every command's start-up pays imports.)"""
    uid = os.getuid()
    if uid == 0:
        return DEFAULT_HOST
    path = (os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{uid}") + "/dockyard.sock"
    try:
        st = os.stat(path)
    except OSError:
        return DEFAULT_HOST
    if st.st_uid != uid or (st.st_mode & 0o170000) != 0o140000:  # not the user's, or not a socket
        return DEFAULT_HOST
    try:
        if os.stat(DEFAULT_HOST[len("unix://"):]).st_uid == uid:
            return DEFAULT_HOST
    except OSError:
        pass
    return f"unix://{path}"


class Host:
    """Where the daemon listens. A plain class: a dataclass or NamedTuple costs every CLI command's
    start-up (importing dataclasses; building the named tuple's code)."""

    __slots__ = ("scheme", "address", "port")

    def __init__(self, scheme: str, address: str, port: int = 0) -> None:
        self.scheme = scheme  # "unix" | "tcp" | "ssh"
        self.address = address  # socket path, host, or the whole ssh:// URL
        self.port = port

    def _key(self) -> tuple[str, str, int]:
        return self.scheme, self.address, self.port

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Host) and other._key() == self._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Host(scheme={self.scheme!r}, address={self.address!r}, port={self.port!r})"

    @property
    def url(self) -> str:
        if self.scheme == "ssh":
            return self.address
        return f"unix://{self.address}" if self.scheme == "unix" else f"tcp://{self.address}:{self.port}"


def parse_host(host: str | None, tls: bool = False) -> Host:
    """`unix:///path`, `tcp://h[:p]`, `h:p`, `/path`, `ssh://[user@]h[:p]`; None → $DOCKER_HOST or our socket.

    A tcp host without a port gets docker's convention: 2376 with TLS, 2375 without.
    """
    host = host or os.environ.get("DOCKER_HOST") or default_host()
    if host.startswith("unix://"):
        return Host("unix", host[len("unix://") :])
    if host.startswith("/"):
        return Host("unix", host)
    if host.startswith("ssh://"):
        from dockyard.client.ssh import SSHTarget

        SSHTarget.parse(host)  # fail early on a bad URL
        return Host("ssh", host)
    if "://" in host and not host.startswith(("tcp://", "http://", "https://")):
        raise ValueError(f"invalid bind address format: {host}")
    for prefix in ("tcp://", "http://", "https://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
            break
    host = host.rstrip("/")
    default_port = 2376 if tls else 2375
    if host.startswith("[") and "]" in host:  # [v6]:port
        name, _, rest = host[1:].partition("]")
        return Host("tcp", name, int(rest[1:]) if rest.startswith(":") and rest[1:] else default_port)
    name, sep, port = host.rpartition(":")
    if not sep:
        return Host("tcp", host or "127.0.0.1", default_port)
    return Host("tcp", name or "127.0.0.1", int(port) if port else default_port)


def open_connection(host: Host, tls: ssl.SSLContext | None, timeout: float | None) -> Connection:
    if host.scheme == "unix":
        return PlainHTTPConnection(lambda: _unix_socket(host.address), timeout=timeout)
    if host.scheme == "tcp" and tls is None:
        name = f"[{host.address}]" if ":" in host.address else host.address
        return PlainHTTPConnection(lambda: _tcp_socket(host, timeout), timeout=timeout,
                                   host_header=name if host.port == 80 else f"{name}:{host.port}")
    import http.client

    if host.scheme == "ssh":
        return _ssh_connection(host.address, timeout)
    return http.client.HTTPSConnection(host.address, host.port, timeout=timeout, context=tls)


def _unix_socket(path: str) -> _socket.socket:
    sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
    try:
        sock.connect(path)
    except OSError:
        sock.close()
        raise
    return sock


def _tcp_socket(host: Host, timeout: float | None) -> socket.socket:
    import socket

    sock = socket.create_connection((host.address, host.port), timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # as http.client: small requests go out at once
    return sock


def _ssh_connection(url: str, timeout: float | None) -> http.client.HTTPConnection:
    import http.client

    class SSHHTTPConnection(http.client.HTTPConnection):
        """HTTP through `ssh ... dial-stdio`; the timeout applies to reads as on other transports."""

        def connect(self) -> None:
            from dockyard.client.ssh import SSHTarget, dial

            sock = dial(SSHTarget.parse(url))
            sock.settimeout(self.timeout)
            self.sock = sock

    return SSHHTTPConnection("localhost", timeout=timeout)


def open_socket(host: Host, tls: ssl.SSLContext | None) -> socket.socket | _socket.socket:
    """A plain connected socket, for hijacked requests (attach, exec start)."""
    if host.scheme == "unix":
        return _unix_socket(host.address)
    if host.scheme == "ssh":
        from dockyard.client.ssh import SSHTarget, dial

        return dial(SSHTarget.parse(host.address))
    import socket

    sock = socket.create_connection((host.address, host.port))
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname=host.address)
    return sock


def tls_context_from_env(tls: bool | ssl.SSLContext | None) -> ssl.SSLContext | None:
    """DOCKER_TLS_VERIFY / DOCKER_CERT_PATH like docker; an explicit context wins."""
    if tls is None and not os.environ.get("DOCKER_TLS_VERIFY"):
        return None
    if tls is False:
        return None
    import ssl

    if isinstance(tls, ssl.SSLContext):
        return tls
    certs = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    cert, key = os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem")
    if os.path.exists(cert):
        ctx.load_cert_chain(cert, key)
    return ctx
