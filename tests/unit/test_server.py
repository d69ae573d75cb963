"""The API HTTP server over real unix sockets: httpx, http.client, raw sockets and the docker CLI."""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from urllib.parse import quote

import httpx
import pytest

from dockyard.api.server import (
    API_VERSION,
    Hijack,
    Request,
    Response,
    Router,
    Server,
    json_response,
    ndjson_stream,
    serve,
)
from dockyard.errors import NotFound, NotModified

WAIT = 30  # hang guard only, never a timing assertion


@dataclass
class Env:
    sock: str
    loop: asyncio.AbstractEventLoop
    stream_closed: threading.Event = field(default_factory=threading.Event)

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.HTTPTransport(uds=self.sock), base_url="http://docker", timeout=WAIT)

    def raw(self) -> socket.socket:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(WAIT)
        s.connect(self.sock)
        return s


def make_router(env: Env) -> Router:
    router = Router()

    async def ping(req: Request) -> Response:
        return Response(200, {"Content-Type": "text/plain; charset=utf-8"}, b"OK")

    async def version(req: Request) -> Response:
        return json_response({"Version": "0.1", "ApiVersion": API_VERSION, "MinAPIVersion": "1.24",
                              "Os": "linux", "Arch": "amd64", "GoVersion": "n/a", "GitCommit": "x"})

    async def echo_params(req: Request) -> Response:
        return json_response({"route": req.method + " " + req.path, "params": req.params,
                              "version": req.api_version, "force": req.qbool("force")})

    async def upload(req: Request) -> Response:
        size = chunks = 0
        async for chunk in req.stream():
            size, chunks = size + len(chunk), chunks + 1
        return json_response({"size": size, "chunks": chunks})

    async def small(req: Request) -> Response:
        return json_response({"len": len(await req.body(limit=10))})

    async def not_found(req: Request) -> Response:
        raise NotFound("No such container: x")

    async def not_modified(req: Request) -> Response:
        raise NotModified("container already started")

    async def boom(req: Request) -> Response:
        raise RuntimeError("boom")

    async def forever(req: Request) -> Response:
        async def gen() -> AsyncIterator[bytes]:
            try:
                yield b"first\n"
                await asyncio.Event().wait()
            finally:
                env.stream_closed.set()

        return Response(200, {"Content-Type": "text/plain"}, gen())

    async def events(req: Request) -> Response:
        async def gen() -> AsyncIterator[dict[str, int]]:
            for i in range(3):
                yield {"n": i}

        return ndjson_stream(gen())

    async def attach(req: Request) -> Hijack:
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(4096):
                writer.write(data)
            writer.write(b"<eof>")  # still writable after the client's half-close
            await writer.drain()

        return Hijack(echo)

    router.add("GET", "/_ping", ping)
    router.add("HEAD", "/_ping", ping)
    router.add("GET", "/version", version)
    for method, pattern in [("GET", "/images/json"), ("GET", "/images/{name:path}/json"),
                            ("POST", "/images/{name:path}/tag"), ("POST", "/images/{name:path}/push"),
                            ("GET", "/images/{name:path}/history"), ("GET", "/images/{name:path}/get"),
                            ("DELETE", "/images/{name:path}"), ("GET", "/containers/{id}/json"),
                            ("POST", "/containers/{id}/start")]:
        router.add(method, pattern, echo_params)
    router.add("POST", "/upload", upload)
    router.add("POST", "/small", small)
    router.add("GET", "/err/notfound", not_found)
    router.add("GET", "/err/notmodified", not_modified)
    router.add("GET", "/err/boom", boom)
    router.add("GET", "/forever", forever)
    router.add("GET", "/events", events)
    router.add("POST", "/containers/{id}/attach", attach)
    return router


@pytest.fixture
def env() -> Iterator[Env]:
    tmp = tempfile.mkdtemp(prefix="dy-srv-")  # short path: unix sockets are limited to 108 bytes
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    e = Env(os.path.join(tmp, "api.sock"), loop)
    server: Server = asyncio.run_coroutine_threadsafe(
        serve(make_router(e), [f"unix://{e.sock}"], socket_group=None), loop).result(WAIT)
    try:
        yield e
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(WAIT)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(WAIT)
        loop.close()
        shutil.rmtree(tmp)


def read_head(s: socket.socket) -> bytes:
    buf = b""
    while b"\r\n\r\n" not in buf:
        data = s.recv(4096)
        assert data, f"EOF before end of head: {buf!r}"
        buf += data
    return buf


def read_to_eof(s: socket.socket, buf: bytes = b"") -> bytes:
    while data := s.recv(4096):
        buf += data
    return buf


def test_ping_headers_and_head(env: Env) -> None:
    with env.client() as c:
        r = c.get("/_ping")
        assert r.status_code == 200 and r.text == "OK"
        assert r.headers["Api-Version"] == "1.47"
        assert r.headers["Docker-Experimental"] == "false"
        assert r.headers["Ostype"] == "linux"
        assert r.headers["Server"] == "Dockyard/0.1"
        h = c.head("/_ping")
        assert h.status_code == 200 and h.content == b"" and h.headers["Api-Version"] == "1.47"
        # the connection is still usable after a HEAD
        assert c.get("/v1.47/_ping").text == "OK"


def test_socket_mode_and_stale_socket(env: Env) -> None:
    assert stat.S_IMODE(os.stat(env.sock).st_mode) == 0o660
    stale = os.path.join(os.path.dirname(env.sock), "stale.sock")
    s = socket.socket(socket.AF_UNIX)
    s.bind(stale)
    s.close()  # leaves the file behind, like a crashed daemon

    async def start_and_stop() -> None:
        srv = await serve(Router(), [f"unix://{stale}"], socket_group=None)
        await srv.close()

    asyncio.run_coroutine_threadsafe(start_and_stop(), env.loop).result(WAIT)
    assert not os.path.exists(stale)


def test_version_prefix(env: Env) -> None:
    with env.client() as c:
        assert c.get("/v1.44/containers/abc/json").json()["version"] == "1.44"
        assert c.get("/v1.24/containers/abc/json").json()["params"] == {"id": "abc"}
        assert c.get("/containers/abc/json").json()["version"] is None
        r = c.get("/v1.12/_ping")
        assert r.status_code == 400 and "too old" in r.json()["message"]


@pytest.mark.parametrize("name", ["busybox", "localhost:5000/a/b:tag", "busybox@sha256:" + "a" * 64])
def test_image_name_routes(env: Env, name: str) -> None:
    n = quote(name, safe="/:")  # what docker-py sends
    with env.client() as c:
        for method, suffix in [("GET", "/json"), ("POST", "/tag"), ("POST", "/push"),
                               ("GET", "/history"), ("GET", "/get"), ("DELETE", "")]:
            r = c.request(method, f"/v1.47/images/{n}{suffix}")
            assert r.status_code == 200, (method, suffix, r.text)
            assert r.json()["params"] == {"name": name}
            assert r.json()["route"] == f"{method} /images/{name}{suffix}"
        assert c.get("/images/json").json()["params"] == {}


def test_not_found_and_method_not_allowed(env: Env) -> None:
    with env.client() as c:
        r = c.get("/nope")
        assert r.status_code == 404 and r.json() == {"message": "page not found"}
        r = c.get("/containers/abc/start")
        assert r.status_code == 405 and "message" in r.json()


def test_error_mapping(env: Env, caplog: pytest.LogCaptureFixture) -> None:
    with env.client() as c:
        r = c.get("/err/notfound")
        assert r.status_code == 404 and r.json() == {"message": "No such container: x"}
        r = c.get("/err/notmodified")
        assert r.status_code == 304 and r.content == b""
        with caplog.at_level("ERROR", logger="dockyard.api"):
            r = c.get("/err/boom")
        assert r.status_code == 500 and r.json() == {"message": "boom"}
        assert any(rec.exc_info for rec in caplog.records if rec.name == "dockyard.api")
        assert c.get("/_ping").text == "OK"  # same client, server still fine


def test_chunked_and_sized_uploads(env: Env) -> None:
    def parts() -> Iterator[bytes]:
        for _ in range(50):
            yield b"x" * 10000

    with env.client() as c:
        r = c.post("/upload", content=parts())  # a generator makes httpx send chunked
        assert r.json()["size"] == 500000 and r.json()["chunks"] >= 2
        assert c.post("/upload", content=b"y" * 123).json()["size"] == 123
        assert c.post("/small", content=b"123").json() == {"len": 3}
        r = c.post("/small", content=b"y" * 100)
        assert r.status_code == 413
        assert c.get("/_ping").text == "OK"


def test_keep_alive_and_unread_body(env: Env) -> None:
    class UnixConn(http.client.HTTPConnection):
        def connect(self) -> None:
            self.sock = env.raw()

    conn = UnixConn("docker")
    conn.request("GET", "/_ping")
    first = conn.sock
    assert conn.getresponse().read() == b"OK"
    conn.request("POST", "/err/notfound", body=b"ignored body")  # 405, body left unread by the server
    r = conn.getresponse()
    assert r.status == 405 and json.loads(r.read())["message"]
    conn.request("GET", "/v1.44/images/a/b/json")
    assert json.loads(conn.getresponse().read())["params"] == {"name": "a/b"}
    assert conn.sock is first  # all three on one connection
    conn.close()


def test_pipelined_requests(env: Env) -> None:
    with env.raw() as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\n\r\n" * 2 + b"GET /_ping HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
        assert read_to_eof(s).count(b"HTTP/1.1 200 OK") == 3


def test_streaming_response_and_disconnect(env: Env) -> None:
    with env.client() as c:
        with c.stream("GET", "/events") as r:
            assert r.headers["Transfer-Encoding"] == "chunked"
            assert [json.loads(line) for line in r.iter_lines()] == [{"n": 0}, {"n": 1}, {"n": 2}]
    with env.raw() as s:
        s.sendall(b"GET /forever HTTP/1.1\r\nHost: d\r\n\r\n")
        buf = read_head(s)
        while b"first" not in buf:  # the first chunk is flushed although the stream never ends
            buf += s.recv(4096)
        assert not env.stream_closed.is_set()
    assert env.stream_closed.wait(WAIT)  # the generator was closed when the client went away


def test_hijack_upgrade_half_close(env: Env) -> None:
    with env.raw() as s:
        # bytes right after the request head must reach the hijacker (h11 had buffered them)
        s.sendall(b"POST /v1.47/containers/c1/attach?stream=1&stdin=1 HTTP/1.1\r\nHost: d\r\n"
                  b"Connection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\nearly-")
        head, _, rest = read_head(s).partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 101 UPGRADED"
        for h in (b"Content-Type: application/vnd.docker.raw-stream", b"Connection: Upgrade", b"Upgrade: tcp"):
            assert h in lines
        s.sendall(b"hello")
        s.shutdown(socket.SHUT_WR)
        assert read_to_eof(s, rest) == b"early-hello<eof>"


def test_hijack_without_upgrade(env: Env) -> None:
    with env.raw() as s:
        s.sendall(b"POST /containers/c1/attach HTTP/1.1\r\nHost: d\r\nContent-Length: 2\r\n\r\n{}")
        head, _, rest = read_head(s).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK\r\n")
        assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
        s.sendall(b"raw")
        s.shutdown(socket.SHUT_WR)
        assert read_to_eof(s, rest) == b"raw<eof>"


def test_bad_requests_close(env: Env) -> None:
    with env.raw() as s:
        s.sendall(b"GET /_ping HTTP/1.1\r\nHost: d\r\nX-Big: " + b"a" * 70000 + b"\r\n\r\n")
        resp = read_to_eof(s)
        assert resp.split(b"\r\n")[0] in (b"HTTP/1.1 431 Request Header Fields Too Large", b"HTTP/1.1 400 Bad Request")
    with env.raw() as s:
        s.sendall(b"this is not http\r\n\r\n")
        assert read_to_eof(s).startswith(b"HTTP/1.1 400 ")


def test_stalled_client_does_not_block_others(env: Env) -> None:
    with env.raw() as stalled, env.raw() as idle:
        stalled.sendall(b"GET /_ping HTTP/1.1\r\nHo")  # half a head, then nothing
        assert idle  # connected, never sends
        with env.client() as c:
            assert c.get("/_ping").text == "OK"


@pytest.mark.skipif(shutil.which("docker") is None, reason="docker CLI not installed")
def test_docker_cli_version(env: Env, tmp_path: str) -> None:
    out = subprocess.run(
        ["docker", "version", "--format", "{{.Server.APIVersion}} {{.Client.APIVersion}}"],
        env={**os.environ, "DOCKER_HOST": f"unix://{env.sock}", "DOCKER_CONFIG": str(tmp_path)},
        capture_output=True, text=True, timeout=WAIT, check=True,
    )
    assert out.stdout.split() == ["1.47", "1.47"]  # the CLI negotiated down to our API version


def test_docker_py_attach_socket_and_tcp(env: Env) -> None:
    import docker

    api = docker.APIClient(base_url=f"unix://{env.sock}", version="1.44")
    try:
        assert api.ping() is True
        sock = api.attach_socket("c1", params={"stdin": 1, "stream": 1})._sock  # Upgrade: tcp -> 101
        sock.sendall(b"from docker-py")
        sock.shutdown(socket.SHUT_WR)
        assert read_to_eof(sock) == b"from docker-py<eof>"
        sock.close()
    finally:
        api.close()

    async def over_tcp() -> None:
        srv = await serve(make_router(env), ["tcp://127.0.0.1:0"], socket_group=None)
        port = srv.sockets[0].getsockname()[1]
        try:
            async with httpx.AsyncClient() as c:
                r = await c.get(f"http://127.0.0.1:{port}/v1.44/_ping")
                assert r.text == "OK" and r.headers["Api-Version"] == API_VERSION
        finally:
            await srv.close()

    asyncio.run_coroutine_threadsafe(over_tcp(), env.loop).result(WAIT)
