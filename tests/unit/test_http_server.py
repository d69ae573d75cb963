"""dockyard/http/server.py as any Site uses it (the Engine API's own behaviour is test_server.py's):
a silent client on the TLS port is closed at the header timeout, the connection cap closes the
connection idle longest, and a Site words its own errors. Real sockets on loopback."""

from __future__ import annotations

import asyncio
import socket
import ssl
import subprocess
from pathlib import Path

from dockyard.http.messages import Request, Response
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
