"""A minimal HTTP/1.1 server on asyncio streams + h11 for the registry server.

The registry needs streamed request bodies (multi-GiB blob uploads) and streamed responses
(blob GET); this is the smallest server that does both with keep-alive. It is kept apart from
the routing in `server.py` so the registry can move onto `dockyard.api.server` once that lands.
"""

from __future__ import annotations

import asyncio
import logging
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


async def _serve_conn(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER, max_incomplete_event_size=64 * 1024)

    async def next_event() -> h11.Event:
        while True:
            ev = conn.next_event()
            if ev is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100, headers=[])) or b"")
                data = await reader.read(_READ)
                conn.receive_data(data)
                continue
            return ev  # type: ignore[return-value]

    async def send(ev: h11.Event) -> None:
        data = conn.send(ev)
        if data:
            writer.write(data)
            await writer.drain()

    try:
        while True:
            ev = await next_event()
            if not isinstance(ev, h11.Request):
                return
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
    except (ConnectionError, h11.RemoteProtocolError, asyncio.IncompleteReadError, ssl.SSLError):
        pass
    finally:
        writer.close()
        try:
            await writer.wait_closed()
        except (ConnectionError, ssl.SSLError):
            pass


async def serve(handler: Handler, host: str, port: int, ssl_ctx: ssl.SSLContext | None = None,
                started: Callable[[int], None] | None = None) -> None:
    """Serve until cancelled; `started(port)` is called once listening (port 0 picks one)."""
    server = await asyncio.start_server(lambda r, w: _serve_conn(handler, r, w), host, port,
                                        ssl=ssl_ctx, limit=_READ)
    actual = server.sockets[0].getsockname()[1]
    if started:
        started(actual)
    async with server:
        await server.serve_forever()
