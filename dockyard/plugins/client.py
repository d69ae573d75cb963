"""One plugin's HTTP client: JSON POSTs to `/<Interface>.<Method>`, as moby's pkg/plugins client.

A plugin is reached at a unix socket or a tcp address. Connection failures (the socket is gone,
the process died) are retried with backoff until `retry_seconds` pass, as dockerd retries; then
the error names the plugin, the address and what the kernel said. A plugin's own error (an `Err`
field, or a non-200 status) is raised as its message.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import threading
import time
from collections.abc import Generator
from typing import Any

from dockyard.errors import DockyardError, SystemError_, Unavailable

VERSION_MIMETYPE = "application/vnd.docker.plugins.v1.2+json"
CALL_TIMEOUT = 60.0
MAX_IDLE = 4  # kept-alive connections per plugin  # one call's socket timeout once connected (a volume Mount may take a while)


class PluginError(SystemError_):
    """The plugin answered with an error of its own."""


class PluginGone(Unavailable):
    """The plugin could not be reached (after retries)."""


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float) -> None:
        super().__init__("plugin", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        dfd = -1
        try:
            path = self._path
            if len(path.encode()) > 107:  # sun_path's limit: reach it through its directory's fd
                dfd = os.open(os.path.dirname(path), os.O_PATH | os.O_CLOEXEC)
                path = f"/proc/self/fd/{dfd}/{os.path.basename(path)}"
            s.connect(path)
        except OSError:
            s.close()
            raise
        finally:
            if dfd >= 0:
                os.close(dfd)
        self.sock = s


class PluginClient:
    def __init__(self, name: str, addr: str, retry_seconds: float = 30.0) -> None:
        self.name = name
        self.addr = addr  # unix:///path or tcp://host:port
        self.retry_seconds = retry_seconds
        self._idle: list[http.client.HTTPConnection] = []  # kept-alive connections (dockerd's keeps them too)
        self._idle_lock = threading.Lock()

    def _take_idle(self) -> http.client.HTTPConnection | None:
        with self._idle_lock:
            return self._idle.pop() if self._idle else None

    def _give_back(self, conn: http.client.HTTPConnection, resp: http.client.HTTPResponse) -> None:
        if resp.will_close:
            conn.close()
            return
        with self._idle_lock:
            if len(self._idle) < MAX_IDLE:
                self._idle.append(conn)
                return
        conn.close()

    def _connection(self, timeout: float) -> http.client.HTTPConnection:
        if self.addr.startswith("unix://"):
            return _UnixConnection(self.addr[len("unix://"):], timeout)
        if self.addr.startswith(("tcp://", "http://")):
            hostport = self.addr.split("://", 1)[1].rstrip("/")
            host, _, port = hostport.rpartition(":")
            return http.client.HTTPConnection(host or hostport, int(port or 80), timeout=timeout)
        raise SystemError_(f'plugin "{self.name}": unsupported address {self.addr!r}')

    def _send(self, conn: http.client.HTTPConnection, method: str, data: bytes) -> http.client.HTTPResponse:
        conn.request("POST", f"/{method}", body=data,
                     headers={"Accept": VERSION_MIMETYPE, "Content-Type": VERSION_MIMETYPE})
        return conn.getresponse()

    def _open(self, method: str, data: bytes, retry: bool, timeout: float,
              reuse: bool = True) -> tuple[http.client.HTTPConnection, http.client.HTTPResponse]:
        idle = self._take_idle() if reuse else None
        if idle is not None:
            try:
                return idle, self._send(idle, method, data)
            except (OSError, http.client.HTTPException):
                idle.close()  # the plugin closed it meanwhile (or restarted): a fresh one below
        deadline = time.monotonic() + (self.retry_seconds if retry else 0)
        delay = 0.05
        while True:
            conn = self._connection(timeout)
            try:
                return conn, self._send(conn, method, data)
            except (TimeoutError, ConnectionError, FileNotFoundError, OSError) as e:
                conn.close()
                if time.monotonic() + delay > deadline:
                    why = e.strerror or str(e) if isinstance(e, OSError) else str(e)
                    waited = f" (retried for {self.retry_seconds:g}s)" if retry and self.retry_seconds else ""
                    raise PluginGone(f'plugin "{self.name}" is not reachable at {self.addr}: '
                                     f"{method}: {why}{waited}") from None
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    def call(self, method: str, body: Any = None, retry: bool = True) -> dict[str, Any]:
        """POST body as JSON to /method; the JSON answer (an `Err` in it raised as PluginError)."""
        data = json.dumps(body if body is not None else {}).encode()
        conn, resp = self._open(method, data, retry, CALL_TIMEOUT)
        try:
            raw = resp.read()
        except BaseException:
            conn.close()
            raise
        self._give_back(conn, resp)
        try:
            out = json.loads(raw) if raw.strip() else {}
        except ValueError:
            out = None
        if resp.status != 200:
            msg = out.get("Err") if isinstance(out, dict) and out.get("Err") else raw.decode(errors="replace").strip()
            raise PluginError(msg or f"{method}: plugin {self.name} answered {resp.status}")
        if not isinstance(out, dict):
            raise PluginError(f'plugin "{self.name}": {method}: the answer is not a JSON object')
        if out.get("Err"):
            raise PluginError(str(out["Err"]))
        return out

    def stream(self, method: str, body: Any = None) -> Generator[bytes, None, None]:
        """POST and yield the raw answer in chunks (LogDriver.ReadLogs)."""
        conn, resp = self._open(method, json.dumps(body or {}).encode(), True, CALL_TIMEOUT, reuse=False)
        try:
            if resp.status != 200:
                raw = resp.read()
                try:
                    msg = str(json.loads(raw).get("Err") or "")
                except (ValueError, AttributeError):
                    msg = raw.decode(errors="replace").strip()
                raise PluginError(msg or f"{method}: plugin {self.name} answered {resp.status}")
            while chunk := resp.read1(65536):
                yield chunk
        finally:
            resp.close()
            conn.close()


def describe(e: BaseException) -> str:
    return e.message if isinstance(e, DockyardError) else str(e)
