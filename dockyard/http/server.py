"""The HTTP/1.1 server under the Engine API and our registry: asyncio streams + h11.

Why not aiohttp/ASGI: attach and exec need connection hijacking (`Upgrade: tcp` -> 101, then a raw
socket that supports half-close), which neither offers; the registry needs request bodies streamed
as they arrive (multi-GiB blob uploads). h11 gives us keep-alive, chunked bodies both ways and leaves
the socket in our hands.

What differs between the two servers is a `Site`: the handler, how errors are worded, the headers
every response carries, and the `Limits` a client is held to.
"""

from __future__ import annotations

import asyncio
import grp
import http
import logging
import os
import re
import resource
import socket
import ssl
import stat
from asyncio import sslproto
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import h11

from dockyard.errors import DockyardError, InvalidParameter, describe
from dockyard.http import simple
from dockyard.http.messages import Hijack, Request, Response, aclose

MAX_HEADER_SIZE = 64 * 1024
_READ_SIZE = 64 * 1024
_JOIN_MAX = 256 * 1024  # a response up to this size goes out in one write: its parts joined (copied)

log = logging.getLogger("dockyard.http")


@dataclass
class Limits:
    """What one client may hold. Without them (the registry before it had them), half-sent heads
    stayed open for minutes and 300 idle sockets used up the process's descriptors (EMFILE)."""

    header_timeout: float = 60.0  # a request head must be whole this long after it began (or after accept)
    idle_timeout: float | None = None  # keep-alive wait for the next request, longest silence mid-body or
    # while the client does not read; None: no limit
    max_connections: int | None = None  # beyond it the longest idle connection is closed; None: no cap
    drain_limit: int | None = 1024 * 1024  # unread request body discarded to keep a connection; None: all


@dataclass
class Site:
    """What one server serves and how it speaks."""

    handle: Callable[[Request], Awaitable[Response | Hijack]]
    error: Callable[[int, str], Response]  # an error (protocol, DockyardError, crash) as this site words it
    headers: Callable[[], list[tuple[str, str]]] = list  # sent with every response, 100-continue and hijack
    limits: Limits = field(default_factory=Limits)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("dockyard.http"))  # its failures


def nofile_connections() -> int:
    """A connection cap from RLIMIT_NOFILE: each connection may hold a file open as well."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return 4096
    return max(8, (soft - 32) // 2)


def raise_nofile_limit() -> None:
    """Soft RLIMIT_NOFILE up to the hard one, as the Go runtime does for every Go program."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _unread(reader: asyncio.StreamReader, data: bytes) -> None:
    # asyncio has no unread; h11 already took these bytes, and they precede whatever the reader still holds.
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    buffer[:0] = data


def _peer_common_name(writer: asyncio.StreamWriter) -> str:
    """The CN of a verified TLS client certificate (--tlsverify), as dockerd names the user to authz plugins."""
    cert = writer.get_extra_info("peercert")
    if not cert:
        return ""
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                return str(value)
    return ""


class _Connection:
    def __init__(self, site: Site, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.site = site
        self.limits = site.limits
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_SIZE)
        self.body_done = asyncio.Event()
        self.busy = False  # from a request's head to the end of its response (the connection cap's view)
        self.since = asyncio.get_running_loop().time()

    async def run(self, pending: tuple[Request, Response | Hijack, bytes] | None = None) -> None:
        """Serve requests until the connection ends. pending: a request the simple path parsed (its
        head given here to h11 as well) and its handler's answer, which needs this path (a stream, a
        hijack, a header for h11 to judge): answered first."""
        first = pending is None
        try:
            if pending is not None:
                req, result, head = pending
                self.h11.receive_data(head)
                self.h11.next_event()  # the Request
                self.h11.next_event()  # and its EndOfMessage: no body
                self.body_done.set()
                self.busy = True
                if not await self._answer(req, result):
                    return
            while True:
                self.busy, self.since = False, asyncio.get_running_loop().time()
                try:
                    event = await self._read_head(first)
                except h11.RemoteProtocolError as e:
                    await self._respond("GET", self.site.error(e.error_status_hint, str(e)), close=True)
                    return
                first = False
                self.busy = True
                if not isinstance(event, h11.Request) or not await self._handle(event):
                    return
        except (TimeoutError, ConnectionError, ssl.SSLError):
            pass  # a stalled, vanished or evicted client: just drop the connection
        except Exception:
            self.site.log.exception("connection failed")
        finally:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    def evict(self) -> None:
        """Close now (the connection cap needs the descriptor); the reader sees EOF."""
        self.busy = True  # not chosen twice before its task notices
        self.writer.transport.abort()

    def _deadline(self, timeout: float | None) -> float | None:
        return None if timeout is None else asyncio.get_running_loop().time() + timeout

    async def _feed(self, deadline: float | None = None) -> None:
        try:
            async with asyncio.timeout_at(deadline):
                data = await self.reader.read(_READ_SIZE)
        except ConnectionError:
            data = b""
        self.h11.receive_data(data)

    async def _read_head(self, first: bool) -> Any:
        # A new connection gets header_timeout for its first head; a kept-alive one waits idle_timeout
        # for the next to begin, then header_timeout for the rest of it.
        begun = first
        deadline = self._deadline(self.limits.header_timeout if first else self.limits.idle_timeout)
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            if not begun and self.h11.trailing_data[0]:
                begun, deadline = True, self._deadline(self.limits.header_timeout)
            await self._feed(deadline)
        # h11's limit only applies while the head is incomplete, so a head that arrived whole gets checked here
        if isinstance(event, h11.Request) and len(event.target) + sum(
            len(k) + len(v) + 4 for k, v in event.headers.raw_items()
        ) > MAX_HEADER_SIZE:
            raise h11.RemoteProtocolError("request header too large", error_status_hint=431)
        return event

    async def _body_chunk(self) -> bytes | None:
        if self.body_done.is_set():
            return None
        if self.h11.they_are_waiting_for_100_continue:
            await self._send(h11.InformationalResponse(status_code=100, headers=self.site.headers()))
        try:
            while (event := self.h11.next_event()) is h11.NEED_DATA:
                await self._feed(self._deadline(self.limits.idle_timeout))
        except h11.RemoteProtocolError as e:
            raise InvalidParameter(f"bad request body: {e}") from None
        if isinstance(event, h11.Data):
            return bytes(event.data)
        self.body_done.set()
        return None

    def _make_request(self, event: h11.Request) -> Request:
        target = event.target.decode("latin-1")
        raw_path, _, qs = target.partition("?")
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key, val = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {val}" if key in headers else val
        if "transfer-encoding" not in headers and headers.get("content-length", "0") == "0":
            # No body: consume h11's EndOfMessage now so the disconnect watcher may read the socket.
            self.h11.next_event()
            self.body_done.set()
        return Request(
            event.method.decode("ascii"), unquote(raw_path),
            query=parse_qs(qs, keep_blank_values=True), headers=headers, body_source=self._body_chunk,
            target=target, user=_peer_common_name(self.writer),
        )

    async def _handle(self, event: h11.Request) -> bool:
        """Serve one request; False when the connection must close."""
        req = self._make_request(event)
        return await self._answer(req, await _result(self.site, req))

    async def _answer(self, req: Request, result: Response | Hijack) -> bool:
        if isinstance(result, Hijack):
            self.site.log.debug("%s %s -> hijacked", req.method, req.target)
            await self._hijack(req, result)
            return False
        self.site.log.debug("%s %s -> %d", req.method, req.target, result.status)
        if not await self._respond(req.method, result):
            return False
        return await self._next_cycle()

    async def _send(self, event: Any) -> None:
        await self._write(self.h11.send(event))

    async def _write(self, *parts: bytes | None) -> None:
        """Write the parts, then wait until the client has taken enough of them (one drain for all)."""
        data = [p for p in parts if p]
        if data:
            if len(data) > 1 and sum(map(len, data)) <= _JOIN_MAX:
                data = [b"".join(data)]  # one send(2) for a response's head, body and end
            for part in data:
                self.writer.write(part)
            if self.limits.idle_timeout is None:
                await self.writer.drain()
                return
            async with asyncio.timeout(self.limits.idle_timeout):  # a client that stopped reading
                await self.writer.drain()

    async def _respond(self, method: str, resp: Response, close: bool = False) -> bool:
        """Send resp; False when the body stream failed or was cut short."""
        headers = self.site.headers() + list(resp.headers.items())
        body = resp.body
        no_body = method == "HEAD" or resp.status in (204, 304)
        if isinstance(body, bytes | bytearray) and resp.status not in (204, 304):
            if not any(k.lower() == "content-length" for k in resp.headers):
                headers.append(("Content-Length", str(len(body))))
        if close:
            headers.append(("Connection", "close"))
        head = self.h11.send(h11.Response(status_code=resp.status, headers=headers, reason=_reason(resp.status)))
        if isinstance(body, bytes | bytearray):
            data = self.h11.send(h11.Data(data=body)) if body and not no_body else None
            await self._write(head, data, self.h11.send(h11.EndOfMessage()))
            return True
        try:
            await self._write(head)
        except BaseException:
            await aclose(body)  # the client went before the first byte: the producer ends now, not at its GC
            raise
        if no_body:
            await aclose(body)
        elif not await self._stream(body):
            return False
        await self._send(h11.EndOfMessage())
        return True

    async def _stream(self, body: AsyncIterator[bytes]) -> bool:
        async def pump() -> None:
            async for chunk in body:
                if chunk:
                    await self._send(h11.Data(data=chunk))

        pump_task = asyncio.create_task(pump())
        watch_task = asyncio.create_task(self._watch_disconnect())
        try:
            await asyncio.wait({pump_task, watch_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            # Client gone (or server closing): cancel the producer and close it so generators waiting on
            # events stop now rather than at their next yield.
            for task in (pump_task, watch_task):
                task.cancel()
            await asyncio.gather(pump_task, watch_task, return_exceptions=True)
            await aclose(body)
        if pump_task.cancelled():
            return False
        if (exc := pump_task.exception()) is not None:
            if not isinstance(exc, ConnectionError | TimeoutError):
                self.site.log.error("response stream failed", exc_info=exc)
            return False
        return True

    async def _watch_disconnect(self) -> None:
        """Return at EOF from the client. Only reads once the request body is in (a handler may stream it)."""
        await self.body_done.wait()
        while True:
            try:
                data = await self.reader.read(_READ_SIZE)
            except ConnectionError:
                data = b""
            self.h11.receive_data(data)  # pipelined bytes stay in h11 for the next request
            if not data:
                return

    async def _next_cycle(self) -> bool:
        if self.h11.our_state is not h11.DONE:
            return False
        drained, limit = 0, self.limits.drain_limit
        try:
            while (chunk := await self._body_chunk()) is not None:  # body the handler left unread
                drained += len(chunk)
                if limit is not None and drained > limit:
                    return False
        except DockyardError:
            return False
        if self.h11.their_state is not h11.DONE:
            return False
        self.h11.start_next_cycle()
        self.body_done = asyncio.Event()
        return True

    async def _hijack(self, req: Request, hijack: Hijack) -> None:
        try:
            await req.body()  # e.g. exec start's JSON options precede the raw stream
        except DockyardError as e:
            await self._respond(req.method, self.site.error(e.status, e.message), close=True)
            return
        # Like moby: 101 when the client asked to upgrade (the docker CLI does), else a bare 200 whose
        # body is the raw stream (no length, no chunking).
        if "upgrade" in req.headers:
            head = ["HTTP/1.1 101 UPGRADED", f"Content-Type: {hijack.content_type}",
                    "Connection: Upgrade", "Upgrade: tcp"]
        else:
            head = ["HTTP/1.1 200 OK", f"Content-Type: {hijack.content_type}"]
        head += [f"{k}: {v}" for k, v in self.site.headers()]
        self.writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await self.writer.drain()
        trailing, _ = self.h11.trailing_data
        if trailing:
            _unread(self.reader, trailing)
        try:
            await hijack.handler(self.reader, self.writer)
        except ConnectionError:
            pass
        except Exception:
            self.site.log.exception("%s %s: hijacked stream failed", req.method, req.path)


async def _result(site: Site, req: Request) -> Response | Hijack:
    """The handler's answer; an error as the site words it."""
    try:
        return await site.handle(req)
    except DockyardError as e:
        return site.error(e.status, e.message)
    except Exception as e:
        site.log.exception("%s %s failed", req.method, req.path)
        return site.error(500, describe(e))


_BLANK_LINE = re.compile(rb"\n\r?\n")  # the end of a head, as h11 finds it (bare LF line ends too)
_BUFFER_MAX = 4 * _READ_SIZE  # bytes a client may send ahead while its request is served (then: not read)


class _SimpleConnection(asyncio.Protocol):
    """A plain (not TLS) connection's first protocol. It answers the common exchange itself: a bodiless
    request parsed by http/simple.py, answered with a bytes body, kept alive. Anything else (a body, an
    upgrade, a streamed answer, a hijack, a head h11 must judge) hands the connection over to a
    _Connection (asyncio streams + h11), with what was read and, if one was parsed, the request and its
    answer, as _TLSSniffer hands a handshake over to TLS. The streams and h11 took most of a small
    request's CPU: 500 `docker stats` answers at once spent ~0.3 s of it on HTTP alone."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.site = server.site
        self.loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.task: asyncio.Task[None] | None = None  # the request being served
        self.eof = False
        self.reading = True
        self.writable: asyncio.Future[None] | None = None  # while the transport's buffer is full
        self.timer: asyncio.TimerHandle | None = None
        self.begun = False  # the awaited head has begun (its header timeout runs)
        self.busy = False  # as _Connection's: the connection cap's view
        self.since = self.loop.time()
        self.handed_over = False
        self.scanned = 0  # how much of buf was searched for a head's end
        self.lost = False  # the transport is closed (a reset, an abort): a handed-over protocol is told so

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if not self.server._admit():
            transport.abort()  # type: ignore[attr-defined]
            return
        self.server._open.add(self)
        self._expire_in(self.site.limits.header_timeout)
        self.begun = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._expire_in(None)
        self.server._open.discard(self)
        self.resume_writing()  # a request waiting to write on wakes and ends

    def evict(self) -> None:
        self.busy = True
        if self.transport is not None:
            self.transport.abort()

    def close(self) -> None:
        """Server.close(): an idle connection closes now (one being served: its task is cancelled)."""
        if self.task is None and self.transport is not None:
            self.transport.close()

    def pause_writing(self) -> None:
        self.writable = self.loop.create_future()

    def resume_writing(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)
        self.writable = None

    def _expire_in(self, timeout: float | None) -> None:
        if self.timer is not None:
            self.timer.cancel()
        self.timer = None if timeout is None else self.loop.call_later(timeout, self._expired)

    def _expired(self) -> None:
        self.timer = None
        if self.task is None and self.transport is not None:
            self.transport.close()  # a stalled head or an idle keep-alive past its limit

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.task is not None:
            if len(self.buf) > _BUFFER_MAX and self.reading:
                self.reading = False
                assert self.transport is not None
                self.transport.pause_reading()
            return
        self._next()

    def eof_received(self) -> bool:
        self.eof = True
        if self.task is None and not self.handed_over:
            if not self.buf:
                return False  # the transport closes
            self._hand_over()  # half a head and EOF: h11 words the error
        return True  # the answer being made still goes out

    def _next(self) -> None:
        """A whole head in the buffer: serve it here or hand the connection over."""
        blank = _BLANK_LINE.search(self.buf, max(0, self.scanned - 2))  # a blank line is 3 bytes at most
        if blank is not None and (blank.end() - blank.start() != 3 or blank.start() == 0
                                  or self.buf[blank.start() - 1] != 13):
            self._hand_over()  # a head with bare LF line ends, which h11 takes: its to parse
            return
        end = -1 if blank is None else blank.start() - 1
        if end < 0:
            self.scanned = len(self.buf)  # a head trickling in is not searched again from its start
            if len(self.buf) > MAX_HEADER_SIZE or self.eof:
                self._hand_over()  # h11 refuses it (431), or words the error of half a head
            elif self.buf and not self.begun:
                self.begun = True
                self._expire_in(self.site.limits.header_timeout)
            return
        head = bytes(self.buf[: end + 4])
        parsed = simple.parse_head(head) if end + 4 <= MAX_HEADER_SIZE else None
        if parsed is None:
            self._hand_over()
            return
        del self.buf[: end + 4]
        self.scanned = 0
        self._expire_in(None)
        self.busy = True
        raw_path, _, qs = parsed.target.partition("?")
        req = Request(parsed.method, unquote(raw_path), query=parse_qs(qs, keep_blank_values=True),
                      headers=parsed.headers, target=parsed.target)
        self.task = self.loop.create_task(self._serve(req, head, parsed.keep_alive))
        self.server._tasks.add(self.task)
        self.task.add_done_callback(self.server._tasks.discard)

    async def _serve(self, req: Request, head: bytes, keep_alive: bool) -> None:
        transport = self.transport
        assert transport is not None
        try:
            result = await _result(self.site, req)
            out = self._encode(req, result, keep_alive)
            if out is None:  # not ours to send: the general path answers it and goes on from there
                await self._writable()
                self._hand_over((req, result, head))
                return
            transport.write(out)
            self.site.log.debug("%s %s -> %d", req.method, req.target, result.status)  # type: ignore[union-attr]
            if not keep_alive:
                transport.close()
                return
            await self._writable()
        except (ConnectionError, TimeoutError, asyncio.CancelledError):
            transport.abort()
            return
        except Exception:
            self.site.log.exception("connection failed")
            transport.abort()
            return
        finally:
            self.task = None
        self.busy, self.since, self.begun = False, self.loop.time(), False
        if not self.reading:
            self.reading = True
            transport.resume_reading()
        if self.buf:
            self._next()  # pipelined
        elif self.eof:
            transport.close()
        else:
            self._expire_in(self.site.limits.idle_timeout)

    def _encode(self, req: Request, result: Response | Hijack, keep_alive: bool) -> bytes | None:
        if isinstance(result, Hijack) or not isinstance(result.body, bytes | bytearray):
            return None
        headers = self.site.headers()
        for k, v in result.headers.items():
            if k.lower() in ("content-length", "transfer-encoding", "connection"):
                return None  # framing a handler chose: h11 checks it
            headers.append((k, v))
        no_body = result.status in (204, 304)
        if not no_body:
            headers.append(("Content-Length", str(len(result.body))))
        if not keep_alive:
            headers.append(("Connection", "close"))
        head = simple.response_head(result.status, headers)
        if head is None:
            return None
        return head if no_body or not result.body or req.method == "HEAD" else head + result.body

    async def _writable(self) -> None:
        """Until the client has taken enough of what was written (idle_timeout: one that stopped reading)."""
        if self.writable is not None:
            async with asyncio.timeout(self.site.limits.idle_timeout):
                await self.writable

    def _hand_over(self, pending: tuple[Request, Response | Hijack, bytes] | None = None) -> None:
        """The rest of the connection to a _Connection: the bytes read so far go to its reader."""
        assert self.transport is not None
        self.handed_over = True
        self._expire_in(None)
        self.server._open.discard(self)
        reader = asyncio.StreamReader(limit=_READ_SIZE, loop=self.loop)
        if self.buf:
            reader.feed_data(bytes(self.buf))
            self.buf.clear()
        if self.eof:
            reader.feed_eof()

        def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> Awaitable[None]:
            return self.server._serve_streams(reader, writer, pending)

        proto = asyncio.StreamReaderProtocol(reader, connected, loop=self.loop)
        self.transport.set_protocol(proto)
        proto.connection_made(self.transport)
        if self.lost:
            # The client went while its handler ran: the transport will not tell the new protocol, whose
            # stream or hijack would else run on for ever (and its close wait for ever at the server's).
            proto.connection_lost(None)
            return
        if not self.reading:
            self.transport.resume_reading()


def _backlog() -> int:
    """The kernel's cap, as Go's net.Listen asks for (dockerd): asyncio's default of 100 made clients
    beyond it fail to connect when 200 `docker create` arrived at once (a full unix socket backlog
    is EAGAIN, not a wait)."""
    try:
        with open("/proc/sys/net/core/somaxconn") as f:
            return min(int(f.read()), 65535)
    except (OSError, ValueError):
        return socket.SOMAXCONN


class _HalfCloseSSLProtocol(sslproto.SSLProtocol):
    """asyncio's TLS, except that the peer's close_notify is a half-close, as in Go's tls.Conn.CloseWrite:
    the docker CLI closes its side of a hijacked attach (no stdin) and then reads the output, which
    stock asyncio would cut off by shutting the whole connection down."""

    def _start_shutdown(self) -> None:
        app = self._app_transport
        peer_done = getattr(self, "_app_state", None) == sslproto.AppProtocolState.STATE_EOF
        if peer_done and app is not None and not app._closed:
            return  # peer is done writing; we close when our side is done (the app closes its writer)
        super()._start_shutdown()


class _TLSSniffer(asyncio.Protocol):
    """The TLS port's first protocol: a TLS handshake goes on to TLS; a plain HTTP request is answered as
    Go's net/http answers it ("Client sent an HTTP request to an HTTPS server."), not with a dropped
    connection the client cannot explain. A client that sends nothing is closed at the header timeout."""

    def __init__(self, make_tls: Callable[[], Any], timeout: float) -> None:
        self.make_tls = make_tls
        self.timeout = timeout
        self.transport: asyncio.Transport | None = None
        self._timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self._timer = asyncio.get_running_loop().call_later(self.timeout, transport.close)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._timer is not None:
            self._timer.cancel()

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if self._timer is not None:
            self._timer.cancel()
        if data[:1] == b"\x16":  # a TLS handshake record: hand the connection and these bytes to TLS
            proto = self.make_tls()
            self.transport.set_protocol(proto)
            proto.connection_made(self.transport)
            buf = proto.get_buffer(len(data))
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            proto.buffer_updated(n)
            return
        if data[:5] in (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO", b"DELET", b"PATCH"):
            self.transport.write(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
        self.transport.close()


class Server:
    """Listening sockets of one site; close() stops accepting and drops open connections."""

    def __init__(self, site: Site) -> None:
        self.site = site
        self._servers: list[asyncio.Server] = []
        self._unix_paths: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()
        self._open: set[_Connection | _SimpleConnection] = set()

    def _admit(self) -> bool:
        """Room for one more connection: under the cap, or by closing the one idle longest."""
        cap = self.site.limits.max_connections
        if cap is None or len(self._open) < cap:
            return True
        idle = [c for c in self._open if not c.busy]
        if not idle:
            return False  # every connection is mid-request: the newcomer waits for none
        min(idle, key=lambda c: c.since).evict()
        return True

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self._admit():
            writer.transport.abort()
            return
        await self._serve_streams(reader, writer)

    async def _serve_streams(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                             pending: tuple[Request, Response | Hijack, bytes] | None = None) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        conn = _Connection(self.site, reader, writer)
        self._open.add(conn)
        try:
            await conn.run(pending)
        except asyncio.CancelledError:
            pass  # close(): end quietly (a cancelled task here makes 3.11's asyncio log an error)
        finally:
            self._open.discard(conn)
            self._tasks.discard(task)

    async def listen_tcp(self, host: str, port: int, tls: ssl.SSLContext | None = None) -> None:
        if tls is None:
            srv = await asyncio.get_running_loop().create_server(lambda: _SimpleConnection(self), host, port,
                                                                 backlog=_backlog())
        else:
            srv = await asyncio.get_running_loop().create_server(self._tls_factory(tls), host, port,
                                                                 backlog=_backlog())
        self._servers.append(srv)

    def _tls_factory(self, tls: ssl.SSLContext) -> Any:
        loop = asyncio.get_running_loop()
        timeout = self.site.limits.header_timeout

        def make_tls() -> asyncio.BaseProtocol:
            reader = asyncio.StreamReader(limit=_READ_SIZE, loop=loop)
            app = asyncio.StreamReaderProtocol(reader, self._on_connection, loop=loop)
            return _HalfCloseSSLProtocol(loop, app, tls, None, server_side=True,  # type: ignore[arg-type]
                                         ssl_handshake_timeout=timeout)  # type: ignore[arg-type]

        return lambda: _TLSSniffer(make_tls, timeout)

    async def listen_unix(self, path: str, socket_group: str | None = None, private: bool = False) -> None:
        """A unix socket, 0660 with `socket_group`; `private` (the rootless daemon's): 0600, no group."""
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # stale socket from a previous daemon
        except FileNotFoundError:
            pass
        srv = await asyncio.get_running_loop().create_unix_server(lambda: _SimpleConnection(self), path,
                                                                  backlog=_backlog())
        self._servers.append(srv)
        self._unix_paths.append(path)
        os.chmod(path, 0o600 if private else 0o660)
        if socket_group and not private:
            try:
                os.chown(path, 0, grp.getgrnam(socket_group).gr_gid)
            except KeyError:
                pass  # like dockerd: no such group, socket stays root-only
            except PermissionError:
                self.site.log.warning("cannot chown %s to group %s", path, socket_group)

    @property
    def sockets(self) -> list[Any]:
        return [s for srv in self._servers for s in srv.sockets]

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
        for conn in list(self._open):
            if isinstance(conn, _SimpleConnection):
                conn.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for srv in self._servers:
            await srv.wait_closed()
        for path in self._unix_paths:
            try:
                os.unlink(path)
            except FileNotFoundError:
                pass
