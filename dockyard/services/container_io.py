"""A container's stdio as clients see it: its log, attach sessions (services/attach.py) and the TTY size.

The rest of what a client does to a container has its own room: files (container_files.py), top,
stats and limits (container_resources.py), commit (container_commit.py), state (containers.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING

from dockyard.errors import Conflict, InvalidParameter, NotSupported
from dockyard.runtime.logs import frame
from dockyard.services.attach import AttachHub
from dockyard.services.containers import Container, ContainerService
from dockyard.util.timefmt import parse_time_arg

if TYPE_CHECKING:
    from dockyard.services.logplugins import LogPlugins

log = logging.getLogger("dockyard.container_io")

HijackHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class ContainerIO:
    def __init__(self, containers: ContainerService) -> None:
        self.cs = containers
        self.log_plugins: LogPlugins | None = None  # logging plugins that can read serve `logs`
        self.runtime = containers.runtime
        self.hubs: dict[str, AttachHub] = {}  # a running container's shared attach connection

    # ---------------------------------------------------------------- logs
    def logs(self, cid: str, *, stdout: bool, stderr: bool, follow: bool, since: str | None,
             until: str | None, tail: str | None, timestamps: bool, raw: bool) -> AsyncIterator[bytes]:
        """The log as a stream; bad arguments and an unreadable log raise here, before any byte."""
        c = self.cs.get(cid)
        if self.cs.log_driver(c) == "none":
            raise NotSupported("configured logging driver does not support reading")
        try:
            since_ts = parse_time_arg(since) if since and since != "0" else None
            until_ts = parse_time_arg(until) if until and until != "0" else None
        except ValueError as e:
            raise InvalidParameter(f"invalid time value: {e}") from e
        ntail: int | None = None
        if tail and tail != "all":
            try:
                ntail = int(tail)
            except ValueError:
                raise InvalidParameter(f"invalid tail value: {tail}") from None
        return self._log_stream(c, stdout=stdout, stderr=stderr, since=since_ts or 0, until=until_ts or 0,
                                tail=-1 if ntail is None else ntail, timestamps=timestamps, follow=follow and c.running,
                                raw=raw)

    async def _log_stream(self, c: Container, *, stdout: bool, stderr: bool, since: float, until: float, tail: int,
                          timestamps: bool, follow: bool, raw: bool) -> AsyncIterator[bytes]:
        from dockyard.runtime import logs as rtlogs
        from dockyard.services.container_config import LOG_DRIVERS

        driver = self.cs.log_driver(c)
        if driver not in LOG_DRIVERS and self.log_plugins is not None and \
                await asyncio.to_thread(self.log_plugins.can_read, driver):
            from dockyard.services.logplugins import container_info

            async for stream, ts, data in self.log_plugins.read(
                    driver, container_info(c), stdout=stdout, stderr=stderr, since=since, until=until, tail=tail,
                    follow=follow):
                if timestamps:
                    data = rtlogs.docker_timestamp(ts).encode() + b" " + data
                yield data if raw else frame(stream, data)
            return
        async for batch in rtlogs.read_log_batches(
            self.cs.log_path(c.id), stdout=stdout, stderr=stderr, since=since, until=until, tail=tail,
            timestamps=timestamps, follow=follow, stop=self.cs.live(c.id).exited,
        ):
            yield b"".join(data for _, _, data in batch) if raw else b"".join(frame(s, d) for s, _, d in batch)

    # ---------------------------------------------------------------- attach
    async def attach_handler(self, cid: str, *, stdin: bool, stdout: bool, stderr: bool, stream: bool,
                             logs: bool, detach_keys: str | None) -> HijackHandler:
        from dockyard.services.attach import make_attach_handler

        return await make_attach_handler(self, cid, stdin=stdin, stdout=stdout, stderr=stderr, stream=stream,
                                         logs=logs, detach_keys=detach_keys)

    async def resize(self, cid: str, h: int, w: int) -> None:
        c = self.cs.get(cid)
        if not c.running:
            raise Conflict(f"Container {c.id} is not running")
        if not c.config.tty:
            return  # Docker ignores resize without a TTY on containers
        self.runtime.resize(c.id, h, w)
