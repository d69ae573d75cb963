"""The daemon's HTTP/1.1 server: asyncio streams + h11.

Why not aiohttp/ASGI: attach and exec need connection hijacking (`Upgrade: tcp` -> 101, then a raw
socket that supports half-close), which neither offers. h11 gives us keep-alive, chunked bodies both
ways and leaves the socket in our hands.
"""

from __future__ import annotations

import asyncio
import grp
import http
import logging
import os
import re
import socket
import ssl
import stat
from asyncio import sslproto
from collections.abc import AsyncIterator, Callable
from email.utils import formatdate
from typing import Any
from urllib.parse import parse_qs, unquote

import h11

from dockyard import trace
from dockyard.api.listen import parse_listen_address
from dockyard.api.router import (
    DEFAULT_BODY_LIMIT,
    AuthZGate,
    Hijack,
    MethodNotAllowed,
    PayloadTooLarge,
    Request,
    Response,
    Router,
    aclose,
    json_response,
    ndjson_stream,
)
from dockyard.errors import DockyardError, InvalidParameter, describe

__all__ = [
    "API_VERSION", "DEFAULT_BODY_LIMIT", "MIN_API_VERSION", "Hijack", "MethodNotAllowed", "PayloadTooLarge",
    "Request", "Response", "Router", "Server", "json_response", "ndjson_stream", "serve",
]

API_VERSION = "1.47"
MIN_API_VERSION = "1.24"
MAX_HEADER_SIZE = 64 * 1024
HEADER_TIMEOUT = 60.0  # a started request head must arrive within this; idle keep-alive may wait forever
_DRAIN_LIMIT = 1024 * 1024  # unread request body we discard to keep a connection alive
_READ_SIZE = 64 * 1024
_VERSION_PREFIX = re.compile(r"/v(\d+\.\d+)(?=/|$)")
_LIBPOD_PREFIX = re.compile(r"/v\d+(?:\.\d+){0,2}(?=/libpod/)")  # podman's clients: /v4.0.0/libpod/...

log = logging.getLogger("dockyard.api")


def _error_response(status: int, message: str) -> Response:
    if status == 304:
        return Response(304)
    return json_response({"message": message}, status)


def _common_headers() -> list[tuple[str, str]]:
    return [
        ("Api-Version", API_VERSION),
        ("Docker-Experimental", "false"),
        ("Ostype", "linux"),
        ("Server", "Dockyard/0.1"),
        ("Date", formatdate(usegmt=True)),
    ]


def _version_tuple(v: str) -> tuple[int, ...]:
    return tuple(int(p) for p in v.split("."))


def _reason(status: int) -> bytes:
    try:
        return http.HTTPStatus(status).phrase.encode()
    except ValueError:
        return b""


def _unread(reader: asyncio.StreamReader, data: bytes) -> None:
    # asyncio has no unread; h11 already took these bytes, and they precede whatever the reader still holds.
    buffer: bytearray = reader._buffer  # type: ignore[attr-defined]
    buffer[:0] = data


async def _authorize_response(authz: AuthZGate, ctx: dict[str, Any], resp: Response) -> Response:
    """AuthZRes: the response goes out only if every plugin allows it (streams are not held back)."""
    body = bytes(resp.body) if isinstance(resp.body, bytes | bytearray) else None
    ctype = resp.headers.get("Content-Type", "application/json" if body else "")
    shown = body if body and ctype.split(";")[0].strip() == "application/json" else None
    try:
        await authz.response(ctx, resp.status, dict(resp.headers), shown)
    except DockyardError as e:
        return _error_response(e.status, e.message)
    return resp


class _Connection:
    def __init__(self, router: Router, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.router = router
        self.reader = reader
        self.writer = writer
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEADER_SIZE)
        self.body_done = asyncio.Event()

    async def run(self) -> None:
        first = True
        try:
            while True:
                try:
                    event = await self._read_head(first)
                except h11.RemoteProtocolError as e:
                    await self._respond("GET", _error_response(e.error_status_hint, str(e)), close=True)
                    return
                first = False
                if not isinstance(event, h11.Request) or not await self._handle(event):
                    return
        except (TimeoutError, ConnectionError):
            pass  # stalled or vanished client: just drop the connection
        except Exception:
            log.exception("connection failed")
        finally:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except (ConnectionError, OSError):
                pass

    async def _feed(self) -> None:
        try:
            data = await self.reader.read(_READ_SIZE)
        except ConnectionError:
            data = b""
        self.h11.receive_data(data)

    async def _read_head(self, first: bool) -> Any:
        # A new connection gets HEADER_TIMEOUT for its first head; an idle keep-alive one waits until
        # the next request starts, then gets the same deadline.
        loop = asyncio.get_running_loop()
        deadline = loop.time() + HEADER_TIMEOUT if first else None
        while (event := self.h11.next_event()) is h11.NEED_DATA:
            if deadline is None and self.h11.trailing_data[0]:
                deadline = loop.time() + HEADER_TIMEOUT
            async with asyncio.timeout_at(deadline):
                await self._feed()
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
            await self._send(h11.InformationalResponse(status_code=100, headers=_common_headers()))
        try:
            while (event := self.h11.next_event()) is h11.NEED_DATA:
                await self._feed()
        except h11.RemoteProtocolError as e:
            raise InvalidParameter(f"bad request body: {e}") from None
        if isinstance(event, h11.Data):
            return bytes(event.data)
        self.body_done.set()
        return None

    def _make_request(self, event: h11.Request) -> Request:
        target = event.target.decode("latin-1")
        raw_path, _, qs = target.partition("?")
        path = unquote(raw_path)
        api_version = None
        if m := _LIBPOD_PREFIX.match(path):  # libpod's version is podman's, not the Engine API's
            path = path[m.end():]
        elif m := _VERSION_PREFIX.match(path):
            api_version, path = m.group(1), path[m.end():] or "/"
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key, val = name.decode("latin-1").lower(), value.decode("latin-1")
            headers[key] = f"{headers[key]}, {val}" if key in headers else val
        if "transfer-encoding" not in headers and headers.get("content-length", "0") == "0":
            # No body: consume h11's EndOfMessage now so the disconnect watcher may read the socket.
            self.h11.next_event()
            self.body_done.set()
        return Request(
            event.method.decode("ascii"), path, api_version=api_version,
            query=parse_qs(qs, keep_blank_values=True), headers=headers, body_source=self._body_chunk,
        )

    async def _handle(self, event: h11.Request) -> bool:
        """Serve one request; False when the connection must close."""
        req = self._make_request(event)
        # Steps this request causes carry the client's trace token (dockyard --explain sends one).
        trace.set_session(req.headers.get("x-dockyard-trace", ""))
        result: Response | Hijack
        authz, authz_ctx = self.router.authz, None
        try:
            if req.api_version and _version_tuple(req.api_version) < _version_tuple(MIN_API_VERSION):
                raise InvalidParameter(
                    f"client version {req.api_version} is too old. Minimum supported API version is "
                    f"{MIN_API_VERSION}, please upgrade your client to a newer version"
                )
            if req.api_version and _version_tuple(req.api_version) > _version_tuple(API_VERSION):
                raise InvalidParameter(  # dockerd's answer to /v1.99/: a 400, not the newest API's reply
                    f"client version {req.api_version} is too new. Maximum supported API version is {API_VERSION}")
            handler, req.params = self.router.match(req.method, req.path)
            if authz is not None:
                uri = event.target.decode("latin-1")
                body = await req.body() if authz.wants_body(uri, req.headers) else None
                authz_ctx = await authz.request(req.method, uri, req.headers, body)
            result = await handler(req)
        except DockyardError as e:
            result = _error_response(e.status, e.message)
        except Exception as e:
            log.exception("%s %s failed", req.method, req.path)
            result = _error_response(500, describe(e))
        if (authz is not None and authz_ctx is not None and isinstance(result, Response)
                and isinstance(result.body, bytes | bytearray)):
            result = await _authorize_response(authz, authz_ctx, result)
        if isinstance(result, Hijack):
            log.debug("%s %s -> hijacked", req.method, event.target.decode("latin-1"))
            await self._hijack(req, result)
            return False
        log.debug("%s %s -> %d", req.method, event.target.decode("latin-1"), result.status)
        if not await self._respond(req.method, result):
            return False
        return await self._next_cycle()

    async def _send(self, event: Any) -> None:
        data = self.h11.send(event)
        if data:
            self.writer.write(data)
            await self.writer.drain()

    async def _respond(self, method: str, resp: Response, close: bool = False) -> bool:
        """Send resp; False when the body stream failed or was cut short."""
        headers = _common_headers() + list(resp.headers.items())
        body = resp.body
        no_body = method == "HEAD" or resp.status in (204, 304)
        if isinstance(body, bytes | bytearray) and resp.status not in (204, 304):
            if not any(k.lower() == "content-length" for k in resp.headers):
                headers.append(("Content-Length", str(len(body))))
        if close:
            headers.append(("Connection", "close"))
        await self._send(h11.Response(status_code=resp.status, headers=headers, reason=_reason(resp.status)))
        if isinstance(body, bytes | bytearray):
            if body and not no_body:
                await self._send(h11.Data(data=body))
        elif no_body:
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
            if not isinstance(exc, ConnectionError):
                log.error("response stream failed", exc_info=exc)
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
        drained = 0
        try:
            while (chunk := await self._body_chunk()) is not None:  # body the handler left unread
                drained += len(chunk)
                if drained > _DRAIN_LIMIT:
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
            await self._respond(req.method, _error_response(e.status, e.message), close=True)
            return
        # Like moby: 101 when the client asked to upgrade (the docker CLI does), else a bare 200 whose
        # body is the raw stream (no length, no chunking).
        if "upgrade" in req.headers:
            head = ["HTTP/1.1 101 UPGRADED", f"Content-Type: {hijack.content_type}",
                    "Connection: Upgrade", "Upgrade: tcp"]
        else:
            head = ["HTTP/1.1 200 OK", f"Content-Type: {hijack.content_type}"]
        head += [f"{k}: {v}" for k, v in _common_headers()]
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
            log.exception("%s %s: hijacked stream failed", req.method, req.path)


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
    connection the client cannot explain."""

    def __init__(self, make_tls: Callable[[], Any]) -> None:
        self.make_tls = make_tls
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        if data[:1] == b"\x16":  # a TLS handshake record: hand the connection and these bytes to TLS
            proto = self.make_tls()
            self.transport.set_protocol(proto)
            proto.connection_made(self.transport)
            buf = proto.get_buffer(len(data))
            n = min(len(buf), len(data))
            buf[:n] = data[:n]
            proto.buffer_updated(n)
            return
        if data[:5] in (b"GET /", b"HEAD ", b"POST ", b"PUT /", b"OPTIO", b"DELET"):
            self.transport.write(b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
        self.transport.close()


class Server:
    """Listening sockets of the API; close() stops accepting and drops open connections."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self._servers: list[asyncio.Server] = []
        self._unix_paths: list[str] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    async def _on_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await _Connection(self.router, reader, writer).run()
        except asyncio.CancelledError:
            pass  # close(): end quietly (a cancelled task here makes 3.11's asyncio log an error)
        finally:
            self._tasks.discard(task)

    async def listen(self, host: str, socket_group: str | None, tls: ssl.SSLContext | None) -> None:
        addr = parse_listen_address(host)  # the parser daemon/main.py's TLS guard uses
        if addr.scheme == "unix":
            await self._listen_unix(addr.path, socket_group)
            return
        port = addr.port_for(tls is not None)
        if tls is None:
            srv = await asyncio.start_server(self._on_connection, addr.host, port, backlog=_backlog())
        else:
            srv = await asyncio.get_running_loop().create_server(self._tls_factory(tls), addr.host, port,
                                                                 backlog=_backlog())
        self._servers.append(srv)

    def _tls_factory(self, tls: ssl.SSLContext) -> Any:
        loop = asyncio.get_running_loop()

        def make_tls() -> asyncio.BaseProtocol:
            reader = asyncio.StreamReader(loop=loop)
            app = asyncio.StreamReaderProtocol(reader, self._on_connection, loop=loop)
            return _HalfCloseSSLProtocol(loop, app, tls, None, server_side=True)  # type: ignore[arg-type]

        return lambda: _TLSSniffer(make_tls)

    async def _listen_unix(self, path: str, socket_group: str | None) -> None:
        os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        try:
            if stat.S_ISSOCK(os.lstat(path).st_mode):
                os.unlink(path)  # stale socket from a previous daemon
        except FileNotFoundError:
            pass
        srv = await asyncio.start_unix_server(self._on_connection, path, backlog=_backlog())
        self._servers.append(srv)
        self._unix_paths.append(path)
        os.chmod(path, 0o660)
        if socket_group:
            try:
                os.chown(path, 0, grp.getgrnam(socket_group).gr_gid)
            except KeyError:
                pass  # like dockerd: no such group, socket stays root-only
            except PermissionError:
                log.warning("cannot chown %s to group %s", path, socket_group)

    @property
    def sockets(self) -> list[Any]:
        return [s for srv in self._servers for s in srv.sockets]

    async def close(self) -> None:
        for srv in self._servers:
            srv.close()
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


async def serve(
    router: Router, hosts: list[str], *, socket_group: str | None = "docker", tls: ssl.SSLContext | None = None
) -> Server:
    """Listen on every host (unix:///path, tcp://host:port) and serve router until close()."""
    server = Server(router)
    try:
        for host in hosts:
            await server.listen(host, socket_group, tls)
    except BaseException:
        await server.close()
        raise
    return server
