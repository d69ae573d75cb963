"""A minimal HTTP/1.1 server on asyncio streams + h11 for the registry server.

The registry needs streamed request bodies (multi-GiB blob uploads) and streamed responses
(blob GET); this is the smallest server that does both with keep-alive. It is kept apart from
the routing in `server.py` so the registry can move onto `dockyard.api.server` once that lands.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from urllib.parse import parse_qs, urlsplit

import h11

log = logging.getLogger(__name__)
_READ = 256 * 1024


class HttpRequest:
    def __init__(self, method: str, target: str, headers: dict[str, str],
                 body: Callable[[], Awaitable[bytes | None]]) -> None:
        self.method = method
        parts = urlsplit(target)
        self.path = parts.path
        self.query = parse_qs(parts.query, keep_blank_values=True)
        self.headers = headers
        self._next = body
        self._done = False

    def q(self, name: str, default: str | None = None) -> str | None:
        v = self.query.get(name)
        return v[0] if v else default

    async def stream(self) -> AsyncIterator[bytes]:
        while not self._done:
            chunk = await self._next()
            if chunk is None:
                self._done = True
                return
            yield chunk

    async def body(self, limit: int | None = None) -> bytes:
        out = bytearray()
        async for chunk in self.stream():
            out += chunk
            if limit is not None and len(out) > limit:
                raise OverflowError("request body too large")
        return bytes(out)


@dataclass
class HttpResponse:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | AsyncIterator[bytes] = b""


Handler = Callable[[HttpRequest], Awaitable[HttpResponse]]


@dataclass
class Limits:
    """What one client may hold. Without them, half-sent heads stayed open for minutes and 300 idle
    sockets used up the process's descriptors (EMFILE), so an authenticated client could not connect."""

    header_timeout: float = 30.0  # a request head must be whole this long after it began (or after accept)
    idle_timeout: float = 120.0  # keep-alive wait for the next request; also the longest silence mid-body
    max_connections: int = 0  # 0: from RLIMIT_NOFILE (each connection may hold a blob file open as well)


def _default_max_connections() -> int:
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(8, (soft - 32) // 2)


def raise_nofile_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one, as the Go runtime does for every Go program (registry:2)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


@dataclass
class _Slot:
    """One open connection, as the cap sees it: busy from a request's head to the end of its response."""

    writer: asyncio.StreamWriter
    since: float
    busy: bool = False


def _evict_idle(slots: dict[object, _Slot]) -> bool:
    """Close the connection that has waited longest without a request in progress (idle keep-alive or
    a head still arriving); False when every connection is serving a request."""
    idle = [s for s in slots.values() if not s.busy]
    if not idle:
        return False
    oldest = min(idle, key=lambda s: s.since)
    oldest.busy = True  # not chosen twice before its task notices
    oldest.writer.transport.abort()  # frees the descriptor now; its reader sees EOF
    return True


async def _serve_conn(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                      limits: Limits, slot: _Slot) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)
    loop = asyncio.get_running_loop()

    async def receive(deadline: float) -> None:
        async with asyncio.timeout_at(deadline):
            conn.receive_data(await reader.read(_READ))

    async def next_head(first: bool) -> h11.Event:
        # A new connection has header_timeout for its first head; a kept-alive one waits idle_timeout
        # for the next to begin, then header_timeout for the rest of it.
        begun = first
        deadline = loop.time() + (limits.header_timeout if first else limits.idle_timeout)
        while (ev := conn.next_event()) is h11.NEED_DATA:
            if not begun and conn.trailing_data[0]:
                begun, deadline = True, loop.time() + limits.header_timeout
            await receive(deadline)
        return ev  # type: ignore[return-value]

    async def next_event() -> h11.Event:
        while (ev := conn.next_event()) is h11.NEED_DATA:
            if conn.they_are_waiting_for_100_continue:
                writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
            await receive(loop.time() + limits.idle_timeout)
        return ev  # type: ignore[return-value]

    async def send(ev: h11.Event) -> None:
        data = conn.send(ev)
        if data:
            writer.write(data)
            async with asyncio.timeout(limits.idle_timeout):  # a client that stopped reading
                await writer.drain()

    first = True
    try:
        while True:
            slot.busy, slot.since = False, loop.time()
            ev = await next_head(first)
            first = False
            if not isinstance(ev, h11.Request):
                return
            slot.busy = True
            headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in ev.headers}

            async def body() -> bytes | None:
                while True:
                    e = await next_event()
                    if isinstance(e, h11.Data):
                        return bytes(e.data)
                    if isinstance(e, h11.EndOfMessage):
                        return None
                    if isinstance(e, h11.ConnectionClosed):
                        raise ConnectionError("client closed mid-body")

            req = HttpRequest(ev.method.decode(), ev.target.decode("latin-1"), headers, body)
            try:
                resp = await handler(req)
            except Exception:
                log.exception("handler failed")
                resp = HttpResponse(500, {"content-type": "text/plain"}, b"internal error\n")
            if not req._done and conn.their_state is h11.SEND_BODY:
                # Drain what the client still sends so the connection stays usable.
                async for _ in req.stream():
                    pass
            hdrs = dict(resp.headers)
            if isinstance(resp.body, bytes | bytearray):
                hdrs.setdefault("content-length", str(len(resp.body)))
            elif "content-length" not in hdrs:
                hdrs["transfer-encoding"] = "chunked"
            try:
                reason = HTTPStatus(resp.status).phrase.encode()
            except ValueError:
                reason = b""
            await send(h11.Response(status_code=resp.status, headers=list(hdrs.items()), reason=reason))
            if req.method != "HEAD":
                if isinstance(resp.body, bytes | bytearray):
                    if resp.body:
                        await send(h11.Data(data=resp.body))
                else:
                    async for chunk in resp.body:
                        if chunk:
                            await send(h11.Data(data=chunk))
            elif not isinstance(resp.body, bytes | bytearray):
                aclose = getattr(resp.body, "aclose", None)
                if aclose:
                    await aclose()
            await send(h11.EndOfMessage())
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                return
            conn.start_next_cycle()
    except (ConnectionError, TimeoutError, h11.RemoteProtocolError, asyncio.IncompleteReadError, ssl.SSLError):
        pass  # a stalled, vanished or evicted client: drop the connection
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def serve(handler: Handler, host: str, port: int, ssl_ctx: ssl.SSLContext | None = None,
                started: Callable[[int], None] | None = None, limits: Limits | None = None) -> None:
    """Serve until cancelled; `started(port)` is called once listening (port 0 picks one)."""
    lim = limits or Limits()
    cap = lim.max_connections or _default_max_connections()
    slots: dict[object, _Slot] = {}
    loop = asyncio.get_running_loop()

    async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if len(slots) >= cap and not _evict_idle(slots):
            writer.transport.abort()  # every connection is mid-request: this one waits for none
            return
        key = object()
        slots[key] = slot = _Slot(writer, loop.time())
        try:
            await _serve_conn(handler, reader, writer, lim, slot)
        finally:
            del slots[key]

    server = await asyncio.start_server(on_connection, host, port, ssl=ssl_ctx, limit=_READ,
                                        ssl_handshake_timeout=lim.header_timeout if ssl_ctx else None)
    actual = server.sockets[0].getsockname()[1]
    if started:
        started(actual)
    async with server:
        await server.serve_forever()
