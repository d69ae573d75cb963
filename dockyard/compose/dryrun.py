"""--dry-run: a client that reads from the daemon but only pretends to change anything.

Writes answer with made-up ids; reads of those ids answer as a running, healthy container, so a
dry-run `up` walks its whole plan (dependencies included) and prints each step, as Compose v2 does.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Iterator
from typing import Any

from dockyard.client import APIClient

_READS = ("GET", "HEAD")


class _NoStream:
    def json(self) -> Iterator[dict[str, Any]]:
        return iter(())

    def chunks(self, size: int = 65536) -> Iterator[bytes]:
        return iter(())

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
        if path.endswith("/create"):
            return {"Id": self._fake_id((params or {}).get("name") or (json_body or {}).get("Name")),
                    "Warnings": []}
        if path.endswith("/wait"):
            return {"StatusCode": 0}
        return None

    def stream(self, method: str, path: str, params: dict[str, Any] | None = None, json_body: Any = None,
               data: bytes | Iterable[bytes] | None = None, headers: dict[str, str] | None = None) -> Any:
        if method in _READS and not any(fid in path for fid in self.fake):
            return super().stream(method, path, params, json_body, data, headers)
        return _NoStream()
