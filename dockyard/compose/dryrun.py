"""--dry-run: a client that reads from the daemon but only pretends to change anything.

Writes answer with made-up ids; reads of those ids answer as a running, healthy container, so a
dry-run `up` walks its whole plan (dependencies included) and prints each step, as Compose v2 does.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterable, Iterator
from typing import Any

from dockyard.client import APIClient
from dockyard.client.base import Hijacked

_READS = ("GET", "HEAD")


class _NoStream:
    def __init__(self, body: bytes = b"") -> None:
        self.body = body

    def json(self) -> Iterator[dict[str, Any]]:
        return iter(())

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        return iter((self.body,) if self.body else ())

    def __enter__(self) -> _NoStream:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def close(self) -> None:
        pass


class DryRunClient(APIClient):
    def __init__(self, *a: Any, fake: dict[str, str] | None = None, **kw: Any) -> None:
        super().__init__(*a, **kw)
        self.fake: dict[str, str] = {} if fake is None else fake  # made-up id -> name

    def sibling(self) -> DryRunClient:
        """Another connection (a worker thread's) that knows the same made-up ids."""
        return DryRunClient(self.host.url, tls=self.tls or None, fake=self.fake)

    def _fake_id(self, name: str | None) -> str:
        fid = "dryrun" + secrets.token_hex(29)
        self.fake[fid] = name or fid[:12]
        return fid

    def request(self, method: str, path: str, params: dict[str, Any] | None = None, json_body: Any = None,
                data: bytes | Iterable[bytes] | None = None, headers: dict[str, str] | None = None) -> Any:
        for fid, name in self.fake.items():
            if fid in path:
                if method in _READS and path.endswith("/json"):
                    return {"Id": fid, "Name": "/" + name, "Config": {"Labels": {}, "Tty": False},
                            "State": {"Status": "running", "Running": True, "ExitCode": 0,
                                      "Health": {"Status": "healthy"}}, "NetworkSettings": {"Ports": {}}}
                if method in _READS:
                    return None
        if method in _READS:
            return super().request(method, path, params, json_body, data, headers)
        if path.endswith(("/create", "/exec")):
            return {"Id": self._fake_id((params or {}).get("name") or (json_body or {}).get("Name")),
                    "Warnings": []}
        if path == "/commit":
            return {"Id": "sha256:" + secrets.token_hex(32)}
        if path.endswith("/wait"):
            return {"StatusCode": 0}
        return None

    def stream(self, method: str, path: str, params: dict[str, Any] | None = None, json_body: Any = None,
               data: bytes | Iterable[bytes] | None = None, headers: dict[str, str] | None = None) -> Any:
        if method in _READS and not any(fid in path for fid in self.fake):
            return super().stream(method, path, params, json_body, data, headers)
        return _NoStream(b'{"StatusCode":0}' if path.endswith("/wait") else b"")

    def hijack(self, method: str, path: str, params: dict[str, Any] | None = None, body: Any = None) -> Hijacked:
        """attach and exec start: a connection that ends at once (nothing runs)."""
        mine, other = socket.socketpair()
        other.close()
        return Hijacked(mine, b"", "application/vnd.docker.raw-stream")


def client_like(client: APIClient) -> APIClient:
    """Another connection of the same kind (a dry-run client stays dry-run), for another thread."""
    if isinstance(client, DryRunClient):
        return client.sibling()
    return APIClient(client.host.url, tls=client.tls or None)
