"""Attach: join a client's hijacked connection to the container's stdio held by its monitor (conmon).

The runtime's AttachSocket gives (stream, bytes) output packets and takes stdin; half-closing it
tells conmon that stdin ended (it closes the container's stdin unless started with --leave-stdin-open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from dockyard.errors import Conflict, InvalidParameter

if TYPE_CHECKING:
    from dockyard.services.container_io import ContainerIO

log = logging.getLogger("dockyard.attach")

HijackHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
DEFAULT_DETACH_KEYS = b"\x10\x11"  # ctrl-p ctrl-q


def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's --detach-keys: comma-separated `ctrl-<x>` or single characters."""
    if not spec:
        return DEFAULT_DETACH_KEYS
    out = bytearray()
    for part in spec.split(","):
        part = part.strip()
        if part.startswith("ctrl-") and len(part) == 6:
            ch = part[5].lower()
            if "a" <= ch <= "z":
                out.append(ord(ch) - ord("a") + 1)
            elif ch in "@[\\]^_":
                out.append({"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}[ch])
            else:
                raise InvalidParameter(f"invalid detach keys ({spec}) provided")
        elif len(part) == 1:
            out.append(ord(part))
        else:
            raise InvalidParameter(f"invalid detach keys ({spec}) provided")
    return bytes(out)


async def pump_session(att: Any, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                       tty: bool, stdin: bool, stdout: bool, stderr: bool, detach_keys: bytes,
                       frame: Callable[[int, bytes], bytes],
                       before_close: Callable[[], Awaitable[None]] | None = None) -> None:
    """Copy monitor output to the client and client input to the monitor until output ends or detach.

    before_close runs after the output ended and before the client sees EOF (exec: the exit code
    must be known by then, since the CLI inspects the exec right after)."""
    loop = asyncio.get_running_loop()
    detached = asyncio.Event()

    async def output() -> None:
        while True:
            try:
                item = await att.recv()
            except OSError:
                return
            if item is None:
                return
            stream, data = item
            if (stream == 1 and stdout) or (stream == 2 and stderr):
                writer.write(data if tty else frame(stream, data))
                await writer.drain()

    async def input_() -> None:
        matched = 0
        while True:
            data = await reader.read(65536)
            if not data:
                with contextlib.suppress(OSError):
                    att.close_stdin()
                return
            if detach_keys:
                # Look for the detach sequence across reads; bytes of a partial match are held back.
                out = bytearray()
                for b in data:
                    if b == detach_keys[matched]:
                        matched += 1
                        if matched == len(detach_keys):
                            detached.set()
                            return
                        continue
                    if matched:
                        out += detach_keys[:matched]
                        matched = 0
                    out.append(b)
                data = bytes(out)
            if data:
                await att.send(data)

    out_task = loop.create_task(output())
    in_task = loop.create_task(input_()) if stdin else None
    detach_wait = loop.create_task(detached.wait())
    try:
        await asyncio.wait({out_task, detach_wait}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (out_task, in_task, detach_wait):
            if t is not None and not t.done():
                t.cancel()
        att.close()
        with contextlib.suppress(Exception):
            await writer.drain()
        if before_close is not None and not detached.is_set():
            with contextlib.suppress(Exception):
                await before_close()
        writer.close()


async def make_attach_handler(io: ContainerIO, cid: str, *, stdin: bool, stdout: bool, stderr: bool,
                              stream: bool, logs: bool, detach_keys: str | None) -> HijackHandler:
    from dockyard.runtime.logs import frame

    cs = io.cs
    c = cs.get(cid)
    if c.state == "restarting":
        raise Conflict(f"container {c.id} is restarting, wait until the container is running")
    keys = parse_detach_keys(detach_keys)
    tty = bool(c.config.get("Tty"))
    lv = cs.live(c.id)
    ready: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    async def connect_now(failed: BaseException | None = None) -> None:
        if failed is not None:
            if not ready.done():
                ready.set_exception(failed)
            return
        try:
            sock = await cs.runtime.attach(c.id)
        except Exception as e:  # noqa: BLE001 - reported to the session
            log.debug("attach %s: %s", c.id[:12], e)
            if not ready.done():
                ready.set_exception(e)
            return
        if not ready.done():
            ready.set_result(sock)
        else:
            sock.close()

    if stream and not c.running:
        # Attach before start (docker run): connect between `runtime create` and `runtime start`.
        lv.pending_attach.append(connect_now)
    elif stream:
        await connect_now()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if logs and io.cs.log_driver(c) != "none":  # no log kept: nothing to replay
                async for chunk in io.logs(c.id, stdout=stdout, stderr=stderr, follow=False, since=None,
                                           until=None, tail=None, timestamps=False, raw=tty):
                    writer.write(chunk)
                await writer.drain()
            if not stream:
                return
            try:
                conn = await ready
            except Exception as e:  # noqa: BLE001
                log.debug("attach %s: %s", c.id[:12], e)
                return
            await pump_session(conn, reader, writer, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr,
                               detach_keys=keys, frame=frame)
        finally:
            if connect_now in lv.pending_attach:
                lv.pending_attach.remove(connect_now)
            if ready.done() and not ready.cancelled() and ready.exception() is None:
                ready.result().close()
            writer.close()

    return handler
