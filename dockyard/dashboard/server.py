"""The dashboard's HTTP server: asyncio streams + h11 (already a dependency; a few hundred lines of
sans-IO HTTP/1.1 is all a local page needs), serving the package's own files and a thin JSON/SSE layer
over the Engine API.

Access is Jupyter's: a random token in the printed URL. The first request with `?token=` gets an
HttpOnly SameSite=Strict cookie, so the page's own GETs and EventSources carry it; anything that changes
state (POST, DELETE) must also send it in the `X-Dockyard-Token` header, which another site's form or
script cannot set (no CSRF). The Host header must name this server (no DNS rebinding).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import re
import threading
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable
from importlib import resources
from typing import Any

import h11

from dockyard.client import STDERR, APIError, ConnectError, demux
from dockyard.dashboard import layers
from dockyard.dashboard.engine import Engine, interrupt
from dockyard.dashboard.live import Live

COOKIE = "dockyard_dashboard"
HEADER = "x-dockyard-token"
MIME = {"html": "text/html; charset=utf-8", "js": "text/javascript; charset=utf-8", "css": "text/css; charset=utf-8",
        "svg": "image/svg+xml", "png": "image/png", "txt": "text/plain; charset=utf-8"}
SECURITY_HEADERS = [
    (b"Content-Security-Policy", b"default-src 'self'; img-src 'self' data:; style-src 'self'; "
                                 b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"X-Content-Type-Options", b"nosniff"),
    (b"Referrer-Policy", b"no-referrer"),
    (b"Cache-Control", b"no-store"),
]

# The Engine API GETs the page reads (read-only, answered at once: no streams, no exports).
_ID = r"[A-Za-z0-9][A-Za-z0-9_.-]*"
_REF = r"[A-Za-z0-9][A-Za-z0-9_.:/@-]*"
READS = re.compile(rf"""^/(?:
    containers/json | containers/{_ID}/(?:json|top|changes) |
    images/json | images/{_REF}/(?:json|history) |
    networks | networks/{_ID} | volumes | volumes/{_ID} |
    info | version | system/df |
    dockyard/containers/{_ID}/internals | dockyard/networks/{_ID}/internals |
    dockyard/images/{_REF}/internals | dockyard/volumes/{_ID}/internals
)$""", re.X)
ACTIONS = re.compile(rf"^/containers/({_ID})/(start|stop|restart|pause|unpause|kill)$")
REMOVALS = re.compile(rf"^/(containers/{_ID}|images/{_REF}|volumes/{_ID}|networks/{_ID})$")


class Request:
    def __init__(self, method: str, target: str, headers: dict[str, str]) -> None:
        self.method = method
        url = urllib.parse.urlsplit(target)
        self.path = urllib.parse.unquote(url.path)
        self.query = dict(urllib.parse.parse_qsl(url.query))
        self.headers = headers

    def cookie(self, name: str) -> str:
        for part in self.headers.get("cookie", "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        return ""


class Response:
    def __init__(self, status: int, body: bytes = b"", content_type: str = "text/plain; charset=utf-8",
                 headers: list[tuple[bytes, bytes]] | None = None,
                 stream: AsyncIterator[bytes] | None = None) -> None:
        self.status, self.body, self.content_type = status, body, content_type
        self.headers = headers or []
        self.stream = stream


def json_response(data: Any, status: int = 200) -> Response:
    return Response(status, json.dumps(data).encode(), "application/json")


def error(status: int, message: str) -> Response:
    return json_response({"message": message}, status)


def sse(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()


class Dashboard:
    def __init__(self, engine: Engine, token: str, allowed_hosts: set[str]) -> None:
        self.engine = engine
        self.token = token
        self.allowed_hosts = allowed_hosts
        self.live = Live(engine)
        self.static = {p.name: p for p in resources.files("dockyard.dashboard").joinpath("static").iterdir()
                       if p.is_file()}

    # -- auth --------------------------------------------------------------------------------
    def _token_ok(self, given: str) -> bool:
        return bool(given) and hmac.compare_digest(given.encode(), self.token.encode())

    def check(self, req: Request) -> Response | None:
        host = req.headers.get("host", "")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if "*" not in self.allowed_hosts and name.strip("[]") not in self.allowed_hosts:
            return error(403, f"host {host!r} is not this dashboard's (DNS rebinding?)")
        if req.method in ("GET", "HEAD"):
            if any(self._token_ok(t) for t in (req.query.get("token", ""), req.cookie(COOKIE),
                                               req.headers.get(HEADER, ""))):
                return None
            return error(401, "a token is needed: open the URL `dockyard dashboard` printed")
        if self._token_ok(req.headers.get(HEADER, "")):
            return None
        return error(401, f"state-changing requests need the token in the {HEADER} header")

    # -- routing ------------------------------------------------------------------------------
    async def handle(self, req: Request) -> Response:
        denied = self.check(req)
        if denied is not None:
            return denied
        p, m = req.path, req.method
        try:
            if p == "/" and m == "GET":
                return self.index(req)
            if p.startswith("/static/") and m == "GET":
                return self.file(p[len("/static/"):])
            if p == "/sse/live" and m == "GET":
                return Response(200, content_type="text/event-stream", stream=self.live_stream())
            if p.startswith("/sse/logs/") and m == "GET":
                return await self.logs(p[len("/sse/logs/"):], req)
            if p == "/api/trace" and m == "GET":
                return await self.trace(req.query.get("object", ""))
            if p.startswith("/api/layers/") and m == "GET":
                return json_response(await asyncio.to_thread(layers.image_layers, self.engine,
                                                             p[len("/api/layers/"):]))
            if p == "/api/pull" and m == "POST":
                return await self.pull(req.query.get("image", ""))
            if p.startswith("/api/"):
                return await self.engine_call(m, p[len("/api"):], req.query)
        except APIError as e:
            return error(e.status, e.message)
        except ConnectError as e:
            return error(502, str(e))
        return error(404, "not found")

    def index(self, req: Request) -> Response:
        html = self.static["index.html"].read_text().replace("{{TOKEN}}", self.token)
        headers = [(b"Set-Cookie", f"{COOKIE}={self.token}; HttpOnly; SameSite=Strict; Path=/".encode())]
        return Response(200, html.encode(), MIME["html"], headers)

    def file(self, name: str) -> Response:
        f = self.static.get(name)  # only the package's own files, by exact name
        if f is None or name == "index.html":
            return error(404, "not found")
        return Response(200, f.read_bytes(), MIME.get(name.rsplit(".", 1)[-1], "application/octet-stream"))

    async def engine_call(self, method: str, path: str, query: dict[str, str]) -> Response:
        if method == "GET" and READS.match(path):
            return json_response(await asyncio.to_thread(self.engine.call, "GET", path, query or None))
        if method == "POST" and ACTIONS.match(path):
            await asyncio.to_thread(self.engine.call, "POST", path, query or None)
            return json_response({"ok": True})
        if method == "DELETE" and REMOVALS.match(path):
            await asyncio.to_thread(self.engine.call, "DELETE", path, query or None)
            return json_response({"ok": True})
        return error(404, f"{method} {path} is not something the dashboard does")

    # -- streams ------------------------------------------------------------------------------
    async def live_stream(self) -> AsyncIterator[bytes]:
        q = await self.live.subscribe()
        try:
            yield b"retry: 1000\n\n"
            while True:
                try:
                    kind, data = await asyncio.wait_for(q.get(), 15)
                except TimeoutError:
                    yield b": keep-alive\n\n"
                    continue
                yield sse(kind, data)
        finally:
            self.live.unsubscribe(q)

    async def logs(self, cid: str, req: Request) -> Response:
        params = {"stdout": 1, "stderr": 1, "follow": 1, "timestamps": 1, "tail": req.query.get("tail", "200"),
                  "since": req.query.get("since")}  # a page picking up again after a restart
        info = await asyncio.to_thread(self.engine.call, "GET", f"/containers/{cid}/json")
        tty = bool((info.get("Config") or {}).get("Tty"))
        stream = await asyncio.to_thread(self.engine.stream, "GET", f"/containers/{cid}/logs", params)
        return Response(200, content_type="text/event-stream",
                        stream=_from_thread(lambda put: _log_lines(stream, tty, put), lambda: interrupt(stream)))

    async def pull(self, image: str) -> Response:
        if not image:
            return error(400, "image is required")
        params = {"fromImage": image}  # the tag or digest in the reference, as docker's CLI sends it
        stream = await asyncio.to_thread(self.engine.stream, "POST", "/images/create", params)

        def run(put: Callable[[bytes], None]) -> None:
            for line in stream.lines():
                if line.strip():
                    put(line + b"\n")

        return Response(200, content_type="application/x-ndjson", stream=_from_thread(run, lambda: interrupt(stream)))

    async def trace(self, obj: str) -> Response:
        def read() -> list[Any]:
            try:
                with self.engine.stream("GET", "/dockyard/trace", {"object": obj}) as s:
                    return list(s.json())[-500:]
            except APIError as e:
                if e.status == 404:
                    return []  # dockerd (or an older Dockyard): no trace
                raise

        return json_response(await asyncio.to_thread(read))


def _log_lines(stream: Any, tty: bool, put: Callable[[bytes], None]) -> None:
    frames = ((1, d) for d in stream.chunks()) if tty else demux(stream.chunks())
    partial = {1: b"", 2: b""}
    try:
        for kind, data in frames:
            buf = partial.get(kind, b"") + data
            *lines, partial[kind] = buf.split(b"\n")
            for line in lines:
                ts, _, text = line.decode(errors="replace").partition(" ")
                put(sse("log", {"s": "err" if kind == STDERR else "out", "ts": ts, "t": text}))
    finally:
        # Follow ends when the container stops: say so, or EventSource would reconnect and replay the tail.
        put(sse("end", {}))


def _from_thread(run: Callable[[Callable[[bytes], None]], None], stop: Callable[[], None]) -> AsyncIterator[bytes]:
    """A blocking reader in a thread, as an async iterator; stop() wakes the thread when the page goes."""
    loop = asyncio.get_running_loop()
    q: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=1000)

    def put(b: bytes) -> None:
        loop.call_soon_threadsafe(q.put_nowait, b)

    def main() -> None:
        with contextlib.suppress(Exception):
            run(put)
        with contextlib.suppress(RuntimeError):  # the loop is gone
            loop.call_soon_threadsafe(q.put_nowait, None)

    async def items() -> AsyncIterator[bytes]:
        threading.Thread(target=main, daemon=True).start()
        try:
            while (item := await q.get()) is not None:
                yield item
        finally:
            stop()

    return items()


# -- HTTP/1.1 over asyncio streams -------------------------------------------------------------
Handler = Callable[[Request], Awaitable[Response]]


async def serve_connection(handler: Handler, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    conn = h11.Connection(h11.SERVER)
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await reader.read(65536)
                conn.receive_data(data)
                continue
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                break
            if not isinstance(event, h11.Request):
                break
            headers = {k.decode().lower(): v.decode("latin-1") for k, v in event.headers}
            while not isinstance(conn.next_event(), h11.EndOfMessage | h11.ConnectionClosed):
                conn.receive_data(await reader.read(65536))  # no request bodies here: drain any
            req = Request(event.method.decode(), event.target.decode("latin-1"), headers)
            resp = await handler(req)
            hdrs = [(b"Content-Type", resp.content_type.encode()), *SECURITY_HEADERS, *resp.headers]
            if resp.stream is None:
                hdrs.append((b"Content-Length", str(len(resp.body)).encode()))
                writer.write(conn.send(h11.Response(status_code=resp.status, headers=hdrs)) or b"")
                writer.write(conn.send(h11.Data(data=resp.body)) or b"")
                writer.write(conn.send(h11.EndOfMessage()) or b"")
                await writer.drain()
            else:
                writer.write(conn.send(h11.Response(status_code=resp.status, headers=hdrs)) or b"")
                await writer.drain()
                await _pump(conn, resp.stream, reader, writer)
                break  # a stream ends its connection
            if conn.our_state is h11.MUST_CLOSE or conn.their_state is h11.MUST_CLOSE:
                break
            conn.start_next_cycle()
    except (h11.ProtocolError, ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(Exception):
            writer.close()
            await writer.wait_closed()


async def _pump(conn: h11.Connection, stream: AsyncIterator[bytes], reader: asyncio.StreamReader,
                writer: asyncio.StreamWriter) -> None:
    """Send a stream until it ends or the page goes away (EOF on the socket: a closed tab)."""

    async def send() -> None:
        async for chunk in stream:
            writer.write(conn.send(h11.Data(data=chunk)) or b"")
            await writer.drain()
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()

    sender = asyncio.ensure_future(send())
    gone = asyncio.ensure_future(reader.read(1))
    try:
        await asyncio.wait({sender, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in (sender, gone):
            t.cancel()
        with contextlib.suppress(BaseException):
            await sender
        with contextlib.suppress(Exception):
            await stream.aclose()  # type: ignore[attr-defined]
