"""Logging plugins (`--log-driver NAME` where NAME is a plugin implementing LogDriver).

At a container's start the daemon makes a FIFO, asks the plugin to `LogDriver.StartLogging` from
it, and writes each line of the container's output to it as a length-prefixed protobuf LogEntry
(plugins/logentry.py); at exit, once every line is written, `LogDriver.StopLogging`. The lines come
from conmon's log of the container, which is kept as dockerd 20.10+ keeps its local cache ("dual
logging"): `docker logs` asks the plugin (`LogDriver.ReadLogs`) when its `LogDriver.Capabilities`
say it can read, and reads the local copy otherwise.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.errors import DockyardError, NotFound
from dockyard.plugins.discovery import PluginStore
from dockyard.plugins.logentry import FrameReader, LogEntry, encode
from dockyard.runtime.logs import STDERR, STDOUT, read_log_batches
from dockyard.util.timefmt import parse_rfc3339, rfc3339

if TYPE_CHECKING:
    from dockyard.services.containers import Container

log = logging.getLogger("dockyard.logplugins")
LOG_DRIVER = "LogDriver"
_ZERO_TIME = "0001-01-01T00:00:00Z"  # Go's zero time.Time, as dockerd sends an unset Since/Until


def _nanos(ts: str) -> int:
    """RFC 3339 with up to 9 fraction digits → Unix nanoseconds, exactly."""
    main, dot, rest = ts.partition(".")
    if not dot:
        return int(parse_rfc3339(ts) * 1e9)
    n = 0
    while n < len(rest) and rest[n].isdigit():
        n += 1
    whole = parse_rfc3339(main + rest[n:])
    return int(whole) * 1_000_000_000 + int(rest[:n].ljust(9, "0")[:9])


def _go_time(ts: float) -> str:
    if not ts:
        return _ZERO_TIME
    return datetime.fromtimestamp(ts).astimezone().isoformat()


class LogPlugins:
    def __init__(self, store: PluginStore, fifo_dir: Path) -> None:
        self.store = store
        self.fifo_dir = Path(fifo_dir)
        self._last: dict[str, float] = {}  # container id → time of the last line handed to its plugin
        self._tasks: dict[str, asyncio.Task[None]] = {}

    def is_driver(self, name: str) -> bool:
        """Whether `name` is a logging plugin (NotFound, worded as dockerd, when nothing is)."""
        try:
            self.store.get(name, LOG_DRIVER)
        except NotFound as e:
            raise NotFound(f"error looking up logging plugin {name}: {e.message}") from None
        return True

    def can_read(self, name: str) -> bool:
        try:
            caps = self.store.call(name, LOG_DRIVER, "LogDriver.Capabilities", {})
        except DockyardError:
            return False  # dockerd: a plugin without Capabilities cannot read
        cap = caps.get("Cap")
        return isinstance(cap, dict) and bool(cap.get("ReadLogs"))

    # ------------------------------------------------------------ shipping

    def start(self, driver: str, info: dict[str, Any], log_path: Path, exited: asyncio.Event) -> None:
        """Ship the container's output to its plugin from now until it exits (a task of its own)."""
        cid = info["ContainerID"]
        old = self._tasks.get(cid)
        if old is not None and not old.done():
            return
        task = asyncio.get_running_loop().create_task(self._ship(driver, info, log_path, exited))
        self._tasks[cid] = task
        task.add_done_callback(lambda t: self._tasks.pop(cid, None) if self._tasks.get(cid) is t else None)

    async def _ship(self, driver: str, info: dict[str, Any], log_path: Path, exited: asyncio.Event) -> None:
        cid = info["ContainerID"]
        self.fifo_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        fifo = self.fifo_dir / f"{cid}-{time.monotonic_ns()}"
        os.mkfifo(fifo, 0o600)
        fd = -1
        try:
            # O_RDWR: opening never waits for the plugin's reader, and writes block (in a thread) when it lags
            fd = os.open(fifo, os.O_RDWR | os.O_CLOEXEC)
            await asyncio.to_thread(self.store.call, driver, LOG_DRIVER, "LogDriver.StartLogging",
                                    {"File": str(fifo), "Info": info})
            since = self._last.get(cid, 0.0)
            async for batch in read_log_batches(log_path, since=since + 1e-6 if since else 0, follow=True,
                                                stop=exited):
                frames = []
                for stream, ts, data in batch:
                    line = data[:-1] if data.endswith(b"\n") else data
                    frames.append(encode(LogEntry("stdout" if stream == STDOUT else "stderr", _nanos(ts), line,
                                                  partial=not data.endswith(b"\n"))))
                    self._last[cid] = parse_rfc3339(ts)
                if frames:
                    await asyncio.to_thread(os.write, fd, b"".join(frames))
            await asyncio.to_thread(self.store.call, driver, LOG_DRIVER, "LogDriver.StopLogging", {"File": str(fifo)})
        except DockyardError as e:
            log.warning("logging plugin %s for %s: %s", driver, cid[:12], e.message)
        except OSError as e:
            log.warning("logging plugin %s for %s: %s", driver, cid[:12], e)
        finally:
            if fd >= 0:
                os.close(fd)
            with contextlib.suppress(FileNotFoundError):
                fifo.unlink()

    def forget(self, cid: str) -> None:
        self._last.pop(cid, None)

    # ------------------------------------------------------------ reading

    async def read(self, driver: str, info: dict[str, Any], *, stdout: bool, stderr: bool, since: float,
                   until: float, tail: int, follow: bool) -> AsyncIterator[tuple[int, str, bytes]]:
        """LogDriver.ReadLogs: (stream, RFC 3339 time, line with its newline) as the plugin sends them."""
        body = {"Info": info, "Config": {"Since": _go_time(since), "Until": _go_time(until), "Tail": tail,
                                         "Follow": follow}}
        plugin = await asyncio.to_thread(self.store.get, driver, LOG_DRIVER)
        chunks = plugin.client.stream("LogDriver.ReadLogs", body)
        reader = FrameReader()
        sentinel = b""
        try:
            while True:
                chunk = await asyncio.to_thread(next, chunks, sentinel)
                if not chunk:
                    return
                for e in reader.feed(chunk):
                    stream = STDERR if e.source == "stderr" else STDOUT
                    if (stream == STDOUT and not stdout) or (stream == STDERR and not stderr):
                        continue
                    secs, ns = divmod(e.time_nano, 1_000_000_000)
                    ts = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{ns:09d}Z"
                    yield stream, ts, e.line + (b"" if e.partial else b"\n")
        finally:
            await asyncio.to_thread(chunks.close)


def container_info(c: Container) -> dict[str, Any]:
    """logger.Info as dockerd hands it to a logging plugin."""
    cfg, lc = c.config, c.host_config.log_config
    entry = list(cfg.entrypoint or [])
    cmd = list(cfg.cmd or [])
    path, args = (entry[0], [*entry[1:], *cmd]) if entry else ((cmd[0], cmd[1:]) if cmd else ("", []))
    return {
        "Config": dict((lc.config if lc is not None else None) or {}),
        "ContainerID": c.id, "ContainerName": "/" + c.name.lstrip("/"), "ContainerEntrypoint": path,
        "ContainerArgs": args, "ContainerImageID": c.image_id, "ContainerImageName": c.image_ref,
        "ContainerCreated": rfc3339(c.created), "ContainerEnv": cfg.env or [],
        "ContainerLabels": cfg.labels or {}, "LogPath": "", "DaemonName": "docker",
    }
