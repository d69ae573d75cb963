"""The dashboard's side of the Engine API: blocking dockyard.client calls, run in threads.

APIClient keeps one kept-alive connection and is not thread-safe, so calls borrow a client from a
small pool; streams (events, stats, logs, pull) each take a connection of their own.
"""

from __future__ import annotations

import contextlib
import queue
import ssl
from collections.abc import Iterator
from typing import Any

from dockyard.client import APIClient, Stream


class Engine:
    def __init__(self, host: str | None, tls: bool | ssl.SSLContext | None, size: int = 4) -> None:
        self.host, self.tls = host, tls
        self._free: queue.LifoQueue[APIClient] = queue.LifoQueue()
        self._made = 0
        self._size = size
        self._version: str | None = None

    def _new(self) -> APIClient:
        c = APIClient(self.host, tls=self.tls, api_version=self._version, timeout=60)
        if self._version is None:
            self._version = c.api_version  # negotiated once (one /_ping), then reused by every client
        return c

    @contextlib.contextmanager
    def client(self) -> Iterator[APIClient]:
        try:
            c = self._free.get_nowait()
        except queue.Empty:
            c = self._new()
        try:
            yield c
        finally:
            if self._free.qsize() < self._size:
                self._free.put(c)
            else:
                c.close()

    def call(self, method: str, path: str, params: dict[str, Any] | None = None) -> Any:
        with self.client() as c:
            return c.request(method, path, params)

    def stream(self, method: str, path: str, params: dict[str, Any] | None = None) -> Stream:
        with self.client() as c:
            return c.stream(method, path, params)

    def describe(self) -> str:
        with self.client() as c:
            return c.host.url


def interrupt(stream: Stream) -> None:
    """Wake a thread blocked reading `stream` (the client's Stream knows its socket)."""
    stream.interrupt()
