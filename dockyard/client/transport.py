"""Connections to an Engine API host: unix:// and tcp:// (TLS optional).

Built on the stdlib's http.client rather than httpx: the CLI runs often and importing httpx
costs ~100 ms per invocation, while http.client is already needed for the hijacked streams.
"""

from __future__ import annotations

import http.client
import os
import socket
import ssl
from dataclasses import dataclass

DEFAULT_HOST = "unix:///run/dockyard.sock"


@dataclass(frozen=True)
class Host:
    scheme: str  # "unix" | "tcp"
    address: str  # socket path, or host
    port: int = 0

    @property
    def url(self) -> str:
        return f"unix://{self.address}" if self.scheme == "unix" else f"tcp://{self.address}:{self.port}"


def parse_host(host: str | None) -> Host:
    """`unix:///path`, `tcp://h:p`, `h:p`, `/path`; None → $DOCKER_HOST or our default socket."""
    host = host or os.environ.get("DOCKER_HOST") or DEFAULT_HOST
    if host.startswith("unix://"):
        return Host("unix", host[len("unix://") :])
    if host.startswith("/"):
        return Host("unix", host)
    if host.startswith("ssh://"):
        raise ValueError("ssh:// hosts are not supported yet")
    for prefix in ("tcp://", "http://", "https://"):
        if host.startswith(prefix):
            host = host[len(prefix) :]
            break
    host = host.rstrip("/")
    name, _, port = host.rpartition(":")
    if not name:
        return Host("tcp", port or "127.0.0.1", 2375)
    return Host("tcp", name.strip("[]"), int(port))


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float | None = None) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(self.timeout)
        sock.connect(self.unix_path)
        self.sock = sock


def open_connection(
    host: Host, tls: ssl.SSLContext | None, timeout: float | None
) -> http.client.HTTPConnection:
    if host.scheme == "unix":
        return UnixHTTPConnection(host.address, timeout=timeout)
    if tls is not None:
        return http.client.HTTPSConnection(host.address, host.port, timeout=timeout, context=tls)
    return http.client.HTTPConnection(host.address, host.port, timeout=timeout)


def open_socket(host: Host, tls: ssl.SSLContext | None) -> socket.socket:
    """A plain connected socket, for hijacked requests (attach, exec start)."""
    if host.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(host.address)
        return sock
    sock = socket.create_connection((host.address, host.port))
    if tls is not None:
        return tls.wrap_socket(sock, server_hostname=host.address)
    return sock


def tls_context_from_env(tls: bool | ssl.SSLContext | None) -> ssl.SSLContext | None:
    """DOCKER_TLS_VERIFY / DOCKER_CERT_PATH like docker; an explicit context wins."""
    if isinstance(tls, ssl.SSLContext):
        return tls
    if tls is None and not os.environ.get("DOCKER_TLS_VERIFY"):
        return None
    if tls is False:
        return None
    certs = os.environ.get("DOCKER_CERT_PATH") or os.path.expanduser("~/.docker")
    ctx = ssl.create_default_context(cafile=os.path.join(certs, "ca.pem"))
    cert, key = os.path.join(certs, "cert.pem"), os.path.join(certs, "key.pem")
    if os.path.exists(cert):
        ctx.load_cert_chain(cert, key)
    return ctx
