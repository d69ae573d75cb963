"""Attach: join a client's hijacked connection to the container's stdio held by its monitor (conmon).

The runtime's AttachSocket gives (stream, bytes) output packets and takes stdin; half-closing it
tells conmon that stdin ended (it closes the container's stdin unless started with --leave-stdin-open).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any, Protocol

from dockyard.errors import Conflict, InvalidParameter
from dockyard.util import detachkeys

if TYPE_CHECKING:
    from dockyard.runtime.attach import AttachSocket
    from dockyard.services.containers import Container, ContainerService

log = logging.getLogger("dockyard.attach")

HijackHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


class Stdio(Protocol):
    """What attaching needs of the container's stdio service (container_io.ContainerIO); a Protocol,
    so this module does not import that one (which imports this one)."""

    cs: ContainerService
    hubs: dict[str, AttachHub]

    def logs(self, cid: str, *, stdout: bool, stderr: bool, follow: bool, since: str | None,
             until: str | None, tail: str | None, timestamps: bool, raw: bool) -> AsyncIterator[bytes]: ...


def parse_detach_keys(spec: str | None) -> bytes:
    """Docker's --detach-keys (util/detachkeys), refused as dockerd words it."""
    try:
        return detachkeys.parse(spec)
    except ValueError:
        raise InvalidParameter(f"invalid detach keys ({spec}) provided") from None


async def pump_session(att: AttachSocket | HubSession, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                       tty: bool, stdin: bool, stdout: bool, stderr: bool, detach_keys: bytes,
                       frame: Callable[[int, bytes], bytes],
                       before_close: Callable[[], Awaitable[None]] | None = None, on_detach: bytes = b"",
                       output_from: AsyncIterator[bytes] | None = None) -> None:
    """Copy monitor output to the client and client input to the monitor until output ends or detach.

    before_close runs after the output ended and before the client sees EOF (exec: the exit code
    must be known by then, since the CLI inspects the exec right after). on_detach is written to the
    client when it detaches (dockerd's exec reports the escape as an error on the stream).
    output_from, when given, is the output instead of the monitor's (bytes ready for the client)."""
    loop = asyncio.get_running_loop()
    detached = asyncio.Event()

    async def output() -> None:
        if output_from is not None:
            async for chunk in output_from:
                writer.write(chunk)
                try:
                    await writer.drain()
                except ConnectionError:
                    return
            return
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
                try:
                    await writer.drain()
                except ConnectionError:
                    return  # the client left: the session ends, the container goes on

    async def input_() -> None:
        keys = detachkeys.Matcher(detach_keys)
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionError:
                data = b""  # a client that vanished has ended its input
            if not data:
                with contextlib.suppress(OSError):
                    att.close_stdin()
                return
            passed = keys.feed(data)
            if passed is None:
                detached.set()
                return
            data = passed
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
            elif t is not None and not t.cancelled() and t.exception() is not None:
                log.debug("attach session: %s", t.exception())  # retrieved: no "never retrieved" noise
        att.close()
        if detached.is_set() and on_detach:
            writer.write(on_detach)
        with contextlib.suppress(Exception):
            await writer.drain()
        if before_close is not None and not detached.is_set():
            with contextlib.suppress(Exception):
                await before_close()
        writer.close()


class AttachHub:
    """One attach connection to a running container's conmon, shared by every attach session.

    conmon closes the container's stdin when any attach connection ends (unless it runs with
    --leave-stdin-open), so a session that detaches must not close a connection of its own: sessions
    subscribe here, and only a client's stdin EOF closes the container's stdin, as dockerd's
    StdinOnce does (and never with a TTY, as in dockerd)."""

    def __init__(self, sock: AttachSocket, close_on_eof: bool, on_end: Callable[[AttachHub], None]) -> None:
        self.sock = sock
        self.close_on_eof = close_on_eof
        self._on_end = on_end
        self.closed = False
        self._subs: set[asyncio.Queue[tuple[int, bytes] | None]] = set()
        self._reader = asyncio.get_running_loop().create_task(self._read())

    async def _read(self) -> None:
        ended = False
        try:
            while True:
                item = await self.sock.recv()
                if item is None:
                    self.closed = True  # before the sessions hear of it: a new one gets a new hub
                for q in list(self._subs):
                    # A bounded queue: a slow client slows the output down instead of filling memory.
                    await q.put(item)
                if item is None:
                    ended = True
                    return
        except Exception as e:  # noqa: BLE001 - the sessions see the end of output
            log.debug("attach hub: %s", e)
        finally:
            self.closed = True
            self.sock.close()
            self._on_end(self)
            if not ended:  # cancelled or failed: tell the sessions, dropping what they did not read
                for q in list(self._subs):
                    _drain(q)
                    q.put_nowait(None)

    def session(self) -> HubSession:
        q: asyncio.Queue[tuple[int, bytes] | None] = asyncio.Queue(maxsize=64)
        if self.closed:
            q.put_nowait(None)
        self._subs.add(q)
        return HubSession(self, q)

    def close(self) -> None:
        self._reader.cancel()
        self.sock.close()


class HubSession:
    """One client's view of an AttachHub, with AttachSocket's recv/send/close_stdin/close."""

    def __init__(self, hub: AttachHub, q: asyncio.Queue[tuple[int, bytes] | None]) -> None:
        self.hub = hub
        self.q = q

    async def recv(self) -> tuple[int, bytes] | None:
        return await self.q.get()

    async def send(self, data: bytes) -> None:
        await self.hub.sock.send(data)

    def input_only(self) -> None:
        """This session takes no output from the hub (its client reads the output elsewhere)."""
        self.hub._subs.discard(self.q)
        _drain(self.q)

    def close_stdin(self) -> None:
        if self.hub.close_on_eof:
            self.hub.sock.close_stdin()

    def close(self) -> None:
        self.hub._subs.discard(self.q)
        _drain(self.q)  # frees the hub's reader if it waits on this queue


def _drain(q: asyncio.Queue[Any]) -> None:
    while not q.empty():
        q.get_nowait()


async def attach_hub(io: Stdio, c: Container, fresh: bool) -> AttachHub:
    """The container's hub, connected now if it has none (fresh: a new conmon just started it)."""
    hub = io.hubs.get(c.id)
    if hub is None or hub.closed or fresh:
        if hub is not None:
            hub.close()
        sock = await io.cs.runtime.attach(c.id)

        def forget(h: AttachHub) -> None:
            if io.hubs.get(c.id) is h:
                del io.hubs[c.id]

        hub = AttachHub(sock, close_on_eof=c.config.stdin_once and not c.config.tty,
                        on_end=forget)
        io.hubs[c.id] = hub
    return hub


async def make_attach_handler(io: Stdio, cid: str, *, stdin: bool, stdout: bool, stderr: bool,
                              stream: bool, logs: bool, detach_keys: str | None) -> HijackHandler:
    from dockyard.runtime.logs import frame

    cs = io.cs
    c = cs.get(cid)
    if c.state == "restarting":
        raise Conflict(f"container {c.id} is restarting, wait until the container is running")
    keys = parse_detach_keys(detach_keys)
    tty = c.config.tty
    lv = cs.live(c.id)
    ready: asyncio.Future[HubSession] = asyncio.get_running_loop().create_future()
    before_start = stream and not c.running

    async def connect_now(failed: BaseException | None = None) -> None:
        if failed is not None:
            if not ready.done():
                ready.set_exception(failed)
                ready.exception()  # retrieved: a client that left meanwhile leaves no log noise
            return
        try:
            session = (await attach_hub(io, c, fresh=before_start)).session()
        except Exception as e:  # noqa: BLE001 - reported to the session
            log.debug("attach %s: %s", c.id[:12], e)
            if not ready.done():
                ready.set_exception(e)
                ready.exception()
            return
        if not ready.done():
            ready.set_result(session)
        else:
            session.close()

    if before_start:
        # Attach before start (docker run): connect between `runtime create` and `runtime start`.
        lv.pending_attach.append(connect_now)
    elif stream:
        await connect_now()

    kept = logs and io.cs.log_driver(c) != "none"  # no log kept: nothing to replay

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            if kept and stream and not before_start:
                # logs=1&stream=1 on a running container: the output is the log followed, so what
                # was logged and what comes next join with no line lost or repeated (a replay then
                # the live stream would lose or repeat what the container writes in between:
                # dockerd's attach loses it). The attach connection only takes the client's input.
                try:
                    conn = await ready
                except Exception as e:  # noqa: BLE001
                    log.debug("attach %s: %s", c.id[:12], e)
                    return
                conn.input_only()
                followed = io.logs(c.id, stdout=stdout, stderr=stderr, follow=True, since=None, until=None,
                                   tail=None, timestamps=False, raw=tty)
                await pump_session(conn, reader, writer, tty=tty, stdin=stdin, stdout=stdout, stderr=stderr,
                                   detach_keys=keys, frame=frame, output_from=followed)
                return
            if kept:
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
            elif not ready.done():
                ready.cancel()
            writer.close()

    return handler
