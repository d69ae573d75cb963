"""dockyard/http/server.py as any Site uses it (the Engine API's own behaviour is test_server.py's):
a silent client on the TLS port is closed at the header timeout, the connection cap closes the
connection idle longest, and a Site words its own errors. Real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import struct
import subprocess
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from dockyard.http.messages import Hijack, Request, Response
from dockyard.http.server import Limits, Server, Site

WAIT = 30  # hang guard only, never a timing assertion


async def _hello(req: Request) -> Response:
    if req.path == "/boom":
        raise RuntimeError("boom")
    return Response(200, {"content-type": "text/plain"}, b"hello")


def _words(status: int, message: str) -> Response:
    return Response(status, {"content-type": "text/plain"}, f"site says {status}: {message}".encode())


async def _closed(reader: asyncio.StreamReader) -> bool:
    """True once the server closes the connection (EOF or reset)."""
    try:
        while await asyncio.wait_for(reader.read(65536), WAIT):
            pass
    except ConnectionError:
        pass
    return True


def test_silent_client_on_the_tls_port_is_closed_at_the_header_timeout(tmp_path: Path) -> None:
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out",
                    "cert.pem", "-days", "1", "-subj", "/CN=127.0.0.1"], cwd=tmp_path, check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")

    async def go() -> None:
        server = Server(Site(_hello, _words, limits=Limits(header_timeout=0.5)))
        await server.listen_tcp("127.0.0.1", 0, ctx)
        port = server.sockets[0].getsockname()[1]
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # sends nothing at all
            assert await _closed(reader)
            writer.close()
            # a plain HTTP request on the TLS port is told why, as Go's net/http does
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert b"Client sent an HTTP request to an HTTPS server." in await asyncio.wait_for(reader.read(), WAIT)
            writer.close()
        finally:
            await server.close()

    asyncio.run(go())


def test_connection_cap_closes_the_one_idle_longest_and_serves_the_newcomer() -> None:
    async def go() -> None:
        server = Server(Site(_hello, _words, limits=Limits(max_connections=2)))
        await server.listen_tcp("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            first = await asyncio.open_connection("127.0.0.1", port)
            await asyncio.sleep(0)  # accepted in this order
            second = await asyncio.open_connection("127.0.0.1", port)
            for _ in range(100):  # both admitted before the third arrives
                if len(server._open) == 2:
                    break
                await asyncio.sleep(0.01)
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            assert (await asyncio.wait_for(reader.readuntil(b"hello"), WAIT)).startswith(b"HTTP/1.1 200")
            assert await _closed(first[0])  # evicted for the newcomer
            second[1].write(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # still served
            assert (await asyncio.wait_for(second[0].readuntil(b"hello"), WAIT)).startswith(b"HTTP/1.1 200")
            for w in (writer, second[1]):
                w.close()
        finally:
            await server.close()

    asyncio.run(go())


def test_a_site_words_its_errors_and_a_crash_leaves_the_connection_usable() -> None:
    async def go() -> None:
        server = Server(Site(_hello, _words))
        await server.listen_tcp("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
                s.sendall(b"GET /boom HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                data = await asyncio.to_thread(_read_all, s)
            assert data.startswith(b"HTTP/1.1 500") and b"site says 500: boom" in data
            assert data.count(b"HTTP/1.1 200") == 1 and data.endswith(b"hello")
        finally:
            await server.close()

    asyncio.run(go())


def _read_all(s: socket.socket) -> bytes:
    out = b""
    while chunk := s.recv(65536):
        out += chunk
    return out


async def _mixed(req: Request) -> Response | Hijack:
    """What the simple path hands over: a streamed answer, a hijack, a header h11 must judge."""
    if req.path == "/stream":
        async def gen() -> AsyncIterator[bytes]:
            yield b"one,"
            yield b"two"

        return Response(200, {"content-type": "text/plain"}, gen())
    if req.path == "/hijack":
        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            while data := await reader.read(4096):
                writer.write(data)
            writer.write(b"<eof>")
            await writer.drain()

        return Hijack(echo)
    if req.path == "/inject":  # a value that would bring a header line of its own
        return Response(200, {"x-name": req.query["v"][0]}, b"injected?")
    if req.path == "/upload":
        return Response(200, {}, b"got %d" % len(await req.body()))
    return await _hello(req)


def _serve(handler: Any, client: Callable[[int], bytes]) -> bytes:
    async def go() -> bytes:
        server = Server(Site(handler, _words))
        await server.listen_tcp("127.0.0.1", 0)
        try:
            return await asyncio.to_thread(client, server.sockets[0].getsockname()[1])
        finally:
            await server.close()

    return asyncio.run(go())


def test_simple_requests_and_handed_over_ones_share_a_kept_alive_connection() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"  # simple
                      b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n"  # simple, answered by a stream: handed over
                      b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"  # a body: h11's
                      b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            return _read_all(s)

    data = _serve(_mixed, client)
    assert data.count(b"HTTP/1.1 200 OK\r\n") == 4
    assert b"\r\n\r\nhello" in data and b"4\r\none,\r\n3\r\ntwo\r\n0\r\n\r\n" in data and b"got 3" in data
    assert data.endswith(b"hello")


def test_a_head_request_is_answered_simply_with_the_head_h11_sends(monkeypatch: Any) -> None:
    """The docker CLI's first request, `HEAD /_ping`, is the simple path's (h11 took it, and the rest of
    its connection with it): the head h11 sends, a GET's Content-Length and no body, kept alive."""
    from dockyard.http import server as server_mod

    handed: list[bool] = []
    real = server_mod._SimpleConnection._hand_over

    def counted(self: Any, pending: Any = None) -> None:
        handed.append(True)
        real(self, pending)

    monkeypatch.setattr(server_mod._SimpleConnection, "_hand_over", counted)
    requests = b"HEAD / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"

    def simple_client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(requests)
            return _read_all(s)

    def h11_client(port: int) -> bytes:  # a body first: the connection is h11's from there on
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\na" + requests)
            return _read_all(s)

    simple_answer = _serve(_mixed, simple_client)
    assert not handed, "the HEAD went to h11"
    assert simple_answer.startswith(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nContent-Length: 5\r\n\r\n"
                                    b"HTTP/1.1 200 OK\r\n")  # no body after the HEAD's head
    assert simple_answer.endswith(b"\r\n\r\nhello") and simple_answer.count(b"hello") == 1
    assert simple_answer == _serve(_mixed, h11_client).split(b"got 1", 1)[1]


def test_a_simple_request_hijacked_keeps_the_bytes_sent_after_its_head() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(b"POST /hijack HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\nearly-")
            s.sendall(b"late")
            s.shutdown(socket.SHUT_WR)
            return _read_all(s)

    head, _, rest = _serve(_mixed, client).partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and rest == b"early-late<eof>"


def test_a_header_value_cannot_add_a_line_of_its_own() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(b"GET /inject?v=a%0d%0aSet-Cookie:%20x HTTP/1.1\r\nHost: x\r\n\r\n")
            return _read_all(s)

    assert b"Set-Cookie" not in _serve(_mixed, client)  # h11 refuses to send it, as before


def test_answered_after_the_client_half_closed_and_half_a_head_is_refused() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=WAIT) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHo")
            s.shutdown(socket.SHUT_WR)
            return _read_all(s)

    data = _serve(_mixed, client)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"hello" in data
    assert b"HTTP/1.1 400 " in data  # h11's answer to a head cut short


def test_a_head_with_bare_lf_line_ends_is_answered_as_h11_answered_it() -> None:
    def client(port: int) -> bytes:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # not the 60 s header timeout
            s.sendall(b"GET / HTTP/1.1\nHost: x\nConnection: close\n\n")
            return _read_all(s)

    data = _serve(_mixed, client)
    assert data.startswith(b"HTTP/1.1 200 OK\r\n") and data.endswith(b"hello")


def test_a_stream_or_hijack_answered_to_a_client_already_gone_ends() -> None:
    """The client left (a reset) while its handler ran; the answer it made (a stream, a hijack) is handed
    over to the general path, which must see the connection lost, not serve it for ever."""
    made: list[AsyncIterator[bytes]] = []

    async def slow(req: Request) -> Response | Hijack:
        await asyncio.sleep(0.3)  # the client goes meanwhile
        if req.path == "/stream":
            async def ticks() -> AsyncIterator[bytes]:
                while True:
                    yield b"tick"
                    await asyncio.sleep(0.01)

            made.append(ticks())
            return Response(200, {}, made[-1])

        async def until_eof(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read()

        return Hijack(until_eof)

    async def go() -> None:
        server = Server(Site(slow, _words))
        await server.listen_tcp("127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        try:
            for path in ("/stream", "/hijack"):
                _reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
                await writer.drain()
                sock = writer.get_extra_info("socket")
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()  # a reset, not an EOF: the connection is lost, not half-closed
                for _ in range(50):
                    await asyncio.sleep(0.1)
                    if not server._tasks:
                        break
                assert not server._tasks, f"{path}: still served after the client went"
            assert made and made[0].ag_frame is None  # type: ignore[attr-defined]  # closed, not left to its GC
        finally:
            await asyncio.wait_for(server.close(), WAIT)

    asyncio.run(go())


def test_a_head_trickling_in_is_searched_once_not_from_its_start_at_every_read(monkeypatch: Any) -> None:
    """A head that arrives a few bytes a read: each read searches only what is new (it was searched
    whole again at each, quadratic: ~2 GB of scanning for a 64 KiB head sent a byte at a time)."""
    from dockyard.http import server as server_mod

    scanned = [0]
    real = server_mod._BLANK_LINE

    class Counting:
        def search(self, buf: bytearray, pos: int = 0) -> Any:
            scanned[0] += len(buf) - pos
            return real.search(buf, pos)

    monkeypatch.setattr(server_mod, "_BLANK_LINE", Counting())
    sent: list[bytes] = []

    class Transport:
        def write(self, data: bytes) -> None:
            sent.append(data)

        def is_closing(self) -> bool:
            return False

        def close(self) -> None:
            pass

    async def go() -> None:
        conn = server_mod._SimpleConnection(Server(Site(_hello, _words)))
        conn.connection_made(Transport())  # type: ignore[arg-type]
        head = b"GET / HTTP/1.1\r\nHost: x\r\n" + b"X-Pad: " + b"p" * 20_000 + b"\r\n\r\n"
        for i in range(0, len(head), 4):
            conn.data_received(head[i:i + 4])
        assert conn.task is not None
        await conn.task
        conn._expire_in(None)

    asyncio.run(go())
    assert b"".join(sent).endswith(b"hello")
    assert scanned[0] < 4 * 20_100
