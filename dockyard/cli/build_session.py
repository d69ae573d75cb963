"""The client's side of a build session (format: dockyard/util/buildsession.py): a hijacked
connection to the daemon on which each stream the daemon opens (a RUN step connecting to its ssh
agent socket) is answered by the agent `--ssh` named, here. So the agent never leaves the client's
host and the daemon may be anywhere, as with BuildKit's session."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
from typing import Any

from dockyard.cli.sshagent import Agent, AgentConn
from dockyard.util import buildsession as wire


class BuildSession:
    def __init__(self, client: Any, agents: dict[str, Agent]) -> None:
        self.id = secrets.token_hex(16)
        self.agents = agents
        self.conn = client.hijack("POST", wire.PATH, {"id": self.id, "ssh": ",".join(agents)})
        self.streams: dict[int, AgentConn] = {}
        self.send_lock = threading.Lock()
        self.buf = b""
        self.thread = threading.Thread(target=self._run, name="build-session", daemon=True)
        self.thread.start()

    def _send(self, kind: int, stream: int, payload: bytes = b"") -> None:
        with self.send_lock:
            self.conn.send(wire.frame(kind, stream, payload))

    def _read(self, n: int) -> bytes:
        while len(self.buf) < n:
            data = self.conn.recv(65536)
            if not data:
                raise ConnectionError("the daemon closed the build session")
            self.buf += data
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _run(self) -> None:
        with contextlib.suppress(OSError, ValueError):  # the session ends when the build does
            while True:
                kind, sid, length = wire.parse_head(self._read(wire.HEAD.size))
                payload = self._read(length) if length else b""
                if kind == wire.OPEN:
                    agent = self.agents.get(payload.decode("utf-8", "replace"))
                    try:
                        if agent is None:
                            raise OSError("no such agent")
                        self.streams[sid] = agent.connect()
                    except OSError:
                        self._send(wire.CLOSE, sid)
                elif kind == wire.DATA and sid in self.streams:
                    try:
                        for answer in self.streams[sid].feed(payload):
                            self._send(wire.DATA, sid, answer)
                    except (OSError, ValueError):  # a broken agent or request: that stream ends
                        self.streams.pop(sid).close()
                        self._send(wire.CLOSE, sid)
                elif kind == wire.CLOSE and sid in self.streams:
                    self.streams.pop(sid).close()
                    self._send(wire.CLOSE, sid)

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.sock.shutdown(socket.SHUT_RDWR)  # wakes the reader thread (close alone may not)
        self.conn.close()
        self.thread.join(5)
        for s in self.streams.values():
            s.close()
