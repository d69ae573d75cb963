"""The agent socket a `RUN --mount=type=ssh` step sees: a unix socket of the daemon's, owned and
moded as the mount says (BuildKit's defaults: 0600, uid 0, gid 0), whose every connection is joined
to the client's agent: over the build session (dockyard/builder/session.py), or to an agent socket
on the daemon's host (the `X-Dockyard-Build-Ssh` header's paths). As BuildKit's MountSSHSocket, the
socket sits in a fresh directory of mode 0711, so only the step's own path reaches it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import shutil
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path

# Serves one connection of the step from the agent, until both sides are done.
AgentSource = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

_SUN_PATH = 107  # sockaddr_un's path, less its terminating NUL


def local_agent(path: str) -> AgentSource:
    """Connections to an agent socket on this host, spliced through."""

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            a_reader, a_writer = await asyncio.open_unix_connection(path)
        except OSError:
            writer.close()
            return

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(ConnectionError, OSError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
                if dst.can_write_eof():
                    dst.write_eof()

        try:
            await asyncio.gather(pump(reader, a_writer), pump(a_reader, writer))
        finally:
            a_writer.close()
            writer.close()

    return serve


class AgentSocket:
    """A listening agent socket for one step; close() removes it."""

    def __init__(self, parent: Path) -> None:
        d = parent / f"ssh-{secrets.token_hex(6)}"
        if len(str(d / "agent.sock")) > _SUN_PATH:  # a long data root: the system's temp dir instead
            d = Path(tempfile.mkdtemp(prefix="dockyard-ssh-"))
        else:
            d.mkdir()
        d.chmod(0o711)
        self.dir = d
        self.path = d / "agent.sock"
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[None]] = set()

    async def start(self, source: AgentSource, mode: int, uid: int, gid: int) -> None:
        async def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            if task is not None:
                self.tasks.add(task)
            try:
                await source(reader, writer)
            finally:
                writer.close()
                if task is not None:
                    self.tasks.discard(task)

        self.server = await asyncio.start_unix_server(accepted, path=str(self.path))
        os.chown(self.path, uid, gid)
        os.chmod(self.path, mode & 0o777)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
            for t in list(self.tasks):  # a step's connection outliving the step (a daemonized ssh)
                t.cancel()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.server.wait_closed(), 5)
        shutil.rmtree(self.dir, ignore_errors=True)
