"""Build sessions, the daemon's side (format: dockyard/util/buildsession.py): the client's hijacked
connection, on which each connection a RUN step makes to its ssh agent socket becomes a stream that
the client joins to its agent. So `--ssh` works with a daemon on another host, as BuildKit's
session does."""

from __future__ import annotations

import asyncio
import contextlib
import logging

from dockyard.util import buildsession as wire

log = logging.getLogger("dockyard.builder")

WAIT = 5.0  # as BuildKit waits for a build's session: the client opened it just before the build


class SessionGone(Exception):
    pass


class _Stream:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer  # the step's connection to its agent socket
        self.remote_done = asyncio.Event()  # the client's side sent CLOSE (or the session ended)


class BuildSession:
    def __init__(self, sid: str, ssh_ids: set[str], reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter) -> None:
        self.id, self.ssh_ids = sid, ssh_ids
        self.reader, self.writer = reader, writer
        self.streams: dict[int, _Stream] = {}
        self.next_stream = 1
        self.lock = asyncio.Lock()  # one frame at a time on the wire
        self.closed = asyncio.Event()

    async def _send(self, kind: int, stream: int, payload: bytes = b"") -> None:
        if self.closed.is_set():
            raise SessionGone
        async with self.lock:
            self.writer.write(wire.frame(kind, stream, payload))
            await self.writer.drain()

    async def run(self) -> None:
        """Read the client's frames until it hangs up; then every open stream ends."""
        try:
            while True:
                try:
                    head = await self.reader.readexactly(wire.HEAD.size)
                    kind, sid, length = wire.parse_head(head)
                    payload = await self.reader.readexactly(length) if length else b""
                except (asyncio.IncompleteReadError, ConnectionError, ValueError):
                    return
                st = self.streams.get(sid)
                if st is None:
                    continue  # a stream the step already closed
                if kind == wire.DATA:
                    with contextlib.suppress(ConnectionError):
                        st.writer.write(payload)
                        await st.writer.drain()  # the agent's answers are small: back-pressure is fine
                elif kind == wire.CLOSE:
                    with contextlib.suppress(OSError):
                        if st.writer.can_write_eof():
                            st.writer.write_eof()
                    st.remote_done.set()
        finally:
            self.closed.set()
            for st in self.streams.values():
                st.remote_done.set()
                st.writer.close()

    async def serve(self, ssh_id: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Join one connection to the agent socket with the client's agent `ssh_id`, until both ends are done."""
        sid = self.next_stream
        self.next_stream += 1
        st = self.streams[sid] = _Stream(writer)
        try:
            await self._send(wire.OPEN, sid, ssh_id.encode())
            while data := await reader.read(65536):
                await self._send(wire.DATA, sid, data)
            await self._send(wire.CLOSE, sid)
            await st.remote_done.wait()
        except (SessionGone, ConnectionError):
            pass
        finally:
            self.streams.pop(sid, None)
            writer.close()


class Sessions:
    """The open build sessions by id: the build that names one (X-Dockyard-Build-Session) finds it here."""

    def __init__(self) -> None:
        self.by_id: dict[str, BuildSession] = {}
        self.changed = asyncio.Condition()

    async def hold(self, sid: str, ssh_ids: set[str], reader: asyncio.StreamReader,
                   writer: asyncio.StreamWriter) -> None:
        """Serve a client's session connection until it closes."""
        s = BuildSession(sid, ssh_ids, reader, writer)
        async with self.changed:
            self.by_id[sid] = s
            self.changed.notify_all()
        try:
            await s.run()
        finally:
            if self.by_id.get(sid) is s:
                del self.by_id[sid]
            writer.close()

    async def get(self, sid: str) -> BuildSession | None:
        async def found() -> BuildSession:
            async with self.changed:
                await self.changed.wait_for(lambda: sid in self.by_id)
                return self.by_id[sid]

        try:
            return await asyncio.wait_for(found(), WAIT)
        except TimeoutError:
            return None
